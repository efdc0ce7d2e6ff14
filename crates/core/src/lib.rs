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
    /// `…:task-set/<cluster>/<service>/<id>` (the id is `ecs-svc/<n>`).
    pub fn task_set_arn(&self, cluster: &str, service: &str, id: &str) -> String {
        self.ecs_arn_of(&["task-set/", cluster, "/", service, "/", id])
    }
    /// `…:service-deployment/<cluster>/<service>/<id>`.
    pub fn service_deployment_arn(&self, cluster: &str, service: &str, id: &str) -> String {
        self.ecs_arn_of(&["service-deployment/", cluster, "/", service, "/", id])
    }
    /// `…:service-revision/<cluster>/<service>/<n>` (`<n>` as in the deployment `ecs-svc/<n>`).
    pub fn service_revision_arn(&self, cluster: &str, service: &str, number: &str) -> String {
        self.ecs_arn_of(&["service-revision/", cluster, "/", service, "/", number])
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

/// A new-format ECS resource id whose order is its creation order: 32 lowercase hex characters,
/// like [`resource_id`], of which the first 12 are the milliseconds since the Unix epoch (as in a
/// UUIDv7) and the other 20 are random. For tasks: the store keeps records in key order, so a new
/// task's key lands beside the last one's instead of on a random page of the key index (fewer
/// pages written per commit), and ListTasks answers in the order tasks were created.
pub fn time_ordered_id(unix_millis: u64, random: [u8; 10]) -> String {
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&(unix_millis & 0xFFFF_FFFF_FFFF).to_be_bytes()[2..]);
    bytes[6..].copy_from_slice(&random);
    resource_id(bytes)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_ordered_ids_sort_by_time_and_look_like_resource_ids() {
        let a = time_ordered_id(1_765_000_000_000, [0xff; 10]);
        let b = time_ordered_id(1_765_000_000_001, [0x00; 10]);
        assert!(a < b, "{a} !< {b}");
        for id in [&a, &b] {
            assert_eq!(id.len(), 32);
            assert!(id
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        }
        assert_eq!(&a[..12], "019af232b200");
        assert_eq!(&a[12..], "ffffffffffffffffffff");
        // Past 2^48 ms (year 10889) the clock wraps instead of panicking.
        assert_eq!(time_ordered_id(1 << 48, [0; 10]), "0".repeat(32));
    }
}
