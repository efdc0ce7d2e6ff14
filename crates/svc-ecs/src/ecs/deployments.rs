//! Service deployments and service revisions: ListServiceDeployments,
//! DescribeServiceDeployments, DescribeServiceRevisions, StopServiceDeployment — and the records
//! CreateService and UpdateService write when they start a deployment ([`start`]).
//!
//! Every ECS deployment `ecs-svc/<n>` a service starts has a service revision `<n>` (what it
//! runs) and a service deployment (its rollout, with a random id). The service scheduler moves
//! the live service deployment along with the ECS deployments (`berth_scheduler::rollout`).

use super::args::{active_cluster, cluster_arg, decode_token, max_results, paginate};
use super::services::{service_name_of, service_not_found};
use crate::keys;
use crate::records::{
    convert, ContainerImageRecord, DeploymentRecord, MonitorStatus, ServiceDeploymentRecord,
    ServiceDeploymentStatus, ServiceRecord, ServiceRevisionRecord, ServiceStatus, TaskRecord,
};
use crate::state::Ctx;
use crate::stored;
use berth_core::lifecycle::TaskStatus;
use berth_service::codec::now_epoch;
use berth_service::repo::{to_bytes, Attempt, Versioned};
use berth_service::ApiError;
use berth_store::{Compare, Txn};
use berth_wire::ecs;
use std::collections::HashMap;
use std::sync::Arc;

/// DescribeServiceDeployments and DescribeServiceRevisions take at most this many ARNs.
const MAX_ARNS: usize = 20;

/// A new service deployment id: 21 characters of `[A-Za-z0-9_-]`, as ECS's look.
pub(crate) fn new_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::rng();
    (0..21)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The records a new deployment `d` of `svc` (already carrying its new settings) writes: its
/// service revision and its service deployment, which starts PENDING.
pub(crate) fn start(
    svc: &ServiceRecord,
    d: &DeploymentRecord,
    td: &stored::TaskDefinition,
    sources: Vec<String>,
    now: f64,
) -> (ServiceDeploymentRecord, ServiceRevisionRecord) {
    let breaker = svc
        .circuit_breaker
        .as_ref()
        .filter(|c| c.enable == Some(true));
    let moving = berth_scheduler::rollout::ServiceDeployment::new(&d.id, breaker.is_some(), now);
    let mut sd = ServiceDeploymentRecord {
        id: new_id(),
        cluster: svc.cluster.clone(),
        service: svc.name.clone(),
        deployment_id: d.id.clone(),
        target_revision: d.revision().to_string(),
        source_revisions: sources,
        status: ServiceDeploymentStatus::Pending,
        status_reason: None,
        created_at: now,
        started_at: None,
        finished_at: None,
        stopped_at: None,
        updated_at: now,
        rollback: None,
        circuit_breaker: MonitorStatus::Disabled,
        failure_count: 0,
        threshold: berth_scheduler::failure_threshold(
            svc.desired_count,
            crate::service_scheduler::breaker_threshold(svc),
        ),
        deployment_configuration: Some(deployment_configuration(svc).into()),
        final_counts: Vec::new(),
    };
    sd.set_moving_parts(moving);
    let revision = ServiceRevisionRecord {
        number: d.revision().to_string(),
        cluster: svc.cluster.clone(),
        service: svc.name.clone(),
        task_definition: d.task_definition.clone(),
        launch_type: svc.launch_type,
        capacity_provider_strategy: svc.capacity_provider_strategy.clone(),
        load_balancers: svc.load_balancers.clone(),
        service_registries: svc.service_registries.clone(),
        network_configuration: svc.network_configuration.clone(),
        container_images: td
            .container_definitions
            .iter()
            .flatten()
            .map(|c| ContainerImageRecord {
                container_name: c.name.clone().unwrap_or_default(),
                image: c.image.clone().unwrap_or_default(),
                image_digest: None,
            })
            .collect(),
        created_at: now,
    };
    (sd, revision)
}

/// The revisions a new deployment replaces: those of the service's deployments, newest first.
pub(crate) fn source_revisions(svc: &ServiceRecord) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in svc.deployments.iter().rev() {
        let r = d.revision().to_string();
        if !out.contains(&r) {
            out.push(r);
        }
    }
    out
}

/// Puts for starting a deployment: the new records, and the superseded live one (STOPPED).
/// The caller puts the service record (with `current_service_deployment` set) in the same
/// transaction, comparing on its revision.
pub(crate) async fn start_puts(
    ctx: &Ctx,
    svc: &mut ServiceRecord,
    d: &DeploymentRecord,
    td: &stored::TaskDefinition,
    sources: Vec<String>,
    now: f64,
) -> Result<Vec<(String, Vec<u8>)>, ApiError> {
    let mut puts = Vec::new();
    if let (Some(id), true) = (
        &svc.current_service_deployment,
        svc.service_deployment_in_flight,
    ) {
        let key = keys::service_deployment(&svc.cluster, &svc.name, id);
        if let Some(mut old) = ctx.app.repo.get::<ServiceDeploymentRecord>(&key).await? {
            let moved = old.value.moving_parts().superseded(now);
            old.value.set_moving_parts(moved);
            puts.push((key, to_bytes(&old.value)));
        }
    }
    let (sd, revision) = start(svc, d, td, sources, now);
    puts.push((
        keys::service_revision(&svc.cluster, &svc.name, &revision.number),
        to_bytes(&revision),
    ));
    puts.push((
        keys::service_deployment(&svc.cluster, &svc.name, &sd.id),
        to_bytes(&sd),
    ));
    svc.current_service_deployment = Some(sd.id);
    svc.service_deployment_in_flight = true;
    Ok(puts)
}

/// The service's deployment configuration as DescribeServices shows it.
pub(crate) fn deployment_configuration(s: &ServiceRecord) -> ecs::DeploymentConfiguration {
    ecs::DeploymentConfiguration {
        deployment_circuit_breaker: Some(s.circuit_breaker.clone().map_or(
            ecs::DeploymentCircuitBreaker {
                enable: Some(false),
                rollback: Some(false),
                ..Default::default()
            },
            Into::into,
        )),
        maximum_percent: Some(s.maximum_percent as i32),
        minimum_healthy_percent: Some(s.minimum_healthy_percent as i32),
        ..s.deployment_configuration
            .clone()
            .map(Into::into)
            .unwrap_or_default()
    }
}

/// Requested, running and pending tasks of one revision.
#[derive(Default, Clone, Copy)]
pub(crate) struct RevisionCounts {
    pub requested: i32,
    pub running: i32,
    pub pending: i32,
}

/// Each revision's task counts: tasks count for the revision their deployment runs; the
/// primary deployment's revision is the one requested.
pub(crate) fn revision_counts(
    svc: &ServiceRecord,
    tasks: &[Arc<TaskRecord>],
) -> HashMap<String, RevisionCounts> {
    let of: HashMap<&str, &str> = svc
        .deployments
        .iter()
        .map(|d| (d.id.as_str(), d.revision()))
        .collect();
    let mut out: HashMap<String, RevisionCounts> = HashMap::new();
    for t in tasks {
        let Some(by) = t.started_by.as_deref() else {
            continue;
        };
        let revision = of
            .get(by)
            .copied()
            .unwrap_or_else(|| berth_scheduler::revision_of(by));
        let c = out.entry(revision.to_string()).or_default();
        if t.desired_status == TaskStatus::Running && t.last_status == TaskStatus::Running {
            c.running += 1;
        } else if t.desired_status == TaskStatus::Running && t.last_status != TaskStatus::Stopped {
            c.pending += 1;
        }
    }
    if svc.status == ServiceStatus::Active {
        if let Some(p) = svc
            .deployments
            .iter()
            .find(|d| d.status == crate::records::DeploymentStatus::Primary)
        {
            out.entry(p.revision().to_string()).or_default().requested = svc.desired_count as i32;
        }
    }
    out
}

/// DescribeServices' `currentServiceRevisions`: every revision the service's deployments run.
pub(crate) fn current_revisions(
    ctx: &Ctx,
    svc: &ServiceRecord,
    counts: &HashMap<String, RevisionCounts>,
) -> Vec<ecs::ServiceCurrentRevisionSummary> {
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for d in svc.deployments.iter().rev() {
        let r = d.revision();
        if seen.contains(&r) {
            continue;
        }
        seen.push(r);
        let c = counts.get(r).copied().unwrap_or_default();
        out.push(ecs::ServiceCurrentRevisionSummary {
            arn: Some(
                ctx.app
                    .scope
                    .service_revision_arn(&svc.cluster, &svc.name, r),
            ),
            requested_task_count: c.requested,
            running_task_count: c.running,
            pending_task_count: c.pending,
        });
    }
    out
}

fn status_to_wire(s: ServiceDeploymentStatus) -> ecs::ServiceDeploymentStatus {
    use ecs::ServiceDeploymentStatus as W;
    match s {
        ServiceDeploymentStatus::Pending => W::Pending,
        ServiceDeploymentStatus::InProgress => W::InProgress,
        ServiceDeploymentStatus::Successful => W::Successful,
        ServiceDeploymentStatus::Stopped => W::Stopped,
        ServiceDeploymentStatus::StopRequested => W::StopRequested,
        ServiceDeploymentStatus::RollbackRequested => W::RollbackRequested,
        ServiceDeploymentStatus::RollbackInProgress => W::RollbackInProgress,
        ServiceDeploymentStatus::RollbackSuccessful => W::RollbackSuccessful,
        ServiceDeploymentStatus::RollbackFailed => W::RollbackFailed,
    }
}

fn monitor_to_wire(m: MonitorStatus) -> ecs::ServiceDeploymentRollbackMonitorsStatus {
    use ecs::ServiceDeploymentRollbackMonitorsStatus as W;
    match m {
        MonitorStatus::Disabled => W::Disabled,
        MonitorStatus::Monitoring => W::Monitoring,
        MonitorStatus::MonitoringComplete => W::MonitoringComplete,
        MonitorStatus::Triggered => W::Triggered,
    }
}

fn deployment_arn(ctx: &Ctx, r: &ServiceDeploymentRecord) -> String {
    ctx.app
        .scope
        .service_deployment_arn(&r.cluster, &r.service, &r.id)
}

fn summary(
    ctx: &Ctx,
    r: &ServiceDeploymentRecord,
    revision: &str,
    counts: &HashMap<String, RevisionCounts>,
) -> ecs::ServiceRevisionSummary {
    let c = counts.get(revision).copied().unwrap_or_default();
    ecs::ServiceRevisionSummary {
        arn: Some(
            ctx.app
                .scope
                .service_revision_arn(&r.cluster, &r.service, revision),
        ),
        requested_task_count: c.requested,
        running_task_count: c.running,
        pending_task_count: c.pending,
        ..Default::default()
    }
}

/// `live`: the service's counts now, used until the deployment finished and froze its own.
fn to_wire(
    ctx: &Ctx,
    r: &ServiceDeploymentRecord,
    live: &HashMap<String, RevisionCounts>,
) -> ecs::ServiceDeployment {
    let scope = &ctx.app.scope;
    let frozen: HashMap<String, RevisionCounts>;
    let counts = if r.final_counts.is_empty() {
        live
    } else {
        frozen = r
            .final_counts
            .iter()
            .map(|c| {
                let counts = RevisionCounts {
                    requested: c.requested as i32,
                    running: c.running as i32,
                    pending: c.pending as i32,
                };
                (c.revision.clone(), counts)
            })
            .collect();
        &frozen
    };
    ecs::ServiceDeployment {
        service_deployment_arn: Some(deployment_arn(ctx, r)),
        service_arn: Some(scope.service_arn(&r.cluster, &r.service)),
        cluster_arn: Some(scope.cluster_arn(&r.cluster)),
        created_at: Some(r.created_at),
        started_at: r.started_at,
        finished_at: r.finished_at,
        stopped_at: r.stopped_at,
        updated_at: Some(r.updated_at),
        source_service_revisions: Some(
            r.source_revisions
                .iter()
                .map(|s| summary(ctx, r, s, counts))
                .collect(),
        ),
        target_service_revision: Some(summary(ctx, r, &r.target_revision, counts)),
        status: Some(status_to_wire(r.status)),
        status_reason: r.status_reason.clone(),
        lifecycle_stage: None,
        lifecycle_hook_details: None,
        deployment_configuration: r.deployment_configuration.clone().map(Into::into),
        rollback: r.rollback.as_ref().map(|rb| ecs::Rollback {
            reason: Some(rb.reason.clone()),
            started_at: Some(rb.started_at),
            service_revision_arn: Some(scope.service_revision_arn(
                &r.cluster,
                &r.service,
                &rb.revision,
            )),
        }),
        deployment_circuit_breaker: Some(ecs::ServiceDeploymentCircuitBreaker {
            status: Some(monitor_to_wire(r.circuit_breaker)),
            failure_count: r.failure_count as i32,
            threshold: r.threshold as i32,
        }),
        alarms: Some(ecs::ServiceDeploymentAlarms {
            status: Some(ecs::ServiceDeploymentRollbackMonitorsStatus::Disabled),
            ..Default::default()
        }),
    }
}

fn revision_to_wire(ctx: &Ctx, r: &ServiceRevisionRecord) -> ecs::ServiceRevision {
    let scope = &ctx.app.scope;
    ecs::ServiceRevision {
        service_revision_arn: Some(scope.service_revision_arn(&r.cluster, &r.service, &r.number)),
        service_arn: Some(scope.service_arn(&r.cluster, &r.service)),
        cluster_arn: Some(scope.cluster_arn(&r.cluster)),
        task_definition: Some(r.task_definition.clone()),
        capacity_provider_strategy: (!r.capacity_provider_strategy.is_empty())
            .then(|| convert(&r.capacity_provider_strategy)),
        launch_type: Some(r.launch_type.into()),
        load_balancers: Some(convert(&r.load_balancers)),
        service_registries: Some(convert(&r.service_registries)),
        network_configuration: r.network_configuration.clone().map(Into::into),
        container_images: Some(
            r.container_images
                .iter()
                .map(|c| ecs::ContainerImage {
                    container_name: Some(c.container_name.clone()),
                    image_digest: c.image_digest.clone(),
                    image: Some(c.image.clone()),
                })
                .collect(),
        ),
        guard_duty_enabled: false,
        created_at: Some(r.created_at),
        ..Default::default()
    }
}

/// The `(cluster, service, last part)` of a `service-deployment/…` or `service-revision/…` ARN.
fn parse_arn(arn: &str, kind: berth_core::ResourceKind) -> Option<(String, String, String)> {
    let parsed = berth_core::Arn::parse(arn)?;
    let (k, rest) = parsed.ecs_resource()?;
    if k != kind {
        return None;
    }
    let mut parts = rest.split('/');
    let (cluster, service, id) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || id.is_empty() {
        return None;
    }
    berth_core::names::cluster_name(cluster).ok()?;
    berth_core::names::service_name(service).ok()?;
    Some((cluster.to_string(), service.to_string(), id.to_string()))
}

fn missing(arn: &str) -> ecs::Failure {
    ecs::Failure {
        arn: Some(arn.to_string()),
        reason: Some("MISSING".into()),
        detail: None,
    }
}

/// Each service's revision counts (by cluster and name), read once per request.
#[derive(Default)]
struct Services(HashMap<(String, String), HashMap<String, RevisionCounts>>);

impl Services {
    async fn counts(
        &mut self,
        ctx: &Ctx,
        cluster: &str,
        name: &str,
    ) -> Result<&HashMap<String, RevisionCounts>, ApiError> {
        let k = (cluster.to_string(), name.to_string());
        if !self.0.contains_key(&k) {
            let svc = ctx
                .app
                .repo
                .get::<ServiceRecord>(&keys::service(cluster, name))
                .await?;
            let counts = match svc {
                Some(s) => {
                    let group = format!("service:{name}");
                    let tasks = super::tasks::group_tasks(ctx, cluster, &group).await?;
                    revision_counts(&s.value, &tasks)
                }
                None => HashMap::new(),
            };
            self.0.insert(k.clone(), counts);
        }
        Ok(&self.0[&k])
    }
}

fn arn_count(n: usize, what: &str) -> Result<(), ApiError> {
    if n == 0 || n > MAX_ARNS {
        return Err(ApiError::invalid_parameter(format!(
            "{what} must contain between 1 and {MAX_ARNS} items."
        )));
    }
    Ok(())
}

pub async fn list_service_deployments(
    ctx: &Ctx,
    req: ecs::ListServiceDeploymentsRequest,
) -> Result<ecs::ListServiceDeploymentsResponse, ApiError> {
    // Terraform's deployment wait sends `"cluster": ""` for a service without one: the default.
    let cluster = cluster_arg(req.cluster.as_deref().filter(|c| !c.is_empty()))?;
    active_cluster(ctx, &cluster).await?;
    let limit = max_results(req.max_results, 20)?;
    let after = decode_token(req.next_token.as_deref())?;
    let name = service_name_of(req.service.as_deref().unwrap_or_default())
        .ok_or_else(service_not_found)?;
    ctx.app
        .repo
        .get::<ServiceRecord>(&keys::service(&cluster, &name))
        .await?
        .ok_or_else(service_not_found)?;
    let statuses = req.status.unwrap_or_default();
    let created = req.created_at.unwrap_or_default();
    let mut items: Vec<(String, ecs::ServiceDeploymentBrief)> = ctx
        .app
        .repo
        .list::<ServiceDeploymentRecord>(&keys::service_deployments_of(&cluster, &name))
        .await?
        .into_iter()
        .map(|r| r.value)
        .filter(|r| statuses.is_empty() || statuses.contains(&status_to_wire(r.status)))
        .filter(|r| created.after.is_none_or(|a| r.created_at >= a))
        .filter(|r| created.before.is_none_or(|b| r.created_at <= b))
        .map(|r| {
            // Newest first: the sort key orders by creation time, then id.
            let key = format!("{:020.6}/{}", r.created_at, r.id);
            let brief = ecs::ServiceDeploymentBrief {
                service_deployment_arn: Some(deployment_arn(ctx, &r)),
                service_arn: Some(ctx.app.scope.service_arn(&r.cluster, &r.service)),
                cluster_arn: Some(ctx.app.scope.cluster_arn(&r.cluster)),
                started_at: r.started_at,
                created_at: Some(r.created_at),
                finished_at: r.finished_at.or(r.stopped_at),
                target_service_revision_arn: Some(ctx.app.scope.service_revision_arn(
                    &r.cluster,
                    &r.service,
                    &r.target_revision,
                )),
                status: Some(status_to_wire(r.status)),
                status_reason: r.status_reason.clone(),
            };
            (key, brief)
        })
        .collect();
    items.sort_by(|a, b| b.0.cmp(&a.0));
    let (out, next) = paginate(items, after.as_deref(), limit, true);
    Ok(ecs::ListServiceDeploymentsResponse {
        service_deployments: Some(out),
        next_token: next,
    })
}

pub async fn describe_service_deployments(
    ctx: &Ctx,
    req: ecs::DescribeServiceDeploymentsRequest,
) -> Result<ecs::DescribeServiceDeploymentsResponse, ApiError> {
    let arns = req.service_deployment_arns.unwrap_or_default();
    arn_count(arns.len(), "serviceDeploymentArns")?;
    let mut services = Services::default();
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for arn in arns {
        let Some((cluster, service, id)) =
            parse_arn(&arn, berth_core::ResourceKind::ServiceDeployment)
        else {
            failures.push(missing(&arn));
            continue;
        };
        let key = keys::service_deployment(&cluster, &service, &id);
        match ctx.app.repo.get::<ServiceDeploymentRecord>(&key).await? {
            Some(r) => {
                let counts = services.counts(ctx, &cluster, &service).await?;
                out.push(to_wire(ctx, &r.value, counts));
            }
            None => failures.push(missing(&arn)),
        }
    }
    Ok(ecs::DescribeServiceDeploymentsResponse {
        service_deployments: Some(out),
        failures: Some(failures),
    })
}

pub async fn describe_service_revisions(
    ctx: &Ctx,
    req: ecs::DescribeServiceRevisionsRequest,
) -> Result<ecs::DescribeServiceRevisionsResponse, ApiError> {
    let arns = req.service_revision_arns.unwrap_or_default();
    arn_count(arns.len(), "serviceRevisionArns")?;
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for arn in arns {
        let Some((cluster, service, number)) =
            parse_arn(&arn, berth_core::ResourceKind::ServiceRevision)
        else {
            failures.push(missing(&arn));
            continue;
        };
        let key = keys::service_revision(&cluster, &service, &number);
        match ctx.app.repo.get::<ServiceRevisionRecord>(&key).await? {
            Some(r) => out.push(revision_to_wire(ctx, &r.value)),
            None => failures.push(missing(&arn)),
        }
    }
    Ok(ecs::DescribeServiceRevisionsResponse {
        service_revisions: Some(out),
        failures: Some(failures),
    })
}

fn deployment_not_found() -> ApiError {
    ApiError::new(
        "ServiceDeploymentNotFoundException",
        "The service deployment does not exist.",
    )
}

pub async fn stop_service_deployment(
    ctx: &Ctx,
    req: ecs::StopServiceDeploymentRequest,
) -> Result<ecs::StopServiceDeploymentResponse, ApiError> {
    let arn = req.service_deployment_arn.clone().unwrap_or_default();
    let (cluster, service, id) = parse_arn(&arn, berth_core::ResourceKind::ServiceDeployment)
        .ok_or_else(|| {
            ApiError::invalid_parameter(format!("Invalid service deployment ARN: {arn}"))
        })?;
    let rollback = req.stop_type != Some(ecs::StopServiceDeploymentStopType::Abort);
    let sd_key = keys::service_deployment(&cluster, &service, &id);
    let svc_key = keys::service(&cluster, &service);
    let repo = &ctx.app.repo;
    repo.retry(|| async {
        let mut sd: Versioned<ServiceDeploymentRecord> =
            repo.get(&sd_key).await?.ok_or_else(deployment_not_found)?;
        let svc: Versioned<ServiceRecord> =
            repo.get(&svc_key).await?.ok_or_else(deployment_not_found)?;
        let mut moving = sd.value.moving_parts();
        if !moving.stoppable() {
            return Err(ApiError::new(
                "ConflictException",
                format!(
                    "The service deployment is in the {} state and cannot be stopped.",
                    sd.value.status.as_str()
                ),
            ));
        }
        let now = now_epoch();
        if rollback {
            moving.request_rollback(now);
        } else {
            moving.request_stop(now);
        }
        sd.value.set_moving_parts(moving);
        // The service record is rewritten with it (the service deployment invariant).
        let txn = Txn::new()
            .when(Compare::ModRevision {
                key: svc_key.clone(),
                revision: svc.revision,
            })
            .when(Compare::ModRevision {
                key: sd_key.clone(),
                revision: sd.revision,
            })
            .put(svc_key.clone(), to_bytes(&svc.value))
            .put(sd_key.clone(), to_bytes(&sd.value));
        Ok(Attempt::Commit(txn, ()))
    })
    .await?;
    tracing::info!(cluster = %cluster, service = %service, deployment = %id, rollback, "service deployment stop requested");
    ctx.app.wake_scheduler();
    Ok(ecs::StopServiceDeploymentResponse {
        service_deployment_arn: Some(arn),
    })
}
