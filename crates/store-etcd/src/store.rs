//! [`EtcdStore`]: the [`StateStore`] on etcd.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare as EtcdCompare, CompareOp, DeleteOptions, GetOptions, PutOptions,
    Txn as EtcdTxn, TxnOp, TxnOpResponse,
};

use berth_store::{
    Compare, KeyValue, RangeRequest, RangeResult, Result, Revision, Snapshot, StateStore,
    StoreError, Txn, TxnOutcome, WatchStream,
};

use crate::keys::{fold_ops, successor, EtcdWrite, Keys};
use crate::options::EtcdOptions;

/// How many range reads go into one read-only etcd Txn of a snapshot (etcd allows 128 ops).
const SNAPSHOT_CHUNK: usize = 64;

/// A [`StateStore`] on an etcd cluster (see the crate docs for the exact mapping).
///
/// Cheap to clone: clones share one connection (HTTP/2, balanced over the endpoints).
#[derive(Clone)]
pub struct EtcdStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) client: Client,
    pub(crate) keys: Keys,
    pub(crate) options: EtcdOptions,
}

/// Largest response berth accepts from etcd (etcd-client's default is 4 MiB: too small for a
/// range over a big prefix, or a watch catching up in batches of many revisions).
const MAX_RESPONSE_BYTES: usize = 256 << 20;

impl Inner {
    /// A KV client that accepts large responses.
    pub(crate) fn kv(&self) -> etcd_client::KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// A watch client that accepts large responses.
    pub(crate) fn watch(&self) -> etcd_client::WatchClient {
        self.client
            .watch_client()
            .max_decoding_message_size(MAX_RESPONSE_BYTES)
    }
}

impl EtcdStore {
    /// Connect to etcd and check that it answers (one read).
    ///
    /// Errors: a bad option → `Backend`; etcd unreachable or refusing the credentials →
    /// `Unavailable`.
    pub async fn connect(options: EtcdOptions) -> Result<Self> {
        let connect = options
            .connect_options()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let client = Client::connect(options.endpoint_urls(), Some(connect))
            .await
            .map_err(|e| unavailable_or_backend("connecting to etcd", e))?;
        let store = Self {
            inner: Arc::new(Inner {
                client,
                keys: Keys::new(&options.prefix),
                options,
            }),
        };
        let rev = store.current_revision().await?;
        tracing::info!(
            endpoints = ?store.inner.options.endpoints,
            prefix = %store.inner.options.prefix,
            revision = rev,
            "connected to etcd"
        );
        Ok(store)
    }

    /// The options this store was opened with.
    pub fn options(&self) -> &EtcdOptions {
        &self.inner.options
    }

    /// The underlying etcd client (shares the connection), for tools and tests.
    pub fn client(&self) -> Client {
        self.inner.client.clone()
    }

    /// Compact etcd's history up to `revision` (for the whole etcd, not just this prefix: etcd
    /// keeps one history). Watches from before it then fail with `Compacted`.
    pub async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner
            .client
            .clone()
            .compact(revision, None)
            .await
            .map_err(|e| map_err("compacting etcd", e))?;
        Ok(())
    }

    /// The revision of the last wipe (0 if the store was never wiped) and the current revision.
    pub(crate) async fn wipe_revision(&self) -> Result<(Revision, Revision)> {
        let resp = self
            .inner
            .kv()
            .get(
                self.inner.keys.wipe_marker(),
                Some(GetOptions::new().with_keys_only()),
            )
            .await
            .map_err(|e| map_err("reading the wipe marker", e))?;
        let rev = resp.header().map_or(0, |h| h.revision());
        Ok((resp.kvs().first().map_or(0, |kv| kv.mod_revision()), rev))
    }

    /// Does etcd still hold history at `revision`? (A range read at that revision.)
    pub(crate) async fn history_retained(&self, revision: Revision) -> Result<bool> {
        let r = self
            .inner
            .kv()
            .get(
                self.inner.keys.wipe_marker(),
                Some(GetOptions::new().with_count_only().with_revision(revision)),
            )
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if is_compacted(&e) => Ok(false),
            Err(e) => Err(map_err("checking the watch start revision", e)),
        }
    }
}

/// How often a request that could not reach an etcd member is sent again.
const CONNECT_RETRIES: usize = 6;

/// Did the request fail before reaching etcd (the member it was routed to refuses connections)?
/// etcd-client balances requests over every endpoint and keeps a dead member in the rotation, so
/// such a request is safe to send again (even a Txn: etcd never saw it) and the balancer routes
/// the next try to another member.
pub(crate) fn is_connect_error(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            s.code() == tonic::Code::Unavailable && s.message().contains("connect error")
        }
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

/// Runs `$req` (re-evaluated per try) again while it fails with a connect error.
macro_rules! retry_connect {
    ($req:expr) => {{
        let mut tries = 0;
        loop {
            match $req {
                Err(e) if tries < CONNECT_RETRIES && is_connect_error(&e) => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(20 * tries as u64)).await;
                }
                r => break r,
            }
        }
    }};
}

/// Is this etcd's "required revision has been compacted"?
pub(crate) fn is_compacted(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.message().contains("compacted"))
}

/// An etcd error as a [`StoreError`]: connection trouble is `Unavailable`, the rest `Backend`.
pub(crate) fn map_err(what: &str, e: etcd_client::Error) -> StoreError {
    use etcd_client::Error as E;
    use tonic::Code;
    let unavailable = match &e {
        E::GRpcStatus(s) => {
            matches!(
                s.code(),
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
            ) || s.message().contains("no leader")
                || s.message().contains("leader changed")
                || s.message().contains("timed out")
        }
        E::TransportError(_) | E::IoError(_) | E::WatchError(_) | E::LeaseKeepAliveError(_) => true,
        _ => false,
    };
    if unavailable {
        StoreError::Unavailable(format!("etcd: {what}: {e}"))
    } else {
        StoreError::Backend(format!("etcd: {what}: {e}"))
    }
}

fn unavailable_or_backend(what: &str, e: etcd_client::Error) -> StoreError {
    match e {
        // Bad credentials at connect time: etcd is there but refuses us.
        etcd_client::Error::GRpcStatus(ref s) if s.code() == tonic::Code::InvalidArgument => {
            StoreError::Unavailable(format!("etcd: {what}: {e}"))
        }
        e => map_err(what, e),
    }
}

fn header_revision(h: Option<&etcd_client::ResponseHeader>) -> Result<Revision> {
    h.map(|h| h.revision())
        .ok_or_else(|| StoreError::Backend("etcd response without a header".into()))
}

/// The etcd compare for one store compare.
fn etcd_compare(keys: &Keys, c: &Compare) -> EtcdCompare {
    match c {
        Compare::ModRevision { key, revision: 0 }
        | Compare::CreateRevision { key, revision: 0 }
        | Compare::Absent { key } => {
            EtcdCompare::create_revision(keys.key(key), CompareOp::Equal, 0)
        }
        Compare::ModRevision { key, revision } => {
            EtcdCompare::mod_revision(keys.key(key), CompareOp::Equal, *revision)
        }
        Compare::Exists { key } => {
            EtcdCompare::create_revision(keys.key(key), CompareOp::Greater, 0)
        }
        Compare::CreateRevision { key, revision } => {
            EtcdCompare::create_revision(keys.key(key), CompareOp::Equal, *revision)
        }
    }
}

fn compare_key(c: &Compare) -> &str {
    match c {
        Compare::ModRevision { key, .. }
        | Compare::Absent { key }
        | Compare::Exists { key }
        | Compare::CreateRevision { key, .. } => key,
    }
}

/// Does `c` hold, given the key's (create_revision, mod_revision) or absence?
fn compare_holds(c: &Compare, state: Option<(Revision, Revision)>) -> bool {
    match c {
        Compare::ModRevision { revision, .. } => state.map_or(0, |(_, m)| m) == *revision,
        Compare::Absent { .. } => state.is_none(),
        Compare::Exists { .. } => state.is_some(),
        Compare::CreateRevision { revision, .. } => state.map_or(0, |(c, _)| c) == *revision,
    }
}

#[async_trait]
impl StateStore for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = retry_connect!(self.inner.kv().get(self.inner.keys.key(key), None).await)
            .map_err(|e| map_err("get", e))?;
        resp.kvs()
            .first()
            .map(|kv| self.inner.keys.kv(kv))
            .transpose()
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResult> {
        let keys = &self.inner.keys;
        let (mut start, end) = keys.prefix_range(&req.prefix);
        if let Some(after) = req.start_after.as_deref() {
            if after >= req.prefix.as_str() {
                start = successor(&keys.key(after));
            }
        }
        let mut kv = self.inner.kv();
        if start >= end && end != [0] {
            // start_after is past the prefix: nothing to read, but report the revision.
            return Ok(RangeResult {
                kvs: Vec::new(),
                more: false,
                revision: self.current_revision().await?,
            });
        }
        let mut opts = GetOptions::new().with_range(end);
        match req.limit {
            Some(0) => opts = opts.with_count_only(),
            Some(n) => opts = opts.with_limit(i64::try_from(n).unwrap_or(i64::MAX)),
            None => {}
        }
        let resp = retry_connect!(kv.get(start.clone(), Some(opts.clone())).await)
            .map_err(|e| map_err("range", e))?;
        let revision = header_revision(resp.header())?;
        if req.limit == Some(0) {
            return Ok(RangeResult {
                kvs: Vec::new(),
                more: resp.count() > 0,
                revision,
            });
        }
        let kvs = resp
            .kvs()
            .iter()
            .map(|kv| keys.kv(kv))
            .collect::<Result<Vec<_>>>()?;
        Ok(RangeResult {
            kvs,
            more: resp.more(),
            revision,
        })
    }

    async fn snapshot(&self, prefixes: &[String]) -> Result<Snapshot> {
        let keys = &self.inner.keys;
        if prefixes.is_empty() {
            return Ok(Snapshot {
                revision: self.current_revision().await?,
                ranges: Vec::new(),
            });
        }
        let mut kv = self.inner.kv();
        let mut revision = 0;
        let mut ranges = Vec::with_capacity(prefixes.len());
        // One read-only Txn per chunk: the first fixes the revision, the rest read at it.
        for chunk in prefixes.chunks(SNAPSHOT_CHUNK) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|p| {
                    let (start, end) = keys.prefix_range(p);
                    let mut o = GetOptions::new().with_range(end);
                    if revision > 0 {
                        o = o.with_revision(revision);
                    }
                    TxnOp::get(start, Some(o))
                })
                .collect();
            let read = EtcdTxn::new().and_then(ops);
            let resp =
                retry_connect!(kv.txn(read.clone()).await).map_err(|e| map_err("snapshot", e))?;
            if revision == 0 {
                revision = header_revision(resp.header())?;
            }
            for op in resp.op_responses() {
                let TxnOpResponse::Get(get) = op else {
                    return Err(StoreError::Backend(
                        "etcd snapshot: unexpected response kind".into(),
                    ));
                };
                ranges.push(
                    get.kvs()
                        .iter()
                        .map(|kv| keys.kv(kv))
                        .collect::<Result<Vec<_>>>()?,
                );
            }
        }
        Ok(Snapshot { revision, ranges })
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome> {
        let keys = &self.inner.keys;
        let compares: Vec<EtcdCompare> =
            txn.compares.iter().map(|c| etcd_compare(keys, c)).collect();
        let writes: Vec<TxnOp> = fold_ops(keys, txn.ops)
            .into_iter()
            .map(|w| match w {
                EtcdWrite::Put { key, value } => TxnOp::put(key, value, None::<PutOptions>),
                EtcdWrite::Delete { key } => TxnOp::delete(key, None),
                EtcdWrite::DeleteRange { start, end } => {
                    TxnOp::delete(start, Some(DeleteOptions::new().with_range(end)))
                }
            })
            .collect();
        // The failure branch reads every compared key, at the revision the compares saw.
        let mut compared: Vec<&str> = Vec::new();
        for c in &txn.compares {
            let k = compare_key(c);
            if !compared.contains(&k) {
                compared.push(k);
            }
        }
        let reads: Vec<TxnOp> = compared
            .iter()
            .map(|k| TxnOp::get(keys.key(k), Some(GetOptions::new().with_keys_only())))
            .collect();
        let etcd_txn = EtcdTxn::new()
            .when(compares)
            .and_then(writes)
            .or_else(reads);
        let resp = retry_connect!(self.inner.kv().txn(etcd_txn.clone()).await)
            .map_err(|e| map_err("txn", e))?;
        let revision = header_revision(resp.header())?;
        if resp.succeeded() {
            return Ok(TxnOutcome::Committed { revision });
        }
        let mut state: HashMap<&str, Option<(Revision, Revision)>> = HashMap::new();
        for (k, op) in compared.iter().zip(resp.op_responses()) {
            let TxnOpResponse::Get(get) = op else {
                return Err(StoreError::Backend(
                    "etcd txn: unexpected response kind".into(),
                ));
            };
            let s = get
                .kvs()
                .first()
                .map(|kv| (kv.create_revision(), kv.mod_revision()));
            state.insert(k, s);
        }
        let index = txn
            .compares
            .iter()
            .position(|c| !compare_holds(c, state.get(compare_key(c)).copied().flatten()))
            .unwrap_or_else(|| {
                tracing::warn!("etcd txn failed but every compare holds on re-read");
                0
            });
        Ok(TxnOutcome::CompareFailed { index })
    }

    async fn current_revision(&self) -> Result<Revision> {
        let resp = retry_connect!(
            self.inner
                .kv()
                .get(
                    self.inner.keys.wipe_marker(),
                    Some(GetOptions::new().with_count_only()),
                )
                .await
        )
        .map_err(|e| map_err("reading the revision", e))?;
        header_revision(resp.header())
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        crate::watch::open(self.clone(), prefix, after).await
    }

    async fn wipe(&self) -> Result<()> {
        let keys = &self.inner.keys;
        let (start, end) = keys.prefix_range("");
        let resp = self
            .inner
            .kv()
            .txn(EtcdTxn::new().and_then(vec![
                TxnOp::delete(start, Some(DeleteOptions::new().with_range(end))),
                TxnOp::put(keys.wipe_marker(), b"wipe".to_vec(), None),
            ]))
            .await
            .map_err(|e| map_err("wipe", e))?;
        let revision = header_revision(resp.header())?;
        tracing::info!(revision, prefix = %self.inner.options.prefix, "etcd store wiped");
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "etcd"
    }
}
