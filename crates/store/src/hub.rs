//! Shared watch machinery: an in-memory ring of recent events plus a cursor-based stream.
//!
//! Every watcher keeps a *cursor*: the last revision it has fully consumed. It pulls events with
//! revision > cursor from an [`EventSource`] in whole-revision batches, and sleeps on a
//! `tokio::sync::watch` channel the writer bumps after each commit. Because the replay and the
//! live phase read the same ordered log through the same cursor, no event can be missed or
//! duplicated between them, and writers never wait for watchers: a watcher that falls behind the
//! retained history gets [`StoreError::Compacted`] and its stream ends.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::watch;

use crate::{Result, Revision, StoreError, WatchEvent, WatchStream};

/// How many log entries a fetch scans before it stops at the next revision boundary.
const FETCH_BATCH: usize = 1024;

/// Lock a mutex, ignoring poisoning (the protected data is always left consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One retained event.
#[derive(Debug, Clone)]
pub(crate) struct LogEntry {
    pub rev: Revision,
    pub event: WatchEvent,
}

/// A bounded, revision-ordered ring of recent events.
///
/// Invariant: it holds *every* event with revision in `(floor, last]`.
#[derive(Debug)]
pub(crate) struct EventLog {
    entries: VecDeque<LogEntry>,
    /// All events with revision > floor are retained; events at or before it may be gone.
    floor: Revision,
    /// The newest revision the log knows about (>= every entry's revision).
    last: Revision,
    /// Bumped by `wipe`; watchers created under an older epoch get `Compacted`.
    epoch: u64,
    /// Max entries kept (whole revisions are dropped from the front past this).
    capacity: usize,
}

/// Result of scanning the log from a cursor.
pub(crate) enum Scan {
    /// Events (already prefix-filtered), the new cursor, and whether the log's end was reached.
    Events {
        events: Vec<WatchEvent>,
        cursor: Revision,
        caught_up: bool,
    },
    /// The cursor is older than `floor`: the caller must consult older history (or fail).
    BeforeFloor { floor: Revision },
}

impl EventLog {
    /// An empty log whose history starts after `revision`.
    pub fn new(revision: Revision, capacity: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            floor: revision,
            last: revision,
            epoch: 0,
            capacity: capacity.max(1),
        }
    }

    pub fn floor(&self) -> Revision {
        self.floor
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Append all events of one committed revision (callers pass increasing revisions).
    pub fn append(&mut self, rev: Revision, events: impl IntoIterator<Item = WatchEvent>) {
        for event in events {
            self.entries.push_back(LogEntry { rev, event });
        }
        self.last = self.last.max(rev);
        while self.entries.len() > self.capacity {
            let Some(front) = self.entries.front() else {
                break;
            };
            let r = front.rev;
            if r == rev {
                // Never drop the revision just appended, even if it alone exceeds capacity.
                break;
            }
            while self.entries.front().is_some_and(|e| e.rev == r) {
                self.entries.pop_front();
            }
            self.floor = r;
        }
    }

    /// Drop all history; `rev` is the wipe's revision.
    pub fn wipe(&mut self, rev: Revision) {
        self.entries.clear();
        self.floor = rev;
        self.last = self.last.max(rev);
        self.epoch += 1;
    }

    /// Events under `prefix` with revision > `cursor`, in whole-revision batches.
    pub fn scan(&self, prefix: &str, cursor: Revision) -> Scan {
        if cursor < self.floor {
            return Scan::BeforeFloor { floor: self.floor };
        }
        let start = self.entries.partition_point(|e| e.rev <= cursor);
        let mut events = Vec::new();
        let mut new_cursor = cursor;
        let mut scanned = 0usize;
        let mut iter = self.entries.range(start..).peekable();
        while let Some(entry) = iter.next() {
            scanned += 1;
            new_cursor = entry.rev;
            if entry.event.kv.key.starts_with(prefix) {
                events.push(entry.event.clone());
            }
            if scanned >= FETCH_BATCH && iter.peek().is_none_or(|next| next.rev != entry.rev) {
                let caught_up = iter.peek().is_none();
                if caught_up {
                    new_cursor = new_cursor.max(self.last);
                }
                return Scan::Events {
                    events,
                    cursor: new_cursor,
                    caught_up,
                };
            }
        }
        Scan::Events {
            events,
            cursor: new_cursor.max(self.last),
            caught_up: true,
        }
    }
}

/// Where a watch stream pulls its events from.
#[async_trait]
pub(crate) trait EventSource: Send + Sync + 'static {
    /// Events under `prefix` with revision > `cursor`, plus the new cursor and whether the
    /// source had nothing newer at the time of the call. Fails with `Compacted` when history
    /// after `cursor` is gone or the store was wiped since the watch's `epoch`.
    async fn fetch(
        &self,
        prefix: &str,
        cursor: Revision,
        epoch: u64,
    ) -> Result<(Vec<WatchEvent>, Revision, bool)>;
}

struct StreamState {
    source: std::sync::Arc<dyn EventSource>,
    rx: watch::Receiver<Revision>,
    prefix: String,
    cursor: Revision,
    epoch: u64,
    buf: VecDeque<WatchEvent>,
    /// The writer side is gone: drain what's there, then end.
    closing: bool,
    done: bool,
}

/// Build a watch stream over `source` starting after `after`.
///
/// `epoch` and `rx` must have been captured *before* the caller checked that `after` is
/// retained, so that a concurrent wipe or commit is never missed.
pub(crate) fn watch_stream(
    source: std::sync::Arc<dyn EventSource>,
    rx: watch::Receiver<Revision>,
    prefix: String,
    after: Revision,
    epoch: u64,
) -> WatchStream {
    let state = StreamState {
        source,
        rx,
        prefix,
        cursor: after,
        epoch,
        buf: VecDeque::new(),
        closing: false,
        done: false,
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            if let Some(ev) = st.buf.pop_front() {
                return Some((Ok(ev), st));
            }
            // Mark the current notification as seen *before* reading, so a commit that lands
            // after our read always wakes us.
            st.rx.borrow_and_update();
            match st.source.fetch(&st.prefix, st.cursor, st.epoch).await {
                Err(e) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
                Ok((events, cursor, caught_up)) => {
                    st.cursor = cursor;
                    st.buf.extend(events);
                    if !st.buf.is_empty() || !caught_up {
                        continue;
                    }
                }
            }
            if st.closing {
                return None;
            }
            if st.rx.changed().await.is_err() {
                st.closing = true;
            }
        }
    })
    .boxed()
}

/// The standard `Compacted` error.
pub(crate) fn compacted(requested: Revision, compact_revision: Revision) -> StoreError {
    StoreError::Compacted {
        requested,
        compact_revision,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventKind, KeyValue};

    fn ev(key: &str, rev: Revision) -> WatchEvent {
        WatchEvent {
            kind: EventKind::Put,
            kv: KeyValue {
                key: key.into(),
                value: vec![],
                create_revision: rev,
                mod_revision: rev,
                version: 1,
            },
        }
    }

    #[test]
    fn ring_drops_whole_revisions() {
        let mut log = EventLog::new(0, 3);
        log.append(1, [ev("a", 1), ev("b", 1)]);
        log.append(2, [ev("a", 2), ev("b", 2)]);
        assert_eq!(log.floor(), 1);
        assert!(matches!(log.scan("", 0), Scan::BeforeFloor { floor: 1 }));
        match log.scan("a", 1) {
            Scan::Events {
                events,
                cursor,
                caught_up,
            } => {
                assert_eq!(events.len(), 1);
                assert_eq!(cursor, 2);
                assert!(caught_up);
            }
            Scan::BeforeFloor { .. } => panic!("unexpected"),
        }
    }
}
