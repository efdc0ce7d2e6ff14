use super::*;
use proptest::prelude::*;

fn dep(id: &str, td: &str, status: DeploymentStatus) -> Deployment {
    Deployment {
        id: id.into(),
        task_definition: td.into(),
        revision: revision_of(id).into(),
        status,
        rollout_state: RolloutState::InProgress,
        rollout_state_reason: None,
        created_at: 0.0,
        updated_at: 0.0,
        next_launch_at: 0.0,
        failures_seen: 0,
    }
}

fn svc(desired: u32, max: u32, min: u32, deployments: Vec<Deployment>) -> Service {
    Service {
        name: "web".into(),
        scheduling: Scheduling::Replica,
        status: ServiceStatus::Active,
        desired_count: desired,
        maximum_percent: max,
        minimum_healthy_percent: min,
        deployments,
        circuit_breaker: None,
        health_check_grace_seconds: 0.0,
        last_steady_event_at: None,
        last_completed_task_definition: None,
        last_completed_revision: None,
    }
}

fn task(id: &str, dep: &str, inst: &str, running: bool) -> Task {
    Task {
        id: id.into(),
        deployment_id: dep.into(),
        instance_id: inst.into(),
        desired_running: true,
        running,
        stopped: false,
        failed: false,
        stopped_at: None,
        health: Health::Unknown,
        has_health_check: false,
        started_at: running.then_some(0.0),
        protected: false,
    }
}

fn inst(id: &str) -> Instance {
    Instance {
        id: id.into(),
        active: true,
        connected: true,
        daemon_eligible: true,
        lost: false,
    }
}

fn run(s: &Service, tasks: &[Task], instances: &[Instance]) -> Plan {
    reconcile(&Input {
        service: s,
        tasks,
        instances,
        now: 100.0,
        new_deployment_id: "ecs-svc/2",
        service_deployment: None,
    })
}

#[test]
fn fresh_service_starts_desired() {
    let s = svc(
        2,
        200,
        100,
        vec![dep("d1", "td:1", DeploymentStatus::Primary)],
    );
    let p = run(&s, &[], &[inst("i1")]);
    assert_eq!(p.starts.len(), 1);
    assert_eq!(p.starts[0].count, 2);
    assert!(p.stops.is_empty());
}

#[test]
fn steady_state_completes_and_reports_once() {
    let s = svc(
        2,
        200,
        100,
        vec![dep("d1", "td:1", DeploymentStatus::Primary)],
    );
    let tasks = [task("a", "d1", "i1", true), task("b", "d1", "i1", true)];
    let p = run(&s, &tasks, &[inst("i1")]);
    assert!(p.starts.is_empty() && p.stops.is_empty());
    assert_eq!(p.deployments[0].rollout_state, RolloutState::Completed);
    assert!(p
        .events
        .iter()
        .any(|e| e == "(service web) (deployment d1) deployment completed."));
    assert!(p
        .events
        .iter()
        .any(|e| e == "(service web) has reached a steady state."));
    // Once completed and recently reported, nothing more.
    let mut s2 = s.clone();
    s2.deployments = p.deployments.clone();
    s2.last_steady_event_at = Some(99.0);
    let p2 = run(&s2, &tasks, &[inst("i1")]);
    assert!(p2.events.is_empty(), "{:?}", p2.events);
}

#[test]
fn rolling_update_min50_max100_never_exceeds_four() {
    let s = svc(
        4,
        100,
        50,
        vec![
            dep("d1", "td:1", DeploymentStatus::Active),
            dep("d2", "td:2", DeploymentStatus::Primary),
        ],
    );
    let tasks: Vec<Task> = (0..4)
        .map(|i| task(&format!("o{i}"), "d1", "i1", true))
        .collect();
    let p = run(&s, &tasks, &[inst("i1")]);
    assert_eq!(p.stops.len(), 2, "stops two old tasks first");
    assert!(p.starts.is_empty(), "no room until they stop");
    // Two old stopped; two old still running → start two new.
    let mut t2 = tasks.clone();
    for t in t2.iter_mut().take(2) {
        t.desired_running = false;
        t.stopped = true;
    }
    let p = run(&s, &t2, &[inst("i1")]);
    assert_eq!(p.starts.iter().map(|s| s.count).sum::<u32>(), 2);
    assert!(
        p.stops.is_empty(),
        "min healthy 2 holds the remaining old tasks"
    );
}

#[test]
fn unhealthy_task_is_replaced_with_event() {
    let s = svc(
        1,
        200,
        100,
        vec![dep("d1", "td:1", DeploymentStatus::Primary)],
    );
    let mut t = task("a", "d1", "i1", true);
    t.has_health_check = true;
    t.health = Health::Unhealthy;
    let p = run(&s, &[t], &[inst("i1")]);
    assert_eq!(
        p.stops,
        vec![Stop {
            task_id: "a".into(),
            reason: StopReason::Unhealthy
        }]
    );
    assert!(p
        .events
        .iter()
        .any(|e| e == "(service web) (task a) failed container health checks."));
    assert_eq!(p.starts[0].count, 1);
}

#[test]
fn circuit_breaker_trips_and_rolls_back() {
    let mut s = svc(
        2,
        200,
        100,
        vec![dep("d2", "td:2", DeploymentStatus::Primary)],
    );
    s.circuit_breaker = Some(CircuitBreaker {
        rollback: true,
        threshold: None,
    });
    s.last_completed_task_definition = Some("td:1".into());
    let failed: Vec<Task> = (0..3)
        .map(|i| Task {
            failed: true,
            stopped: true,
            desired_running: false,
            ..task(&format!("f{i}"), "d2", "i1", false)
        })
        .collect();
    let p = run(&s, &failed, &[inst("i1")]);
    let old = p.deployments.iter().find(|d| d.id == "d2").unwrap();
    assert_eq!(old.rollout_state, RolloutState::Failed);
    assert_eq!(
        old.rollout_state_reason.as_deref(),
        Some("ECS deployment circuit breaker: tasks failed to start.")
    );
    let new = p
        .deployments
        .iter()
        .find(|d| d.status == DeploymentStatus::Primary)
        .unwrap();
    assert_eq!(new.task_definition, "td:1");
    assert_eq!(p.starts[0].task_definition, "td:1");
}

#[test]
fn failures_back_off_without_breaker() {
    let s = svc(
        1,
        200,
        100,
        vec![dep("d1", "td:1", DeploymentStatus::Primary)],
    );
    let failed: Vec<Task> = (0..4)
        .map(|i| Task {
            failed: true,
            stopped: true,
            stopped_at: Some(99.0),
            desired_running: false,
            ..task(&format!("f{i}"), "d1", "i1", false)
        })
        .collect();
    let p = run(&s, &failed, &[inst("i1")]);
    assert!(p.starts.is_empty(), "backs off");
    assert!(p.deployments[0].next_launch_at > 100.0);
}

#[test]
fn occasional_failures_among_successful_starts_do_not_back_off() {
    // A large rollout where 1 task in 100 fails to start: the others keep starting (after the
    // failures), so the failed ones are replaced at once, not throttled.
    let s = svc(
        100,
        200,
        100,
        vec![dep("d1", "td:1", DeploymentStatus::Primary)],
    );
    let mut tasks: Vec<Task> = (0..4)
        .map(|i| Task {
            failed: true,
            stopped: true,
            stopped_at: Some(90.0),
            desired_running: false,
            ..task(&format!("f{i}"), "d1", "i1", false)
        })
        .collect();
    tasks.extend((0..96).map(|i| Task {
        started_at: Some(95.0),
        ..task(&format!("r{i}"), "d1", "i1", true)
    }));
    let p = run(&s, &tasks, &[inst("i1")]);
    assert_eq!(p.deployments[0].next_launch_at, 0.0, "no back-off");
    assert_eq!(p.starts.iter().map(|x| x.count).sum::<u32>(), 4);
    // The same failures after the last successful start: throttled.
    for t in tasks.iter_mut().filter(|t| t.failed) {
        t.stopped_at = Some(99.0);
    }
    let p = run(&s, &tasks, &[inst("i1")]);
    assert!(p.starts.is_empty(), "backs off");
}

#[test]
fn draining_instance_tasks_move() {
    let s = svc(
        2,
        200,
        100,
        vec![dep("d1", "td:1", DeploymentStatus::Primary)],
    );
    let tasks = [task("a", "d1", "drain", true), task("b", "d1", "ok", true)];
    let mut d = inst("drain");
    d.active = false;
    let p = run(&s, &tasks, &[d.clone(), inst("ok")]);
    assert_eq!(p.starts[0].count, 1, "a replacement first");
    assert!(
        p.stops.is_empty(),
        "min 100%: keep it until the replacement is healthy"
    );
    let mut with_replacement = tasks.to_vec();
    with_replacement.push(task("c", "d1", "ok", true));
    let p = run(&s, &with_replacement, &[d, inst("ok")]);
    assert_eq!(p.stops.len(), 1);
    assert_eq!(p.stops[0].task_id, "a");
}

#[test]
fn deleted_service_drains_then_goes_inactive() {
    let mut s = svc(
        0,
        200,
        100,
        vec![dep("d1", "td:1", DeploymentStatus::Primary)],
    );
    s.status = ServiceStatus::Draining;
    let p = run(&s, &[task("a", "d1", "i1", true)], &[inst("i1")]);
    assert_eq!(p.stops.len(), 1);
    assert!(!p.inactive);
    let gone = Task {
        stopped: true,
        desired_running: false,
        ..task("a", "d1", "i1", false)
    };
    let p = run(&s, &[gone], &[inst("i1")]);
    assert!(p.inactive);
}

#[test]
fn daemon_one_per_eligible_instance() {
    let mut s = svc(
        0,
        100,
        0,
        vec![dep("d1", "td:1", DeploymentStatus::Primary)],
    );
    s.scheduling = Scheduling::Daemon;
    let mut drain = inst("i3");
    drain.active = false;
    let tasks = [task("a", "d1", "i1", true), task("b", "d1", "i3", true)];
    let p = run(&s, &tasks, &[inst("i1"), inst("i2"), drain]);
    assert_eq!(p.starts.len(), 1);
    assert_eq!(p.starts[0].instance_id.as_deref(), Some("i2"));
    assert_eq!(p.stops.len(), 1);
    assert_eq!(p.stops[0].task_id, "b");
}

#[test]
fn lost_tasks_are_replaced() {
    let s = svc(
        1,
        200,
        100,
        vec![dep("d1", "td:1", DeploymentStatus::Primary)],
    );
    let mut gone = inst("i1");
    gone.lost = true;
    let p = run(&s, &[task("a", "d1", "i1", true)], &[gone, inst("i2")]);
    assert_eq!(p.stops[0].reason, StopReason::Lost);
    assert_eq!(p.starts[0].count, 1);
}

#[test]
fn thresholds() {
    assert_eq!(failure_threshold(1, None), 3);
    assert_eq!(failure_threshold(10, None), 5);
    assert_eq!(failure_threshold(1000, None), 200);
    assert_eq!(failure_threshold(10, Some(7)), 7);
    assert_eq!(max_tasks(4, 150), 6);
    assert_eq!(min_healthy(3, 50), 2);
}

fn arb_task(deps: u32) -> impl Strategy<Value = Task> {
    (
        0u32..deps,
        0u32..4,
        any::<bool>(),
        any::<bool>(),
        0u8..3,
        any::<bool>(),
    )
        .prop_map(|(d, i, running, stopping, h, hc)| Task {
            id: String::new(),
            deployment_id: format!("d{d}"),
            instance_id: format!("i{i}"),
            desired_running: !stopping,
            running,
            stopped: false,
            failed: false,
            stopped_at: None,
            health: [Health::Healthy, Health::Unhealthy, Health::Unknown][h as usize],
            has_health_check: hc,
            started_at: Some(0.0),
            protected: false,
        })
}

proptest! {
    /// Whatever the state, a plan never takes running+pending above maximumPercent, never stops
    /// healthy tasks below minimumHealthyPercent (except to replace unhealthy/lost ones), never
    /// starts a DAEMON task on a draining instance, and never puts two daemon tasks on one instance.
    #[test]
    fn invariants(
        desired in 0u32..8,
        max in 100u32..=200,
        min in 0u32..=100,
        mut tasks in prop::collection::vec(arb_task(2), 0..12),
        draining in prop::collection::vec(any::<bool>(), 4),
        daemon in any::<bool>(),
    ) {
        for (n, t) in tasks.iter_mut().enumerate() { t.id = format!("t{n}"); }
        let mut s = svc(desired, max, min, vec![dep("d0", "td:0", DeploymentStatus::Active), dep("d1", "td:1", DeploymentStatus::Primary)]);
        if daemon { s.scheduling = Scheduling::Daemon; }
        let instances: Vec<Instance> = (0..4).map(|i| Instance { active: !draining[i], ..inst(&format!("i{i}")) }).collect();
        let p = run(&s, &tasks, &instances);
        let started: u32 = p.starts.iter().map(|s| s.count).sum();
        let in_flight = tasks.iter().filter(|t| !t.stopped).count() as u32;
        if !daemon {
            let cap = max_tasks(desired, max).max(if desired > 0 { 1 } else { 0 });
            prop_assert!(started == 0 || in_flight + started <= cap, "in flight {} + {} > {}", in_flight, started, cap);
            let healthy_before = tasks.iter().filter(|t| healthy(t, 0.0, 100.0)).count() as u32;
            let healthy_stopped = p.stops.iter().filter(|st| st.reason != StopReason::Unhealthy && st.reason != StopReason::Lost)
                .filter(|st| tasks.iter().any(|t| t.id == st.task_id && healthy(t, 0.0, 100.0))).count() as u32;
            let floor = min_healthy(desired, min);
            let keepers_primary = tasks.iter().filter(|t| t.live() && t.deployment_id == "d1" && instances.iter().any(|i| i.id == t.instance_id && i.active)).count() as u32;
            // Scale-in of the primary beyond desired may go below the floor only down to desired.
            if keepers_primary <= desired {
                prop_assert!(healthy_before.saturating_sub(healthy_stopped) >= floor.min(healthy_before), "stopped healthy below the minimum");
            }
        } else {
            for st in &p.starts {
                let i = st.instance_id.as_deref().unwrap();
                prop_assert!(instances.iter().any(|x| x.id == i && x.active));
                let already = tasks.iter().filter(|t| !t.stopped && t.instance_id == i).count();
                prop_assert_eq!(already, 0);
            }
            let mut per: std::collections::HashMap<&str, u32> = Default::default();
            for st in &p.starts { *per.entry(st.instance_id.as_deref().unwrap()).or_default() += st.count; }
            prop_assert!(per.values().all(|c| *c == 1));
        }
    }
}

mod service_deployments {
    use super::*;
    use crate::rollout::{reason, Monitor, ServiceDeployment, Status};

    fn step(s: &Service, sd: &ServiceDeployment, tasks: &[Task]) -> Plan {
        reconcile(&Input {
            service: s,
            tasks,
            instances: &[inst("i1")],
            now: 100.0,
            new_deployment_id: "ecs-svc/9",
            service_deployment: Some(sd),
        })
    }

    fn failed(n: usize, dep: &str) -> Vec<Task> {
        (0..n)
            .map(|i| Task {
                failed: true,
                stopped: true,
                desired_running: false,
                ..task(&format!("f{i}"), dep, "i1", false)
            })
            .collect()
    }

    fn rolled_out(cb: Option<CircuitBreaker>) -> (Service, ServiceDeployment) {
        let mut s = svc(
            2,
            200,
            100,
            vec![
                dep("ecs-svc/1", "td:1", DeploymentStatus::Active),
                dep("ecs-svc/2", "td:2", DeploymentStatus::Primary),
            ],
        );
        s.circuit_breaker = cb;
        s.last_completed_task_definition = Some("td:1".into());
        s.last_completed_revision = Some("1".into());
        (s, ServiceDeployment::new("ecs-svc/2", cb.is_some(), 50.0))
    }

    #[test]
    fn pending_starts_then_succeeds_when_the_target_completes() {
        let (s, sd) = rolled_out(None);
        let p = step(&s, &sd, &[task("a", "ecs-svc/1", "i1", true)]);
        let sd = p.service_deployment.unwrap();
        assert_eq!(sd.status, Status::InProgress);
        assert_eq!(sd.started_at, Some(100.0));
        assert_eq!(sd.circuit_breaker, Monitor::Disabled);
        let done = [
            task("b", "ecs-svc/2", "i1", true),
            task("c", "ecs-svc/2", "i1", true),
        ];
        let p = step(&s, &sd, &done);
        let sd = p.service_deployment.unwrap();
        assert_eq!(sd.status, Status::Successful);
        assert_eq!(sd.finished_at, Some(100.0));
        assert_eq!(sd.status_reason.as_deref(), Some(reason::SUCCESSFUL));
        assert_eq!(p.completed_revision.as_deref(), Some("2"));
    }

    #[test]
    fn circuit_breaker_rolls_back_to_the_last_completed_revision() {
        let cb = Some(CircuitBreaker {
            rollback: true,
            threshold: None,
        });
        let (s, sd) = rolled_out(cb);
        let p = step(&s, &sd, &failed(3, "ecs-svc/2"));
        let sd = p.service_deployment.clone().unwrap();
        assert_eq!(sd.status, Status::RollbackInProgress);
        assert_eq!(sd.circuit_breaker, Monitor::Triggered);
        assert_eq!(sd.failure_count, 3);
        let rb = sd.rollback.clone().unwrap();
        assert_eq!(
            (rb.revision.as_str(), rb.deployment_id.as_str()),
            ("1", "ecs-svc/9")
        );
        assert_eq!(rb.reason, reason::CIRCUIT_BREAKER_ROLLBACK);
        let primary = p
            .deployments
            .iter()
            .find(|d| d.status == DeploymentStatus::Primary)
            .unwrap();
        assert_eq!(
            (primary.id.as_str(), primary.revision.as_str()),
            ("ecs-svc/9", "1")
        );
        // The rollback deployment completes: ROLLBACK_SUCCESSFUL, and revision 1 is still the
        // last completed one.
        let mut s2 = s.clone();
        s2.deployments = p.deployments.clone();
        let back = [
            task("b", "ecs-svc/9", "i1", true),
            task("c", "ecs-svc/9", "i1", true),
        ];
        let p = step(&s2, &sd, &back);
        let sd = p.service_deployment.unwrap();
        assert_eq!(sd.status, Status::RollbackSuccessful);
        assert_eq!(sd.circuit_breaker, Monitor::Triggered);
        assert_eq!(p.completed_revision.as_deref(), Some("1"));
    }

    #[test]
    fn circuit_breaker_without_rollback_stops_the_deployment() {
        let cb = Some(CircuitBreaker {
            rollback: false,
            threshold: None,
        });
        let (s, sd) = rolled_out(cb);
        let p = step(&s, &sd, &failed(3, "ecs-svc/2"));
        let sd = p.service_deployment.unwrap();
        assert_eq!(sd.status, Status::Stopped);
        assert_eq!(sd.status_reason.as_deref(), Some(reason::CIRCUIT_BREAKER));
        assert_eq!(sd.stopped_at, Some(100.0));
        assert_eq!(sd.circuit_breaker, Monitor::Triggered);
        assert!(p.starts.is_empty());
    }

    #[test]
    fn requested_rollback_runs_the_previous_revision_without_a_breaker() {
        let (s, mut sd) = rolled_out(None);
        sd.start(60.0);
        sd.request_rollback(70.0);
        let p = step(&s, &sd, &[task("a", "ecs-svc/1", "i1", true)]);
        let sd = p.service_deployment.unwrap();
        assert_eq!(sd.status, Status::RollbackInProgress);
        assert_eq!(sd.rollback.unwrap().reason, reason::ROLLBACK_REQUESTED);
        let target = p.deployments.iter().find(|d| d.id == "ecs-svc/2").unwrap();
        assert_eq!(target.rollout_state, RolloutState::Failed);
        assert_eq!(p.starts.len(), 1);
        assert_eq!(p.starts[0].task_definition, "td:1");
        assert_eq!(p.starts[0].deployment_id, "ecs-svc/9");
    }

    #[test]
    fn requested_rollback_of_a_first_deployment_fails() {
        let (mut s, mut sd) = rolled_out(None);
        s.last_completed_task_definition = None;
        s.last_completed_revision = None;
        sd.request_rollback(70.0);
        let p = step(&s, &sd, &[]);
        let sd = p.service_deployment.unwrap();
        assert_eq!(sd.status, Status::RollbackFailed);
        assert_eq!(
            sd.status_reason.as_deref(),
            Some(reason::NOTHING_TO_ROLL_BACK_TO)
        );
    }

    #[test]
    fn abort_stops_launching() {
        let (s, mut sd) = rolled_out(None);
        sd.request_stop(70.0);
        let p = step(&s, &sd, &[task("a", "ecs-svc/1", "i1", true)]);
        assert_eq!(p.service_deployment.unwrap().status, Status::Stopped);
        assert!(p.starts.is_empty());
    }

    #[test]
    fn deleting_the_service_stops_its_deployment() {
        let (mut s, sd) = rolled_out(None);
        s.status = ServiceStatus::Draining;
        let p = step(&s, &sd, &[]);
        let sd = p.service_deployment.unwrap();
        assert_eq!(sd.status, Status::Stopped);
        assert_eq!(sd.status_reason.as_deref(), Some(reason::SERVICE_DELETED));
    }

    fn arb_status() -> impl Strategy<Value = Status> {
        prop::sample::select(vec![
            Status::Pending,
            Status::InProgress,
            Status::Successful,
            Status::Stopped,
            Status::StopRequested,
            Status::RollbackRequested,
            Status::RollbackInProgress,
            Status::RollbackSuccessful,
            Status::RollbackFailed,
        ])
    }

    /// The edges of the state machine in the module documentation.
    fn allowed(from: Status, to: Status) -> bool {
        use Status::*;
        from == to
            || matches!(
                (from, to),
                (
                    Pending,
                    InProgress | Successful | Stopped | RollbackInProgress
                ) | (InProgress, Successful | Stopped | RollbackInProgress)
                    | (StopRequested, Stopped)
                    | (
                        RollbackRequested,
                        RollbackInProgress | RollbackFailed | Stopped
                    )
                    | (
                        RollbackInProgress,
                        RollbackSuccessful | RollbackFailed | Stopped
                    )
            )
    }

    proptest! {
        /// Whatever the service and its tasks: a step moves a service deployment only along the
        /// state machine's edges, never moves a finished one, and leaves a live one only while
        /// the ECS deployment running it is the primary.
        #[test]
        fn steps_follow_the_state_machine(
            status in arb_status(),
            breaker in any::<bool>(),
            rollback in any::<bool>(),
            previous in any::<bool>(),
            draining in any::<bool>(),
            mut tasks in prop::collection::vec(arb_task(2), 0..8),
            failures in 0usize..5,
        ) {
            for (n, t) in tasks.iter_mut().enumerate() {
                t.id = format!("t{n}");
                t.deployment_id = format!("ecs-svc/{}", t.deployment_id.trim_start_matches('d').parse::<u32>().unwrap_or(0) + 1);
            }
            tasks.extend(failed(failures, "ecs-svc/2"));
            let (mut s, mut sd) = rolled_out(breaker.then_some(CircuitBreaker { rollback, threshold: None }));
            if !previous {
                s.last_completed_task_definition = None;
                s.last_completed_revision = None;
            }
            if draining {
                s.status = ServiceStatus::Draining;
            }
            sd.status = status;
            if status == Status::RollbackInProgress {
                sd.rollback = Some(rollout::Rollback {
                    reason: reason::ROLLBACK_REQUESTED.into(),
                    started_at: 60.0,
                    revision: "1".into(),
                    deployment_id: "ecs-svc/2".into(),
                });
            }
            let p = step(&s, &sd, &tasks);
            let after = p.service_deployment.unwrap();
            prop_assert!(allowed(status, after.status), "{:?} -> {:?}", status, after.status);
            if status.is_final() {
                prop_assert_eq!(&after, &sd);
            }
            if !after.status.is_final() {
                let runs = after.rollback.as_ref().map_or(&after.deployment_id, |r| &r.deployment_id);
                prop_assert!(p.deployments.iter().any(|d| d.id == *runs && d.status == DeploymentStatus::Primary));
            }
        }
    }
}
