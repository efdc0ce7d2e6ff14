//! In-memory [`StateStore`] for tests and single-process experiments. Nothing is persisted.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::watch;

use crate::hub::{compacted, lock, watch_stream, EventLog, EventSource, Scan};
use crate::{
    Compare, EventKind, KeyValue, Op, RangeRequest, RangeResult, Result, Revision, Snapshot,
    StateStore, Txn, TxnOutcome, WatchEvent, WatchStream,
};

/// Default number of watch events the memory store retains.
pub const DEFAULT_HISTORY_EVENTS: usize = 10_000;

/// A [`StateStore`] kept entirely in memory: a `BTreeMap` plus a bounded event log for watches.
///
/// Cheap to clone (clones share the same data). Watch streams end when every clone is dropped.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    notify: watch::Sender<Revision>,
}

struct Shared {
    state: Mutex<State>,
}

struct State {
    kvs: BTreeMap<String, KeyValue>,
    revision: Revision,
    log: EventLog,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store retaining the last [`DEFAULT_HISTORY_EVENTS`] watch events.
    pub fn new() -> Self {
        Self::with_history(DEFAULT_HISTORY_EVENTS)
    }

    /// An empty store retaining about `events` watch events (whole revisions are dropped).
    pub fn with_history(events: usize) -> Self {
        let (notify, _) = watch::channel(0);
        Self {
            inner: Arc::new(Inner {
                shared: Arc::new(Shared {
                    state: Mutex::new(State {
                        kvs: BTreeMap::new(),
                        revision: 0,
                        log: EventLog::new(0, events),
                    }),
                }),
                notify,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.inner.shared.state)
    }
}

/// Keys under `prefix` (and > `start_after`), in byte order.
fn prefix_range<'a>(
    kvs: &'a BTreeMap<String, KeyValue>,
    prefix: &'a str,
    start_after: Option<&'a str>,
) -> impl Iterator<Item = &'a KeyValue> + 'a {
    let lower = match start_after {
        Some(s) if s >= prefix => Bound::Excluded(s),
        _ => Bound::Included(prefix),
    };
    kvs.range::<str, _>((lower, Bound::Unbounded))
        .take_while(move |(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
}

fn compare_holds(kvs: &BTreeMap<String, KeyValue>, c: &Compare) -> bool {
    match c {
        Compare::ModRevision { key, revision } => {
            kvs.get(key).map_or(0, |kv| kv.mod_revision) == *revision
        }
        Compare::Absent { key } => !kvs.contains_key(key),
        Compare::Exists { key } => kvs.contains_key(key),
        Compare::CreateRevision { key, revision } => {
            kvs.get(key).map_or(0, |kv| kv.create_revision) == *revision
        }
    }
}

pub(crate) fn delete_event(key: String, rev: Revision) -> WatchEvent {
    WatchEvent {
        kind: EventKind::Delete,
        kv: KeyValue {
            key,
            value: Vec::new(),
            create_revision: 0,
            mod_revision: rev,
            version: 0,
        },
    }
}

#[async_trait]
impl StateStore for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.state().kvs.get(key).cloned())
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResult> {
        let st = self.state();
        let limit = req.limit.unwrap_or(usize::MAX);
        let mut it = prefix_range(&st.kvs, &req.prefix, req.start_after.as_deref());
        let kvs: Vec<KeyValue> = it.by_ref().take(limit).cloned().collect();
        let more = it.next().is_some();
        Ok(RangeResult {
            kvs,
            more,
            revision: st.revision,
        })
    }

    async fn snapshot(&self, prefixes: &[String]) -> Result<Snapshot> {
        let st = self.state();
        let ranges = prefixes
            .iter()
            .map(|p| prefix_range(&st.kvs, p, None).cloned().collect())
            .collect();
        Ok(Snapshot {
            revision: st.revision,
            ranges,
        })
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome> {
        let rev = {
            let mut guard = self.state();
            let st = &mut *guard;
            if let Some(index) = txn.compares.iter().position(|c| !compare_holds(&st.kvs, c)) {
                return Ok(TxnOutcome::CompareFailed { index });
            }
            let rev = st.revision + 1;
            let mut events = Vec::new();
            for op in txn.ops {
                match op {
                    Op::Put { key, value } => {
                        let kv = match st.kvs.get(&key) {
                            Some(old) => KeyValue {
                                key: key.clone(),
                                value,
                                create_revision: old.create_revision,
                                mod_revision: rev,
                                version: old.version + 1,
                            },
                            None => KeyValue {
                                key: key.clone(),
                                value,
                                create_revision: rev,
                                mod_revision: rev,
                                version: 1,
                            },
                        };
                        events.push(WatchEvent {
                            kind: EventKind::Put,
                            kv: kv.clone(),
                        });
                        st.kvs.insert(key, kv);
                    }
                    Op::Delete { key } => {
                        if st.kvs.remove(&key).is_some() {
                            events.push(delete_event(key, rev));
                        }
                    }
                    Op::DeletePrefix { prefix } => {
                        let keys: Vec<String> = prefix_range(&st.kvs, &prefix, None)
                            .map(|kv| kv.key.clone())
                            .collect();
                        for key in keys {
                            st.kvs.remove(&key);
                            events.push(delete_event(key, rev));
                        }
                    }
                }
            }
            if events.is_empty() {
                return Ok(TxnOutcome::Committed {
                    revision: st.revision,
                });
            }
            st.revision = rev;
            st.log.append(rev, events);
            rev
        };
        self.inner.notify.send_replace(rev);
        Ok(TxnOutcome::Committed { revision: rev })
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.state().revision)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let rx = self.inner.notify.subscribe();
        let epoch = {
            let st = self.state();
            if after < st.log.floor() {
                return Err(compacted(after, st.log.floor()));
            }
            st.log.epoch()
        };
        let source: Arc<dyn EventSource> = self.inner.shared.clone();
        Ok(watch_stream(source, rx, prefix.to_owned(), after, epoch))
    }

    async fn wipe(&self) -> Result<()> {
        let rev = {
            let mut st = self.state();
            st.kvs.clear();
            st.revision += 1;
            let rev = st.revision;
            st.log.wipe(rev);
            rev
        };
        tracing::info!(revision = rev, "memory store wiped");
        self.inner.notify.send_replace(rev);
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "memory"
    }
}

#[async_trait]
impl EventSource for Shared {
    async fn fetch(
        &self,
        prefix: &str,
        cursor: Revision,
        epoch: u64,
    ) -> Result<(Vec<WatchEvent>, Revision, bool)> {
        let st = lock(&self.state);
        if st.log.epoch() != epoch {
            return Err(compacted(cursor, st.log.floor()));
        }
        match st.log.scan(prefix, cursor) {
            Scan::Events {
                events,
                cursor,
                caught_up,
            } => Ok((events, cursor, caught_up)),
            Scan::BeforeFloor { floor } => Err(compacted(cursor, floor)),
        }
    }
}
