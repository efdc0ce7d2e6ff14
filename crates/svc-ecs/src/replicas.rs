//! The control-plane replicas sharing one store, as seen from this one.
//!
//! Every replica announces itself every [`HEARTBEAT`] under `replicas/<node>` — with etcd a
//! lease-bound key ([`Presence`]) that disappears one lease TTL after the replica dies — carrying
//! its endpoint, start time, whether it leads, and when it last heard from each agent. Every
//! replica watches `replicas/`:
//! * agent liveness is merged across replicas (an agent long-polls one replica; the leader's
//!   scheduler must not presume its tasks lost because it polls another one);
//! * its own heartbeat arriving through the watch gives the watch lag metric;
//! * `berth status` (`BerthAdmin.DescribeStatus`) lists the replicas.
//!
//! On a single-node store (SQLite, memory) there is no presence: this replica is the only one.
//!
//! What this replica knows of the others is kept in `replica_view` (`Ecs::replicas`).

use crate::replica_view::ReplicaInfo;
use crate::state::Ecs;
use berth_service::now_epoch;
use berth_service::repo::to_bytes;
use berth_store::{EventKind, StoreError};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Key prefix of the replica announcements.
pub const PREFIX: &str = "replicas/";
/// How often a replica announces itself.
pub const HEARTBEAT: Duration = Duration::from_secs(3);
/// The presence TTL the binary uses (a dead replica is dropped this long after its last beat).
pub const PRESENCE_TTL: Duration = Duration::from_secs(10);

/// Writes this replica's announcement (with etcd: a lease-bound key).
#[async_trait::async_trait]
pub trait Presence: Send + Sync {
    async fn announce(&self, value: Vec<u8>) -> Result<(), StoreError>;
}

fn own_info(app: &Ecs, node: &str, endpoint: &str, started_at: f64) -> ReplicaInfo {
    ReplicaInfo {
        node: node.to_string(),
        endpoint: endpoint.to_string(),
        started_at,
        heartbeat_at: now_epoch(),
        leader: app.is_leader(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        agents: app.agents.local_seen_epochs(),
    }
}

/// What the other replicas saw of the agents (the freshest report per instance).
fn merge_remote(app: &Ecs, node: &str) {
    let mut seen: HashMap<String, f64> = HashMap::new();
    for r in app.replicas.list() {
        if r.node == node {
            continue;
        }
        for (id, at) in r.agents {
            let e = seen.entry(id).or_insert(at);
            if at > *e {
                *e = at;
            }
        }
    }
    app.agents.set_remote(seen);
    app.metrics.replicas.set(app.replicas.list().len() as i64);
}

/// Starts announcing this replica (`presence`: `None` on a single-node store) and following the
/// others.
pub fn spawn(
    app: Arc<Ecs>,
    node: String,
    endpoint: String,
    presence: Option<Arc<dyn Presence>>,
) -> tokio::task::JoinHandle<()> {
    let _ = app.replicas.node.set(node.clone());
    let started_at = now_epoch();
    let Some(presence) = presence else {
        return tokio::spawn(async move {
            loop {
                app.replicas
                    .set(own_info(&app, &node, &endpoint, started_at));
                app.metrics.replicas.set(1);
                tokio::time::sleep(HEARTBEAT).await;
            }
        });
    };
    {
        let app = app.clone();
        let node = node.clone();
        tokio::spawn(async move { follow(app, node).await });
    }
    tokio::spawn(async move {
        loop {
            let info = own_info(&app, &node, &endpoint, started_at);
            if let Err(e) = presence.announce(to_bytes(&info)).await {
                tracing::warn!(error = %e, "announcing this replica failed");
            }
            tokio::time::sleep(HEARTBEAT).await;
        }
    })
}

/// Lists `replicas/`, then follows it by watch; re-lists after any interruption.
async fn follow(app: Arc<Ecs>, node: String) {
    loop {
        let listed = app
            .store
            .range(berth_store::RangeRequest {
                prefix: PREFIX.into(),
                ..Default::default()
            })
            .await;
        let from = match listed {
            Ok(r) => {
                let all = r
                    .kvs
                    .iter()
                    .filter_map(|kv| serde_json::from_slice::<ReplicaInfo>(&kv.value).ok())
                    .map(|i| (i.node.clone(), i))
                    .collect();
                app.replicas.replace(all);
                merge_remote(&app, &node);
                r.revision
            }
            Err(e) => {
                tracing::warn!(error = %e, "listing the replicas failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        match app.store.watch(PREFIX, from).await {
            Ok(mut stream) => {
                while let Some(ev) = stream.next().await {
                    let Ok(ev) = ev else { break };
                    match ev.kind {
                        EventKind::Put => {
                            if let Ok(info) = serde_json::from_slice::<ReplicaInfo>(&ev.kv.value) {
                                if info.node == node {
                                    let lag = (now_epoch() - info.heartbeat_at).max(0.0);
                                    app.metrics.watch_lag.set(lag);
                                }
                                app.replicas.set(info);
                            }
                        }
                        EventKind::Delete => {
                            let gone = ev.kv.key.trim_start_matches(PREFIX);
                            tracing::info!(replica = %gone, "replica gone");
                            app.replicas.remove(gone);
                        }
                    }
                    merge_remote(&app, &node);
                }
            }
            Err(e) => tracing::warn!(error = %e, "watching the replicas failed"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `BerthAdmin_20261122.DescribeStatus` (`berth status`): replicas, leader, store health and
/// latency, container instances with their agents' connectivity.
pub async fn describe_status(app: &Ecs) -> Result<serde_json::Value, berth_service::ApiError> {
    use crate::records::{ContainerInstanceRecord, InstanceStatus};
    let me = app.replicas.node().unwrap_or("this replica").to_string();
    let started = std::time::Instant::now();
    let probe = app.store.current_revision().await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let store = match &probe {
        Ok(rev) => serde_json::json!({
            "backend": app.store.backend_name(), "healthy": true,
            "latencyMs": latency_ms, "revision": rev,
        }),
        Err(e) => serde_json::json!({
            "backend": app.store.backend_name(), "healthy": false,
            "latencyMs": latency_ms, "error": e.to_string(),
        }),
    };
    let leader = if app.store.backend_name() == "etcd" {
        match app.store.get(berth_service::leader::LEADER_KEY).await {
            Ok(Some(kv)) => serde_json::json!({
                "node": String::from_utf8_lossy(&kv.value),
                "fencingToken": kv.create_revision,
            }),
            Ok(None) => serde_json::Value::Null,
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        }
    } else {
        serde_json::json!({ "node": me, "fencingToken": null })
    };
    let now = now_epoch();
    let replicas: Vec<serde_json::Value> = app
        .replicas
        .list()
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "node": r.node,
                "endpoint": r.endpoint,
                "startedAt": r.started_at,
                "heartbeatAgeSeconds": (now - r.heartbeat_at).max(0.0),
                "leader": r.leader,
                "version": r.version,
                "agentsPolling": r.agents.values().filter(|&&at| now - at < berth_agent_api::DISCONNECTED_AFTER_SECONDS as f64).count(),
                "self": r.node == me,
            })
        })
        .collect();
    let mut agents = Vec::new();
    if probe.is_ok() {
        for i in app
            .repo
            .list::<ContainerInstanceRecord>(crate::keys::INSTANCES)
            .await?
        {
            let i = i.value;
            if i.status == InstanceStatus::Inactive {
                continue;
            }
            agents.push(serde_json::json!({
                "cluster": i.cluster,
                "containerInstanceArn": app.scope.container_instance_arn(&i.cluster, &i.id),
                "ec2InstanceId": i.ec2_instance_id,
                "status": i.status.as_str(),
                "agentConnected": app.agents.connected(&i.id),
                "lastSeenSecondsAgo": app.agents.last_seen_age(&i.id),
                "runningTasks": i.held.tasks(),
            }));
        }
    }
    Ok(serde_json::json!({
        "node": me,
        "thisReplicaLeads": app.is_leader(),
        "leader": leader,
        "replicas": replicas,
        "store": store,
        "agents": agents,
    }))
}
