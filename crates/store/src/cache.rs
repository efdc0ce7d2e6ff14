//! A watch-fed, in-memory mirror of a [`StateStore`] (the "watch cache").
//!
//! [`CachedStore`] wraps any backend. A background task lists the whole key space once, then
//! follows a watch from that revision and applies every change to an in-memory ordered map. Reads
//! (`get`, `range`, `snapshot`) are answered from the map; writes (`txn`, `wipe`) and `watch` go to
//! the backend unchanged. Kubernetes' API server does the same with its watch cache in front of
//! etcd.
//!
//! **Consistency.** Every read first asks the backend for its current revision (an atomic load for
//! SQLite and memory, one small RPC for etcd) and waits until the mirror has applied at least that
//! revision; so a read observes every write committed before it started, through this replica or
//! any other: reads stay linearizable, exactly as if served by the backend. If the mirror does not
//! catch up within [`CATCH_UP`] (the watch broke and is re-listing, the backend is compacting), the
//! read is served by the backend instead: slower, never stale.
//!
//! **Decoded values.** Each entry can also hold one decoded form of its value (any `'static` type,
//! built on first use with a caller-supplied decoder and dropped when the key changes), so callers
//! that parse stored JSON do it once per write instead of once per read ([`CachedStore::read`]).
//!
//! **Secondary indexes.** [`CachedStore::start_indexed`] takes [`Index`]es: for every key under an
//! index's prefix a function names the terms it is found under (e.g. "tasks of cluster c that
//! should be running", "tasks of service s"), and [`View::index`] walks one term's keys in key
//! order. The index is updated under the same write lock as the map, so a view's index and map
//! always agree. An index only narrows where to look: callers still test each record.
//!
//! Invariants: the mirror only ever moves forward by whole revisions (a watch batch is applied
//! under one write lock); `applied` is the revision the mirror reflects exactly; a gap or an error
//! in the watch makes the mirror unusable until a fresh list replaces it.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;

use crate::{
    EventKind, KeyValue, RangeRequest, RangeResult, Result, Revision, Snapshot, StateStore, Txn,
    TxnOutcome, WatchStream,
};

/// How long a read waits for the mirror to reach the backend's revision before it asks the
/// backend directly.
pub const CATCH_UP: Duration = Duration::from_secs(2);

type Decoded = Arc<dyn Any + Send + Sync>;

/// One mirrored key: the raw key-value and, once someone asked, its decoded form.
pub struct Entry {
    kv: KeyValue,
    decoded: OnceLock<Decoded>,
}

impl Entry {
    /// The raw key-value.
    pub fn kv(&self) -> &KeyValue {
        &self.kv
    }

    /// The value decoded as `T`, decoding (and remembering) it on first use. A decoder error is
    /// returned and nothing is remembered. If the entry already holds a different type (one key
    /// read as two types), the value is decoded afresh and not remembered.
    pub fn decoded<T, E>(&self, decode: impl FnOnce(&[u8]) -> Result<T, E>) -> Result<Arc<T>, E>
    where
        T: Send + Sync + 'static,
    {
        if let Some(d) = self.decoded.get() {
            if let Ok(t) = d.clone().downcast::<T>() {
                return Ok(t);
            }
            return decode(&self.kv.value).map(Arc::new);
        }
        let t = Arc::new(decode(&self.kv.value)?);
        let _ = self.decoded.set(t.clone() as Decoded);
        Ok(t)
    }
}

/// The terms a key is indexed under, computed from its entry (decode with
/// [`Entry::decoded`] so the decoded form is shared with readers). Must be a pure function of
/// the entry: it is evaluated again on the old entry when the key changes.
pub type IndexTerms = Arc<dyn Fn(&Entry) -> Vec<String> + Send + Sync>;

/// A secondary index over the keys under `prefix` (see the module docs).
#[derive(Clone)]
pub struct Index {
    /// The name [`View::index`] looks it up by.
    pub name: &'static str,
    /// Only keys under this prefix are indexed.
    pub prefix: String,
    /// The terms each key is indexed under.
    pub terms: IndexTerms,
}

/// One index's entries: per term, its keys in key order (a key's one allocation is shared by all
/// its terms). A term is hashed once per lookup and its keys are compared only with each other, so
/// a write costs O(terms × log keys-per-term) short comparisons, not comparisons of long
/// `term + key` strings against the whole index.
type TermKeys = std::collections::HashMap<String, BTreeSet<Arc<str>>>;

/// The terms of `e` under each index (empty where the key is outside an index's prefix).
fn terms_of(specs: &[Index], key: &str, e: &Entry) -> Vec<Vec<String>> {
    specs
        .iter()
        .map(|spec| {
            if key.starts_with(&spec.prefix) {
                (spec.terms)(e)
            } else {
                Vec::new()
            }
        })
        .collect()
}

#[derive(Default)]
struct Mirror {
    /// True while `map` reflects the backend exactly at `revision` (false before the first list and
    /// after a watch failure, until the re-list).
    synced: bool,
    revision: Revision,
    map: BTreeMap<String, Entry>,
    /// Per [`Index`] (same order as `Shared::indexes`): every term's keys.
    indexed: Vec<TermKeys>,
    /// The most recent changes, oldest first: (revision, key), at most [`CHANGE_LOG`].
    changes: VecDeque<(Revision, String)>,
    /// `changes` holds every change with a revision above this one.
    changes_floor: Revision,
}

/// How many recent changes the mirror remembers for [`View::changed_keys`].
pub const CHANGE_LOG: usize = 4_096;

impl Mirror {
    fn log_change(&mut self, rev: Revision, key: &str) {
        if self.changes.len() >= CHANGE_LOG {
            if let Some((r, _)) = self.changes.pop_front() {
                self.changes_floor = self.changes_floor.max(r);
            }
        }
        self.changes.push_back((rev, key.to_string()));
    }

    fn reset_changes(&mut self, floor: Revision) {
        self.changes.clear();
        self.changes_floor = floor;
    }

    /// Moves `key` from the terms `old` to the terms `new` (per index, as [`terms_of`] gives
    /// them): only the terms that differ are touched, so a write that leaves a record's terms as
    /// they were (most state reports) costs no index work.
    fn reindex(&mut self, key: &str, old: &[Vec<String>], new: &[Vec<String>]) {
        let mut shared: Option<Arc<str>> = None;
        for (i, sets) in self.indexed.iter_mut().enumerate() {
            let (o, n) = (
                old.get(i).map_or(&[][..], Vec::as_slice),
                new.get(i).map_or(&[][..], Vec::as_slice),
            );
            for t in o.iter().filter(|t| !n.contains(t)) {
                if let Some(keys) = sets.get_mut(t.as_str()) {
                    keys.remove(key);
                    if keys.is_empty() {
                        sets.remove(t.as_str());
                    }
                }
            }
            for t in n.iter().filter(|t| !o.contains(t)) {
                let k = shared.get_or_insert_with(|| Arc::from(key)).clone();
                match sets.get_mut(t.as_str()) {
                    Some(keys) => {
                        keys.insert(k);
                    }
                    None => {
                        sets.insert(t.clone(), BTreeSet::from([k]));
                    }
                }
            }
        }
    }
}

/// A consistent, read-only view of the mirror at one revision (held under its read lock: use it
/// and drop it; don't hold it across an `.await`).
pub struct View<'a> {
    mirror: RwLockReadGuard<'a, Mirror>,
    specs: &'a [Index],
}

impl View<'_> {
    /// The revision this view reflects.
    pub fn revision(&self) -> Revision {
        self.mirror.revision
    }
    /// One key.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.mirror.map.get(key)
    }

    /// The keys under `prefix` written or deleted after revision `since` (each once, in the order
    /// of their first change), so a reader that last looked at `since` visits only what moved;
    /// `None` when the change log no longer reaches back to `since` (walk everything instead).
    pub fn changed_keys(&self, prefix: &str, since: Revision) -> Option<Vec<&str>> {
        let m = &self.mirror;
        if since < m.changes_floor || since > m.revision {
            return None;
        }
        let start = m.changes.partition_point(|(r, _)| *r <= since);
        let mut seen = std::collections::HashSet::new();
        Some(
            m.changes
                .range(start..)
                .map(|(_, k)| k.as_str())
                .filter(|k| k.starts_with(prefix) && seen.insert(*k))
                .collect(),
        )
    }
    /// Every key under `prefix` (after `start_after`, if given), in key order.
    pub fn range<'s>(
        &'s self,
        prefix: &'s str,
        start_after: Option<&'s str>,
    ) -> impl Iterator<Item = &'s Entry> + 's {
        let lower = match start_after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_string()),
            _ => Bound::Included(prefix.to_string()),
        };
        self.mirror
            .map
            .range((lower, Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(_, e)| e)
    }

    /// The keys indexed under `term` by the index `name` (after the key `start_after`, if
    /// given), in key order; `None` if there is no such index.
    pub fn index<'s>(
        &'s self,
        name: &str,
        term: &str,
        start_after: Option<&'s str>,
    ) -> Option<impl Iterator<Item = &'s Entry> + 's> {
        let at = self.specs.iter().position(|s| s.name == name)?;
        let keys = self.mirror.indexed[at].get(term);
        let lower = match start_after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        let map = &self.mirror.map;
        Some(
            keys.into_iter()
                .flat_map(move |k| k.range::<str, _>((lower, Bound::Unbounded)))
                .filter_map(move |k| map.get(&**k)),
        )
    }
}

/// The watch-fed mirror in front of a backend. Create with [`CachedStore::start`]; clones share
/// one mirror, which stops following the backend once the last clone is dropped.
#[derive(Clone)]
pub struct CachedStore {
    shared: Arc<Shared>,
}

struct Shared {
    inner: Arc<dyn StateStore>,
    indexes: Vec<Index>,
    mirror: RwLock<Mirror>,
    /// The revision the mirror has applied (only published while synced).
    applied: watch::Sender<Revision>,
    /// Dropped with the last clone: tells the follower task to stop (and release the backend).
    _stop: watch::Sender<()>,
}

impl CachedStore {
    /// Wraps `inner` and starts following it (on the current tokio runtime). The mirror fills in
    /// the background; reads fall through to `inner` until it has.
    pub fn start(inner: Arc<dyn StateStore>) -> Self {
        Self::start_indexed(inner, Vec::new())
    }

    /// [`CachedStore::start`] with secondary indexes (see the module docs).
    pub fn start_indexed(inner: Arc<dyn StateStore>, indexes: Vec<Index>) -> Self {
        let (stop_tx, mut stop_rx) = watch::channel(());
        let shared = Arc::new(Shared {
            inner,
            mirror: RwLock::new(Mirror {
                indexed: vec![TermKeys::new(); indexes.len()],
                ..Mirror::default()
            }),
            indexes,
            applied: watch::channel(0).0,
            _stop: stop_tx,
        });
        let follower = follow(Arc::downgrade(&shared));
        tokio::spawn(async move {
            tokio::select! {
                _ = follower => {}
                // Err once the sender is dropped with the last CachedStore.
                _ = stop_rx.changed() => {}
            }
        });
        CachedStore { shared }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &Arc<dyn StateStore> {
        &self.shared.inner
    }

    /// Number of mirrored keys (0 while not synced).
    pub fn len(&self) -> usize {
        self.shared.read_mirror().map.len()
    }

    /// True when nothing is mirrored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits (up to [`CATCH_UP`]) until the mirror reflects the backend's current revision; true
    /// when it does.
    pub async fn ready(&self) -> Result<bool> {
        let want = self.shared.inner.current_revision().await?;
        Ok(self.shared.caught_up(want).await)
    }

    /// Runs `f` on a view that reflects every write committed before this call (see the module
    /// docs); `None` when the mirror can't catch up in time: read the backend instead.
    pub async fn read<R>(&self, f: impl FnOnce(&View<'_>) -> R) -> Result<Option<R>> {
        let s = &self.shared;
        let want = s.inner.current_revision().await?;
        if !s.caught_up(want).await {
            return Ok(None);
        }
        let view = View {
            mirror: s.read_mirror(),
            specs: &s.indexes,
        };
        if !view.mirror.synced || view.mirror.revision < want {
            return Ok(None);
        }
        Ok(Some(f(&view)))
    }
}

impl Shared {
    fn read_mirror(&self) -> RwLockReadGuard<'_, Mirror> {
        self.mirror.read().unwrap_or_else(|e| e.into_inner())
    }

    async fn caught_up(&self, want: Revision) -> bool {
        let mut rx = self.applied.subscribe();
        if *rx.borrow() >= want {
            return true;
        }
        let reached = tokio::time::timeout(CATCH_UP, rx.wait_for(|r| *r >= want)).await;
        matches!(reached, Ok(Ok(_)))
    }

    fn mark_unsynced(&self) {
        let mut m = self.mirror.write().unwrap_or_else(|e| e.into_inner());
        m.synced = false;
        m.map.clear();
        m.reset_changes(Revision::MAX);
        m.indexed.iter_mut().for_each(TermKeys::clear);
    }

    fn install(&self, snap: Snapshot) {
        let map = snap
            .ranges
            .into_iter()
            .flatten()
            .map(|kv| {
                (
                    kv.key.clone(),
                    Entry {
                        kv,
                        decoded: OnceLock::new(),
                    },
                )
            })
            .collect();
        {
            let mut mirror = Mirror {
                synced: true,
                revision: snap.revision,
                map,
                indexed: vec![TermKeys::new(); self.indexes.len()],
                changes: VecDeque::new(),
                changes_floor: snap.revision,
            };
            if !self.indexes.is_empty() {
                let terms: Vec<(String, Vec<Vec<String>>)> = mirror
                    .map
                    .iter()
                    .map(|(k, e)| (k.clone(), terms_of(&self.indexes, k, e)))
                    .collect();
                for (k, t) in &terms {
                    mirror.reindex(k, &[], t);
                }
            }
            let mut m = self.mirror.write().unwrap_or_else(|e| e.into_inner());
            *m = mirror;
        }
        self.applied.send_replace(snap.revision);
    }

    /// Applies one batch of whole revisions.
    fn apply(&self, events: Vec<crate::WatchEvent>) {
        let mut top = 0;
        {
            let mut m = self.mirror.write().unwrap_or_else(|e| e.into_inner());
            let specs = &self.indexes;
            for ev in events {
                top = top.max(ev.kv.mod_revision);
                m.log_change(ev.kv.mod_revision, &ev.kv.key);
                let old = match (specs.is_empty(), m.map.get(&ev.kv.key)) {
                    (false, Some(e)) => terms_of(specs, &ev.kv.key, e),
                    _ => Vec::new(),
                };
                match ev.kind {
                    EventKind::Put => {
                        let key = ev.kv.key.clone();
                        let entry = Entry {
                            kv: ev.kv,
                            decoded: OnceLock::new(),
                        };
                        if !specs.is_empty() {
                            let new = terms_of(specs, &key, &entry);
                            m.reindex(&key, &old, &new);
                        }
                        m.map.insert(key, entry);
                    }
                    EventKind::Delete => {
                        m.reindex(&ev.kv.key, &old, &[]);
                        m.map.remove(&ev.kv.key);
                    }
                }
            }
            if top > m.revision {
                m.revision = top;
            }
            top = m.revision;
        }
        self.applied.send_replace(top);
    }
}

/// The background loop: list, then watch and apply; on any watch error, list again.
async fn follow(cache: Weak<Shared>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(c) = cache.upgrade() else { return };
        let inner = c.inner.clone();
        drop(c);
        let snap = match inner.snapshot(&[String::new()]).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "watch cache: listing the store failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let from = snap.revision;
        let mut stream = match inner.watch("", from).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "watch cache: watching the store failed; re-listing");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        match cache.upgrade() {
            Some(c) => c.install(snap),
            None => return,
        }
        tracing::debug!(revision = from, "watch cache synced");
        backoff = Duration::from_millis(50);
        let reason = pump(&cache, &mut stream).await;
        let Some(c) = cache.upgrade() else { return };
        c.mark_unsynced();
        tracing::info!(reason = %reason, "watch cache lost its watch; re-listing");
    }
}

/// Applies the watch until it fails or ends; returns why it stopped.
async fn pump(cache: &Weak<Shared>, stream: &mut WatchStream) -> String {
    loop {
        let first = match stream.next().await {
            Some(Ok(ev)) => ev,
            Some(Err(e)) => return e.to_string(),
            None => return "watch ended".into(),
        };
        // Drain what is already buffered: backends deliver each revision's events together, so
        // the batch ends on a revision boundary.
        let mut batch = vec![first];
        let mut failed = None;
        while let Some(Some(next)) = stream.next().now_or_never() {
            match next {
                Ok(ev) => batch.push(ev),
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        let Some(c) = cache.upgrade() else {
            return "cache dropped".into();
        };
        c.apply(batch);
        if let Some(f) = failed {
            return f;
        }
    }
}

#[async_trait]
impl StateStore for CachedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        match self.read(|v| v.get(key).map(|e| e.kv.clone())).await? {
            Some(r) => Ok(r),
            None => self.inner().get(key).await,
        }
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResult> {
        let served = self
            .read(|v| {
                let mut kvs = Vec::new();
                let mut more = false;
                for e in v.range(&req.prefix, req.start_after.as_deref()) {
                    if req.limit.is_some_and(|l| kvs.len() >= l) {
                        more = true;
                        break;
                    }
                    kvs.push(e.kv.clone());
                }
                RangeResult {
                    kvs,
                    more,
                    revision: v.revision(),
                }
            })
            .await?;
        match served {
            Some(r) => Ok(r),
            None => self.inner().range(req).await,
        }
    }

    async fn snapshot(&self, prefixes: &[String]) -> Result<Snapshot> {
        let served = self
            .read(|v| Snapshot {
                revision: v.revision(),
                ranges: prefixes
                    .iter()
                    .map(|p| v.range(p, None).map(|e| e.kv.clone()).collect())
                    .collect(),
            })
            .await?;
        match served {
            Some(s) => Ok(s),
            None => self.inner().snapshot(prefixes).await,
        }
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome> {
        self.inner().txn(txn).await
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.inner().current_revision().await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        self.inner().watch(prefix, after).await
    }

    async fn wipe(&self) -> Result<()> {
        self.inner().wipe().await
    }

    fn backend_name(&self) -> &'static str {
        self.inner().backend_name()
    }
}
