//! Storage records: what the control plane persists, as versionable serde structs.
//!
//! Records are berth's own types, distinct from the wire shapes, except where the stored thing *is* a
//! user document that berth keeps verbatim and returns as given (a registered task definition's
//! container definitions, a cluster's configuration). Those embed the generated wire types, which
//! are all-optional and so forward compatible.

use berth_ecs_api::ecs;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub name: String,
    /// ACTIVE or INACTIVE.
    pub status: String,
    pub created_at: f64,
    pub settings: Vec<ecs::ClusterSetting>,
    #[serde(default)]
    pub configuration: Option<ecs::ClusterConfiguration>,
    #[serde(default)]
    pub capacity_providers: Vec<String>,
    #[serde(default)]
    pub default_capacity_provider_strategy: Vec<ecs::CapacityProviderStrategyItem>,
    #[serde(default)]
    pub service_connect_namespace: Option<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// Per family: the last revision number ever handed out (revisions are never reused).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FamilyRecord {
    pub last_revision: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskDefinitionRecord {
    /// The full definition as DescribeTaskDefinition returns it (status included).
    pub definition: ecs::TaskDefinition,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// When DeleteTaskDefinitions was called (status DELETE_IN_PROGRESS until purged).
    #[serde(default)]
    pub delete_requested_at: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountSettingRecord {
    pub name: String,
    pub value: String,
    pub principal_arn: String,
    /// "user" (set through the API) — AWS-managed defaults are not stored.
    pub kind: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessKeyRecord {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// admin | agent | readonly
    pub role: String,
    pub created_at: f64,
    #[serde(default)]
    pub description: String,
    /// Set on temporary credentials (task IAM role credentials, see `task_credentials`):
    /// requests must carry this token, and the key stops working at `expires_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionRecord>,
}

/// What makes an access key temporary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    /// `X-Amz-Security-Token` the signed requests must carry.
    pub token: String,
    /// Epoch seconds after which the key is refused (ExpiredTokenException).
    pub expires_at: f64,
    /// The caller's ARN: `arn:aws:sts::<account>:assumed-role/<role name>/<task id>`.
    pub principal_arn: String,
    /// The IAM role the credentials stand for.
    pub role_arn: String,
    /// The task they were issued to.
    pub task_arn: String,
}

pub fn tags_to_wire(tags: &[Tag]) -> Vec<ecs::Tag> {
    tags.iter()
        .map(|t| ecs::Tag {
            key: Some(t.key.clone()),
            value: Some(t.value.clone()),
        })
        .collect()
}

/// Resources as an agent registers them (and as placed tasks consume them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourcesRecord {
    pub cpu: i64,
    pub memory: i64,
    #[serde(default)]
    pub gpu: i64,
    /// The GPUs by id, when the agent registered them as a STRINGSET (ECS's form): all of them
    /// (registered), or the ones assigned to a task (placed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpu_ids: Vec<String>,
    /// Reserved (registered) or used (task) TCP host ports.
    #[serde(default)]
    pub ports: Vec<u16>,
    #[serde(default)]
    pub ports_udp: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeRecord {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
}

/// A task that holds resources on an instance: from placement until the agent reports STOPPED.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedTask {
    pub task_id: String,
    pub group: String,
    pub family: String,
    #[serde(default)]
    pub service: Option<String>,
    /// PENDING until the agent reports RUNNING (for running/pendingTasksCount).
    pub running: bool,
    pub resources: ResourcesRecord,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerInstanceRecord {
    pub id: String,
    pub cluster: String,
    #[serde(default)]
    pub ec2_instance_id: Option<String>,
    /// ACTIVE, DRAINING or INACTIVE (deregistered).
    pub status: String,
    #[serde(default)]
    pub status_reason: Option<String>,
    pub registered_at: f64,
    pub registered: ResourcesRecord,
    #[serde(default)]
    pub attributes: Vec<AttributeRecord>,
    #[serde(default)]
    pub version_info: Option<ecs::VersionInfo>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Bumped whenever the desired state of the instance's tasks changes (the agent channel's
    /// generation: agents ignore answers older than what they applied).
    pub generation: u64,
    /// ECS's `version` field: bumped on every change of the record.
    pub version: i64,
    /// The tasks holding resources here.
    #[serde(default)]
    pub tasks: Vec<PlacedTask>,
}

impl ContainerInstanceRecord {
    pub fn remaining(&self) -> ResourcesRecord {
        let mut r = self.registered.clone();
        for t in &self.tasks {
            r.cpu -= t.resources.cpu;
            r.memory -= t.resources.memory;
            r.gpu -= t.resources.gpu;
            r.gpu_ids.retain(|g| !t.resources.gpu_ids.contains(g));
            r.ports.extend(&t.resources.ports);
            r.ports_udp.extend(&t.resources.ports_udp);
        }
        // With GPUs by id, only ids can be handed out: never count more GPUs than free ids
        // (e.g. tasks placed by count before the instance re-registered its ids).
        if !self.registered.gpu_ids.is_empty() {
            r.gpu = r.gpu.min(r.gpu_ids.len() as i64);
        }
        r.ports.sort_unstable();
        r.ports.dedup();
        r.ports_udp.sort_unstable();
        r.ports_udp.dedup();
        r
    }
    pub fn running_tasks(&self) -> usize {
        self.tasks.iter().filter(|t| t.running).count()
    }
    pub fn pending_tasks(&self) -> usize {
        self.tasks.iter().filter(|t| !t.running).count()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub name: String,
    pub container_arn: String,
    pub image: String,
    #[serde(default)]
    pub image_digest: Option<String>,
    #[serde(default)]
    pub runtime_id: Option<String>,
    pub last_status: String,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub network_bindings: Vec<ecs::NetworkBinding>,
    #[serde(default)]
    pub network_interfaces: Vec<ecs::NetworkInterface>,
    #[serde(default)]
    pub health_status: Option<String>,
    pub essential: bool,
    pub cpu: i32,
    #[serde(default)]
    pub memory: Option<i32>,
    #[serde(default)]
    pub memory_reservation: Option<i32>,
    /// The GPUs assigned to this container (its `resourceRequirements` GPU count).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpu_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: String,
    pub cluster: String,
    pub container_instance_id: String,
    pub task_definition_arn: String,
    pub family: String,
    pub revision: u32,
    pub desired_status: String,
    pub last_status: String,
    pub launch_type: String,
    pub group: String,
    #[serde(default)]
    pub started_by: Option<String>,
    pub created_at: f64,
    #[serde(default)]
    pub pull_started_at: Option<f64>,
    #[serde(default)]
    pub pull_stopped_at: Option<f64>,
    #[serde(default)]
    pub started_at: Option<f64>,
    #[serde(default)]
    pub stopping_at: Option<f64>,
    #[serde(default)]
    pub stopped_at: Option<f64>,
    #[serde(default)]
    pub execution_stopped_at: Option<f64>,
    #[serde(default)]
    pub connectivity_at: Option<f64>,
    #[serde(default)]
    pub stop_code: Option<String>,
    #[serde(default)]
    pub stopped_reason: Option<String>,
    #[serde(default)]
    pub health_status: Option<String>,
    pub version: i64,
    /// Task-level cpu/memory as ECS shows them (strings of units), if any.
    #[serde(default)]
    pub cpu: Option<String>,
    #[serde(default)]
    pub memory: Option<String>,
    pub resources: ResourcesRecord,
    #[serde(default)]
    pub overrides: ecs::TaskOverride,
    pub containers: Vec<ContainerRecord>,
    #[serde(default)]
    pub attachments: Vec<ecs::Attachment>,
    #[serde(default)]
    pub availability_zone: Option<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub client_token: Option<String>,
    #[serde(default)]
    pub enable_execute_command: bool,
    /// Scale-in protection (UpdateTaskProtection): protected until this epoch time.
    #[serde(default)]
    pub protected_until: Option<f64>,
    /// awsvpc subnets and security groups the task was started with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<ecs::NetworkConfiguration>,
}

/// RunTask idempotency: a clientToken remembers what it started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientTokenRecord {
    pub fingerprint: String,
    pub task_ids: Vec<String>,
    pub created_at: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeploymentRecord {
    pub id: String,
    /// PRIMARY or ACTIVE.
    pub status: String,
    pub task_definition: String,
    /// IN_PROGRESS, COMPLETED or FAILED.
    pub rollout_state: String,
    #[serde(default)]
    pub rollout_state_reason: Option<String>,
    pub created_at: f64,
    pub updated_at: f64,
    #[serde(default)]
    pub next_launch_at: f64,
    #[serde(default)]
    pub failures_seen: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceEventRecord {
    pub id: String,
    pub created_at: f64,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub name: String,
    pub cluster: String,
    /// ACTIVE, DRAINING or INACTIVE.
    pub status: String,
    pub desired_count: u32,
    /// REPLICA or DAEMON.
    pub scheduling_strategy: String,
    pub launch_type: String,
    /// The PRIMARY deployment's task definition ARN.
    pub task_definition: String,
    pub deployments: Vec<DeploymentRecord>,
    pub maximum_percent: u32,
    pub minimum_healthy_percent: u32,
    #[serde(default)]
    pub circuit_breaker: Option<ecs::DeploymentCircuitBreaker>,
    #[serde(default)]
    pub deployment_configuration: Option<ecs::DeploymentConfiguration>,
    #[serde(default)]
    pub placement_constraints: Vec<ecs::PlacementConstraint>,
    #[serde(default)]
    pub placement_strategy: Vec<ecs::PlacementStrategy>,
    #[serde(default)]
    pub network_configuration: Option<ecs::NetworkConfiguration>,
    #[serde(default)]
    pub load_balancers: Vec<ecs::LoadBalancer>,
    #[serde(default)]
    pub service_registries: Vec<ecs::ServiceRegistry>,
    #[serde(default)]
    pub health_check_grace_period_seconds: Option<i32>,
    #[serde(default)]
    pub propagate_tags: Option<String>,
    #[serde(default)]
    pub enable_ecs_managed_tags: bool,
    #[serde(default)]
    pub enable_execute_command: bool,
    #[serde(default)]
    pub tags: Vec<Tag>,
    pub created_at: f64,
    pub created_by: String,
    #[serde(default)]
    pub events: Vec<ServiceEventRecord>,
    #[serde(default)]
    pub last_steady_event_at: Option<f64>,
    #[serde(default)]
    pub last_completed_task_definition: Option<String>,
    #[serde(default)]
    pub client_token: Option<String>,
    #[serde(default)]
    pub capacity_provider_strategy: Vec<ecs::CapacityProviderStrategyItem>,
    #[serde(default)]
    pub role_arn: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed(gpu: i64, ids: &[&str]) -> PlacedTask {
        PlacedTask {
            task_id: "t".into(),
            group: "g".into(),
            family: "f".into(),
            service: None,
            running: true,
            resources: ResourcesRecord {
                gpu,
                gpu_ids: ids.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn remaining_gpus_are_the_free_ids_and_never_more() {
        let mut inst = ContainerInstanceRecord {
            id: "i".into(),
            cluster: "c".into(),
            ec2_instance_id: None,
            status: "ACTIVE".into(),
            status_reason: None,
            registered_at: 0.0,
            registered: ResourcesRecord {
                gpu: 3,
                gpu_ids: vec!["a".into(), "b".into(), "c".into()],
                ..Default::default()
            },
            attributes: vec![],
            version_info: None,
            tags: vec![],
            generation: 0,
            version: 1,
            tasks: vec![placed(1, &["b"])],
        };
        let r = inst.remaining();
        assert_eq!(
            (r.gpu, r.gpu_ids.clone()),
            (2, vec!["a".to_string(), "c".into()])
        );
        // A task holding GPUs by count only (placed before the ids were registered): the count
        // drops, and never above the ids that are still free.
        inst.tasks.push(placed(1, &[]));
        let r = inst.remaining();
        assert_eq!(r.gpu, 1);
        inst.tasks.push(placed(0, &["a", "c"]));
        assert_eq!(inst.remaining().gpu, 0);
    }
}
