//! The agent against `FakeRuntime` and `FakeControlPlane`, on tokio's paused clock: fast and
//! deterministic.

use std::sync::Arc;
use std::time::Duration;

use berth_agent::control::TaskStateChange;
use berth_agent::{AgentConfig, AgentError, FakeControlPlane};
use berth_agent_api::{DesiredTask, PollResponse};
use berth_runtime::{
    ContainerId, ContainerRuntime, FakeBehavior, FakeRuntime, HealthStatus, ListOptions,
};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const ARN: &str =
    "arn:aws:ecs:us-east-1:000000000000:task/default/0123456789abcdef0123456789abcdef";

struct Agent {
    stop: Option<oneshot::Sender<()>>,
    join: JoinHandle<Result<(), AgentError>>,
}

impl Agent {
    async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let r = self.join.await.expect("agent task panicked");
        assert!(r.is_ok(), "{r:?}");
    }
}

fn config(dir: &std::path::Path) -> AgentConfig {
    AgentConfig {
        data_dir: dir.to_path_buf(),
        container_stop_timeout: Duration::from_secs(2),
        metadata_port: 0,
        ..AgentConfig::default()
    }
}

fn start(rt: &FakeRuntime, cp: &FakeControlPlane, dir: &std::path::Path) -> Agent {
    let (tx, rx) = oneshot::channel();
    let join = tokio::spawn(berth_agent::run_with(
        config(dir),
        Arc::new(rt.clone()),
        Arc::new(cp.clone()),
        async move {
            let _ = rx.await;
        },
    ));
    Agent {
        stop: Some(tx),
        join,
    }
}

fn task(arn: &str, desired: &str, td: Value) -> DesiredTask {
    DesiredTask {
        task_arn: arn.into(),
        cluster_arn: "arn:aws:ecs:us-east-1:000000000000:cluster/default".into(),
        desired_status: desired.into(),
        task_definition: serde_json::from_value(td).expect("task definition"),
        group: "family:f".into(),
        ..Default::default()
    }
}

fn one(image: &str) -> Value {
    json!({"family": "f", "revision": 1, "containerDefinitions": [{"name": "app", "image": image, "memory": 64}]})
}

async fn wait_for(
    cp: &FakeControlPlane,
    arn: &str,
    what: &str,
    pred: impl Fn(&TaskStateChange) -> bool,
) -> TaskStateChange {
    for _ in 0..3000 {
        if let Some(r) = cp.latest(arn) {
            if pred(&r) {
                return r;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "timed out waiting for {what}; latest: {:#?}",
        cp.latest(arn)
    );
}

fn container<'a>(r: &'a TaskStateChange, name: &str) -> &'a berth_agent::control::ContainerReport {
    r.containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name} in {r:#?}"))
}

#[tokio::test(start_paused = true)]
async fn happy_path_running_then_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let rt = FakeRuntime::default();
    let cp = FakeControlPlane::new();
    let agent = start(&rt, &cp, dir.path());
    cp.set_desired(vec![task(ARN, "RUNNING", one("busybox"))]);
    let r = wait_for(&cp, ARN, "RUNNING", |r| r.status == "RUNNING").await;
    let c = container(&r, "app");
    assert_eq!(c.status, "RUNNING");
    assert!(c.runtime_id.is_some());
    assert!(c
        .image_digest
        .as_deref()
        .is_some_and(|d| d.starts_with("sha256:")));
    assert!(r.pull_started_at.is_some() && r.pull_stopped_at.is_some());
    assert_eq!(rt.pulls(), vec!["busybox".to_string()]);
    // Registration carried resources and the identity.
    let reg = &cp.registrations()[0];
    assert_eq!(reg.total_resources.as_ref().unwrap()[0].integer_value, 2048);

    let mut stopped = task(ARN, "STOPPED", one("busybox"));
    stopped.stopped_reason = Some("Task stopped by user".into());
    stopped.stop_code = Some("UserInitiated".into());
    cp.set_desired(vec![stopped]);
    let r = wait_for(&cp, ARN, "STOPPED", |r| r.status == "STOPPED").await;
    assert_eq!(r.reason.as_deref(), Some("Task stopped by user"));
    assert_eq!(container(&r, "app").status, "STOPPED");
    assert_eq!(container(&r, "app").exit_code, Some(143));
    assert!(r.execution_stopped_at.is_some());
    // Statuses only move forward.
    let order: Vec<String> = cp
        .reports()
        .iter()
        .filter(|r| r.task_arn == ARN)
        .map(|r| r.status.clone())
        .collect();
    let rank = |s: &str| {
        ["PENDING", "RUNNING", "STOPPED"]
            .iter()
            .position(|x| *x == s)
    };
    assert!(
        order.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])),
        "{order:?}"
    );
    agent.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn essential_exit_code_3_stops_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let rt = FakeRuntime::default();
    rt.set_behavior("exit3", FakeBehavior::exit_after(Duration::from_secs(1), 3));
    let cp = FakeControlPlane::new();
    let agent = start(&rt, &cp, dir.path());
    cp.set_desired(vec![task(ARN, "RUNNING", one("exit3"))]);
    let r = wait_for(&cp, ARN, "STOPPED", |r| r.status == "STOPPED").await;
    assert_eq!(container(&r, "app").exit_code, Some(3));
    assert_eq!(
        r.reason.as_deref(),
        Some("Essential container in task exited")
    );
    assert_eq!(r.stop_code.as_deref(), Some("EssentialContainerExited"));
    agent.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn non_essential_exit_does_not_stop_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let rt = FakeRuntime::default();
    rt.set_behavior(
        "oneshot",
        FakeBehavior::exit_after(Duration::from_secs(1), 0),
    );
    let cp = FakeControlPlane::new();
    let agent = start(&rt, &cp, dir.path());
    let td = json!({"family": "f", "revision": 1, "containerDefinitions": [
        {"name": "app", "image": "busybox", "memory": 64},
        {"name": "side", "image": "oneshot", "memory": 64, "essential": false}
    ]});
    cp.set_desired(vec![task(ARN, "RUNNING", td)]);
    wait_for(&cp, ARN, "side STOPPED", |r| {
        r.containers
            .iter()
            .any(|c| c.name == "side" && c.status == "STOPPED")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let r = cp.latest(ARN).unwrap();
    assert_eq!(r.status, "RUNNING");
    assert_eq!(container(&r, "app").status, "RUNNING");
    assert_eq!(container(&r, "side").exit_code, Some(0));
    agent.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn pull_failure_stops_with_cannot_pull() {
    let dir = tempfile::tempdir().unwrap();
    let rt = FakeRuntime::default();
    rt.fail_pull("nope/missing", "manifest for nope/missing:latest not found");
    let cp = FakeControlPlane::new();
    let agent = start(&rt, &cp, dir.path());
    cp.set_desired(vec![task(ARN, "RUNNING", one("nope/missing"))]);
    let r = wait_for(&cp, ARN, "STOPPED", |r| r.status == "STOPPED").await;
    assert_eq!(
        r.reason.as_deref(),
        Some("CannotPullContainerError: manifest for nope/missing:latest not found")
    );
    assert_eq!(r.stop_code.as_deref(), Some("TaskFailedToStart"));
    assert!(r.pull_started_at.is_some() && r.pull_stopped_at.is_some());
    assert!(container(&r, "app")
        .reason
        .as_deref()
        .unwrap()
        .starts_with("CannotPullContainerError"));
    assert!(rt.container_ids().is_empty());
    agent.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn start_failure_stops_with_cannot_start() {
    let dir = tempfile::tempdir().unwrap();
    let rt = FakeRuntime::default();
    rt.fail_start("busybox", "port is already allocated");
    let cp = FakeControlPlane::new();
    let agent = start(&rt, &cp, dir.path());
    cp.set_desired(vec![task(ARN, "RUNNING", one("busybox"))]);
    let r = wait_for(&cp, ARN, "STOPPED", |r| r.status == "STOPPED").await;
    assert_eq!(
        r.reason.as_deref(),
        Some("CannotStartContainerError: port is already allocated")
    );
    agent.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn depends_on_healthy_orders_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let rt = FakeRuntime::default();
    let cp = FakeControlPlane::new();
    let agent = start(&rt, &cp, dir.path());
    let td = json!({"family": "f", "revision": 1, "containerDefinitions": [
        {"name": "app", "image": "busybox", "memory": 64,
         "dependsOn": [{"containerName": "db", "condition": "HEALTHY"}]},
        {"name": "db", "image": "db", "memory": 64,
         "healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 5, "retries": 3}}
    ]});
    cp.set_desired(vec![task(ARN, "RUNNING", td)]);
    let r = wait_for(&cp, ARN, "RUNNING", |r| r.status == "RUNNING").await;
    assert_eq!(
        container(&r, "db").health_status.as_deref(),
        Some("HEALTHY")
    );
    assert_eq!(r.health_status.as_deref(), Some("HEALTHY"));
    // There was a report with db running and app still pending.
    assert!(cp.reports().iter().any(|r| {
        r.containers
            .iter()
            .any(|c| c.name == "db" && c.status == "RUNNING")
            && r.containers
                .iter()
                .any(|c| c.name == "app" && c.status == "PENDING")
    }));
    // And app was never running before db was healthy.
    for r in cp.reports() {
        if container(&r, "app").status == "RUNNING" {
            assert_eq!(
                container(&r, "db").health_status.as_deref(),
                Some("HEALTHY")
            );
        }
    }
    agent.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn failing_health_check_is_unhealthy() {
    let dir = tempfile::tempdir().unwrap();
    let rt = FakeRuntime::default();
    rt.set_behavior(
        "sick",
        FakeBehavior::run_forever().with_health(HealthStatus::Unhealthy),
    );
    let cp = FakeControlPlane::new();
    let agent = start(&rt, &cp, dir.path());
    let td = json!({"family": "f", "revision": 1, "containerDefinitions": [
        {"name": "app", "image": "sick", "memory": 64,
         "healthCheck": {"command": ["CMD", "false"], "interval": 5, "retries": 2}}
    ]});
    cp.set_desired(vec![task(ARN, "RUNNING", td)]);
    let r = wait_for(&cp, ARN, "UNHEALTHY", |r| {
        r.health_status.as_deref() == Some("UNHEALTHY")
    })
    .await;
    assert_eq!(
        container(&r, "app").health_status.as_deref(),
        Some("UNHEALTHY")
    );
    assert_eq!(r.status, "RUNNING");
    agent.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn restart_adopts_containers_and_reports_kills() {
    let dir = tempfile::tempdir().unwrap();
    let rt = FakeRuntime::default();
    let cp = FakeControlPlane::new();
    let agent = start(&rt, &cp, dir.path());
    cp.set_desired(vec![task(ARN, "RUNNING", one("busybox"))]);
    let r = wait_for(&cp, ARN, "RUNNING", |r| r.status == "RUNNING").await;
    let id = container(&r, "app").runtime_id.clone().unwrap();
    agent.shutdown().await;
    // The container is still running after the agent is gone.
    let running = rt.list_containers(&ListOptions::default()).await.unwrap();
    assert_eq!(running.len(), 1);

    let reports_before = cp.reports().len();
    let agent = start(&rt, &cp, dir.path());
    // Same identity.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let regs = cp.registrations();
    assert_eq!(regs.len(), 2);
    assert!(regs[0].container_instance_arn.is_none());
    assert!(regs[1].container_instance_arn.is_some());
    tokio::time::sleep(Duration::from_secs(5)).await;
    // No duplicate container, no restart, no new pull.
    assert_eq!(rt.container_ids().len(), 1);
    assert_eq!(rt.pulls().len(), 1);
    let r = cp.latest(ARN).unwrap();
    assert_eq!(r.status, "RUNNING");
    assert_eq!(
        container(&r, "app").runtime_id.as_deref(),
        Some(id.as_str())
    );
    assert!(
        cp.reports().len() > reports_before,
        "adopted task re-reported"
    );

    // Killed behind the agent's back.
    rt.exit(&ContainerId::new(id.clone()), 137).unwrap();
    let r = wait_for(&cp, ARN, "STOPPED", |r| r.status == "STOPPED").await;
    assert_eq!(container(&r, "app").exit_code, Some(137));
    agent.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn stale_generation_is_ignored_and_inactive_exits() {
    let dir = tempfile::tempdir().unwrap();
    let rt = FakeRuntime::default();
    let cp = FakeControlPlane::new();
    let agent = start(&rt, &cp, dir.path());
    cp.set_desired(vec![task(ARN, "RUNNING", one("busybox"))]);
    wait_for(&cp, ARN, "RUNNING", |r| r.status == "RUNNING").await;
    // A replayed answer from before the task existed.
    cp.push_answer(Ok(PollResponse {
        generation: 0,
        instance_status: "ACTIVE".into(),
        tasks: vec![],
    }));
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(cp.latest(ARN).unwrap().status, "RUNNING");
    assert!(cp.polls().len() >= 3);
    // Deregistered: the agent ends on its own, containers untouched.
    cp.set_instance_status("INACTIVE");
    let r = tokio::time::timeout(Duration::from_secs(60), agent.join)
        .await
        .expect("agent did not exit");
    assert!(matches!(r, Ok(Ok(()))));
    assert_eq!(cp.latest(ARN).unwrap().status, "RUNNING");
}

#[tokio::test(start_paused = true)]
async fn control_plane_outage_then_truth_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let rt = FakeRuntime::default();
    let cp = FakeControlPlane::new();
    let agent = start(&rt, &cp, dir.path());
    cp.set_desired(vec![task(ARN, "RUNNING", one("busybox"))]);
    let r = wait_for(&cp, ARN, "RUNNING", |r| r.status == "RUNNING").await;
    let id = container(&r, "app").runtime_id.clone().unwrap();
    cp.set_down(true);
    tokio::time::sleep(Duration::from_secs(5)).await;
    rt.exit(&ContainerId::new(id), 3).unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(cp.latest(ARN).unwrap().status, "RUNNING");
    cp.set_down(false);
    let r = wait_for(&cp, ARN, "STOPPED", |r| r.status == "STOPPED").await;
    assert_eq!(container(&r, "app").exit_code, Some(3));
    agent.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn stopped_tasks_are_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let rt = FakeRuntime::default();
    rt.set_behavior("exit3", FakeBehavior::exit_after(Duration::from_secs(1), 3));
    let cp = FakeControlPlane::new();
    let agent = start(&rt, &cp, dir.path());
    let td = json!({"family": "f", "revision": 1, "networkMode": "awsvpc",
        "volumes": [{"name": "scratch"}],
        "containerDefinitions": [{"name": "app", "image": "exit3", "memory": 64,
            "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/s"}]}]});
    cp.set_desired(vec![task(ARN, "RUNNING", td)]);
    let r = wait_for(&cp, ARN, "STOPPED", |r| r.status == "STOPPED").await;
    assert_eq!(r.attachments.len(), 1);
    assert_eq!(r.attachments[0].kind, "ElasticNetworkInterface");
    // The app container and the pause container holding the task's network namespace.
    assert_eq!(rt.container_ids().len(), 2);
    assert_eq!(
        rt.list_networks(&Default::default()).await.unwrap().len(),
        1
    );
    tokio::time::sleep(Duration::from_secs(3 * 3600 + 60)).await;
    assert!(rt.container_ids().is_empty());
    assert!(rt
        .list_networks(&Default::default())
        .await
        .unwrap()
        .is_empty());
    assert!(rt
        .list_volumes(&Default::default())
        .await
        .unwrap()
        .is_empty());
    agent.shutdown().await;
}

fn awslogs_td(group: &str, create: bool) -> Value {
    json!({"family": "f", "revision": 1, "containerDefinitions": [{
        "name": "app", "image": "busybox", "memory": 64,
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": group, "awslogs-region": "us-east-1",
            "awslogs-stream-prefix": "ecs", "awslogs-create-group": if create { "true" } else { "false" }}}
    }]})
}

const TASK_ID: &str = "0123456789abcdef0123456789abcdef";

#[tokio::test(start_paused = true)]
async fn awslogs_ships_output_into_the_task_stream_across_an_agent_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rt = FakeRuntime::default();
    rt.set_behavior("busybox", FakeBehavior::run_forever().with_log("hello"));
    let cp = FakeControlPlane::new();
    let agent = start(&rt, &cp, dir.path());
    cp.set_desired(vec![task(ARN, "RUNNING", awslogs_td("/ecs/web", true))]);
    let r = wait_for(&cp, ARN, "RUNNING", |r| r.status == "RUNNING").await;
    let id = ContainerId::new(container(&r, "app").runtime_id.clone().unwrap());
    // The engine logs with json-file; the agent ships.
    let info = rt.inspect_container(&id).await.unwrap();
    assert_eq!(
        info.labels
            .get("com.amazonaws.ecs.container-name")
            .map(String::as_str),
        Some("app")
    );
    let stream = format!("ecs/app/{TASK_ID}");
    for i in 0..5 {
        rt.emit_log(&id, berth_runtime::LogSource::Stdout, format!("line {i}"))
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        cp.logs.messages("/ecs/web", &stream),
        vec!["hello", "line 0", "line 1", "line 2", "line 3", "line 4"]
    );
    // Agent restart: lines written while it is away arrive once.
    agent.shutdown().await;
    for i in 5..8 {
        rt.emit_log(&id, berth_runtime::LogSource::Stderr, format!("line {i}"))
            .unwrap();
    }
    let agent = start(&rt, &cp, dir.path());
    cp.set_desired(vec![task(ARN, "RUNNING", awslogs_td("/ecs/web", true))]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    rt.emit_log(&id, berth_runtime::LogSource::Stdout, "line 8")
        .unwrap();
    rt.exit(&id, 0).unwrap();
    wait_for(&cp, ARN, "STOPPED", |r| r.status == "STOPPED").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut want = vec!["hello".to_string()];
    want.extend((0..9).map(|i| format!("line {i}")));
    assert_eq!(cp.logs.messages("/ecs/web", &stream), want);
    agent.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn awslogs_missing_group_without_create_group_fails_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let rt = FakeRuntime::default();
    let cp = FakeControlPlane::new();
    let agent = start(&rt, &cp, dir.path());
    cp.set_desired(vec![task(
        ARN,
        "RUNNING",
        awslogs_td("/ecs/missing", false),
    )]);
    let r = wait_for(&cp, ARN, "STOPPED", |r| r.status == "STOPPED").await;
    let reason = container(&r, "app").reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("CannotStartContainerError:")
            && reason
                .contains("ResourceNotFoundException: The specified log group does not exist."),
        "{reason}"
    );
    assert_eq!(r.stop_code.as_deref(), Some("TaskFailedToStart"));
    assert!(!cp.logs.has_group("/ecs/missing"));
    agent.shutdown().await;
}

/// How long (virtual time) six tasks take to be RUNNING with engine starts of 1 s each, when at
/// most `limit` containers are created and started at once.
async fn six_starts_with_limit(limit: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let rt = FakeRuntime::new(berth_runtime::FakeConfig {
        start_latency: Duration::from_secs(1),
        ..Default::default()
    });
    let cp = FakeControlPlane::new();
    let (tx, rx) = oneshot::channel::<()>();
    let join = tokio::spawn(berth_agent::run_with(
        AgentConfig {
            concurrent_starts: limit,
            ..config(dir.path())
        },
        Arc::new(rt.clone()),
        Arc::new(cp.clone()),
        async move {
            let _ = rx.await;
        },
    ));
    let arns: Vec<String> = (0..6)
        .map(|i| format!("arn:aws:ecs:us-east-1:000000000000:task/default/{i:032x}"))
        .collect();
    let t0 = tokio::time::Instant::now();
    cp.set_desired(
        arns.iter()
            .map(|a| task(a, "RUNNING", one("busybox")))
            .collect(),
    );
    for a in &arns {
        wait_for(&cp, a, "RUNNING", |r| r.status == "RUNNING").await;
    }
    let took = t0.elapsed();
    let _ = tx.send(());
    join.await.unwrap().unwrap();
    took
}

#[tokio::test(start_paused = true)]
async fn container_starts_are_bounded_by_concurrent_starts() {
    let two = six_starts_with_limit(2).await;
    let six = six_starts_with_limit(6).await;
    // Three waves of two, against one wave of six.
    assert!(two >= Duration::from_secs(3), "{two:?}");
    assert!(six < Duration::from_millis(2500), "{six:?}");
}
