//! Agent connectivity and desired-state generations, shared by the agent channel (`agents`), the
//! placement index and the service scheduler.
//!
//! Connectivity is soft state kept in memory: an instance is `agentConnected` while its agent
//! polled (or registered) within [`DISCONNECTED_AFTER_SECONDS`]. After a control-plane restart
//! agents reconnect within one poll interval.

use berth_agent_api::DISCONNECTED_AFTER_SECONDS;
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

    pub(crate) fn subscribe(&self, instance_id: &str) -> Option<watch::Receiver<u64>> {
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
