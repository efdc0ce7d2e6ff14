//! Typed access to the state store: JSON-encoded storage records under well-known keys, and the
//! optimistic-concurrency pattern (read with revision → compute → commit with compare → retry):
//! [`Repo::retry`] for any transaction, [`Repo::update`] for the common one-record case.

use crate::error::ApiError;
use berth_store::cache::Entry;
use berth_store::{
    CachedStore, Compare, KeyValue, RangeRequest, Revision, StateStore, Txn, TxnOutcome,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;

/// How many times a read-modify-write is retried on a conflicting concurrent write.
const MAX_ATTEMPTS: usize = 64;

/// One attempt of an optimistic read-modify-commit ([`Repo::retry`]).
#[derive(Debug)]
pub enum Attempt<T> {
    /// Commit this transaction (its compares guard what the attempt read); once it commits, the
    /// answer is `T`. A failed compare means a concurrent write won: the attempt is run again.
    Commit(Txn, T),
    /// Nothing to write: the answer is `T`, now.
    Done(T),
}

/// What [`Repo::update`] does with the record it read.
#[derive(Debug)]
pub enum Change<R, T> {
    /// Write this record; once committed, the answer is `T`.
    Put(R, T),
    /// Delete the key (committed even when it was absent: the compare still guards the read);
    /// once committed, the answer is `T`.
    Delete(T),
    /// Write nothing: the answer is `T`, now.
    Keep(T),
}

/// A decoded record with the key and revision it was read at.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub key: String,
    pub value: T,
    pub revision: Revision,
}

/// Typed reads and optimistic writes. With a watch cache ([`Repo::cached`]) reads are answered
/// from memory and each stored record is parsed once per write, not once per read; every read is
/// still linearizable (see `berth_store::cache`).
#[derive(Clone)]
pub struct Repo {
    store: Arc<dyn StateStore>,
    cache: Option<CachedStore>,
}

/// What the typed read paths need of a record type.
pub trait Record: DeserializeOwned + Send + Sync + 'static {}
impl<T: DeserializeOwned + Send + Sync + 'static> Record for T {}

pub fn to_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    // Records are plain structs of strings/numbers/vectors: serialization cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn corrupt(key: &str, e: serde_json::Error) -> ApiError {
    tracing::error!(key = %key, error = %e, "undecodable storage record");
    ApiError::server(format!("corrupt record at {key}"))
}

fn decode<T: Record>(kv: KeyValue) -> Result<Versioned<Arc<T>>, ApiError> {
    match serde_json::from_slice(&kv.value) {
        Ok(value) => Ok(Versioned {
            key: kv.key,
            value: Arc::new(value),
            revision: kv.mod_revision,
        }),
        Err(e) => Err(corrupt(&kv.key, e)),
    }
}

/// A watch-cache entry's record, decoded once per write and shared with every reader (the
/// secondary indexes in `indexes` decode through here too, so they share the same form).
pub fn entry_record<T: Record>(e: &Entry) -> Result<Arc<T>, ApiError> {
    e.decoded(|b| serde_json::from_slice::<T>(b))
        .map_err(|err| corrupt(&e.kv().key, err))
}

fn decode_entry<T: Record>(e: &Entry) -> Result<Versioned<Arc<T>>, ApiError> {
    let kv = e.kv();
    Ok(Versioned {
        key: kv.key.clone(),
        value: entry_record(e)?,
        revision: kv.mod_revision,
    })
}

pub fn owned<T: Clone>(v: Versioned<Arc<T>>) -> Versioned<T> {
    Versioned {
        key: v.key,
        value: Arc::unwrap_or_clone(v.value),
        revision: v.revision,
    }
}

impl Repo {
    /// Reads and writes straight through to `store`.
    pub fn new(store: Arc<dyn StateStore>) -> Self {
        Self { store, cache: None }
    }
    /// Reads from the watch cache, writes through it to its backend.
    pub fn cached(cache: CachedStore) -> Self {
        Self {
            store: Arc::new(cache.clone()),
            cache: Some(cache),
        }
    }
    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.store
    }

    pub async fn get<T: Record + Clone>(
        &self,
        key: &str,
    ) -> Result<Option<Versioned<T>>, ApiError> {
        Ok(self.get_arc(key).await?.map(owned))
    }

    /// One record, shared (no copy when it comes from the cache).
    pub async fn get_arc<T: Record>(
        &self,
        key: &str,
    ) -> Result<Option<Versioned<Arc<T>>>, ApiError> {
        if let Some(c) = &self.cache {
            if let Some(found) = c.read(|v| v.get(key).map(decode_entry::<T>)).await? {
                return found.transpose();
            }
        }
        match self.store.get(key).await? {
            Some(kv) => Ok(Some(decode(kv)?)),
            None => Ok(None),
        }
    }

    /// Several records read at one revision (`None` where a key is absent), shared.
    pub async fn get_many_arc<T: Record>(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<Versioned<Arc<T>>>>, ApiError> {
        if let Some(c) = &self.cache {
            let served = c
                .read(|v| {
                    keys.iter()
                        .map(|k| v.get(k).map(decode_entry::<T>).transpose())
                        .collect::<Result<Vec<_>, ApiError>>()
                })
                .await?;
            if let Some(found) = served {
                return found;
            }
        }
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(match self.store.get(k).await? {
                Some(kv) => Some(decode(kv)?),
                None => None,
            });
        }
        Ok(out)
    }

    /// Every record under `prefix`, in key order.
    pub async fn list<T: Record + Clone>(
        &self,
        prefix: &str,
    ) -> Result<Vec<Versioned<T>>, ApiError> {
        Ok(self
            .list_arc(prefix)
            .await?
            .into_iter()
            .map(owned)
            .collect())
    }

    /// Every record under `prefix`, in key order, shared.
    pub async fn list_arc<T: Record>(
        &self,
        prefix: &str,
    ) -> Result<Vec<Versioned<Arc<T>>>, ApiError> {
        self.scan(prefix, |v: Versioned<Arc<T>>| Some(v)).await
    }

    /// `f` applied to every record under `prefix` in key order, keeping the `Some`s: filters
    /// large ranges (all tasks of a cluster) without copying the records they skip.
    pub async fn scan<T: Record, R>(
        &self,
        prefix: &str,
        mut f: impl FnMut(Versioned<Arc<T>>) -> Option<R>,
    ) -> Result<Vec<R>, ApiError> {
        if let Some(c) = &self.cache {
            let served = c
                .read(|v| {
                    let mut out = Vec::new();
                    for e in v.range(prefix, None) {
                        if let Some(r) = f(decode_entry::<T>(e)?) {
                            out.push(r);
                        }
                    }
                    Ok::<_, ApiError>(out)
                })
                .await?;
            if let Some(out) = served {
                return out;
            }
        }
        let r = self
            .store
            .range(RangeRequest {
                prefix: prefix.to_string(),
                ..Default::default()
            })
            .await?;
        let mut out = Vec::new();
        for kv in r.kvs {
            if let Some(r) = f(decode(kv)?) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// One page of records found through a watch-cache index: the records the index `index`
    /// lists under `term`, after the key `start_after`, in key order, for which `f` gives
    /// `Some`; at most `limit` of them, and whether more matched. When the cache can't serve
    /// (none, or not caught up), every record under `prefix` is tested by `f` instead: so `f`
    /// must accept only records the index lists under `term`, and the answer is the same.
    #[allow(clippy::too_many_arguments)]
    pub async fn index_page<T: Record, R>(
        &self,
        index: &str,
        term: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        mut f: impl FnMut(&str, &Arc<T>) -> Option<R>,
    ) -> Result<(Vec<(String, R)>, bool), ApiError> {
        fn take<R>(out: &mut Vec<(String, R)>, limit: usize, key: &str, r: Option<R>) -> bool {
            match r {
                Some(_) if out.len() == limit => true,
                Some(r) => {
                    out.push((key.to_string(), r));
                    false
                }
                None => false,
            }
        }
        if let Some(c) = &self.cache {
            let served = c
                .read(|v| {
                    let mut out = Vec::new();
                    let Some(entries) = v.index(index, term, start_after) else {
                        return Ok(None);
                    };
                    for e in entries {
                        let key = &e.kv().key;
                        if take(&mut out, limit, key, f(key, &entry_record(e)?)) {
                            return Ok(Some((out, true)));
                        }
                    }
                    Ok::<_, ApiError>(Some((out, false)))
                })
                .await?;
            if let Some(Some(page)) = served.transpose()? {
                return Ok(page);
            }
        }
        let r = self
            .store
            .range(RangeRequest {
                prefix: prefix.to_string(),
                start_after: start_after.map(str::to_string),
                limit: None,
            })
            .await?;
        let mut out = Vec::new();
        for kv in r.kvs {
            let rec = decode::<T>(kv)?;
            if take(&mut out, limit, &rec.key, f(&rec.key, &rec.value)) {
                return Ok((out, true));
            }
        }
        Ok((out, false))
    }

    /// Every record the watch-cache index `index` lists under `term` for which `f` gives
    /// `Some` (see [`Repo::index_page`]).
    pub async fn index_all<T: Record, R>(
        &self,
        index: &str,
        term: &str,
        prefix: &str,
        f: impl FnMut(&str, &Arc<T>) -> Option<R>,
    ) -> Result<Vec<R>, ApiError> {
        let (page, _) = self
            .index_page(index, term, prefix, None, usize::MAX, f)
            .await?;
        Ok(page.into_iter().map(|(_, r)| r).collect())
    }

    /// `f(key, record, revision)` on every record under `prefix`, in key order, borrowing (no
    /// copies of keys or records): for folds over large ranges.
    pub async fn visit<T: Record>(
        &self,
        prefix: &str,
        mut f: impl FnMut(&str, &Arc<T>, Revision),
    ) -> Result<(), ApiError> {
        self.visit_lazy(prefix, |e: &Lazy<'_, T>| {
            f(e.key(), &e.get()?, e.revision());
            Ok(())
        })
        .await
    }

    /// `f` on every record under `prefix`, in key order, without decoding it unless `f` asks
    /// ([`Lazy::get`]): for walks that mostly compare revisions.
    pub async fn visit_lazy<T: Record>(
        &self,
        prefix: &str,
        f: impl FnMut(&Lazy<'_, T>) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        self.visit_lazy_at(prefix, f).await.map(|_| ())
    }

    /// [`Repo::visit_lazy`], also returning the revision the walk saw (`None` when it was
    /// served by the backend rather than the watch cache: then there is no change log to follow
    /// from it).
    pub async fn visit_lazy_at<T: Record>(
        &self,
        prefix: &str,
        mut f: impl FnMut(&Lazy<'_, T>) -> Result<(), ApiError>,
    ) -> Result<Option<Revision>, ApiError> {
        if let Some(c) = &self.cache {
            let served = c
                .read(|v| {
                    for e in v.range(prefix, None) {
                        f(&Lazy::cached(e))?;
                    }
                    Ok::<_, ApiError>(v.revision())
                })
                .await?;
            if let Some(r) = served {
                return r.map(Some);
            }
        }
        let r = self
            .store
            .range(RangeRequest {
                prefix: prefix.to_string(),
                ..Default::default()
            })
            .await?;
        for kv in r.kvs {
            let rec = decode::<T>(kv)?;
            f(&Lazy {
                key: &rec.key,
                revision: rec.revision,
                record: LazyRecord::Decoded(rec.value.clone()),
            })?;
        }
        Ok(None)
    }

    /// `f` on every key under `prefix` written or deleted since revision `since` (the record as
    /// it is now, `None` if deleted), from the watch cache's change log; returns the revision now
    /// seen. `Ok(None)` (and `f` never called) when the log does not reach back to `since` or
    /// there is no cache: walk everything with [`Repo::visit_lazy_at`] instead.
    pub async fn visit_changed<T: Record>(
        &self,
        prefix: &str,
        since: Revision,
        mut f: impl FnMut(&str, Option<&Lazy<'_, T>>) -> Result<(), ApiError>,
    ) -> Result<Option<Revision>, ApiError> {
        let Some(c) = &self.cache else {
            return Ok(None);
        };
        let served = c
            .read(|v| {
                let Some(keys) = v.changed_keys(prefix, since) else {
                    return Ok(None);
                };
                for key in keys {
                    f(key, v.get(key).map(Lazy::cached).as_ref())?;
                }
                Ok::<_, ApiError>(Some(v.revision()))
            })
            .await?;
        served.unwrap_or(Ok(None))
    }

    /// The number of keys under `prefix` (at most `limit`, if given).
    pub async fn count(&self, prefix: &str, limit: Option<usize>) -> Result<usize, ApiError> {
        if let Some(c) = &self.cache {
            let limit = limit.unwrap_or(usize::MAX);
            if let Some(n) = c
                .read(|v| v.range(prefix, None).take(limit).count())
                .await?
            {
                return Ok(n);
            }
        }
        let r = self
            .store
            .range(RangeRequest {
                prefix: prefix.to_string(),
                start_after: None,
                limit,
            })
            .await?;
        Ok(r.kvs.len())
    }

    /// Deletes each key that is still at the revision it was read at (one written since is
    /// kept); returns the keys deleted. For the periodic collections of expired records.
    pub async fn delete_unchanged(
        &self,
        items: impl IntoIterator<Item = (String, Revision)>,
    ) -> Result<Vec<String>, ApiError> {
        let mut deleted = Vec::new();
        for (key, revision) in items {
            let txn = Txn::new()
                .when(Compare::ModRevision {
                    key: key.clone(),
                    revision,
                })
                .delete(key.clone());
            if self.commit(txn).await?.is_some() {
                deleted.push(key);
            }
        }
        Ok(deleted)
    }

    /// Optimistic read-modify-commit: runs `attempt` (read with revisions → compute → a
    /// transaction whose compares guard those reads) and commits what it returns, until a commit
    /// holds; `Attempt::Done` ends it without writing. A lost race (a failed compare) runs
    /// `attempt` again, at most `MAX_ATTEMPTS` (64) times in all, then fails with
    /// [`contention`]. An error from `attempt` or from the store ends it at once (no retry).
    ///
    /// Commits go through [`Repo::commit`], so inside leader-only work (`leader::as_leader`)
    /// every one is fenced, and a deposed leader's attempt fails with `leader::deposed()` rather
    /// than being retried.
    pub async fn retry<T, F, Fut>(&self, attempt: F) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Attempt<T>, ApiError>>,
    {
        self.retry_as(attempt).await
    }

    /// [`Repo::retry`] for callers with their own error type: `attempt`'s errors come back as
    /// they are, the store's and [`contention`] through `E::from`.
    pub async fn retry_as<T, E, F, Fut>(&self, mut attempt: F) -> Result<T, E>
    where
        E: From<ApiError>,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Attempt<T>, E>>,
    {
        for _ in 0..MAX_ATTEMPTS {
            if let Some(out) = self.settle(attempt().await?).await? {
                return Ok(out);
            }
        }
        Err(contention().into())
    }

    /// Optimistic read-modify-commit of the one record at `key`: reads it (`None` when absent),
    /// lets `f` decide the [`Change`], and commits it guarded by
    /// `Compare::ModRevision { key, revision }` on the revision read (0 when the key was absent,
    /// which holds only while it still is). Retried like [`Repo::retry`] (at most `MAX_ATTEMPTS`
    /// times, then [`contention`]; `f`'s errors end it at once), and fenced like every
    /// [`Repo::commit`] inside leader-only work.
    pub async fn update<R, T>(
        &self,
        key: &str,
        mut f: impl FnMut(Option<R>) -> Result<Change<R, T>, ApiError>,
    ) -> Result<T, ApiError>
    where
        R: Record + Clone + Serialize,
    {
        for _ in 0..MAX_ATTEMPTS {
            let current = self.get::<R>(key).await?;
            let guard = Compare::ModRevision {
                key: key.to_string(),
                revision: current.as_ref().map_or(0, |c| c.revision),
            };
            let attempt = match f(current.map(|c| c.value))? {
                Change::Put(rec, out) => Attempt::Commit(
                    Txn::new().when(guard).put(key.to_string(), to_bytes(&rec)),
                    out,
                ),
                Change::Delete(out) => {
                    Attempt::Commit(Txn::new().when(guard).delete(key.to_string()), out)
                }
                Change::Keep(out) => Attempt::Done(out),
            };
            if let Some(out) = self.settle(attempt).await? {
                return Ok(out);
            }
        }
        Err(contention())
    }

    /// Carries out one attempt: `Some` with its answer when done, `None` when the commit lost.
    async fn settle<T>(&self, attempt: Attempt<T>) -> Result<Option<T>, ApiError> {
        match attempt {
            Attempt::Done(out) => Ok(Some(out)),
            Attempt::Commit(txn, out) => Ok(self.commit(txn).await?.map(|_| out)),
        }
    }

    /// Commits `txn`; `Ok(None)` when a compare failed (someone else wrote first: re-read, retry).
    /// Inside leader-only work (`leader::as_leader`) the leader's fence is added first, and a
    /// commit that fails on it is `Err(leader::deposed())`.
    pub async fn commit(&self, txn: Txn) -> Result<Option<Revision>, ApiError> {
        let (txn, fenced) = crate::leader::fence_txn(txn);
        match self.store.txn(txn).await? {
            TxnOutcome::Committed { revision } => Ok(Some(revision)),
            TxnOutcome::CompareFailed { index: 0 } if fenced => {
                tracing::warn!("leader-only commit rejected: this replica was deposed");
                Err(crate::leader::deposed())
            }
            TxnOutcome::CompareFailed { .. } => Ok(None),
        }
    }
}

/// A record met by [`Repo::visit_lazy`]: its key and revision, and the record on demand.
pub struct Lazy<'e, T> {
    key: &'e str,
    revision: Revision,
    record: LazyRecord<'e, T>,
}

enum LazyRecord<'e, T> {
    /// In the watch cache: decoded on demand.
    Cached(&'e Entry),
    /// Read from the backend (no cache): already decoded.
    Decoded(Arc<T>),
}

impl<'e, T> Lazy<'e, T> {
    fn cached(e: &'e Entry) -> Self {
        Lazy {
            key: &e.kv().key,
            revision: e.kv().mod_revision,
            record: LazyRecord::Cached(e),
        }
    }
}

impl<T: Record> Lazy<'_, T> {
    pub fn key(&self) -> &str {
        self.key
    }
    pub fn revision(&self) -> Revision {
        self.revision
    }
    /// The decoded record (decoded once per write, shared).
    pub fn get(&self) -> Result<Arc<T>, ApiError> {
        match &self.record {
            LazyRecord::Cached(e) => entry_record(e),
            LazyRecord::Decoded(v) => Ok(v.clone()),
        }
    }
}

/// The error a request gets when `MAX_ATTEMPTS` optimistic retries all lost to concurrent writers
/// ([`Repo::retry`], [`Repo::update`]; also for a single optimistic attempt that lost).
pub fn contention() -> ApiError {
    ApiError::server("Too many concurrent updates to the same resource. Please retry the request.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use berth_store::{MemoryStore, RangeResult, Snapshot, WatchStream};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A memory store whose next `conflicts` guarded transactions fail their first compare (a
    /// concurrent writer won every time); counts the transactions it is asked to commit.
    struct Contended {
        inner: MemoryStore,
        conflicts: AtomicUsize,
        txns: AtomicUsize,
    }

    impl Contended {
        fn new(conflicts: usize) -> Arc<Self> {
            Arc::new(Self {
                inner: MemoryStore::new(),
                conflicts: AtomicUsize::new(conflicts),
                txns: AtomicUsize::new(0),
            })
        }
        fn txns(&self) -> usize {
            self.txns.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl StateStore for Contended {
        async fn get(&self, key: &str) -> berth_store::Result<Option<KeyValue>> {
            self.inner.get(key).await
        }
        async fn range(&self, req: RangeRequest) -> berth_store::Result<RangeResult> {
            self.inner.range(req).await
        }
        async fn snapshot(&self, prefixes: &[String]) -> berth_store::Result<Snapshot> {
            self.inner.snapshot(prefixes).await
        }
        async fn txn(&self, txn: Txn) -> berth_store::Result<TxnOutcome> {
            self.txns.fetch_add(1, Ordering::SeqCst);
            let lose = !txn.compares.is_empty()
                && self
                    .conflicts
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
            if lose {
                return Ok(TxnOutcome::CompareFailed { index: 0 });
            }
            self.inner.txn(txn).await
        }
        async fn current_revision(&self) -> berth_store::Result<Revision> {
            self.inner.current_revision().await
        }
        async fn watch(&self, prefix: &str, after: Revision) -> berth_store::Result<WatchStream> {
            self.inner.watch(prefix, after).await
        }
        async fn wipe(&self) -> berth_store::Result<()> {
            self.inner.wipe().await
        }
        fn backend_name(&self) -> &'static str {
            "contended"
        }
    }

    /// A counter increment as an attempt: read `k`, commit `k + 1` guarded on its revision.
    async fn increment(repo: &Repo, attempts: &AtomicUsize) -> Result<Attempt<u64>, ApiError> {
        attempts.fetch_add(1, Ordering::SeqCst);
        let cur = repo.get::<u64>("k").await?;
        let next = cur.as_ref().map_or(0, |c| c.value) + 1;
        let txn = Txn::new()
            .when(Compare::ModRevision {
                key: "k".into(),
                revision: cur.map_or(0, |c| c.revision),
            })
            .put("k", to_bytes(&next));
        Ok(Attempt::Commit(txn, next))
    }

    async fn value(repo: &Repo) -> Option<u64> {
        repo.get::<u64>("k").await.unwrap().map(|v| v.value)
    }

    #[tokio::test]
    async fn retry_runs_again_after_a_lost_race_then_commits() {
        // A real race on a memory store: a concurrent writer lands between the read and the
        // commit of the first two attempts.
        let store = Arc::new(MemoryStore::new());
        let repo = Repo::new(store.clone());
        let attempts = AtomicUsize::new(0);
        let out = repo
            .retry(|| async {
                let a = increment(&repo, &attempts).await?;
                if attempts.load(Ordering::SeqCst) <= 2 {
                    store.txn(Txn::new().put("k", to_bytes(&10u64))).await?;
                }
                Ok(a)
            })
            .await
            .unwrap();
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
        assert_eq!(out, 11);
        assert_eq!(value(&repo).await, Some(11));
    }

    #[tokio::test]
    async fn retry_fails_with_contention_after_max_attempts() {
        let store = Contended::new(usize::MAX);
        let repo = Repo::new(store.clone());
        let attempts = AtomicUsize::new(0);
        let err = repo
            .retry(|| increment(&repo, &attempts))
            .await
            .unwrap_err();
        assert_eq!(err, contention());
        assert_eq!(attempts.load(Ordering::SeqCst), MAX_ATTEMPTS);
        assert_eq!(store.txns(), MAX_ATTEMPTS);
        assert_eq!(value(&repo).await, None);

        // Just under the limit still succeeds.
        let store = Contended::new(MAX_ATTEMPTS - 1);
        let repo = Repo::new(store.clone());
        let attempts = AtomicUsize::new(0);
        let out = repo.retry(|| increment(&repo, &attempts)).await;
        assert_eq!(out, Ok(1));
        assert_eq!(store.txns(), MAX_ATTEMPTS);
    }

    #[tokio::test]
    async fn retry_done_writes_nothing() {
        let store = Contended::new(0);
        let repo = Repo::new(store.clone());
        let before = store.current_revision().await.unwrap();
        let attempts = AtomicUsize::new(0);
        let out = repo
            .retry(|| async {
                attempts.fetch_add(1, Ordering::SeqCst);
                Ok(Attempt::Done("nothing to do"))
            })
            .await;
        assert_eq!(out, Ok("nothing to do"));
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
        assert_eq!(store.txns(), 0);
        assert_eq!(store.current_revision().await.unwrap(), before);
    }

    #[tokio::test]
    async fn retry_errors_end_it_without_retrying() {
        let store = Contended::new(usize::MAX);
        let repo = Repo::new(store.clone());
        let attempts = AtomicUsize::new(0);
        let err = repo
            .retry(|| async {
                attempts.fetch_add(1, Ordering::SeqCst);
                Err::<Attempt<()>, _>(ApiError::invalid_parameter("bad"))
            })
            .await
            .unwrap_err();
        assert_eq!(err, ApiError::invalid_parameter("bad"));
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
        assert_eq!(store.txns(), 0);

        // With the caller's own error type: its errors as they are, contention through From.
        #[derive(Debug, PartialEq)]
        enum Mine {
            Gone,
            Api(ApiError),
        }
        impl From<ApiError> for Mine {
            fn from(e: ApiError) -> Self {
                Mine::Api(e)
            }
        }
        let gone = repo
            .retry_as(|| async { Err::<Attempt<()>, _>(Mine::Gone) })
            .await;
        assert_eq!(gone, Err(Mine::Gone));
        let attempts = AtomicUsize::new(0);
        let lost = repo
            .retry_as(|| async { Ok::<_, Mine>(increment(&repo, &attempts).await?) })
            .await;
        assert_eq!(lost, Err(Mine::Api(contention())));
        assert_eq!(attempts.load(Ordering::SeqCst), MAX_ATTEMPTS);
    }

    #[tokio::test]
    async fn retry_inside_leader_work_is_fenced_not_retried() {
        use crate::leader::{as_leader, Leader, Leadership, DEPOSED, LEADER_KEY};
        let store = Arc::new(MemoryStore::new());
        let repo = Repo::new(store.clone());
        let elected = repo
            .commit(Txn::new().put(LEADER_KEY, "me"))
            .await
            .unwrap()
            .unwrap();
        let leader = Leader::default();
        let (_tx, rx) = tokio::sync::watch::channel(Leadership::elected(Compare::CreateRevision {
            key: LEADER_KEY.into(),
            revision: elected,
        }));
        leader.set(rx);
        let attempts = AtomicUsize::new(0);
        let first = as_leader(&leader, repo.retry(|| increment(&repo, &attempts))).await;
        assert_eq!(first, Some(Ok(1)));
        // Deposed: the leader key is gone.
        repo.commit(Txn::new().delete(LEADER_KEY)).await.unwrap();
        let attempts = AtomicUsize::new(0);
        let err = as_leader(&leader, repo.retry(|| increment(&repo, &attempts)))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.message, DEPOSED);
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
        assert_eq!(value(&repo).await, Some(1));
    }

    #[tokio::test]
    async fn update_puts_deletes_and_keeps_one_record() {
        let store = Contended::new(0);
        let repo = Repo::new(store.clone());
        // Absent: guarded on revision 0 (holds only while still absent).
        let seen = repo
            .update::<u64, _>("k", |cur| Ok(Change::Put(5, cur)))
            .await;
        assert_eq!(seen, Ok(None));
        assert_eq!(value(&repo).await, Some(5));
        let seen = repo
            .update::<u64, _>("k", |cur| Ok(Change::Put(cur.unwrap_or(0) * 2, cur)))
            .await;
        assert_eq!(seen, Ok(Some(5)));
        assert_eq!(value(&repo).await, Some(10));
        // Keep: no transaction at all.
        let txns = store.txns();
        let kept = repo
            .update::<u64, _>("k", |cur| Ok(Change::Keep(cur)))
            .await;
        assert_eq!(kept, Ok(Some(10)));
        assert_eq!(store.txns(), txns);
        let deleted = repo
            .update::<u64, _>("k", |cur| Ok(Change::Delete(cur)))
            .await;
        assert_eq!(deleted, Ok(Some(10)));
        assert_eq!(value(&repo).await, None);
    }

    #[tokio::test]
    async fn update_guards_on_the_revision_it_read() {
        // A write between the read and the commit fails the compare: the next attempt sees it.
        let store = Arc::new(MemoryStore::new());
        let repo = Repo::new(store.clone());
        repo.commit(Txn::new().put("k", to_bytes(&1u64)))
            .await
            .unwrap();
        let mut calls = 0;
        let out = repo
            .update::<u64, _>("k", |cur| {
                calls += 1;
                let cur = cur.unwrap();
                if calls == 1 {
                    // The concurrent writer, done before this attempt commits.
                    futures::executor::block_on(store.txn(Txn::new().put("k", to_bytes(&100u64))))
                        .unwrap();
                }
                Ok(Change::Put(cur + 1, cur))
            })
            .await;
        assert_eq!(calls, 2);
        assert_eq!(out, Ok(100));
        assert_eq!(value(&repo).await, Some(101));
    }

    #[tokio::test]
    async fn update_retries_then_gives_up_and_stops_on_errors() {
        let store = Contended::new(3);
        let repo = Repo::new(store.clone());
        let mut calls = 0;
        let out = repo
            .update::<u64, _>("k", |_| {
                calls += 1;
                Ok(Change::Put(7, ()))
            })
            .await;
        assert_eq!((out, calls), (Ok(()), 4));
        assert_eq!(value(&repo).await, Some(7));

        let store = Contended::new(usize::MAX);
        let repo = Repo::new(store.clone());
        let mut calls = 0;
        let out = repo
            .update::<u64, _>("k", |_| {
                calls += 1;
                Ok(Change::Delete(()))
            })
            .await;
        assert_eq!((out, calls), (Err(contention()), MAX_ATTEMPTS));

        let mut calls = 0;
        let out = repo
            .update::<u64, ()>("k", |_| {
                calls += 1;
                Err(ApiError::client("no"))
            })
            .await;
        assert_eq!((out, calls), (Err(ApiError::client("no")), 1));
        assert_eq!(store.txns(), MAX_ATTEMPTS);
    }
}
