//! A long-lived placement index per cluster, kept in step with the store incrementally.
//!
//! Building a `ClusterIndex` is O(instances × attributes): at 5,000 instances that is
//! milliseconds, far more than a placement. So each cluster keeps one index (and the records it
//! came from) between calls. A call walks the cluster's instance records in the watch cache
//! (borrowed, no copies), compares each record's revision with the one the index holds, and
//! applies only the changed instances' dynamic state (remaining resources, tasks, status) with
//! `ClusterIndex::update_instance`. It rebuilds only when an instance appears or leaves, or an
//! instance's static state (attributes, resources registered, …) changes. Agent connectivity
//! depends on time, so it is refreshed on every call.
//!
//! The index is a cache, never the truth: callers commit with compare-on-revision on every
//! instance they touch (see `ecs::tasks::launch`), so a stale index costs a retry, never a wrong
//! placement. Calls for one cluster take turns on its index (a placement takes well under a
//! millisecond); calls for different clusters don't wait for each other.
//!
//! Also how placement sees a container instance record (`snapshot_instance`, `snapshot_of`):
//! the index, RunTask/StartTask, ExplainPlacement and the service scheduler share it.

use crate::keys;
use crate::records::{ContainerInstanceRecord, InstanceStatus, ResourcesRecord};
use crate::state::Ctx;
use berth_placement as placement;
use berth_placement::{ClusterIndex, ClusterSnapshot};
use berth_service::repo::{Lazy, Versioned};
use berth_service::ApiError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

type Index<'a> = ClusterIndex<'a>;

/// How often agent connectivity is re-read for every instance of an index.
const CONNECTIVITY_REFRESH: std::time::Duration = std::time::Duration::from_millis(500);

self_cell::self_cell!(
    /// A snapshot and the index that borrows from it.
    struct OwnedIndex {
        owner: ClusterSnapshot,
        #[covariant]
        dependent: Index,
    }
);

#[derive(Default)]
struct ClusterState {
    index: Option<OwnedIndex>,
    /// Per index position, in key order: the record it reflects.
    slots: Vec<Versioned<Arc<ContainerInstanceRecord>>>,
    /// The watch-cache revision the slots were last brought up to; the next call follows the
    /// cache's change log from here instead of walking every instance (`None`: walk).
    seen: Option<berth_store::Revision>,
    /// When agent connectivity was last read into the index.
    connectivity_at: Option<std::time::Instant>,
}

/// The per-cluster placement indexes of one control-plane replica.
#[derive(Default)]
pub struct PlacementCache {
    clusters: Mutex<HashMap<String, Arc<tokio::sync::Mutex<ClusterState>>>>,
    rebuilds: std::sync::atomic::AtomicU64,
    followed: std::sync::atomic::AtomicU64,
}

/// What a call sees: the index and, per index position, the record it reflects.
pub struct Placeable<'a> {
    pub index: &'a ClusterIndex<'a>,
    pub instances: &'a [Versioned<Arc<ContainerInstanceRecord>>],
}

/// A changed instance, as seen at the index position `pos` (whose slot is `slot`): queued in
/// `changed` when its revision moved; `true` when it went INACTIVE (the index must be rebuilt).
fn note_change(
    slot: &Versioned<Arc<ContainerInstanceRecord>>,
    pos: usize,
    e: &Lazy<'_, ContainerInstanceRecord>,
    changed: &mut Vec<(usize, Versioned<Arc<ContainerInstanceRecord>>)>,
) -> Result<bool, ApiError> {
    if slot.revision == e.revision() {
        return Ok(false);
    }
    let rec = e.get()?;
    if rec.status == InstanceStatus::Inactive {
        return Ok(true);
    }
    changed.push((
        pos,
        Versioned {
            key: slot.key.clone(),
            value: rec,
            revision: e.revision(),
        },
    ));
    Ok(false)
}

impl PlacementCache {
    /// How many times an index was built from scratch (for tests and metrics).
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many calls found the changed instances from the watch cache's change log instead of
    /// walking every instance (for tests and metrics).
    pub fn followed(&self) -> u64 {
        self.followed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Forgets a cluster's index (the cluster was deleted).
    pub fn forget(&self, cluster: &str) {
        if let Ok(mut m) = self.clusters.lock() {
            m.remove(cluster);
        }
    }

    /// Runs `f` on an index of `cluster`'s instances (all but INACTIVE ones) that reflects the
    /// store as of this call (agent connectivity: as of the last CONNECTIVITY_REFRESH).
    pub async fn with_index<R>(
        &self,
        ctx: &Ctx,
        cluster: &str,
        f: impl FnOnce(Placeable<'_>) -> R,
    ) -> Result<R, ApiError> {
        let state = {
            let mut m = self
                .clusters
                .lock()
                .map_err(|_| ApiError::server("placement cache poisoned"))?;
            m.entry(cluster.to_string()).or_default().clone()
        };
        let mut st = state.lock().await;
        let st = &mut *st;
        // Which instances changed since the index last saw them? Normally the watch cache's
        // change log says (O(changes)); otherwise walk every instance record, comparing revisions
        // in lockstep with the slots (both in key order), decoding only records that moved.
        let prefix = keys::instances_in(cluster);
        let mut changed: Vec<(usize, Versioned<Arc<ContainerInstanceRecord>>)> = Vec::new();
        let mut structural = st.index.is_none();
        let mut seen = None;
        if let (false, Some(since)) = (structural, st.seen) {
            let slots = &st.slots;
            seen = ctx
                .app
                .repo
                .visit_changed(
                    &prefix,
                    since,
                    |key, e: Option<&Lazy<'_, ContainerInstanceRecord>>| {
                        if structural {
                            return Ok(());
                        }
                        // Slots are in key order: find the position by binary search.
                        let pos = slots.binary_search_by(|s| s.key.as_str().cmp(key)).ok();
                        match (pos, e) {
                            (Some(pos), Some(e)) => {
                                structural = note_change(&slots[pos], pos, e, &mut changed)?;
                            }
                            // An indexed instance's record is gone.
                            (Some(_), None) => structural = true,
                            // Not in the index: fine only if it is INACTIVE (left out on purpose).
                            (None, Some(e)) => {
                                if e.get()?.status != InstanceStatus::Inactive {
                                    structural = true;
                                }
                            }
                            (None, None) => {}
                        }
                        Ok(())
                    },
                )
                .await?;
        }
        if seen.is_some() {
            self.followed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if seen.is_none() && !structural {
            let mut next = 0usize;
            seen = ctx
                .app
                .repo
                .visit_lazy_at(&prefix, |e: &Lazy<'_, ContainerInstanceRecord>| {
                    if structural {
                        return Ok(());
                    }
                    match st.slots.get(next) {
                        Some(slot) if slot.key == e.key() => {
                            structural = note_change(slot, next, e, &mut changed)?;
                            next += 1;
                        }
                        // Not in the index: fine only if it is INACTIVE (left out on purpose).
                        _ => {
                            if e.get()?.status != InstanceStatus::Inactive {
                                structural = true;
                            }
                        }
                    }
                    Ok(())
                })
                .await?;
            if next != st.slots.len() {
                structural = true;
            }
        }
        if !structural {
            let index = st
                .index
                .as_mut()
                .expect("an index exists when not structural");
            for (slot, v) in changed {
                let inst = snapshot_instance(ctx, &v.value);
                if !index.borrow_dependent().same_static(slot, &inst) {
                    structural = true;
                    break;
                }
                index.with_dependent_mut(|_, idx| idx.update_instance(slot, &inst));
                st.slots[slot] = v;
            }
            st.seen = if structural { None } else { seen };
        }
        if structural {
            let all: Vec<Versioned<Arc<ContainerInstanceRecord>>> = ctx
                .app
                .repo
                .scan(
                    &keys::instances_in(cluster),
                    |i: Versioned<Arc<ContainerInstanceRecord>>| {
                        (i.value.status != InstanceStatus::Inactive).then_some(i)
                    },
                )
                .await?;
            let snapshot = snapshot_of(ctx, all.iter().map(|i| i.value.as_ref()));
            st.index = Some(OwnedIndex::new(snapshot, |s| ClusterIndex::build(s)));
            st.slots = all;
            // The scan's revision is not known here: the next call walks once, then follows
            // the change log.
            st.seen = None;
            st.connectivity_at = Some(std::time::Instant::now());
            self.rebuilds
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        } else if st
            .connectivity_at
            .is_none_or(|t| t.elapsed() >= CONNECTIVITY_REFRESH)
        {
            // Connectivity changes with time, not with the record: re-read for every instance
            // at most every CONNECTIVITY_REFRESH (an agent counts as disconnected only after a
            // far longer silence; see `agents`).
            st.connectivity_at = Some(std::time::Instant::now());
            let connected = ctx
                .app
                .agents
                .connected_many(st.slots.iter().map(|v| v.value.id.as_str()));
            let index = st.index.as_mut().expect("index present");
            index.with_dependent_mut(|_, idx| {
                for (i, c) in connected.into_iter().enumerate() {
                    if idx.agent_connected(i) != c {
                        idx.set_connected(i, c);
                    }
                }
            });
        }
        let index = st.index.as_ref().expect("index present");
        Ok(f(Placeable {
            index: index.borrow_dependent(),
            instances: &st.slots,
        }))
    }
}

/// The placement snapshot of a set of container instances.
pub(crate) fn snapshot_of<'a>(
    ctx: &Ctx,
    instances: impl Iterator<Item = &'a ContainerInstanceRecord>,
) -> ClusterSnapshot {
    ClusterSnapshot::new(instances.map(|i| snapshot_instance(ctx, i)).collect())
}

/// One container instance as placement sees it.
pub(crate) fn snapshot_instance(
    ctx: &Ctx,
    i: &ContainerInstanceRecord,
) -> placement::ContainerInstance {
    let res = |r: &ResourcesRecord| placement::Resources {
        cpu: r.cpu,
        memory: r.memory,
        gpu: r.gpu,
        tcp_ports: r.ports.clone(),
        udp_ports: r.ports_udp.clone(),
    };
    placement::ContainerInstance {
        arn: ctx.app.scope.container_instance_arn(&i.cluster, &i.id),
        status: i.status.into(),
        agent_connected: ctx.app.agents.connected(&i.id),
        attributes: i
            .attributes
            .iter()
            .map(|a| placement::Attribute {
                name: a.name.clone(),
                value: a.value.clone(),
            })
            .collect(),
        ec2_instance_id: i.ec2_instance_id.clone(),
        agent_version: i
            .version_info
            .as_ref()
            .and_then(|v| v.agent_version.clone()),
        registered_at: i.registered_at,
        registered: res(&i.registered),
        remaining: res(&i.remaining()),
        running_tasks_count: i.running_tasks() as u32,
        tasks: i
            .held
            .groups
            .iter()
            .map(|(g, n)| placement::TaskInfo::many(g.clone(), *n))
            .collect(),
    }
}
