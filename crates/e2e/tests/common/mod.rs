//! An in-process berth control plane on 127.0.0.1:0 and an official AWS SDK client for it.

#![allow(dead_code)]

use berth_auth::Role;
use berth_control_plane::{admin, App};
use berth_core::Scope;
use berth_store::{MemoryStore, StateStore};
use std::sync::Arc;

pub struct TestServer {
    pub endpoint: String,
    pub app: Arc<App>,
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
        let app = App::new(store, Scope::new("us-east-1", "000000000000"), true)
            .await
            .expect("app");
        let key = admin::create_key(&app, Role::Admin, "test", None)
            .await
            .expect("key");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app2 = app.clone();
        let task = tokio::spawn(async move {
            let _ = berth_control_plane::serve(listener, app2, async move {
                let _ = rx.await;
            })
            .await;
        });
        TestServer {
            endpoint,
            app,
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
        let weak = std::sync::Arc::downgrade(&self.app);
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

/// A simulated agent: registers a container instance, long-polls its desired state and reports
/// every task RUNNING (or STOPPED when told to stop), like a fast, obedient host. A task whose image
/// is tagged `:bad` is reported STOPPED at once, as if its image could not be pulled.
pub struct SimAgent {
    pub instance_arn: String,
    handle: tokio::task::JoinHandle<()>,
}

impl SimAgent {
    pub async fn start(s: &TestServer, cluster: &str, az: &str, cpu: i32, mem: i32) -> SimAgent {
        use aws_sdk_ecs::types::Resource;
        let ecs = s.ecs();
        let inst = ecs
            .register_container_instance()
            .cluster(cluster)
            .instance_identity_document(format!(
                r#"{{"availabilityZone":"{az}","instanceType":"sim"}}"#
            ))
            .total_resources(
                Resource::builder()
                    .name("CPU")
                    .r#type("INTEGER")
                    .integer_value(cpu)
                    .build(),
            )
            .total_resources(
                Resource::builder()
                    .name("MEMORY")
                    .r#type("INTEGER")
                    .integer_value(mem)
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .container_instance
            .unwrap()
            .container_instance_arn
            .unwrap();
        let client =
            berth_client::Client::new(&s.endpoint, "us-east-1", &s.access_key_id, &s.secret)
                .unwrap();
        let cluster = cluster.to_string();
        let arn = inst.clone();
        let handle = tokio::spawn(async move {
            let mut known = 0u64;
            let mut reported: std::collections::HashMap<String, String> = Default::default();
            loop {
                let Ok(v) = client
                    .call(
                        "ecs",
                        "BerthAgent_20261122.PollDesiredState",
                        &serde_json::json!({"cluster": cluster, "containerInstanceArn": arn, "knownGeneration": known, "waitSeconds": 2}),
                    )
                    .await
                else {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                };
                let resp: berth_agent_api::PollResponse = serde_json::from_value(v).unwrap();
                known = resp.generation.max(known);
                if resp.instance_status == "INACTIVE" {
                    return;
                }
                for t in resp.tasks {
                    // An image tagged `:bad` never starts, like a failing pull.
                    let bad = t
                        .task_definition
                        .container_definitions
                        .as_deref()
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.image.as_deref().is_some_and(|i| i.ends_with(":bad")));
                    let want = if t.desired_status == "RUNNING" && !bad {
                        "RUNNING"
                    } else {
                        "STOPPED"
                    };
                    if reported.get(&t.task_arn).map(String::as_str) == Some(want) {
                        continue;
                    }
                    let containers: Vec<serde_json::Value> = t
                        .task_definition
                        .container_definitions
                        .unwrap_or_default()
                        .iter()
                        .map(|c| serde_json::json!({"containerName": c.name, "status": want, "runtimeId": "sim"}))
                        .collect();
                    let ok = client
                        .call(
                            "ecs",
                            "AmazonEC2ContainerServiceV20141113.SubmitTaskStateChange",
                            &serde_json::json!({"cluster": cluster, "task": t.task_arn, "status": want, "containers": containers,
                                "reason": if bad { "CannotPullContainerError: pull access denied" } else { "Task stopped" }}),
                        )
                        .await
                        .is_ok();
                    if ok {
                        reported.insert(t.task_arn.clone(), want.to_string());
                    }
                }
            }
        });
        SimAgent {
            instance_arn: inst,
            handle,
        }
    }

    /// Simulates the host going away (the agent stops polling).
    pub fn kill(&self) {
        self.handle.abort();
    }
}

impl Drop for SimAgent {
    fn drop(&mut self) {
        self.handle.abort();
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
