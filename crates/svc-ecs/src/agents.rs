//! The agent channel (control plane side): `BerthAgent_20261122.PollDesiredState`, agent
//! connectivity, and the per-instance generation notifications that wake held polls.
//!
//! Connectivity is soft state kept in memory: an instance is `agentConnected` while its agent
//! polled (or registered) within [`DISCONNECTED_AFTER_SECONDS`]. After a control-plane restart
//! agents reconnect within one poll interval.

use crate::keys;
use crate::records::ContainerInstanceRecord;
use crate::state::Ctx;
use berth_agent_api::{
    DesiredTask, PollRequest, PollResponse, DISCONNECTED_AFTER_SECONDS, MAX_WAIT_SECONDS,
};
use berth_service::ApiError;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub struct AgentHub {
    last_seen: Mutex<HashMap<String, Instant>>,
    /// When the other control-plane replicas last heard from each agent (wall-clock epoch
    /// seconds, from their heartbeats in `replicas/`): an agent polling another replica is
    /// connected, not lost, for the leader too.
    remote_seen: Mutex<HashMap<String, f64>>,
    generations: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// When this replica started: an agent is never presumed lost sooner than this + the timeout
    /// (after a control-plane restart nobody has polled yet).
    started: Instant,
}

impl Default for AgentHub {
    fn default() -> Self {
        Self {
            last_seen: Mutex::default(),
            remote_seen: Mutex::default(),
            generations: Mutex::default(),
            started: Instant::now(),
        }
    }
}

impl AgentHub {
    /// The instance's agent has been silent for longer than `after` (and this replica has been
    /// up that long): its tasks are presumed lost.
    pub fn lost(&self, instance_id: &str, after: Duration) -> bool {
        if self.started.elapsed() < after {
            return false;
        }
        let seen = self
            .last_seen
            .lock()
            .ok()
            .and_then(|m| m.get(instance_id).copied());
        seen.is_none_or(|t| t.elapsed() >= after)
            && self
                .remote_age(instance_id)
                .is_none_or(|age| age >= after.as_secs_f64())
    }

    /// Seconds since another replica last heard from the instance's agent, if one did.
    fn remote_age(&self, instance_id: &str) -> Option<f64> {
        let seen = self.remote_seen.lock().ok()?.get(instance_id).copied()?;
        Some((berth_service::now_epoch() - seen).max(0.0))
    }

    /// Replaces what the other replicas report (instance id → epoch seconds last seen).
    pub fn set_remote(&self, seen: HashMap<String, f64>) {
        if let Ok(mut m) = self.remote_seen.lock() {
            *m = seen;
        }
    }

    /// When this replica last heard from each agent (epoch seconds), for its heartbeat.
    pub fn local_seen_epochs(&self) -> std::collections::BTreeMap<String, f64> {
        let now = berth_service::now_epoch();
        self.last_seen
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(k, t)| (k.clone(), now - t.elapsed().as_secs_f64()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Seconds since any replica (this one or another) last heard from the instance's agent.
    pub fn last_seen_age(&self, instance_id: &str) -> Option<f64> {
        let local = self
            .last_seen
            .lock()
            .ok()
            .and_then(|m| m.get(instance_id).map(|t| t.elapsed().as_secs_f64()));
        youngest(local, self.remote_age(instance_id))
    }

    /// Records agent activity for a container instance (a poll or a registration).
    pub fn seen(&self, instance_id: &str) {
        if let Ok(mut m) = self.last_seen.lock() {
            m.insert(instance_id.to_string(), Instant::now());
        }
    }

    pub fn connected(&self, instance_id: &str) -> bool {
        is_connected(self.last_seen_age(instance_id))
    }

    /// [`AgentHub::connected`] for many instances, taking each lock once.
    pub fn connected_many<'a>(&self, instance_ids: impl Iterator<Item = &'a str>) -> Vec<bool> {
        let now = Instant::now();
        let epoch = berth_service::now_epoch();
        let local = self.last_seen.lock().ok();
        let remote = self.remote_seen.lock().ok();
        instance_ids
            .map(|id| {
                let l = local
                    .as_ref()
                    .and_then(|m| m.get(id))
                    .map(|t| now.saturating_duration_since(*t).as_secs_f64());
                let r = remote
                    .as_ref()
                    .and_then(|m| m.get(id))
                    .map(|s| (epoch - s).max(0.0));
                is_connected(youngest(l, r))
            })
            .collect()
    }

    /// Forgets an instance's connectivity (deregistration).
    pub fn forget(&self, instance_id: &str) {
        if let Ok(mut m) = self.last_seen.lock() {
            m.remove(instance_id);
        }
        if let Ok(mut m) = self.remote_seen.lock() {
            m.remove(instance_id);
        }
    }

    /// Tells held polls of `instance_id` that its desired state reached `generation`.
    pub fn publish(&self, instance_id: &str, generation: u64) {
        if let Ok(mut m) = self.generations.lock() {
            let tx = m
                .entry(instance_id.to_string())
                .or_insert_with(|| watch::channel(0).0);
            tx.send_if_modified(|g| {
                if generation > *g {
                    *g = generation;
                    true
                } else {
                    false
                }
            });
        }
    }

    fn subscribe(&self, instance_id: &str) -> Option<watch::Receiver<u64>> {
        let mut m = self.generations.lock().ok()?;
        Some(
            m.entry(instance_id.to_string())
                .or_insert_with(|| watch::channel(0).0)
                .subscribe(),
        )
    }
}

/// The more recent of two sightings (seconds ago), by this replica and by another.
fn youngest(local: Option<f64>, remote: Option<f64>) -> Option<f64> {
    match (local, remote) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `agentConnected`: heard from within DISCONNECTED_AFTER_SECONDS.
fn is_connected(age: Option<f64>) -> bool {
    age.is_some_and(|a| a < Duration::from_secs(DISCONNECTED_AFTER_SECONDS).as_secs_f64())
}

/// The two fields of a stored [`ContainerInstanceRecord`] the generation watch reads: every
/// placement rewrites the record, and skipping the rest (attributes, resources, counters) costs
/// a fraction of decoding it.
#[derive(serde::Deserialize)]
struct InstanceGeneration<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    generation: u64,
}

/// Follows every instance record through the store's watch and wakes held polls when an
/// instance's generation moves — so a task placed through another replica (or another process
/// sharing the store) reaches its agent at once, not at the poll's timeout. On this replica the
/// writers also publish directly; repeated publishes are no-ops.
pub fn spawn_generation_watch(app: std::sync::Arc<crate::Ecs>) -> tokio::task::JoinHandle<()> {
    use futures::StreamExt;
    tokio::spawn(async move {
        loop {
            let from = app.store.current_revision().await.unwrap_or(0);
            match app.store.watch(keys::INSTANCES, from).await {
                Ok(mut stream) => {
                    while let Some(ev) = stream.next().await {
                        let Ok(ev) = ev else { break };
                        if ev.kind != berth_store::EventKind::Put {
                            continue;
                        }
                        if let Ok(g) =
                            serde_json::from_slice::<InstanceGeneration<'_>>(&ev.kv.value)
                        {
                            app.agents.publish(&g.id, g.generation);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "instance watch failed; retrying"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

/// The desired state of one instance: every task holding resources on it.
pub async fn desired_state(
    ctx: &Ctx,
    inst: &ContainerInstanceRecord,
) -> Result<Vec<DesiredTask>, ApiError> {
    let live = crate::ecs::tasks::live_on_instance(ctx, &inst.cluster, &inst.id).await?;
    let mut out = Vec::with_capacity(live.len());
    for t in live {
        let td = crate::ecs::taskdefs::by_arn(ctx, &t.task_definition_arn)
            .await?
            .map(|r| r.definition.clone());
        let Some(task_definition) = td else {
            tracing::warn!(task = %t.id, td = %t.task_definition_arn, "task definition of a live task is gone");
            continue;
        };
        out.push(DesiredTask {
            task_arn: ctx.app.scope.task_arn(&t.cluster, &t.id),
            cluster_arn: ctx.app.scope.cluster_arn(&t.cluster),
            desired_status: t.desired_status.clone(),
            task_definition,
            overrides: t.overrides.clone(),
            group: t.group.clone(),
            started_by: t.started_by.clone(),
            created_at: t.created_at,
            stopped_reason: t.stopped_reason.clone(),
            stop_code: t.stop_code.clone(),
            tags: crate::records::tags_to_wire(&t.tags),
            network_configuration: t.network_configuration.clone(),
            gpu_ids: t
                .containers
                .iter()
                .filter(|c| !c.gpu_ids.is_empty())
                .map(|c| (c.name.clone(), c.gpu_ids.clone()))
                .collect(),
        });
    }
    Ok(out)
}

pub(crate) fn instance_id_of(arn: &str) -> Option<&str> {
    if arn.starts_with("arn:") {
        match berth_core::Arn::parse(arn)?.ecs_resource()? {
            (berth_core::ResourceKind::ContainerInstance, rest) => rest.rsplit('/').next(),
            _ => None,
        }
    } else {
        Some(arn)
    }
}

pub async fn poll(ctx: &Ctx, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let req: PollRequest = berth_service::codec::parse(body)?;
    let cluster = crate::ecs::cluster_arg(Some(&req.cluster))?;
    let id = instance_id_of(&req.container_instance_arn)
        .ok_or_else(|| {
            ApiError::invalid_parameter("containerInstanceArn is not a container instance ARN.")
        })?
        .to_string();
    let key = keys::instance(&cluster, &id);
    let wait = Duration::from_secs(req.wait_seconds.min(MAX_WAIT_SECONDS) as u64);
    let mut rx = ctx.app.agents.subscribe(&id);
    let deadline = tokio::time::Instant::now() + wait;
    ctx.app.metrics.agent_polls_held.inc();
    let _held = scopeguard(|| {
        ctx.app.metrics.agent_polls_held.dec();
    });
    loop {
        ctx.app.agents.seen(&id);
        let inst = match ctx.app.repo.get::<ContainerInstanceRecord>(&key).await? {
            Some(r) => r.value,
            None => {
                return berth_service::codec::encode(&PollResponse {
                    generation: req.known_generation,
                    instance_status: "INACTIVE".into(),
                    tasks: vec![],
                })
            }
        };
        if inst.generation > req.known_generation
            || inst.status == "INACTIVE"
            || tokio::time::Instant::now() >= deadline
        {
            let tasks = if inst.status == "INACTIVE" {
                vec![]
            } else {
                desired_state(ctx, &inst).await?
            };
            return berth_service::codec::encode(&PollResponse {
                generation: inst.generation,
                instance_status: inst.status,
                tasks,
            });
        }
        match &mut rx {
            Some(rx) => {
                let _ = tokio::time::timeout_at(deadline, rx.changed()).await;
            }
            None => tokio::time::sleep_until(deadline).await,
        }
    }
}

/// Runs `f` when dropped (the poll may end by return, error or cancellation).
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{AttributeRecord, HeldRecord, ResourcesRecord};

    /// The generation watch's two-field view reads what a stored instance record holds,
    /// whatever else it carries (ids with escapes are borrowed or copied as needed).
    #[test]
    fn the_generation_view_reads_a_stored_instance_record() {
        for id in ["0123456789abcdef", "with \"escapes\" \\ in it"] {
            let rec = ContainerInstanceRecord {
                id: id.into(),
                cluster: "c".into(),
                ec2_instance_id: Some("i-1".into()),
                status: "ACTIVE".into(),
                status_reason: None,
                registered_at: 1.5,
                registered: ResourcesRecord {
                    cpu: 1024,
                    memory: 2048,
                    ..Default::default()
                },
                attributes: std::sync::Arc::new(vec![AttributeRecord {
                    name: "generation".into(),
                    value: Some("not this one".into()),
                }]),
                version_info: None,
                tags: vec![],
                generation: 42,
                version: 7,
                held: HeldRecord::default(),
            };
            let bytes = serde_json::to_vec(&rec).unwrap();
            let g: InstanceGeneration<'_> = serde_json::from_slice(&bytes).unwrap();
            assert_eq!((g.id.as_ref(), g.generation), (id, 42));
        }
    }
}
