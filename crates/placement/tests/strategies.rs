//! Strategies: binpack, spread, random, chains, defaults, determinism.

mod common;

use berth_placement::*;
use common::*;

#[test]
fn binpack_memory_picks_least_remaining_that_fits() {
    let mut r = req(10, 300, 1);
    r.strategies = vec![PlacementStrategy::binpack("memory")];
    let o = run(
        vec![
            inst(0, "a", 1024, 1000),
            inst(1, "a", 1024, 250),
            inst(2, "a", 1024, 400),
            inst(3, "a", 1024, 800),
        ],
        &r,
    );
    assert_eq!(placed_ids(&o), vec![2]);
    r.count = 4;
    let o = run(
        vec![
            inst(0, "a", 1024, 1000),
            inst(1, "a", 1024, 250),
            inst(2, "a", 1024, 400),
            inst(3, "a", 1024, 800),
        ],
        &r,
    );
    // 400 -> 2 (100 left); 800 -> 3 (500 left); 500 -> 3 (200 left); 1000 -> 0
    assert_eq!(placed_ids(&o), vec![2, 3, 3, 0]);
}

#[test]
fn binpack_cpu_and_case_insensitive_field() {
    let mut r = req(100, 10, 1);
    r.strategies = vec![PlacementStrategy::binpack("CPU")];
    let o = run(
        vec![
            inst(0, "a", 1024, 1000),
            inst(1, "a", 150, 1000),
            inst(2, "a", 99, 1000),
        ],
        &r,
    );
    assert_eq!(placed_ids(&o), vec![1]);
}

#[test]
fn spread_instance_counts_the_group() {
    let mut r = req(1, 1, 3);
    r.strategies = vec![PlacementStrategy::spread("host")];
    let instances = vec![
        with_tasks(inst(0, "a", 1024, 1024), "family:web", 2),
        with_tasks(inst(1, "a", 1024, 1024), "family:db", 5),
        with_tasks(inst(2, "a", 1024, 1024), "family:web", 1),
    ];
    let o = run(instances, &r);
    let mut c = [2, 0, 1];
    for i in placed_ids(&o) {
        c[i] += 1;
    }
    assert_eq!(c, [2, 2, 2]);
}

#[test]
fn spread_az_then_instance_is_balanced() {
    let mut r = req(1, 1, 12);
    r.task.group = "service:web".into();
    r.strategies = service_default();
    let instances = vec![
        inst(0, "us-east-1a", 1024, 1024),
        inst(1, "us-east-1a", 1024, 1024),
        inst(2, "us-east-1b", 1024, 1024),
        inst(3, "us-east-1c", 1024, 1024),
        inst(4, "us-east-1c", 1024, 1024),
        inst(5, "us-east-1c", 1024, 1024),
    ];
    let o = run(instances, &r);
    let mut per_inst = [0i32; 6];
    for i in placed_ids(&o) {
        per_inst[i] += 1;
    }
    assert_eq!(per_inst[0] + per_inst[1], 4);
    assert_eq!(per_inst[2], 4);
    assert_eq!(per_inst[3] + per_inst[4] + per_inst[5], 4);
    assert!((per_inst[0] - per_inst[1]).abs() <= 1);
    assert!(per_inst[3..].iter().all(|&c| (1..=2).contains(&c)));
    assert_eq!(
        o.metric.strategies,
        vec![
            "spread(attribute:ecs.availability-zone)",
            "spread(instanceId)"
        ]
    );
    assert_eq!(o.metric.steps[0].scores().len(), 3);
}

#[test]
fn spread_az_then_binpack_memory() {
    let mut r = req(1, 100, 2);
    r.strategies = vec![
        PlacementStrategy::spread("attribute:ecs.availability-zone"),
        PlacementStrategy::binpack("memory"),
    ];
    let instances = vec![
        with_tasks(inst(0, "a", 1024, 500), "family:web", 1),
        inst(1, "a", 1024, 250),
        inst(2, "b", 1024, 900),
        inst(3, "b", 1024, 300),
    ];
    let o = run(instances, &r);
    assert_eq!(placed_ids(&o), vec![3, 3]);
}

#[test]
fn random_is_seeded_and_default() {
    let instances: Vec<ContainerInstance> = (0..50).map(|i| inst(i, "a", 1024, 1024)).collect();
    let mut r = req(1, 1, 5);
    r.seed = 7;
    let a = run(instances.clone(), &r);
    let b = run(instances.clone(), &r);
    assert_eq!(a, b);
    assert_eq!(a.metric.strategies, vec!["random"]);
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..20 {
        r.seed = seed;
        r.count = 1;
        seen.insert(placed_ids(&run(instances.clone(), &r))[0]);
    }
    assert!(seen.len() > 5, "random should vary with the seed: {seen:?}");
    assert_eq!(run_task_default(), vec![PlacementStrategy::random()]);
}

#[test]
fn ties_break_by_seed_then_deterministically() {
    let instances: Vec<ContainerInstance> = (0..10).map(|i| inst(i, "a", 1024, 1024)).collect();
    let mut r = req(1, 1, 1);
    r.strategies = vec![PlacementStrategy::binpack("memory")];
    let mut picks = std::collections::BTreeSet::new();
    for seed in 0..30 {
        r.seed = seed;
        let o = run(instances.clone(), &r);
        assert_eq!(o, run(instances.clone(), &r));
        picks.insert(placed_ids(&o)[0]);
    }
    assert!(picks.len() > 1);
}

#[test]
fn distinct_instance_ten_on_five() {
    let mut r = req(1, 1, 10);
    r.constraints = vec![PlacementConstraint::distinct_instance()];
    let o = run((0..5).map(|i| inst(i, "a", 1024, 1024)).collect(), &r);
    let mut ids = placed_ids(&o);
    ids.sort();
    assert_eq!(ids, vec![0, 1, 2, 3, 4]);
    assert_eq!(o.failures.len(), 5);
    assert!(o
        .failures
        .iter()
        .all(|f| f.reason == "DistinctInstance placement constraint unsatisfied."));
    assert_eq!(o.metric.unplaced, 5);
}

#[test]
fn spread_on_missing_attribute_still_places() {
    let mut r = req(1, 1, 3);
    r.strategies = vec![PlacementStrategy::spread("attribute:rack")];
    let o = run(vec![inst(0, "a", 1024, 1024), inst(1, "a", 1024, 1024)], &r);
    assert_eq!(o.placements.len(), 3);
}

#[test]
fn random_is_uniform_among_the_instances_that_fit() {
    // Ten instances, only the first two have room: each of them should win about half of the
    // seeds (a walk from a random start would give the first one 9 in 10).
    let mut instances: Vec<ContainerInstance> = (0..10).map(|i| inst(i, "a", 1024, 10)).collect();
    instances[0].remaining.memory = 1024;
    instances[1].remaining.memory = 1024;
    let mut r = req(1, 512, 1);
    let mut wins = [0u32; 2];
    for seed in 0..400 {
        r.seed = seed;
        let o = run(instances.clone(), &r);
        wins[placed_ids(&o)[0]] += 1;
    }
    assert!(wins[0] > 140 && wins[1] > 140, "not uniform: {wins:?}");
}

#[test]
fn spread_breaks_ties_between_values_uniformly() {
    // One instance per zone and no tasks yet: each zone should come first about a third of the
    // time.
    let instances: Vec<ContainerInstance> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, az)| inst(i, az, 1024, 1024))
        .collect();
    let mut r = req(1, 1, 1);
    r.strategies = vec![PlacementStrategy::spread("attribute:ecs.availability-zone")];
    let mut wins = [0u32; 3];
    for seed in 0..600 {
        r.seed = seed;
        wins[placed_ids(&run(instances.clone(), &r))[0]] += 1;
    }
    assert!(wins.iter().all(|&w| w > 140), "not uniform: {wins:?}");
}
