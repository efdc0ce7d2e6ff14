//! Scale-in: which running tasks of a service to stop first — the reverse of placement.
//!
//! As ECS documents it: with `spread` (and by default) the scheduler keeps the service balanced
//! across Availability Zones — it stops a task in the zone with the most tasks of the service,
//! on the instance there with the most tasks of the service (random among equals); with
//! `binpack` it stops the task on the instance that will have the most of the binpacked resource
//! available after the task stops; with `random` it picks at random. Tasks with scale-in
//! protection are never selected.

use std::collections::HashMap;

use crate::index::ClusterIndex;
use crate::request::{BinpackField, SpreadField, Strategy};
use crate::rng::draw;
use crate::snapshot::AZ_ATTRIBUTE;

/// A running task of the service being scaled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTask {
    /// The task ARN.
    pub task_arn: String,
    /// The container instance it runs on (ARN or ID).
    pub container_instance: String,
    /// Task scale-in protection (`protectionEnabled`).
    pub protected: bool,
    /// CPU units the task holds.
    pub cpu: i64,
    /// MiB the task holds.
    pub memory: i64,
}

enum Policy {
    Spread(Option<String>),
    Binpack(BinpackField),
    Random,
}

/// Chooses up to `count` tasks to stop, in stop order, as indices into `tasks`. `strategies` are
/// the service's validated strategies (empty means the service default). Deterministic for a
/// given `seed`. Fewer than `count` are returned when not enough tasks are unprotected.
pub fn select_tasks_to_stop(
    idx: &ClusterIndex<'_>,
    tasks: &[ServiceTask],
    count: usize,
    strategies: &[Strategy],
    seed: u64,
) -> Vec<usize> {
    let policy = match strategies.first() {
        Some(Strategy::Binpack(f)) => Policy::Binpack(*f),
        Some(Strategy::Random) => Policy::Random,
        Some(Strategy::Spread(SpreadField::Attribute(a))) => Policy::Spread(Some(a.clone())),
        Some(Strategy::Spread(SpreadField::Instance)) => Policy::Spread(None),
        None => Policy::Spread(Some(AZ_ATTRIBUTE.to_string())),
    };
    let inst_of: Vec<Option<usize>> = tasks
        .iter()
        .map(|t| idx.instance_index(&t.container_instance))
        .collect();
    // The instance key: the snapshot ARN when known, else what the task says.
    let inst_key: Vec<&str> = tasks
        .iter()
        .zip(&inst_of)
        .map(|(t, i)| {
            i.map_or(t.container_instance.as_str(), |i| {
                idx.snapshot.instances[i].arn.as_str()
            })
        })
        .collect();
    let zone_of: Vec<Option<&str>> = inst_of
        .iter()
        .map(|i| match (&policy, i) {
            (Policy::Spread(Some(attr)), Some(i)) => {
                idx.snapshot.instances[*i].attribute(attr).flatten()
            }
            _ => None,
        })
        .collect();
    let mut per_instance: HashMap<&str, i64> = HashMap::new();
    let mut per_zone: HashMap<Option<&str>, i64> = HashMap::new();
    let mut freed: HashMap<&str, (i64, i64)> = HashMap::new();
    for (t, key) in inst_key.iter().enumerate() {
        *per_instance.entry(key).or_default() += 1;
        *per_zone.entry(zone_of[t]).or_default() += 1;
    }
    let mut chosen = vec![false; tasks.len()];
    let mut out = Vec::new();
    for step in 0..count as u64 {
        let mut best: Option<(usize, (i64, i64, u64))> = None;
        for (t, task) in tasks.iter().enumerate() {
            if chosen[t] || task.protected {
                continue;
            }
            let rnd = draw(seed, step, t as u64);
            // Higher is stopped first.
            let key = match &policy {
                Policy::Random => (0, 0, rnd),
                Policy::Spread(_) => (
                    per_zone.get(&zone_of[t]).copied().unwrap_or(0),
                    per_instance.get(inst_key[t]).copied().unwrap_or(0),
                    rnd,
                ),
                Policy::Binpack(field) => {
                    let (fc, fm) = freed.get(inst_key[t]).copied().unwrap_or((0, 0));
                    let after = match (field, inst_of[t]) {
                        (BinpackField::Cpu, Some(i)) => {
                            idx.cpu[i].saturating_add(fc).saturating_add(task.cpu)
                        }
                        (BinpackField::Memory, Some(i)) => {
                            idx.mem[i].saturating_add(fm).saturating_add(task.memory)
                        }
                        (_, None) => i64::MAX,
                    };
                    (after, 0, rnd)
                }
            };
            let better = match &best {
                None => true,
                Some((b, bk)) => key > *bk || (key == *bk && task.task_arn < tasks[*b].task_arn),
            };
            if better {
                best = Some((t, key));
            }
        }
        let Some((t, _)) = best else { break };
        chosen[t] = true;
        out.push(t);
        if let Some(c) = per_instance.get_mut(inst_key[t]) {
            *c -= 1;
        }
        if let Some(c) = per_zone.get_mut(&zone_of[t]) {
            *c -= 1;
        }
        let f = freed.entry(inst_key[t]).or_default();
        f.0 = f.0.saturating_add(tasks[t].cpu);
        f.1 = f.1.saturating_add(tasks[t].memory);
    }
    out
}
