//! Task sets: services with an EXTERNAL (or CODE_DEPLOY) deployment controller. An external
//! deployer, not ECS, decides what runs: it creates task sets, scales each to a percentage of the
//! service's desired count, and says which one is primary. ECS only keeps every task set at its
//! `computedDesiredCount` — replacing lost, unhealthy and failed tasks, moving tasks off draining
//! instances, and stopping the tasks of a deleted (DRAINING) task set.
//!
//! `reconcile(&Input) -> Plan`, like the service reconciler: pure, level-triggered.

use crate::{Instance, Start, Stop, StopReason, Task, BACKOFF_WINDOW};

/// One task set as the reconciler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSet {
    /// `ecs-svc/<n>`: the tasks' `startedBy`.
    pub id: String,
    pub task_definition: String,
    /// ceil(desiredCount × scale / 100).
    pub computed_desired: u32,
    /// Deleted: its tasks are stopped, then it is gone.
    pub draining: bool,
}

/// ECS's `computedDesiredCount`: the service's desired count times the scale, rounded up.
pub fn computed_desired(desired: u32, scale_percent: f64) -> u32 {
    let scale = if scale_percent.is_finite() {
        scale_percent.clamp(0.0, 100.0)
    } else {
        0.0
    };
    // Rounded up, but a product that is whole up to float noise stays whole.
    let exact = desired as f64 * scale / 100.0;
    let n = (exact - 1e-9).ceil().max(0.0);
    n.min(desired as f64) as u32
}

#[derive(Debug, Clone, PartialEq)]
pub struct Input<'a> {
    pub service_name: &'a str,
    /// The service is ACTIVE (not being deleted).
    pub active: bool,
    pub task_sets: &'a [TaskSet],
    pub tasks: &'a [Task],
    pub instances: &'a [Instance],
    pub now: f64,
    pub health_check_grace_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub starts: Vec<Start>,
    pub stops: Vec<Stop>,
    pub events: Vec<String>,
    /// DRAINING task sets with no task left: remove them.
    pub gone: Vec<String>,
    /// The service is being deleted and nothing of it runs any more.
    pub inactive: bool,
}

/// Seconds to hold launches of a task set whose tasks keep failing: 2^(n-1) for the n failures
/// since its last successful start within [`BACKOFF_WINDOW`], at most 300; none for one failure.
fn held_until(set: &str, tasks: &[Task], now: f64) -> f64 {
    let last_success = tasks
        .iter()
        .filter(|t| t.deployment_id == set && !t.failed)
        .filter_map(|t| t.started_at)
        .fold(f64::NEG_INFINITY, f64::max);
    let recent: Vec<f64> = tasks
        .iter()
        .filter(|t| t.deployment_id == set && t.failed)
        .filter_map(|t| t.stopped_at)
        .filter(|at| now - at < BACKOFF_WINDOW && *at > last_success)
        .collect();
    if recent.len() < 2 {
        return f64::NEG_INFINITY;
    }
    let last = recent.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    last + 2f64.powi((recent.len() as i32 - 1).min(9)).min(300.0)
}

pub fn reconcile(input: &Input<'_>) -> Plan {
    let mut plan = Plan::default();
    let name = input.service_name;
    let now = input.now;
    let (failing, events) = crate::failing_tasks(name, input.tasks, input.instances);
    plan.events = events;
    let stopping: Vec<&str> = failing.iter().map(|s| s.task_id.as_str()).collect();
    let live: Vec<&Task> = input
        .tasks
        .iter()
        .filter(|t| t.live() && !stopping.contains(&t.id.as_str()))
        .collect();
    plan.stops = failing.clone();
    let mut retire: Vec<(&Task, String)> = Vec::new();

    if !input.active {
        for t in &live {
            retire.push((t, "Service is being deleted".into()));
        }
        plan.inactive = live.is_empty() && input.tasks.iter().all(|t| t.stopped);
    } else {
        let draining: std::collections::HashSet<&str> = input
            .instances
            .iter()
            .filter(|i| !i.active)
            .map(|i| i.id.as_str())
            .collect();
        let on_draining = |t: &Task| draining.contains(t.instance_id.as_str());
        for t in live
            .iter()
            .copied()
            .filter(|t| !input.task_sets.iter().any(|s| s.id == t.deployment_id))
        {
            retire.push((t, "Task set deleted".into()));
        }
        for set in input.task_sets {
            let mine: Vec<&Task> = live
                .iter()
                .copied()
                .filter(|t| t.deployment_id == set.id)
                .collect();
            if set.draining {
                for t in &mine {
                    retire.push((t, format!("Task set {} is being deleted", set.id)));
                }
                let left = input
                    .tasks
                    .iter()
                    .any(|t| t.deployment_id == set.id && !t.stopped);
                if !left {
                    plan.gone.push(set.id.clone());
                }
                continue;
            }
            let (keep, moving): (Vec<&Task>, Vec<&Task>) =
                mine.iter().copied().partition(|t| !on_draining(t));
            let target = set.computed_desired as usize;
            // Scale-in: the extra unprotected tasks, not-yet-running and newest first.
            if keep.len() > target {
                let mut extra: Vec<&Task> = keep.iter().copied().filter(|t| !t.protected).collect();
                extra.sort_by(|a, b| {
                    a.running.cmp(&b.running).then(
                        b.started_at
                            .partial_cmp(&a.started_at)
                            .unwrap_or(std::cmp::Ordering::Equal),
                    )
                });
                extra.truncate(keep.len() - target);
                for t in extra {
                    retire.push((
                        t,
                        format!("Scaling activity initiated by (task set {}).", set.id),
                    ));
                }
            }
            // Tasks on draining instances go once enough of the set runs healthily elsewhere.
            let healthy_elsewhere = keep
                .iter()
                .filter(|t| crate::healthy(t, input.health_check_grace_seconds, now))
                .count();
            if healthy_elsewhere >= target {
                for t in moving {
                    retire.push((t, "Container instance is draining".into()));
                }
            }
            let want = target.saturating_sub(keep.len()) as u32;
            if want > 0 && now >= held_until(&set.id, input.tasks, now) {
                plan.starts.push(Start {
                    deployment_id: set.id.clone(),
                    task_definition: set.task_definition.clone(),
                    count: want,
                    instance_id: None,
                });
            }
        }
    }
    if !retire.is_empty() {
        let tasks: Vec<&Task> = retire.iter().map(|(t, _)| *t).collect();
        plan.events.push(format!(
            "(service {name}) has stopped {} running tasks: {}.",
            tasks.len(),
            crate::ids(&tasks)
        ));
    }
    for (t, why) in retire {
        plan.stops.push(Stop {
            task_id: t.id.clone(),
            reason: StopReason::Scheduler(why),
        });
    }
    plan
}

/// A task set is in STEADY_STATE when as many of its tasks run as it should have and none is
/// pending (its `stabilityStatus`; STABILIZING otherwise).
pub fn steady(computed_desired: u32, running: u32, pending: u32) -> bool {
    running == computed_desired && pending == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Health;
    use proptest::prelude::*;

    fn task(id: &str, set: &str, running: bool) -> Task {
        Task {
            id: id.into(),
            deployment_id: set.into(),
            instance_id: "i1".into(),
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

    fn inst(id: &str, active: bool) -> Instance {
        Instance {
            id: id.into(),
            active,
            connected: true,
            daemon_eligible: true,
            lost: false,
        }
    }

    fn set(id: &str, n: u32) -> TaskSet {
        TaskSet {
            id: id.into(),
            task_definition: format!("td-{id}"),
            computed_desired: n,
            draining: false,
        }
    }

    fn run(sets: &[TaskSet], tasks: &[Task], active: bool) -> Plan {
        reconcile(&Input {
            service_name: "web",
            active,
            task_sets: sets,
            tasks,
            instances: &[inst("i1", true), inst("i2", false)],
            now: 1000.0,
            health_check_grace_seconds: 0.0,
        })
    }

    #[test]
    fn computed_desired_rounds_up_and_stays_within_desired() {
        assert_eq!(computed_desired(3, 50.0), 2);
        assert_eq!(computed_desired(3, 100.0), 3);
        assert_eq!(computed_desired(3, 0.0), 0);
        assert_eq!(computed_desired(10, 10.0), 1);
        assert_eq!(computed_desired(10, 10.000001), 2);
        assert_eq!(computed_desired(7, 33.3), 3);
        assert_eq!(computed_desired(5, 250.0), 5);
        assert_eq!(computed_desired(5, f64::NAN), 0);
    }

    #[test]
    fn each_set_is_kept_at_its_count() {
        let sets = [set("a", 2), set("b", 1)];
        let p = run(
            &sets,
            &[
                task("t1", "a", true),
                task("t2", "b", true),
                task("t3", "b", false),
            ],
            true,
        );
        assert_eq!(p.starts.len(), 1);
        assert_eq!(
            (p.starts[0].deployment_id.as_str(), p.starts[0].count),
            ("a", 1)
        );
        assert_eq!(p.starts[0].task_definition, "td-a");
        // b has one too many: the one not yet running goes.
        assert_eq!(p.stops.len(), 1);
        assert_eq!(p.stops[0].task_id, "t3");
    }

    #[test]
    fn a_deleted_set_drains_then_is_gone() {
        let mut sets = [set("a", 1)];
        sets[0].draining = true;
        let p = run(&sets, &[task("t1", "a", true)], true);
        assert_eq!(p.stops.len(), 1);
        assert!(p.gone.is_empty());
        let stopped = Task {
            stopped: true,
            desired_running: false,
            ..task("t1", "a", false)
        };
        let p = run(&sets, &[stopped], true);
        assert_eq!(p.gone, ["a"]);
        assert!(p.starts.is_empty());
    }

    #[test]
    fn tasks_of_no_set_are_stopped_and_a_deleted_service_goes_inactive() {
        let p = run(&[set("a", 0)], &[task("t1", "zzz", true)], true);
        assert_eq!(p.stops.len(), 1);
        let p = run(&[set("a", 2)], &[], false);
        assert!(p.inactive && p.starts.is_empty());
    }

    #[test]
    fn repeated_failures_hold_launches() {
        let failed = |id: &str, at: f64| Task {
            failed: true,
            stopped: true,
            desired_running: false,
            stopped_at: Some(at),
            ..task(id, "a", false)
        };
        let p = run(
            &[set("a", 1)],
            &[failed("f1", 990.0), failed("f2", 999.0)],
            true,
        );
        assert!(p.starts.is_empty(), "held after two failures");
        let p = run(&[set("a", 1)], &[failed("f1", 990.0)], true);
        assert_eq!(p.starts.len(), 1, "one failure is replaced at once");
    }

    #[test]
    fn tasks_on_draining_instances_move_once_replaced() {
        let moving = Task {
            instance_id: "i2".into(),
            ..task("t1", "a", true)
        };
        let p = run(&[set("a", 1)], std::slice::from_ref(&moving), true);
        assert_eq!(p.starts.len(), 1);
        assert!(p.stops.is_empty(), "kept until its replacement runs");
        let p = run(&[set("a", 1)], &[moving, task("t2", "a", true)], true);
        assert_eq!(p.stops.len(), 1);
        assert_eq!(p.stops[0].task_id, "t1");
    }

    proptest! {
        /// Whatever the tasks: a set never gets more starts than it lacks, a draining set and a
        /// deleted service get none, and nothing is stopped twice.
        #[test]
        fn starts_fill_the_gap_and_no_more(
            counts in prop::collection::vec(0u32..5, 1..4),
            draining in prop::collection::vec(any::<bool>(), 4),
            tasks in prop::collection::vec((0usize..4, any::<bool>(), any::<bool>(), any::<bool>()), 0..12),
            active in any::<bool>(),
        ) {
            let sets: Vec<TaskSet> = counts.iter().enumerate().map(|(i, n)| TaskSet {
                draining: draining[i],
                ..set(&format!("s{i}"), *n)
            }).collect();
            let tasks: Vec<Task> = tasks.iter().enumerate().map(|(n, (s, running, stopped, on_draining))| Task {
                stopped: *stopped,
                instance_id: if *on_draining { "i2".into() } else { "i1".into() },
                ..task(&format!("t{n}"), &format!("s{s}"), *running)
            }).collect();
            let p = run(&sets, &tasks, active);
            let mut stopped: Vec<&str> = p.stops.iter().map(|s| s.task_id.as_str()).collect();
            stopped.sort();
            let n = stopped.len();
            stopped.dedup();
            prop_assert_eq!(n, stopped.len(), "a task stopped twice");
            for st in &p.starts {
                let s = sets.iter().find(|s| s.id == st.deployment_id).unwrap();
                prop_assert!(active && !s.draining);
                let kept = tasks.iter().filter(|t| t.live() && t.deployment_id == s.id && t.instance_id == "i1").count() as u32;
                prop_assert_eq!(st.count, s.computed_desired.saturating_sub(kept));
            }
        }
    }
}
