//! Leadership of this replica and the fencing of the leader's commits.
//!
//! Every replica serves the API; one — the leader — also runs the work that must happen once per
//! cluster: the service scheduler's plans, lost-task handling, stopped-task collection and the
//! task-definition purge. With a single-node store (SQLite, memory) this replica always leads and
//! nothing needs fencing. With etcd the binary campaigns (`berth_store_etcd::LeaderElection`) and
//! feeds [`Leadership`] into the shared [`Leader`] handle every service holds.
//!
//! **Fencing.** Leader-only work runs inside [`as_leader`], which puts the election's fence (a
//! `Compare::CreateRevision` on the leader key) in a task-local; [`Repo::commit`](crate::repo::Repo)
//! prepends it to every transaction committed inside that scope, whatever helper commits it
//! (`tasks::launch`, `request_stop`, `apply_report`, the service record write-back). The store
//! evaluates it atomically with the rest of the transaction: once the leader key is gone (lease
//! expired) or belongs to a newer leader, a deposed leader's in-flight commit fails with
//! [`deposed`] and applies nothing. The guard also reports a lost lease a margin before etcd can
//! expire it, so a healthy deposed leader stops before another starts; the fence covers the
//! unhealthy case (a stalled process whose commit arrives late).

use crate::error::ApiError;
use berth_store::{Compare, Txn};
use std::future::Future;

/// What this replica knows about leadership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    /// This replica leads now.
    pub leading: bool,
    /// The compare that fences the leader's commits (`None` on a single-node store).
    pub fence: Option<Compare>,
}

impl Leadership {
    /// A single-node store: always the leader, nothing to fence against.
    pub fn single_node() -> Self {
        Self {
            leading: true,
            fence: None,
        }
    }

    /// Not (or no longer) the leader.
    pub fn follower() -> Self {
        Self {
            leading: false,
            fence: None,
        }
    }

    /// Elected with this fence.
    pub fn elected(fence: Compare) -> Self {
        Self {
            leading: true,
            fence: Some(fence),
        }
    }
}

/// This replica's leadership as it changes: one handle, shared by every service and the
/// background-task driver. Always leading, unfenced, on a single-node store; with etcd the binary
/// feeds it from leader election ([`Leader::set`]).
pub struct Leader {
    rx: std::sync::Mutex<tokio::sync::watch::Receiver<Leadership>>,
}

impl Default for Leader {
    fn default() -> Self {
        Self {
            rx: std::sync::Mutex::new(tokio::sync::watch::channel(Leadership::single_node()).1),
        }
    }
}

impl Leader {
    /// Replaces the leadership signal (etcd leader election).
    pub fn set(&self, rx: tokio::sync::watch::Receiver<Leadership>) {
        if let Ok(mut l) = self.rx.lock() {
            *l = rx;
        }
    }

    /// This replica's leadership right now.
    pub fn leadership(&self) -> Leadership {
        self.rx
            .lock()
            .map(|l| l.borrow().clone())
            .unwrap_or_else(|_| Leadership::follower())
    }

    /// Does this replica lead right now?
    pub fn is_leader(&self) -> bool {
        self.leadership().leading
    }
}

tokio::task_local! {
    static FENCE: Compare;
}

/// Runs leader-only work: `None` when this replica does not lead; otherwise `work`'s output, with
/// every commit it makes through [`Repo::commit`](crate::repo::Repo::commit) fenced.
pub async fn as_leader<F: Future>(leader: &Leader, work: F) -> Option<F::Output> {
    let l = leader.leadership();
    if !l.leading {
        return None;
    }
    Some(match l.fence {
        Some(fence) => FENCE.scope(fence, work).await,
        None => work.await,
    })
}

/// Adds the current task's fence (if any) as the first compare; returns whether it did.
pub fn fence_txn(mut txn: Txn) -> (Txn, bool) {
    match FENCE.try_with(Compare::clone) {
        Ok(fence) => {
            txn.compares.insert(0, fence);
            (txn, true)
        }
        Err(_) => (txn, false),
    }
}

/// Is the current task leader-only work (its commits fenced)?
pub fn fenced() -> bool {
    FENCE.try_with(|_| ()).is_ok()
}

/// The error a fenced commit gets once this replica is no longer the leader.
pub fn deposed() -> ApiError {
    ApiError::server(DEPOSED)
}

/// The message of [`deposed`].
pub const DEPOSED: &str = "This replica is no longer the leader: its commit was fenced off.";

/// The election the control-plane replicas campaign in.
pub const ELECTION: &str = "scheduler";
/// Its store key (`berth_store_etcd::LeaderElection::key(ELECTION)`): the leader's node id, and
/// its create revision is the fencing token.
pub const LEADER_KEY: &str = "leader/scheduler";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fence_applies_inside_the_scope_only() {
        let fence = Compare::CreateRevision {
            key: "leader/x".into(),
            revision: 7,
        };
        let (t, f) = fence_txn(Txn::new().put("a", "b"));
        assert!(!f && t.compares.is_empty());
        let inside = FENCE
            .scope(fence.clone(), async {
                let (t, f) = fence_txn(
                    Txn::new()
                        .when(Compare::Exists { key: "a".into() })
                        .put("a", "b"),
                );
                (t, f, fenced())
            })
            .await;
        assert!(inside.1 && inside.2);
        assert_eq!(inside.0.compares[0], fence);
        assert_eq!(inside.0.compares.len(), 2);
        assert!(!fenced());
    }

    /// `Repo::commit` inside leader work: fenced commits land while the leader key is the one
    /// elected; once it is gone (or re-created by a new leader) they fail with `deposed`, apply
    /// nothing, and an ordinary conflict is still a retry (`Ok(None)`).
    #[tokio::test]
    async fn repo_commits_are_fenced_inside_leader_work() {
        let store = std::sync::Arc::new(berth_store::MemoryStore::new());
        let repo = crate::repo::Repo::new(store.clone());
        let elected = repo
            .commit(Txn::new().put(LEADER_KEY, "me"))
            .await
            .unwrap()
            .unwrap();
        let fence = Compare::CreateRevision {
            key: LEADER_KEY.into(),
            revision: elected,
        };
        FENCE
            .scope(fence.clone(), async {
                assert!(repo
                    .commit(Txn::new().put("a", "1"))
                    .await
                    .unwrap()
                    .is_some());
                let conflict = Txn::new().when(Compare::Absent { key: "a".into() });
                assert!(repo.commit(conflict).await.unwrap().is_none());
            })
            .await;
        // The lease expires; a new leader's key is a new incarnation.
        repo.commit(Txn::new().delete(LEADER_KEY)).await.unwrap();
        repo.commit(Txn::new().put(LEADER_KEY, "other"))
            .await
            .unwrap();
        FENCE
            .scope(fence, async {
                let e = repo.commit(Txn::new().put("a", "2")).await.unwrap_err();
                assert_eq!(e.message, DEPOSED);
            })
            .await;
        use berth_store::StateStore;
        assert_eq!(store.get("a").await.unwrap().unwrap().value, b"1");
        // Outside leader work nothing is fenced.
        assert!(repo
            .commit(Txn::new().put("a", "3"))
            .await
            .unwrap()
            .is_some());
    }
}
