//! Storage records: what the control plane persists, as versionable serde structs.
//!
//! Records are berth's own types, distinct from the wire shapes, except where the stored thing *is* a
//! user document that berth keeps verbatim and returns as given (a registered task definition's
//! container definitions, a cluster's configuration). Those embed the generated wire types, which
//! are all-optional and so forward compatible.

use crate::stored;
use berth_core::lifecycle::TaskStatus;
use berth_wire::ecs;
use serde::{Deserialize, Serialize};

/// A stored status, strategy or kind: an enum whose serde form is the exact string berth has
/// always stored (and ECS answers carry), with `ALL`, `as_str` and `parse`.
macro_rules! stored_enum {
    (
        $(#[$attr:meta])*
        pub enum $name:ident {
            $($(#[$vattr:meta])* $variant:ident = $s:literal,)+
        }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vattr])* #[serde(rename = $s)] $variant,)+
        }

        impl $name {
            /// Every variant.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The stored spelling, which is also ECS's wire spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $s,)+
                }
            }
            /// The variant spelled `s`, if any.
            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }
    };
}

stored_enum! {
    /// [`ClusterRecord::status`]. berth writes ACTIVE (created) and INACTIVE (deleted); the
    /// other ECS cluster statuses are accepted when read.
    pub enum ClusterStatus {
        Active = "ACTIVE",
        Provisioning = "PROVISIONING",
        Deprovisioning = "DEPROVISIONING",
        Failed = "FAILED",
        Inactive = "INACTIVE",
    }
}

stored_enum! {
    /// [`ContainerInstanceRecord::status`]. berth writes ACTIVE, DRAINING and INACTIVE
    /// (deregistered); the other ECS instance statuses are accepted when read.
    pub enum InstanceStatus {
        Active = "ACTIVE",
        Draining = "DRAINING",
        Registering = "REGISTERING",
        Deregistering = "DEREGISTERING",
        RegistrationFailed = "REGISTRATION_FAILED",
        Inactive = "INACTIVE",
    }
}

impl From<InstanceStatus> for berth_placement::InstanceStatus {
    fn from(s: InstanceStatus) -> Self {
        match s {
            InstanceStatus::Active => Self::Active,
            InstanceStatus::Draining => Self::Draining,
            InstanceStatus::Registering => Self::Registering,
            InstanceStatus::Deregistering => Self::Deregistering,
            InstanceStatus::RegistrationFailed => Self::RegistrationFailed,
            InstanceStatus::Inactive => Self::Inactive,
        }
    }
}

stored_enum! {
    /// [`ContainerRecord::last_status`]: what the agent last reported for the container.
    ///
    /// Agents report PENDING, RUNNING and STOPPED (the only statuses berth ever set), but the
    /// reporting operations take any string, and berth used to store an unknown one verbatim
    /// where it ranked as PENDING (only over PENDING). Such a record reads as PENDING, which
    /// orders the same; an unknown report is ignored (see [`ContainerStatus::rank`]).
    #[derive(Default)]
    pub enum ContainerStatus {
        Running = "RUNNING",
        Stopped = "STOPPED",
        /// Also what any other stored string reads as (last: `serde(other)` must be).
        #[default]
        #[serde(other)]
        Pending = "PENDING",
    }
}

impl ContainerStatus {
    /// Reports only move a container forward: PENDING, RUNNING, STOPPED.
    pub fn rank(self) -> u8 {
        match self {
            ContainerStatus::Pending => 0,
            ContainerStatus::Running => 1,
            ContainerStatus::Stopped => 2,
        }
    }
}

stored_enum! {
    /// A task's or a container's health ([`TaskRecord::health_status`],
    /// [`ContainerRecord::health_status`]).
    pub enum HealthStatus {
        Healthy = "HEALTHY",
        Unhealthy = "UNHEALTHY",
        Unknown = "UNKNOWN",
    }
}

impl From<HealthStatus> for ecs::HealthStatus {
    fn from(h: HealthStatus) -> Self {
        match h {
            HealthStatus::Healthy => Self::Healthy,
            HealthStatus::Unhealthy => Self::Unhealthy,
            HealthStatus::Unknown => Self::Unknown,
        }
    }
}

stored_enum! {
    /// [`TaskRecord::launch_type`] and [`ServiceRecord::launch_type`]. berth runs EC2 and
    /// EXTERNAL; FARGATE is ECS's third.
    pub enum LaunchType {
        Ec2 = "EC2",
        External = "EXTERNAL",
        Fargate = "FARGATE",
    }
}

impl From<LaunchType> for ecs::LaunchType {
    fn from(l: LaunchType) -> Self {
        match l {
            LaunchType::Ec2 => Self::Ec2,
            LaunchType::External => Self::External,
            LaunchType::Fargate => Self::Fargate,
        }
    }
}

stored_enum! {
    /// [`ServiceRecord::status`].
    pub enum ServiceStatus {
        Active = "ACTIVE",
        Draining = "DRAINING",
        Inactive = "INACTIVE",
    }
}

stored_enum! {
    /// [`ServiceRecord::scheduling_strategy`].
    pub enum SchedulingStrategy {
        Replica = "REPLICA",
        Daemon = "DAEMON",
    }
}

impl From<SchedulingStrategy> for ecs::SchedulingStrategy {
    fn from(s: SchedulingStrategy) -> Self {
        match s {
            SchedulingStrategy::Replica => Self::Replica,
            SchedulingStrategy::Daemon => Self::Daemon,
        }
    }
}

stored_enum! {
    /// [`DeploymentRecord::status`]. berth writes PRIMARY and ACTIVE; INACTIVE is ECS's third.
    pub enum DeploymentStatus {
        Primary = "PRIMARY",
        Active = "ACTIVE",
        Inactive = "INACTIVE",
    }
}

stored_enum! {
    /// [`DeploymentRecord::rollout_state`].
    pub enum RolloutState {
        InProgress = "IN_PROGRESS",
        Completed = "COMPLETED",
        Failed = "FAILED",
    }
}

impl From<RolloutState> for ecs::DeploymentRolloutState {
    fn from(r: RolloutState) -> Self {
        match r {
            RolloutState::InProgress => Self::InProgress,
            RolloutState::Completed => Self::Completed,
            RolloutState::Failed => Self::Failed,
        }
    }
}

stored_enum! {
    /// [`AccountSettingRecord::kind`].
    pub enum SettingKind {
        /// Set through the API (AWS-managed defaults are not stored).
        User = "user",
    }
}

/// A task's desired and last status are [`TaskStatus`] (the lifecycle's order), stored as its
/// [`TaskStatus::as_str`] spelling: `#[serde(with = "task_status")]`.
pub mod task_status {
    use super::TaskStatus;
    use serde::de::{self, Unexpected, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(s: &TaskStatus, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<TaskStatus, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TaskStatus;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a task status (PROVISIONING … DELETED)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TaskStatus, E> {
                TaskStatus::parse(v).ok_or_else(|| E::invalid_value(Unexpected::Str(v), &self))
            }
        }
        de.deserialize_str(V)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub name: String,
    /// ACTIVE or INACTIVE.
    pub status: ClusterStatus,
    pub created_at: f64,
    pub settings: Vec<stored::ClusterSetting>,
    #[serde(default)]
    pub configuration: Option<stored::ClusterConfiguration>,
    #[serde(default)]
    pub capacity_providers: Vec<String>,
    #[serde(default)]
    pub default_capacity_provider_strategy: Vec<stored::CapacityProviderStrategyItem>,
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
    pub definition: stored::TaskDefinition,
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
    pub kind: SettingKind,
}

/// A list in its other form: stored shapes to wire shapes or back (see [`stored`]).
pub fn convert<T: Clone + Into<U>, U>(items: &[T]) -> Vec<U> {
    items.iter().cloned().map(Into::into).collect()
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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports_udp: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeRecord {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
}

/// A task listed on an instance record by records written before berth kept [`HeldRecord`]
/// counters: read only, folded into `held` when such a record is decoded.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LegacyPlacedTask {
    pub group: String,
    pub running: bool,
    pub resources: ResourcesRecord,
}

/// What one live task holds on its instance (see [`TaskRecord::hold`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskHold {
    pub group: String,
    /// It has reported RUNNING (runningTasksCount); otherwise it is pending.
    pub running: bool,
    /// CPU, memory and GPUs (by count, and the ids assigned to it), its TCP host ports (static
    /// and those its containers were bound to) and UDP host ports.
    pub resources: ResourcesRecord,
}

/// Everything the live tasks on an instance hold, from placement until the agent reports each
/// STOPPED: the sum of their [`TaskHold`]s, kept in the instance record as counters so that a
/// placement rewrites a record of constant size, whatever else runs there. Every change of a
/// task's hold is applied here in the same transaction as the task record (`remove` the old
/// hold, `add` the new one), so `held` always equals the sum over the instance's live tasks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldRecord {
    /// CPU, memory and GPUs by count; GPU ids (each held by at most one task); TCP and UDP host
    /// ports, sorted, once per task holding each (a port can briefly be held twice: a dynamic
    /// port Docker reuses before the old task's STOPPED report arrives).
    #[serde(default)]
    pub resources: ResourcesRecord,
    #[serde(default)]
    pub running: u32,
    #[serde(default)]
    pub pending: u32,
    /// Live tasks per task group (`service:<name>`, `family:<family>`, …), none at zero.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub groups: std::collections::BTreeMap<String, u32>,
}

fn insert_sorted<T: Ord + Clone>(into: &mut Vec<T>, items: &[T]) {
    for x in items {
        let at = into.partition_point(|y| y < x);
        into.insert(at, x.clone());
    }
}

fn remove_each<T: Ord>(from: &mut Vec<T>, items: &[T]) {
    for x in items {
        if let Ok(at) = from.binary_search(x) {
            from.remove(at);
        }
    }
}

impl HeldRecord {
    /// Counts a task's hold.
    pub fn add(&mut self, h: &TaskHold) {
        let (r, mine) = (&h.resources, &mut self.resources);
        mine.cpu += r.cpu;
        mine.memory += r.memory;
        mine.gpu += r.gpu;
        insert_sorted(&mut mine.gpu_ids, &r.gpu_ids);
        insert_sorted(&mut mine.ports, &r.ports);
        insert_sorted(&mut mine.ports_udp, &r.ports_udp);
        if h.running {
            self.running += 1;
        } else {
            self.pending += 1;
        }
        *self.groups.entry(h.group.clone()).or_default() += 1;
    }

    /// Stops counting a task's hold (the exact inverse of [`HeldRecord::add`]).
    pub fn remove(&mut self, h: &TaskHold) {
        let (r, mine) = (&h.resources, &mut self.resources);
        mine.cpu -= r.cpu;
        mine.memory -= r.memory;
        mine.gpu -= r.gpu;
        remove_each(&mut mine.gpu_ids, &r.gpu_ids);
        remove_each(&mut mine.ports, &r.ports);
        remove_each(&mut mine.ports_udp, &r.ports_udp);
        let n = if h.running {
            &mut self.running
        } else {
            &mut self.pending
        };
        *n = n.saturating_sub(1);
        if let Some(c) = self.groups.get_mut(&h.group) {
            *c = c.saturating_sub(1);
            if *c == 0 {
                self.groups.remove(&h.group);
            }
        }
    }

    /// Replaces a task's hold `before` with `after` (either may be none: placed, stopped).
    /// Returns whether anything changed.
    pub fn replace(&mut self, before: Option<&TaskHold>, after: Option<&TaskHold>) -> bool {
        if before == after {
            return false;
        }
        if let Some(b) = before {
            self.remove(b);
        }
        if let Some(a) = after {
            self.add(a);
        }
        true
    }

    /// Live tasks on the instance.
    pub fn tasks(&self) -> u32 {
        self.running + self.pending
    }
}

/// The stored form of [`ContainerInstanceRecord`], which also reads records written before
/// `held` existed (their tasks listed one by one).
#[derive(Deserialize)]
struct StoredInstance {
    id: String,
    cluster: String,
    #[serde(default)]
    ec2_instance_id: Option<String>,
    status: InstanceStatus,
    #[serde(default)]
    status_reason: Option<String>,
    registered_at: f64,
    registered: ResourcesRecord,
    #[serde(default)]
    attributes: std::sync::Arc<Vec<AttributeRecord>>,
    #[serde(default)]
    version_info: Option<stored::VersionInfo>,
    #[serde(default)]
    tags: Vec<Tag>,
    generation: u64,
    version: i64,
    #[serde(default)]
    held: HeldRecord,
    #[serde(default)]
    tasks: Vec<LegacyPlacedTask>,
}

impl From<StoredInstance> for ContainerInstanceRecord {
    fn from(s: StoredInstance) -> Self {
        let mut held = s.held;
        for t in s.tasks {
            held.add(&TaskHold {
                group: t.group,
                running: t.running,
                resources: t.resources,
            });
        }
        Self {
            id: s.id,
            cluster: s.cluster,
            ec2_instance_id: s.ec2_instance_id,
            status: s.status,
            status_reason: s.status_reason,
            registered_at: s.registered_at,
            registered: s.registered,
            attributes: s.attributes,
            version_info: s.version_info,
            tags: s.tags,
            generation: s.generation,
            version: s.version,
            held,
        }
    }
}

/// Read through `StoredInstance` (which says what may be absent and folds the old task lists);
/// written as declared here.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "StoredInstance")]
pub struct ContainerInstanceRecord {
    pub id: String,
    pub cluster: String,
    pub ec2_instance_id: Option<String>,
    /// ACTIVE, DRAINING or INACTIVE (deregistered).
    pub status: InstanceStatus,
    pub status_reason: Option<String>,
    pub registered_at: f64,
    pub registered: ResourcesRecord,
    /// Shared: a placement copies the record to change its counters, never its attributes.
    pub attributes: std::sync::Arc<Vec<AttributeRecord>>,
    pub version_info: Option<stored::VersionInfo>,
    pub tags: Vec<Tag>,
    /// Bumped whenever the desired state of the instance's tasks changes (the agent channel's
    /// generation: agents ignore answers older than what they applied).
    pub generation: u64,
    /// ECS's `version` field: bumped on every change of the record.
    pub version: i64,
    /// What the live tasks here hold (their list is the tasks index's `live` term).
    pub held: HeldRecord,
}

/// What [`ContainerInstanceRecord::account_tasks`] did to the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Accounted {
    /// The record changed: write it in the same transaction as the tasks.
    pub changed: bool,
    /// The agent generation moved to this value: publish it to the agent channel after the commit.
    pub generation: Option<u64>,
}

/// What one task write means for the task's instance (each task's hold computed once).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskChange {
    held_before: Option<TaskHold>,
    held_after: Option<TaskHold>,
    /// What the agent should do changed: a new task, a changed desired status, or a task that let
    /// go of its hold (stopped).
    agent_must_know: bool,
}

impl TaskChange {
    /// `before` is `None` for a new task.
    pub fn of(before: Option<&TaskRecord>, after: &TaskRecord) -> Self {
        let held_before = before.and_then(TaskRecord::hold);
        let held_after = after.hold();
        let agent_must_know = match before {
            None => true,
            Some(b) => {
                b.desired_status != after.desired_status
                    || (held_before.is_some() && held_after.is_none())
            }
        };
        Self {
            held_before,
            held_after,
            agent_must_know,
        }
    }

    /// Whether the instance record has anything to account for.
    pub fn concerns_instance(&self) -> bool {
        self.agent_must_know || self.held_before != self.held_after
    }
}

impl ContainerInstanceRecord {
    /// The bookkeeping every writer of tasks owes the tasks' instance, applied in one place:
    /// - what the tasks hold (resources, ports, GPUs, their groups) moves in `held`, and ECS's
    ///   `version` goes up once if anything moved — unless the instance is INACTIVE
    ///   (force-deregistered), which has let go of everything its tasks held;
    /// - the agent `generation` goes up once if what the agent should do changed
    ///   ([`TaskChange`]).
    pub fn account_tasks<'a>(
        &mut self,
        changes: impl IntoIterator<Item = &'a TaskChange>,
    ) -> Accounted {
        let (mut held_moved, mut agent_view) = (false, false);
        for c in changes {
            agent_view |= c.agent_must_know;
            if self.status != InstanceStatus::Inactive {
                held_moved |= self
                    .held
                    .replace(c.held_before.as_ref(), c.held_after.as_ref());
            }
        }
        if held_moved {
            self.version += 1;
        }
        let generation = agent_view.then(|| {
            self.generation += 1;
            self.generation
        });
        Accounted {
            changed: held_moved || generation.is_some(),
            generation,
        }
    }

    pub fn remaining(&self) -> ResourcesRecord {
        let h = &self.held.resources;
        let mut r = self.registered.clone();
        r.cpu -= h.cpu;
        r.memory -= h.memory;
        r.gpu -= h.gpu;
        r.gpu_ids.retain(|g| h.gpu_ids.binary_search(g).is_err());
        // With GPUs by id, only ids can be handed out: never count more GPUs than free ids
        // (e.g. tasks placed by count before the instance re-registered its ids).
        if !self.registered.gpu_ids.is_empty() {
            r.gpu = r.gpu.min(r.gpu_ids.len() as i64);
        }
        r.ports.extend(&h.ports);
        r.ports_udp.extend(&h.ports_udp);
        r.ports.sort_unstable();
        r.ports.dedup();
        r.ports_udp.sort_unstable();
        r.ports_udp.dedup();
        r
    }
    pub fn running_tasks(&self) -> usize {
        self.held.running as usize
    }
    pub fn pending_tasks(&self) -> usize {
        self.held.pending as usize
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub name: String,
    pub container_arn: String,
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_id: Option<String>,
    pub last_status: ContainerStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_bindings: Vec<stored::NetworkBinding>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_interfaces: Vec<stored::NetworkInterface>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_status: Option<HealthStatus>,
    pub essential: bool,
    pub cpu: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<i32>,
    /// The GPUs assigned to this container (its `resourceRequirements` GPU count).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpu_ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: String,
    pub cluster: String,
    pub container_instance_id: String,
    pub task_definition_arn: String,
    pub family: String,
    pub revision: u32,
    /// RUNNING or STOPPED.
    #[serde(with = "task_status")]
    pub desired_status: TaskStatus,
    /// Forward only, from PROVISIONING (see [`TaskStatus::can_become`]).
    #[serde(with = "task_status")]
    pub last_status: TaskStatus,
    pub launch_type: LaunchType,
    pub group: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    pub created_at: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_started_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_stopped_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopping_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_stopped_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectivity_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_reason: Option<String>,
    /// HEALTHY or UNHEALTHY, once derived from its essential containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_status: Option<HealthStatus>,
    pub version: i64,
    /// Task-level cpu/memory as ECS shows them (strings of units), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    pub resources: ResourcesRecord,
    #[serde(default)]
    pub overrides: stored::TaskOverride,
    pub containers: Vec<ContainerRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<stored::Attachment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enable_execute_command: bool,
    /// Scale-in protection (UpdateTaskProtection): protected until this epoch time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_until: Option<f64>,
    /// awsvpc subnets and security groups the task was started with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<stored::NetworkConfiguration>,
}

/// A task as placed: desired RUNNING, PROVISIONING, EC2, everything else empty.
impl Default for TaskRecord {
    fn default() -> Self {
        Self {
            id: String::new(),
            cluster: String::new(),
            container_instance_id: String::new(),
            task_definition_arn: String::new(),
            family: String::new(),
            revision: 0,
            desired_status: TaskStatus::Running,
            last_status: TaskStatus::Provisioning,
            launch_type: LaunchType::Ec2,
            group: String::new(),
            started_by: None,
            created_at: 0.0,
            pull_started_at: None,
            pull_stopped_at: None,
            started_at: None,
            stopping_at: None,
            stopped_at: None,
            execution_stopped_at: None,
            connectivity_at: None,
            stop_code: None,
            stopped_reason: None,
            health_status: None,
            version: 0,
            cpu: None,
            memory: None,
            resources: ResourcesRecord::default(),
            overrides: stored::TaskOverride::default(),
            containers: Vec::new(),
            attachments: Vec::new(),
            availability_zone: None,
            tags: Vec::new(),
            client_token: None,
            enable_execute_command: false,
            protected_until: None,
            network_configuration: None,
        }
    }
}

impl TaskRecord {
    /// Whether it still holds resources on its instance (not STOPPED yet).
    pub fn is_live(&self) -> bool {
        !matches!(self.last_status, TaskStatus::Stopped | TaskStatus::Deleted)
    }

    /// What the task holds on its instance: from placement until it is STOPPED. Its TCP host
    /// ports are the static ones plus every host port its containers were bound to.
    pub fn hold(&self) -> Option<TaskHold> {
        if !self.is_live() {
            return None;
        }
        let mut resources = self.resources.clone();
        resources.gpu_ids = self
            .containers
            .iter()
            .flat_map(|c| c.gpu_ids.iter().cloned())
            .collect();
        resources.gpu_ids.sort_unstable();
        resources.ports.extend(
            self.containers
                .iter()
                .flat_map(|c| c.network_bindings.iter())
                .filter(|b| b.protocol != Some(stored::TransportProtocol::Udp))
                .filter_map(|b| b.host_port.and_then(|p| u16::try_from(p).ok())),
        );
        resources.ports.sort_unstable();
        resources.ports.dedup();
        resources.ports_udp.sort_unstable();
        resources.ports_udp.dedup();
        Some(TaskHold {
            group: self.group.clone(),
            running: self.started_at.is_some(),
            resources,
        })
    }
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
    /// The service revision it runs when not its own (`ecs-svc/<n>` runs revision `<n>`): a
    /// rollback runs the revision it went back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// PRIMARY or ACTIVE.
    pub status: DeploymentStatus,
    pub task_definition: String,
    /// IN_PROGRESS, COMPLETED or FAILED.
    pub rollout_state: RolloutState,
    #[serde(default)]
    pub rollout_state_reason: Option<String>,
    pub created_at: f64,
    pub updated_at: f64,
    #[serde(default)]
    pub next_launch_at: f64,
    #[serde(default)]
    pub failures_seen: u32,
    /// Its revision's image digests are recorded (or there is nothing to record them in).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub images_recorded: bool,
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
    pub status: ServiceStatus,
    pub desired_count: u32,
    /// REPLICA or DAEMON.
    pub scheduling_strategy: SchedulingStrategy,
    pub launch_type: LaunchType,
    /// The PRIMARY deployment's task definition ARN.
    pub task_definition: String,
    pub deployments: Vec<DeploymentRecord>,
    pub maximum_percent: u32,
    pub minimum_healthy_percent: u32,
    #[serde(default)]
    pub circuit_breaker: Option<stored::DeploymentCircuitBreaker>,
    #[serde(default)]
    pub deployment_configuration: Option<stored::DeploymentConfiguration>,
    #[serde(default)]
    pub placement_constraints: Vec<stored::PlacementConstraint>,
    #[serde(default)]
    pub placement_strategy: Vec<stored::PlacementStrategy>,
    #[serde(default)]
    pub network_configuration: Option<stored::NetworkConfiguration>,
    #[serde(default)]
    pub load_balancers: Vec<stored::LoadBalancer>,
    #[serde(default)]
    pub service_registries: Vec<stored::ServiceRegistry>,
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
    pub capacity_provider_strategy: Vec<stored::CapacityProviderStrategyItem>,
    #[serde(default)]
    pub role_arn: Option<String>,
    /// The revision of the last deployment that COMPLETED (with `last_completed_task_definition`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_completed_revision: Option<String>,
    /// The id of the service deployment in flight ([`ServiceDeploymentRecord`]), if any.
    /// Invariant: every write of a live service deployment record also writes this record, so
    /// compare-on-revision of the service guards both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_service_deployment: Option<String>,
    /// `current_service_deployment` has not finished yet: the scheduler moves it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub service_deployment_in_flight: bool,
    /// Who deploys: ECS (rolling deployments), or an external deployer through task sets.
    #[serde(default, skip_serializing_if = "ControllerType::is_ecs")]
    pub deployment_controller: ControllerType,
    /// EXTERNAL and CODE_DEPLOY services: their task sets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_sets: Vec<TaskSetRecord>,
}

stored_enum! {
    /// [`ServiceRecord::deployment_controller`]: ECS's `DeploymentControllerType`.
    #[derive(Default)]
    pub enum ControllerType {
        #[default]
        Ecs = "ECS",
        CodeDeploy = "CODE_DEPLOY",
        External = "EXTERNAL",
    }
}

impl ControllerType {
    pub fn is_ecs(&self) -> bool {
        *self == ControllerType::Ecs
    }
}

impl From<ControllerType> for ecs::DeploymentControllerType {
    fn from(c: ControllerType) -> Self {
        match c {
            ControllerType::Ecs => Self::Ecs,
            ControllerType::CodeDeploy => Self::CodeDeploy,
            ControllerType::External => Self::External,
        }
    }
}

stored_enum! {
    /// [`TaskSetRecord::status`].
    pub enum TaskSetStatus {
        /// Serving production traffic; its settings are the service's.
        Primary = "PRIMARY",
        Active = "ACTIVE",
        /// Deleted: its tasks are being stopped.
        Draining = "DRAINING",
    }
}

/// A task set of an EXTERNAL or CODE_DEPLOY service (in its [`ServiceRecord`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskSetRecord {
    /// `ecs-svc/<n>`: its tasks' `startedBy`.
    pub id: String,
    pub status: TaskSetStatus,
    pub task_definition: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    /// Percent of the service's desired count (0–100).
    pub scale: f64,
    pub launch_type: LaunchType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<stored::NetworkConfiguration>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancers: Vec<stored::LoadBalancer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_registries: Vec<stored::ServiceRegistry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_provider_strategy: Vec<stored::CapacityProviderStrategyItem>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    pub created_at: f64,
    pub updated_at: f64,
}

impl DeploymentRecord {
    /// The service revision this deployment runs.
    pub fn revision(&self) -> &str {
        self.revision
            .as_deref()
            .unwrap_or_else(|| berth_scheduler::revision_of(&self.id))
    }
}

stored_enum! {
    /// [`ServiceDeploymentRecord::status`]: ECS's `ServiceDeploymentStatus`.
    pub enum ServiceDeploymentStatus {
        Pending = "PENDING",
        InProgress = "IN_PROGRESS",
        Successful = "SUCCESSFUL",
        Stopped = "STOPPED",
        StopRequested = "STOP_REQUESTED",
        RollbackRequested = "ROLLBACK_REQUESTED",
        RollbackInProgress = "ROLLBACK_IN_PROGRESS",
        RollbackSuccessful = "ROLLBACK_SUCCESSFUL",
        RollbackFailed = "ROLLBACK_FAILED",
    }
}

stored_enum! {
    /// [`ServiceDeploymentRecord::circuit_breaker`]: ECS's `ServiceDeploymentRollbackMonitorsStatus`.
    pub enum MonitorStatus {
        Disabled = "DISABLED",
        Monitoring = "MONITORING",
        MonitoringComplete = "MONITORING_COMPLETE",
        Triggered = "TRIGGERED",
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackRecord {
    pub reason: String,
    pub started_at: f64,
    /// The revision rolled back to.
    pub revision: String,
    /// The ECS deployment (`ecs-svc/<n>`) that runs it.
    pub deployment_id: String,
}

/// One rollout of a service to a target revision (ECS's `ServiceDeployment`), kept after it
/// finished as the service's deployment history. Stored at
/// `keys::service_deployment(cluster, service, id)`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceDeploymentRecord {
    pub id: String,
    pub cluster: String,
    pub service: String,
    /// The ECS deployment (`ecs-svc/<n>`) that rolls the target revision out.
    pub deployment_id: String,
    pub target_revision: String,
    /// The revisions running when it started (newest first).
    pub source_revisions: Vec<String>,
    pub status: ServiceDeploymentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    pub created_at: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<f64>,
    pub updated_at: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackRecord>,
    pub circuit_breaker: MonitorStatus,
    pub failure_count: u32,
    /// The circuit breaker's threshold when the deployment started.
    pub threshold: u32,
    /// The service's deployment configuration when the deployment started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_configuration: Option<stored::DeploymentConfiguration>,
    /// Each revision's task counts when it finished (ECS shows the counts of the moment a
    /// deployment completed); live counts until then.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub final_counts: Vec<RevisionCountRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevisionCountRecord {
    pub revision: String,
    pub requested: u32,
    pub running: u32,
    pub pending: u32,
}

impl ServiceDeploymentRecord {
    pub fn is_final(&self) -> bool {
        self.moving_parts().status.is_final()
    }

    /// The part the scheduler moves.
    pub fn moving_parts(&self) -> berth_scheduler::rollout::ServiceDeployment {
        use berth_scheduler::rollout::{Monitor, Rollback, ServiceDeployment, Status};
        ServiceDeployment {
            status: match self.status {
                ServiceDeploymentStatus::Pending => Status::Pending,
                ServiceDeploymentStatus::InProgress => Status::InProgress,
                ServiceDeploymentStatus::Successful => Status::Successful,
                ServiceDeploymentStatus::Stopped => Status::Stopped,
                ServiceDeploymentStatus::StopRequested => Status::StopRequested,
                ServiceDeploymentStatus::RollbackRequested => Status::RollbackRequested,
                ServiceDeploymentStatus::RollbackInProgress => Status::RollbackInProgress,
                ServiceDeploymentStatus::RollbackSuccessful => Status::RollbackSuccessful,
                ServiceDeploymentStatus::RollbackFailed => Status::RollbackFailed,
            },
            status_reason: self.status_reason.clone(),
            deployment_id: self.deployment_id.clone(),
            started_at: self.started_at,
            finished_at: self.finished_at,
            stopped_at: self.stopped_at,
            updated_at: self.updated_at,
            rollback: self.rollback.as_ref().map(|r| Rollback {
                reason: r.reason.clone(),
                started_at: r.started_at,
                revision: r.revision.clone(),
                deployment_id: r.deployment_id.clone(),
            }),
            circuit_breaker: match self.circuit_breaker {
                MonitorStatus::Disabled => Monitor::Disabled,
                MonitorStatus::Monitoring => Monitor::Monitoring,
                MonitorStatus::MonitoringComplete => Monitor::MonitoringComplete,
                MonitorStatus::Triggered => Monitor::Triggered,
            },
            failure_count: self.failure_count,
        }
    }

    /// Takes the moved parts back.
    pub fn set_moving_parts(&mut self, sd: berth_scheduler::rollout::ServiceDeployment) {
        use berth_scheduler::rollout::{Monitor, Status};
        self.status = match sd.status {
            Status::Pending => ServiceDeploymentStatus::Pending,
            Status::InProgress => ServiceDeploymentStatus::InProgress,
            Status::Successful => ServiceDeploymentStatus::Successful,
            Status::Stopped => ServiceDeploymentStatus::Stopped,
            Status::StopRequested => ServiceDeploymentStatus::StopRequested,
            Status::RollbackRequested => ServiceDeploymentStatus::RollbackRequested,
            Status::RollbackInProgress => ServiceDeploymentStatus::RollbackInProgress,
            Status::RollbackSuccessful => ServiceDeploymentStatus::RollbackSuccessful,
            Status::RollbackFailed => ServiceDeploymentStatus::RollbackFailed,
        };
        self.status_reason = sd.status_reason;
        self.deployment_id = sd.deployment_id;
        self.started_at = sd.started_at;
        self.finished_at = sd.finished_at;
        self.stopped_at = sd.stopped_at;
        self.updated_at = sd.updated_at;
        self.rollback = sd.rollback.map(|r| RollbackRecord {
            reason: r.reason,
            started_at: r.started_at,
            revision: r.revision,
            deployment_id: r.deployment_id,
        });
        self.circuit_breaker = match sd.circuit_breaker {
            Monitor::Disabled => MonitorStatus::Disabled,
            Monitor::Monitoring => MonitorStatus::Monitoring,
            Monitor::MonitoringComplete => MonitorStatus::MonitoringComplete,
            Monitor::Triggered => MonitorStatus::Triggered,
        };
        self.failure_count = sd.failure_count;
    }
}

/// A container image of a service revision: the image as the task definition names it, and
/// the digest its tasks actually ran, once one reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerImageRecord {
    pub container_name: String,
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
}

/// A service revision (ECS's `ServiceRevision`): what one deployment of a service runs.
/// Immutable once written, apart from the image digests its first tasks report. Stored at
/// `keys::service_revision(cluster, service, number)`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceRevisionRecord {
    /// The `<n>` of the deployment `ecs-svc/<n>` that created it.
    pub number: String,
    pub cluster: String,
    pub service: String,
    pub task_definition: String,
    pub launch_type: LaunchType,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_provider_strategy: Vec<stored::CapacityProviderStrategyItem>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancers: Vec<stored::LoadBalancer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_registries: Vec<stored::ServiceRegistry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<stored::NetworkConfiguration>,
    pub container_images: Vec<ContainerImageRecord>,
    pub created_at: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(group: &str, running: bool, gpu: i64, ids: &[&str], ports: &[u16]) -> TaskHold {
        TaskHold {
            group: group.into(),
            running,
            resources: ResourcesRecord {
                cpu: 128,
                memory: 256,
                gpu,
                gpu_ids: ids.iter().map(|s| s.to_string()).collect(),
                ports: ports.to_vec(),
                ports_udp: vec![],
            },
        }
    }

    fn instance(registered: ResourcesRecord) -> ContainerInstanceRecord {
        ContainerInstanceRecord {
            id: "i".into(),
            cluster: "c".into(),
            ec2_instance_id: None,
            status: InstanceStatus::Active,
            status_reason: None,
            registered_at: 0.0,
            registered,
            attributes: Default::default(),
            version_info: None,
            tags: vec![],
            generation: 0,
            version: 1,
            held: HeldRecord::default(),
        }
    }

    #[test]
    fn task_changes_move_the_instance_bookkeeping_once_per_write() {
        let mut inst = instance(ResourcesRecord::default());
        let placed = TaskRecord {
            id: "t".into(),
            group: "g".into(),
            resources: ResourcesRecord {
                cpu: 10,
                memory: 20,
                ..Default::default()
            },
            ..Default::default()
        };
        let other = TaskRecord {
            id: "u".into(),
            ..placed.clone()
        };
        // Two new tasks in one write: held for both, version and generation once.
        let a = inst.account_tasks(&[TaskChange::of(None, &placed), TaskChange::of(None, &other)]);
        assert_eq!(
            a,
            Accounted {
                changed: true,
                generation: Some(1)
            }
        );
        assert_eq!(
            (inst.version, inst.held.pending, inst.held.resources.cpu),
            (2, 2, 20)
        );

        // A stop request: the agent must learn it; nothing held moves yet.
        let stopping = TaskRecord {
            desired_status: TaskStatus::Stopped,
            ..placed.clone()
        };
        let a = inst.account_tasks(&[TaskChange::of(Some(&placed), &stopping)]);
        assert_eq!(
            a,
            Accounted {
                changed: true,
                generation: Some(2)
            }
        );
        assert_eq!(inst.version, 2);

        // The other task started: counters move, the agent already knows.
        let running = TaskRecord {
            last_status: TaskStatus::Running,
            started_at: Some(1.0),
            ..other.clone()
        };
        let a = inst.account_tasks(&[TaskChange::of(Some(&other), &running)]);
        assert_eq!(
            a,
            Accounted {
                changed: true,
                generation: None
            }
        );
        assert_eq!(
            (inst.version, inst.held.running, inst.held.pending),
            (3, 1, 1)
        );

        // A report that changes nothing the instance keeps.
        let same = inst.clone();
        let a = inst.account_tasks(&[TaskChange::of(Some(&running), &running)]);
        assert_eq!(a, Accounted::default());
        assert_eq!(
            (inst.version, inst.generation),
            (same.version, same.generation)
        );

        // Stopped: its hold is released and the agent is told.
        let stopped = TaskRecord {
            last_status: TaskStatus::Stopped,
            ..stopping.clone()
        };
        let a = inst.account_tasks(&[TaskChange::of(Some(&stopping), &stopped)]);
        assert_eq!(
            a,
            Accounted {
                changed: true,
                generation: Some(3)
            }
        );
        assert_eq!((inst.held.tasks(), inst.held.resources.cpu), (1, 10));

        // A force-deregistered instance holds nothing: its counters stay at zero.
        let mut gone = instance(ResourcesRecord::default());
        gone.status = InstanceStatus::Inactive;
        let a = gone.account_tasks(&[TaskChange::of(
            Some(&running),
            &TaskRecord {
                last_status: TaskStatus::Stopped,
                desired_status: TaskStatus::Stopped,
                ..running.clone()
            },
        )]);
        assert_eq!(a.generation, Some(1));
        assert_eq!((gone.held.tasks(), gone.version), (0, 1));
    }

    #[test]
    fn remaining_gpus_are_the_free_ids_and_never_more() {
        let mut inst = instance(ResourcesRecord {
            gpu: 3,
            gpu_ids: vec!["a".into(), "b".into(), "c".into()],
            ..Default::default()
        });
        inst.held.add(&hold("g", true, 1, &["b"], &[]));
        let r = inst.remaining();
        assert_eq!(
            (r.gpu, r.gpu_ids.clone()),
            (2, vec!["a".to_string(), "c".into()])
        );
        // A task holding GPUs by count only (placed before the ids were registered): the count
        // drops, and never above the ids that are still free.
        inst.held.add(&hold("g", true, 1, &[], &[]));
        let r = inst.remaining();
        assert_eq!(r.gpu, 1);
        inst.held.add(&hold("g", true, 0, &["a", "c"], &[]));
        assert_eq!(inst.remaining().gpu, 0);
    }

    #[test]
    fn held_counters_add_and_remove_exactly() {
        let mut inst = instance(ResourcesRecord {
            cpu: 1024,
            memory: 2048,
            ports: vec![22],
            ..Default::default()
        });
        let a = hold("service:web", false, 0, &[], &[80]);
        let b = hold("service:web", false, 0, &[], &[32768]);
        // A dynamic port Docker reused before the old holder's STOPPED report arrived.
        let c = hold("family:batch", true, 0, &[], &[32768]);
        for h in [&a, &b, &c] {
            assert!(inst.held.replace(None, Some(h)));
        }
        let r = inst.remaining();
        assert_eq!((r.cpu, r.memory), (1024 - 3 * 128, 2048 - 3 * 256));
        assert_eq!(r.ports, vec![22, 80, 32768]);
        assert_eq!((inst.running_tasks(), inst.pending_tasks()), (1, 2));
        assert_eq!(inst.held.groups.get("service:web"), Some(&2));
        // a reports RUNNING: pending moves to running, nothing else changes.
        let a_running = TaskHold {
            running: true,
            ..a.clone()
        };
        assert!(!inst.held.replace(Some(&a), Some(&a)));
        assert!(inst.held.replace(Some(&a), Some(&a_running)));
        assert_eq!((inst.running_tasks(), inst.pending_tasks()), (2, 1));
        // b stops: c still holds the reused port.
        inst.held.replace(Some(&b), None);
        assert_eq!(inst.remaining().ports, vec![22, 80, 32768]);
        inst.held.replace(Some(&c), None);
        inst.held.replace(Some(&a_running), None);
        assert_eq!(inst.held, HeldRecord::default());
        assert_eq!(inst.remaining(), inst.registered);
    }

    #[test]
    fn records_listing_their_tasks_are_read_into_counters() {
        let legacy = serde_json::json!({
            "id": "i", "cluster": "c", "status": "ACTIVE", "registered_at": 0.0,
            "registered": {"cpu": 1024, "memory": 2048, "ports": [22], "ports_udp": []},
            "generation": 3, "version": 4,
            "tasks": [
                {"task_id": "t1", "group": "service:web", "family": "web", "service": "web",
                 "running": true,
                 "resources": {"cpu": 256, "memory": 512, "ports": [80, 32768], "ports_udp": []}},
                {"task_id": "t2", "group": "family:web", "family": "web", "running": false,
                 "resources": {"cpu": 128, "memory": 128, "ports": [], "ports_udp": [53]}}
            ]
        });
        let inst: ContainerInstanceRecord = serde_json::from_value(legacy).unwrap();
        let r = inst.remaining();
        assert_eq!((r.cpu, r.memory), (1024 - 384, 2048 - 640));
        assert_eq!((r.ports, r.ports_udp), (vec![22, 80, 32768], vec![53]));
        assert_eq!((inst.running_tasks(), inst.pending_tasks()), (1, 1));
        // Written back in the new form, and read again the same.
        let again: ContainerInstanceRecord =
            serde_json::from_slice(&serde_json::to_vec(&inst).unwrap()).unwrap();
        assert_eq!(again.held, inst.held);
        assert!(!serde_json::to_string(&inst).unwrap().contains("\"tasks\""));
    }

    #[test]
    fn a_task_holds_its_bound_host_ports_and_gpus_until_stopped() {
        let mut t = TaskRecord {
            group: "service:web".into(),
            last_status: TaskStatus::Pending,
            resources: ResourcesRecord {
                cpu: 256,
                memory: 512,
                gpu: 1,
                ports: vec![80],
                ..Default::default()
            },
            containers: vec![ContainerRecord {
                gpu_ids: vec!["g1".into()],
                network_bindings: vec![
                    stored::NetworkBinding {
                        host_port: Some(32768),
                        protocol: Some(stored::TransportProtocol::Tcp),
                        ..Default::default()
                    },
                    stored::NetworkBinding {
                        host_port: Some(80),
                        ..Default::default()
                    },
                    stored::NetworkBinding {
                        host_port: Some(5353),
                        protocol: Some(stored::TransportProtocol::Udp),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        let h = t.hold().unwrap();
        assert_eq!(h.resources.ports, vec![80, 32768]);
        assert_eq!(h.resources.gpu_ids, vec!["g1".to_string()]);
        assert!(!h.running);
        t.started_at = Some(1.0);
        t.last_status = TaskStatus::Running;
        assert!(t.hold().unwrap().running);
        t.last_status = TaskStatus::Stopped;
        assert_eq!(t.hold(), None);
    }

    /// Reads `stored` (a record as berth wrote it while statuses were strings, with `@` standing
    /// for each value in `values` in turn) and writes it back: the same bytes.
    fn reads_and_writes_back<T: Serialize + serde::de::DeserializeOwned>(
        stored: &str,
        values: &[&str],
    ) {
        for v in values {
            let stored = stored.replace('@', v);
            let rec: T = serde_json::from_str(&stored)
                .unwrap_or_else(|e| panic!("{stored} no longer reads: {e}"));
            assert_eq!(serde_json::to_string(&rec).unwrap(), stored);
        }
    }

    #[test]
    fn stored_cluster_records_read_and_write_back_unchanged() {
        reads_and_writes_back::<ClusterRecord>(
            r#"{"name":"web","status":"@","created_at":1700000000.5,"settings":[],"configuration":null,"capacity_providers":[],"default_capacity_provider_strategy":[],"service_connect_namespace":null,"tags":[{"key":"k","value":"v"}]}"#,
            &["ACTIVE", "INACTIVE"],
        );
    }

    #[test]
    fn stored_account_setting_records_read_and_write_back_unchanged() {
        reads_and_writes_back::<AccountSettingRecord>(
            r#"{"name":"containerInsights","value":"enabled","principal_arn":"arn:aws:iam::000000000000:root","kind":"@"}"#,
            &["user"],
        );
    }

    #[test]
    fn stored_instance_records_read_and_write_back_unchanged() {
        reads_and_writes_back::<ContainerInstanceRecord>(
            r#"{"id":"i","cluster":"c","ec2_instance_id":"i-1","status":"@","status_reason":null,"registered_at":1.5,"registered":{"cpu":1024,"memory":2048,"gpu":0,"ports":[22]},"attributes":[{"name":"ecs.os-type","value":"linux"}],"version_info":null,"tags":[],"generation":2,"version":3,"held":{"resources":{"cpu":256,"memory":512,"gpu":0,"ports":[80]},"running":1,"pending":0,"groups":{"service:web":1}}}"#,
            &["ACTIVE", "DRAINING", "INACTIVE"],
        );
    }

    #[test]
    fn stored_task_records_read_and_write_back_unchanged() {
        let task = r#"{"id":"t","cluster":"c","container_instance_id":"i","task_definition_arn":"arn:aws:ecs:us-east-1:000000000000:task-definition/web:1","family":"web","revision":1,"desired_status":"<desired>","last_status":"<last>","launch_type":"<launch>","group":"service:web","started_by":"ecs-svc/1","created_at":1.0,"started_at":2.0,"stop_code":"EssentialContainerExited","health_status":"<task-health>","version":4,"resources":{"cpu":256,"memory":512,"gpu":0},"overrides":{},"containers":[{"name":"app","container_arn":"arn:c","image":"nginx","last_status":"@","exit_code":1,"health_status":"<health>","essential":true,"cpu":0,"memory":128}]}"#;
        // Every value berth ever wrote to each field.
        for (desired, last) in [("RUNNING", "PROVISIONING"), ("STOPPED", "STOPPED")] {
            for launch in ["EC2", "EXTERNAL"] {
                for (task_health, health) in [("HEALTHY", "HEALTHY"), ("UNHEALTHY", "UNKNOWN")] {
                    let stored = task
                        .replace("<desired>", desired)
                        .replace("<last>", last)
                        .replace("<launch>", launch)
                        .replace("<task-health>", task_health)
                        .replace("<health>", health);
                    reads_and_writes_back::<TaskRecord>(
                        &stored,
                        &["PENDING", "RUNNING", "STOPPED"],
                    );
                }
            }
        }
        for s in TaskStatus::ALL {
            reads_and_writes_back::<TaskRecord>(
                &task
                    .replace("<desired>", "RUNNING")
                    .replace("<last>", s.as_str())
                    .replace("<launch>", "EC2")
                    .replace(r#","health_status":"<task-health>""#, "")
                    .replace(r#","health_status":"<health>""#, ""),
                &["PENDING"],
            );
        }
        // A container status outside ECS's three (berth once stored whatever a report said)
        // reads as PENDING, which it ranked as.
        let odd = task
            .replace("<desired>", "RUNNING")
            .replace("<last>", "PENDING")
            .replace("<launch>", "EC2")
            .replace("<task-health>", "HEALTHY")
            .replace("<health>", "HEALTHY")
            .replace('@', "PULLED");
        let t: TaskRecord = serde_json::from_str(&odd).unwrap();
        assert_eq!(t.containers[0].last_status, ContainerStatus::Pending);
    }

    #[test]
    fn stored_service_records_read_and_write_back_unchanged() {
        let service = r#"{"name":"web","cluster":"c","status":"STATUS","desired_count":2,"scheduling_strategy":"STRATEGY","launch_type":"LAUNCH","task_definition":"td:2","deployments":[{"id":"ecs-svc/2","status":"PRIMARY","task_definition":"td:2","rollout_state":"@","rollout_state_reason":"ECS deployment in progress.","created_at":2.0,"updated_at":2.0,"next_launch_at":0.0,"failures_seen":0},{"id":"ecs-svc/1","status":"ACTIVE","task_definition":"td:1","rollout_state":"@","rollout_state_reason":null,"created_at":1.0,"updated_at":1.5,"next_launch_at":0.0,"failures_seen":1}],"maximum_percent":200,"minimum_healthy_percent":100,"circuit_breaker":null,"deployment_configuration":null,"placement_constraints":[],"placement_strategy":[],"network_configuration":null,"load_balancers":[],"service_registries":[],"health_check_grace_period_seconds":null,"propagate_tags":null,"enable_ecs_managed_tags":false,"enable_execute_command":false,"tags":[],"created_at":1.0,"created_by":"arn:aws:iam::000000000000:root","events":[],"last_steady_event_at":null,"last_completed_task_definition":null,"client_token":null,"capacity_provider_strategy":[],"role_arn":null}"#;
        for status in ["ACTIVE", "DRAINING", "INACTIVE"] {
            for strategy in ["REPLICA", "DAEMON"] {
                for launch in ["EC2", "EXTERNAL"] {
                    reads_and_writes_back::<ServiceRecord>(
                        &service
                            .replace("STATUS", status)
                            .replace("STRATEGY", strategy)
                            .replace("LAUNCH", launch),
                        &["IN_PROGRESS", "COMPLETED", "FAILED"],
                    );
                }
            }
        }
    }

    /// Every variant is stored as its `as_str` and read back as itself.
    fn round_trips<T>(all: &[T], as_str: fn(T) -> &'static str, parse: fn(&str) -> Option<T>)
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug + Copy,
    {
        for &v in all {
            let json = serde_json::to_string(&v).unwrap();
            assert_eq!(json, format!("\"{}\"", as_str(v)));
            assert_eq!(serde_json::from_str::<T>(&json).unwrap(), v);
            assert_eq!(parse(as_str(v)), Some(v));
        }
    }

    #[test]
    fn cluster_status_round_trips() {
        round_trips(
            ClusterStatus::ALL,
            ClusterStatus::as_str,
            ClusterStatus::parse,
        );
    }

    #[test]
    fn service_deployment_statuses_round_trip_and_match_the_wire() {
        round_trips(
            ServiceDeploymentStatus::ALL,
            ServiceDeploymentStatus::as_str,
            ServiceDeploymentStatus::parse,
        );
        round_trips(
            MonitorStatus::ALL,
            MonitorStatus::as_str,
            MonitorStatus::parse,
        );
        // Every ECS spelling is one of ours and back.
        for v in ecs::ServiceDeploymentStatus::VALUES {
            assert!(ServiceDeploymentStatus::parse(v).is_some(), "{v}");
        }
        for v in ecs::ServiceDeploymentRollbackMonitorsStatus::VALUES {
            assert!(MonitorStatus::parse(v).is_some(), "{v}");
        }
        // A record's moving parts survive the trip through the scheduler's state machine.
        for &status in ServiceDeploymentStatus::ALL {
            for &cb in MonitorStatus::ALL {
                let r = ServiceDeploymentRecord {
                    id: "x".into(),
                    cluster: "c".into(),
                    service: "s".into(),
                    deployment_id: "ecs-svc/1".into(),
                    target_revision: "1".into(),
                    source_revisions: vec![],
                    status,
                    status_reason: Some("r".into()),
                    created_at: 1.0,
                    started_at: Some(2.0),
                    finished_at: None,
                    stopped_at: Some(3.0),
                    updated_at: 4.0,
                    rollback: Some(RollbackRecord {
                        reason: "why".into(),
                        started_at: 2.5,
                        revision: "0".into(),
                        deployment_id: "ecs-svc/2".into(),
                    }),
                    circuit_breaker: cb,
                    failure_count: 2,
                    threshold: 3,
                    deployment_configuration: None,
                    final_counts: vec![],
                };
                let mut back = r.clone();
                back.status = ServiceDeploymentStatus::Pending;
                back.circuit_breaker = MonitorStatus::Disabled;
                back.rollback = None;
                back.set_moving_parts(r.moving_parts());
                assert_eq!(
                    serde_json::to_string(&back).unwrap(),
                    serde_json::to_string(&r).unwrap()
                );
            }
        }
    }

    #[test]
    fn instance_status_round_trips() {
        round_trips(
            InstanceStatus::ALL,
            InstanceStatus::as_str,
            InstanceStatus::parse,
        );
        for &s in InstanceStatus::ALL {
            let p: berth_placement::InstanceStatus = s.into();
            assert_eq!(p.as_str(), s.as_str());
        }
    }

    #[test]
    fn container_status_round_trips() {
        round_trips(
            ContainerStatus::ALL,
            ContainerStatus::as_str,
            ContainerStatus::parse,
        );
    }

    #[test]
    fn health_status_round_trips() {
        round_trips(HealthStatus::ALL, HealthStatus::as_str, HealthStatus::parse);
        for &h in HealthStatus::ALL {
            assert_eq!(ecs::HealthStatus::from(h).as_str(), h.as_str());
        }
    }

    #[test]
    fn launch_type_round_trips() {
        round_trips(LaunchType::ALL, LaunchType::as_str, LaunchType::parse);
        for &l in LaunchType::ALL {
            assert_eq!(ecs::LaunchType::from(l).as_str(), l.as_str());
        }
    }

    #[test]
    fn service_status_round_trips() {
        round_trips(
            ServiceStatus::ALL,
            ServiceStatus::as_str,
            ServiceStatus::parse,
        );
    }

    #[test]
    fn scheduling_strategy_round_trips() {
        round_trips(
            SchedulingStrategy::ALL,
            SchedulingStrategy::as_str,
            SchedulingStrategy::parse,
        );
        for &s in SchedulingStrategy::ALL {
            assert_eq!(ecs::SchedulingStrategy::from(s).as_str(), s.as_str());
        }
    }

    #[test]
    fn deployment_status_round_trips() {
        round_trips(
            DeploymentStatus::ALL,
            DeploymentStatus::as_str,
            DeploymentStatus::parse,
        );
    }

    #[test]
    fn rollout_state_round_trips() {
        round_trips(RolloutState::ALL, RolloutState::as_str, RolloutState::parse);
        for &r in RolloutState::ALL {
            assert_eq!(ecs::DeploymentRolloutState::from(r).as_str(), r.as_str());
        }
    }

    #[test]
    fn setting_kind_round_trips() {
        round_trips(SettingKind::ALL, SettingKind::as_str, SettingKind::parse);
    }

    #[test]
    fn task_status_round_trips() {
        #[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
        struct Stored(#[serde(with = "task_status")] TaskStatus);
        let all = TaskStatus::ALL.map(Stored);
        round_trips(&all, |s| s.0.as_str(), |s| TaskStatus::parse(s).map(Stored));
        assert!(serde_json::from_str::<Stored>("\"RUNNNG\"").is_err());
    }
}
