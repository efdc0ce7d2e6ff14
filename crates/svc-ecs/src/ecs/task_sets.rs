//! Task sets of services with an EXTERNAL (or CODE_DEPLOY) deployment controller: CreateTaskSet,
//! UpdateTaskSet, UpdateServicePrimaryTaskSet, DeleteTaskSet, DescribeTaskSets. The task sets live
//! in their service's record; the service scheduler keeps each at its computed desired count
//! (`berth_scheduler::task_sets`).

use super::args::{active_cluster, cluster_arg};
use super::services::{deployment_id, not_active, service_name_of, service_not_found};
use super::{tagging, taskdefs};
use crate::keys;
use crate::records::{
    convert, tags_to_wire, ControllerType, LaunchType, ServiceRecord, ServiceStatus, TaskRecord,
    TaskSetRecord, TaskSetStatus,
};
use crate::state::Ctx;
use crate::stored;
use berth_core::lifecycle::TaskStatus;
use berth_service::codec::now_epoch;
use berth_service::repo::{to_bytes, Attempt, Versioned};
use berth_service::ApiError;
use berth_store::{Compare, Txn};
use berth_wire::ecs;
use std::sync::Arc;

fn task_set_not_found() -> ApiError {
    ApiError::new(
        "TaskSetNotFoundException",
        "The specified task set wasn't found.",
    )
}

/// The task set id (`ecs-svc/<n>`) of a `taskSet` argument: the id or its ARN.
fn task_set_id(arg: &str) -> Option<String> {
    let id = if arg.starts_with("arn:") {
        match berth_core::Arn::parse(arg)?.ecs_resource()? {
            // task-set/<cluster>/<service>/ecs-svc/<n>
            (berth_core::ResourceKind::TaskSet, rest) => rest.splitn(3, '/').nth(2)?,
            _ => return None,
        }
    } else {
        arg
    };
    let n = id.strip_prefix("ecs-svc/")?;
    (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then(|| id.to_string())
}

/// The service of a task-set call: it exists, is ACTIVE and takes task sets.
async fn service_for_task_sets(
    ctx: &Ctx,
    cluster: &str,
    arg: Option<&str>,
) -> Result<Versioned<ServiceRecord>, ApiError> {
    let name = service_name_of(arg.unwrap_or_default()).ok_or_else(service_not_found)?;
    let s = ctx
        .app
        .repo
        .get::<ServiceRecord>(&keys::service(cluster, &name))
        .await?
        .ok_or_else(service_not_found)?;
    if s.value.status != ServiceStatus::Active {
        return Err(not_active());
    }
    if s.value.deployment_controller == ControllerType::Ecs {
        return Err(ApiError::invalid_parameter(
            "Task sets are only supported for services that use the EXTERNAL or CODE_DEPLOY deployment controller.",
        ));
    }
    Ok(s)
}

fn scale_of(scale: Option<&ecs::Scale>) -> Result<f64, ApiError> {
    let v = scale.map_or(100.0, |s| s.value);
    if !(0.0..=100.0).contains(&v) || !v.is_finite() {
        return Err(ApiError::invalid_parameter(
            "The scale value must be between 0 and 100.",
        ));
    }
    Ok(v)
}

/// Running and pending tasks of each task set.
fn counts(tasks: &[Arc<TaskRecord>], id: &str) -> (i32, i32) {
    let mut running = 0;
    let mut pending = 0;
    for t in tasks.iter().filter(|t| t.started_by.as_deref() == Some(id)) {
        if t.desired_status == TaskStatus::Running && t.last_status == TaskStatus::Running {
            running += 1;
        } else if t.desired_status == TaskStatus::Running && t.last_status != TaskStatus::Stopped {
            pending += 1;
        }
    }
    (running, pending)
}

pub(crate) fn to_wire(
    ctx: &Ctx,
    s: &ServiceRecord,
    ts: &TaskSetRecord,
    tasks: &[Arc<TaskRecord>],
    include_tags: bool,
) -> ecs::TaskSet {
    let scope = &ctx.app.scope;
    let computed = berth_scheduler::task_sets::computed_desired(s.desired_count, ts.scale);
    let (running, pending) = counts(tasks, &ts.id);
    let steady = berth_scheduler::task_sets::steady(computed, running as u32, pending as u32);
    ecs::TaskSet {
        id: Some(ts.id.clone()),
        task_set_arn: Some(scope.task_set_arn(&s.cluster, &s.name, &ts.id)),
        service_arn: Some(scope.service_arn(&s.cluster, &s.name)),
        cluster_arn: Some(scope.cluster_arn(&s.cluster)),
        started_by: ts.started_by.clone(),
        external_id: ts.external_id.clone(),
        status: Some(ts.status.as_str().to_string()),
        task_definition: Some(ts.task_definition.clone()),
        computed_desired_count: computed as i32,
        pending_count: pending,
        running_count: running,
        created_at: Some(ts.created_at),
        updated_at: Some(ts.updated_at),
        launch_type: Some(ts.launch_type.into()),
        capacity_provider_strategy: (!ts.capacity_provider_strategy.is_empty())
            .then(|| convert(&ts.capacity_provider_strategy)),
        network_configuration: ts.network_configuration.clone().map(Into::into),
        load_balancers: Some(convert(&ts.load_balancers)),
        service_registries: Some(convert(&ts.service_registries)),
        scale: Some(ecs::Scale {
            value: ts.scale,
            unit: Some(ecs::ScaleUnit::Percent),
        }),
        stability_status: Some(if steady {
            ecs::StabilityStatus::SteadyState
        } else {
            ecs::StabilityStatus::Stabilizing
        }),
        stability_status_at: Some(now_epoch()),
        tags: include_tags.then(|| tags_to_wire(&ts.tags)),
        ..Default::default()
    }
}

async fn service_tasks(ctx: &Ctx, s: &ServiceRecord) -> Result<Vec<Arc<TaskRecord>>, ApiError> {
    super::tasks::group_tasks(ctx, &s.cluster, &format!("service:{}", s.name)).await
}

/// Writes the service record back (with its task sets) if nobody wrote it meanwhile.
fn write_back<T>(s: &Versioned<ServiceRecord>, out: T) -> Attempt<T> {
    let key = keys::service(&s.value.cluster, &s.value.name);
    let txn = Txn::new()
        .when(Compare::ModRevision {
            key: key.clone(),
            revision: s.revision,
        })
        .put(key, to_bytes(&s.value));
    Attempt::Commit(txn, out)
}

/// A task set as CreateTaskSet (or a CODE_DEPLOY service's creation) makes it.
pub(crate) struct NewTaskSet {
    pub task_definition: String,
    pub scale: f64,
    pub external_id: Option<String>,
    pub started_by: Option<String>,
    pub launch_type: LaunchType,
    pub network_configuration: Option<stored::NetworkConfiguration>,
    pub load_balancers: Vec<stored::LoadBalancer>,
    pub service_registries: Vec<stored::ServiceRegistry>,
    pub capacity_provider_strategy: Vec<stored::CapacityProviderStrategyItem>,
    pub tags: Vec<crate::records::Tag>,
    pub client_token: Option<String>,
}

impl NewTaskSet {
    pub(crate) fn record(self, status: TaskSetStatus, now: f64) -> TaskSetRecord {
        TaskSetRecord {
            id: deployment_id(),
            status,
            task_definition: self.task_definition,
            external_id: self.external_id,
            started_by: self.started_by,
            scale: self.scale,
            launch_type: self.launch_type,
            network_configuration: self.network_configuration,
            load_balancers: self.load_balancers,
            service_registries: self.service_registries,
            capacity_provider_strategy: self.capacity_provider_strategy,
            tags: self.tags,
            client_token: self.client_token,
            created_at: now,
            updated_at: now,
        }
    }
}

pub async fn create_task_set(
    ctx: &Ctx,
    req: ecs::CreateTaskSetRequest,
) -> Result<ecs::CreateTaskSetResponse, ApiError> {
    let cluster = cluster_arg(req.cluster.as_deref())?;
    active_cluster(ctx, &cluster).await?;
    // The service is checked before the task definition (ServiceNotFoundException first).
    service_for_task_sets(ctx, &cluster, req.service.as_deref()).await?;
    let scale = scale_of(req.scale.as_ref())?;
    let tags = tagging::validate(req.tags.as_deref().unwrap_or_default())?;
    let launch_type = super::services::launch_type_of(req.launch_type)?;
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
    let td_arn = td.task_definition_arn.clone().unwrap_or_default();
    let repo = &ctx.app.repo;
    let (svc, ts) = repo
        .retry(|| async {
            let mut s = service_for_task_sets(ctx, &cluster, req.service.as_deref()).await?;
            if let Some(token) = &req.client_token {
                if let Some(before) = s
                    .value
                    .task_sets
                    .iter()
                    .find(|t| t.client_token.as_ref() == Some(token))
                {
                    return Ok(Attempt::Done((s.value.clone(), before.clone())));
                }
            }
            let new = NewTaskSet {
                task_definition: td_arn.clone(),
                scale,
                external_id: req.external_id.clone(),
                started_by: None,
                launch_type,
                network_configuration: req.network_configuration.clone().map(Into::into),
                load_balancers: convert(req.load_balancers.as_deref().unwrap_or_default()),
                service_registries: convert(req.service_registries.as_deref().unwrap_or_default()),
                capacity_provider_strategy: convert(
                    req.capacity_provider_strategy
                        .as_deref()
                        .unwrap_or_default(),
                ),
                tags: tags.clone(),
                client_token: req.client_token.clone(),
            };
            let ts = new.record(TaskSetStatus::Active, now_epoch());
            s.value.task_sets.push(ts.clone());
            let svc = s.value.clone();
            Ok(write_back(&s, (svc, ts)))
        })
        .await?;
    tracing::info!(cluster = %cluster, service = %svc.name, task_set = %ts.id, "task set created");
    ctx.app.wake_scheduler();
    let tasks = service_tasks(ctx, &svc).await?;
    Ok(ecs::CreateTaskSetResponse {
        task_set: Some(to_wire(ctx, &svc, &ts, &tasks, true)),
    })
}

/// Runs `change` on the named task set of the service, writes the service back, and answers the
/// task set as it is after.
async fn change_task_set(
    ctx: &Ctx,
    cluster_arg_: Option<&str>,
    service: Option<&str>,
    task_set: &str,
    change: impl Fn(&mut ServiceRecord, usize) -> Result<(), ApiError>,
) -> Result<ecs::TaskSet, ApiError> {
    let cluster = cluster_arg(cluster_arg_)?;
    active_cluster(ctx, &cluster).await?;
    service_for_task_sets(ctx, &cluster, service).await?;
    let id = task_set_id(task_set).ok_or_else(task_set_not_found)?;
    let (svc, ts) = ctx
        .app
        .repo
        .retry(|| async {
            let mut s = service_for_task_sets(ctx, &cluster, service).await?;
            let i = s
                .value
                .task_sets
                .iter()
                .position(|t| t.id == id && t.status != TaskSetStatus::Draining)
                .ok_or_else(task_set_not_found)?;
            change(&mut s.value, i)?;
            s.value.task_sets[i].updated_at = now_epoch();
            let out = (s.value.clone(), s.value.task_sets[i].clone());
            Ok(write_back(&s, out))
        })
        .await?;
    ctx.app.wake_scheduler();
    let tasks = service_tasks(ctx, &svc).await?;
    Ok(to_wire(ctx, &svc, &ts, &tasks, false))
}

pub async fn update_task_set(
    ctx: &Ctx,
    req: ecs::UpdateTaskSetRequest,
) -> Result<ecs::UpdateTaskSetResponse, ApiError> {
    let scale = scale_of(req.scale.as_ref())?;
    let ts = change_task_set(
        ctx,
        req.cluster.as_deref(),
        req.service.as_deref(),
        req.task_set.as_deref().unwrap_or_default(),
        |s, i| {
            s.task_sets[i].scale = scale;
            Ok(())
        },
    )
    .await?;
    Ok(ecs::UpdateTaskSetResponse { task_set: Some(ts) })
}

pub async fn update_service_primary_task_set(
    ctx: &Ctx,
    req: ecs::UpdateServicePrimaryTaskSetRequest,
) -> Result<ecs::UpdateServicePrimaryTaskSetResponse, ApiError> {
    let ts = change_task_set(
        ctx,
        req.cluster.as_deref(),
        req.service.as_deref(),
        req.primary_task_set.as_deref().unwrap_or_default(),
        |s, i| {
            for (j, t) in s.task_sets.iter_mut().enumerate() {
                if j == i {
                    t.status = TaskSetStatus::Primary;
                } else if t.status == TaskSetStatus::Primary {
                    t.status = TaskSetStatus::Active;
                }
            }
            // The primary task set's settings are the service's.
            let p = &s.task_sets[i];
            s.task_definition = p.task_definition.clone();
            s.launch_type = p.launch_type;
            s.network_configuration = p.network_configuration.clone();
            s.load_balancers = p.load_balancers.clone();
            s.service_registries = p.service_registries.clone();
            Ok(())
        },
    )
    .await?;
    Ok(ecs::UpdateServicePrimaryTaskSetResponse { task_set: Some(ts) })
}

pub async fn delete_task_set(
    ctx: &Ctx,
    req: ecs::DeleteTaskSetRequest,
) -> Result<ecs::DeleteTaskSetResponse, ApiError> {
    let force = req.force.unwrap_or(false);
    let ts = change_task_set(
        ctx,
        req.cluster.as_deref(),
        req.service.as_deref(),
        req.task_set.as_deref().unwrap_or_default(),
        |s, i| {
            let t = &s.task_sets[i];
            if !force && t.status == TaskSetStatus::Primary {
                return Err(ApiError::invalid_parameter(
                    "The primary task set of a service cannot be deleted.",
                ));
            }
            if !force && berth_scheduler::task_sets::computed_desired(s.desired_count, t.scale) > 0 {
                return Err(ApiError::invalid_parameter(
                    "The task set cannot be deleted while it is scaled above 0. Use force to delete it anyway.",
                ));
            }
            s.task_sets[i].status = TaskSetStatus::Draining;
            Ok(())
        },
    )
    .await?;
    Ok(ecs::DeleteTaskSetResponse { task_set: Some(ts) })
}

pub async fn describe_task_sets(
    ctx: &Ctx,
    req: ecs::DescribeTaskSetsRequest,
) -> Result<ecs::DescribeTaskSetsResponse, ApiError> {
    let cluster = cluster_arg(req.cluster.as_deref())?;
    active_cluster(ctx, &cluster).await?;
    let s = service_for_task_sets(ctx, &cluster, req.service.as_deref()).await?;
    let include_tags = req
        .include
        .unwrap_or_default()
        .contains(&ecs::TaskSetField::Tags);
    let tasks = service_tasks(ctx, &s.value).await?;
    let mut out = Vec::new();
    let mut failures = Vec::new();
    match req.task_sets {
        None => {
            for ts in &s.value.task_sets {
                out.push(to_wire(ctx, &s.value, ts, &tasks, include_tags));
            }
        }
        Some(args) => {
            for arg in args {
                match task_set_id(&arg).and_then(|id| s.value.task_sets.iter().find(|t| t.id == id))
                {
                    Some(ts) => out.push(to_wire(ctx, &s.value, ts, &tasks, include_tags)),
                    None => failures.push(ecs::Failure {
                        arn: Some(arg),
                        reason: Some("MISSING".into()),
                        detail: None,
                    }),
                }
            }
        }
    }
    Ok(ecs::DescribeTaskSetsResponse {
        task_sets: Some(out),
        failures: Some(failures),
    })
}
