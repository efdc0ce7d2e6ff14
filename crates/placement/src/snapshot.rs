//! The cluster snapshot the engine works on: container instances, their resources and the tasks
//! already on them. The control plane builds one from its store; the engine never mutates it.

/// The availability-zone attribute ECS sets on every EC2 container instance.
pub const AZ_ATTRIBUTE: &str = "ecs.availability-zone";
/// The attribute that marks an EXTERNAL (ECS Anywhere) container instance.
pub const EXTERNAL_ATTRIBUTE: &str = "ecs.capability.external";

/// A container instance's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstanceStatus {
    /// `ACTIVE`: the only status that accepts new tasks.
    Active,
    /// `DRAINING`: no new tasks are placed on it.
    Draining,
    /// `REGISTERING`.
    Registering,
    /// `DEREGISTERING`.
    Deregistering,
    /// `REGISTRATION_FAILED`.
    RegistrationFailed,
    /// `INACTIVE`: deregistered.
    Inactive,
}

impl InstanceStatus {
    /// The ECS wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Active => "ACTIVE",
            InstanceStatus::Draining => "DRAINING",
            InstanceStatus::Registering => "REGISTERING",
            InstanceStatus::Deregistering => "DEREGISTERING",
            InstanceStatus::RegistrationFailed => "REGISTRATION_FAILED",
            InstanceStatus::Inactive => "INACTIVE",
        }
    }

    /// Parses the ECS wire spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ACTIVE" => InstanceStatus::Active,
            "DRAINING" => InstanceStatus::Draining,
            "REGISTERING" => InstanceStatus::Registering,
            "DEREGISTERING" => InstanceStatus::Deregistering,
            "REGISTRATION_FAILED" => InstanceStatus::RegistrationFailed,
            "INACTIVE" => InstanceStatus::Inactive,
            _ => return None,
        })
    }
}

/// A container instance attribute: a name and an optional value (`ecs.capability.*` attributes
/// usually have none).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attribute {
    /// Attribute name, e.g. `ecs.instance-type`.
    pub name: String,
    /// Attribute value, e.g. `t2.small`; `None` for a name-only attribute.
    pub value: Option<String>,
}

impl Attribute {
    /// An attribute with a value.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: Some(value.into()),
        }
    }

    /// A name-only attribute.
    pub fn flag(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: None,
        }
    }
}

/// A set of resources as ECS reports them in `registeredResources` / `remainingResources`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// `CPU`, in CPU units (1024 per vCPU).
    pub cpu: i64,
    /// `MEMORY`, in MiB.
    pub memory: i64,
    /// `GPU`, a count of GPUs.
    pub gpu: i64,
    /// `PORTS`: in `remainingResources`, the TCP host ports that are taken (reserved plus used),
    /// exactly as ECS lists them.
    pub tcp_ports: Vec<u16>,
    /// `PORTS_UDP`: the UDP host ports that are taken.
    pub udp_ports: Vec<u16>,
}

/// Tasks already on an instance, as far as placement cares: how many of one task group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    /// The task group: `service:<name>` for service tasks, `family:<family>` by default for
    /// standalone tasks, or whatever `group` RunTask was given.
    pub group: String,
    /// How many tasks of the group (several entries of one group add up).
    pub count: u32,
}

impl TaskInfo {
    /// One task in `group`.
    pub fn new(group: impl Into<String>) -> Self {
        Self::many(group, 1)
    }

    /// `count` tasks in `group`.
    pub fn many(group: impl Into<String>, count: u32) -> Self {
        Self {
            group: group.into(),
            count,
        }
    }
}

/// One container instance in the snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerInstance {
    /// `containerInstanceArn`. Its last path segment is the container instance ID.
    pub arn: String,
    /// `status`.
    pub status: InstanceStatus,
    /// `agentConnected`.
    pub agent_connected: bool,
    /// `attributes`, including `ecs.availability-zone`.
    pub attributes: Vec<Attribute>,
    /// `ec2InstanceId`.
    pub ec2_instance_id: Option<String>,
    /// `versionInfo.agentVersion`, e.g. `1.14.5`.
    pub agent_version: Option<String>,
    /// `registeredAt`, seconds since the Unix epoch.
    pub registered_at: f64,
    /// `registeredResources`.
    pub registered: Resources,
    /// `remainingResources`.
    pub remaining: Resources,
    /// `runningTasksCount`.
    pub running_tasks_count: u32,
    /// The tasks on the instance (running and pending) that count for groups and spread, by
    /// group.
    pub tasks: Vec<TaskInfo>,
}

impl ContainerInstance {
    /// An `ACTIVE`, connected instance with the given ARN and resources and nothing else.
    pub fn new(arn: impl Into<String>, cpu: i64, memory: i64) -> Self {
        let res = Resources {
            cpu,
            memory,
            ..Resources::default()
        };
        Self {
            arn: arn.into(),
            status: InstanceStatus::Active,
            agent_connected: true,
            attributes: Vec::new(),
            ec2_instance_id: None,
            agent_version: None,
            registered_at: 0.0,
            registered: res.clone(),
            remaining: res,
            running_tasks_count: 0,
            tasks: Vec::new(),
        }
    }

    /// The container instance ID: the last `/`-separated segment of the ARN.
    pub fn id(&self) -> &str {
        self.arn.rsplit('/').next().unwrap_or(&self.arn)
    }

    /// Looks an attribute up: `None` when absent, `Some(None)` when present without a value.
    pub fn attribute(&self, name: &str) -> Option<Option<&str>> {
        self.attributes
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.value.as_deref())
    }

    /// The `ecs.availability-zone` attribute value.
    pub fn availability_zone(&self) -> Option<&str> {
        self.attribute(AZ_ATTRIBUTE).flatten()
    }

    /// Whether the instance is an EXTERNAL (ECS Anywhere) instance.
    pub fn is_external(&self) -> bool {
        self.attribute(EXTERNAL_ATTRIBUTE).is_some()
    }
}

/// A point-in-time view of one cluster's container instances.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterSnapshot {
    /// The instances, in any order. Results refer to them by index into this vector.
    pub instances: Vec<ContainerInstance>,
}

impl ClusterSnapshot {
    /// A snapshot of `instances`.
    pub fn new(instances: Vec<ContainerInstance>) -> Self {
        Self { instances }
    }
}

/// What a cluster query expression is evaluated against: an instance plus, optionally, tasks the
/// current placement call has already put on it (they count for `task:group` and
/// `runningTasksCount`).
#[derive(Debug, Clone, Copy)]
pub struct InstanceView<'a> {
    /// The instance.
    pub instance: &'a ContainerInstance,
    /// Groups of tasks placed on it by the current call, not yet in the snapshot.
    pub extra_groups: &'a [&'a str],
}

impl<'a> InstanceView<'a> {
    /// A view of `instance` as the snapshot has it.
    pub fn new(instance: &'a ContainerInstance) -> Self {
        Self {
            instance,
            extra_groups: &[],
        }
    }

    /// `runningTasksCount` including tasks placed by the current call.
    pub fn running_tasks_count(&self) -> u64 {
        u64::from(self.instance.running_tasks_count) + self.extra_groups.len() as u64
    }

    /// Every task group on the instance (repeats possible).
    pub fn groups(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.instance
            .tasks
            .iter()
            .filter(|t| t.count > 0)
            .map(|t| t.group.as_str())
            .chain(self.extra_groups.iter().copied())
    }
}
