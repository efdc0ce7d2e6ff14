//! An in-process berth control plane on 127.0.0.1:0 and an official AWS SDK client for it.

#![allow(dead_code)]

use berth_auth::Role;
use berth_core::Scope;
use berth_server::{ControlPlane, ControlPlaneConfig};
use berth_store::{MemoryStore, StateStore};
use berth_svc_admin as admin;
use std::sync::Arc;

/// The control plane as `berth server` builds it, on `store`, serving at `endpoint`, its log
/// store and registry in `data_dir`.
pub async fn control_plane(
    store: Arc<dyn StateStore>,
    data_dir: &std::path::Path,
    endpoint: &str,
) -> ControlPlane {
    ControlPlane::build(ControlPlaneConfig {
        store,
        scope: Scope::new("us-east-1", "000000000000"),
        data_dir: data_dir.to_path_buf(),
        endpoint: endpoint.to_string(),
        registry_host: None,
        task_roles: Default::default(),
        allow_reset: true,
        ecr_lifecycle_interval: std::time::Duration::from_secs(3600),
        leadership: None,
        metrics: Arc::new(berth_service::metrics::Metrics::default()),
    })
    .await
    .expect("control plane")
}

pub struct TestServer {
    pub endpoint: String,
    /// The ECS service's state (placement cache, agents …).
    pub app: Arc<berth_svc_ecs::Ecs>,
    pub admin: Arc<admin::Admin>,
    _data: tempfile::TempDir,
    pub access_key_id: String,
    pub secret: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with_store(Arc::new(MemoryStore::new())).await
    }

    pub async fn with_store(store: Arc<dyn StateStore>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let data = tempfile::tempdir().expect("data dir");
        let cp = control_plane(store, data.path(), &endpoint).await;
        let key = admin::create_key(&cp.admin, Role::Admin, "test", None)
            .await
            .expect("key");
        let (app, admin) = (cp.ecs.clone(), cp.admin.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = cp
                .serve(listener, async move {
                    let _ = rx.await;
                })
                .await;
        });
        TestServer {
            endpoint,
            app,
            admin,
            _data: data,
            access_key_id: key.access_key_id,
            secret: key.secret_access_key,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Graceful stop; returns once the server task (and everything it holds) is gone.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(std::time::Duration::from_secs(10), t)
                .await
                .expect("server did not shut down within 10 s")
                .expect("server task panicked");
        }
        let weak = Arc::downgrade(&self.app);
        drop(self);
        for _ in 0..100 {
            if weak.upgrade().is_none() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!(
            "the server's state is still referenced {} times after stop",
            weak.strong_count()
        );
    }

    pub fn ecs(&self) -> aws_sdk_ecs::Client {
        self.ecs_as(&self.access_key_id.clone(), &self.secret.clone())
    }

    pub fn ecs_as(&self, akid: &str, secret: &str) -> aws_sdk_ecs::Client {
        let creds = aws_credential_types::Credentials::from_keys(akid, secret, None);
        let conf = aws_sdk_ecs::Config::builder()
            .endpoint_url(&self.endpoint)
            .region(aws_sdk_ecs::config::Region::new("us-east-1"))
            .credentials_provider(creds)
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .behavior_version(aws_sdk_ecs::config::BehaviorVersion::latest())
            .build();
        aws_sdk_ecs::Client::from_conf(conf)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A simulated agent: the real agent ([`berth_agent::sim::SimInstance`], the same code as
/// `berth sim`) on a fake engine, registered with `az`, `cpu` units and `mem` MiB. A task whose
/// image is `busybox:bad` fails to pull (CannotPullContainerError), so it never starts.
pub struct SimAgent {
    pub instance_arn: String,
    pub sim: berth_agent::sim::SimInstance,
    _dir: tempfile::TempDir,
}

impl SimAgent {
    pub async fn start(s: &TestServer, cluster: &str, az: &str, cpu: i32, mem: i32) -> SimAgent {
        let dir = tempfile::tempdir().unwrap();
        let config = berth_agent::sim::InstanceConfig::new(
            cluster,
            az,
            cpu as u32,
            mem as u64,
            dir.path().to_path_buf(),
        );
        Self::start_with(&s.endpoint, &s.access_key_id, &s.secret, config, dir).await
    }

    /// An agent against `endpoint` as `config` describes it, keeping its identity in `dir`.
    pub async fn start_with(
        endpoint: &str,
        akid: &str,
        secret: &str,
        config: berth_agent::sim::InstanceConfig,
        dir: tempfile::TempDir,
    ) -> SimAgent {
        use berth_agent::sim::{FleetStats, SimInstance};
        let control = Arc::new(
            berth_agent::HttpControlPlane::new(&[endpoint.to_string()], "us-east-1", akid, secret)
                .unwrap(),
        );
        let mut sim = SimInstance::spawn(
            &config,
            control,
            Arc::new(FleetStats::default()),
            Arc::new(tokio::sync::Semaphore::new(1)),
        );
        sim.runtime.fail_pull(
            "busybox:bad",
            "pull access denied for busybox, repository does not exist",
        );
        let instance_arn =
            tokio::time::timeout(std::time::Duration::from_secs(20), sim.registered())
                .await
                .expect("simulated agent did not register within 20 s")
                .expect("simulated agent ended before registering");
        SimAgent {
            instance_arn,
            sim,
            _dir: dir,
        }
    }

    /// Task ARNs of this agent's fake containers that are running now.
    pub async fn running_task_arns(&self) -> Vec<String> {
        use berth_runtime::ContainerRuntime;
        let mut out = Vec::new();
        for id in self.sim.runtime.container_ids() {
            if let Ok(info) = self.sim.runtime.inspect_container(&id).await {
                if info.state.status == berth_runtime::ContainerStatus::Running {
                    if let Some(arn) = info.labels.get("com.amazonaws.ecs.task-arn") {
                        out.push(arn.clone());
                    }
                }
            }
        }
        out
    }

    /// Simulates the host going away (the agent stops polling and reporting).
    pub fn kill(&mut self) {
        self.sim.kill();
    }
}

/// Polls `f` until it returns true or `secs` pass.
pub async fn eventually<F, Fut>(secs: u64, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

/// A control plane on a SQLite file in a tokio runtime of its own, so [`CrashableServer::crash`]
/// can end it the way a killed process ends: every task, held long-poll and connection dropped at
/// once, nothing flushed beyond what the store had committed. Restart with the same path and port.
pub struct CrashableServer {
    pub endpoint: String,
    pub port: u16,
    rt: Option<tokio::runtime::Runtime>,
}

impl CrashableServer {
    /// Starts on `path` and `port` (0 = any free port); the admin key is `key` (created on the
    /// first start, kept in the store across restarts).
    pub async fn start(
        path: std::path::PathBuf,
        port: u16,
        key: Option<(String, String)>,
    ) -> (Self, (String, String)) {
        tokio::task::spawn_blocking(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            let (endpoint, port, key) = rt.block_on(async move {
                // The crashed server's store closes on its own threads: wait for the file lock.
                let store = loop {
                    match berth_store::SqliteStore::open(&path) {
                        Ok(s) => break Arc::new(s),
                        Err(e) if std::time::Instant::now() > deadline => {
                            panic!("store still locked: {e}")
                        }
                        Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                    }
                };
                let listener = loop {
                    match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                        Ok(l) => break l,
                        Err(e) if std::time::Instant::now() > deadline => {
                            panic!("cannot bind {port}: {e}")
                        }
                        Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                    }
                };
                let addr = listener.local_addr().expect("addr");
                // The log store and registry are not what these tests crash: a directory of their
                // own per start, left behind like a killed process's files.
                let data = tempfile::tempdir().expect("data dir").keep();
                let cp = control_plane(store, &data, &format!("http://{addr}")).await;
                let key = match key {
                    Some(k) => k,
                    None => {
                        let k = admin::create_key(&cp.admin, Role::Admin, "test", None)
                            .await
                            .expect("key");
                        (k.access_key_id, k.secret_access_key)
                    }
                };
                tokio::spawn(async move {
                    let _ = cp.serve(listener, std::future::pending()).await;
                });
                (format!("http://{addr}"), addr.port(), key)
            });
            (
                CrashableServer {
                    endpoint,
                    port,
                    rt: Some(rt),
                },
                key,
            )
        })
        .await
        .expect("server thread")
    }

    /// Ends the server abruptly (its runtime is shut down without waiting for anything).
    pub fn crash(mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }

    pub fn ecs(&self, key: &(String, String)) -> aws_sdk_ecs::Client {
        let creds = aws_credential_types::Credentials::from_keys(&key.0, &key.1, None);
        let conf = aws_sdk_ecs::Config::builder()
            .endpoint_url(&self.endpoint)
            .region(aws_sdk_ecs::config::Region::new("us-east-1"))
            .credentials_provider(creds)
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .behavior_version(aws_sdk_ecs::config::BehaviorVersion::latest())
            .build();
        aws_sdk_ecs::Client::from_conf(conf)
    }
}

impl Drop for CrashableServer {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
