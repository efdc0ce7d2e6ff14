//! berth-logs: the log store behind berth's CloudWatch Logs API (what the `awslogs` driver writes and
//! `aws logs …` reads).
//!
//! # Layout
//!
//! ```text
//! <dir>/groups/<group-id>/group.json                      name, creation time, retention, tags
//! <dir>/groups/<group-id>/streams/<stream-id>/stream.json name, creation time
//! <dir>/groups/<group-id>/streams/<stream-id>/<n>.seg     append-only records (see `segment`)
//! <dir>/groups/<group-id>/streams/<stream-id>/<n>.idx     summary + sparse time index of a sealed segment
//! ```
//!
//! Directory ids are random (names may hold `/` and be 512 characters long); the names live in the
//! small JSON files, which are written atomically (temp file, fsync, rename) and only change on
//! create/delete/retention/tag operations. Metadata is kept in those files rather than SQLite
//! because it is tiny, changes rarely, and is naturally partitioned exactly like the data: deleting
//! a group or stream is one directory rename (into `<dir>/trash`) followed by a recursive delete, so
//! no separate catalogue can disagree with the files. Per-stream statistics (first/last event
//! timestamps, last ingestion time, stored bytes) are derived from the segment summaries, so the
//! write path never touches metadata.
//!
//! # Durability
//!
//! PutLogEvents writes its batch with one `pwrite` (visible to readers at once, safe across a crash
//! of the process) and marks the stream dirty; [`LogStore::flush`], which the server runs every second (the
//! `logs_flush` background task), fsyncs dirty streams, like other log systems' batch fsync. Sealing a segment and
//! dropping the store fsync too. After a machine crash, at most the last interval is lost, and a
//! torn tail record is detected by its CRC and cut off on open.
//!
//! # Reads
//!
//! Segments are sorted runs (a batch older than the active segment's newest event starts a new
//! segment), so reads binary-search each segment's sparse index to the start of the time range and
//! k-way merge the overlapping segments (and, for FilterLogEvents, streams) by
//! `(timestamp, stream, segment, offset)` — which is also what positions and tokens encode.
//!
//! # Live tail
//!
//! Every successful append is also published (only while someone listens) on a broadcast channel
//! ([`LogStore::subscribe`]) as one [`Appended`] batch, in the stream's append order: Live Tail
//! sessions follow new events from memory instead of polling the disk. A subscriber that falls
//! more than [`LIVE_CHANNEL_BATCHES`] batches behind loses the oldest ones and is told how many.

mod error;
pub mod pattern;
mod segment;

pub use error::LogError;
pub use pattern::Pattern;

use segment::{Record, Scanner, Segment};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

const DAY_MS: i64 = 86_400_000;

/// How many appended batches the live channel holds for a slow subscriber before it drops the
/// oldest.
pub const LIVE_CHANNEL_BATCHES: usize = 1024;

/// One batch of events just appended to a stream, as published to live subscribers.
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    pub group: String,
    pub stream: String,
    pub ingestion_time: i64,
    /// `(timestamp ms, message)`, in the order they were stored.
    pub events: Vec<(i64, String)>,
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}
fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

/// A log group's settings, as persisted in `group.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupSettings {
    pub name: String,
    pub creation_time: i64,
    #[serde(default)]
    pub retention_in_days: Option<u32>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub kms_key_id: Option<String>,
    #[serde(default = "default_class")]
    pub log_group_class: String,
    #[serde(default)]
    pub deletion_protection: bool,
}

fn default_class() -> String {
    "STANDARD".into()
}

impl GroupSettings {
    /// Settings for a new group created now.
    pub fn new(name: &str) -> Self {
        GroupSettings {
            name: name.to_string(),
            creation_time: now_ms(),
            retention_in_days: None,
            tags: BTreeMap::new(),
            kms_key_id: None,
            log_group_class: default_class(),
            deletion_protection: false,
        }
    }
}

/// A log group as described by DescribeLogGroups.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupInfo {
    pub settings: GroupSettings,
    pub stored_bytes: u64,
}

/// A log stream as described by DescribeLogStreams.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamInfo {
    pub name: String,
    pub creation_time: i64,
    pub first_event_timestamp: Option<i64>,
    pub last_event_timestamp: Option<i64>,
    pub last_ingestion_time: Option<i64>,
    pub stored_bytes: u64,
}

/// Where an event sits in its stream's merged order: `(timestamp, segment, offset)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub timestamp: i64,
    pub segment: u64,
    pub offset: u64,
}

impl Position {
    /// 56 decimal digits (20 timestamp + 16 segment + 20 offset), the shape of AWS's tokens and
    /// event ids. Timestamps are never negative (the API rejects them).
    pub fn to_digits(&self) -> String {
        format!(
            "{:020}{:016}{:020}",
            self.timestamp.max(0),
            self.segment % 10_000_000_000_000_000,
            self.offset
        )
    }

    /// Parses [`Position::to_digits`].
    pub fn from_digits(s: &str) -> Option<Position> {
        if s.len() != 56 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Position {
            timestamp: s[..20].parse().ok()?,
            segment: s[20..36].parse().ok()?,
            offset: s[36..].parse().ok()?,
        })
    }
}

/// One stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub timestamp: i64,
    pub ingestion_time: i64,
    pub message: String,
    pub position: Position,
}

/// Where GetLogEvents starts reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadFrom {
    /// Oldest events first.
    Head,
    /// The newest `limit` events.
    Tail,
    /// Events strictly after this position, oldest first.
    After(Position),
    /// The `limit` events strictly before this position.
    Before(Position),
}

/// A GetLogEvents query. Results are always in ascending order.
#[derive(Debug, Clone)]
pub struct GetQuery {
    /// Inclusive lower bound on the timestamp.
    pub start: Option<i64>,
    /// Exclusive upper bound on the timestamp.
    pub end: Option<i64>,
    pub limit: usize,
    /// Stop once the events' messages plus 26 bytes each exceed this.
    pub max_bytes: usize,
    pub from: ReadFrom,
}

/// Resume point of a FilterLogEvents scan: everything up to and including it was examined.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FilterCursor {
    pub timestamp: i64,
    pub stream: String,
    pub segment: u64,
    pub offset: u64,
}

impl FilterCursor {
    /// An opaque token string.
    pub fn to_token(&self) -> String {
        let raw = format!(
            "{}/{}/{}/{}",
            self.timestamp, self.segment, self.offset, self.stream
        );
        raw.bytes().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses [`FilterCursor::to_token`].
    pub fn from_token(t: &str) -> Option<FilterCursor> {
        if !t.len().is_multiple_of(2) || t.len() > 4096 {
            return None;
        }
        let bytes: Option<Vec<u8>> = (0..t.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(t.get(i..i + 2)?, 16).ok())
            .collect();
        let s = String::from_utf8(bytes?).ok()?;
        let mut it = s.splitn(4, '/');
        Some(FilterCursor {
            timestamp: it.next()?.parse().ok()?,
            segment: it.next()?.parse().ok()?,
            offset: it.next()?.parse().ok()?,
            stream: it.next()?.to_string(),
        })
    }
}

/// A FilterLogEvents query.
#[derive(Debug, Clone)]
pub struct FilterQuery {
    /// Exactly these streams (missing ones are ignored); `None` = all (or those with `prefix`).
    pub streams: Option<Vec<String>>,
    pub prefix: Option<String>,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub limit: usize,
    pub max_bytes: usize,
    pub pattern: Pattern,
    pub after: Option<FilterCursor>,
    /// Stop and hand back a cursor after reading this many bytes from disk.
    pub scan_budget: u64,
}

/// A FilterLogEvents result.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterResult {
    pub events: Vec<(String, Event)>,
    /// Set when there may be more matching events.
    pub next: Option<FilterCursor>,
    pub searched_streams: Vec<String>,
}

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub segments_deleted: u64,
    pub bytes_reclaimed: u64,
}

struct Inner {
    dir: PathBuf,
    groups: RwLock<BTreeMap<String, Arc<Group>>>,
    live: tokio::sync::broadcast::Sender<Arc<Appended>>,
}

struct Group {
    dir: PathBuf,
    settings: Mutex<GroupSettings>,
    streams: RwLock<BTreeMap<String, Arc<Stream>>>,
}

struct Stream {
    dir: PathBuf,
    name: String,
    creation_time: i64,
    state: Mutex<StreamState>,
}

#[derive(Default)]
struct StreamState {
    sealed: Vec<Arc<Segment>>,
    active: Option<Segment>,
    next_id: u64,
    dirty: bool,
    deleted: bool,
}

#[derive(Serialize, Deserialize)]
struct StreamMeta {
    name: String,
    creation_time: i64,
}

/// The log store. Cheap to clone; thread-safe: one writer per stream at a time (per-stream lock),
/// readers work on snapshots of the segment list and never block writers for long.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("dir", &self.inner.dir)
            .finish()
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Writes `data` to `path` atomically (temp file, fsync, rename).
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), LogError> {
    let tmp = path.with_extension("json.tmp");
    let mut f = fs::File::create(&tmp).map_err(|e| LogError::io(&tmp, e))?;
    f.write_all(data).map_err(|e| LogError::io(&tmp, e))?;
    f.sync_data().map_err(|e| LogError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| LogError::io(path, e))?;
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

impl LogStore {
    /// Opens (creating if needed) the store in `dir`, recovering any torn segment tails.
    pub fn open(dir: impl AsRef<Path>) -> Result<LogStore, LogError> {
        let dir = dir.as_ref().to_path_buf();
        let groups_dir = dir.join("groups");
        fs::create_dir_all(&groups_dir).map_err(|e| LogError::io(&groups_dir, e))?;
        let trash = dir.join("trash");
        if trash.exists() {
            let _ = fs::remove_dir_all(&trash);
        }
        let mut groups = BTreeMap::new();
        let entries = fs::read_dir(&groups_dir).map_err(|e| LogError::io(&groups_dir, e))?;
        for ent in entries.flatten() {
            let gdir = ent.path();
            let fname = ent.file_name().to_string_lossy().into_owned();
            if fname.starts_with('.') {
                let _ = fs::remove_dir_all(&gdir);
                continue;
            }
            let meta_path = gdir.join("group.json");
            let settings: GroupSettings = match fs::read(&meta_path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                Some(s) => s,
                None => {
                    tracing::warn!(dir = %gdir.display(), "skipping a log group directory without a readable group.json");
                    continue;
                }
            };
            let streams = load_streams(&gdir.join("streams"))?;
            groups.insert(
                settings.name.clone(),
                Arc::new(Group {
                    dir: gdir,
                    settings: Mutex::new(settings),
                    streams: RwLock::new(streams),
                }),
            );
        }
        tracing::info!(dir = %dir.display(), groups = groups.len(), "log store opened");
        Ok(LogStore {
            inner: Arc::new(Inner {
                dir,
                groups: RwLock::new(groups),
                live: tokio::sync::broadcast::channel(LIVE_CHANNEL_BATCHES).0,
            }),
        })
    }

    /// Follows every batch appended from now on (see the crate docs, "Live tail").
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<Appended>> {
        self.inner.live.subscribe()
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn group(&self, name: &str) -> Result<Arc<Group>, LogError> {
        read(&self.inner.groups)
            .get(name)
            .cloned()
            .ok_or(LogError::GroupNotFound)
    }

    fn stream(&self, group: &str, stream: &str) -> Result<Arc<Stream>, LogError> {
        let g = self.group(group)?;
        let s = read(&g.streams)
            .get(stream)
            .cloned()
            .ok_or(LogError::StreamNotFound);
        s
    }

    /// Creates a log group.
    pub fn create_group(&self, settings: GroupSettings) -> Result<(), LogError> {
        let mut groups = write(&self.inner.groups);
        if groups.contains_key(&settings.name) {
            return Err(LogError::GroupExists);
        }
        let id = new_id();
        let base = self.inner.dir.join("groups");
        let tmp = base.join(format!(".tmp-{id}"));
        let fin = base.join(&id);
        fs::create_dir_all(tmp.join("streams")).map_err(|e| LogError::io(&tmp, e))?;
        let json = serde_json::to_vec_pretty(&settings).unwrap_or_default();
        write_atomic(&tmp.join("group.json"), &json)?;
        fs::rename(&tmp, &fin).map_err(|e| LogError::io(&fin, e))?;
        sync_dir(&base);
        tracing::debug!(group = %settings.name, "log group created");
        groups.insert(
            settings.name.clone(),
            Arc::new(Group {
                dir: fin,
                settings: Mutex::new(settings),
                streams: RwLock::new(BTreeMap::new()),
            }),
        );
        Ok(())
    }

    /// Deletes a log group, its streams and all their events.
    pub fn delete_group(&self, name: &str) -> Result<(), LogError> {
        let g = write(&self.inner.groups)
            .remove(name)
            .ok_or(LogError::GroupNotFound)?;
        for s in read(&g.streams).values() {
            lock(&s.state).deleted = true;
        }
        self.discard_dir(&g.dir);
        tracing::debug!(group = %name, "log group deleted");
        Ok(())
    }

    /// Moves a directory to the trash (atomic) and deletes it.
    fn discard_dir(&self, dir: &Path) {
        let trash = self.inner.dir.join("trash");
        let _ = fs::create_dir_all(&trash);
        let dest = trash.join(new_id());
        match fs::rename(dir, &dest) {
            Ok(()) => {
                if let Err(e) = fs::remove_dir_all(&dest) {
                    tracing::warn!(dir = %dest.display(), error = %e, "could not delete discarded log data");
                }
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "could not move log data to the trash; deleting in place");
                let _ = fs::remove_dir_all(dir);
            }
        }
    }

    /// Deletes every group (for `POST /_berth/reset`).
    pub fn wipe(&self) -> Result<(), LogError> {
        let names: Vec<String> = read(&self.inner.groups).keys().cloned().collect();
        for n in names {
            match self.delete_group(&n) {
                Ok(()) | Err(LogError::GroupNotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// A group's settings.
    pub fn group_settings(&self, name: &str) -> Result<GroupSettings, LogError> {
        Ok(lock(&self.group(name)?.settings).clone())
    }

    /// Changes a group's settings (retention, tags …) and persists them. The name cannot change.
    pub fn update_group<R>(
        &self,
        name: &str,
        f: impl FnOnce(&mut GroupSettings) -> Result<R, LogError>,
    ) -> Result<R, LogError> {
        let g = self.group(name)?;
        let mut s = lock(&g.settings);
        let mut next = s.clone();
        let r = f(&mut next)?;
        next.name = s.name.clone();
        if next != *s {
            let json = serde_json::to_vec_pretty(&next).unwrap_or_default();
            write_atomic(&g.dir.join("group.json"), &json)?;
            *s = next;
        }
        Ok(r)
    }

    /// Every group, sorted by name, with its stored bytes.
    pub fn list_groups(&self) -> Vec<GroupInfo> {
        let groups: Vec<Arc<Group>> = read(&self.inner.groups).values().cloned().collect();
        groups
            .iter()
            .map(|g| {
                let stored_bytes = read(&g.streams)
                    .values()
                    .map(|s| stream_info(s).stored_bytes)
                    .sum();
                GroupInfo {
                    settings: lock(&g.settings).clone(),
                    stored_bytes,
                }
            })
            .collect()
    }

    /// Creates a log stream in a group.
    pub fn create_stream(&self, group: &str, name: &str) -> Result<(), LogError> {
        let g = self.group(group)?;
        let mut streams = write(&g.streams);
        if streams.contains_key(name) {
            return Err(LogError::StreamExists);
        }
        let id = new_id();
        let base = g.dir.join("streams");
        let tmp = base.join(format!(".tmp-{id}"));
        let fin = base.join(&id);
        fs::create_dir_all(&tmp).map_err(|e| LogError::io(&tmp, e))?;
        let meta = StreamMeta {
            name: name.to_string(),
            creation_time: now_ms(),
        };
        write_atomic(
            &tmp.join("stream.json"),
            &serde_json::to_vec(&meta).unwrap_or_default(),
        )?;
        fs::rename(&tmp, &fin).map_err(|e| LogError::io(&fin, e))?;
        sync_dir(&base);
        streams.insert(
            name.to_string(),
            Arc::new(Stream {
                dir: fin,
                name: name.to_string(),
                creation_time: meta.creation_time,
                state: Mutex::new(StreamState {
                    next_id: 1,
                    ..Default::default()
                }),
            }),
        );
        Ok(())
    }

    /// Deletes a log stream and its events.
    pub fn delete_stream(&self, group: &str, name: &str) -> Result<(), LogError> {
        let g = self.group(group)?;
        let s = write(&g.streams)
            .remove(name)
            .ok_or(LogError::StreamNotFound)?;
        lock(&s.state).deleted = true;
        self.discard_dir(&s.dir);
        Ok(())
    }

    /// The streams of a group, sorted by name.
    pub fn list_streams(&self, group: &str) -> Result<Vec<StreamInfo>, LogError> {
        let g = self.group(group)?;
        let streams: Vec<Arc<Stream>> = read(&g.streams).values().cloned().collect();
        Ok(streams.iter().map(|s| stream_info(s)).collect())
    }

    /// Appends a batch of `(timestamp ms, message)` events, which must be in chronological order.
    /// Validation of the API's limits (batch size, age) is the caller's; this only refuses what
    /// would break the store's invariants.
    pub fn put_events(
        &self,
        group: &str,
        stream: &str,
        events: &[(i64, &str)],
        ingestion_time: i64,
    ) -> Result<(), LogError> {
        if events.windows(2).any(|w| w[1].0 < w[0].0) {
            return Err(LogError::Invalid(
                "Log events in a single PutLogEvents request must be in chronological order."
                    .into(),
            ));
        }
        let Some(first) = events.first() else {
            return Ok(());
        };
        let s = self.stream(group, stream)?;
        let mut buf = Vec::with_capacity(
            events
                .iter()
                .map(|(_, m)| segment::record_len(m.len()) as usize)
                .sum(),
        );
        let mut entries = Vec::with_capacity(events.len());
        for (ts, msg) in events {
            entries.push((*ts, buf.len() as u64));
            segment::encode(&mut buf, *ts, ingestion_time, msg.as_bytes());
        }
        let mut st = lock(&s.state);
        if st.deleted {
            return Err(LogError::StreamNotFound);
        }
        let roll = st.active.as_ref().is_some_and(|a| {
            a.count > 0
                && (a.len + buf.len() as u64 > segment::SEGMENT_MAX_BYTES
                    || first.0 < a.max_ts
                    || first.0.div_euclid(DAY_MS) != a.min_ts.div_euclid(DAY_MS))
        });
        if roll {
            seal_active(&s.dir, &mut st)?;
        }
        if st.active.is_none() {
            let id = st.next_id;
            st.active = Some(Segment::create(&s.dir, id)?);
            st.next_id = id + 1;
        }
        if let Some(a) = st.active.as_mut() {
            a.append(&buf, &entries, ingestion_time)?;
        }
        st.dirty = true;
        // Published under the stream lock, so subscribers see a stream's batches in append order.
        if self.inner.live.receiver_count() > 0 {
            let _ = self.inner.live.send(Arc::new(Appended {
                group: group.to_string(),
                stream: stream.to_string(),
                ingestion_time,
                events: events.iter().map(|(t, m)| (*t, m.to_string())).collect(),
            }));
        }
        Ok(())
    }

    /// Fsyncs every stream written since the last flush.
    pub fn flush(&self) -> Result<(), LogError> {
        flush_inner(&self.inner)
    }

    /// Reads events of one stream.
    pub fn get_events(
        &self,
        group: &str,
        stream: &str,
        q: &GetQuery,
    ) -> Result<Vec<Event>, LogError> {
        let g = self.group(group)?;
        let cutoff = retention_cutoff(&lock(&g.settings), now_ms());
        let s = read(&g.streams)
            .get(stream)
            .cloned()
            .ok_or(LogError::StreamNotFound)?;
        let segs = snapshot(&s);
        let lo = q.start.unwrap_or(i64::MIN).max(cutoff);
        let hi = q.end.unwrap_or(i64::MAX);
        let limit = q.limit.max(1);
        let sources: Vec<(u64, Arc<Segment>)> = segs.into_iter().map(|x| (x.id, x)).collect();
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut take = |rank: u64, r: Record| {
            bytes += r.message.len() + 26;
            if !out.is_empty() && bytes > q.max_bytes {
                return false;
            }
            out.push(Event {
                timestamp: r.ts,
                ingestion_time: r.ingest,
                position: Position {
                    timestamp: r.ts,
                    segment: rank,
                    offset: r.offset,
                },
                message: r.message,
            });
            out.len() < limit
        };
        match q.from {
            ReadFrom::Head => merge_forward(sources, lo, hi, None, &mut take),
            ReadFrom::After(p) => merge_forward(
                sources,
                lo,
                hi,
                Some((p.timestamp, p.segment, p.offset)),
                &mut take,
            ),
            ReadFrom::Tail => {
                merge_backward(sources, lo, hi, None, &mut take);
                out.reverse();
            }
            ReadFrom::Before(p) => {
                merge_backward(
                    sources,
                    lo,
                    hi,
                    Some((p.timestamp, p.segment, p.offset)),
                    &mut take,
                );
                out.reverse();
            }
        }
        Ok(out)
    }

    /// Searches the streams of a group, interleaving their events by timestamp.
    pub fn filter_events(&self, group: &str, q: &FilterQuery) -> Result<FilterResult, LogError> {
        let g = self.group(group)?;
        let cutoff = retention_cutoff(&lock(&g.settings), now_ms());
        let streams: Vec<Arc<Stream>> = {
            let all = read(&g.streams);
            match &q.streams {
                Some(names) => {
                    let mut v: Vec<Arc<Stream>> =
                        names.iter().filter_map(|n| all.get(n).cloned()).collect();
                    v.sort_by(|a, b| a.name.cmp(&b.name));
                    v.dedup_by(|a, b| a.name == b.name);
                    v
                }
                None => all
                    .values()
                    .filter(|s| q.prefix.as_deref().is_none_or(|p| s.name.starts_with(p)))
                    .cloned()
                    .collect(),
            }
        };
        // Sources ranked by (stream name, segment id): rank = 2*i + 1, so a cursor whose segment is
        // gone still sorts between its neighbours (rank 2*i).
        let mut keyed: Vec<(String, u64, Arc<Segment>)> = Vec::new();
        for s in &streams {
            for seg in snapshot(s) {
                keyed.push((s.name.clone(), seg.id, seg));
            }
        }
        keyed.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let after = q.after.as_ref().map(|c| {
            let i = keyed.partition_point(|k| (k.0.as_str(), k.1) < (c.stream.as_str(), c.segment));
            let exact = keyed
                .get(i)
                .is_some_and(|k| k.0 == c.stream && k.1 == c.segment);
            let rank = 2 * i as u64 + u64::from(exact);
            (c.timestamp, rank, c.offset)
        });
        let sources: Vec<(u64, Arc<Segment>)> = keyed
            .iter()
            .enumerate()
            .map(|(i, k)| (2 * i as u64 + 1, k.2.clone()))
            .collect();
        let lo = q.start.unwrap_or(i64::MIN).max(cutoff);
        let hi = q.end.unwrap_or(i64::MAX);
        let limit = q.limit.max(1);
        let mut events: Vec<(String, Event)> = Vec::new();
        let mut bytes = 0usize;
        let mut scanned = 0u64;
        let mut more = false;
        let mut last_scanned: Option<FilterCursor> = None;
        let mut budget_hit = false;
        let cursor_of = |rank: u64, r: &Record| {
            let k = &keyed[((rank - 1) / 2) as usize];
            FilterCursor {
                timestamp: r.ts,
                stream: k.0.clone(),
                segment: k.1,
                offset: r.offset,
            }
        };
        merge_forward(sources, lo, hi, after, &mut |rank, r: Record| {
            scanned += segment::record_len(r.message.len());
            if !q.pattern.matches(&r.message) {
                if scanned > q.scan_budget {
                    last_scanned = Some(cursor_of(rank, &r));
                    budget_hit = true;
                    return false;
                }
                return true;
            }
            let full = events.len() >= limit
                || (!events.is_empty() && bytes + r.message.len() + 26 > q.max_bytes);
            if full {
                more = true;
                return false;
            }
            bytes += r.message.len() + 26;
            let k = &keyed[((rank - 1) / 2) as usize];
            events.push((
                k.0.clone(),
                Event {
                    timestamp: r.ts,
                    ingestion_time: r.ingest,
                    position: Position {
                        timestamp: r.ts,
                        segment: k.1,
                        offset: r.offset,
                    },
                    message: r.message,
                },
            ));
            if scanned > q.scan_budget {
                last_scanned = None;
                budget_hit = true;
                more = true;
                return false;
            }
            true
        });
        let next = if budget_hit && last_scanned.is_some() {
            last_scanned
        } else if more {
            events.last().map(|(stream, e)| FilterCursor {
                timestamp: e.timestamp,
                stream: stream.clone(),
                segment: e.position.segment,
                offset: e.position.offset,
            })
        } else {
            None
        };
        Ok(FilterResult {
            events,
            next,
            searched_streams: streams.iter().map(|s| s.name.clone()).collect(),
        })
    }

    /// Deletes segments whose newest event is older than their group's retention allows.
    /// (Reads already hide expired events; this reclaims the space.)
    pub fn apply_retention(&self, now: i64) -> Result<RetentionReport, LogError> {
        let groups: Vec<Arc<Group>> = read(&self.inner.groups).values().cloned().collect();
        let mut report = RetentionReport::default();
        for g in groups {
            let cutoff = retention_cutoff(&lock(&g.settings), now);
            if cutoff == i64::MIN {
                continue;
            }
            let streams: Vec<Arc<Stream>> = read(&g.streams).values().cloned().collect();
            for s in streams {
                let mut st = lock(&s.state);
                if st.deleted {
                    continue;
                }
                if st
                    .active
                    .as_ref()
                    .is_some_and(|a| a.count > 0 && a.max_ts < cutoff)
                {
                    if let Some(a) = st.active.take() {
                        st.sealed.push(Arc::new(a));
                    }
                }
                let (expired, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut st.sealed)
                    .into_iter()
                    .partition(|seg| seg.max_ts < cutoff);
                st.sealed = kept;
                drop(st);
                for seg in expired {
                    let _ = fs::remove_file(segment::idx_path(&s.dir, seg.id));
                    match fs::remove_file(&seg.path) {
                        Ok(()) => {
                            report.segments_deleted += 1;
                            report.bytes_reclaimed += seg.len;
                        }
                        Err(e) => {
                            tracing::warn!(segment = %seg.path.display(), error = %e, "could not delete an expired log segment")
                        }
                    }
                }
            }
        }
        if report.segments_deleted > 0 {
            tracing::info!(
                segments = report.segments_deleted,
                bytes = report.bytes_reclaimed,
                "log retention removed expired segments"
            );
        }
        Ok(report)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(e) = flush_inner(self) {
            tracing::warn!(error = %e, "final log flush failed");
        }
    }
}

fn flush_inner(inner: &Inner) -> Result<(), LogError> {
    let groups: Vec<Arc<Group>> = read(&inner.groups).values().cloned().collect();
    for g in groups {
        let streams: Vec<Arc<Stream>> = read(&g.streams).values().cloned().collect();
        for s in streams {
            let file = {
                let mut st = lock(&s.state);
                if !st.dirty {
                    continue;
                }
                st.dirty = false;
                st.active.as_ref().map(|a| (a.file.clone(), a.path.clone()))
            };
            if let Some((f, path)) = file {
                f.sync_data().map_err(|e| LogError::io(&path, e))?;
            }
        }
    }
    Ok(())
}

fn retention_cutoff(s: &GroupSettings, now: i64) -> i64 {
    match s.retention_in_days {
        Some(d) => now.saturating_sub(i64::from(d).saturating_mul(DAY_MS)),
        None => i64::MIN,
    }
}

fn seal_active(dir: &Path, st: &mut StreamState) -> Result<(), LogError> {
    if let Some(a) = st.active.take() {
        if a.count > 0 {
            a.seal(dir)?;
            st.sealed.push(Arc::new(a));
        } else {
            let _ = fs::remove_file(&a.path);
        }
    }
    Ok(())
}

fn snapshot(s: &Stream) -> Vec<Arc<Segment>> {
    let st = lock(&s.state);
    let mut v = st.sealed.clone();
    if let Some(a) = &st.active {
        if a.count > 0 {
            v.push(Arc::new(a.clone()));
        }
    }
    v
}

fn stream_info(s: &Stream) -> StreamInfo {
    let st = lock(&s.state);
    let mut info = StreamInfo {
        name: s.name.clone(),
        creation_time: s.creation_time,
        first_event_timestamp: None,
        last_event_timestamp: None,
        last_ingestion_time: None,
        stored_bytes: 0,
    };
    for seg in st
        .sealed
        .iter()
        .map(|a| a.as_ref())
        .chain(st.active.as_ref())
    {
        if seg.count == 0 {
            continue;
        }
        info.stored_bytes += seg.len;
        info.first_event_timestamp = Some(
            info.first_event_timestamp
                .map_or(seg.min_ts, |x| x.min(seg.min_ts)),
        );
        info.last_event_timestamp = Some(
            info.last_event_timestamp
                .map_or(seg.max_ts, |x| x.max(seg.max_ts)),
        );
        info.last_ingestion_time = Some(
            info.last_ingestion_time
                .map_or(seg.max_ingest, |x| x.max(seg.max_ingest)),
        );
    }
    info
}

fn load_streams(dir: &Path) -> Result<BTreeMap<String, Arc<Stream>>, LogError> {
    let mut out = BTreeMap::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(LogError::io(dir, e)),
    };
    for ent in entries.flatten() {
        let sdir = ent.path();
        if ent.file_name().to_string_lossy().starts_with('.') {
            let _ = fs::remove_dir_all(&sdir);
            continue;
        }
        let meta: StreamMeta = match fs::read(sdir.join("stream.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            Some(m) => m,
            None => {
                tracing::warn!(dir = %sdir.display(), "skipping a log stream directory without a readable stream.json");
                continue;
            }
        };
        let mut ids: Vec<u64> = fs::read_dir(&sdir)
            .map_err(|e| LogError::io(&sdir, e))?
            .flatten()
            .filter_map(|e| segment::parse_seg_name(&e.file_name().to_string_lossy()))
            .collect();
        ids.sort_unstable();
        let mut st = StreamState {
            next_id: ids.last().map_or(1, |x| x + 1),
            ..Default::default()
        };
        for id in ids {
            let (seg, sealed) = Segment::open(&sdir, id)?;
            if seg.count == 0 {
                let _ = fs::remove_file(&seg.path);
                let _ = fs::remove_file(segment::idx_path(&sdir, id));
                continue;
            }
            if !sealed {
                seg.seal(&sdir)?;
            }
            st.sealed.push(Arc::new(seg));
        }
        out.insert(
            meta.name.clone(),
            Arc::new(Stream {
                dir: sdir,
                name: meta.name,
                creation_time: meta.creation_time,
                state: Mutex::new(st),
            }),
        );
    }
    Ok(out)
}

type Key = (i64, u64, u64);

/// Visits records of `sources` (each a sorted segment with a rank) in ascending
/// `(ts, rank, offset)` order, restricted to `lo <= ts < hi` and to keys after `after`, until
/// `visit` returns false.
fn merge_forward(
    sources: Vec<(u64, Arc<Segment>)>,
    lo: i64,
    hi: i64,
    after: Option<Key>,
    visit: &mut dyn FnMut(u64, Record) -> bool,
) {
    if lo >= hi {
        return;
    }
    let start_ts = after.map_or(lo, |a| a.0.max(lo));
    let mut scanners: Vec<(u64, Scanner)> = Vec::new();
    let mut heap: BinaryHeap<Reverse<(i64, u64, u64, usize)>> = BinaryHeap::new();
    let mut heads: Vec<Option<Record>> = Vec::new();
    let advance = |sc: &mut Scanner, rank: u64| -> Option<Record> {
        while let Some(r) = sc.next_record() {
            if r.ts >= hi {
                return None;
            }
            if r.ts < lo {
                continue;
            }
            if let Some(a) = after {
                if (r.ts, rank, r.offset) <= a {
                    continue;
                }
            }
            return Some(r);
        }
        None
    };
    for (rank, seg) in sources {
        if seg.count == 0 || seg.max_ts < start_ts || seg.min_ts >= hi {
            continue;
        }
        let from = seg.seek_forward(start_ts);
        let mut sc = Scanner::new(seg.file.clone(), from, seg.len);
        if let Some(r) = advance(&mut sc, rank) {
            let i = scanners.len();
            heap.push(Reverse((r.ts, rank, r.offset, i)));
            heads.push(Some(r));
            scanners.push((rank, sc));
        }
    }
    while let Some(Reverse((_, rank, _, i))) = heap.pop() {
        let Some(rec) = heads[i].take() else { continue };
        if let Some(next) = advance(&mut scanners[i].1, rank) {
            heap.push(Reverse((next.ts, rank, next.offset, i)));
            heads[i] = Some(next);
        }
        if !visit(rank, rec) {
            return;
        }
    }
}

/// Like [`merge_forward`] but descending, restricted to keys before `before`.
fn merge_backward(
    sources: Vec<(u64, Arc<Segment>)>,
    lo: i64,
    hi: i64,
    before: Option<Key>,
    visit: &mut dyn FnMut(u64, Record) -> bool,
) {
    if lo >= hi {
        return;
    }
    let top = before.map_or(hi - 1, |b| b.0.min(hi - 1));
    struct Src {
        rank: u64,
        seg: Arc<Segment>,
        next_block: Option<usize>,
        buf: Vec<Record>,
    }
    let refill = |s: &mut Src| -> Option<Record> {
        loop {
            if let Some(r) = s.buf.pop() {
                return Some(r);
            }
            let b = s.next_block?;
            s.next_block = b.checked_sub(1);
            let (start, end) = s.seg.block(b);
            let rank = s.rank;
            s.buf = s
                .seg
                .read_range(start, end)
                .into_iter()
                .filter(|r| {
                    r.ts >= lo && r.ts <= top && before.is_none_or(|bk| (r.ts, rank, r.offset) < bk)
                })
                .collect();
            // Blocks are ascending; once a block starts below `lo`, older blocks are useless.
            if s.seg.index.get(b).is_some_and(|e| e.0 < lo) {
                s.next_block = None;
            }
        }
    };
    let mut srcs: Vec<Src> = Vec::new();
    let mut heads: Vec<Option<Record>> = Vec::new();
    let mut heap: BinaryHeap<(i64, u64, u64, usize)> = BinaryHeap::new();
    for (rank, seg) in sources {
        if seg.count == 0 || seg.min_ts > top || seg.max_ts < lo {
            continue;
        }
        let mut s = Src {
            rank,
            next_block: seg.last_block_upto(top),
            seg,
            buf: Vec::new(),
        };
        if let Some(r) = refill(&mut s) {
            let i = srcs.len();
            heap.push((r.ts, rank, r.offset, i));
            heads.push(Some(r));
            srcs.push(s);
        }
    }
    while let Some((_, rank, _, i)) = heap.pop() {
        let Some(rec) = heads[i].take() else { continue };
        if let Some(next) = refill(&mut srcs[i]) {
            heap.push((next.ts, rank, next.offset, i));
            heads[i] = Some(next);
        }
        if !visit(rank, rec) {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
