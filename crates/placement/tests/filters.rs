//! One table per filter stage: what passes, what is rejected, and the reason ECS reports.
#![allow(clippy::type_complexity)]

mod common;

use berth_placement::*;
use common::*;

/// Places one task on a one-instance cluster; returns the failure reason (None when placed).
fn verdict(instance: ContainerInstance, r: &PlacementRequest) -> Option<String> {
    let o = run(vec![instance], r);
    assert_eq!(o.placements.len() + o.failures.len(), r.count as usize);
    o.failures.first().map(|f| f.reason.clone())
}

#[test]
fn status_and_agent() {
    let r = req(128, 128, 1);
    let mut draining = inst(0, "a", 1024, 1024);
    draining.status = InstanceStatus::Draining;
    let mut inactive = inst(0, "a", 1024, 1024);
    inactive.status = InstanceStatus::Inactive;
    let mut disconnected = inst(0, "a", 1024, 1024);
    disconnected.agent_connected = false;
    let table: Vec<(ContainerInstance, Option<&str>)> = vec![
        (inst(0, "a", 1024, 1024), None),
        (draining, Some("INACTIVE")),
        (inactive, Some("INACTIVE")),
        (disconnected, Some("AGENT")),
    ];
    for (i, want) in table {
        assert_eq!(verdict(i, &r).as_deref(), want);
    }
}

#[test]
fn resources() {
    let table: &[(i64, i64, i64, i64, i64, i64, Option<&str>)] = &[
        // task cpu, mem, gpu ; instance cpu, mem, gpu ; reason
        (512, 512, 0, 512, 512, 0, None),
        (513, 512, 0, 512, 512, 0, Some("RESOURCE:CPU")),
        (512, 513, 0, 512, 512, 0, Some("RESOURCE:MEMORY")),
        (512, 512, 1, 512, 512, 0, Some("RESOURCE:GPU")),
        (512, 512, 2, 512, 512, 2, None),
        (0, 0, 0, 0, 0, 0, None),
        (1, 1, 0, -5, 100, 0, Some("RESOURCE:CPU")),
        (513, 513, 1, 512, 512, 0, Some("RESOURCE:CPU")),
    ];
    for &(tc, tm, tg, ic, im, ig, want) in table {
        let mut r = req(tc, tm, 1);
        r.task.gpu = tg;
        let mut i = inst(0, "a", ic, im);
        i.remaining.gpu = ig;
        assert_eq!(
            verdict(i, &r).as_deref(),
            want,
            "{tc}/{tm}/{tg} on {ic}/{im}/{ig}"
        );
    }
}

#[test]
fn ports() {
    let table: &[(&[u16], &[u16], &[u16], &[u16], Option<&str>)] = &[
        // task tcp, task udp, used tcp, used udp
        (&[80], &[], &[22, 2375], &[], None),
        (&[80], &[], &[22, 80], &[], Some("RESOURCE:PORTS")),
        (&[], &[53], &[], &[53], Some("RESOURCE:PORTS_UDP")),
        (&[53], &[], &[], &[53], None),
        (&[], &[53], &[53], &[], None),
        (&[8080, 80], &[53], &[80], &[53], Some("RESOURCE:PORTS")),
    ];
    for &(tt, tu, ut, uu, want) in table {
        let mut r = req(1, 1, 1);
        r.task.tcp_ports = tt.to_vec();
        r.task.udp_ports = tu.to_vec();
        let mut i = inst(0, "a", 1024, 1024);
        i.remaining.tcp_ports = ut.to_vec();
        i.remaining.udp_ports = uu.to_vec();
        assert_eq!(verdict(i, &r).as_deref(), want, "{tt:?} {tu:?}");
    }
    // Two tasks with the same static port can't share an instance within one call.
    let mut r = req(1, 1, 2);
    r.task.tcp_ports = vec![80];
    let o = run(vec![inst(0, "a", 1024, 1024), inst(1, "a", 1024, 1024)], &r);
    assert_eq!(o.placements.len(), 2);
    assert_ne!(
        o.placements[0].instance_index,
        o.placements[1].instance_index
    );
    let o = run(vec![inst(0, "a", 1024, 1024)], &r);
    assert_eq!(o.placements.len(), 1);
    assert_eq!(o.failures[0].reason, "RESOURCE:PORTS");
}

#[test]
fn attributes_and_launch_type() {
    let mut with_attr = inst(0, "a", 1024, 1024);
    with_attr
        .attributes
        .push(Attribute::flag("ecs.capability.task-eni"));
    with_attr.attributes.push(Attribute::new(
        "com.amazonaws.ecs.capability.logging-driver.awslogs",
        "x",
    ));
    let table: Vec<(Vec<Attribute>, Option<&str>)> = vec![
        (vec![], None),
        (vec![Attribute::flag("ecs.capability.task-eni")], None),
        (
            vec![Attribute::flag("ecs.capability.missing")],
            Some("ATTRIBUTE"),
        ),
        (vec![Attribute::new("ecs.instance-type", "t2.small")], None),
        (
            vec![Attribute::new("ecs.instance-type", "t2.large")],
            Some("ATTRIBUTE"),
        ),
        (
            vec![Attribute::new("ecs.capability.task-eni", "v")],
            Some("ATTRIBUTE"),
        ),
        (
            vec![Attribute::flag(
                "com.amazonaws.ecs.capability.logging-driver.awslogs",
            )],
            None,
        ),
    ];
    for (attrs, want) in table {
        let mut r = req(1, 1, 1);
        r.task.required_attributes = attrs.clone();
        assert_eq!(verdict(with_attr.clone(), &r).as_deref(), want, "{attrs:?}");
    }
    let mut ext = inst(0, "a", 1024, 1024);
    ext.attributes.push(Attribute::flag(EXTERNAL_ATTRIBUTE));
    let mut r = req(1, 1, 1);
    assert_eq!(verdict(ext.clone(), &r).as_deref(), Some("ATTRIBUTE"));
    r.task.launch_type = LaunchType::External;
    assert_eq!(verdict(ext, &r).as_deref(), None);
    assert_eq!(
        verdict(inst(0, "a", 1024, 1024), &r).as_deref(),
        Some("ATTRIBUTE")
    );
}

#[test]
fn member_of_and_distinct_instance() {
    let mut r = req(1, 1, 1);
    r.constraints = vec![PlacementConstraint::member_of(
        "attribute:ecs.instance-type =~ t2.*",
    )];
    assert_eq!(verdict(inst(0, "a", 1024, 1024), &r), None);
    r.constraints = vec![PlacementConstraint::member_of(
        "attribute:ecs.instance-type =~ g2.*",
    )];
    assert_eq!(
        verdict(inst(0, "a", 1024, 1024), &r).as_deref(),
        Some("MemberOf placement constraint unsatisfied.")
    );
    // Task-definition constraints apply too.
    r.constraints.clear();
    r.task.task_definition_constraints = vec![PlacementConstraint::member_of(
        "attribute:ecs.availability-zone == b",
    )];
    assert_eq!(
        verdict(inst(0, "a", 1024, 1024), &r).as_deref(),
        Some("MemberOf placement constraint unsatisfied.")
    );
    r.task.task_definition_constraints.clear();
    r.constraints = vec![PlacementConstraint::distinct_instance()];
    assert_eq!(verdict(inst(0, "a", 1024, 1024), &r), None);
    let busy = with_tasks(inst(0, "a", 1024, 1024), "family:web", 1);
    assert_eq!(
        verdict(busy.clone(), &r).as_deref(),
        Some("DistinctInstance placement constraint unsatisfied.")
    );
    // Other groups don't count.
    let other = with_tasks(inst(0, "a", 1024, 1024), "family:db", 3);
    assert_eq!(verdict(other, &r), None);
    // Affinity: only where a database task runs.
    r.constraints = vec![PlacementConstraint::member_of("task:group == family:db")];
    let o = run(
        vec![
            inst(0, "a", 1024, 1024),
            with_tasks(inst(1, "a", 1024, 1024), "family:db", 1),
        ],
        &r,
    );
    assert_eq!(placed_ids(&o), vec![1]);
    // Affinity to its own group: the first task makes the instance eligible for the next.
    let mut r2 = req(1, 1, 3);
    r2.constraints = vec![PlacementConstraint::member_of(
        "task:group == family:web or runningTasksCount == 0",
    )];
    r2.strategies = vec![PlacementStrategy::spread("instanceId")];
    let o = run(
        vec![
            inst(0, "a", 1024, 1024),
            with_tasks(inst(1, "a", 1024, 1024), "family:db", 1),
        ],
        &r2,
    );
    assert_eq!(placed_ids(&o), vec![0, 0, 0]);
}

#[test]
fn count_accounts_for_earlier_tasks_of_the_call() {
    let r = req(400, 400, 3);
    let o = run(vec![inst(0, "a", 1000, 1000)], &r);
    assert_eq!(placed_ids(&o), vec![0, 0]);
    assert_eq!(o.failures.len(), 1);
    assert_eq!(o.failures[0].reason, "RESOURCE:CPU");
    assert_eq!(o.failures[0].arn.as_deref(), Some(arn(0).as_str()));
}

#[test]
fn closest_match_is_the_instance_that_got_furthest() {
    let mut disconnected = inst(2, "a", 4096, 4096);
    disconnected.agent_connected = false;
    let small = inst(1, "a", 4096, 100);
    let tiny = inst(0, "a", 10, 10);
    let r = req(512, 512, 2);
    let o = run(vec![tiny.clone(), small.clone(), disconnected], &r);
    assert_eq!(o.failures.len(), 2);
    assert!(o
        .failures
        .iter()
        .all(|f| f.reason == "AGENT" && f.arn.as_deref() == Some(arn(2).as_str())));
    let msg = o.service_event_message().unwrap();
    assert_eq!(
        msg,
        "was unable to place a task because no container instance met all of its requirements. The closest matching \
         container-instance ci0002 encountered error \"AGENT\". For more information, see the Troubleshooting section \
         of the Amazon ECS Developer Guide."
    );
    let o = run(vec![tiny, small], &r);
    assert_eq!(o.failures[0].reason, "RESOURCE:MEMORY");
    assert!(o
        .service_event_message()
        .unwrap()
        .contains("container-instance ci0001 has insufficient memory available."));
    assert_eq!(o.metric.exhausted_dimension(), Some(FilterStage::Memory));
    assert_eq!(o.metric.initial_rejections.get(FilterStage::Cpu), 1);
    assert_eq!(o.metric.initial_rejections.get(FilterStage::Memory), 1);
    // Among equals, the one closest to enough memory.
    let o = run(
        vec![
            inst(0, "a", 4096, 100),
            inst(1, "a", 4096, 300),
            inst(2, "a", 4096, 200),
        ],
        &r,
    );
    assert_eq!(o.metric.closest.as_ref().unwrap().instance_index, 1);
}

#[test]
fn service_event_clauses() {
    let table = [
        (FilterStage::Cpu, "has insufficient CPU units available."),
        (FilterStage::Memory, "has insufficient memory available."),
        (
            FilterStage::TcpPorts,
            "is already using a port required by your task.",
        ),
        (
            FilterStage::Attributes,
            "is missing an attribute required by your task.",
        ),
        (
            FilterStage::MemberOf,
            "encountered error \"MemberOf placement constraint unsatisfied.\".",
        ),
        (FilterStage::Agent, "encountered error \"AGENT\"."),
    ];
    for (s, want) in table {
        assert_eq!(s.service_event_clause(), want);
    }
}

#[test]
fn empty_cluster_is_an_invalid_parameter() {
    let snap = ClusterSnapshot::default();
    let idx = ClusterIndex::build(&snap);
    let err = place(&idx, &req(1, 1, 1)).unwrap_err();
    assert_eq!(err.kind, EcsErrorKind::InvalidParameterException);
    assert_eq!(
        err.message,
        "No Container Instances were found in your cluster."
    );
}

#[test]
fn explain_every_stage() {
    let snap = ClusterSnapshot::new(vec![inst(0, "a", 256, 4096)]);
    let idx = ClusterIndex::build(&snap);
    let mut r = req(512, 512, 1);
    r.task.tcp_ports = vec![80];
    let e = explain_instance(&idx, &r, "ci0000").unwrap();
    assert!(!e.fits);
    assert_eq!(e.first_failure(), Some(FilterStage::Cpu));
    assert_eq!(e.checks.len(), STAGE_COUNT);
    assert!(e
        .render()
        .contains("FAIL cpu: requires 512 CPU units, 256 remaining [RESOURCE:CPU]"));
    assert!(explain_instance(&idx, &r, "nope").is_err());
}

#[test]
fn start_task_on_named_instances() {
    let snap = ClusterSnapshot::new(vec![inst(0, "a", 1024, 1024), inst(1, "a", 100, 1024)]);
    let idx = ClusterIndex::build(&snap);
    let r = req(600, 100, 1);
    let o = start_task(&idx, &r, &[&arn(0), "ci0001", "missing", &arn(0)]).unwrap();
    assert_eq!(placed_ids(&o), vec![0]);
    let reasons: Vec<&str> = o.failures.iter().map(|f| f.reason.as_str()).collect();
    assert_eq!(reasons, vec!["RESOURCE:CPU", "MISSING", "RESOURCE:CPU"]);
}
