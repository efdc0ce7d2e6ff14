//! berth-core: the domain. Validated names and ARNs, resource units, task-definition sizing rules and
//! the ordered task lifecycle. Pure: no IO, no async, no serde, no clock, no global randomness —
//! time and random bytes are parameters.

pub mod arn;
pub mod lifecycle;
pub mod names;
pub mod time;
pub mod units;

pub use arn::{Arn, ResourceKind};
pub use names::NameError;

/// Region and account a control plane serves; every ARN it mints uses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub partition: String,
    pub region: String,
    pub account: String,
}

impl Scope {
    pub fn new(region: impl Into<String>, account: impl Into<String>) -> Self {
        Self {
            partition: "aws".into(),
            region: region.into(),
            account: account.into(),
        }
    }
    /// `arn:aws:ecs:<region>:<account>:<resource>`
    pub fn ecs_arn(&self, resource: &str) -> String {
        self.ecs_arn_of(&[resource])
    }
    /// `arn:<partition>:ecs:<region>:<account>:` followed by `parts`, built in one allocation
    /// (ARNs are formatted for every task in every DescribeTasks answer; `format!` made that a
    /// fifth of the request's CPU).
    fn ecs_arn_of(&self, parts: &[&str]) -> String {
        let len = 12
            + self.partition.len()
            + self.region.len()
            + self.account.len()
            + parts.iter().map(|p| p.len()).sum::<usize>();
        let mut s = String::with_capacity(len);
        for p in [
            "arn:",
            self.partition.as_str(),
            ":ecs:",
            self.region.as_str(),
            ":",
            self.account.as_str(),
            ":",
        ] {
            s.push_str(p);
        }
        for p in parts {
            s.push_str(p);
        }
        s
    }
    pub fn cluster_arn(&self, cluster: &str) -> String {
        self.ecs_arn_of(&["cluster/", cluster])
    }
    pub fn task_definition_arn(&self, family: &str, revision: u32) -> String {
        self.ecs_arn_of(&["task-definition/", family, ":", &revision.to_string()])
    }
    pub fn task_arn(&self, cluster: &str, id: &str) -> String {
        self.ecs_arn_of(&["task/", cluster, "/", id])
    }
    pub fn container_instance_arn(&self, cluster: &str, id: &str) -> String {
        self.ecs_arn_of(&["container-instance/", cluster, "/", id])
    }
    pub fn service_arn(&self, cluster: &str, name: &str) -> String {
        self.ecs_arn_of(&["service/", cluster, "/", name])
    }
    /// The account's root principal, `arn:aws:iam::<account>:root`.
    pub fn root_principal(&self) -> String {
        format!("arn:{}:iam::{}:root", self.partition, self.account)
    }
    /// An IAM-user-like principal ARN for an access key's owner.
    pub fn user_principal(&self, user: &str) -> String {
        format!("arn:{}:iam::{}:user/{}", self.partition, self.account, user)
    }
}

/// A new-format ECS resource id: 32 lowercase hex characters (task, container instance).
pub fn resource_id(random: [u8; 16]) -> String {
    let mut s = String::with_capacity(32);
    for b in random {
        s.push(char::from_digit((b >> 4) as u32, 16).unwrap_or('0'));
        s.push(char::from_digit((b & 0xf) as u32, 16).unwrap_or('0'));
    }
    s
}
