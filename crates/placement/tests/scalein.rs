//! Scale-in selection.

mod common;

use berth_placement::*;
use common::*;

fn task(n: usize, instance: usize) -> ServiceTask {
    ServiceTask {
        task_arn: format!("t{n:03}"),
        container_instance: arn(instance),
        protected: false,
        cpu: 100,
        memory: 100,
    }
}

#[test]
fn spread_default_stops_from_fullest_zone_then_instance() {
    let snap = ClusterSnapshot::new(vec![
        inst(0, "us-east-1a", 1024, 1024),
        inst(1, "us-east-1a", 1024, 1024),
        inst(2, "us-east-1b", 1024, 1024),
    ]);
    let idx = ClusterIndex::build(&snap);
    // zone a: 3 tasks on 0, 1 on 1; zone b: 2 on 2
    let tasks = vec![
        task(0, 0),
        task(1, 0),
        task(2, 0),
        task(3, 1),
        task(4, 2),
        task(5, 2),
    ];
    let stop = select_tasks_to_stop(&idx, &tasks, 3, &[], 1);
    let inst_of: Vec<&str> = stop
        .iter()
        .map(|&t| tasks[t].container_instance.as_str())
        .collect();
    // a(4) -> from instance 0; then a(3) vs b(2): a again, instance 0 (2) vs 1 (1): 0; then a(2)=b(2): tie
    assert_eq!(&inst_of[..2], &[arn(0).as_str(), arn(0).as_str()]);
    let stop_all = select_tasks_to_stop(&idx, &tasks, 10, &service_default_strategies(), 1);
    assert_eq!(stop_all.len(), 6);
    assert_eq!(stop, select_tasks_to_stop(&idx, &tasks, 3, &[], 1));
}

fn service_default_strategies() -> Vec<Strategy> {
    validate_strategies(&service_default()).unwrap()
}

#[test]
fn protected_tasks_are_never_selected() {
    let snap = ClusterSnapshot::new(vec![inst(0, "a", 1024, 1024), inst(1, "b", 1024, 1024)]);
    let idx = ClusterIndex::build(&snap);
    let mut tasks = vec![task(0, 0), task(1, 0), task(2, 0), task(3, 1)];
    tasks[0].protected = true;
    tasks[1].protected = true;
    let stop = select_tasks_to_stop(&idx, &tasks, 4, &[], 0);
    assert_eq!(stop.len(), 2);
    assert!(stop.iter().all(|&t| !tasks[t].protected));
    assert_eq!(stop[0], 2);
}

#[test]
fn binpack_stops_where_most_remains_after() {
    let snap = ClusterSnapshot::new(vec![inst(0, "a", 1024, 100), inst(1, "a", 1024, 900)]);
    let idx = ClusterIndex::build(&snap);
    let tasks = vec![task(0, 0), task(1, 1), task(2, 1)];
    let strategies = validate_strategies(&[PlacementStrategy::binpack("memory")]).unwrap();
    let stop = select_tasks_to_stop(&idx, &tasks, 3, &strategies, 0);
    assert_eq!(tasks[stop[0]].container_instance, arn(1));
    assert_eq!(tasks[stop[1]].container_instance, arn(1));
    assert_eq!(stop[2], 0);
}

#[test]
fn random_and_unknown_instances() {
    let snap = ClusterSnapshot::new(vec![inst(0, "a", 1024, 1024)]);
    let idx = ClusterIndex::build(&snap);
    let mut tasks: Vec<ServiceTask> = (0..20).map(|n| task(n, 0)).collect();
    tasks.push(ServiceTask {
        container_instance: "gone".into(),
        ..task(99, 0)
    });
    let strategies = validate_strategies(&[PlacementStrategy::random()]).unwrap();
    let a = select_tasks_to_stop(&idx, &tasks, 5, &strategies, 3);
    assert_eq!(a, select_tasks_to_stop(&idx, &tasks, 5, &strategies, 3));
    assert_eq!(a.len(), 5);
    assert!(select_tasks_to_stop(&idx, &[], 5, &[], 0).is_empty());
}
