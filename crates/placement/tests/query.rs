//! Cluster query language: every documented example, each operator and word form, errors.

mod common;

use berth_placement::*;
use common::*;

fn sample() -> Vec<ContainerInstance> {
    // 0: t2.small us-east-1a, agent 1.14.5, registered 2018-01-10, 1 task of service:production
    let mut a = inst(0, "us-east-1a", 1024, 2048);
    a.registered_at = 1_515_542_400.0; // 2018-01-10T00:00:00Z
    a.ec2_instance_id = Some("i-abcd1234".into());
    let a = with_tasks(a, "service:production", 1);
    // 1: t2.medium us-east-1b, agent 1.10.0, registered 2018-02-13T12:00:00Z, database task
    let mut b = inst(1, "us-east-1b", 1024, 2048);
    b.attributes[1].value = Some("t2.medium".into());
    b.agent_version = Some("1.10.0".into());
    b.registered_at = 1_518_523_200.0;
    b.ec2_instance_id = Some("i-wxyx7890".into());
    b.attributes.push(Attribute::new("stack", "prod"));
    let b = with_tasks(b, "database", 2);
    // 2: g2.2xlarge us-east-1d, agent 1.20.1, disconnected, registered 2019-01-01, no tasks
    let mut c = inst(2, "us-east-1d", 1024, 2048);
    c.attributes[1].value = Some("g2.2xlarge".into());
    c.agent_version = Some("1.20.1".into());
    c.agent_connected = false;
    c.registered_at = 1_546_300_800.0;
    c.attributes.push(Attribute::new("stack", "dev"));
    c.attributes
        .push(Attribute::flag("ecs.capability.docker-remote-api.1.30"));
    // 3: g2.2xlarge us-east-1a, no tasks
    let mut d = inst(3, "us-east-1a", 1024, 2048);
    d.attributes[1].value = Some("g2.2xlarge".into());
    d.agent_version = Some("1.14.4".into());
    d.registered_at = 1_518_480_000.0; // 2018-02-13T00:00:00Z exactly
    vec![a, b, c, d]
}

fn matching(expr: &str) -> Vec<usize> {
    let snap = ClusterSnapshot::new(sample());
    let e = Expression::parse(expr).unwrap_or_else(|err| panic!("{expr}: {err}"));
    let direct: Vec<usize> = snap
        .instances
        .iter()
        .enumerate()
        .filter(|(_, i)| e.matches(&InstanceView::new(i)))
        .map(|(n, _)| n)
        .collect();
    let idx = ClusterIndex::build(&snap);
    assert_eq!(
        idx.filter(&e),
        direct,
        "compiled and interpreted disagree for {expr}"
    );
    direct
}

#[test]
fn documented_examples() {
    let table: &[(&str, &[usize])] = &[
        ("attribute:ecs.instance-type == t2.small", &[0]),
        ("attribute:ecs.availability-zone in [us-east-1a, us-east-1b]", &[0, 1, 3]),
        ("attribute:ecs.instance-type =~ g2.* and attribute:ecs.availability-zone != us-east-1d", &[3]),
        ("task:group == service:production", &[0]),
        ("not(task:group == database)", &[0, 2, 3]),
        ("runningTasksCount == 1", &[0]),
        ("agentVersion < 1.14.5", &[1, 3]),
        ("registeredAt < 2018-02-13", &[0]),
        ("ec2InstanceId in ['i-abcd1234', 'i-wxyx7890']", &[0, 1]),
        ("attribute:ecs.instance-type == g2.2xlarge", &[2, 3]),
        ("attribute:stack == prod", &[1]),
        ("attribute:stack != prod", &[2]),
        ("attribute:ecs.instance-type in [t2.small, t2.medium]", &[0, 1]),
        ("attribute:ecs.instance-type =~ t2.* and attribute:ecs.availability-zone == us-east-1a", &[0]),
        ("attribute:ecs.instance-type =~ t2.*", &[0, 1]),
        ("task:group == databases", &[]),
        ("agentVersion >= 1.10.0", &[0, 1, 2, 3]),
        ("attribute:ecs.instance-type == t2.small or attribute:ecs.instance-type == t2.medium", &[0, 1]),
        ("registeredAt < 2018-01-01", &[]),
        ("(attribute:ecs.availability-zone == us-east-1a or attribute:stack == prod) and runningTasksCount > 0", &[0, 1]),
    ];
    for (expr, want) in table {
        assert_eq!(matching(expr), *want, "{expr}");
    }
}

#[test]
fn operators_and_word_forms() {
    let table: &[(&str, &[usize])] = &[
        ("attribute:stack equals prod", &[1]),
        ("attribute:stack not_equals prod", &[2]),
        ("attribute:stack exists", &[1, 2]),
        ("attribute:stack !exists", &[0, 3]),
        ("attribute:stack not_exists", &[0, 3]),
        (
            "attribute:ecs.capability.docker-remote-api.1.30 exists",
            &[2],
        ),
        ("attribute:stack in [prod]", &[1]),
        ("attribute:stack not_in [prod]", &[2]),
        ("attribute:stack !in [prod, x]", &[2]),
        ("attribute:ecs.instance-type matches 't2\\..*'", &[0, 1]),
        ("attribute:ecs.instance-type not_matches t2.*", &[2, 3]),
        ("attribute:ecs.instance-type !~ t2.*", &[2, 3]),
        ("attribute:ecs.instance-type=~t2.*", &[0, 1]),
        ("attribute:ecs.instance-type =~ t2", &[]),
        ("runningTasksCount greater_than 0", &[0, 1]),
        ("runningTasksCount greater_than_equal 1", &[0, 1]),
        ("runningTasksCount less_than 1", &[2, 3]),
        ("runningTasksCount less_than_equal 1", &[0, 2, 3]),
        ("runningTasksCount != 2", &[0, 2, 3]),
        ("runningTasksCount >= 2", &[1]),
        ("runningTasksCount <= 0", &[2, 3]),
        ("agentConnected == false", &[2]),
        ("agentConnected != false", &[0, 1, 3]),
        ("agentConnected in [true]", &[0, 1, 3]),
        ("agentConnected =~ f.*", &[2]),
        ("agentVersion == 1.14.5", &[0]),
        ("agentVersion > 1.14.5", &[2]),
        ("agentVersion <= 1.14.4", &[1, 3]),
        ("agentVersion != 1.14.5", &[1, 2, 3]),
        ("agentVersion > 1.9.9", &[0, 1, 2, 3]),
        ("ec2InstanceId == i-abcd1234", &[0]),
        ("ec2InstanceId =~ 'i-(abcd|wxyx).*'", &[0, 1]),
        ("ec2InstanceId not_in ['i-abcd1234']", &[1, 2, 3]),
        ("task:group exists", &[0, 1]),
        ("task:group !exists", &[2, 3]),
        ("task:group in [database, service:production]", &[0, 1]),
        ("task:group != database", &[0]),
        ("task:group =~ service:.*", &[0]),
        ("not task:group == database", &[0, 2, 3]),
        ("! (task:group == database)", &[0, 2, 3]),
        ("!(task:group == database) && attribute:stack exists", &[2]),
        ("attribute:stack == prod || attribute:stack == dev", &[1, 2]),
        ("attribute:stack == \"prod\"", &[1]),
        (
            "attribute:nope == x or not attribute:nope exists",
            &[0, 1, 2, 3],
        ),
        ("attribute:ecs.availability-zone > us-east-1a", &[1, 2]),
    ];
    for (expr, want) in table {
        assert_eq!(matching(expr), *want, "{expr}");
    }
}

#[test]
fn registered_at_formats() {
    let table: &[(&str, &[usize])] = &[
        ("registeredAt < 2018-02-13", &[0]),
        ("registeredAt == 2018-02-13", &[1, 3]),
        ("registeredAt <= 2018-02-13", &[0, 1, 3]),
        ("registeredAt > 2018-02-13", &[2]),
        ("registeredAt >= 2018-02-13", &[1, 2, 3]),
        ("registeredAt != 2018-02-13", &[0, 2]),
        ("registeredAt == 2018-02-13T12:00:00Z", &[1]),
        ("registeredAt == 2018-02-13T12:00:00", &[1]),
        ("registeredAt == 2018-02-13T13:00:00+01:00", &[1]),
        ("registeredAt == 2018-02-13T07:00:00-05:00", &[1]),
        ("registeredAt > 2018-02-13T00:00:00+00:00", &[1, 2]),
        ("registeredAt >= 2018-02-13T00:00:00Z", &[1, 2, 3]),
        ("registeredAt < 2018-06-18T22:28:28+00:00", &[0, 1, 3]),
    ];
    for (expr, want) in table {
        assert_eq!(matching(expr), *want, "{expr}");
    }
}

#[test]
fn running_tasks_count_counts_tasks_placed_in_the_call() {
    let snap = ClusterSnapshot::new(sample());
    let e = Expression::parse("runningTasksCount == 1 and task:group == service:web").unwrap();
    let groups = ["service:web"];
    let view = InstanceView {
        instance: &snap.instances[3],
        extra_groups: &groups,
    };
    assert!(e.matches(&view));
    assert!(!e.matches(&InstanceView::new(&snap.instances[3])));
    assert!(e.is_dynamic());
    assert!(!Expression::parse("attribute:a == b").unwrap().is_dynamic());
}

#[test]
fn syntax_errors_name_the_position() {
    let table: &[(&str, &str)] = &[
        ("", "position 1"),
        (
            "attribute:stack ==",
            "expected an argument but found end of expression at position 19",
        ),
        ("attribute:stack = prod", "at position 17"),
        ("foo == bar", "unknown subject 'foo'"),
        ("attribute: == x", "missing attribute name"),
        (
            "attribute:stack is prod",
            "expected an operator but found 'is' at position 17",
        ),
        ("attribute:stack in prod", "expected an argument list"),
        (
            "attribute:stack in [a b]",
            "expected ',' or ']' but found 'b' at position 23",
        ),
        (
            "(attribute:stack == a",
            "expected ')' but found end of expression",
        ),
        ("attribute:stack == a)", "unexpected ')' at position 21"),
        (
            "attribute:stack == 'a",
            "unterminated quoted value at position 20",
        ),
        ("attribute:a == b and", "expected a subject"),
        ("attribute:a == b & attribute:c == d", "unexpected '&'"),
        (
            "agentConnected > 1",
            "operator greater_than (>) is not valid for subject agentConnected",
        ),
        (
            "runningTasksCount =~ 1",
            "is not valid for subject runningTasksCount",
        ),
        (
            "ec2InstanceId exists",
            "is not valid for subject ec2InstanceId",
        ),
        ("runningTasksCount == one", "takes an integer"),
        ("agentVersion >= latest", "invalid agent version"),
        ("registeredAt < 2018/01/01", "invalid date"),
        ("registeredAt < 2018-13-01", "invalid date"),
        ("agentConnected == yes", "true or false"),
        ("attribute:a =~ '('", "invalid pattern"),
        ("attribute:a ! b", "expected 'exists' or 'in' after '!'"),
    ];
    for (expr, want) in table {
        let err = Expression::parse(expr).expect_err(expr);
        assert_eq!(err.kind, EcsErrorKind::InvalidParameterException);
        assert!(err.message.contains(want), "{expr}: {}", err.message);
    }
}

#[test]
fn length_and_depth_limits() {
    let long = format!("attribute:a == {}", "x".repeat(2000));
    assert!(Expression::parse(&long)
        .unwrap_err()
        .message
        .contains("maximum is 2000"));
    let deep = format!("{}attribute:a == b{}", "(".repeat(500), ")".repeat(500));
    assert!(Expression::parse(&deep)
        .unwrap_err()
        .message
        .contains("nested too deeply"));
    let nots = format!("{}attribute:a == b", "not ".repeat(400));
    assert!(Expression::parse(&nots).is_err());
    let ok = format!("{}attribute:a == b{}", "(".repeat(20), ")".repeat(20));
    assert!(Expression::parse(&ok).is_ok());
}

#[test]
fn precedence_not_and_or() {
    // a or b and c == a or (b and c)
    assert_eq!(
        matching("attribute:stack == prod or attribute:stack == dev and agentConnected == true"),
        vec![1]
    );
    assert_eq!(
        matching("(attribute:stack == prod or attribute:stack == dev) and agentConnected == true"),
        vec![1]
    );
    assert_eq!(
        matching("not attribute:stack == prod and attribute:stack exists"),
        vec![2]
    );
}
