//! Tasks: RunTask, StartTask, StopTask, ListTasks, DescribeTasks, and the agent's state reports
//! SubmitTaskStateChange / SubmitContainerStateChange.
//!
//! desiredStatus is written here by the API (RunTask/StopTask); lastStatus only by the agent's
//! reports, and only forward (`TaskStatus::can_become`). A task holds its resources on its
//! instance (counted in the instance record's `held`, changed in the same transaction as the task)
//! from placement until the agent reports STOPPED; every
//! change to what an instance should run bumps the instance's generation, which wakes its agent.

use super::args::{
    active_cluster, cluster_arg, decode_token, encode_token, instance_id, max_results,
};
use super::{tagging, taskdefs};
use crate::indexes::term;
use crate::keys;
use crate::records::{
    convert, tags_to_wire, ClientTokenRecord, ContainerInstanceRecord, ContainerRecord,
    ContainerStatus, HealthStatus, LaunchType, ResourcesRecord, TaskChange, TaskRecord,
};
use crate::state::Ctx;
use crate::stored;
use berth_core::lifecycle::TaskStatus;
use berth_placement as placement;
use berth_service::codec::now_epoch;
use berth_service::repo::{to_bytes, Attempt, Repo};
use berth_service::ApiError;
use berth_store::{Compare, Txn};
use berth_wire::ecs::{self, NetworkMode};
use std::collections::HashMap;
use std::sync::Arc;

/// ECS: RunTask places at most 10 tasks per call.
pub const MAX_RUN_COUNT: i32 = 10;

/// The tasks that hold resources on an instance (placed, not STOPPED yet), in key order,
/// through the tasks index's `live` term.
pub(crate) async fn live_on_instance(
    ctx: &Ctx,
    cluster: &str,
    instance_id: &str,
) -> Result<Vec<Arc<TaskRecord>>, ApiError> {
    ctx.app
        .repo
        .index_all(
            crate::indexes::TASKS,
            &term::live(cluster, instance_id),
            &keys::tasks_in(cluster),
            |_, t: &Arc<TaskRecord>| {
                (t.container_instance_id == instance_id && t.is_live()).then(|| t.clone())
            },
        )
        .await
}

/// Every task of `group` in `cluster` (both desired statuses), in key order, through the tasks
/// index (see `indexes`).
pub(crate) async fn group_tasks(
    ctx: &Ctx,
    cluster: &str,
    group: &str,
) -> Result<Vec<Arc<TaskRecord>>, ApiError> {
    let mut found = Vec::new();
    for bucket in ["RUNNING", "STOPPED"] {
        found.extend(
            ctx.app
                .repo
                .index_all(
                    crate::indexes::TASKS,
                    &term::group(cluster, bucket, group),
                    &keys::tasks_in(cluster),
                    |k, t: &Arc<TaskRecord>| {
                        (t.group == group
                            && crate::indexes::desired_bucket(t.desired_status.as_str()) == bucket)
                            .then(|| (k.to_string(), t.clone()))
                    },
                )
                .await?,
        );
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found.into_iter().map(|(_, t)| t).collect())
}

fn placement_error(e: placement::PlacementError) -> ApiError {
    ApiError::new(e.kind.as_str(), e.message)
}

/// RunTask/StartTask container overrides by container name.
fn overrides_by_name(overrides: &ecs::TaskOverride) -> HashMap<&str, &ecs::ContainerOverride> {
    overrides
        .container_overrides
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|o| Some((o.name.as_deref()?, o)))
        .collect()
}

/// The GPUs one container asks for: its `resourceRequirements` of type GPU (an override's first).
fn gpu_count(c: &ecs::ContainerDefinition, o: Option<&&ecs::ContainerOverride>) -> i64 {
    o.and_then(|o| o.resource_requirements.as_ref())
        .or(c.resource_requirements.as_ref())
        .into_iter()
        .flatten()
        .filter(|rr| rr.type_ == Some(ecs::ResourceType::Gpu))
        .filter_map(|rr| rr.value.as_deref()?.parse::<i64>().ok())
        .sum()
}

/// What one task of `td` with `overrides` takes from its instance.
pub(crate) fn requirements(
    td: &ecs::TaskDefinition,
    overrides: &ecs::TaskOverride,
) -> Result<ResourcesRecord, ApiError> {
    let mode = td.network_mode.unwrap_or(NetworkMode::Bridge);
    let ovr = overrides_by_name(overrides);
    let mut r = ResourcesRecord::default();
    for c in td.container_definitions.as_deref().unwrap_or_default() {
        let o = c.name.as_deref().and_then(|n| ovr.get(n));
        r.cpu += o.and_then(|o| o.cpu).unwrap_or(c.cpu) as i64;
        let mem = o.and_then(|o| o.memory).or(c.memory);
        let res = o
            .and_then(|o| o.memory_reservation)
            .or(c.memory_reservation);
        r.memory += mem.or(res).unwrap_or(0) as i64;
        r.gpu += gpu_count(c, o);
        for pm in c.port_mappings.as_deref().unwrap_or_default() {
            let port = match mode {
                NetworkMode::Bridge => pm.host_port.filter(|p| *p != 0),
                NetworkMode::Host => pm.host_port.or(pm.container_port),
                _ => None,
            };
            if let Some(p) = port.and_then(|p| u16::try_from(p).ok()) {
                if pm.protocol == Some(ecs::TransportProtocol::Udp) {
                    r.ports_udp.push(p);
                } else {
                    r.ports.push(p);
                }
            }
        }
    }
    let task_cpu = overrides.cpu.as_deref().or(td.cpu.as_deref());
    if let Some(cpu) = task_cpu {
        r.cpu = berth_core::units::parse_task_cpu(cpu)
            .map_err(|e| ApiError::invalid_parameter(e.to_string()))? as i64;
    }
    let task_mem = overrides.memory.as_deref().or(td.memory.as_deref());
    if let Some(mem) = task_mem {
        r.memory = berth_core::units::parse_task_memory(mem)
            .map_err(|e| ApiError::invalid_parameter(e.to_string()))? as i64;
    }
    Ok(r)
}

fn container_arn(ctx: &Ctx, cluster: &str, task_id: &str, name: &str) -> String {
    // Stable per (task, container): a name-derived suffix keeps the ARN deterministic.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in task_id.bytes().chain(name.bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    ctx.app.scope.ecs_arn(&format!(
        "container/{cluster}/{task_id}/{:016x}{:016x}",
        h,
        h.rotate_left(17)
    ))
}

fn container_to_wire(ctx: &Ctx, t: &TaskRecord, c: &ContainerRecord) -> ecs::Container {
    ecs::Container {
        container_arn: Some(c.container_arn.clone()),
        task_arn: Some(ctx.app.scope.task_arn(&t.cluster, &t.id)),
        name: Some(c.name.clone()),
        image: Some(c.image.clone()),
        image_digest: c.image_digest.clone(),
        runtime_id: c.runtime_id.clone(),
        last_status: Some(c.last_status.as_str().to_string()),
        exit_code: c.exit_code,
        reason: c.reason.clone(),
        network_bindings: Some(convert(&c.network_bindings)),
        network_interfaces: Some(convert(&c.network_interfaces)),
        health_status: c.health_status.map(ecs::HealthStatus::from),
        cpu: Some(c.cpu.to_string()),
        memory: c.memory.map(|m| m.to_string()),
        memory_reservation: c.memory_reservation.map(|m| m.to_string()),
        gpu_ids: (!c.gpu_ids.is_empty()).then(|| c.gpu_ids.clone()),
        ..Default::default()
    }
}

pub(crate) fn to_wire(ctx: &Ctx, t: &TaskRecord, include_tags: bool) -> ecs::Task {
    let stop_code = t.stop_code.as_deref().and_then(|c| match c {
        "TaskFailedToStart" => Some(ecs::TaskStopCode::TaskFailedToStart),
        "EssentialContainerExited" => Some(ecs::TaskStopCode::EssentialContainerExited),
        "UserInitiated" => Some(ecs::TaskStopCode::UserInitiated),
        "ServiceSchedulerInitiated" => Some(ecs::TaskStopCode::ServiceSchedulerInitiated),
        "SpotInterruption" => Some(ecs::TaskStopCode::SpotInterruption),
        "TerminationNotice" => Some(ecs::TaskStopCode::TerminationNotice),
        _ => None,
    });
    let connected = t.connectivity_at.is_some();
    ecs::Task {
        attachments: Some(convert(&t.attachments)),
        attributes: Some(vec![ecs::Attribute {
            name: Some("ecs.cpu-architecture".into()),
            value: Some(std::env::consts::ARCH.replace("aarch64", "arm64")),
            ..Default::default()
        }]),
        availability_zone: t.availability_zone.clone(),
        cluster_arn: Some(ctx.app.scope.cluster_arn(&t.cluster)),
        connectivity: connected.then_some(ecs::Connectivity::Connected),
        connectivity_at: t.connectivity_at,
        container_instance_arn: Some(
            ctx.app
                .scope
                .container_instance_arn(&t.cluster, &t.container_instance_id),
        ),
        containers: Some(
            t.containers
                .iter()
                .map(|c| container_to_wire(ctx, t, c))
                .collect(),
        ),
        cpu: Some(t.cpu.clone().unwrap_or_else(|| t.resources.cpu.to_string())),
        created_at: Some(t.created_at),
        desired_status: Some(t.desired_status.as_str().to_string()),
        enable_execute_command: t.enable_execute_command,
        execution_stopped_at: t.execution_stopped_at,
        group: Some(t.group.clone()),
        health_status: Some(
            t.health_status
                .map_or(ecs::HealthStatus::Unknown, Into::into),
        ),
        last_status: Some(t.last_status.as_str().to_string()),
        launch_type: Some(t.launch_type.into()),
        memory: Some(
            t.memory
                .clone()
                .unwrap_or_else(|| t.resources.memory.to_string()),
        ),
        overrides: Some({
            let mut o = ecs::TaskOverride::from(t.overrides.clone());
            o.container_overrides.get_or_insert_with(Vec::new);
            o.inference_accelerator_overrides
                .get_or_insert_with(Vec::new);
            o
        }),
        pull_started_at: t.pull_started_at,
        pull_stopped_at: t.pull_stopped_at,
        started_at: t.started_at,
        started_by: t.started_by.clone(),
        stop_code,
        stopped_at: t.stopped_at,
        stopped_reason: t.stopped_reason.clone(),
        stopping_at: t.stopping_at,
        tags: Some(if include_tags {
            tags_to_wire(&t.tags)
        } else {
            vec![]
        }),
        task_arn: Some(ctx.app.scope.task_arn(&t.cluster, &t.id)),
        task_definition_arn: Some(t.task_definition_arn.clone()),
        version: t.version,
        ..Default::default()
    }
}

/// Everything RunTask, StartTask and the service scheduler share once a launch is understood.
pub(crate) struct Launch {
    pub(crate) cluster: String,
    pub(crate) td: ecs::TaskDefinition,
    pub(crate) family: String,
    pub(crate) revision: u32,
    pub(crate) overrides: ecs::TaskOverride,
    pub(crate) resources: ResourcesRecord,
    pub(crate) group: String,
    pub(crate) started_by: Option<String>,
    pub(crate) launch_type: LaunchType,
    pub(crate) tags: Vec<crate::records::Tag>,
    pub(crate) enable_execute_command: bool,
    /// awsvpc subnets/security groups (RunTask/StartTask `networkConfiguration`, a service's).
    pub(crate) network_configuration: Option<ecs::NetworkConfiguration>,
}

/// What a launch did.
pub(crate) struct Launched {
    pub(crate) tasks: Vec<TaskRecord>,
    pub(crate) failures: Vec<ecs::Failure>,
    /// The placement explanation for service events when a task could not be placed.
    pub(crate) event: Option<String>,
}

fn new_task(
    ctx: &Ctx,
    l: &Launch,
    inst: &ContainerInstanceRecord,
    now: f64,
    client_token: Option<String>,
) -> TaskRecord {
    let id = berth_core::time_ordered_id((now * 1000.0) as u64, rand::random());
    let ovr: HashMap<&str, &ecs::ContainerOverride> = l
        .overrides
        .container_overrides
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|o| Some((o.name.as_deref()?, o)))
        .collect();
    let containers =
        l.td.container_definitions
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|c| {
                let name = c.name.clone().unwrap_or_default();
                let o = ovr.get(name.as_str());
                ContainerRecord {
                    container_arn: container_arn(ctx, &l.cluster, &id, &name),
                    image: c.image.clone().unwrap_or_default(),
                    last_status: ContainerStatus::Pending,
                    essential: c.essential.unwrap_or(true),
                    cpu: o.and_then(|o| o.cpu).unwrap_or(c.cpu),
                    memory: o.and_then(|o| o.memory).or(c.memory),
                    memory_reservation: o
                        .and_then(|o| o.memory_reservation)
                        .or(c.memory_reservation),
                    name,
                    ..Default::default()
                }
            })
            .collect();
    TaskRecord {
        network_configuration: l.network_configuration.clone().map(Into::into),
        id,
        cluster: l.cluster.clone(),
        container_instance_id: inst.id.clone(),
        task_definition_arn: ctx.app.scope.task_definition_arn(&l.family, l.revision),
        family: l.family.clone(),
        revision: l.revision,
        desired_status: TaskStatus::Running,
        last_status: TaskStatus::Provisioning,
        launch_type: l.launch_type,
        group: l.group.clone(),
        started_by: l.started_by.clone(),
        created_at: now,
        version: 1,
        cpu: l.overrides.cpu.clone().or_else(|| l.td.cpu.clone()),
        memory: l.overrides.memory.clone().or_else(|| l.td.memory.clone()),
        resources: l.resources.clone(),
        overrides: l.overrides.clone().into(),
        containers,
        availability_zone: inst
            .attributes
            .iter()
            .find(|a| a.name == "ecs.availability-zone")
            .and_then(|a| a.value.clone()),
        tags: l.tags.clone(),
        client_token,
        enable_execute_command: l.enable_execute_command,
        ..Default::default()
    }
}

#[allow(clippy::too_many_arguments)] // RunTask's and StartTask's arguments, resolved once for both
pub(crate) async fn prepare(
    ctx: &Ctx,
    cluster_arg_v: Option<&str>,
    td_arg: Option<&str>,
    overrides: Option<ecs::TaskOverride>,
    group: Option<String>,
    started_by: Option<String>,
    started_by_max: usize,
    launch_type: Option<ecs::LaunchType>,
    tags: Option<Vec<ecs::Tag>>,
    propagate: Option<ecs::PropagateTags>,
    enable_execute_command: bool,
) -> Result<Launch, ApiError> {
    let cluster = cluster_arg(cluster_arg_v)?;
    active_cluster(ctx, &cluster).await?;
    let td_arg = td_arg.unwrap_or_default();
    // The resolved record is this call's own copy: take its definition and tags, no second copy.
    let crate::records::TaskDefinitionRecord {
        definition: td,
        tags: td_tags,
        ..
    } = taskdefs::resolve(ctx, td_arg)
        .await?
        .ok_or_else(|| ApiError::client("Unable to describe task definition."))?
        .value;
    let td = ecs::TaskDefinition::from(td);
    if td.status != Some(ecs::TaskDefinitionStatus::Active) {
        return Err(ApiError::client(format!(
            "TaskDefinition is inactive: {}",
            td.task_definition_arn.as_deref().unwrap_or(td_arg)
        )));
    }
    let launch_type = match launch_type {
        None | Some(ecs::LaunchType::Ec2) => LaunchType::Ec2,
        Some(ecs::LaunchType::External) => LaunchType::External,
        Some(other) => {
            return Err(ApiError::invalid_parameter(format!(
                "Launch type {} is not supported by berth: tasks run on registered container instances (EC2 or EXTERNAL).",
                other.as_str()
            )))
        }
    };
    if td.requires_compatibilities.as_ref().is_some_and(|r| {
        !r.is_empty()
            && !r
                .iter()
                .any(|c| matches!(c, ecs::Compatibility::Ec2 | ecs::Compatibility::External))
    }) {
        return Err(ApiError::client(format!(
            "Task definition does not support launch_type {}.",
            launch_type.as_str()
        )));
    }
    if let Some(sb) = &started_by {
        if sb.len() > started_by_max {
            return Err(ApiError::invalid_parameter(format!(
                "startedBy can be at most {started_by_max} characters."
            )));
        }
    }
    let mut overrides = overrides.unwrap_or_default();
    taskdefs::unset_if_empty(&mut overrides.task_role_arn);
    taskdefs::unset_if_empty(&mut overrides.execution_role_arn);
    let names: Vec<&str> = td
        .container_definitions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|c| c.name.as_deref())
        .collect();
    for o in overrides.container_overrides.as_deref().unwrap_or_default() {
        let n = o.name.as_deref().unwrap_or("");
        if !names.contains(&n) {
            return Err(ApiError::invalid_parameter(format!(
                "Override for container named {n} is not a container in the TaskDefinition."
            )));
        }
    }
    let resources = requirements(&td, &overrides)?;
    let family = td.family.clone().unwrap_or_default();
    let mut tag_list = tagging::validate(tags.as_deref().unwrap_or_default())?;
    if propagate == Some(ecs::PropagateTags::TaskDefinition) {
        let mut merged = td_tags;
        tagging::merge(&mut merged, tag_list)?;
        tag_list = merged;
    }
    Ok(Launch {
        cluster,
        revision: td.revision as u32,
        group: group.unwrap_or_else(|| format!("family:{family}")),
        family,
        td,
        overrides,
        resources,
        started_by,
        launch_type,
        tags: tag_list,
        enable_execute_command,
        network_configuration: None,
    })
}

/// ECS's rule: awsvpc tasks need a `networkConfiguration`, other modes must not have one.
fn check_network_configuration(
    l: &Launch,
    nc: Option<&ecs::NetworkConfiguration>,
) -> Result<(), ApiError> {
    let awsvpc = l.td.network_mode == Some(NetworkMode::Awsvpc);
    match (awsvpc, nc.and_then(|n| n.awsvpc_configuration.as_ref())) {
        (true, None) => Err(ApiError::invalid_parameter(
            "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
        )),
        (false, Some(_)) => Err(ApiError::invalid_parameter(
            "Network Configuration is not valid for the given networkMode of this task definition.",
        )),
        (true, Some(c)) if c.subnets.as_ref().is_none_or(|s| s.is_empty()) => {
            Err(ApiError::invalid_parameter("subnets can not be empty."))
        }
        _ => Ok(()),
    }
}

pub(crate) fn requirements_for_placement(l: &Launch) -> placement::TaskRequirements {
    let mut t = placement::TaskRequirements::new(&l.family, l.resources.cpu, l.resources.memory);
    t.gpu = l.resources.gpu;
    t.tcp_ports = l.resources.ports.clone();
    t.udp_ports = l.resources.ports_udp.clone();
    t.required_attributes =
        l.td.requires_attributes
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter_map(|a| {
                Some(placement::Attribute {
                    name: a.name.clone()?,
                    value: a.value.clone(),
                })
            })
            .collect();
    // A role given only as an override needs what a role in the definition needs.
    if l.td.task_role_arn.is_none() && l.overrides.task_role_arn.is_some() {
        let mut need = vec!["com.amazonaws.ecs.capability.task-iam-role"];
        if l.td.network_mode == Some(NetworkMode::Host) {
            need.push("com.amazonaws.ecs.capability.task-iam-role-network-host");
        }
        for name in need {
            if !t.required_attributes.iter().any(|a| a.name == name) {
                t.required_attributes.push(placement::Attribute {
                    name: name.to_string(),
                    value: None,
                });
            }
        }
    }
    t.launch_type = if l.launch_type == LaunchType::External {
        placement::LaunchType::External
    } else {
        placement::LaunchType::Ec2
    };
    t.group = l.group.clone();
    t.task_definition_constraints =
        l.td.placement_constraints
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|c| placement::PlacementConstraint {
                constraint_type: c.type_.map(|t| t.as_str().to_string()).unwrap_or_default(),
                expression: c.expression.clone(),
            })
            .collect();
    t
}

pub(crate) fn constraints(
    v: Option<&[ecs::PlacementConstraint]>,
) -> Vec<placement::PlacementConstraint> {
    v.unwrap_or_default()
        .iter()
        .map(|c| placement::PlacementConstraint {
            constraint_type: c.type_.map(|t| t.as_str().to_string()).unwrap_or_default(),
            expression: c.expression.clone(),
        })
        .collect()
}

pub(crate) fn strategies(
    v: Option<&[ecs::PlacementStrategy]>,
) -> Vec<placement::PlacementStrategy> {
    v.unwrap_or_default()
        .iter()
        .map(|s| placement::PlacementStrategy {
            strategy_type: s.type_.map(|t| t.as_str().to_string()).unwrap_or_default(),
            field: s.field.clone(),
        })
        .collect()
}

/// The GPU count each container asks for (`resourceRequirements` type GPU, overrides first).
fn container_gpus(td: &ecs::TaskDefinition, overrides: &ecs::TaskOverride) -> Vec<(String, usize)> {
    let ovr = overrides_by_name(overrides);
    td.container_definitions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|c| {
            let name = c.name.clone()?;
            let n = usize::try_from(gpu_count(c, ovr.get(name.as_str()))).unwrap_or(0);
            (n > 0).then_some((name, n))
        })
        .collect()
}

/// Picks the task's GPUs from those still free on the instance (placement has checked the
/// count) and hands each container its share (the task then holds them: `TaskRecord::hold`).
/// Nothing when the instance registered a bare GPU count rather than ids.
fn assign_gpus(
    td: &ecs::TaskDefinition,
    overrides: &ecs::TaskOverride,
    inst: &ContainerInstanceRecord,
    task: &mut TaskRecord,
) {
    let wants = container_gpus(td, overrides);
    if wants.is_empty() {
        return;
    }
    let mut free = inst.remaining().gpu_ids.into_iter();
    for (name, n) in wants {
        let ids: Vec<String> = free.by_ref().take(n).collect();
        if let Some(c) = task.containers.iter_mut().find(|c| c.name == name) {
            c.gpu_ids = ids;
        }
    }
}

/// Places and commits `count` tasks (or the explicit `targets` for StartTask), retrying on
/// concurrent changes to any instance it used. Returns the created tasks and the failures.
///
/// A launch of more than [`placement::ORDERED_MAX_COUNT`] tasks (the service scheduler starting
/// a large service) is placed and committed in chunks of that size: each chunk takes the
/// ordered walk, whose cost does not grow with the cluster, and its tasks reach their agents
/// while the next chunk is placed, where one call would walk every instance per task and hold
/// every task back until the last was placed. Each chunk sees the ones before it (reads follow
/// the store's latest revision), so spread and binpack continue where the last chunk ended. The
/// first chunk that cannot place all its tasks ends the launch with its failures and event: the
/// rest would meet the same cluster.
pub(crate) async fn launch(
    ctx: &Ctx,
    l: &Launch,
    count: u32,
    req_constraints: Vec<placement::PlacementConstraint>,
    req_strategies: Vec<placement::PlacementStrategy>,
    targets: Option<Vec<String>>,
    client_token: Option<(String, String)>,
) -> Result<Launched, ApiError> {
    const CHUNK: u32 = placement::ORDERED_MAX_COUNT;
    if targets.is_some() || client_token.is_some() || count <= CHUNK {
        return launch_once(
            ctx,
            l,
            count,
            &req_constraints,
            &req_strategies,
            targets,
            client_token,
        )
        .await;
    }
    let mut all = Launched {
        tasks: Vec::with_capacity(count as usize),
        failures: Vec::new(),
        event: None,
    };
    let mut left = count;
    while left > 0 {
        let n = left.min(CHUNK);
        let chunk = match launch_once(ctx, l, n, &req_constraints, &req_strategies, None, None)
            .await
        {
            Ok(c) => c,
            // Nothing launched yet: the caller sees the error as it is.
            Err(e) if all.tasks.is_empty() => return Err(e),
            // Some chunks are committed: report them (the caller's next pass starts the rest).
            Err(e) => {
                tracing::warn!(cluster = %l.cluster, group = %l.group, launched = all.tasks.len(), wanted = count, code = %e.code, error = %e.message, "launch ended early");
                break;
            }
        };
        left -= n;
        all.tasks.extend(chunk.tasks);
        let short = !chunk.failures.is_empty();
        all.failures.extend(chunk.failures);
        all.event = chunk.event;
        if short {
            break;
        }
    }
    Ok(all)
}

/// One placement call and its commit (see [`launch`]).
async fn launch_once(
    ctx: &Ctx,
    l: &Launch,
    count: u32,
    req_constraints: &[placement::PlacementConstraint],
    req_strategies: &[placement::PlacementStrategy],
    targets: Option<Vec<String>>,
    client_token: Option<(String, String)>,
) -> Result<Launched, ApiError> {
    let repo = &ctx.app.repo;
    enum Placed {
        /// What a request with the same clientToken launched before.
        Before(Launched),
        /// Placed (and committed, unless nothing was): the outcome, the instances touched, the
        /// tasks.
        Now(
            Box<placement::PlacementOutcome>,
            HashMap<usize, ContainerInstanceRecord>,
            Vec<TaskRecord>,
        ),
    }
    let placed = repo
        .retry(|| async {
            if let Some((token, fp)) = &client_token {
                if let Some(prev) = repo
                    .get::<ClientTokenRecord>(&keys::client_token(&l.cluster, token))
                    .await?
                {
                    if &prev.value.fingerprint != fp {
                        return Err(ApiError::new(
                            "ConflictException",
                            "The clientToken was already used with different parameters.",
                        ));
                    }
                    let mut tasks = Vec::new();
                    for id in &prev.value.task_ids {
                        if let Some(t) = repo.get::<TaskRecord>(&keys::task(&l.cluster, id)).await?
                        {
                            tasks.push(t.value);
                        }
                    }
                    return Ok(Attempt::Done(Placed::Before(Launched {
                        tasks,
                        failures: vec![],
                        event: None,
                    })));
                }
            }
            let mut preq = placement::PlacementRequest::new(requirements_for_placement(l), count);
            preq.constraints = req_constraints.to_vec();
            preq.strategies = req_strategies.to_vec();
            preq.seed = rand::random();
            let now = now_epoch();
            // Place on the cluster's long-lived index (see `placement_cache`) and prepare the commit:
            // every touched instance is compared on the revision the index saw.
            let placed = ctx
                .app
                .placement
                .with_index(ctx, &l.cluster, |p| {
                    let outcome = match &targets {
                        None => placement::place(p.index, &preq).map_err(placement_error)?,
                        Some(t) => {
                            let refs: Vec<&str> = t.iter().map(String::as_str).collect();
                            placement::start_task(p.index, &preq, &refs).map_err(placement_error)?
                        }
                    };
                    let mut touched: HashMap<usize, ContainerInstanceRecord> = HashMap::new();
                    let mut tasks = Vec::new();
                    for pl in &outcome.placements {
                        let inst = touched.entry(pl.instance_index).or_insert_with(|| {
                            p.instances[pl.instance_index].value.as_ref().clone()
                        });
                        let mut task = new_task(
                            ctx,
                            l,
                            inst,
                            now,
                            client_token.as_ref().map(|(t, _)| t.clone()),
                        );
                        assign_gpus(&l.td, &l.overrides, inst, &mut task);
                        // Task by task: the next task's GPUs and ports see this one's.
                        inst.account_tasks([&TaskChange::of(None, &task)]);
                        tasks.push(task);
                    }
                    let mut txn = Txn::new();
                    for (i, inst) in touched.iter() {
                        let v = &p.instances[*i];
                        txn = txn
                            .when(Compare::ModRevision {
                                key: v.key.clone(),
                                revision: v.revision,
                            })
                            .put(v.key.clone(), to_bytes(inst));
                    }
                    Ok::<_, ApiError>((outcome, touched, tasks, txn))
                })
                .await??;
            let (outcome, touched, tasks, mut txn) = placed;
            for t in &tasks {
                txn = txn
                    .when(Compare::Absent {
                        key: keys::task(&t.cluster, &t.id),
                    })
                    .put(keys::task(&t.cluster, &t.id), to_bytes(t));
            }
            if let Some((token, fp)) = &client_token {
                let tk = keys::client_token(&l.cluster, token);
                txn = txn.when(Compare::Absent { key: tk.clone() }).put(
                    tk,
                    to_bytes(&ClientTokenRecord {
                        fingerprint: fp.clone(),
                        task_ids: tasks.iter().map(|t| t.id.clone()).collect(),
                        created_at: now,
                    }),
                );
            }
            Ok(if tasks.is_empty() {
                Attempt::Done(Placed::Now(Box::new(outcome), touched, tasks))
            } else {
                Attempt::Commit(txn, Placed::Now(Box::new(outcome), touched, tasks))
            })
        })
        .await?;
    let (outcome, touched, tasks) = match placed {
        Placed::Now(outcome, touched, tasks) => (*outcome, touched, tasks),
        Placed::Before(launched) => return Ok(launched),
    };
    for inst in touched.values() {
        ctx.app.agents.publish(&inst.id, inst.generation);
    }
    for t in &tasks {
        tracing::info!(cluster = %t.cluster, task = %t.id, instance = %t.container_instance_id, family = %t.family, "task placed");
    }
    let event = if outcome.failures.is_empty() {
        None
    } else {
        outcome.service_event_message()
    };
    let failures = outcome
        .failures
        .into_iter()
        .map(|f| ecs::Failure {
            arn: f.arn,
            reason: Some(f.reason),
            detail: f.detail,
        })
        .collect();
    Ok(Launched {
        tasks,
        failures,
        event,
    })
}

pub async fn run_task(
    ctx: &Ctx,
    req: ecs::RunTaskRequest,
) -> Result<ecs::RunTaskResponse, ApiError> {
    let count = req.count.unwrap_or(1);
    if !(1..=MAX_RUN_COUNT).contains(&count) {
        return Err(ApiError::invalid_parameter(
            "count must be between 1 and 10.",
        ));
    }
    if req
        .capacity_provider_strategy
        .as_ref()
        .is_some_and(|c| !c.is_empty())
        && req.launch_type.is_some()
    {
        return Err(ApiError::invalid_parameter(
            "Specifying both a launch type and capacity provider strategy is not supported.",
        ));
    }
    if let Some(t) = &req.client_token {
        if t.is_empty() || t.len() > 64 {
            return Err(ApiError::invalid_parameter(
                "clientToken must be between 1 and 64 characters.",
            ));
        }
    }
    // What a retry with the same clientToken must repeat (only computed when there is one).
    let client_token = req.client_token.clone().map(|t| {
        let fingerprint = serde_json::to_string(&ecs::RunTaskRequest {
            client_token: None,
            ..req.clone()
        })
        .unwrap_or_default();
        (t, fingerprint)
    });
    let l = prepare(
        ctx,
        req.cluster.as_deref(),
        req.task_definition.as_deref(),
        req.overrides.clone(),
        req.group.clone(),
        req.started_by.clone(),
        128,
        req.launch_type,
        req.tags.clone(),
        req.propagate_tags,
        req.enable_execute_command,
    )
    .await?;
    check_network_configuration(&l, req.network_configuration.as_ref())?;
    let l = Launch {
        network_configuration: req.network_configuration.clone(),
        ..l
    };
    let Launched {
        tasks, failures, ..
    } = launch(
        ctx,
        &l,
        count as u32,
        constraints(req.placement_constraints.as_deref()),
        strategies(req.placement_strategy.as_deref()),
        None,
        client_token,
    )
    .await?;
    Ok(ecs::RunTaskResponse {
        tasks: Some(tasks.iter().map(|t| to_wire(ctx, t, true)).collect()),
        failures: Some(failures),
    })
}

pub async fn start_task(
    ctx: &Ctx,
    req: ecs::StartTaskRequest,
) -> Result<ecs::StartTaskResponse, ApiError> {
    let targets = req.container_instances.clone().unwrap_or_default();
    if targets.is_empty() || targets.len() > 10 {
        return Err(ApiError::invalid_parameter(
            "containerInstances must contain between 1 and 10 items.",
        ));
    }
    let l = prepare(
        ctx,
        req.cluster.as_deref(),
        req.task_definition.as_deref(),
        req.overrides.clone(),
        req.group.clone(),
        req.started_by.clone(),
        36,
        None,
        req.tags.clone(),
        req.propagate_tags,
        req.enable_execute_command,
    )
    .await?;
    check_network_configuration(&l, req.network_configuration.as_ref())?;
    let l = Launch {
        network_configuration: req.network_configuration.clone(),
        ..l
    };
    let Launched {
        tasks, failures, ..
    } = launch(
        ctx,
        &l,
        targets.len() as u32,
        vec![],
        vec![],
        Some(targets),
        None,
    )
    .await?;
    Ok(ecs::StartTaskResponse {
        tasks: Some(tasks.iter().map(|t| to_wire(ctx, t, true)).collect()),
        failures: Some(failures),
    })
}

pub(crate) fn task_id_of(arg: &str) -> Option<String> {
    if arg.starts_with("arn:") {
        match berth_core::Arn::parse(arg)?.ecs_resource()? {
            (berth_core::ResourceKind::Task, rest) => rest.rsplit('/').next().map(str::to_string),
            _ => None,
        }
    } else if !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        Some(arg.to_string())
    } else {
        None
    }
}

const TASK_NOT_FOUND: &str = "The referenced task was not found.";

fn task_not_found() -> ApiError {
    ApiError::invalid_parameter(TASK_NOT_FOUND)
}

/// Sets a task's desired status to STOPPED (StopTask, services, draining) and wakes its agent.
pub(crate) async fn request_stop(
    ctx: &Ctx,
    cluster: &str,
    task_id: &str,
    reason: String,
    stop_code: &str,
) -> Result<TaskRecord, ApiError> {
    let repo = &ctx.app.repo;
    let tkey = keys::task(cluster, task_id);
    // The task, and (when this call stopped it) the instance generation to publish, if any.
    let (t, stopped) = repo
        .retry(|| async {
            let mut t = repo
                .get::<TaskRecord>(&tkey)
                .await?
                .ok_or_else(task_not_found)?;
            if t.value.desired_status == TaskStatus::Stopped {
                return Ok(Attempt::Done((t.value, None)));
            }
            let before = t.value.clone();
            let now = now_epoch();
            t.value.desired_status = TaskStatus::Stopped;
            t.value.stop_code = Some(stop_code.to_string());
            t.value.stopped_reason = Some(reason.clone());
            t.value.stopping_at = Some(now);
            t.value.version += 1;
            let txn = Txn::new().when(Compare::ModRevision {
                key: tkey.clone(),
                revision: t.revision,
            });
            let (txn, publish) = account_on_instance(repo, txn, &before, &t.value).await?;
            // A task that never reached its agent (still PROVISIONING with no agent to report) is
            // stopped by the agent once it polls; nothing else to do here.
            let txn = txn.put(tkey.clone(), to_bytes(&t.value));
            Ok(Attempt::Commit(txn, (t.value, Some(publish))))
        })
        .await?;
    if let Some(publish) = stopped {
        if let Some((id, g)) = publish {
            ctx.app.agents.publish(&id, g);
        }
        tracing::info!(cluster = %cluster, task = %task_id, stop_code, "task stop requested");
    }
    Ok(t)
}

/// Adds to `txn` what a write of a task owes its instance ([`ContainerInstanceRecord::account_tasks`]:
/// held counters, `version`, the agent generation), guarded by the instance's revision. The
/// instance is read only when the change concerns it. Returns the generation to publish after the
/// commit.
pub(crate) async fn account_on_instance(
    repo: &Repo,
    txn: Txn,
    before: &TaskRecord,
    after: &TaskRecord,
) -> Result<(Txn, Option<(String, u64)>), ApiError> {
    let change = TaskChange::of(Some(before), after);
    if !change.concerns_instance() {
        return Ok((txn, None));
    }
    let ikey = keys::instance(&after.cluster, &after.container_instance_id);
    let Some(mut inst) = repo.get::<ContainerInstanceRecord>(&ikey).await? else {
        return Ok((txn, None));
    };
    let accounted = inst.value.account_tasks([&change]);
    if !accounted.changed {
        return Ok((txn, None));
    }
    let txn = txn
        .when(Compare::ModRevision {
            key: ikey.clone(),
            revision: inst.revision,
        })
        .put(ikey, to_bytes(&inst.value));
    Ok((txn, accounted.generation.map(|g| (inst.value.id, g))))
}

pub async fn stop_task(
    ctx: &Ctx,
    req: ecs::StopTaskRequest,
) -> Result<ecs::StopTaskResponse, ApiError> {
    let cluster = cluster_arg(req.cluster.as_deref())?;
    active_cluster(ctx, &cluster).await?;
    let id = task_id_of(req.task.as_deref().unwrap_or("")).ok_or_else(task_not_found)?;
    if req.reason.as_ref().is_some_and(|r| r.len() > 1024) {
        return Err(ApiError::invalid_parameter(
            "reason can be at most 1024 characters.",
        ));
    }
    let reason = req
        .reason
        .clone()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "Task stopped by user".into());
    let t = request_stop(ctx, &cluster, &id, reason, "UserInitiated").await?;
    Ok(ecs::StopTaskResponse {
        task: Some(to_wire(ctx, &t, false)),
    })
}

pub async fn describe_tasks(
    ctx: &Ctx,
    req: ecs::DescribeTasksRequest,
) -> Result<ecs::DescribeTasksResponse, ApiError> {
    let cluster = cluster_arg(req.cluster.as_deref())?;
    active_cluster(ctx, &cluster).await?;
    let args = req.tasks.unwrap_or_default();
    if args.is_empty() || args.len() > 100 {
        return Err(ApiError::invalid_parameter(
            "tasks must contain between 1 and 100 items.",
        ));
    }
    let include_tags = req
        .include
        .unwrap_or_default()
        .contains(&ecs::TaskField::Tags);
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    // One consistent read for all of them (an id that doesn't parse gets the empty key: MISSING).
    let wanted: Vec<String> = args
        .iter()
        .map(|a| task_id_of(a).map_or_else(String::new, |id| keys::task(&cluster, &id)))
        .collect();
    let found_all = ctx.app.repo.get_many_arc::<TaskRecord>(&wanted).await?;
    for (arg, found) in args.into_iter().zip(found_all) {
        match found {
            Some(t) => {
                let mut w = to_wire(ctx, &t.value, include_tags);
                // Not asked for, not sent (DescribeTasks' `include`).
                w.tags = w.tags.filter(|_| include_tags);
                tasks.push(w);
            }
            None => failures.push(ecs::Failure {
                arn: Some(if arg.starts_with("arn:") {
                    arg.clone()
                } else {
                    ctx.app.scope.task_arn(&cluster, &arg)
                }),
                reason: Some("MISSING".into()),
                detail: None,
            }),
        }
    }
    Ok(ecs::DescribeTasksResponse {
        tasks: Some(tasks),
        failures: Some(failures),
    })
}

pub async fn list_tasks(
    ctx: &Ctx,
    req: ecs::ListTasksRequest,
) -> Result<ecs::ListTasksResponse, ApiError> {
    let cluster = cluster_arg(req.cluster.as_deref())?;
    active_cluster(ctx, &cluster).await?;
    if req.started_by.is_some()
        && (req.container_instance.is_some() || req.family.is_some() || req.service_name.is_some())
    {
        return Err(ApiError::invalid_parameter(
            "When you specify startedBy as a filter, it must be the only filter that you use.",
        ));
    }
    let limit = max_results(req.max_results, 100)?;
    let after = decode_token(req.next_token.as_deref())?;
    let desired = req.desired_status.map(|d| d.as_str()).unwrap_or("RUNNING");
    let instance = match req.container_instance.as_deref() {
        Some(a) => Some(
            instance_id(a)
                .ok_or_else(|| ApiError::invalid_parameter("Invalid containerInstance."))?,
        ),
        None => None,
    };
    // The narrowest index term the filters allow; every filter is still tested on each record.
    let bucket = crate::indexes::desired_bucket(desired);
    let service_group = req.service_name.as_deref().map(|s| format!("service:{s}"));
    let term = if let Some(g) = &service_group {
        term::group(&cluster, bucket, g)
    } else if let Some(i) = &instance {
        term::instance(&cluster, bucket, i)
    } else if let Some(f) = &req.family {
        term::family(&cluster, bucket, f)
    } else if let Some(b) = &req.started_by {
        term::started_by(&cluster, bucket, b)
    } else {
        term::desired(&cluster, bucket)
    };
    let (page, more) = ctx
        .app
        .repo
        .index_page(
            crate::indexes::TASKS,
            &term,
            &keys::tasks_in(&cluster),
            after.as_deref(),
            limit,
            |_, v: &Arc<TaskRecord>| {
                let keep = crate::indexes::desired_bucket(v.desired_status.as_str()) == bucket
                    && instance
                        .as_deref()
                        .is_none_or(|i| v.container_instance_id == i)
                    && req.family.as_deref().is_none_or(|f| v.family == f)
                    && service_group.as_deref().is_none_or(|g| v.group == g)
                    && req
                        .started_by
                        .as_deref()
                        .is_none_or(|s| v.started_by.as_deref() == Some(s))
                    && req
                        .launch_type
                        .is_none_or(|lt| v.launch_type.as_str() == lt.as_str());
                keep.then(|| ctx.app.scope.task_arn(&cluster, &v.id))
            },
        )
        .await?;
    let next = match (more, page.last()) {
        (true, Some((k, _))) => Some(encode_token(k)),
        _ => None,
    };
    let arns = page.into_iter().map(|(_, arn)| arn).collect();
    Ok(ecs::ListTasksResponse {
        task_arns: Some(arns),
        next_token: next,
    })
}

// --- agent reports ---------------------------------------------------------------------------

fn apply_container_change(c: &mut ContainerRecord, ch: &ecs::ContainerStateChange) {
    // A status outside ECS's three is ignored (see `ContainerStatus`).
    if let Some(s) = ch.status.as_deref().and_then(ContainerStatus::parse) {
        if s.rank() >= c.last_status.rank() {
            c.last_status = s;
        }
    }
    if ch.runtime_id.is_some() {
        c.runtime_id = ch.runtime_id.clone();
    }
    if ch.image_digest.is_some() {
        c.image_digest = ch.image_digest.clone();
    }
    if ch.exit_code.is_some() {
        c.exit_code = ch.exit_code;
    }
    if ch.reason.is_some() {
        c.reason = ch.reason.clone();
    }
    if let Some(nb) = &ch.network_bindings {
        c.network_bindings = convert(nb);
    }
}

/// Applies an agent report to a task (forward only) and releases its resources once STOPPED.
pub(crate) async fn apply_report(
    ctx: &Ctx,
    cluster: &str,
    task_arg: &str,
    status: Option<TaskStatus>,
    edit: impl Fn(&mut TaskRecord, f64),
) -> Result<(), ApiError> {
    match apply_report_to_task(ctx, cluster, task_arg, status, edit).await {
        // A report for a task that is not there, in a cluster that is not there either: the
        // cluster is what ECS reports (its model lists ClusterNotFoundException for both reports).
        // Checked only then, so a report for a known task costs no extra read.
        Err(e) if e.message == TASK_NOT_FOUND => {
            active_cluster(ctx, cluster).await?;
            Err(e)
        }
        r => r,
    }
}

async fn apply_report_to_task(
    ctx: &Ctx,
    cluster: &str,
    task_arg: &str,
    status: Option<TaskStatus>,
    edit: impl Fn(&mut TaskRecord, f64),
) -> Result<(), ApiError> {
    let id = task_id_of(task_arg).ok_or_else(task_not_found)?;
    let repo = &ctx.app.repo;
    let tkey = keys::task(cluster, &id);
    let (t, publish, changed_status) = repo
        .retry(|| async {
            let mut t = repo
                .get::<TaskRecord>(&tkey)
                .await?
                .ok_or_else(task_not_found)?;
            let now = now_epoch();
            let before = t.value.clone();
            let current = t.value.last_status;
            if let Some(n) = status {
                if !current.can_become(n) {
                    tracing::debug!(task = %id, from = current.as_str(), to = n.as_str(), "ignored a backward state report");
                } else if n != current {
                    t.value.last_status = n;
                    if n == TaskStatus::Running && t.value.started_at.is_none() {
                        t.value.started_at = Some(now);
                    }
                    if n >= TaskStatus::Pending && t.value.connectivity_at.is_none() {
                        t.value.connectivity_at = Some(now);
                    }
                    if n >= TaskStatus::Deactivating && t.value.stopping_at.is_none() {
                        t.value.stopping_at = Some(now);
                    }
                    if n == TaskStatus::Stopped {
                        t.value.stopped_at = Some(now);
                        t.value.execution_stopped_at.get_or_insert(now);
                        if t.value.desired_status != TaskStatus::Stopped {
                            // The agent stopped it on its own: an essential container exited, or it
                            // never got running.
                            t.value.desired_status = TaskStatus::Stopped;
                            t.value.stop_code = Some(if before.started_at.is_some() {
                                "EssentialContainerExited".into()
                            } else {
                                "TaskFailedToStart".into()
                            });
                        }
                    }
                }
            }
            edit(&mut t.value, now);
            let changed_status = t.value.last_status != before.last_status;
            t.value.version += 1;
            let txn = Txn::new().when(Compare::ModRevision {
                key: tkey.clone(),
                revision: t.revision,
            });
            // What the task holds on its instance moved (it started, was bound to host ports, or
            // stopped): the instance's counters move with it, in the same transaction.
            let (mut txn, publish) =
                account_on_instance(repo, txn, &before, &t.value).await?;
            txn = txn.put(tkey.clone(), to_bytes(&t.value));
            Ok(Attempt::Commit(txn, (t.value, publish, changed_status)))
        })
        .await?;
    if let Some((iid, g)) = publish {
        ctx.app.agents.publish(&iid, g);
    }
    if changed_status && t.group.starts_with("service:") {
        // A service task moved: let the scheduler react now rather than on its tick.
        ctx.app.wake_scheduler();
    }
    if changed_status {
        tracing::info!(cluster = %cluster, task = %id, status = t.last_status.as_str(), "task state changed");
        ctx.app.events.push(task_state_change(ctx, &t));
    }
    Ok(())
}

/// ECS's `ECS Task State Change` event for the event bus: the task as DescribeTasks shows it.
pub(crate) fn task_state_change(ctx: &Ctx, t: &TaskRecord) -> serde_json::Value {
    let task = to_wire(ctx, t, false);
    let arn = task.task_arn.clone().unwrap_or_default();
    let mut detail = serde_json::to_value(&task).unwrap_or_default();
    // Epoch seconds on the API, ISO 8601 in events (as AWS's examples show them).
    if let serde_json::Value::Object(m) = &mut detail {
        for v in m.values_mut() {
            if let Some(secs) = v.as_f64().filter(|s| *s > 1e9) {
                *v = serde_json::Value::String(iso8601(secs));
            }
        }
        m.insert("version".into(), serde_json::json!(t.version));
    }
    serde_json::json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "ECS Task State Change",
        "source": "aws.ecs",
        "account": ctx.app.scope.account,
        "time": berth_core::time::rfc3339_epoch(now_epoch(), 0),
        "region": ctx.app.scope.region,
        "resources": [arn],
        "detail": detail,
    })
}

/// `2026-12-08T01:02:03.456Z`.
fn iso8601(epoch: f64) -> String {
    berth_core::time::rfc3339_epoch(epoch, 3)
}

/// What the berth agent adds to SubmitTaskStateChange beyond the ECS model (ECS's own agent sends
/// these over its private channels): container health, container network interfaces, and the
/// attachment's type and details. Unknown members are ignored by AWS clients, so the request stays
/// a valid ECS request.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TaskReportExtras {
    pub containers: Vec<ContainerExtras>,
    pub attachments: Vec<AttachmentExtras>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerExtras {
    pub container_name: String,
    pub health_status: Option<String>,
    pub network_interfaces: Vec<ecs::NetworkInterface>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AttachmentExtras {
    pub attachment_arn: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub details: Vec<ecs::KeyValuePair>,
}

pub async fn submit_task_state_change(
    ctx: &Ctx,
    req: ecs::SubmitTaskStateChangeRequest,
    extras: TaskReportExtras,
) -> Result<ecs::SubmitTaskStateChangeResponse, ApiError> {
    let cluster = cluster_arg(req.cluster.as_deref())?;
    // A status that is not a task status is not a transition (the rest of the report applies).
    let status = req.status.as_deref().and_then(TaskStatus::parse);
    apply_report(
        ctx,
        &cluster,
        req.task.as_deref().unwrap_or(""),
        status,
        |t, _now| {
            for ch in req.containers.as_deref().unwrap_or_default() {
                if let Some(c) = t
                    .containers
                    .iter_mut()
                    .find(|c| Some(c.name.as_str()) == ch.container_name.as_deref())
                {
                    apply_container_change(c, ch);
                }
            }
            for x in &extras.containers {
                if let Some(c) = t.containers.iter_mut().find(|c| c.name == x.container_name) {
                    if let Some(h) = x.health_status.as_deref().and_then(HealthStatus::parse) {
                        c.health_status = Some(h);
                    }
                    if !x.network_interfaces.is_empty() {
                        c.network_interfaces = convert(&x.network_interfaces);
                    }
                }
            }
            if let Some(a) = &req.attachments {
                t.attachments = a
                    .iter()
                    .map(|a| {
                        let extra = extras
                            .attachments
                            .iter()
                            .find(|x| x.attachment_arn == a.attachment_arn);
                        stored::Attachment {
                            // ECS attachment ids are the last segment of the attachment ARN.
                            id: a
                                .attachment_arn
                                .as_deref()
                                .map(|arn| arn.rsplit('/').next().unwrap_or(arn).to_string()),
                            status: a.status.clone(),
                            type_: Some(
                                extra
                                    .and_then(|x| x.kind.clone())
                                    .unwrap_or_else(|| "ElasticNetworkInterface".into()),
                            ),
                            details: extra.map(|x| convert(&x.details)),
                        }
                    })
                    .collect();
            }
            if req.pull_started_at.is_some() {
                t.pull_started_at = t.pull_started_at.or(req.pull_started_at);
            }
            if req.pull_stopped_at.is_some() {
                t.pull_stopped_at = req.pull_stopped_at;
            }
            if req.execution_stopped_at.is_some() {
                t.execution_stopped_at = req.execution_stopped_at;
            }
            if t.last_status == TaskStatus::Stopped && t.stopped_reason.is_none() {
                t.stopped_reason = req.reason.clone();
            }
            derive_task_health(t);
        },
    )
    .await?;
    Ok(ecs::SubmitTaskStateChangeResponse {
        acknowledgment: Some("ACK".into()),
    })
}

/// The task's health: UNHEALTHY if any essential container is, HEALTHY if all essential
/// containers are, otherwise unchanged (UNKNOWN).
fn derive_task_health(t: &mut TaskRecord) {
    let essential: Vec<&ContainerRecord> = t.containers.iter().filter(|c| c.essential).collect();
    if essential
        .iter()
        .any(|c| c.health_status == Some(HealthStatus::Unhealthy))
    {
        t.health_status = Some(HealthStatus::Unhealthy);
    } else if !essential.is_empty()
        && essential
            .iter()
            .all(|c| c.health_status == Some(HealthStatus::Healthy))
    {
        t.health_status = Some(HealthStatus::Healthy);
    }
}

pub async fn submit_container_state_change(
    ctx: &Ctx,
    req: ecs::SubmitContainerStateChangeRequest,
) -> Result<ecs::SubmitContainerStateChangeResponse, ApiError> {
    let cluster = cluster_arg(req.cluster.as_deref())?;
    let change = ecs::ContainerStateChange {
        container_name: req.container_name.clone(),
        runtime_id: req.runtime_id.clone(),
        exit_code: req.exit_code,
        network_bindings: req.network_bindings.clone(),
        reason: req.reason.clone(),
        status: req.status.clone(),
        ..Default::default()
    };
    apply_report(
        ctx,
        &cluster,
        req.task.as_deref().unwrap_or(""),
        None,
        |t, _| {
            if let Some(c) = t
                .containers
                .iter_mut()
                .find(|c| Some(c.name.as_str()) == change.container_name.as_deref())
            {
                apply_container_change(c, &change);
            }
        },
    )
    .await?;
    Ok(ecs::SubmitContainerStateChangeResponse {
        acknowledgment: Some("ACK".into()),
    })
}
