//! Services: CreateService, UpdateService, DeleteService, DescribeServices, ListServices,
//! UpdateTaskProtection, GetTaskProtection. The scheduler that keeps them running is the
//! crate's `service_scheduler` module (a loop around the pure `berth-scheduler`), which uses this
//! module, not the other way round.

use super::args::{active_cluster, cluster_arg, decode_token, max_results, paginate};
use super::tasks::task_id_of;
use super::{deployments, tagging, taskdefs};
use crate::keys;
use crate::records::{
    convert, tags_to_wire, ClusterRecord, ControllerType, DeploymentRecord, DeploymentStatus,
    LaunchType, RolloutState, SchedulingStrategy, ServiceRecord, ServiceStatus, TaskRecord,
    TaskSetStatus,
};
use crate::state::Ctx;
use crate::stored;
use berth_core::lifecycle::TaskStatus;
use berth_service::codec::now_epoch;
use berth_service::repo::{to_bytes, Attempt, Change, Versioned};
use berth_service::ApiError;
use berth_store::{Compare, Txn};
use berth_wire::ecs;
use std::sync::Arc;

pub const MAX_EVENTS: usize = 100;

pub(crate) fn deployment_id() -> String {
    let n: u64 = rand::random::<u64>() % 9_000_000_000_000_000_000 + 1_000_000_000_000_000_000;
    format!("ecs-svc/{n}")
}

pub(crate) fn service_not_found() -> ApiError {
    ApiError::new("ServiceNotFoundException", "Service not found.")
}

pub(crate) fn not_active() -> ApiError {
    ApiError::new("ServiceNotActiveException", "Service was not ACTIVE.")
}

pub(crate) fn service_name_of(arg: &str) -> Option<String> {
    if arg.starts_with("arn:") {
        match berth_core::Arn::parse(arg)?.ecs_resource()? {
            (berth_core::ResourceKind::Service, rest) => {
                rest.rsplit('/').next().map(str::to_string)
            }
            _ => None,
        }
    } else {
        berth_core::names::service_name(arg)
            .ok()
            .map(|_| arg.to_string())
    }
}

/// Per-deployment task counts.
#[derive(Default, Clone, Copy)]
struct Counts {
    running: i32,
    pending: i32,
    failed: i32,
}

async fn service_tasks(
    ctx: &Ctx,
    cluster: &str,
    name: &str,
) -> Result<Vec<Arc<TaskRecord>>, ApiError> {
    let group = format!("service:{name}");
    super::tasks::group_tasks(ctx, cluster, &group).await
}

fn counts_for(tasks: &[Arc<TaskRecord>], deployment: Option<&str>) -> Counts {
    let mut c = Counts::default();
    for t in tasks
        .iter()
        .filter(|t| deployment.is_none_or(|d| t.started_by.as_deref() == Some(d)))
    {
        if t.desired_status == TaskStatus::Running && t.last_status == TaskStatus::Running {
            c.running += 1;
        } else if t.desired_status == TaskStatus::Running && t.last_status != TaskStatus::Stopped {
            c.pending += 1;
        }
        if t.last_status == TaskStatus::Stopped
            && matches!(
                t.stop_code.as_deref(),
                Some("TaskFailedToStart") | Some("EssentialContainerExited")
            )
        {
            c.failed += 1;
        }
    }
    c
}

pub(crate) fn to_wire(
    ctx: &Ctx,
    s: &ServiceRecord,
    tasks: &[Arc<TaskRecord>],
    include_tags: bool,
) -> ecs::Service {
    let total = counts_for(tasks, None);
    let deployments = s
        .deployments
        .iter()
        .map(|d| {
            let c = counts_for(tasks, Some(&d.id));
            ecs::Deployment {
                id: Some(d.id.clone()),
                status: Some(d.status.as_str().to_string()),
                task_definition: Some(d.task_definition.clone()),
                desired_count: if d.status == DeploymentStatus::Primary {
                    s.desired_count as i32
                } else {
                    0
                },
                pending_count: c.pending,
                running_count: c.running,
                failed_tasks: c.failed,
                created_at: Some(d.created_at),
                updated_at: Some(d.updated_at),
                launch_type: Some(s.launch_type.into()),
                rollout_state: Some(d.rollout_state.into()),
                rollout_state_reason: d.rollout_state_reason.clone(),
                network_configuration: s.network_configuration.clone().map(Into::into),
                ..Default::default()
            }
        })
        .collect();
    let mut events: Vec<ecs::ServiceEvent> = s
        .events
        .iter()
        .rev()
        .take(MAX_EVENTS)
        .map(|e| ecs::ServiceEvent {
            id: Some(e.id.clone()),
            created_at: Some(e.created_at),
            message: Some(e.message.clone()),
        })
        .collect();
    events.truncate(MAX_EVENTS);
    ecs::Service {
        service_arn: Some(ctx.app.scope.service_arn(&s.cluster, &s.name)),
        service_name: Some(s.name.clone()),
        cluster_arn: Some(ctx.app.scope.cluster_arn(&s.cluster)),
        load_balancers: Some(convert(&s.load_balancers)),
        service_registries: Some(convert(&s.service_registries)),
        status: Some(s.status.as_str().to_string()),
        desired_count: s.desired_count as i32,
        running_count: total.running,
        pending_count: total.pending,
        launch_type: Some(s.launch_type.into()),
        task_definition: (!s.task_definition.is_empty()).then(|| s.task_definition.clone()),
        task_sets: (!s.deployment_controller.is_ecs()).then(|| {
            s.task_sets
                .iter()
                .map(|ts| super::task_sets::to_wire(ctx, s, ts, tasks, include_tags))
                .collect()
        }),
        deployment_configuration: Some(deployments::deployment_configuration(s)),
        deployments: Some(deployments),
        current_service_deployment: s.current_service_deployment.as_ref().map(|id| {
            ctx.app
                .scope
                .service_deployment_arn(&s.cluster, &s.name, id)
        }),
        current_service_revisions: s.current_service_deployment.as_ref().map(|_| {
            deployments::current_revisions(ctx, s, &deployments::revision_counts(s, tasks))
        }),
        role_arn: s.role_arn.clone(),
        events: Some(events),
        created_at: Some(s.created_at),
        placement_constraints: Some(convert(&s.placement_constraints)),
        placement_strategy: Some(convert(&s.placement_strategy)),
        network_configuration: s.network_configuration.clone().map(Into::into),
        health_check_grace_period_seconds: s.health_check_grace_period_seconds,
        scheduling_strategy: Some(s.scheduling_strategy.into()),
        deployment_controller: Some(ecs::DeploymentController {
            type_: Some(s.deployment_controller.into()),
        }),
        tags: Some(if include_tags {
            tags_to_wire(&s.tags)
        } else {
            vec![]
        }),
        created_by: Some(s.created_by.clone()),
        enable_ecs_managed_tags: s.enable_ecs_managed_tags,
        propagate_tags: Some(match s.propagate_tags.as_deref() {
            Some("TASK_DEFINITION") => ecs::PropagateTags::TaskDefinition,
            Some("SERVICE") => ecs::PropagateTags::Service,
            _ => ecs::PropagateTags::None,
        }),
        enable_execute_command: s.enable_execute_command,
        capacity_provider_strategy: (!s.capacity_provider_strategy.is_empty())
            .then(|| convert(&s.capacity_provider_strategy)),
        ..Default::default()
    }
}

/// A service's or task set's launch type (what berth's hosts run).
pub(crate) fn launch_type_of(l: Option<ecs::LaunchType>) -> Result<LaunchType, ApiError> {
    match l {
        None | Some(ecs::LaunchType::Ec2) => Ok(LaunchType::Ec2),
        Some(ecs::LaunchType::External) => Ok(LaunchType::External),
        Some(other) => Err(ApiError::invalid_parameter(format!(
            "Launch type {} is not supported by berth: services run on registered container instances (EC2 or EXTERNAL).",
            other.as_str()
        ))),
    }
}

fn validate_placement(
    strategy: &[ecs::PlacementStrategy],
    constraints: &[ecs::PlacementConstraint],
    daemon: bool,
) -> Result<(), ApiError> {
    if daemon && !strategy.is_empty() {
        return Err(ApiError::invalid_parameter(
            "Placement strategies are not supported with the DAEMON scheduling strategy.",
        ));
    }
    berth_placement::validate_strategies(&super::tasks::strategies(Some(strategy)))
        .map_err(|e| ApiError::new(e.kind.as_str(), e.message))?;
    berth_placement::validate_constraints(&super::tasks::constraints(Some(constraints)), &[])
        .map_err(|e| ApiError::new(e.kind.as_str(), e.message))?;
    Ok(())
}

fn percents(
    cfg: Option<&ecs::DeploymentConfiguration>,
    daemon: bool,
) -> Result<(u32, u32), ApiError> {
    let (dmax, dmin) = if daemon { (100, 0) } else { (200, 100) };
    let max = cfg.and_then(|c| c.maximum_percent).unwrap_or(dmax);
    let min = cfg.and_then(|c| c.minimum_healthy_percent).unwrap_or(dmin);
    if !(0..=100).contains(&min) {
        return Err(ApiError::invalid_parameter(
            "minimumHealthyPercent must be between 0 and 100.",
        ));
    }
    if !(100..=200_000).contains(&max) {
        return Err(ApiError::invalid_parameter(
            "maximumPercent must be at least 100.",
        ));
    }
    Ok((max as u32, min as u32))
}

pub async fn create_service(
    ctx: &Ctx,
    req: ecs::CreateServiceRequest,
) -> Result<ecs::CreateServiceResponse, ApiError> {
    let cluster = cluster_arg(req.cluster.as_deref())?;
    let name = req.service_name.clone().unwrap_or_default();
    berth_core::names::service_name(&name)
        .map_err(|e| ApiError::invalid_parameter(e.to_string()))?;
    let daemon = req.scheduling_strategy == Some(ecs::SchedulingStrategy::Daemon);
    if daemon && req.desired_count.is_some() {
        return Err(ApiError::invalid_parameter(
            "The daemon scheduling strategy does not support a desired count for services.",
        ));
    }
    let desired = if daemon {
        0
    } else {
        req.desired_count.unwrap_or(0)
    };
    if desired < 0 {
        return Err(ApiError::invalid_parameter(
            "desiredCount can not be negative.",
        ));
    }
    let controller = match req.deployment_controller.as_ref().and_then(|c| c.type_) {
        None | Some(ecs::DeploymentControllerType::Ecs) => ControllerType::Ecs,
        Some(ecs::DeploymentControllerType::External) => ControllerType::External,
        Some(ecs::DeploymentControllerType::CodeDeploy) => ControllerType::CodeDeploy,
    };
    if daemon && !controller.is_ecs() {
        return Err(ApiError::invalid_parameter(format!(
            "The daemon scheduling strategy does not support the {} deployment controller.",
            controller.as_str()
        )));
    }
    let launch_type = launch_type_of(req.launch_type)?;
    let strategy = req.placement_strategy.clone().unwrap_or_default();
    let constraints = req.placement_constraints.clone().unwrap_or_default();
    validate_placement(&strategy, &constraints, daemon)?;
    let (max, min) = percents(req.deployment_configuration.as_ref(), daemon)?;
    let tags = tagging::validate(req.tags.as_deref().unwrap_or_default())?;
    active_cluster(ctx, &cluster).await?;
    // An EXTERNAL service gets its task definitions from its task sets.
    let td = if controller == ControllerType::External && req.task_definition.is_none() {
        stored::TaskDefinition::default()
    } else {
        let td = taskdefs::resolve(ctx, req.task_definition.as_deref().unwrap_or(""))
            .await?
            .ok_or_else(|| ApiError::client("Unable to describe task definition."))?
            .value
            .definition;
        if td.status != Some(stored::TaskDefinitionStatus::Active) {
            return Err(ApiError::client(format!(
                "TaskDefinition is inactive: {}",
                td.task_definition_arn.clone().unwrap_or_default()
            )));
        }
        td
    };
    let td_arn = td.task_definition_arn.clone().unwrap_or_default();
    let repo = &ctx.app.repo;
    let key = keys::service(&cluster, &name);
    enum Created {
        New(ServiceRecord),
        /// What this request (same clientToken) created before.
        Before(ServiceRecord),
    }
    let created = repo
        .retry(|| async {
            let cluster_rec: Versioned<ClusterRecord> = active_cluster(ctx, &cluster).await?;
            let existing = repo.get::<ServiceRecord>(&key).await?;
            if let Some(e) = &existing {
                if e.value.status != ServiceStatus::Inactive {
                    if req.client_token.is_some() && e.value.client_token == req.client_token {
                        return Ok(Attempt::Done(Created::Before(e.value.clone())));
                    }
                    return Err(ApiError::invalid_parameter(
                        "Creation of service was not idempotent.",
                    ));
                }
            }
            let now = now_epoch();
            let mut rec = ServiceRecord {
                name: name.clone(),
                cluster: cluster.clone(),
                status: ServiceStatus::Active,
                desired_count: desired as u32,
                scheduling_strategy: if daemon {
                    SchedulingStrategy::Daemon
                } else {
                    SchedulingStrategy::Replica
                },
                launch_type,
                task_definition: td_arn.clone(),
                deployments: vec![DeploymentRecord {
                    id: deployment_id(),
                    revision: None,
                    status: DeploymentStatus::Primary,
                    task_definition: td_arn.clone(),
                    rollout_state: RolloutState::InProgress,
                    rollout_state_reason: Some("ECS deployment in progress.".into()),
                    created_at: now,
                    updated_at: now,
                    next_launch_at: 0.0,
                    failures_seen: 0,
                    images_recorded: false,
                }],
                maximum_percent: max,
                minimum_healthy_percent: min,
                circuit_breaker: req
                    .deployment_configuration
                    .as_ref()
                    .and_then(|c| c.deployment_circuit_breaker.clone())
                    .map(Into::into),
                deployment_configuration: req.deployment_configuration.clone().map(Into::into),
                placement_constraints: convert(&constraints),
                placement_strategy: convert(&strategy),
                network_configuration: req.network_configuration.clone().map(Into::into),
                load_balancers: convert(req.load_balancers.as_deref().unwrap_or_default()),
                service_registries: convert(req.service_registries.as_deref().unwrap_or_default()),
                health_check_grace_period_seconds: req.health_check_grace_period_seconds,
                propagate_tags: req.propagate_tags.map(|p| p.as_str().to_string()),
                enable_ecs_managed_tags: req.enable_ecs_managed_tags,
                enable_execute_command: req.enable_execute_command,
                tags: tags.clone(),
                created_at: now,
                created_by: ctx.principal.arn.clone(),
                events: vec![],
                last_steady_event_at: None,
                last_completed_task_definition: None,
                client_token: req.client_token.clone(),
                capacity_provider_strategy: convert(
                    req.capacity_provider_strategy
                        .as_deref()
                        .unwrap_or_default(),
                ),
                role_arn: req.role.clone(),
                last_completed_revision: None,
                current_service_deployment: None,
                service_deployment_in_flight: false,
                deployment_controller: controller,
                task_sets: vec![],
            };
            let puts = if controller.is_ecs() {
                let first = rec.deployments[0].clone();
                deployments::start_puts(ctx, &mut rec, &first, &td, vec![], now).await?
            } else {
                // Task sets, not ECS deployments: a CODE_DEPLOY service starts with its first
                // task set as primary (what CodeDeploy's first deployment makes).
                rec.deployments.clear();
                if controller == ControllerType::CodeDeploy {
                    let first = super::task_sets::NewTaskSet {
                        task_definition: td_arn.clone(),
                        scale: 100.0,
                        external_id: None,
                        started_by: None,
                        launch_type,
                        network_configuration: rec.network_configuration.clone(),
                        load_balancers: rec.load_balancers.clone(),
                        service_registries: rec.service_registries.clone(),
                        capacity_provider_strategy: rec.capacity_provider_strategy.clone(),
                        tags: vec![],
                        client_token: None,
                    };
                    rec.task_sets
                        .push(first.record(TaskSetStatus::Primary, now));
                }
                vec![]
            };
            // Invariant: creating a service rewrites the cluster record (DeleteCluster compares on it).
            let ckey = keys::cluster(&cluster);
            let mut txn = Txn::new()
                .when(Compare::ModRevision {
                    key: key.clone(),
                    revision: existing.as_ref().map(|e| e.revision).unwrap_or(0),
                })
                .when(Compare::ModRevision {
                    key: ckey.clone(),
                    revision: cluster_rec.revision,
                })
                .put(ckey, to_bytes(&cluster_rec.value))
                .put(key.clone(), to_bytes(&rec));
            for (k, v) in puts {
                txn = txn.put(k, v);
            }
            Ok(Attempt::Commit(txn, Created::New(rec)))
        })
        .await?;
    match created {
        Created::New(rec) => {
            tracing::info!(cluster = %cluster, service = %name, desired, "service created");
            for d in &rec.deployments {
                ctx.app
                    .events
                    .push(crate::bus_events::deployment_state_change(
                        ctx,
                        &rec,
                        d,
                        RolloutState::InProgress,
                    ));
            }
            ctx.app.wake_scheduler();
            Ok(ecs::CreateServiceResponse {
                service: Some(to_wire(ctx, &rec, &[], true)),
            })
        }
        Created::Before(existing) => {
            let tasks = service_tasks(ctx, &cluster, &name).await?;
            Ok(ecs::CreateServiceResponse {
                service: Some(to_wire(ctx, &existing, &tasks, true)),
            })
        }
    }
}

async fn get_service(
    ctx: &Ctx,
    cluster: &str,
    arg: &str,
) -> Result<Versioned<ServiceRecord>, ApiError> {
    let name = service_name_of(arg).ok_or_else(service_not_found)?;
    ctx.app
        .repo
        .get::<ServiceRecord>(&keys::service(cluster, &name))
        .await?
        .ok_or_else(service_not_found)
}

pub async fn update_service(
    ctx: &Ctx,
    req: ecs::UpdateServiceRequest,
) -> Result<ecs::UpdateServiceResponse, ApiError> {
    let cluster = cluster_arg(req.cluster.as_deref())?;
    active_cluster(ctx, &cluster).await?;
    let arg = req.service.clone().unwrap_or_default();
    let new_td_def = match req.task_definition.as_deref() {
        Some(t) => {
            let td = taskdefs::resolve(ctx, t)
                .await?
                .ok_or_else(|| ApiError::client("Unable to describe task definition."))?
                .value
                .definition;
            if td.status != Some(stored::TaskDefinitionStatus::Active) {
                return Err(ApiError::client(format!(
                    "TaskDefinition is inactive: {}",
                    td.task_definition_arn.clone().unwrap_or_default()
                )));
            }
            Some(td)
        }
        None => None,
    };
    let new_td = new_td_def
        .as_ref()
        .map(|td| td.task_definition_arn.clone().unwrap_or_default());
    let (s, started) = ctx
        .app
        .repo
        .retry(|| async {
            let mut s = get_service(ctx, &cluster, &arg).await?;
            if s.value.status != ServiceStatus::Active {
                return Err(not_active());
            }
            let daemon = s.value.scheduling_strategy == SchedulingStrategy::Daemon;
            let v = &mut s.value;
            if !v.deployment_controller.is_ecs()
                && (new_td.is_some() || req.force_new_deployment)
            {
                return Err(ApiError::invalid_parameter(format!(
                    "Unable to update task definition on services with a {} deployment controller. Use the task set API to deploy a new task definition.",
                    v.deployment_controller.as_str()
                )));
            }
            if let Some(d) = req.desired_count {
                if daemon {
                    return Err(ApiError::invalid_parameter(
                        "The daemon scheduling strategy does not support a desired count for services.",
                    ));
                }
                if d < 0 {
                    return Err(ApiError::invalid_parameter(
                        "desiredCount can not be negative.",
                    ));
                }
                v.desired_count = d as u32;
            }
            if let Some(cfg) = &req.deployment_configuration {
                let merged = ecs::DeploymentConfiguration {
                    maximum_percent: cfg.maximum_percent.or(Some(v.maximum_percent as i32)),
                    minimum_healthy_percent: cfg
                        .minimum_healthy_percent
                        .or(Some(v.minimum_healthy_percent as i32)),
                    ..cfg.clone()
                };
                let (max, min) = percents(Some(&merged), daemon)?;
                v.maximum_percent = max;
                v.minimum_healthy_percent = min;
                if cfg.deployment_circuit_breaker.is_some() {
                    v.circuit_breaker = cfg.deployment_circuit_breaker.clone().map(Into::into);
                }
                v.deployment_configuration = Some(merged.into());
            }
            if let Some(c) = &req.placement_constraints {
                validate_placement(&[], c, daemon)?;
                v.placement_constraints = convert(c);
            }
            if let Some(st) = &req.placement_strategy {
                validate_placement(st, &[], daemon)?;
                v.placement_strategy = convert(st);
            }
            if req.health_check_grace_period_seconds.is_some() {
                v.health_check_grace_period_seconds = req.health_check_grace_period_seconds;
            }
            if let Some(e) = req.enable_execute_command {
                v.enable_execute_command = e;
            }
            if let Some(p) = req.propagate_tags {
                v.propagate_tags = Some(p.as_str().to_string());
            }
            if let Some(n) = &req.network_configuration {
                v.network_configuration = Some(n.clone().into());
            }
            if let Some(lb) = &req.load_balancers {
                v.load_balancers = convert(lb);
            }
            let td_changed = new_td.as_ref().is_some_and(|t| *t != v.task_definition);
            let mut puts = Vec::new();
            if td_changed || req.force_new_deployment {
                let now = now_epoch();
                let td = new_td.clone().unwrap_or_else(|| v.task_definition.clone());
                let definition = match (&new_td_def, td_changed) {
                    (Some(d), true) => d.clone(),
                    _ => taskdefs::by_arn(ctx, &td)
                        .await?
                        .map(|r| r.definition.clone())
                        .unwrap_or_default(),
                };
                let sources = deployments::source_revisions(v);
                for d in v.deployments.iter_mut() {
                    d.status = DeploymentStatus::Active;
                }
                v.deployments.push(DeploymentRecord {
                    id: deployment_id(),
                    revision: None,
                    status: DeploymentStatus::Primary,
                    task_definition: td.clone(),
                    rollout_state: RolloutState::InProgress,
                    rollout_state_reason: Some("ECS deployment in progress.".into()),
                    created_at: now,
                    updated_at: now,
                    next_launch_at: 0.0,
                    failures_seen: 0,
                    images_recorded: false,
                });
                v.task_definition = td;
                let d = v.deployments[v.deployments.len() - 1].clone();
                puts = deployments::start_puts(ctx, v, &d, &definition, sources, now).await?;
            }
            let started = !puts.is_empty();
            Ok(match write_back_with(&cluster, s, puts) {
                Attempt::Commit(txn, rec) => Attempt::Commit(txn, (rec, started)),
                Attempt::Done(rec) => Attempt::Done((rec, started)),
            })
        })
        .await?;
    tracing::info!(cluster = %cluster, service = %s.name, "service updated");
    if let Some(d) = s.deployments.last().filter(|_| started) {
        ctx.app
            .events
            .push(crate::bus_events::deployment_state_change(
                ctx,
                &s,
                d,
                RolloutState::InProgress,
            ));
    }
    ctx.app.wake_scheduler();
    let tasks = service_tasks(ctx, &cluster, &s.name).await?;
    Ok(ecs::UpdateServiceResponse {
        service: Some(to_wire(ctx, &s, &tasks, false)),
    })
}

/// Writes a service record read at `s.revision` back, if nobody wrote it meanwhile.
fn write_back(cluster: &str, s: Versioned<ServiceRecord>) -> Attempt<ServiceRecord> {
    write_back_with(cluster, s, Vec::new())
}

/// [`write_back`], with more puts in the same transaction.
fn write_back_with(
    cluster: &str,
    s: Versioned<ServiceRecord>,
    puts: Vec<(String, Vec<u8>)>,
) -> Attempt<ServiceRecord> {
    let key = keys::service(cluster, &s.value.name);
    let mut txn = Txn::new()
        .when(Compare::ModRevision {
            key: key.clone(),
            revision: s.revision,
        })
        .put(key, to_bytes(&s.value));
    for (k, v) in puts {
        txn = txn.put(k, v);
    }
    Attempt::Commit(txn, s.value)
}

pub async fn delete_service(
    ctx: &Ctx,
    req: ecs::DeleteServiceRequest,
) -> Result<ecs::DeleteServiceResponse, ApiError> {
    let cluster = cluster_arg(req.cluster.as_deref())?;
    active_cluster(ctx, &cluster).await?;
    let arg = req.service.clone().unwrap_or_default();
    let s = ctx
        .app
        .repo
        .retry(|| async {
            let mut s = get_service(ctx, &cluster, &arg).await?;
            if s.value.status == ServiceStatus::Inactive {
                return Err(not_active());
            }
            if s.value.status == ServiceStatus::Active {
                if s.value.scheduling_strategy == SchedulingStrategy::Replica
                    && s.value.desired_count > 0
                    && !req.force.unwrap_or(false)
                {
                    return Err(ApiError::invalid_parameter(
                        "The service cannot be stopped while it is scaled above 0.",
                    ));
                }
                s.value.desired_count = 0;
                s.value.status = ServiceStatus::Draining;
            }
            Ok(write_back(&cluster, s))
        })
        .await?;
    tracing::info!(cluster = %cluster, service = %s.name, "service deleted (draining)");
    ctx.app.wake_scheduler();
    let tasks = service_tasks(ctx, &cluster, &s.name).await?;
    Ok(ecs::DeleteServiceResponse {
        service: Some(to_wire(ctx, &s, &tasks, false)),
    })
}

pub async fn describe_services(
    ctx: &Ctx,
    req: ecs::DescribeServicesRequest,
) -> Result<ecs::DescribeServicesResponse, ApiError> {
    let cluster = cluster_arg(req.cluster.as_deref())?;
    active_cluster(ctx, &cluster).await?;
    let args = req.services.unwrap_or_default();
    if args.is_empty() || args.len() > 10 {
        return Err(ApiError::invalid_parameter(
            "services must contain between 1 and 10 items.",
        ));
    }
    let include_tags = req
        .include
        .unwrap_or_default()
        .contains(&ecs::ServiceField::Tags);
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for arg in args {
        match get_service(ctx, &cluster, &arg).await {
            Ok(s) => {
                let tasks = service_tasks(ctx, &cluster, &s.value.name).await?;
                let mut w = to_wire(ctx, &s.value, &tasks, include_tags);
                // Not asked for, not sent (DescribeServices' `include`).
                w.tags = w.tags.filter(|_| include_tags);
                out.push(w);
            }
            Err(e) if e.code == "ServiceNotFoundException" => failures.push(ecs::Failure {
                arn: Some(if arg.starts_with("arn:") {
                    arg.clone()
                } else {
                    ctx.app.scope.service_arn(&cluster, &arg)
                }),
                reason: Some("MISSING".into()),
                detail: None,
            }),
            Err(e) => return Err(e),
        }
    }
    Ok(ecs::DescribeServicesResponse {
        services: Some(out),
        failures: Some(failures),
    })
}

pub async fn list_services(
    ctx: &Ctx,
    req: ecs::ListServicesRequest,
) -> Result<ecs::ListServicesResponse, ApiError> {
    let cluster = cluster_arg(req.cluster.as_deref())?;
    active_cluster(ctx, &cluster).await?;
    let limit = max_results(req.max_results, 10)?;
    let after = decode_token(req.next_token.as_deref())?;
    let all = ctx
        .app
        .repo
        .list::<ServiceRecord>(&keys::services_in(&cluster))
        .await?;
    let items = all
        .into_iter()
        .filter(|s| s.value.status != ServiceStatus::Inactive)
        .filter(|s| {
            req.launch_type
                .is_none_or(|l| l.as_str() == s.value.launch_type.as_str())
        })
        .filter(|s| {
            req.scheduling_strategy
                .is_none_or(|st| st.as_str() == s.value.scheduling_strategy.as_str())
        })
        .map(|s| (s.key, ctx.app.scope.service_arn(&cluster, &s.value.name)))
        .collect();
    let (arns, next) = paginate(items, after.as_deref(), limit, false);
    Ok(ecs::ListServicesResponse {
        service_arns: Some(arns),
        next_token: next,
    })
}

fn protected_task(ctx: &Ctx, t: &TaskRecord, now: f64) -> ecs::ProtectedTask {
    let on = t.protected_until.is_some_and(|u| u > now);
    ecs::ProtectedTask {
        task_arn: Some(ctx.app.scope.task_arn(&t.cluster, &t.id)),
        protection_enabled: on,
        expiration_date: if on { t.protected_until } else { None },
    }
}

pub async fn update_task_protection(
    ctx: &Ctx,
    req: ecs::UpdateTaskProtectionRequest,
) -> Result<ecs::UpdateTaskProtectionResponse, ApiError> {
    let cluster = cluster_arg(req.cluster.as_deref())?;
    active_cluster(ctx, &cluster).await?;
    let minutes = req.expires_in_minutes.unwrap_or(120);
    if !(1..=2880).contains(&minutes) {
        return Err(ApiError::invalid_parameter(
            "expiresInMinutes must be between 1 and 2880.",
        ));
    }
    let args = req.tasks.unwrap_or_default();
    if args.is_empty() || args.len() > 10 {
        return Err(ApiError::invalid_parameter(
            "tasks must contain between 1 and 10 items.",
        ));
    }
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for arg in args {
        let Some(id) = task_id_of(&arg) else {
            failures.push(ecs::Failure {
                arn: Some(arg.clone()),
                reason: Some("TASK_NOT_VALID".into()),
                detail: None,
            });
            continue;
        };
        let key = keys::task(&cluster, &id);
        let protected = ctx
            .app
            .repo
            .update::<TaskRecord, _>(&key, |cur| {
                let Some(mut t) = cur else {
                    return Ok(Change::Keep(None));
                };
                let now = now_epoch();
                t.protected_until = req
                    .protection_enabled
                    .unwrap_or(false)
                    .then_some(now + minutes as f64 * 60.0);
                let p = protected_task(ctx, &t, now);
                Ok(Change::Put(t, Some(p)))
            })
            .await?;
        match protected {
            Some(p) => out.push(p),
            None => failures.push(ecs::Failure {
                arn: Some(arg.clone()),
                reason: Some("TASK_NOT_VALID".into()),
                detail: None,
            }),
        }
    }
    Ok(ecs::UpdateTaskProtectionResponse {
        protected_tasks: Some(out),
        failures: Some(failures),
    })
}

pub async fn get_task_protection(
    ctx: &Ctx,
    req: ecs::GetTaskProtectionRequest,
) -> Result<ecs::GetTaskProtectionResponse, ApiError> {
    let cluster = cluster_arg(req.cluster.as_deref())?;
    active_cluster(ctx, &cluster).await?;
    let now = now_epoch();
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for arg in req.tasks.unwrap_or_default() {
        match task_id_of(&arg) {
            Some(id) => match ctx
                .app
                .repo
                .get::<TaskRecord>(&keys::task(&cluster, &id))
                .await?
            {
                Some(t) => out.push(protected_task(ctx, &t.value, now)),
                None => failures.push(ecs::Failure {
                    arn: Some(arg),
                    reason: Some("TASK_NOT_VALID".into()),
                    detail: None,
                }),
            },
            None => failures.push(ecs::Failure {
                arn: Some(arg),
                reason: Some("TASK_NOT_VALID".into()),
                detail: None,
            }),
        }
    }
    Ok(ecs::GetTaskProtectionResponse {
        protected_tasks: Some(out),
        failures: Some(failures),
    })
}
