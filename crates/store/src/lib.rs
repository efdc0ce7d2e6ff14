//! berth-store: the `StateStore` abstraction every control-plane replica writes through.
//!
//! The model is deliberately etcd's: a flat, ordered key space of byte values; one global, strictly
//! increasing revision bumped by every committed transaction; per-key `create_revision`,
//! `mod_revision` and `version`; transactions that are "if all compares hold, apply all ops"; and a
//! watch that replays every change after a given revision. Backends: `memory` (tests), `sqlite`
//! (default, durable), and later `etcd` (HA). One conformance suite (`conformance`) runs against all.
//!
//! Architecture invariant: this crate knows nothing about ECS. Keys and values are opaque here;
//! storage records (the serde structs stored as values) live with the control plane.

use async_trait::async_trait;
use futures::stream::BoxStream;

pub mod cache;
#[cfg(feature = "conformance")]
pub mod conformance;
mod hub;
pub mod memory;
pub mod prefixed;
pub mod sqlite;

pub use cache::{CachedStore, Index as CacheIndex, CHANGE_LOG};
pub use memory::MemoryStore;
pub use prefixed::PrefixedStore;
pub use sqlite::{writer_stats, SqliteOptions, SqliteStore, WriterStats};

/// A store-wide revision. 0 means "before anything was written" / "key absent".
pub type Revision = i64;

/// A key with its value and revision metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key (compared and ordered as UTF-8 bytes).
    pub key: String,
    /// The opaque value.
    pub value: Vec<u8>,
    /// Revision of the transaction that created this key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the transaction that last wrote this key.
    pub mod_revision: Revision,
    /// Number of writes since creation (1 after the first put).
    pub version: i64,
}

/// A condition checked atomically before a transaction applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key's `mod_revision` equals this revision (0 = the key must be absent).
    ModRevision { key: String, revision: Revision },
    /// The key does not exist.
    Absent { key: String },
    /// The key exists.
    Exists { key: String },
    /// The key's `create_revision` equals this revision (0 = the key must be absent): the key is
    /// still the incarnation created at `revision`, however often it was rewritten since. A
    /// leader's fencing token is such a compare on its election key.
    CreateRevision { key: String, revision: Revision },
}

/// One write in a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create or overwrite a key.
    Put { key: String, value: Vec<u8> },
    /// Deleting an absent key is a no-op (not an error).
    Delete { key: String },
    /// Delete every key starting with `prefix` (the empty prefix deletes everything).
    DeletePrefix { prefix: String },
}

/// "If every compare holds, apply every op", atomically, at one new revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    /// Conditions, checked in order; the first that fails aborts the transaction.
    pub compares: Vec<Compare>,
    /// Writes, applied in order.
    pub ops: Vec<Op>,
}

impl Txn {
    /// An empty transaction.
    pub fn new() -> Self {
        Self::default()
    }
    /// Add a condition.
    pub fn when(mut self, c: Compare) -> Self {
        self.compares.push(c);
        self
    }
    /// Add a put.
    pub fn put(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.ops.push(Op::Put {
            key: key.into(),
            value: value.into(),
        });
        self
    }
    /// Add a delete (a no-op if the key is absent).
    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.ops.push(Op::Delete { key: key.into() });
        self
    }
    /// Add a delete of every key under `prefix`.
    pub fn delete_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.ops.push(Op::DeletePrefix {
            prefix: prefix.into(),
        });
        self
    }
}

/// What happened to a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnOutcome {
    /// All compares held; every op was applied atomically at this revision. A transaction that
    /// changes nothing (no ops, or only deletes of absent keys) still succeeds but does not bump
    /// the revision (it reports the current one).
    Committed { revision: Revision },
    /// The compare at this index (the first that failed) did not hold; nothing was applied.
    CompareFailed { index: usize },
}

impl TxnOutcome {
    /// True for [`TxnOutcome::Committed`].
    pub fn committed(&self) -> bool {
        matches!(self, TxnOutcome::Committed { .. })
    }
}

/// Keys with a prefix, read atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeRequest {
    pub prefix: String,
    /// Only keys strictly greater than this (for pagination).
    pub start_after: Option<String>,
    /// At most this many keys (None = all).
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeResult {
    /// Sorted by key (byte order).
    pub kvs: Vec<KeyValue>,
    /// True when `limit` cut the result short.
    pub more: bool,
    /// The store revision this read observed.
    pub revision: Revision,
}

/// Several prefixes read in one consistent view.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub revision: Revision,
    /// One entry per requested prefix, in request order; each sorted by key.
    pub ranges: Vec<Vec<KeyValue>>,
}

/// The kind of change a [`WatchEvent`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A key was created or overwritten.
    Put,
    /// A key was deleted.
    Delete,
}

/// One change to one key, as delivered by [`StateStore::watch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// Put or delete.
    pub kind: EventKind,
    /// For Put: the new key-value. For Delete: key set, value empty, mod_revision = the deleting
    /// revision, create_revision and version 0.
    pub kv: KeyValue,
}

/// A stream of watch events; it yields at most one error (then ends).
pub type WatchStream = BoxStream<'static, Result<WatchEvent, StoreError>>;

/// Errors from a [`StateStore`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The requested watch start revision is older than the retained history; re-list then watch.
    /// History at or before `compact_revision` is gone: a watch with `after >= compact_revision`
    /// succeeds. Also delivered (ending the stream) to live watchers that fell behind the
    /// retained history, and to every live watcher when the store is wiped.
    #[error("revision {requested} has been compacted (watch from {compact_revision} or later)")]
    Compacted {
        requested: Revision,
        compact_revision: Revision,
    },
    /// The backend failed (I/O, SQL, corrupt data); the message carries context.
    #[error("store backend error: {0}")]
    Backend(String),
    /// The store is shut down or unreachable.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// `Result` with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The state store every control-plane replica reads and writes through.
#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// The current value of one key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;
    /// Keys under a prefix, read atomically, with the revision observed.
    async fn range(&self, req: RangeRequest) -> Result<RangeResult>;
    /// Several prefixes read in one consistent view.
    async fn snapshot(&self, prefixes: &[String]) -> Result<Snapshot>;
    /// Check the compares, then apply the ops, atomically.
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome>;
    /// The revision of the latest committed change.
    async fn current_revision(&self) -> Result<Revision>;
    /// Every change to keys under `prefix` with revision > `after`, in revision order (ops of one
    /// transaction in op order), then live changes as they commit. Errors with `Compacted` if
    /// history after `after` is no longer retained.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;
    /// Drop all keys and history (used by `POST /_berth/reset`). The revision keeps increasing:
    /// the wipe itself takes one revision, which becomes the compact revision; live watch
    /// streams receive `Compacted` and end (re-list, then watch from the new revision).
    async fn wipe(&self) -> Result<()>;
    /// A short name for logs/status ("memory", "sqlite", "etcd").
    fn backend_name(&self) -> &'static str;
}
