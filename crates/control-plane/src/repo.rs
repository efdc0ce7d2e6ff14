//! Typed access to the state store: JSON-encoded storage records under well-known keys, and the
//! optimistic-concurrency pattern (read with revision → compute → commit with compare → retry).

use crate::error::ApiError;
use berth_store::cache::Entry;
use berth_store::{CachedStore, KeyValue, RangeRequest, Revision, StateStore, Txn, TxnOutcome};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;

/// How many times a read-modify-write is retried on a conflicting concurrent write.
pub const MAX_ATTEMPTS: usize = 64;

/// The key layout. Every key of the ECS API lives under `ecs/`; names never contain `/`.
pub mod keys {
    pub const CLUSTERS: &str = "ecs/clusters/";
    pub fn cluster(name: &str) -> String {
        format!("{CLUSTERS}{name}")
    }
    pub fn family(family: &str) -> String {
        format!("ecs/families/{family}")
    }
    pub const TASK_DEFINITIONS: &str = "ecs/taskdefs/";
    pub fn task_definitions_of(family: &str) -> String {
        format!("{TASK_DEFINITIONS}{family}/")
    }
    pub fn task_definition(family: &str, revision: u32) -> String {
        format!("{TASK_DEFINITIONS}{family}/{revision:010}")
    }
    pub fn instances_in(cluster: &str) -> String {
        format!("ecs/instances/{cluster}/")
    }
    pub fn instance(cluster: &str, id: &str) -> String {
        format!("ecs/instances/{cluster}/{id}")
    }
    pub const INSTANCES: &str = "ecs/instances/";
    pub fn task(cluster: &str, id: &str) -> String {
        format!("{TASKS}{cluster}/{id}")
    }
    pub fn client_token(cluster: &str, token: &str) -> String {
        format!("ecs/client-tokens/{cluster}/{}", hex::encode(token))
    }
    pub const TASKS: &str = "ecs/tasks/";
    pub fn tasks_in(cluster: &str) -> String {
        format!("{TASKS}{cluster}/")
    }
    pub fn services_in(cluster: &str) -> String {
        format!("ecs/services/{cluster}/")
    }
    pub const SERVICES: &str = "ecs/services/";
    pub fn service(cluster: &str, name: &str) -> String {
        format!("ecs/services/{cluster}/{name}")
    }
    pub const SETTINGS: &str = "ecs/settings/";
    pub fn setting(principal: &str, name: &str) -> String {
        format!("{SETTINGS}{principal}|{name}")
    }
    pub const ACCESS_KEYS: &str = "auth/keys/";
    pub fn access_key(id: &str) -> String {
        format!("{ACCESS_KEYS}{id}")
    }
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
pub(crate) fn entry_record<T: Record>(e: &Entry) -> Result<Arc<T>, ApiError> {
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

pub(crate) fn owned<T: Clone>(v: Versioned<Arc<T>>) -> Versioned<T> {
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
                .when(berth_store::Compare::ModRevision {
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

/// The error a request gets when [`MAX_ATTEMPTS`] optimistic retries all lost to concurrent writers.
pub fn contention() -> ApiError {
    ApiError::server("Too many concurrent updates to the same resource. Please retry the request.")
}
