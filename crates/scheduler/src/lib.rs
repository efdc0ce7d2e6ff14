//! berth-scheduler: the pure service reconciler.
//!
//! `reconcile(&Input) -> Plan` looks at one service, its tasks and the cluster's instances at one
//! moment and says what should happen next: which tasks to start (for which deployment, and for
//! DAEMON services on which instance), which to stop and why, how the deployments change (rollout
//! state, completion, circuit breaker, rollback), and which events to write. It does no IO and reads
//! no clock (`now` is an input); the control plane applies the plan with compare-on-revision and
//! calls it again (level-triggered: every call recomputes from the current state, so a lost or
//! repeated call is harmless).
//!
//! Rules (ECS's documented behaviour):
//! - REPLICA keeps `desiredCount` tasks of the PRIMARY deployment. Running + pending tasks never
//!   exceed `floor(desired × maximumPercent / 100)`; healthy tasks are not stopped below
//!   `ceil(desired × minimumHealthyPercent / 100)` while old or draining tasks are retired.
//! - A task is healthy when RUNNING and, if it has health checks, HEALTHY (UNKNOWN counts as healthy
//!   during the health-check grace period). UNHEALTHY tasks are stopped and replaced.
//! - When the PRIMARY deployment has `desired` healthy tasks and nothing else is left, older
//!   deployments disappear and the rollout is COMPLETED; then the service reaches a steady state.
//! - Circuit breaker: a deployment whose tasks fail to start (stopped on their own before the
//!   rollout completed) `threshold` times, threshold = clamp(ceil(0.5 × desired), 3, 200), is
//!   FAILED; with rollback a new PRIMARY deployment goes back to the last COMPLETED task definition.
//!   Without the breaker, repeated failures back off exponentially instead of spinning.
//! - DAEMON: exactly one task on every eligible (ACTIVE, connected-or-recently-connected,
//!   constraint-satisfying) instance; a task on an instance that is no longer eligible is stopped.
//! - Tasks on DRAINING instances are replaced elsewhere within maximumPercent, then stopped.
//! - DRAINING services (deleted) stop all their tasks and become INACTIVE when none is left.

pub mod rollout;
pub mod task_sets;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduling {
    Replica,
    Daemon,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceStatus {
    Active,
    Draining,
    Inactive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentStatus {
    Primary,
    Active,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutState {
    InProgress,
    Completed,
    Failed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub id: String,
    pub task_definition: String,
    /// The service revision it runs: its own number (`ecs-svc/<n>` runs revision `<n>`), or for
    /// a rollback the revision rolled back to.
    pub revision: String,
    pub status: DeploymentStatus,
    pub rollout_state: RolloutState,
    pub rollout_state_reason: Option<String>,
    pub created_at: f64,
    pub updated_at: f64,
    /// No new task of this deployment before this time (failure back-off).
    pub next_launch_at: f64,
    /// Failures already acted upon (for the back-off and events).
    pub failures_seen: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreaker {
    pub rollback: bool,
    /// Explicit failure threshold (thresholdConfiguration); None = ECS's default formula.
    pub threshold: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: String,
    pub scheduling: Scheduling,
    pub status: ServiceStatus,
    pub desired_count: u32,
    pub maximum_percent: u32,
    pub minimum_healthy_percent: u32,
    pub deployments: Vec<Deployment>,
    pub circuit_breaker: Option<CircuitBreaker>,
    pub health_check_grace_seconds: f64,
    /// When the last "has reached a steady state" event was written.
    pub last_steady_event_at: Option<f64>,
    /// The task definition of the last deployment that COMPLETED (rollback target).
    pub last_completed_task_definition: Option<String>,
    /// The service revision of the last deployment that COMPLETED (rollback target).
    pub last_completed_revision: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    Unhealthy,
    Unknown,
}

/// What the scheduler knows of one task of the service.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: String,
    pub deployment_id: String,
    pub instance_id: String,
    /// desiredStatus RUNNING (the task is still wanted).
    pub desired_running: bool,
    /// lastStatus is RUNNING.
    pub running: bool,
    /// lastStatus is STOPPED.
    pub stopped: bool,
    /// Stopped on its own (EssentialContainerExited / TaskFailedToStart), not by the scheduler or
    /// a user, before its deployment completed.
    pub failed: bool,
    /// When it stopped (for the failure back-off window).
    pub stopped_at: Option<f64>,
    pub health: Health,
    pub has_health_check: bool,
    pub started_at: Option<f64>,
    /// Scale-in protected (UpdateTaskProtection).
    pub protected: bool,
}

impl Task {
    /// Still counted: wanted and not stopped.
    pub fn live(&self) -> bool {
        self.desired_running && !self.stopped
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub id: String,
    /// ACTIVE (not DRAINING).
    pub active: bool,
    /// The agent is connected (or was, recently enough that its tasks are not presumed lost).
    pub connected: bool,
    /// For DAEMON: passes the service's placement constraints and has room for the task.
    pub daemon_eligible: bool,
    /// Its agent has been gone so long that its tasks are presumed lost.
    pub lost: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Input<'a> {
    pub service: &'a Service,
    pub tasks: &'a [Task],
    pub instances: &'a [Instance],
    pub now: f64,
    /// A fresh deployment id, in case the plan must create one (rollback).
    pub new_deployment_id: &'a str,
    /// The service's live service deployment, if one is in flight.
    pub service_deployment: Option<&'a rollout::ServiceDeployment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Scale-in, old deployment, draining instance, service deleted.
    Scheduler(String),
    /// Failed its health checks.
    Unhealthy,
    /// Its instance's agent is gone for too long.
    Lost,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Start {
    pub deployment_id: String,
    pub task_definition: String,
    pub count: u32,
    /// DAEMON: the instance to start on.
    pub instance_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stop {
    pub task_id: String,
    pub reason: StopReason,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub starts: Vec<Start>,
    pub stops: Vec<Stop>,
    /// The deployments after this step (replace the service's list).
    pub deployments: Vec<Deployment>,
    pub events: Vec<String>,
    /// The service has no tasks left and is being deleted: mark it INACTIVE.
    pub inactive: bool,
    /// The steady-state event was written in this step.
    pub steady_event: bool,
    /// The new `last_completed_task_definition`, if it changed.
    pub completed_task_definition: Option<String>,
    /// The new `last_completed_revision`, with `completed_task_definition`.
    pub completed_revision: Option<String>,
    /// The live service deployment after this step (`None` if there was none).
    pub service_deployment: Option<rollout::ServiceDeployment>,
}

/// The service revision an ECS deployment id (`ecs-svc/<n>`) creates: `<n>`.
pub fn revision_of(deployment_id: &str) -> &str {
    deployment_id
        .strip_prefix("ecs-svc/")
        .unwrap_or(deployment_id)
}

/// Failures within this many seconds count for the launch back-off.
pub const BACKOFF_WINDOW: f64 = 600.0;

/// ECS repeats "has reached a steady state" at most this often (seconds).
pub const STEADY_EVENT_INTERVAL: f64 = 6.0 * 3600.0;

/// The circuit-breaker threshold: 0.5 × desired, clamped to [3, 200].
pub fn failure_threshold(desired: u32, explicit: Option<u32>) -> u32 {
    explicit
        .unwrap_or_else(|| desired.div_ceil(2).clamp(3, 200))
        .max(1)
}

/// floor(desired × max%).
pub fn max_tasks(desired: u32, maximum_percent: u32) -> u32 {
    ((desired as u64 * maximum_percent as u64) / 100) as u32
}

/// ceil(desired × min%).
pub fn min_healthy(desired: u32, minimum_healthy_percent: u32) -> u32 {
    ((desired as u64 * minimum_healthy_percent as u64).div_ceil(100)) as u32
}

fn healthy(t: &Task, grace: f64, now: f64) -> bool {
    if !t.running || !t.live() {
        return false;
    }
    if !t.has_health_check {
        return true;
    }
    match t.health {
        Health::Healthy => true,
        Health::Unhealthy => false,
        Health::Unknown => t.started_at.is_some_and(|s| now - s < grace),
    }
}

/// Live tasks to stop and replace, with their events: those on instances whose agent is gone for
/// good (or on no known instance), and those that failed their health checks.
fn failing_tasks(name: &str, tasks: &[Task], instances: &[Instance]) -> (Vec<Stop>, Vec<String>) {
    let mut stops = Vec::new();
    let mut events = Vec::new();
    let by_id: std::collections::HashMap<&str, &Instance> =
        instances.iter().map(|i| (i.id.as_str(), i)).collect();
    for t in tasks.iter().filter(|t| t.live()) {
        if by_id.get(t.instance_id.as_str()).is_none_or(|i| i.lost) {
            stops.push(Stop {
                task_id: t.id.clone(),
                reason: StopReason::Lost,
            });
        } else if t.running && t.has_health_check && t.health == Health::Unhealthy {
            events.push(format!(
                "(service {name}) (task {}) failed container health checks.",
                t.id
            ));
            stops.push(Stop {
                task_id: t.id.clone(),
                reason: StopReason::Unhealthy,
            });
        }
    }
    (stops, events)
}

fn ids(tasks: &[&Task]) -> String {
    tasks
        .iter()
        .map(|t| format!("(task {})", t.id))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn reconcile(input: &Input<'_>) -> Plan {
    let s = input.service;
    let now = input.now;
    let mut plan = Plan {
        deployments: s.deployments.clone(),
        service_deployment: input.service_deployment.cloned(),
        ..Default::default()
    };
    let name = &s.name;

    // 1. Lost tasks (agent gone too long) and unhealthy tasks are stopped and replaced.
    let (failing, events) = failing_tasks(name, input.tasks, input.instances);
    let stopping: Vec<String> = failing.iter().map(|f| f.task_id.clone()).collect();
    plan.stops = failing;
    plan.events = events;
    let live: Vec<&Task> = input
        .tasks
        .iter()
        .filter(|t| t.live() && !stopping.contains(&t.id))
        .collect();

    // 2. A deleted service drains everything.
    if s.status != ServiceStatus::Active {
        let to_stop: Vec<&Task> = live.clone();
        for t in &to_stop {
            plan.stops.push(Stop {
                task_id: t.id.clone(),
                reason: StopReason::Scheduler("Service is being deleted".into()),
            });
        }
        if !to_stop.is_empty() {
            plan.events.push(format!(
                "(service {name}) has stopped {} running tasks: {}.",
                to_stop.len(),
                ids(&to_stop)
            ));
        }
        let still_running = input.tasks.iter().any(|t| !t.stopped);
        plan.inactive = to_stop.is_empty() && !still_running;
        if let Some(sd) = plan.service_deployment.as_mut() {
            sd.service_deleted(now);
        }
        return plan;
    }

    // 3. Circuit breaker and back-off, per deployment.
    let Some(primary_idx) = plan
        .deployments
        .iter()
        .position(|d| d.status == DeploymentStatus::Primary)
    else {
        return plan;
    };
    if let Some(sd) = plan.service_deployment.as_mut() {
        sd.start(now);
    }
    let threshold = failure_threshold(s.desired_count, s.circuit_breaker.and_then(|c| c.threshold));
    let failures = |d: &Deployment| {
        input
            .tasks
            .iter()
            .filter(|t| t.deployment_id == d.id && t.failed)
            .count() as u32
    };
    {
        let d = &mut plan.deployments[primary_idx];
        let f = failures(d);
        if f > d.failures_seen {
            d.failures_seen = f;
            d.updated_at = now;
            // Back off exponentially (capped) while tasks *keep* failing, as ECS's service
            // throttle does for tasks that repeatedly fail to start: count the failures of the
            // last BACKOFF_WINDOW seconds that came after the deployment's latest successful
            // start. An occasional crash among tasks that do start (1 % of a large rollout) is
            // replaced at once; a deployment where nothing starts backs off.
            let last_success = input
                .tasks
                .iter()
                .filter(|t| t.deployment_id == d.id && !t.failed)
                .filter_map(|t| t.started_at)
                .fold(f64::NEG_INFINITY, f64::max);
            let recent = input
                .tasks
                .iter()
                .filter(|t| {
                    t.deployment_id == d.id
                        && t.failed
                        && t.stopped_at
                            .is_some_and(|at| now - at < BACKOFF_WINDOW && at > last_success)
                })
                .count() as i32;
            if recent > 1 {
                d.next_launch_at = now + (2f64.powi((recent - 1).min(9))).min(300.0);
            }
        }
        if let Some(sd) = plan
            .service_deployment
            .as_mut()
            .filter(|sd| sd.deployment_id == d.id)
        {
            sd.count_failures(d.failures_seen, now);
        }
    }
    // The last completed deployment, if the primary is not it: where a rollback goes.
    // (Services from before service revisions know only the task definition: the rollback
    // then gets a revision of its own.)
    let previous = s.last_completed_task_definition.clone().and_then(|td| {
        let d = &plan.deployments[primary_idx];
        match &s.last_completed_revision {
            Some(r) => (*r != d.revision).then(|| (td, r.clone())),
            None => (td != d.task_definition)
                .then(|| (td, revision_of(input.new_deployment_id).to_string())),
        }
    });
    let mut rollback_to: Option<((String, String), &str)> = None;
    if let Some(cb) = s.circuit_breaker {
        let d = &mut plan.deployments[primary_idx];
        if d.rollout_state == RolloutState::InProgress && d.failures_seen >= threshold {
            d.rollout_state = RolloutState::Failed;
            d.rollout_state_reason =
                Some("ECS deployment circuit breaker: tasks failed to start.".into());
            d.updated_at = now;
            plan.events.push(format!(
                "(service {name}) (deployment {}) deployment failed: tasks failed to start.",
                d.id
            ));
            let sd = plan.service_deployment.as_mut();
            let rolled = cb.rollback && previous.is_some();
            if let Some(sd) = sd {
                if sd.deployment_id == d.id {
                    sd.tripped(now);
                }
                if !rolled {
                    sd.failed(&d.id, now);
                }
            }
            if rolled {
                rollback_to = previous
                    .clone()
                    .map(|p| (p, rollout::reason::CIRCUIT_BREAKER_ROLLBACK));
            }
        }
    }
    // StopServiceDeployment: ROLLBACK goes back to the last completed revision; ABORT stops
    // launching where the deployment is.
    if let Some(sd) = plan.service_deployment.as_mut() {
        let d = &mut plan.deployments[primary_idx];
        match sd.status {
            rollout::Status::RollbackRequested if rollback_to.is_none() => match &previous {
                Some(p) => {
                    rollback_to = Some((p.clone(), rollout::reason::ROLLBACK_REQUESTED));
                    if d.rollout_state == RolloutState::InProgress {
                        d.rollout_state = RolloutState::Failed;
                        d.rollout_state_reason =
                            Some("ECS deployment stopped: rolled back on request.".into());
                        d.updated_at = now;
                    }
                }
                None => sd.cannot_roll_back(now),
            },
            rollout::Status::StopRequested => {
                if d.rollout_state == RolloutState::InProgress {
                    d.rollout_state = RolloutState::Failed;
                    d.rollout_state_reason = Some("ECS deployment stopped on request.".into());
                    d.updated_at = now;
                }
                sd.aborted(now);
            }
            _ => {}
        }
    }
    if let Some(((td, revision), why)) = rollback_to {
        for d in plan.deployments.iter_mut() {
            d.status = DeploymentStatus::Active;
        }
        plan.deployments.push(Deployment {
            id: input.new_deployment_id.to_string(),
            task_definition: td,
            revision: revision.clone(),
            status: DeploymentStatus::Primary,
            rollout_state: RolloutState::InProgress,
            rollout_state_reason: Some(
                if why == rollout::reason::ROLLBACK_REQUESTED {
                    "ECS deployment rolling back to the last completed deployment on request."
                } else {
                    "ECS deployment circuit breaker: rolling back to the last completed deployment."
                }
                .into(),
            ),
            created_at: now,
            updated_at: now,
            next_launch_at: now,
            failures_seen: 0,
        });
        if let Some(sd) = plan.service_deployment.as_mut() {
            sd.rolling_back(why, &revision, input.new_deployment_id, now);
        }
        plan.events.push(format!(
            "(service {name}) (deployment {}) deployment rolling back to the last completed deployment.",
            input.new_deployment_id
        ));
    }
    let primary_idx = plan
        .deployments
        .iter()
        .position(|d| d.status == DeploymentStatus::Primary)
        .unwrap_or(primary_idx);
    let primary = plan.deployments[primary_idx].clone();
    let can_launch = primary.rollout_state != RolloutState::Failed && now >= primary.next_launch_at;

    match s.scheduling {
        Scheduling::Replica => replica(input, &mut plan, &live, &primary, can_launch),
        Scheduling::Daemon => daemon(input, &mut plan, &live, &primary, can_launch),
    }

    // 5. Completion and steady state.
    let planned_stops: Vec<&str> = plan.stops.iter().map(|s| s.task_id.as_str()).collect();
    let remaining: Vec<&Task> = live
        .iter()
        .copied()
        .filter(|t| !planned_stops.contains(&t.id.as_str()))
        .collect();
    let primary_healthy = remaining
        .iter()
        .filter(|t| t.deployment_id == primary.id && healthy(t, s.health_check_grace_seconds, now))
        .count() as u32;
    let others_left = remaining.iter().any(|t| t.deployment_id != primary.id);
    let target = match s.scheduling {
        Scheduling::Replica => s.desired_count,
        Scheduling::Daemon => input
            .instances
            .iter()
            .filter(|i| i.active && i.daemon_eligible && !i.lost)
            .count() as u32,
    };
    let primary_on_target = primary_healthy == target
        && remaining
            .iter()
            .filter(|t| t.deployment_id == primary.id)
            .count() as u32
            == target;
    if primary_on_target && !others_left && plan.starts.is_empty() {
        let pd = &mut plan.deployments[primary_idx];
        if pd.rollout_state == RolloutState::InProgress {
            pd.rollout_state = RolloutState::Completed;
            pd.rollout_state_reason = Some("ECS deployment completed.".into());
            pd.updated_at = now;
            plan.events.push(format!(
                "(service {name}) (deployment {}) deployment completed.",
                pd.id
            ));
            plan.completed_task_definition = Some(pd.task_definition.clone());
            plan.completed_revision = Some(pd.revision.clone());
        }
        if let Some(sd) = plan.service_deployment.as_mut() {
            sd.completed(&pd.id, now);
        }
        let before = plan.deployments.len();
        plan.deployments
            .retain(|d| d.status == DeploymentStatus::Primary);
        let changed = before != plan.deployments.len();
        let due = s
            .last_steady_event_at
            .is_none_or(|t| now - t >= STEADY_EVENT_INTERVAL);
        if (changed || due || plan.completed_task_definition.is_some()) && plan.stops.is_empty() {
            plan.events
                .push(format!("(service {name}) has reached a steady state."));
            plan.steady_event = true;
        }
    } else {
        // Deployments with no tasks left and not PRIMARY are gone.
        // Deployments that are neither PRIMARY nor FAILED (kept visible until the rollback
        // completes) disappear once none of their tasks is left.
        plan.deployments.retain(|d| {
            d.status == DeploymentStatus::Primary
                || d.rollout_state == RolloutState::Failed
                || remaining.iter().any(|t| t.deployment_id == d.id)
        });
    }
    // A live service deployment whose ECS deployment is no longer the primary one was replaced.
    if let Some(sd) = plan.service_deployment.as_mut() {
        let runs = sd
            .rollback
            .as_ref()
            .map_or(&sd.deployment_id, |r| &r.deployment_id);
        let primary = plan
            .deployments
            .iter()
            .any(|d| d.id == *runs && d.status == DeploymentStatus::Primary);
        if !primary {
            sd.superseded_in_place(now);
        }
    }
    plan
}

fn replica(
    input: &Input<'_>,
    plan: &mut Plan,
    live: &[&Task],
    primary: &Deployment,
    can_launch: bool,
) {
    let s = input.service;
    let now = input.now;
    let name = &s.name;
    let desired = s.desired_count;
    let max_total = max_tasks(desired, s.maximum_percent).max(if desired > 0 { 1 } else { 0 });
    let min_ok = min_healthy(desired, s.minimum_healthy_percent);
    let grace = s.health_check_grace_seconds;
    let by_id: std::collections::HashMap<&str, &Instance> =
        input.instances.iter().map(|i| (i.id.as_str(), i)).collect();
    let on_draining = |t: &Task| by_id.get(t.instance_id.as_str()).is_some_and(|i| !i.active);

    // Tasks to retire: old deployments, or on DRAINING instances.
    let retiring: Vec<&Task> = live
        .iter()
        .copied()
        .filter(|t| t.deployment_id != primary.id || on_draining(t))
        .collect();
    let keepers: Vec<&Task> = live
        .iter()
        .copied()
        .filter(|t| t.deployment_id == primary.id && !on_draining(t))
        .collect();

    // Scale-in of the primary beyond desired: stop the extra (unprotected) ones.
    let mut stops: Vec<&Task> = Vec::new();
    if keepers.len() as u32 > desired {
        let mut extra: Vec<&Task> = keepers.iter().copied().filter(|t| !t.protected).collect();
        // Prefer not-yet-running, then the newest.
        extra.sort_by(|a, b| {
            a.running.cmp(&b.running).then(
                b.started_at
                    .partial_cmp(&a.started_at)
                    .unwrap_or(std::cmp::Ordering::Equal),
            )
        });
        extra.truncate(keepers.len() - desired as usize);
        stops.extend(extra);
    }
    let keepers_after: u32 = keepers.len() as u32 - stops.len() as u32;

    // Retire old/draining tasks while healthy capacity stays at or above the minimum.
    let healthy_total = live
        .iter()
        .filter(|t| healthy(t, grace, now) && !stops.iter().any(|x| x.id == t.id))
        .count() as u32;
    let mut healthy_budget = healthy_total.saturating_sub(min_ok);
    let mut retire_sorted = retiring.clone();
    // Not-healthy retirees first (stopping them costs no healthy capacity).
    retire_sorted.sort_by_key(|t| healthy(t, grace, now));
    for t in retire_sorted {
        if t.protected && !on_draining(t) {
            continue;
        }
        let h = healthy(t, grace, now);
        // A retiree may only go once a replacement exists or capacity allows.
        if !h {
            stops.push(t);
        } else if healthy_budget > 0 {
            healthy_budget -= 1;
            stops.push(t);
        }
    }

    // Start primary tasks: up to desired, within maximumPercent of every task that is not yet
    // STOPPED — tasks being stopped still run until their containers exit, so they count.
    // (Lost tasks are marked stopped by the applier at once, so they don't.)
    let lost: Vec<&str> = plan
        .stops
        .iter()
        .filter(|x| x.reason == StopReason::Lost)
        .map(|x| x.task_id.as_str())
        .collect();
    let in_flight = input
        .tasks
        .iter()
        .filter(|t| !t.stopped && !lost.contains(&t.id.as_str()))
        .count() as u32;
    let want = desired.saturating_sub(keepers_after);
    let room = max_total.saturating_sub(in_flight);
    let n = want.min(room);
    if n > 0 && can_launch {
        plan.starts.push(Start {
            deployment_id: primary.id.clone(),
            task_definition: primary.task_definition.clone(),
            count: n,
            instance_id: None,
        });
    }
    if !stops.is_empty() {
        plan.events.push(format!(
            "(service {name}) has stopped {} running tasks: {}.",
            stops.len(),
            ids(&stops)
        ));
    }
    for t in stops {
        plan.stops.push(Stop {
            task_id: t.id.clone(),
            reason: StopReason::Scheduler(if on_draining(t) {
                "Container instance is draining".into()
            } else {
                format!("Scaling activity initiated by (deployment {}).", primary.id)
            }),
        });
    }
}

fn daemon(
    input: &Input<'_>,
    plan: &mut Plan,
    live: &[&Task],
    primary: &Deployment,
    can_launch: bool,
) {
    let name = &input.service.name;
    let mut stops: Vec<&Task> = Vec::new();
    for i in input.instances.iter().filter(|i| !i.lost) {
        let here: Vec<&Task> = live
            .iter()
            .copied()
            .filter(|t| t.instance_id == i.id)
            .collect();
        let eligible = i.active && i.daemon_eligible;
        if !eligible {
            stops.extend(here.iter().copied());
            continue;
        }
        // Keep one task of the primary deployment; retire the rest (old deployments first).
        let mut primaries: Vec<&Task> = here
            .iter()
            .copied()
            .filter(|t| t.deployment_id == primary.id)
            .collect();
        let olds: Vec<&Task> = here
            .iter()
            .copied()
            .filter(|t| t.deployment_id != primary.id)
            .collect();
        primaries.sort_by_key(|t| std::cmp::Reverse(t.running));
        stops.extend(primaries.iter().skip(1).copied());
        stops.extend(olds.iter().copied());
        // Start only once nothing of the service is left on the instance (a task being stopped
        // still holds its ports): DAEMON replaces stop-first (ECS's 0% / 100% default).
        let occupied = input
            .tasks
            .iter()
            .any(|t| t.instance_id == i.id && !t.stopped);
        if primaries.is_empty() && !occupied && can_launch {
            plan.starts.push(Start {
                deployment_id: primary.id.clone(),
                task_definition: primary.task_definition.clone(),
                count: 1,
                instance_id: Some(i.id.clone()),
            });
        }
    }
    if !stops.is_empty() {
        plan.events.push(format!(
            "(service {name}) has stopped {} running tasks: {}.",
            stops.len(),
            ids(&stops)
        ));
    }
    for t in stops {
        plan.stops.push(Stop {
            task_id: t.id.clone(),
            reason: StopReason::Scheduler("Daemon task no longer wanted on this instance".into()),
        });
    }
}

#[cfg(test)]
mod tests;
