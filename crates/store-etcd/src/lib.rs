//! berth-store-etcd: the etcd backend of berth's [`StateStore`](berth_store::StateStore), and the
//! leader election the control-plane replicas use to pick the one that runs the reconcilers.
//!
//! # Key layout
//!
//! A store is configured with a key prefix `P` (default `/berth`) so that several berth clusters
//! can share one etcd. Store key `k` is etcd key `P/k`; every range, snapshot, watch and wipe is
//! confined to `P/`, and `P/` is stripped from the keys handed back. One bookkeeping key lives
//! beside the data, outside `P/`: `P.meta/wipe`, whose `mod_revision` is the revision of the last
//! [`wipe`](berth_store::StateStore::wipe). Prefixes of clusters sharing an etcd must not nest.
//! Leader election keys are ordinary store keys, `leader/<name>` (so a leader can fence its
//! writes with a [`Compare`](berth_store::Compare) through the `StateStore` trait), and so are
//! [`Presence`] keys (lease-bound keys that vanish one TTL after their owner stops renewing).
//!
//! # How the model maps onto etcd
//!
//! * Revisions are etcd's own: the global revision is the response header revision, per-key
//!   `create_revision`, `mod_revision` and `version` come from etcd unchanged. A fresh store
//!   therefore starts at etcd's current revision (1 on a new etcd), not at 0.
//! * A [`Txn`](berth_store::Txn) is one etcd Txn. `ModRevision { revision: 0 }` and `Absent` are
//!   `create_revision == 0`, `Exists` is `create_revision > 0`, other `ModRevision`s are
//!   `mod_revision == r`. etcd does not say which compare failed, so the failure branch of the same
//!   etcd Txn reads every compared key (keys only): the compares are re-evaluated locally on that
//!   atomic read, at exactly the revision the server evaluated them, and the first failing index
//!   is reported.
//! * etcd rejects a Txn that writes one key twice (two puts, or a put and a delete/delete-range
//!   covering it). berth's ops are therefore folded first into their net effect per key, in op
//!   order: the final values are exactly those of applying the ops in order, but a key put twice
//!   gets its `version` bumped once, and a key deleted then re-put in one transaction keeps its
//!   `create_revision` (etcd sees an overwrite). A delete-prefix followed by puts under that
//!   prefix becomes delete-ranges around the put keys.
//! * A transaction that changes nothing does not bump the revision (etcd's own behaviour).
//! * `snapshot` reads every prefix in one read-only etcd Txn (one revision, one round trip).
//! * `watch(prefix, after)` is an etcd watch from `after + 1` (plus a watch on the wipe marker),
//!   resumed after a disconnect from the last delivered revision (events of one revision always
//!   arrive together, so nothing is duplicated or skipped); etcd compaction and wipes end the
//!   stream with [`StoreError::Compacted`](berth_store::StoreError::Compacted).
//! * `wipe` deletes `P/` and writes the wipe marker in one etcd Txn; the revision keeps growing.
//!   Watches from before the wipe revision fail with `Compacted`, as the trait requires.
//! * Connection failures and timeouts are [`StoreError::Unavailable`](berth_store::StoreError).
//!
//! Limits are etcd's: by default at most 128 operations per transaction (`--max-txn-ops`) and
//! 1.5 MiB per request (`--max-request-bytes`); larger transactions fail with `Backend`.

mod election;
mod keys;
mod options;
mod presence;
mod store;
mod watch;

pub use election::{ElectionError, LeaderElection, LeaderGuard};
pub use options::{ConfigError, EtcdOptions, TlsFiles};
pub use presence::Presence;
pub use store::EtcdStore;
