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

use crate::app::Ctx;
use crate::error::ApiError;
use crate::records::ContainerInstanceRecord;
use crate::repo::{keys, Versioned};
use berth_placement::{ClusterIndex, ClusterSnapshot};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

type Index<'a> = ClusterIndex<'a>;

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
    /// Per index position: the record it reflects.
    slots: Vec<Versioned<Arc<ContainerInstanceRecord>>>,
    by_key: HashMap<String, usize>,
}

/// The per-cluster placement indexes of one control-plane replica.
#[derive(Default)]
pub struct PlacementCache {
    clusters: Mutex<HashMap<String, Arc<tokio::sync::Mutex<ClusterState>>>>,
    rebuilds: std::sync::atomic::AtomicU64,
}

/// What a call sees: the index and, per index position, the record it reflects.
pub struct Placeable<'a> {
    pub index: &'a ClusterIndex<'a>,
    pub instances: &'a [Versioned<Arc<ContainerInstanceRecord>>],
}

impl PlacementCache {
    /// How many times an index was built from scratch (for tests and metrics).
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Forgets a cluster's index (the cluster was deleted).
    pub fn forget(&self, cluster: &str) {
        if let Ok(mut m) = self.clusters.lock() {
            m.remove(cluster);
        }
    }

    /// Runs `f` on an index of `cluster`'s instances (all but INACTIVE ones) that reflects the
    /// store as of this call.
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
        // Which instances changed since the index last saw them?
        let mut changed: Vec<Versioned<Arc<ContainerInstanceRecord>>> = Vec::new();
        let mut seen = 0usize;
        let mut structural = st.index.is_none();
        ctx.app
            .repo
            .visit(
                &keys::instances_in(cluster),
                |key, rec: &Arc<ContainerInstanceRecord>, revision| {
                    if structural || rec.status == "INACTIVE" {
                        return;
                    }
                    match st.by_key.get(key) {
                        Some(&slot) => {
                            seen += 1;
                            if st.slots[slot].revision != revision {
                                changed.push(Versioned {
                                    key: key.to_string(),
                                    value: rec.clone(),
                                    revision,
                                });
                            }
                        }
                        None => structural = true,
                    }
                },
            )
            .await?;
        if seen != st.slots.len() {
            structural = true;
        }
        if !structural {
            let index = st
                .index
                .as_mut()
                .expect("an index exists when not structural");
            for v in &changed {
                let slot = st.by_key[&v.key];
                let inst = crate::ecs::tasks::snapshot_instance(ctx, &v.value);
                let fits = index.borrow_dependent().same_static(slot, &inst);
                if !fits {
                    structural = true;
                    break;
                }
                index.with_dependent_mut(|_, idx| idx.update_instance(slot, &inst));
                st.slots[slot] = v.clone();
            }
        }
        if structural {
            let all: Vec<Versioned<Arc<ContainerInstanceRecord>>> = ctx
                .app
                .repo
                .scan(
                    &keys::instances_in(cluster),
                    |i: Versioned<Arc<ContainerInstanceRecord>>| {
                        (i.value.status != "INACTIVE").then_some(i)
                    },
                )
                .await?;
            let snapshot =
                crate::ecs::tasks::snapshot_of(ctx, all.iter().map(|i| i.value.as_ref()));
            st.index = Some(OwnedIndex::new(snapshot, |s| ClusterIndex::build(s)));
            st.by_key = all
                .iter()
                .enumerate()
                .map(|(i, v)| (v.key.clone(), i))
                .collect();
            st.slots = all;
            self.rebuilds
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        } else {
            // Connectivity changes with time, not with the record.
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
