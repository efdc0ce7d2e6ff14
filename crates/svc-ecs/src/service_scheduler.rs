//! The service scheduler loop: every second (or at once when woken by a service or task change)
//! it runs the pure reconciler (`berth-scheduler`) for every ACTIVE or DRAINING service and applies
//! the plan — stops through `request_stop`, starts through the same placement path as RunTask,
//! deployments/events/status with compare-on-revision on the service record. A plan that loses a
//! race is simply recomputed on the next pass (level-triggered), so nothing is applied twice.
//!
//! The leader also garbage-collects STOPPED tasks an hour after they stopped (ECS keeps stopped
//! tasks describable for at least one hour), purges deleted task definitions and expired task
//! credentials ([`Collection`]). All run on the background-task driver (`berth-tasks`).

use crate::ecs::tasks::{self, Launch};
use crate::keys;
use crate::records::{
    convert, ContainerInstanceRecord, DeploymentRecord, DeploymentStatus, HealthStatus,
    InstanceStatus, RevisionCountRecord, RolloutState, SchedulingStrategy, ServiceDeploymentRecord,
    ServiceEventRecord, ServiceRecord, ServiceRevisionRecord, ServiceStatus, TaskDefinitionRecord,
    TaskRecord,
};
use crate::state::{Ctx, Ecs};
use crate::stored;
use berth_core::lifecycle::TaskStatus;
use berth_scheduler as sched;
use berth_service::codec::now_epoch;
use berth_service::repo::{to_bytes, Versioned};
use berth_service::ApiError;
use berth_service::Principal;
use berth_store::{Compare, Txn};
use berth_wire::ecs;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// At most this many task ids in one "has started" event.
const STARTED_PER_EVENT: usize = 10;

/// Tasks on an instance whose agent has been gone this long are presumed lost and replaced.
pub const LOST_AFTER: Duration = Duration::from_secs(300);

/// [`LOST_AFTER`], or `BERTH_AGENT_LOST_AFTER` seconds (at least the disconnect timeout): fault
/// tests shorten it.
pub fn lost_after() -> Duration {
    static V: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *V.get_or_init(|| {
        std::env::var("BERTH_AGENT_LOST_AFTER")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.max(berth_agent_api::DISCONNECTED_AFTER_SECONDS)))
            .unwrap_or(LOST_AFTER)
    })
}
/// STOPPED tasks are deleted this long after they stopped.
pub const STOPPED_TASK_RETENTION: f64 = 3600.0;
/// The same "unable to place" event is not repeated more often than this.
const REPEAT_EVENT_AFTER: f64 = 60.0;

/// The service scheduler as a background task (leader-only, every second and whenever woken by a
/// service or task change): one pass reconciles every service. Every commit of a pass carries the
/// leader's fence (see `berth_service::leader`).
pub struct SchedulerPass(pub std::sync::Weak<Ecs>);

#[async_trait::async_trait]
impl berth_tasks::BackgroundTask for SchedulerPass {
    async fn activate(&self) -> Result<String, berth_tasks::TaskError> {
        let Some(app) = self.0.upgrade() else {
            return Ok("service gone".into());
        };
        let ctx = system_ctx(&app);
        let work = async {
            app.metrics.scheduler_passes.inc();
            run_once(&ctx).await
        };
        match berth_service::leader::as_leader(&app.leader, work).await {
            Some(Ok(())) => Ok("pass done".into()),
            Some(Err(e)) => Err(format!("{}: {}", e.code, e.message).into()),
            None => Ok("not leading".into()),
        }
    }
}

/// The scheduler's period (it also runs at once when woken).
pub const SCHEDULER_PERIOD: Duration = Duration::from_secs(1);

/// The least time between two scheduler passes: task reports and API calls that arrive meanwhile
/// coalesce into the next pass. A pass reconciles every service in full, so back-to-back passes
/// under a stream of state changes (a 5,000-task rollout) would spend the CPU those changes need.
pub const MIN_PASS_INTERVAL: Duration = Duration::from_millis(50);

/// The period of the leader's collections (stopped tasks, deleted task definitions, expired
/// task credentials).
pub const COLLECTION_PERIOD: Duration = Duration::from_secs(60);

/// One of the leader's periodic collections, as a background task.
pub struct Collection {
    pub app: std::sync::Weak<Ecs>,
    pub what: CollectionKind,
}

#[derive(Debug, Clone, Copy)]
pub enum CollectionKind {
    /// STOPPED tasks an hour after they stopped.
    StoppedTasks,
    /// Task definitions whose deletion was requested.
    DeletedTaskDefinitions,
    /// Expired task IAM role credentials.
    ExpiredCredentials,
    /// Service deployments (and the revisions only they name) after [`DEPLOYMENT_HISTORY`].
    DeploymentHistory,
}

impl CollectionKind {
    pub fn task_name(self) -> &'static str {
        match self {
            CollectionKind::StoppedTasks => "ecs_stopped_task_collection",
            CollectionKind::DeletedTaskDefinitions => "ecs_task_definition_purge",
            CollectionKind::ExpiredCredentials => "ecs_expired_credentials_collection",
            CollectionKind::DeploymentHistory => "ecs_deployment_history_collection",
        }
    }
}

#[async_trait::async_trait]
impl berth_tasks::BackgroundTask for Collection {
    async fn activate(&self) -> Result<String, berth_tasks::TaskError> {
        let Some(app) = self.app.upgrade() else {
            return Ok("service gone".into());
        };
        let ctx = system_ctx(&app);
        let work = async {
            match self.what {
                CollectionKind::StoppedTasks => collect_stopped_tasks(&ctx).await,
                CollectionKind::DeletedTaskDefinitions => {
                    purge_deleted_task_definitions(&ctx).await
                }
                CollectionKind::ExpiredCredentials => {
                    crate::task_credentials::collect_expired_credentials(&ctx).await
                }
                CollectionKind::DeploymentHistory => collect_deployment_history(&ctx).await,
            }
        };
        match berth_service::leader::as_leader(&app.leader, work).await {
            Some(Ok(n)) => Ok(format!("{n} removed")),
            Some(Err(e)) => Err(format!("{}: {}", e.code, e.message).into()),
            None => Ok("not leading".into()),
        }
    }
}

fn system_ctx(app: &Arc<Ecs>) -> Ctx {
    Ctx {
        app: app.clone(),
        principal: Principal {
            temporary: false,
            access_key_id: "ecs-service-scheduler".into(),
            role: berth_auth::Role::Admin,
            arn: format!(
                "arn:aws:iam::{}:role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS",
                app.scope.account
            ),
        },
    }
}

pub async fn run_once(ctx: &Ctx) -> Result<(), ApiError> {
    let services = ctx.app.repo.list::<ServiceRecord>(keys::SERVICES).await?;
    // Each cluster's instances are read once per pass and shared by its services.
    let mut views: HashMap<String, Arc<ClusterView>> = HashMap::new();
    for s in services
        .into_iter()
        .filter(|s| s.value.status != ServiceStatus::Inactive)
    {
        if !ctx.app.is_leader() {
            // Deposed mid-pass: the rest is the new leader's (and would be fenced off anyway).
            break;
        }
        let view = match views.get(&s.value.cluster) {
            Some(v) => v.clone(),
            None => match cluster_view(ctx, &s.value.cluster).await {
                Ok(v) => {
                    let v = Arc::new(v);
                    views.insert(s.value.cluster.clone(), v.clone());
                    v
                }
                Err(e) => {
                    tracing::warn!(code = %e.code, error = %e.message, "cluster instances unreadable; services skipped this pass");
                    continue;
                }
            },
        };
        if let Err(e) = reconcile_service(ctx, s.value, s.revision, &view).await {
            tracing::warn!(code = %e.code, error = %e.message, "service reconcile failed");
        }
    }
    Ok(())
}

/// A cluster's container instances as every service of one scheduler pass sees them. Built once
/// per pass: per service it cost O(instances) each time, O(services × instances) a pass.
struct ClusterView {
    records: Vec<Arc<ContainerInstanceRecord>>,
    /// The scheduler's view of each record (same order), eligible for any DAEMON: a DAEMON
    /// service with placement constraints narrows `daemon_eligible` itself.
    instances: Vec<sched::Instance>,
}

async fn cluster_view(ctx: &Ctx, cluster: &str) -> Result<ClusterView, ApiError> {
    let records: Vec<Arc<ContainerInstanceRecord>> = ctx
        .app
        .repo
        .scan(
            &keys::instances_in(cluster),
            |i: Versioned<Arc<ContainerInstanceRecord>>| {
                (i.value.status != InstanceStatus::Inactive).then_some(i.value)
            },
        )
        .await?;
    let connected = ctx
        .app
        .agents
        .connected_many(records.iter().map(|i| i.id.as_str()));
    let lost_after = lost_after();
    let instances = records
        .iter()
        .zip(connected)
        .map(|(i, connected)| sched::Instance {
            id: i.id.clone(),
            active: i.status == InstanceStatus::Active,
            connected,
            daemon_eligible: true,
            lost: ctx.app.agents.lost(&i.id, lost_after),
        })
        .collect();
    Ok(ClusterView { records, instances })
}

fn to_sched_deployment(d: &DeploymentRecord) -> sched::Deployment {
    sched::Deployment {
        id: d.id.clone(),
        task_definition: d.task_definition.clone(),
        revision: d.revision().to_string(),
        status: if d.status == DeploymentStatus::Primary {
            sched::DeploymentStatus::Primary
        } else {
            sched::DeploymentStatus::Active
        },
        rollout_state: match d.rollout_state {
            RolloutState::Completed => sched::RolloutState::Completed,
            RolloutState::Failed => sched::RolloutState::Failed,
            RolloutState::InProgress => sched::RolloutState::InProgress,
        },
        rollout_state_reason: d.rollout_state_reason.clone(),
        created_at: d.created_at,
        updated_at: d.updated_at,
        next_launch_at: d.next_launch_at,
        failures_seen: d.failures_seen,
    }
}

/// The record of a deployment the plan keeps or makes (`before`: the service's records, whose
/// bookkeeping the scheduler does not see).
fn from_sched_deployment(d: &sched::Deployment, before: &[DeploymentRecord]) -> DeploymentRecord {
    DeploymentRecord {
        id: d.id.clone(),
        revision: (d.revision != sched::revision_of(&d.id)).then(|| d.revision.clone()),
        images_recorded: before.iter().any(|b| b.id == d.id && b.images_recorded),
        status: match d.status {
            sched::DeploymentStatus::Primary => DeploymentStatus::Primary,
            sched::DeploymentStatus::Active => DeploymentStatus::Active,
        },
        task_definition: d.task_definition.clone(),
        rollout_state: match d.rollout_state {
            sched::RolloutState::InProgress => RolloutState::InProgress,
            sched::RolloutState::Completed => RolloutState::Completed,
            sched::RolloutState::Failed => RolloutState::Failed,
        },
        rollout_state_reason: d.rollout_state_reason.clone(),
        created_at: d.created_at,
        updated_at: d.updated_at,
        next_launch_at: d.next_launch_at,
        failures_seen: d.failures_seen,
    }
}

async fn task_definition(
    ctx: &Ctx,
    cache: &mut HashMap<String, Option<ecs::TaskDefinition>>,
    arn: &str,
) -> Result<Option<ecs::TaskDefinition>, ApiError> {
    if let Some(td) = cache.get(arn) {
        return Ok(td.clone());
    }
    let td = crate::ecs::taskdefs::by_arn(ctx, arn)
        .await?
        .map(|r| ecs::TaskDefinition::from(r.definition.clone()));
    cache.insert(arn.to_string(), td.clone());
    Ok(td)
}

/// The service's circuit breaker as the scheduler sees it (None: off).
fn breaker(svc: &ServiceRecord) -> Option<sched::CircuitBreaker> {
    svc.circuit_breaker
        .as_ref()
        .filter(|c| c.enable == Some(true))
        .map(|c| sched::CircuitBreaker {
            rollback: c.rollback == Some(true),
            threshold: breaker_threshold(svc),
        })
}

/// The circuit breaker's explicit threshold (`thresholdConfiguration`), if any.
pub(crate) fn breaker_threshold(svc: &ServiceRecord) -> Option<u32> {
    let t = svc
        .circuit_breaker
        .as_ref()?
        .threshold_configuration
        .as_ref()?;
    let v = t.value?.max(0) as u64;
    let pct = (svc.desired_count as u64 * v).div_ceil(100) as u32;
    Some(match t.type_? {
        stored::ThresholdType::Count => v as u32,
        stored::ThresholdType::BoundedPercent => pct.clamp(3, 200),
        stored::ThresholdType::UnboundedPercent => pct.max(1),
    })
}

fn has_health_check(td: Option<&ecs::TaskDefinition>) -> bool {
    td.and_then(|t| t.container_definitions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.essential.unwrap_or(true) && c.health_check.is_some())
        })
}

async fn reconcile_service(
    ctx: &Ctx,
    svc: ServiceRecord,
    revision: i64,
    view: &ClusterView,
) -> Result<(), ApiError> {
    let now = now_epoch();
    let cluster = svc.cluster.clone();
    let group = format!("service:{}", svc.name);
    let task_recs = tasks::group_tasks(ctx, &cluster, &group).await?;
    let mut tds = HashMap::new();
    let mut tasks = Vec::with_capacity(task_recs.len());
    for t in &task_recs {
        let td = task_definition(ctx, &mut tds, &t.task_definition_arn).await?;
        tasks.push(sched::Task {
            id: t.id.clone(),
            deployment_id: t.started_by.clone().unwrap_or_default(),
            instance_id: t.container_instance_id.clone(),
            desired_running: t.desired_status == TaskStatus::Running,
            running: t.last_status == TaskStatus::Running,
            stopped: t.last_status == TaskStatus::Stopped,
            failed: t.last_status == TaskStatus::Stopped
                && matches!(
                    t.stop_code.as_deref(),
                    Some("TaskFailedToStart") | Some("EssentialContainerExited")
                ),
            stopped_at: t.stopped_at,
            health: match t.health_status {
                Some(HealthStatus::Healthy) => sched::Health::Healthy,
                Some(HealthStatus::Unhealthy) => sched::Health::Unhealthy,
                Some(HealthStatus::Unknown) | None => sched::Health::Unknown,
            },
            has_health_check: has_health_check(td.as_ref()),
            started_at: t.started_at,
            protected: t.protected_until.is_some_and(|u| u > now),
        });
    }
    if !svc.deployment_controller.is_ecs() {
        return reconcile_task_sets(ctx, svc, revision, view, &tasks, tds, now).await;
    }
    // DAEMON eligibility: the service's and the task definition's memberOf constraints.
    let primary_td_arn = svc.task_definition.clone();
    let primary_td = task_definition(ctx, &mut tds, &primary_td_arn).await?;
    let mut expressions = Vec::new();
    let td_exprs = primary_td
        .as_ref()
        .and_then(|t| t.placement_constraints.as_ref())
        .into_iter()
        .flatten()
        .map(|c| c.expression.clone());
    for expr in svc
        .placement_constraints
        .iter()
        .map(|c| c.expression.clone())
        .chain(td_exprs)
    {
        if let Some(e) = expr.as_deref() {
            if let Ok(x) = berth_placement::Expression::parse(e) {
                expressions.push(x);
            }
        }
    }
    // Only DAEMON services with constraints need each instance's placement view (memberOf
    // eligibility); everyone else uses the pass's shared view as it is.
    let daemon = svc.scheduling_strategy == SchedulingStrategy::Daemon;
    let narrowed: Vec<sched::Instance>;
    let instances: &[sched::Instance] = if daemon && !expressions.is_empty() {
        narrowed = view
            .records
            .iter()
            .zip(&view.instances)
            .map(|(rec, base)| {
                let snapshot = crate::placement_cache::snapshot_instance(ctx, rec);
                let placement_view = berth_placement::InstanceView::new(&snapshot);
                sched::Instance {
                    daemon_eligible: expressions.iter().all(|x| x.matches(&placement_view)),
                    ..base.clone()
                }
            })
            .collect();
        &narrowed
    } else {
        &view.instances
    };
    let service = sched::Service {
        name: svc.name.clone(),
        scheduling: match svc.scheduling_strategy {
            SchedulingStrategy::Daemon => sched::Scheduling::Daemon,
            SchedulingStrategy::Replica => sched::Scheduling::Replica,
        },
        status: match svc.status {
            ServiceStatus::Active => sched::ServiceStatus::Active,
            ServiceStatus::Draining => sched::ServiceStatus::Draining,
            ServiceStatus::Inactive => sched::ServiceStatus::Inactive,
        },
        desired_count: svc.desired_count,
        maximum_percent: svc.maximum_percent,
        minimum_healthy_percent: svc.minimum_healthy_percent,
        deployments: svc.deployments.iter().map(to_sched_deployment).collect(),
        circuit_breaker: breaker(&svc),
        health_check_grace_seconds: svc.health_check_grace_period_seconds.unwrap_or(0) as f64,
        last_steady_event_at: svc.last_steady_event_at,
        last_completed_task_definition: svc.last_completed_task_definition.clone(),
        last_completed_revision: svc.last_completed_revision.clone(),
    };
    // The service deployment in flight, if any (read only while there is one).
    let sd_key = svc
        .current_service_deployment
        .as_ref()
        .filter(|_| svc.service_deployment_in_flight)
        .map(|id| keys::service_deployment(&cluster, &svc.name, id));
    let sd_rec: Option<ServiceDeploymentRecord> = match &sd_key {
        Some(k) => ctx.app.repo.get(k).await?.map(|v| v.value),
        None => None,
    };
    let sd_before = sd_rec.as_ref().map(|r| r.moving_parts());
    let new_id = crate::ecs::services::deployment_id();
    let plan = sched::reconcile(&sched::Input {
        service: &service,
        tasks: &tasks,
        instances,
        now,
        new_deployment_id: &new_id,
        service_deployment: sd_before.as_ref(),
    });

    let mut events: Vec<String> = plan.events.clone();
    apply_stops(ctx, &cluster, &plan.stops).await?;
    apply_starts(ctx, &svc, &plan.starts, &mut tds, &mut events).await?;

    // Write back deployments, events, status.
    let mut deployments: Vec<DeploymentRecord> = plan
        .deployments
        .iter()
        .map(|d| from_sched_deployment(d, &svc.deployments))
        .collect();
    // Each revision records the image digests its first fully reported task ran.
    let mut extra_puts: Vec<(String, Vec<u8>)> = Vec::new();
    for d in deployments.iter_mut().filter(|d| !d.images_recorded) {
        let Some(ran) = task_recs.iter().find(|t| {
            t.started_by.as_deref() == Some(d.id.as_str())
                && !t.containers.is_empty()
                && t.containers.iter().all(|c| c.image_digest.is_some())
        }) else {
            continue;
        };
        let key = keys::service_revision(&cluster, &svc.name, d.revision());
        if let Some(mut r) = ctx.app.repo.get::<ServiceRevisionRecord>(&key).await? {
            let mut filled = false;
            for image in r.value.container_images.iter_mut() {
                if image.image_digest.is_none() {
                    image.image_digest = ran
                        .containers
                        .iter()
                        .find(|c| c.name == image.container_name)
                        .and_then(|c| c.image_digest.clone());
                    filled |= image.image_digest.is_some();
                }
            }
            if filled {
                extra_puts.push((key, to_bytes(&r.value)));
            }
        }
        d.images_recorded = true;
    }
    let images_changed = deployments
        .iter()
        .zip(&svc.deployments)
        .any(|(a, b)| a.id == b.id && a.images_recorded != b.images_recorded);
    // The service deployment moved: write it (with the service record, its invariant); once
    // finished, its counts are frozen as they are now.
    let sd_after = plan.service_deployment.clone();
    let sd_changed = sd_after != sd_before;
    let changed_deployments =
        serde_json::to_string(&deployments).ok() != serde_json::to_string(&svc.deployments).ok();
    let fresh_events = fresh_events(&svc, events, now);
    // A DAEMON service's desiredCount is ECS's to keep: one per eligible instance (0 once it
    // is draining).
    let daemon_desired = daemon.then(|| {
        if svc.status == ServiceStatus::Active {
            instances
                .iter()
                .filter(|i| i.active && i.daemon_eligible && !i.lost)
                .count() as u32
        } else {
            0
        }
    });
    let desired_changed = daemon_desired.is_some_and(|d| d != svc.desired_count);
    if !changed_deployments
        && fresh_events.is_empty()
        && !plan.inactive
        && plan.completed_task_definition.is_none()
        && !desired_changed
        && !sd_changed
        && !images_changed
    {
        return Ok(());
    }
    let key = keys::service(&cluster, &svc.name);
    let mut rec = svc.clone();
    rec.deployments = deployments;
    if let (true, Some(k), Some(mut sd), Some(moved)) = (sd_changed, sd_key, sd_rec, sd_after) {
        let done = moved.status.is_final();
        sd.set_moving_parts(moved);
        if done {
            rec.service_deployment_in_flight = false;
            let counts = crate::ecs::deployments::revision_counts(&rec, &task_recs);
            let mut revisions = vec![sd.target_revision.clone()];
            revisions.extend(sd.source_revisions.iter().cloned());
            revisions.extend(sd.rollback.iter().map(|r| r.revision.clone()));
            revisions.dedup();
            sd.final_counts = revisions
                .into_iter()
                .map(|r| {
                    let c = counts.get(&r).copied().unwrap_or_default();
                    RevisionCountRecord {
                        revision: r,
                        requested: c.requested as u32,
                        running: c.running as u32,
                        pending: c.pending as u32,
                    }
                })
                .collect();
            tracing::info!(cluster = %cluster, service = %svc.name, deployment = %sd.id, status = %sd.status.as_str(), "service deployment finished");
        }
        extra_puts.push((k, to_bytes(&sd)));
    }
    if let Some(d) = daemon_desired {
        rec.desired_count = d;
    }
    if let Some(primary) = rec
        .deployments
        .iter()
        .find(|d| d.status == DeploymentStatus::Primary)
    {
        rec.task_definition = primary.task_definition.clone();
    }
    push_events(&mut rec, &fresh_events, now);
    if plan.steady_event {
        rec.last_steady_event_at = Some(now);
    }
    if let Some(td) = &plan.completed_task_definition {
        rec.last_completed_task_definition = Some(td.clone());
        rec.last_completed_revision = plan.completed_revision.clone();
    }
    let mut txn = Txn::new().when(Compare::ModRevision {
        key: key.clone(),
        revision,
    });
    for (k, v) in extra_puts {
        txn = txn.put(k, v);
    }
    if plan.inactive {
        rec.status = ServiceStatus::Inactive;
        // ECS deletes a service's deployments and revisions with it.
        rec.current_service_deployment = None;
        rec.service_deployment_in_flight = false;
        txn = txn
            .delete_prefix(keys::service_deployments_of(&cluster, &svc.name))
            .delete_prefix(keys::service_revisions_of(&cluster, &svc.name));
        tracing::info!(cluster = %cluster, service = %svc.name, "service inactive");
    }
    let txn = txn.put(key, to_bytes(&rec));
    if ctx.app.repo.commit(txn).await?.is_none() {
        tracing::debug!(service = %svc.name, "service changed during reconcile; recomputing next pass");
        return Ok(());
    }
    // Committed: what changed goes on the event bus.
    let mut out = crate::bus_events::deployment_changes(ctx, &svc, &rec);
    if plan.steady_event {
        out.push(crate::bus_events::service_action(
            ctx,
            &rec,
            "SERVICE_STEADY_STATE",
            None,
        ));
    }
    for m in fresh_events
        .iter()
        .filter(|m| m.contains("was unable to place a task"))
    {
        out.push(crate::bus_events::service_action(
            ctx,
            &rec,
            "SERVICE_TASK_PLACEMENT_FAILURE",
            Some(m),
        ));
    }
    for e in out {
        ctx.app.events.push(e);
    }
    Ok(())
}

/// An EXTERNAL or CODE_DEPLOY service: each task set kept at its computed count
/// (`berth_scheduler::task_sets`), deleted task sets removed once drained.
async fn reconcile_task_sets(
    ctx: &Ctx,
    svc: ServiceRecord,
    revision: i64,
    view: &ClusterView,
    tasks: &[sched::Task],
    mut tds: HashMap<String, Option<ecs::TaskDefinition>>,
    now: f64,
) -> Result<(), ApiError> {
    use crate::records::TaskSetStatus;
    use berth_scheduler::task_sets;
    let sets: Vec<task_sets::TaskSet> = svc
        .task_sets
        .iter()
        .map(|t| task_sets::TaskSet {
            id: t.id.clone(),
            task_definition: t.task_definition.clone(),
            computed_desired: task_sets::computed_desired(svc.desired_count, t.scale),
            draining: t.status == TaskSetStatus::Draining,
        })
        .collect();
    let plan = task_sets::reconcile(&task_sets::Input {
        service_name: &svc.name,
        active: svc.status == ServiceStatus::Active,
        task_sets: &sets,
        tasks,
        instances: &view.instances,
        now,
        health_check_grace_seconds: svc.health_check_grace_period_seconds.unwrap_or(0) as f64,
    });
    let mut events = plan.events.clone();
    apply_stops(ctx, &svc.cluster, &plan.stops).await?;
    apply_starts(ctx, &svc, &plan.starts, &mut tds, &mut events).await?;
    let fresh = fresh_events(&svc, events, now);
    if fresh.is_empty() && plan.gone.is_empty() && !plan.inactive {
        return Ok(());
    }
    let mut rec = svc.clone();
    rec.task_sets.retain(|t| !plan.gone.contains(&t.id));
    push_events(&mut rec, &fresh, now);
    if plan.inactive {
        rec.status = ServiceStatus::Inactive;
        tracing::info!(cluster = %svc.cluster, service = %svc.name, "service inactive");
    }
    let key = keys::service(&svc.cluster, &svc.name);
    let txn = Txn::new()
        .when(Compare::ModRevision {
            key: key.clone(),
            revision,
        })
        .put(key, to_bytes(&rec));
    if ctx.app.repo.commit(txn).await?.is_none() {
        tracing::debug!(service = %svc.name, "service changed during reconcile; recomputing next pass");
    }
    Ok(())
}

/// The events not already written within [`REPEAT_EVENT_AFTER`] (e.g. "unable to place").
fn fresh_events(svc: &ServiceRecord, events: Vec<String>, now: f64) -> Vec<String> {
    events
        .into_iter()
        .filter(|m| {
            !svc.events
                .iter()
                .rev()
                .take(10)
                .any(|e| &e.message == m && now - e.created_at < REPEAT_EVENT_AFTER)
        })
        .collect()
}

/// Appends events to the service's, keeping the newest [`crate::ecs::services::MAX_EVENTS`].
fn push_events(rec: &mut ServiceRecord, events: &[String], now: f64) {
    for m in events {
        tracing::info!(cluster = %rec.cluster, service = %rec.name, event = %m, "service event");
        rec.events.push(ServiceEventRecord {
            id: uuid::Uuid::new_v4().to_string(),
            created_at: now,
            message: m.clone(),
        });
    }
    if rec.events.len() > crate::ecs::services::MAX_EVENTS {
        let drop = rec.events.len() - crate::ecs::services::MAX_EVENTS;
        rec.events.drain(..drop);
    }
}

/// Stops what a plan says, each with its reason.
async fn apply_stops(ctx: &Ctx, cluster: &str, stops: &[sched::Stop]) -> Result<(), ApiError> {
    for st in stops {
        match &st.reason {
            sched::StopReason::Lost => mark_lost(ctx, cluster, &st.task_id).await?,
            sched::StopReason::Unhealthy => {
                tasks::request_stop(
                    ctx,
                    cluster,
                    &st.task_id,
                    "Task failed container health checks".into(),
                    "ServiceSchedulerInitiated",
                )
                .await?;
            }
            sched::StopReason::Scheduler(why) => {
                tasks::request_stop(
                    ctx,
                    cluster,
                    &st.task_id,
                    why.clone(),
                    "ServiceSchedulerInitiated",
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// Launches what a plan says, writing the service events of each launch into `events`. A task
/// set's tasks take its launch type and network configuration; a deployment's take the service's.
async fn apply_starts(
    ctx: &Ctx,
    svc: &ServiceRecord,
    starts: &[sched::Start],
    tds: &mut HashMap<String, Option<ecs::TaskDefinition>>,
    events: &mut Vec<String>,
) -> Result<(), ApiError> {
    let cluster = svc.cluster.clone();
    let group = format!("service:{}", svc.name);
    for start in starts {
        let set = svc.task_sets.iter().find(|t| t.id == start.deployment_id);
        let Some(td) = task_definition(ctx, tds, &start.task_definition).await? else {
            events.push(format!(
                "(service {}) failed to launch a task: its task definition {} is gone.",
                svc.name, start.task_definition
            ));
            continue;
        };
        let resources = tasks::requirements(&td, &ecs::TaskOverride::default())?;
        let mut tags = Vec::new();
        if svc.propagate_tags.as_deref() == Some("SERVICE") {
            tags = svc.tags.clone();
        }
        let l = Launch {
            cluster: cluster.clone(),
            family: td.family.clone().unwrap_or_default(),
            revision: td.revision as u32,
            td,
            overrides: ecs::TaskOverride::default(),
            resources,
            group: group.clone(),
            started_by: Some(start.deployment_id.clone()),
            launch_type: set.map_or(svc.launch_type, |t| t.launch_type),
            tags,
            enable_execute_command: svc.enable_execute_command,
            network_configuration: set
                .map_or(&svc.network_configuration, |t| &t.network_configuration)
                .clone()
                .map(Into::into),
        };
        let strategies = if svc.placement_strategy.is_empty() {
            berth_placement::service_default()
        } else {
            let wire: Vec<ecs::PlacementStrategy> = convert(&svc.placement_strategy);
            tasks::strategies(Some(&wire))
        };
        let constraints: Vec<ecs::PlacementConstraint> = convert(&svc.placement_constraints);
        let launched = match tasks::launch(
            ctx,
            &l,
            start.count,
            tasks::constraints(Some(&constraints)),
            strategies,
            start
                .instance_id
                .as_ref()
                .map(|i| vec![ctx.app.scope.container_instance_arn(&cluster, i)]),
            None,
        )
        .await
        {
            Ok(l) => l,
            Err(e) => {
                events.push(format!(
                    "(service {}) was unable to place a task because no container instance met all of its requirements. Reason: {}",
                    svc.name, e.message
                ));
                continue;
            }
        };
        // One event per STARTED_PER_EVENT tasks, each naming its tasks, as ECS writes them
        // while it launches a large service in batches.
        for chunk in launched.tasks.chunks(STARTED_PER_EVENT) {
            let ids: Vec<String> = chunk.iter().map(|t| format!("(task {})", t.id)).collect();
            events.push(format!(
                "(service {}) has started {} tasks: {}.",
                svc.name,
                chunk.len(),
                ids.join(" ")
            ));
        }
        if let Some(msg) = launched.event {
            events.push(format!("(service {}) {}", svc.name, msg));
        }
    }

    Ok(())
}

/// A task whose agent is gone for good: STOPPED now, resources released.
async fn mark_lost(ctx: &Ctx, cluster: &str, task_id: &str) -> Result<(), ApiError> {
    tasks::request_stop(
        ctx,
        cluster,
        task_id,
        "Task lost: its container instance's agent is disconnected".into(),
        "ServiceSchedulerInitiated",
    )
    .await?;
    let arn = ctx.app.scope.task_arn(cluster, task_id);
    tasks::apply_report(ctx, cluster, &arn, Some(TaskStatus::Stopped), |_, _| {}).await
}

/// ECS shows a service's deployments of the last 90 days.
pub const DEPLOYMENT_HISTORY: f64 = 90.0 * 86400.0;

/// What the deployment-history collection deletes at `now`: finished service deployments older
/// than [`DEPLOYMENT_HISTORY`], and revisions older than that which no kept deployment and no
/// service names any more.
pub fn expired_history(
    now: f64,
    deployments: &[Versioned<ServiceDeploymentRecord>],
    revisions: &[Versioned<ServiceRevisionRecord>],
    services: &[Versioned<ServiceRecord>],
) -> Vec<(String, berth_store::Revision)> {
    let old = |t: f64| now - t > DEPLOYMENT_HISTORY;
    let mut named: std::collections::HashSet<(&str, &str, &str)> = Default::default();
    let mut out = Vec::new();
    for d in deployments {
        let r = &d.value;
        let ended = r.finished_at.or(r.stopped_at);
        if r.is_final() && ended.is_some_and(old) {
            out.push((d.key.clone(), d.revision));
            continue;
        }
        for rev in std::iter::once(&r.target_revision)
            .chain(&r.source_revisions)
            .chain(r.rollback.iter().map(|b| &b.revision))
        {
            named.insert((&r.cluster, &r.service, rev));
        }
    }
    for s in services {
        let s = &s.value;
        for rev in s
            .deployments
            .iter()
            .map(|d| d.revision())
            .chain(s.last_completed_revision.as_deref())
        {
            named.insert((&s.cluster, &s.name, rev));
        }
    }
    for r in revisions {
        let v = &r.value;
        if old(v.created_at) && !named.contains(&(&v.cluster, &v.service, &v.number)) {
            out.push((r.key.clone(), r.revision));
        }
    }
    out
}

/// Deletes what [`expired_history`] names.
pub async fn collect_deployment_history(ctx: &Ctx) -> Result<usize, ApiError> {
    let repo = &ctx.app.repo;
    let deployments = repo
        .list::<ServiceDeploymentRecord>(keys::SERVICE_DEPLOYMENTS)
        .await?;
    let revisions = repo
        .list::<ServiceRevisionRecord>(keys::SERVICE_REVISIONS)
        .await?;
    let services = repo.list::<ServiceRecord>(keys::SERVICES).await?;
    let doomed = expired_history(now_epoch(), &deployments, &revisions, &services);
    let n = repo.delete_unchanged(doomed).await?.len();
    if n > 0 {
        tracing::info!(records = n, "service deployment history collected");
    }
    Ok(n)
}

/// Deletes STOPPED tasks older than [`STOPPED_TASK_RETENTION`].
pub async fn collect_stopped_tasks(ctx: &Ctx) -> Result<usize, ApiError> {
    let now = now_epoch();
    let expired = ctx
        .app
        .repo
        .scan("ecs/tasks/", |t: Versioned<Arc<TaskRecord>>| {
            (t.value.last_status == TaskStatus::Stopped
                && t.value
                    .stopped_at
                    .is_some_and(|s| now - s > STOPPED_TASK_RETENTION))
            .then_some((t.key, t.revision))
        })
        .await?;
    let n = ctx.app.repo.delete_unchanged(expired).await?.len();
    if n > 0 {
        tracing::info!(tasks = n, "stopped tasks collected");
    }
    Ok(n)
}

/// Purges DELETE_IN_PROGRESS task-definition revisions that no task (of any status still kept)
/// and no ACTIVE/DRAINING service deployment references any more (ECS: "deleted when no longer
/// referenced"). The family record stays, so revisions are never reused.
pub async fn purge_deleted_task_definitions(ctx: &Ctx) -> Result<usize, ApiError> {
    let tds = ctx
        .app
        .repo
        .list::<TaskDefinitionRecord>(keys::TASK_DEFINITIONS)
        .await?;
    let doomed: Vec<_> = tds
        .into_iter()
        .filter(|t| {
            t.value.definition.status == Some(stored::TaskDefinitionStatus::DeleteInProgress)
        })
        .collect();
    if doomed.is_empty() {
        return Ok(0);
    }
    let mut referenced: std::collections::HashSet<String> = ctx
        .app
        .repo
        .scan("ecs/tasks/", |t: Versioned<Arc<TaskRecord>>| {
            Some(t.value.task_definition_arn.clone())
        })
        .await?
        .into_iter()
        .collect();
    for s in ctx.app.repo.list::<ServiceRecord>(keys::SERVICES).await? {
        if s.value.status != ServiceStatus::Inactive {
            referenced.extend(
                s.value
                    .deployments
                    .iter()
                    .map(|d| d.task_definition.clone())
                    .chain(s.value.task_sets.iter().map(|t| t.task_definition.clone())),
            );
        }
    }
    let mut n = 0;
    for t in doomed {
        let arn = t
            .value
            .definition
            .task_definition_arn
            .clone()
            .unwrap_or_default();
        if referenced.contains(&arn) {
            continue;
        }
        let txn = Txn::new()
            .when(Compare::ModRevision {
                key: t.key.clone(),
                revision: t.revision,
            })
            .delete(t.key.clone());
        if ctx.app.repo.commit(txn).await?.is_some() {
            tracing::info!(task_definition = %arn, "deleted task definition purged");
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{MonitorStatus, ServiceDeploymentStatus};

    fn versioned<T>(key: &str, value: T) -> Versioned<T> {
        Versioned {
            key: key.into(),
            value,
            revision: 7,
        }
    }

    fn deployment(
        id: &str,
        target: &str,
        status: ServiceDeploymentStatus,
        ended: f64,
    ) -> Versioned<ServiceDeploymentRecord> {
        versioned(
            id,
            ServiceDeploymentRecord {
                id: id.into(),
                cluster: "c".into(),
                service: "s".into(),
                deployment_id: format!("ecs-svc/{target}"),
                target_revision: target.into(),
                source_revisions: vec![],
                status,
                status_reason: None,
                created_at: 0.0,
                started_at: None,
                finished_at: Some(ended),
                stopped_at: None,
                updated_at: ended,
                rollback: None,
                circuit_breaker: MonitorStatus::Disabled,
                failure_count: 0,
                threshold: 3,
                deployment_configuration: None,
                final_counts: vec![],
            },
        )
    }

    fn revision(number: &str) -> Versioned<ServiceRevisionRecord> {
        versioned(
            number,
            ServiceRevisionRecord {
                number: number.into(),
                cluster: "c".into(),
                service: "s".into(),
                task_definition: "td".into(),
                launch_type: crate::records::LaunchType::Ec2,
                capacity_provider_strategy: vec![],
                load_balancers: vec![],
                service_registries: vec![],
                network_configuration: None,
                container_images: vec![],
                created_at: 0.0,
            },
        )
    }

    #[test]
    fn history_older_than_ninety_days_goes_unless_still_named() {
        let day = 86400.0;
        let now = 100.0 * day;
        let service: ServiceRecord = serde_json::from_value(serde_json::json!({
            "name": "s", "cluster": "c", "status": "ACTIVE", "desired_count": 1,
            "scheduling_strategy": "REPLICA", "launch_type": "EC2", "task_definition": "td",
            "deployments": [{"id": "ecs-svc/1", "status": "PRIMARY", "task_definition": "td",
                             "rollout_state": "COMPLETED", "created_at": 0.0, "updated_at": 0.0}],
            "maximum_percent": 200, "minimum_healthy_percent": 100, "created_at": 0.0,
            "created_by": "me"
        }))
        .unwrap();
        let deployments = [
            // Old and finished: goes.
            deployment("old", "2", ServiceDeploymentStatus::Successful, 5.0 * day),
            // Recent: stays, and keeps its revision.
            deployment(
                "recent",
                "3",
                ServiceDeploymentStatus::Successful,
                50.0 * day,
            ),
            // Old but not finished (a stuck rollout): stays.
            deployment("live", "4", ServiceDeploymentStatus::InProgress, 5.0 * day),
        ];
        let revisions = [
            revision("1"),
            revision("2"),
            revision("3"),
            revision("4"),
            revision("5"),
        ];
        let mut gone: Vec<String> =
            expired_history(now, &deployments, &revisions, &[versioned("svc", service)])
                .into_iter()
                .map(|(k, r)| {
                    assert_eq!(r, 7, "deleted only if unchanged");
                    k
                })
                .collect();
        gone.sort();
        // Revision 1 is the service's running one; 3 and 4 are named by kept deployments.
        assert_eq!(gone, ["2", "5", "old"]);
        // Nothing is old enough ten days in.
        assert!(expired_history(10.0 * day, &deployments, &revisions, &[]).is_empty());
    }
}
