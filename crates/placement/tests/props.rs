//! Property tests.

mod common;

use berth_placement::*;
use common::*;
use proptest::prelude::*;
use proptest::strategy::Strategy as PropStrategy;

#[derive(Debug, Clone)]
struct Gen {
    instances: Vec<ContainerInstance>,
}

fn arb_instance(i: usize) -> impl PropStrategy<Value = ContainerInstance> {
    (
        0usize..3,
        0i64..2048,
        0i64..2048,
        0i64..3,
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.1),
        0usize..3,
        prop::collection::vec(prop::sample::select(vec![80u16, 443, 8080]), 0..2),
    )
        .prop_map(
            move |(az, cpu, mem, gpu, draining, disconnected, tasks, ports)| {
                let mut c = inst(i, ["a", "b", "c"][az], cpu, mem);
                c.remaining.gpu = gpu;
                c.remaining.tcp_ports = ports;
                if draining {
                    c.status = InstanceStatus::Draining;
                }
                c.agent_connected = !disconnected;
                with_tasks(c, "family:web", tasks)
            },
        )
}

fn arb_cluster() -> impl PropStrategy<Value = Gen> {
    (1usize..12).prop_flat_map(|n| {
        (0..n)
            .map(arb_instance)
            .collect::<Vec<_>>()
            .prop_map(|instances| Gen { instances })
    })
}

fn arb_strategies() -> impl PropStrategy<Value = Vec<PlacementStrategy>> {
    prop::collection::vec(
        prop::sample::select(vec![
            PlacementStrategy::random(),
            PlacementStrategy::spread("instanceId"),
            PlacementStrategy::spread("attribute:ecs.availability-zone"),
            PlacementStrategy::binpack("cpu"),
            PlacementStrategy::binpack("memory"),
        ]),
        0..4,
    )
}

fn arb_request() -> impl PropStrategy<Value = PlacementRequest> {
    (
        0i64..600,
        0i64..600,
        0i64..2,
        prop::bool::ANY,
        prop::bool::ANY,
        arb_strategies(),
        1u32..15,
        any::<u64>(),
    )
        .prop_map(|(cpu, mem, gpu, port, distinct, strategies, count, seed)| {
            let mut r = req(cpu, mem, count);
            r.task.gpu = gpu;
            if port {
                r.task.tcp_ports = vec![8080];
            }
            if distinct {
                r.constraints.push(PlacementConstraint::distinct_instance());
            }
            r.strategies = strategies;
            r.seed = seed;
            r
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn placements_respect_every_filter(g in arb_cluster(), r in arb_request()) {
        let o = run(g.instances.clone(), &r);
        prop_assert_eq!(o.placements.len() + o.failures.len(), r.count as usize);
        let mut cpu: Vec<i64> = g.instances.iter().map(|i| i.remaining.cpu).collect();
        let mut mem: Vec<i64> = g.instances.iter().map(|i| i.remaining.memory).collect();
        let mut gpu: Vec<i64> = g.instances.iter().map(|i| i.remaining.gpu).collect();
        let mut per: Vec<u32> = vec![0; g.instances.len()];
        for p in &o.placements {
            let i = p.instance_index;
            let c = &g.instances[i];
            prop_assert_eq!(c.status, InstanceStatus::Active);
            prop_assert!(c.agent_connected);
            cpu[i] -= r.task.cpu;
            mem[i] -= r.task.memory;
            gpu[i] -= r.task.gpu;
            prop_assert!(cpu[i] >= 0 && mem[i] >= 0 && gpu[i] >= 0);
            per[i] += 1;
            if !r.task.tcp_ports.is_empty() {
                prop_assert!(per[i] == 1 && !c.remaining.tcp_ports.contains(&8080));
            }
            if !r.constraints.is_empty() {
                prop_assert!(per[i] == 1 && c.tasks.is_empty(), "distinctInstance co-located");
            }
        }
    }

    #[test]
    fn an_updated_index_places_like_a_fresh_one(
        before in arb_cluster(),
        after_seed in prop::collection::vec(arb_instance(0), 12),
        groups in prop::collection::vec(prop::sample::select(vec!["family:web", "service:api", "group:x"]), 12),
        r in arb_request(),
        expr in prop::sample::select(vec![
            "task:group == service:api", "not(task:group exists)", "runningTasksCount < 2",
            "agentConnected == true", "task:group =~ family:*",
        ]),
    ) {
        // Same instances (static state) as `before`, with new dynamic state: status,
        // connectivity, remaining resources and ports, and tasks in other groups.
        let after: Vec<ContainerInstance> = before.instances.iter().enumerate().map(|(i, b)| {
            let d = &after_seed[i];
            let mut a = b.clone();
            a.status = d.status;
            a.agent_connected = d.agent_connected;
            a.remaining = d.remaining.clone();
            a.running_tasks_count = 0;
            a.tasks.clear();
            with_tasks(a, groups[i], d.tasks.len())
        }).collect();
        let snap_before = ClusterSnapshot::new(before.instances.clone());
        let mut updated = ClusterIndex::build(&snap_before);
        for (i, a) in after.iter().enumerate() {
            prop_assert!(updated.same_static(i, a));
            updated.update_instance(i, a);
        }
        let snap_after = ClusterSnapshot::new(after.clone());
        let fresh = ClusterIndex::build(&snap_after);
        let mut r = r;
        r.constraints.push(PlacementConstraint::member_of(expr));
        prop_assert_eq!(place(&updated, &r), place(&fresh, &r));
        let e = Expression::parse(expr).unwrap();
        prop_assert_eq!(updated.filter(&e), fresh.filter(&e));
    }

    #[test]
    fn same_seed_same_result(g in arb_cluster(), r in arb_request()) {
        prop_assert_eq!(run(g.instances.clone(), &r), run(g.instances, &r));
    }

    #[test]
    fn binpack_never_opens_a_new_instance_while_a_used_one_fits(
        n in 2usize..10, mem_req in 1i64..500, count in 1u32..30, seed in any::<u64>()
    ) {
        // Homogeneous instances, no prior tasks.
        let instances: Vec<ContainerInstance> = (0..n).map(|i| inst(i, "a", 100_000, 2000)).collect();
        let mut r = req(1, mem_req, count);
        r.strategies = vec![PlacementStrategy::binpack("memory")];
        r.seed = seed;
        let o = run(instances, &r);
        let mut used = vec![0i64; n];
        for p in &o.placements {
            let i = p.instance_index;
            if used[i] == 0 {
                // Opening a new instance: no used instance may still fit.
                for (j, &u) in used.iter().enumerate() {
                    prop_assert!(!(u > 0 && 2000 - u >= mem_req), "opened {} while {} fits", i, j);
                }
            }
            used[i] += mem_req;
        }
    }

    #[test]
    fn spread_keeps_the_field_balanced(
        azs in prop::collection::vec(0usize..3, 1..12), count in 1u32..40, seed in any::<u64>(), by_az in any::<bool>()
    ) {
        let instances: Vec<ContainerInstance> =
            azs.iter().enumerate().map(|(i, &z)| inst(i, ["a", "b", "c"][z], 100_000, 100_000)).collect();
        let mut r = req(1, 1, count);
        r.seed = seed;
        r.strategies = if by_az { service_default() } else { vec![PlacementStrategy::spread("instanceId")] };
        let o = run(instances.clone(), &r);
        prop_assert_eq!(o.placements.len(), count as usize);
        let mut per_inst = vec![0i64; instances.len()];
        let mut per_az = [0i64; 3];
        for p in &o.placements {
            per_inst[p.instance_index] += 1;
            per_az[azs[p.instance_index]] += 1;
        }
        if by_az {
            let present: Vec<i64> = (0..3).filter(|z| azs.contains(z)).map(|z| per_az[z]).collect();
            prop_assert!(present.iter().max().unwrap() - present.iter().min().unwrap() <= 1, "{:?}", per_az);
            for z in 0..3 {
                let inz: Vec<i64> = (0..azs.len()).filter(|&i| azs[i] == z).map(|i| per_inst[i]).collect();
                if !inz.is_empty() {
                    prop_assert!(inz.iter().max().unwrap() - inz.iter().min().unwrap() <= 1);
                }
            }
        } else {
            prop_assert!(per_inst.iter().max().unwrap() - per_inst.iter().min().unwrap() <= 1);
        }
    }

    #[test]
    fn distinct_instance_places_at_most_one_per_instance(n in 1usize..10, count in 1u32..20) {
        let instances: Vec<ContainerInstance> = (0..n).map(|i| inst(i, "a", 1024, 1024)).collect();
        let mut r = req(1, 1, count);
        r.constraints = vec![PlacementConstraint::distinct_instance()];
        let o = run(instances, &r);
        let expect = (count as usize).min(n);
        prop_assert_eq!(o.placements.len(), expect);
        prop_assert_eq!(o.failures.len(), count as usize - expect);
        let mut ids: Vec<usize> = placed_ids(&o);
        ids.sort();
        ids.dedup();
        prop_assert_eq!(ids.len(), expect);
    }

    #[test]
    fn parser_never_panics(s in ".{0,200}") {
        let _ = Expression::parse(&s);
    }

    #[test]
    fn parser_never_panics_on_near_valid(
        parts in prop::collection::vec(prop::sample::select(vec![
            "attribute:a", "task:group", "runningTasksCount", "agentVersion", "registeredAt", "==", "!=", "in", "!", "not",
            "(", ")", "[", "]", ",", "and", "or", "x", "1", "2018-01-01", "=~", "'a*'", "exists", "&&", "||", "!exists",
        ]), 0..20)
    ) {
        let _ = Expression::parse(&parts.join(" "));
    }

    #[test]
    fn compiled_matches_interpreted(
        g in arb_cluster(),
        expr in prop::sample::select(vec![
            "attribute:ecs.availability-zone == a",
            "attribute:ecs.availability-zone in [a, c] and not task:group exists",
            "task:group == family:web or runningTasksCount > 1",
            "task:group != family:web",
            "agentConnected == false or attribute:ecs.instance-type !~ t2.*",
            "agentVersion >= 1.14.5 and registeredAt < 2018-01-01",
            "ec2InstanceId =~ i-0.*1",
            "attribute:nope !exists and attribute:ecs.availability-zone > a",
        ])
    ) {
        let snap = ClusterSnapshot::new(g.instances);
        let e = Expression::parse(expr).unwrap();
        let idx = ClusterIndex::build(&snap);
        let direct: Vec<usize> = (0..snap.instances.len()).filter(|&i| e.matches(&InstanceView::new(&snap.instances[i]))).collect();
        prop_assert_eq!(idx.filter(&e), direct);
    }
}

/// The state after a placement, as a snapshot: what the engine charges for one task of `r`.
fn charge(c: &mut ContainerInstance, r: &PlacementRequest) {
    c.remaining.cpu -= r.task.cpu;
    c.remaining.memory -= r.task.memory;
    c.remaining.gpu -= r.task.gpu;
    c.remaining.tcp_ports.extend(&r.task.tcp_ports);
    c.remaining.udp_ports.extend(&r.task.udp_ports);
    c.tasks.push(TaskInfo::new(r.task.group.clone()));
    c.running_tasks_count += 1;
}

fn arb_big_cluster() -> impl PropStrategy<Value = Gen> {
    (1usize..48).prop_flat_map(|n| {
        (0..n)
            .map(arb_instance)
            .collect::<Vec<_>>()
            .prop_map(|instances| Gen { instances })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The ordered walk (`place`, which visits few instances) chooses, at every step, an
    /// instance whose key over the strategy chain is the best the exhaustive walk finds on the
    /// same state; and it fails exactly when nothing fits, with the exhaustive walk's reason.
    #[test]
    fn the_ordered_walk_chooses_a_best_instance_at_every_step(
        g in arb_big_cluster(),
        r in arb_request(),
        expr in prop::sample::select(vec![
            "", "attribute:ecs.availability-zone != c", "runningTasksCount < 3",
            "not(task:group == family:web)", "task:group == family:web or agentConnected == true",
        ]),
    ) {
        let mut r = r;
        if !expr.is_empty() {
            r.constraints.push(PlacementConstraint::member_of(expr));
        }
        let o = run(g.instances.clone(), &r);
        prop_assert_eq!(o.placements.len() + o.failures.len(), r.count as usize);
        let k = r.strategies.iter().position(|s| s.strategy_type == "random")
            .unwrap_or(r.strategies.len());
        let mut state = g.instances.clone();
        let mut one = r.clone();
        one.count = 1;
        for (step, p) in o.placements.iter().enumerate() {
            let snap = ClusterSnapshot::new(state.clone());
            let e = place_exhaustive(&ClusterIndex::build(&snap), &one).expect("valid");
            prop_assert_eq!(e.placements.len(), 1, "step {}: exhaustive found nothing", step);
            prop_assert_eq!(
                &e.metric.steps[0].scores()[..k],
                &o.metric.steps[step].scores()[..k],
                "step {}: ordered chose {} over exhaustive's {}", step, p.instance_index,
                e.placements[0].instance_index
            );
            // The ordered choice passes every filter on that state.
            let x = explain_instance(&ClusterIndex::build(&snap), &one, &p.instance_arn).unwrap();
            prop_assert!(x.fits, "step {}: {}", step, x.render());
            charge(&mut state[p.instance_index], &r);
        }
        if let Some(f) = o.failures.first() {
            let snap = ClusterSnapshot::new(state.clone());
            let e = place_exhaustive(&ClusterIndex::build(&snap), &one).expect("valid");
            prop_assert!(e.placements.is_empty());
            prop_assert_eq!(&e.failures[0], f);
        }
    }

    /// An index kept current with `update_instance` (including the cached spread counts)
    /// places like a fresh one after every placement of a call is charged to it.
    #[test]
    fn spread_counts_follow_updates(
        g in arb_big_cluster(),
        seed in any::<u64>(),
        count in 1u32..20,
    ) {
        let mut r = req(1, 1, count);
        r.strategies = service_default();
        r.seed = seed;
        let snap = ClusterSnapshot::new(g.instances.clone());
        let mut idx = ClusterIndex::build(&snap);
        // Fill the cache, then move the cluster on by one call's placements.
        let first = place(&idx, &r).unwrap();
        let mut state = g.instances.clone();
        for p in &first.placements {
            charge(&mut state[p.instance_index], &r);
        }
        for (i, c) in state.iter().enumerate() {
            idx.update_instance(i, c);
        }
        let fresh_snap = ClusterSnapshot::new(state.clone());
        let fresh = ClusterIndex::build(&fresh_snap);
        prop_assert_eq!(place(&idx, &r).unwrap(), place(&fresh, &r).unwrap());
    }
}
