//! `watch` on etcd: one etcd watch stream carrying two watches from the same start revision —
//! the store prefix, and the wipe marker — re-created after a disconnect from the last delivered
//! revision.
//!
//! No duplicate, no gap: etcd delivers one watch's events in revision order and never splits a
//! revision across responses (berth does not ask for fragmentation), so after handing on a
//! response whose last event is at revision `r`, every event up to `r` has been delivered and
//! the watch resumes at `r + 1`.
//!
//! Wipes: a wipe deletes every key and writes the marker at one revision `W`. The marker watch
//! reports `W` (→ `Compacted`); and the prefix watch may see the wipe's deletes first, so before a
//! response with deletes is handed on, the marker is read: deletes at exactly `W` are the wipe's,
//! and end the stream with `Compacted` instead.

use std::time::Duration;

use etcd_client::{EventType, WatchOptions, WatchResponse};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use berth_store::{EventKind, KeyValue, Revision, StoreError, WatchEvent, WatchStream};

use crate::store::{map_err, EtcdStore};

const DATA_ID: i64 = 1;
const MARKER_ID: i64 = 2;
const CHANNEL: usize = 256;

type Item = Result<WatchEvent, StoreError>;

/// Open a watch of `prefix` for revisions after `after`.
pub(crate) async fn open(
    store: EtcdStore,
    prefix: &str,
    after: Revision,
) -> berth_store::Result<WatchStream> {
    let (wiped, current) = store.wipe_revision().await?;
    if after < wiped {
        return Err(StoreError::Compacted {
            requested: after,
            compact_revision: wiped,
        });
    }
    if after < current && !store.history_retained(after + 1).await? {
        // etcd does not say how far it compacted: the current revision is a safe answer
        // ("watch from here or later").
        return Err(StoreError::Compacted {
            requested: after,
            compact_revision: current,
        });
    }
    let (start, end) = store.inner.keys.prefix_range(prefix);
    let mut w = Watcher {
        store,
        start,
        end,
        next: after + 1,
    };
    let stream = w.connect().await?;
    let (tx, rx) = mpsc::channel(CHANNEL);
    tokio::spawn(async move { w.run(stream, tx).await });
    Ok(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed())
}

struct Watcher {
    store: EtcdStore,
    start: Vec<u8>,
    end: Vec<u8>,
    /// The first revision not yet delivered.
    next: Revision,
}

/// What to do after one etcd watch response.
enum Step {
    Continue,
    Reconnect(String),
    End,
}

impl Watcher {
    async fn connect(&mut self) -> berth_store::Result<etcd_client::WatchStream> {
        let mut wc = self.store.inner.watch();
        let mut s = wc
            .watch(
                self.start.clone(),
                Some(
                    WatchOptions::new()
                        .with_range(self.end.clone())
                        .with_start_revision(self.next)
                        .with_watch_id(DATA_ID),
                ),
            )
            .await
            .map_err(|e| map_err("watch", e))?;
        s.watch(
            self.store.inner.keys.wipe_marker().to_vec(),
            Some(
                WatchOptions::new()
                    .with_start_revision(self.next)
                    .with_watch_id(MARKER_ID),
            ),
        )
        .await
        .map_err(|e| map_err("watch", e))?;
        Ok(s)
    }

    async fn run(mut self, mut stream: etcd_client::WatchStream, tx: mpsc::Sender<Item>) {
        loop {
            let msg = tokio::select! {
                _ = tx.closed() => return,
                msg = stream.message() => msg,
            };
            let step = match msg {
                Ok(Some(resp)) => self.handle(resp, &tx).await,
                Ok(None) => Step::Reconnect("the watch stream ended".into()),
                Err(e) => Step::Reconnect(e.to_string()),
            };
            match step {
                Step::Continue => {}
                Step::End => return,
                Step::Reconnect(why) => {
                    tracing::warn!(next_revision = self.next, error = %why, "etcd watch interrupted; resuming");
                    match self.reconnect(&tx).await {
                        Some(s) => stream = s,
                        None => return,
                    }
                }
            }
        }
    }

    /// Re-create the watch from `self.next`, retrying until `watch_reconnect_timeout`.
    async fn reconnect(&mut self, tx: &mpsc::Sender<Item>) -> Option<etcd_client::WatchStream> {
        let deadline = Instant::now() + self.store.inner.options.watch_reconnect_timeout;
        let mut backoff = Duration::from_millis(100);
        loop {
            if tx.is_closed() {
                return None;
            }
            match self.connect().await {
                Ok(s) => {
                    tracing::info!(next_revision = self.next, "etcd watch resumed");
                    return Some(s);
                }
                Err(e) if Instant::now() >= deadline => {
                    let _ = tx.send(Err(e)).await;
                    return None;
                }
                Err(e) => tracing::debug!(error = %e, "etcd watch reconnect failed; retrying"),
            }
            tokio::select! {
                _ = tx.closed() => return None,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    fn compacted(&self, compact_revision: Revision) -> Item {
        Err(StoreError::Compacted {
            requested: self.next - 1,
            compact_revision,
        })
    }

    async fn handle(&mut self, resp: WatchResponse, tx: &mpsc::Sender<Item>) -> Step {
        if resp.compact_revision() > 0 {
            let _ = tx.send(self.compacted(resp.compact_revision())).await;
            return Step::End;
        }
        if resp.canceled() {
            let reason = resp.cancel_reason().to_owned();
            if reason.contains("no leader") || reason.is_empty() {
                return Step::Reconnect(format!("watch canceled: {reason}"));
            }
            let _ = tx
                .send(Err(StoreError::Backend(format!(
                    "etcd watch canceled: {reason}"
                ))))
                .await;
            return Step::End;
        }
        let events = resp.events();
        if events.is_empty() {
            return Step::Continue;
        }
        if resp.watch_id() == MARKER_ID {
            if let Some(w) = events
                .iter()
                .filter(|e| e.event_type() == EventType::Put)
                .filter_map(|e| e.kv())
                .map(|kv| kv.mod_revision())
                .next()
            {
                let _ = tx.send(self.compacted(w)).await;
                return Step::End;
            }
            return Step::Continue;
        }
        // Deletes may be a wipe's: find out before handing them on.
        let wiped = if events.iter().any(|e| e.event_type() == EventType::Delete) {
            match self.store.wipe_revision().await {
                Ok((w, _)) => w,
                Err(e) => return Step::Reconnect(e.to_string()),
            }
        } else {
            0
        };
        let keys = &self.store.inner.keys;
        let mut last = self.next - 1;
        for ev in events {
            let Some(kv) = ev.kv() else { continue };
            let rev = kv.mod_revision();
            let item = match ev.event_type() {
                EventType::Delete if rev == wiped => {
                    let _ = tx.send(self.compacted(wiped)).await;
                    return Step::End;
                }
                EventType::Delete => keys.strip(kv.key()).map(|key| WatchEvent {
                    kind: EventKind::Delete,
                    kv: KeyValue {
                        key,
                        value: Vec::new(),
                        create_revision: 0,
                        mod_revision: rev,
                        version: 0,
                    },
                }),
                EventType::Put => keys.kv(kv).map(|kv| WatchEvent {
                    kind: EventKind::Put,
                    kv,
                }),
            };
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                return Step::End;
            }
            last = last.max(rev);
        }
        self.next = last + 1;
        Step::Continue
    }
}
