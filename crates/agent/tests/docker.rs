//! The agent against the real Docker engine (with the fake control plane). Skipped, with a
//! `SKIP:` line, when Docker is unreachable. Uses the local image `berth-test/busybox:latest`
//! (built by `scripts/test-images.sh` if missing). Each test joins its own cluster name, and a
//! drop guard force-removes everything labelled with it.

use std::sync::Arc;
use std::time::Duration;

use berth_agent::control::TaskStateChange;
use berth_agent::{AgentConfig, FakeControlPlane, ImagePullBehavior};
use berth_agent_api::DesiredTask;
use berth_runtime::{ContainerRuntime, LabelFilter, ListOptions, RemoveOptions};
use berth_runtime_docker::DockerRuntime;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const IMAGE: &str = "berth-test/busybox:latest";

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn docker() -> Option<DockerRuntime> {
    let d = match DockerRuntime::connect().await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("SKIP: docker unreachable: {e}");
            return None;
        }
    };
    if !d.image_exists(IMAGE).await.unwrap_or(false) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/test-images.sh");
        let ok = std::process::Command::new("bash")
            .arg(script)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("SKIP: cannot build {IMAGE}");
            return None;
        }
    }
    Some(d)
}

/// Removes every container, network and volume of the test's cluster.
struct Cleanup {
    cluster: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let cluster = self.cluster.clone();
        let h = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(d) = DockerRuntime::connect().await else {
                    return;
                };
                let filter = LabelFilter::any().with(berth_agent::spec::LABEL_CLUSTER, cluster);
                if let Ok(list) = d
                    .list_containers(&ListOptions {
                        filter: filter.clone(),
                        include_stopped: true,
                    })
                    .await
                {
                    for c in list {
                        let _ = d
                            .remove_container(
                                &c.id,
                                RemoveOptions {
                                    force: true,
                                    remove_volumes: true,
                                },
                            )
                            .await;
                    }
                }
                for n in d.list_networks(&filter).await.unwrap_or_default() {
                    let _ = d.remove_network(&n.id).await;
                }
                for v in d.list_volumes(&filter).await.unwrap_or_default() {
                    let _ = d.remove_volume(&v.name, true).await;
                }
            });
        });
        let _ = h.join();
    }
}

struct Harness {
    cp: FakeControlPlane,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    join: tokio::task::JoinHandle<Result<(), berth_agent::AgentError>>,
    _dir: tempfile::TempDir,
    _cleanup: Cleanup,
}

impl Harness {
    async fn start(d: DockerRuntime) -> Self {
        let cluster = unique("berth-agent-test");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = AgentConfig {
            cluster: cluster.clone(),
            data_dir: dir.path().to_path_buf(),
            container_stop_timeout: Duration::from_secs(2),
            image_pull_behavior: ImagePullBehavior::PreferCached,
            metadata_port: 0,
            ..AgentConfig::default()
        };
        let cp = FakeControlPlane::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let join = tokio::spawn(berth_agent::run_with(
            config,
            Arc::new(d),
            Arc::new(cp.clone()),
            async move {
                let _ = rx.await;
            },
        ));
        Self {
            cp,
            stop: Some(tx),
            join,
            _dir: dir,
            _cleanup: Cleanup { cluster },
        }
    }

    async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.join).await;
    }

    async fn wait_for(
        &self,
        arn: &str,
        what: &str,
        pred: impl Fn(&TaskStateChange) -> bool,
    ) -> TaskStateChange {
        for _ in 0..300 {
            if let Some(r) = self.cp.latest(arn) {
                if pred(&r) {
                    return r;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out waiting for {what}: {:#?}", self.cp.latest(arn));
    }
}

fn task(desired: &str, td: Value) -> DesiredTask {
    let id = uuid::Uuid::new_v4().simple().to_string();
    DesiredTask {
        task_arn: format!("arn:aws:ecs:us-east-1:000000000000:task/test/{id}"),
        cluster_arn: "arn:aws:ecs:us-east-1:000000000000:cluster/test".into(),
        desired_status: desired.into(),
        task_definition: serde_json::from_value(td).expect("task definition"),
        group: "family:t".into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleep_task_runs_and_stops() {
    let Some(d) = docker().await else { return };
    let h = Harness::start(d.clone()).await;
    let mut t = task(
        "RUNNING",
        json!({"family": "sleep", "revision": 1, "containerDefinitions": [
            {"name": "sleep", "image": IMAGE, "memory": 32, "command": ["sleep", "360"]}]}),
    );
    h.cp.set_desired(vec![t.clone()]);
    let r = h
        .wait_for(&t.task_arn, "RUNNING", |r| r.status == "RUNNING")
        .await;
    let id = r.containers[0].runtime_id.clone().expect("runtime id");
    let info = d
        .inspect_container(&berth_runtime::ContainerId::new(id))
        .await
        .expect("inspect");
    assert_eq!(
        info.labels.get("com.amazonaws.ecs.task-arn"),
        Some(&t.task_arn)
    );
    assert_eq!(
        info.labels
            .get("com.amazonaws.ecs.container-name")
            .map(String::as_str),
        Some("sleep")
    );
    t.desired_status = "STOPPED".into();
    t.stopped_reason = Some("done".into());
    h.cp.set_desired(vec![t.clone()]);
    let r = h
        .wait_for(&t.task_arn, "STOPPED", |r| r.status == "STOPPED")
        .await;
    assert_eq!(r.reason.as_deref(), Some("done"));
    // sleep as PID 1 ignores SIGTERM: killed after the stop timeout.
    assert_eq!(r.containers[0].exit_code, Some(137));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_dynamic_port_answers() {
    let Some(d) = docker().await else { return };
    let h = Harness::start(d).await;
    let t = task(
        "RUNNING",
        json!({"family": "web", "revision": 1, "networkMode": "bridge", "containerDefinitions": [
            {"name": "web", "image": IMAGE, "memory": 32,
             "entryPoint": ["sh", "-c"],
             "command": ["mkdir -p /www && echo hello-berth > /www/index.html && exec httpd -f -p 80 -h /www"],
             "portMappings": [{"containerPort": 80}]}]}),
    );
    h.cp.set_desired(vec![t.clone()]);
    let r = h
        .wait_for(&t.task_arn, "RUNNING with a binding", |r| {
            r.status == "RUNNING" && !r.containers[0].network_bindings.is_empty()
        })
        .await;
    let b = &r.containers[0].network_bindings[0];
    assert_eq!(b.container_port, Some(80));
    let port = b.host_port.expect("host port");
    assert!(port > 0);
    let mut body = String::new();
    for _ in 0..50 {
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port as u16)).await {
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n").await;
            body.clear();
            let _ = s.read_to_string(&mut body).await;
            if body.contains("hello-berth") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(body.contains("hello-berth"), "got {body:?}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn essential_exit_3() {
    let Some(d) = docker().await else { return };
    let h = Harness::start(d).await;
    let t = task(
        "RUNNING",
        json!({"family": "exit3", "revision": 1, "containerDefinitions": [
            {"name": "main", "image": IMAGE, "memory": 32, "command": ["sh", "-c", "sleep 1; exit 3"]},
            {"name": "side", "image": IMAGE, "memory": 32, "essential": false, "command": ["sleep", "360"]}]}),
    );
    h.cp.set_desired(vec![t.clone()]);
    let r = h
        .wait_for(&t.task_arn, "STOPPED", |r| r.status == "STOPPED")
        .await;
    let main = r
        .containers
        .iter()
        .find(|c| c.name == "main")
        .expect("main");
    assert_eq!(main.exit_code, Some(3));
    assert_eq!(
        r.reason.as_deref(),
        Some("Essential container in task exited")
    );
    let side = r
        .containers
        .iter()
        .find(|c| c.name == "side")
        .expect("side");
    assert_eq!(side.status, "STOPPED");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_image_stops_with_cannot_pull() {
    let Some(d) = docker().await else { return };
    let h = Harness::start(d).await;
    let t = task(
        "RUNNING",
        json!({"family": "bad", "revision": 1, "containerDefinitions": [
            {"name": "x", "image": "berth-test/does-not-exist:nope", "memory": 32}]}),
    );
    h.cp.set_desired(vec![t.clone()]);
    let r = h
        .wait_for(&t.task_arn, "STOPPED", |r| r.status == "STOPPED")
        .await;
    assert!(
        r.reason
            .as_deref()
            .is_some_and(|s| s.starts_with("CannotPullContainerError:")),
        "{r:#?}"
    );
    h.shutdown().await;
}
