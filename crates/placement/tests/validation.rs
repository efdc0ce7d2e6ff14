//! Constraint and strategy validation messages.

mod common;

use berth_placement::*;
use common::*;

fn err_of(r: &PlacementRequest) -> PlacementError {
    let snap = ClusterSnapshot::new(vec![inst(0, "a", 1024, 1024)]);
    let idx = ClusterIndex::build(&snap);
    place(&idx, r).expect_err("should be rejected")
}

#[test]
fn strategy_errors() {
    let table: Vec<(Vec<PlacementStrategy>, &str)> = vec![
        (
            vec![PlacementStrategy {
                strategy_type: "pack".into(),
                field: None,
            }],
            "Invalid placement strategy type 'pack'",
        ),
        (
            vec![PlacementStrategy::binpack("disk")],
            "Invalid field 'disk' for the binpack placement strategy",
        ),
        (
            vec![PlacementStrategy::binpack("instanceId")],
            "Invalid field 'instanceId' for the binpack",
        ),
        (
            vec![PlacementStrategy {
                strategy_type: "binpack".into(),
                field: None,
            }],
            "requires a field",
        ),
        (
            vec![PlacementStrategy::spread("memory")],
            "Invalid field 'memory' for the spread placement strategy",
        ),
        (
            vec![PlacementStrategy::spread("attribute:")],
            "Invalid field 'attribute:'",
        ),
        (
            vec![PlacementStrategy {
                strategy_type: "spread".into(),
                field: None,
            }],
            "requires a field",
        ),
        (
            vec![PlacementStrategy::random(); 6],
            "Too many placement strategies: 6",
        ),
    ];
    for (s, want) in table {
        let mut r = req(1, 1, 1);
        r.strategies = s;
        let e = err_of(&r);
        assert_eq!(e.kind, EcsErrorKind::InvalidParameterException);
        assert!(e.message.contains(want), "{}", e.message);
    }
    let ok = validate_strategies(&[
        PlacementStrategy {
            strategy_type: "random".into(),
            field: Some("ignored".into()),
        },
        PlacementStrategy::spread("instanceId"),
        PlacementStrategy::spread("attribute:ecs.availability-zone"),
        PlacementStrategy::binpack("memory"),
        PlacementStrategy::binpack("cpu"),
    ])
    .unwrap();
    assert_eq!(ok.len(), 5);
}

#[test]
fn constraint_errors() {
    let table: Vec<(Vec<PlacementConstraint>, Vec<PlacementConstraint>, &str)> = vec![
        (
            vec![PlacementConstraint {
                constraint_type: "sameInstance".into(),
                expression: None,
            }],
            vec![],
            "Invalid placement constraint type 'sameInstance'",
        ),
        (
            vec![PlacementConstraint {
                constraint_type: "distinctInstance".into(),
                expression: Some("a".into()),
            }],
            vec![],
            "can't be specified when the placement constraint type is distinctInstance",
        ),
        (
            vec![PlacementConstraint {
                constraint_type: "memberOf".into(),
                expression: None,
            }],
            vec![],
            "An expression is required",
        ),
        (
            vec![PlacementConstraint::member_of("attribute:a ==")],
            vec![],
            "Invalid expression",
        ),
        (
            vec![PlacementConstraint::distinct_instance(); 11],
            vec![],
            "Too many placement constraints: 11",
        ),
        (
            vec![PlacementConstraint::distinct_instance(); 6],
            vec![PlacementConstraint::member_of("attribute:a exists"); 5],
            "Too many placement constraints: 11",
        ),
        (
            vec![],
            vec![PlacementConstraint::distinct_instance()],
            "Invalid task definition placement constraint type",
        ),
    ];
    for (reqc, tdc, want) in table {
        let mut r = req(1, 1, 1);
        r.constraints = reqc;
        r.task.task_definition_constraints = tdc;
        let e = err_of(&r);
        assert_eq!(e.kind, EcsErrorKind::InvalidParameterException);
        assert!(e.message.contains(want), "{}", e.message);
    }
}

#[test]
fn launch_type_errors() {
    let mut r = req(1, 1, 1);
    r.task.compatibilities = vec![LaunchType::Fargate];
    assert_eq!(
        err_of(&r).message,
        "Task definition does not support launch_type EC2."
    );
    r.task.launch_type = LaunchType::Fargate;
    assert!(err_of(&r).message.contains("FARGATE"));
    let mut r = req(-1, 1, 1);
    r.task.compatibilities = vec![LaunchType::Ec2];
    assert!(err_of(&r).message.contains("negative"));
}

#[test]
fn error_display() {
    let e = PlacementError::invalid_parameter("x");
    assert_eq!(e.to_string(), "InvalidParameterException: x");
    assert_eq!(PlacementError::client("y").kind.as_str(), "ClientException");
}
