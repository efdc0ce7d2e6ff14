//! [`PrefixedStore`]: one namespace (one AWS region's) inside a shared [`StateStore`].
//!
//! berth serves each region as its own namespace: what is created in `us-east-2` is invisible from
//! `us-east-1`. The home region uses the shared store directly; every other region's services see
//! it through a `PrefixedStore` whose prefix is `regions/<region>/`. Store key `k` of the
//! namespace is key `regions/<region>/k` of the shared store: every key in a request gets the
//! prefix, every key in an answer loses it.
//!
//! # Invariants
//!
//! * **Keys outside the prefix are invisible.** `get`, `range`, `snapshot`, `watch` and the
//!   compares and ops of a `txn` only ever reach keys under the prefix; the empty prefix means
//!   "the whole namespace" (so `delete_prefix("")` empties the namespace, not the store). A key
//!   the inner store hands back without the prefix (it never should) is dropped with a warning.
//! * **Revisions are the shared store's.** There is one revision counter for all namespaces:
//!   revisions stay strictly increasing per namespace, but are not contiguous (another namespace's
//!   writes take revisions in between), and a fresh namespace on a used store does not start at 0.
//!   `create_revision`, `mod_revision`, `version` and a transaction's outcome (including the
//!   index of a failed compare: compares map 1:1) pass through unchanged.
//! * **Prefixes end with `/` and must not nest.** `regions/us-east-1` without the slash would also
//!   cover `regions/us-east-10/…`; with it, sibling namespaces are disjoint (for names without a
//!   `/`). A namespace nested in another (`regions/` and `regions/eu/`) would be visible from it.
//!
//! # Wipe
//!
//! [`StateStore::wipe`] empties only this namespace, but keeps the trait's contract: it takes one
//! revision, which becomes the namespace's compact revision; live watches of the namespace get
//! [`StoreError::Compacted`] and end, and a watch from before it fails with `Compacted`. For that
//! the namespace keeps one bookkeeping key *outside* its prefix, its **wipe marker**: the prefix
//! without its trailing `/` (`regions/us-east-2` for `regions/us-east-2/`), whose `mod_revision`
//! is the revision of the namespace's last wipe. A wipe is one inner transaction: put the marker,
//! then delete the prefix. (The marker is visible to users of the shared store; nothing else may
//! use that key.)
//!
//! A wipe is a single transaction however big the namespace: the memory and SQLite backends
//! collect every deleted key (and write one history event per key) in that one transaction, and
//! etcd (where the delete is a single `DeleteRange` op, well within `--max-txn-ops`) sends the
//! revision's delete events to every watcher in one response (berth accepts up to 256 MiB).
//! Fine for the namespaces berth holds (thousands of keys); a namespace of millions of keys
//! would want its keys deleted in batches first (range with a limit, delete a page per
//! transaction), then the marker transaction.
//!
//! # Watch
//!
//! A watch of sub-prefix `s` is one inner watch of the prefix without its `/` (which covers both
//! the namespace and its wipe marker, so the marker is seen in order with the data: the wipe puts
//! it before its deletes), filtered to `regions/<region>/s`. A watch of a narrow sub-prefix
//! therefore receives (and drops) the whole namespace's events from the inner store (and those
//! of a sibling whose name extends this one's, `regions/us-east-20/`, if any); the usual
//! watcher, the watch cache, watches everything anyway. Opening a watch also reads the marker
//! (one `get`).
//!
//! # With the watch cache
//!
//! A [`CachedStore`](crate::CachedStore) over a `PrefixedStore` gives correct answers, but its
//! fast path assumes that the store's current revision is reached by its watch. Here the current
//! revision is the shared store's, which other namespaces' writes move without any event in
//! this one: after a write elsewhere, a read waits for the mirror (up to
//! [`CATCH_UP`](crate::cache::CATCH_UP)) and then falls back to the store, until this namespace
//! is written again. (A `PrefixedStore` over one shared `CachedStore` has no such stall, but the
//! cache's views, decoded values and indexes then work on the shared key space.)

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;

use crate::{
    Compare, EventKind, KeyValue, Op, RangeRequest, RangeResult, Result, Revision, Snapshot,
    StateStore, StoreError, Txn, TxnOutcome, WatchEvent, WatchStream,
};

/// One namespace of a shared [`StateStore`]: every key lives under `prefix` in the inner store,
/// and nothing outside it is visible (see the [module docs](self)).
#[derive(Clone)]
pub struct PrefixedStore {
    inner: Arc<dyn StateStore>,
    /// Ends with `/`.
    prefix: Arc<str>,
}

impl std::fmt::Debug for PrefixedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrefixedStore")
            .field("prefix", &self.prefix)
            .field("backend", &self.inner.backend_name())
            .finish()
    }
}

impl PrefixedStore {
    /// The namespace under `prefix` (e.g. `"regions/us-east-2/"`) of `inner`.
    ///
    /// # Panics
    ///
    /// If `prefix` does not end with `/` or is just `/`. The slash keeps sibling namespaces
    /// disjoint (`regions/us-east-1` would also cover `regions/us-east-10/…`), and the prefix
    /// without it names the namespace's wipe marker, a key outside the namespace (see the module
    /// docs); for `/` that would be the empty key.
    pub fn new(inner: Arc<dyn StateStore>, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        assert!(
            prefix.len() > 1 && prefix.ends_with('/'),
            "PrefixedStore prefix {prefix:?} must end with '/' (and not be just '/')"
        );
        Self {
            inner,
            prefix: prefix.into(),
        }
    }

    /// The prefix every key of this namespace has in the inner store (ends with `/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The shared store.
    pub fn inner(&self) -> &Arc<dyn StateStore> {
        &self.inner
    }

    /// The inner store's key whose `mod_revision` is this namespace's last wipe: the prefix
    /// without its trailing `/`.
    pub fn wipe_marker(&self) -> &str {
        &self.prefix[..self.prefix.len() - 1]
    }

    /// `key` in the inner store.
    fn full(&self, key: &str) -> String {
        let mut s = String::with_capacity(self.prefix.len() + key.len());
        s.push_str(&self.prefix);
        s.push_str(key);
        s
    }

    /// Prefix an owned key in place.
    fn prefix_owned(&self, key: &mut String) {
        key.insert_str(0, &self.prefix);
    }

    /// `kv` with the prefix stripped from its key; `None` (and a warning) if it lacks it.
    fn strip(&self, kv: KeyValue) -> Option<KeyValue> {
        strip_key(&self.prefix, kv)
    }

    fn strip_all(&self, kvs: Vec<KeyValue>) -> Vec<KeyValue> {
        kvs.into_iter().filter_map(|kv| self.strip(kv)).collect()
    }
}

/// `kv` with `prefix` removed from its key, in place; `None` (and a warning) if the key lacks it.
fn strip_key(prefix: &str, mut kv: KeyValue) -> Option<KeyValue> {
    if kv.key.starts_with(prefix) {
        kv.key.replace_range(..prefix.len(), "");
        Some(kv)
    } else {
        tracing::warn!(
            key = %kv.key,
            prefix = %prefix,
            "prefixed store: the inner store returned a key outside the namespace; skipped"
        );
        None
    }
}

/// The state of one namespace watch (see [`StateStore::watch`] on [`PrefixedStore`]).
struct Watch {
    inner: WatchStream,
    /// The namespace prefix (stripped from delivered keys).
    prefix: Arc<str>,
    /// Namespace prefix + the watched sub-prefix: only these keys are delivered.
    wanted: String,
    /// The wipe marker: a put of it ends the stream with `Compacted`.
    marker: String,
    /// The last revision seen on the inner stream (or the start revision).
    cursor: Revision,
    done: bool,
}

impl Watch {
    async fn next(&mut self) -> Option<Result<WatchEvent>> {
        while !self.done {
            let ev = match self.inner.next().await? {
                Ok(ev) => ev,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            if ev.kv.key == self.marker {
                if ev.kind == EventKind::Put {
                    // This namespace was wiped: the marker is written before the wipe's deletes.
                    self.done = true;
                    return Some(Err(StoreError::Compacted {
                        requested: self.cursor,
                        compact_revision: ev.kv.mod_revision,
                    }));
                }
                // The marker deleted from outside (e.g. a delete of all of `regions/`): the
                // namespace's keys' own delete events tell the story.
                continue;
            }
            self.cursor = self.cursor.max(ev.kv.mod_revision);
            if !ev.kv.key.starts_with(&self.wanted) {
                // Another key under the marker's name (a sibling like `regions/us-east-20/…`,
                // which never nests with ours), or one of ours outside the watched sub-prefix.
                if !ev.kv.key.starts_with(&self.marker) {
                    tracing::warn!(
                        key = %ev.kv.key,
                        prefix = %self.prefix,
                        "prefixed store: the inner watch returned a key outside the namespace; \
                         skipped"
                    );
                }
                continue;
            }
            let WatchEvent { kind, kv } = ev;
            if let Some(kv) = strip_key(&self.prefix, kv) {
                return Some(Ok(WatchEvent { kind, kv }));
            }
        }
        None
    }
}

#[async_trait]
impl StateStore for PrefixedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self
            .inner
            .get(&self.full(key))
            .await?
            .and_then(|kv| self.strip(kv)))
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResult> {
        let RangeRequest {
            mut prefix,
            start_after,
            limit,
        } = req;
        self.prefix_owned(&mut prefix);
        // Prepending one string keeps byte order, so `start_after` (and a `start_after` before
        // the range's prefix, which is ignored) means the same inside the namespace.
        let start_after = start_after.map(|mut s| {
            self.prefix_owned(&mut s);
            s
        });
        let r = self
            .inner
            .range(RangeRequest {
                prefix,
                start_after,
                limit,
            })
            .await?;
        Ok(RangeResult {
            kvs: self.strip_all(r.kvs),
            more: r.more,
            revision: r.revision,
        })
    }

    async fn snapshot(&self, prefixes: &[String]) -> Result<Snapshot> {
        let full: Vec<String> = prefixes.iter().map(|p| self.full(p)).collect();
        let snap = self.inner.snapshot(&full).await?;
        Ok(Snapshot {
            revision: snap.revision,
            ranges: snap
                .ranges
                .into_iter()
                .map(|kvs| self.strip_all(kvs))
                .collect(),
        })
    }

    async fn txn(&self, mut txn: Txn) -> Result<TxnOutcome> {
        // Compares map 1:1 and in order, so a `CompareFailed { index }` needs no translation.
        for c in &mut txn.compares {
            match c {
                Compare::ModRevision { key, .. }
                | Compare::Absent { key }
                | Compare::Exists { key }
                | Compare::CreateRevision { key, .. } => self.prefix_owned(key),
            }
        }
        for op in &mut txn.ops {
            match op {
                Op::Put { key, .. } | Op::Delete { key } => self.prefix_owned(key),
                // The empty prefix becomes the namespace prefix: "everything" is the namespace.
                Op::DeletePrefix { prefix } => self.prefix_owned(prefix),
            }
        }
        self.inner.txn(txn).await
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision().await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let marker = self.wipe_marker();
        // The last wipe of this namespace is its compact revision.
        if let Some(kv) = self.inner.get(marker).await? {
            if after < kv.mod_revision {
                return Err(StoreError::Compacted {
                    requested: after,
                    compact_revision: kv.mod_revision,
                });
            }
        }
        // A wipe between that read and this watch is replayed by the watch: its marker event
        // ends the stream with `Compacted`.
        let inner = self.inner.watch(marker, after).await?;
        let state = Watch {
            inner,
            prefix: self.prefix.clone(),
            wanted: self.full(prefix),
            marker: marker.to_owned(),
            cursor: after,
            done: false,
        };
        Ok(futures::stream::unfold(state, |mut w| async move {
            let item = w.next().await?;
            Some((item, w))
        })
        .boxed())
    }

    /// Empties this namespace only (not the shared store): one inner transaction that puts the
    /// wipe marker and deletes the prefix (see the module docs).
    async fn wipe(&self) -> Result<()> {
        let txn = Txn::new()
            .put(self.wipe_marker(), b"wipe".to_vec())
            .delete_prefix(&*self.prefix);
        match self.inner.txn(txn).await? {
            TxnOutcome::Committed { revision } => {
                tracing::info!(revision, prefix = %self.prefix, "namespace wiped");
                Ok(())
            }
            TxnOutcome::CompareFailed { index } => Err(StoreError::Backend(format!(
                "wiping namespace {}: a transaction without compares reported compare {index} \
                 failed",
                self.prefix
            ))),
        }
    }

    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
}
