//! Durable [`StateStore`] on a single SQLite file (WAL mode, `synchronous=FULL`).
//!
//! Layout:
//! - `kv(key BLOB PRIMARY KEY, value, create_rev, mod_rev, version)`: the current state. Keys are
//!   stored as their UTF-8 bytes so SQLite's ordering is byte order.
//! - `events(rev, idx, key, kind, value, create_rev, version)`: watch history, pruned to about the
//!   last [`SqliteOptions::history_revisions`] revisions.
//! - `meta(name, value)`: `revision` (the current revision) and `compact` (history at or before
//!   it has been pruned).
//!
//! All writes go through one dedicated writer thread that owns the write connection. Requests
//! queued while a commit is in flight are applied together in one SQLite transaction (group
//! commit: one fsync for many store transactions; each still gets its own revision and its own
//! outcome). Reads run on `spawn_blocking` with a small pool of read connections; WAL lets them
//! proceed concurrently with the writer. Watches read recent events from an in-memory ring and
//! older ones from the `events` table.
//!
//! Checkpoints (copying the WAL back into the database file, with its fsync) run mostly on a
//! second thread with its own connection, at most every [`CHECKPOINT_EVERY`] while there are
//! writes, instead of inside the commit that crosses SQLite's auto-checkpoint threshold: the
//! writer seldom stalls behind one (they were an eighth of the server's CPU under RunTask load,
//! all of it on the writer's serial path), and a page written many times between checkpoints is
//! copied once. The writer still checkpoints when the WAL passes [`WRITER_CHECKPOINT_PAGES`]: by
//! then little is left to copy, and finishing is what lets the WAL start over.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{oneshot, watch};

use crate::hub::{compacted, lock, watch_stream, EventLog, EventSource, Scan};
use crate::memory::delete_event;
use crate::{
    Compare, EventKind, KeyValue, Op, RangeRequest, RangeResult, Result, Revision, Snapshot,
    StateStore, StoreError, Txn, TxnOutcome, WatchEvent, WatchStream,
};

/// Max store transactions applied in one SQLite transaction.
const MAX_BATCH: usize = 128;
/// Revisions read from the `events` table per watch fetch.
const DB_FETCH_WINDOW: Revision = 512;
/// Read connections kept open for reuse.
const MAX_IDLE_READERS: usize = 4;
/// The background checkpointer runs at most this often (and only after writes). Pages rewritten
/// by many commits in between (instance records, B-tree interior pages, `meta`) are copied once:
/// at 250 ms rather than 50, RunTask throughput is about 8 % higher, p99 about 1 ms longer
/// (BENCHMARKS.md, API load, "Checkpoint interval").
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// WAL pages after which the writer checkpoints itself (SQLite's auto-checkpoint; 1,000 by
/// default). Under a steady stream of writes the background checkpoints never finish the WAL
/// (the writer keeps appending), and only a finished checkpoint lets the next write start the
/// WAL over: the writer's own checkpoint, with the WAL already mostly copied, is short, and
/// bounds the WAL to about this many pages.
const WRITER_CHECKPOINT_PAGES: i64 = 4096;

/// Tuning knobs for [`SqliteStore::open_with`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Watch history kept in the `events` table, in revisions (pruned in steps of ~10%).
    pub history_revisions: i64,
    /// Recent events kept in memory to serve live watchers without touching the database.
    pub memory_events: usize,
    /// How long a connection waits on a lock held by another connection/process.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            history_revisions: 10_000,
            memory_events: 10_000,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// A durable [`StateStore`] backed by one SQLite database file.
///
/// Cheap to clone (clones share one writer thread). When the last clone is dropped, queued
/// writes are finished, the writer thread is joined and open watch streams end.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Advisory lock on `<path>.lock`: one store instance per database file.
    _lock: std::fs::File,
    requests: Mutex<Option<mpsc::Sender<Request>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    notify: watch::Receiver<Revision>,
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    busy_timeout: Duration,
    readers: Mutex<Vec<Connection>>,
    ring: Mutex<EventLog>,
    /// Latest committed revision.
    revision: AtomicI64,
    /// Latest committed compact revision of the `events` table.
    compact: AtomicI64,
}

enum Request {
    /// The transaction, its reply, and when it was queued (as for a wipe).
    Txn(Txn, oneshot::Sender<Result<TxnOutcome>>, Instant),
    Wipe(oneshot::Sender<Result<()>>, Instant),
}

/// What the writer threads of this process's SQLite stores have done since it started (all
/// stores together: a server opens one). For metrics: where a write's time goes between its
/// queue, the SQL and the commit (whose fsync is usually most of it).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WriterStats {
    /// SQLite transactions committed (each a group of store transactions).
    pub commits: u64,
    /// Store transactions (and wipes) carried by them; a group that failed counts in none of
    /// these.
    pub txns: u64,
    /// Seconds store transactions waited for their group to start, summed over transactions.
    pub queue_seconds: f64,
    /// Seconds the writer spent applying groups (compares, puts, history; before `COMMIT`).
    pub apply_seconds: f64,
    /// Seconds the writer spent in `COMMIT` (writing the WAL and syncing it).
    pub commit_seconds: f64,
}

/// Process-wide writer counters behind [`writer_stats`]; times in nanoseconds.
static STATS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];
const COMMITS: usize = 0;
const TXNS: usize = 1;
const QUEUE_NS: usize = 2;
const APPLY_NS: usize = 3;
const COMMIT_NS: usize = 4;

fn count(i: usize, v: u64) {
    STATS[i].fetch_add(v, Ordering::Relaxed);
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The writer counters so far (see [`WriterStats`]).
pub fn writer_stats() -> WriterStats {
    let get = |i: usize| STATS[i].load(Ordering::Relaxed);
    let secs = |i: usize| get(i) as f64 / 1e9;
    WriterStats {
        commits: get(COMMITS),
        txns: get(TXNS),
        queue_seconds: secs(QUEUE_NS),
        apply_seconds: secs(APPLY_NS),
        commit_seconds: secs(COMMIT_NS),
    }
}

fn backend(ctx: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| StoreError::Backend(format!("sqlite {ctx}: {e}"))
}

fn stopped() -> StoreError {
    StoreError::Unavailable("sqlite writer thread has stopped".into())
}

/// Exclusive upper bound for keys starting with `prefix`. Keys are UTF-8, which never contains
/// the byte 0xFF, so incrementing the last byte never overflows and `[0xFF]` bounds everything.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    match end.last_mut() {
        Some(b) => *b += 1,
        None => end.push(0xFF),
    }
    end
}

fn key_from(bytes: Vec<u8>) -> rusqlite::Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
    })
}

fn row_to_kv(row: &rusqlite::Row<'_>) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key: key_from(row.get(0)?)?,
        value: row.get(1)?,
        create_revision: row.get(2)?,
        mod_revision: row.get(3)?,
        version: row.get(4)?,
    })
}

fn configure(conn: &Connection, busy_timeout: Duration) -> rusqlite::Result<()> {
    conn.busy_timeout(busy_timeout)?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(mode, "sqlite store: WAL mode unavailable");
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

/// Take an exclusive advisory lock on `<path>.lock` so two store instances (in this or another
/// process) never write the same database: each caches the revision counter.
fn lock_file(path: &Path) -> Result<std::fs::File> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| {
            StoreError::Backend(format!(
                "open lock file {}: {e}",
                Path::new(&lock_path).display()
            ))
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Unavailable(format!(
            "{} is already open in another store instance",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Backend(format!(
            "lock {}: {e}",
            Path::new(&lock_path).display()
        ))),
    }
}

fn read_meta(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()
        .map(|v| v.unwrap_or(0))
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    key BLOB PRIMARY KEY NOT NULL,
    value BLOB NOT NULL,
    create_rev INTEGER NOT NULL,
    mod_rev INTEGER NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    rev INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    key BLOB NOT NULL,
    kind INTEGER NOT NULL,
    value BLOB NOT NULL,
    create_rev INTEGER NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (rev, idx)
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0), ('compact', 0), ('schema', 1);
";

impl SqliteStore {
    /// Open (creating if needed) the store at `path` with default options.
    ///
    /// Blocking (opens the file and starts the writer thread); cheap enough to call from async
    /// code at startup.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Open (creating if needed) the store at `path`.
    pub fn open_with(path: impl AsRef<Path>, opts: SqliteOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let lock = lock_file(&path)?;
        let conn = Connection::open(&path).map_err(backend("open"))?;
        configure(&conn, opts.busy_timeout).map_err(backend("configure"))?;
        conn.execute_batch(SCHEMA)
            .map_err(backend("create schema"))?;
        let revision = read_meta(&conn, "revision").map_err(backend("read revision"))?;
        let compact = read_meta(&conn, "compact").map_err(backend("read compact revision"))?;
        tracing::info!(path = %path.display(), revision, compact, "sqlite store opened");

        let shared = Arc::new(Shared {
            path: path.clone(),
            busy_timeout: opts.busy_timeout,
            readers: Mutex::new(Vec::new()),
            ring: Mutex::new(EventLog::new(revision, opts.memory_events)),
            revision: AtomicI64::new(revision),
            compact: AtomicI64::new(compact),
        });
        // Checkpoints are mostly the checkpointer thread's (see the module docs).
        conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)
            .map_err(backend("configure"))?;
        let ckpt_conn = Connection::open(&path).map_err(backend("open checkpointer"))?;
        configure(&ckpt_conn, opts.busy_timeout).map_err(backend("configure checkpointer"))?;
        let (ckpt_tx, ckpt_rx) = mpsc::sync_channel(1);
        let checkpointer = std::thread::Builder::new()
            .name("berth-sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(ckpt_conn, ckpt_rx))
            .map_err(|e| StoreError::Backend(format!("spawn sqlite checkpoint thread: {e}")))?;
        let (notify_tx, notify_rx) = watch::channel(revision);
        let (req_tx, req_rx) = mpsc::channel();
        let mut writer = Writer {
            conn,
            shared: shared.clone(),
            notify: notify_tx,
            revision,
            compact,
            history: opts.history_revisions.max(1),
            checkpoint: Some((ckpt_tx, checkpointer)),
        };
        let handle = std::thread::Builder::new()
            .name("berth-sqlite-writer".into())
            .spawn(move || writer.run(req_rx))
            .map_err(|e| StoreError::Backend(format!("spawn sqlite writer thread: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                _lock: lock,
                requests: Mutex::new(Some(req_tx)),
                writer: Mutex::new(Some(handle)),
                notify: notify_rx,
                shared,
            }),
        })
    }

    /// The database file this store was opened on.
    pub fn path(&self) -> &Path {
        &self.inner.shared.path
    }

    fn send(&self, req: Request) -> Result<()> {
        let guard = lock(&self.inner.requests);
        let tx = guard.as_ref().ok_or_else(stopped)?;
        tx.send(req).map_err(|_| stopped())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish queued work and exit.
        lock(&self.requests).take();
        if let Some(handle) = lock(&self.writer).take() {
            if handle.join().is_err() {
                tracing::error!("sqlite writer thread panicked");
            }
        }
    }
}

impl Shared {
    /// Run `f` on a pooled read connection off the async runtime.
    async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = lock(&this.readers).pop();
            let mut conn = match pooled {
                Some(c) => c,
                None => {
                    let c = Connection::open(&this.path).map_err(backend("open reader"))?;
                    c.busy_timeout(this.busy_timeout)
                        .map_err(backend("configure reader"))?;
                    c.pragma_update(None, "query_only", true)
                        .map_err(backend("configure reader"))?;
                    c
                }
            };
            let out = f(&mut conn);
            let mut pool = lock(&this.readers);
            if pool.len() < MAX_IDLE_READERS {
                pool.push(conn);
            }
            out
        })
        .await
        .map_err(|e| StoreError::Backend(format!("sqlite read task failed: {e}")))?
    }
}

fn range_rows(
    conn: &Connection,
    prefix: &str,
    start_after: Option<&str>,
    limit: i64,
) -> rusqlite::Result<Vec<KeyValue>> {
    let end = prefix_end(prefix);
    let (sql, lower): (&str, &[u8]) = match start_after {
        Some(s) if s >= prefix => (
            "SELECT key, value, create_rev, mod_rev, version FROM kv \
             WHERE key > ?1 AND key < ?2 ORDER BY key LIMIT ?3",
            s.as_bytes(),
        ),
        _ => (
            "SELECT key, value, create_rev, mod_rev, version FROM kv \
             WHERE key >= ?1 AND key < ?2 ORDER BY key LIMIT ?3",
            prefix.as_bytes(),
        ),
    };
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params![lower, end, limit], row_to_kv)?;
    rows.collect()
}

#[async_trait]
impl StateStore for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_owned();
        self.inner
            .shared
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT key, value, create_rev, mod_rev, version FROM kv WHERE key = ?1",
                )
                .and_then(|mut s| s.query_row([key.as_bytes()], row_to_kv).optional())
                .map_err(backend("get"))
            })
            .await
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResult> {
        self.inner
            .shared
            .read(move |conn| {
                let tx = conn.transaction().map_err(backend("range begin"))?;
                let revision = read_meta(&tx, "revision").map_err(backend("range"))?;
                // One extra row tells whether the limit cut the result short.
                let limit = match req.limit {
                    Some(l) => i64::try_from(l).unwrap_or(i64::MAX - 1) + 1,
                    None => -1,
                };
                let mut kvs = range_rows(&tx, &req.prefix, req.start_after.as_deref(), limit)
                    .map_err(backend("range"))?;
                let more = req.limit.is_some_and(|l| kvs.len() > l);
                if let Some(l) = req.limit {
                    kvs.truncate(l);
                }
                drop(tx);
                Ok(RangeResult {
                    kvs,
                    more,
                    revision,
                })
            })
            .await
    }

    async fn snapshot(&self, prefixes: &[String]) -> Result<Snapshot> {
        let prefixes = prefixes.to_vec();
        self.inner
            .shared
            .read(move |conn| {
                let tx = conn.transaction().map_err(backend("snapshot begin"))?;
                let revision = read_meta(&tx, "revision").map_err(backend("snapshot"))?;
                let ranges = prefixes
                    .iter()
                    .map(|p| range_rows(&tx, p, None, -1))
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(backend("snapshot"))?;
                drop(tx);
                Ok(Snapshot { revision, ranges })
            })
            .await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Txn(txn, tx, Instant::now()))?;
        rx.await.map_err(|_| stopped())?
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.inner.shared.revision.load(Ordering::Acquire))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let rx = self.inner.notify.clone();
        let shared = &self.inner.shared;
        let epoch = {
            let ring = lock(&shared.ring);
            if after < ring.floor() {
                let compact = shared.compact.load(Ordering::Acquire);
                if after < compact {
                    return Err(compacted(after, compact));
                }
            }
            ring.epoch()
        };
        let source: Arc<dyn EventSource> = Arc::new(History(shared.clone()));
        Ok(watch_stream(source, rx, prefix.to_owned(), after, epoch))
    }

    async fn wipe(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Wipe(tx, Instant::now()))?;
        rx.await.map_err(|_| stopped())?
    }

    fn backend_name(&self) -> &'static str {
        "sqlite"
    }
}

/// The watch [`EventSource`]: recent events from the ring, older ones from the `events` table.
struct History(Arc<Shared>);

#[async_trait]
impl EventSource for History {
    async fn fetch(
        &self,
        prefix: &str,
        cursor: Revision,
        epoch: u64,
    ) -> Result<(Vec<WatchEvent>, Revision, bool)> {
        let floor = {
            let ring = lock(&self.0.ring);
            if ring.epoch() != epoch {
                return Err(compacted(cursor, ring.floor()));
            }
            match ring.scan(prefix, cursor) {
                Scan::Events {
                    events,
                    cursor,
                    caught_up,
                } => return Ok((events, cursor, caught_up)),
                Scan::BeforeFloor { floor } => floor,
            }
        };
        // Older than the in-memory ring: read a window of history from the events table.
        let hi = floor.min(cursor.saturating_add(DB_FETCH_WINDOW));
        let lo_key = prefix.as_bytes().to_vec();
        let hi_key = prefix_end(prefix);
        let events = self
            .0
            .read(move |conn| {
                let tx = conn.transaction().map_err(backend("history begin"))?;
                let compact = read_meta(&tx, "compact").map_err(backend("history"))?;
                if cursor < compact {
                    return Err(compacted(cursor, compact));
                }
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT rev, key, kind, value, create_rev, version FROM events \
                         WHERE rev > ?1 AND rev <= ?2 AND key >= ?3 AND key < ?4 \
                         ORDER BY rev, idx",
                    )
                    .map_err(backend("history"))?;
                let rows = stmt
                    .query_map(params![cursor, hi, lo_key, hi_key], |r| {
                        let rev: i64 = r.get(0)?;
                        let key = key_from(r.get(1)?)?;
                        let kind: i64 = r.get(2)?;
                        Ok(if kind == 0 {
                            WatchEvent {
                                kind: EventKind::Put,
                                kv: KeyValue {
                                    key,
                                    value: r.get(3)?,
                                    create_revision: r.get(4)?,
                                    mod_revision: rev,
                                    version: r.get(5)?,
                                },
                            }
                        } else {
                            delete_event(key, rev)
                        })
                    })
                    .map_err(backend("history"))?;
                let events = rows
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(backend("history"))?;
                Ok(events)
            })
            .await?;
        Ok((events, hi, false))
    }
}

/// What one batched request produced, applied to the ring and answered after COMMIT.
enum Applied {
    Txn {
        outcome: TxnOutcome,
        events: Vec<WatchEvent>,
    },
    Wipe {
        revision: Revision,
    },
}

struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    notify: watch::Sender<Revision>,
    revision: Revision,
    compact: Revision,
    history: i64,
    /// Wakes the checkpointer after commits (coalesced), and its thread, joined on exit.
    checkpoint: Option<(mpsc::SyncSender<()>, JoinHandle<()>)>,
}

/// The checkpointer thread: after each wake-up (some commit happened), a PASSIVE checkpoint
/// (never blocks the writer or readers), then a pause, so that checkpoints come at most every
/// [`CHECKPOINT_EVERY`]. Ends when the writer drops its sender; the last connection to close
/// checkpoints what is left.
fn checkpoint_loop(conn: Connection, wake: mpsc::Receiver<()>) {
    let mut pending = false;
    loop {
        if !pending && wake.recv().is_err() {
            return;
        }
        pending = false;
        let done: rusqlite::Result<(i64, i64, i64)> =
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            });
        match done {
            Ok((_, wal, copied)) => tracing::trace!(wal, copied, "sqlite checkpoint"),
            Err(e) => tracing::warn!(error = %e, "sqlite checkpoint failed; retrying later"),
        }
        // Pause, remembering commits made meanwhile; leave at once when the writer is gone.
        let until = Instant::now() + CHECKPOINT_EVERY;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match wake.recv_timeout(left) {
                Ok(()) => pending = true,
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

impl Writer {
    fn run(&mut self, rx: mpsc::Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            self.run_batch(batch);
            if let Some((wake, _)) = &self.checkpoint {
                // Full: a wake-up is already pending, which covers this commit too.
                let _ = wake.try_send(());
            }
        }
        if let Some((wake, thread)) = self.checkpoint.take() {
            drop(wake);
            if thread.join().is_err() {
                tracing::error!("sqlite checkpoint thread panicked");
            }
        }
        tracing::debug!("sqlite writer thread exiting");
    }

    fn run_batch(&mut self, batch: Vec<Request>) {
        match self.apply_batch(&batch) {
            Ok(applied) => self.publish(batch, applied),
            Err(e) if batch.len() > 1 => {
                // Don't let one failing request fail its neighbours: retry each on its own.
                tracing::warn!(error = %e, size = batch.len(), "sqlite batch failed; retrying singly");
                for req in batch {
                    self.run_batch(vec![req]);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "sqlite write failed");
                for req in batch {
                    match req {
                        Request::Txn(_, reply, _) => {
                            let _ = reply.send(Err(StoreError::Backend(e.to_string())));
                        }
                        Request::Wipe(reply, _) => {
                            let _ = reply.send(Err(StoreError::Backend(e.to_string())));
                        }
                    }
                }
            }
        }
    }

    /// Apply every request in one SQLite transaction; on error nothing is committed.
    fn apply_batch(&mut self, batch: &[Request]) -> Result<Vec<Applied>> {
        let started = Instant::now();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend("begin"))?;
        let mut rev = self.revision;
        let mut compact = self.compact;
        let mut applied = Vec::with_capacity(batch.len());
        for req in batch {
            match req {
                Request::Txn(txn, _, _) => {
                    applied.push(apply_txn(&tx, txn, &mut rev).map_err(backend("txn"))?);
                }
                Request::Wipe(..) => {
                    tx.execute_batch("DELETE FROM kv; DELETE FROM events;")
                        .map_err(backend("wipe"))?;
                    rev += 1;
                    compact = rev;
                    applied.push(Applied::Wipe { revision: rev });
                }
            }
        }
        // Prune history in steps of ~10% so the delete is amortised.
        let slack = (self.history / 10).max(1);
        if rev - compact >= self.history + slack {
            compact = rev - self.history;
            tx.execute("DELETE FROM events WHERE rev <= ?1", [compact])
                .map_err(backend("prune events"))?;
            tracing::debug!(compact, "sqlite store pruned watch history");
        }
        if rev != self.revision || compact != self.compact {
            let mut stmt = tx
                .prepare_cached("UPDATE meta SET value = ?2 WHERE name = ?1")
                .map_err(backend("update meta"))?;
            stmt.execute(params!["revision", rev])
                .map_err(backend("update meta"))?;
            stmt.execute(params!["compact", compact])
                .map_err(backend("update meta"))?;
        }
        let committing = Instant::now();
        tx.commit().map_err(backend("commit"))?;
        count(APPLY_NS, nanos(committing - started));
        count(COMMIT_NS, nanos(committing.elapsed()));
        count(COMMITS, 1);
        for req in batch {
            let (Request::Txn(_, _, queued) | Request::Wipe(_, queued)) = req;
            count(TXNS, 1);
            count(QUEUE_NS, nanos(started.saturating_duration_since(*queued)));
        }
        self.revision = rev;
        self.compact = compact;
        Ok(applied)
    }

    /// Make committed changes visible to watchers, then answer the callers.
    fn publish(&mut self, batch: Vec<Request>, applied: Vec<Applied>) {
        {
            let mut ring = lock(&self.shared.ring);
            for a in &applied {
                match a {
                    Applied::Txn {
                        outcome: TxnOutcome::Committed { revision },
                        events,
                    } if !events.is_empty() => {
                        ring.append(*revision, events.iter().cloned());
                    }
                    Applied::Txn { .. } => {}
                    Applied::Wipe { revision } => ring.wipe(*revision),
                }
            }
            self.shared.revision.store(self.revision, Ordering::Release);
            self.shared.compact.store(self.compact, Ordering::Release);
        }
        self.notify.send_replace(self.revision);
        for (req, a) in batch.into_iter().zip(applied) {
            match (req, a) {
                (Request::Txn(_, reply, _), Applied::Txn { outcome, .. }) => {
                    let _ = reply.send(Ok(outcome));
                }
                (Request::Wipe(reply, _), Applied::Wipe { revision }) => {
                    tracing::info!(revision, "sqlite store wiped");
                    let _ = reply.send(Ok(()));
                }
                (Request::Txn(_, reply, _), _) => {
                    let _ = reply.send(Err(StoreError::Backend("internal: reply mismatch".into())));
                }
                (Request::Wipe(reply, _), _) => {
                    let _ = reply.send(Err(StoreError::Backend("internal: reply mismatch".into())));
                }
            }
        }
    }
}

fn mod_revision_of(tx: &Connection, key: &str) -> rusqlite::Result<Revision> {
    Ok(tx
        .prepare_cached("SELECT mod_rev FROM kv WHERE key = ?1")?
        .query_row([key.as_bytes()], |r| r.get::<_, i64>(0))
        .optional()?
        .unwrap_or(0))
}

fn compare_holds(tx: &Connection, c: &Compare) -> rusqlite::Result<bool> {
    Ok(match c {
        Compare::ModRevision { key, revision } => mod_revision_of(tx, key)? == *revision,
        Compare::Absent { key } => mod_revision_of(tx, key)? == 0,
        Compare::Exists { key } => mod_revision_of(tx, key)? != 0,
        Compare::CreateRevision { key, revision } => {
            tx.prepare_cached("SELECT create_rev FROM kv WHERE key = ?1")?
                .query_row([key.as_bytes()], |r| r.get::<_, i64>(0))
                .optional()?
                .unwrap_or(0)
                == *revision
        }
    })
}

/// Apply one store transaction inside the open SQLite transaction, bumping `rev` if it changed
/// anything.
fn apply_txn(tx: &Connection, txn: &Txn, rev: &mut Revision) -> rusqlite::Result<Applied> {
    for (index, c) in txn.compares.iter().enumerate() {
        if !compare_holds(tx, c)? {
            return Ok(Applied::Txn {
                outcome: TxnOutcome::CompareFailed { index },
                events: vec![],
            });
        }
    }
    let next = *rev + 1;
    let mut events = Vec::new();
    for op in &txn.ops {
        match op {
            Op::Put { key, value } => {
                let (create_revision, version): (i64, i64) = tx
                    .prepare_cached(
                        "INSERT INTO kv (key, value, create_rev, mod_rev, version) \
                         VALUES (?1, ?2, ?3, ?3, 1) \
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                         mod_rev = excluded.mod_rev, version = version + 1 \
                         RETURNING create_rev, version",
                    )?
                    .query_row(params![key.as_bytes(), value, next], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?;
                events.push(WatchEvent {
                    kind: EventKind::Put,
                    kv: KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision,
                        mod_revision: next,
                        version,
                    },
                });
            }
            Op::Delete { key } => {
                let n = tx
                    .prepare_cached("DELETE FROM kv WHERE key = ?1")?
                    .execute([key.as_bytes()])?;
                if n > 0 {
                    events.push(delete_event(key.clone(), next));
                }
            }
            Op::DeletePrefix { prefix } => {
                let lo = prefix.as_bytes();
                let hi = prefix_end(prefix);
                let keys = tx
                    .prepare_cached("SELECT key FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key")?
                    .query_map(params![lo, hi], |r| key_from(r.get(0)?))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                if !keys.is_empty() {
                    tx.prepare_cached("DELETE FROM kv WHERE key >= ?1 AND key < ?2")?
                        .execute(params![lo, hi])?;
                }
                events.extend(keys.into_iter().map(|k| delete_event(k, next)));
            }
        }
    }
    if events.is_empty() {
        return Ok(Applied::Txn {
            outcome: TxnOutcome::Committed { revision: *rev },
            events,
        });
    }
    let mut stmt = tx.prepare_cached(
        "INSERT INTO events (rev, idx, key, kind, value, create_rev, version) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for (idx, ev) in events.iter().enumerate() {
        let kind = match ev.kind {
            EventKind::Put => 0,
            EventKind::Delete => 1,
        };
        stmt.execute(params![
            next,
            idx as i64,
            ev.kv.key.as_bytes(),
            kind,
            ev.kv.value,
            ev.kv.create_revision,
            ev.kv.version
        ])?;
    }
    *rev = next;
    Ok(Applied::Txn {
        outcome: TxnOutcome::Committed { revision: next },
        events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every committed store transaction is counted, with its group and where its time went.
    #[tokio::test]
    async fn the_writer_counts_its_commits_and_their_time() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path().join("s.db")).unwrap();
        let before = writer_stats();
        let writes: Vec<_> = (0..20)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move { s.txn(Txn::new().put(format!("k{i}"), "v")).await })
            })
            .collect();
        for w in writes {
            assert!(w.await.unwrap().unwrap().committed());
        }
        // A transaction whose compare fails is counted too: a group commit carried it.
        let failed = s.txn(
            Txn::new()
                .when(Compare::Exists { key: "nope".into() })
                .put("x", "y"),
        );
        assert!(!failed.await.unwrap().committed());
        let after = writer_stats();
        // Other tests in this process write too: at least ours are counted.
        assert!(after.txns >= before.txns + 21, "{before:?} -> {after:?}");
        assert!(after.commits > before.commits && after.commits <= after.txns);
        assert!(after.commit_seconds > before.commit_seconds);
        assert!(after.apply_seconds > before.apply_seconds);
        assert!(after.queue_seconds >= before.queue_seconds);
    }
}
