//! The `awslogs` log driver, agent side: ships a container's stdout/stderr into berth's
//! CloudWatch-Logs-compatible store.
//!
//! Docker's own `awslogs` driver cannot reach berth, so containers whose `logDriver` is `awslogs`
//! run with `json-file` (see [`crate::spec`]) and the agent runs one [`Shipper`] per container:
//! it follows the container's output through [`ContainerRuntime::logs`], batches lines
//! (flushed after [`ShipperConfig::flush_interval`], or earlier at PutLogEvents' limits:
//! 10,000 events / 1,048,576 bytes counting 26 bytes per event / 24 h span) and sends them with
//! `PutLogEvents` through a [`LogSink`] (the agent's control-plane client, signing name `logs`).
//!
//! # Naming
//! As ECS: with `awslogs-stream-prefix` the stream is `<prefix>/<container-name>/<task-id>`;
//! without it, the stream is the container's runtime (Docker) id, as Docker's driver names it.
//!
//! # Groups and streams
//! Before a container starts, the task actor calls [`prepare`]: `CreateLogGroup` when
//! `awslogs-create-group` is `true` (already-exists ignored), then `CreateLogStream`
//! (already-exists ignored). A missing group fails the container the way ECS does
//! (`CannotStartContainerError: … failed to create Cloudwatch log stream:
//! ResourceNotFoundException: The specified log group does not exist.`). If the control plane is
//! unreachable at that moment the container starts anyway and the shipper creates the stream
//! when its first batch finds it missing.
//!
//! # Delivery
//! Each batch is retried with exponential backoff (200 ms → 30 s) until accepted; meanwhile the
//! shipper does not read further, and Docker keeps the output in the json-file log, so the
//! container never blocks on the shipper. When the container has exited and its output is
//! drained, the shipper ends.
//!
//! # Checkpoint
//! After every accepted batch the shipper writes its cursor to
//! `ECS_DATADIR/awslogs/<container-id>.json`: the engine timestamp of the last shipped line and
//! how many shipped lines carry exactly that timestamp. A restarted agent resumes with
//! `since = timestamp` and skips that many lines at that timestamp, so nothing is lost and
//! nothing is sent twice — except the one batch in flight if the agent dies between the store
//! accepting it and the cursor being written (at most one batch duplicated). The cursor is
//! removed when the task's containers are cleaned up.

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use berth_runtime::{ContainerId, ContainerRuntime, LogLine, LogOptions};
use berth_wire::ecs;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::control::ControlPlaneError;
use crate::Backoff;

/// PutLogEvents: at most this many events per batch…
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// …and this many bytes (UTF-8 messages plus [`EVENT_OVERHEAD`] each).
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// Bytes counted per event on top of its message.
pub const EVENT_OVERHEAD: usize = 26;
/// Largest event: 256 KiB including the overhead. Longer lines are split.
pub const MAX_EVENT_BYTES: usize = 262_144 - EVENT_OVERHEAD;
/// A batch may span at most 24 hours.
pub const MAX_BATCH_SPAN_MS: i64 = 24 * 3_600_000;

/// The `awslogs` options of a container definition that the agent uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsLogsConfig {
    /// `awslogs-group`.
    pub group: String,
    /// `awslogs-region` (informational: berth has one log store).
    pub region: Option<String>,
    /// `awslogs-stream-prefix`.
    pub stream_prefix: Option<String>,
    /// `awslogs-create-group` is `true`.
    pub create_group: bool,
    /// `awslogs-multiline-pattern` or `awslogs-datetime-format`: joins lines into events.
    pub multiline: Option<Multiline>,
    /// `mode: non-blocking`: the output waiting to be shipped is bounded by `max-buffer-size`
    /// (Docker's default 1m), and lines beyond it are lost, as Docker drops them. `None`
    /// (`blocking` or unset): the agent's large on-disk buffer.
    pub non_blocking_buffer: Option<u64>,
}

/// Docker's default `max-buffer-size` for `mode: non-blocking`.
pub const DEFAULT_MAX_BUFFER_SIZE: u64 = 1024 * 1024;

/// A size as Docker reads `max-buffer-size` (`units.RAMInBytes`: `512k`, `1m`, `1MiB`, `2.5 GB`
/// … in binary multiples).
pub fn parse_ram_bytes(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().ok()?;
    let unit = unit.trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return None,
    };
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    Some((value * mult as f64) as u64)
}

/// What starts a new event when lines are joined: `awslogs-multiline-pattern` (a regular
/// expression), or `awslogs-datetime-format` (strftime) turned into one as Docker's driver does.
/// A line it matches (anywhere, as Go's `Regexp.Match`) starts a new event; lines that don't
/// match are appended to the current one, each followed by `\n`.
#[derive(Debug, Clone)]
pub struct Multiline {
    source: String,
    regex: regex::Regex,
}

impl PartialEq for Multiline {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Multiline {}

/// Docker's conversion table for `awslogs-datetime-format`.
const STRFTIME_TO_REGEX: &[(char, &str)] = &[
    ('a', r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"),
    (
        'A',
        r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)",
    ),
    ('w', r"[0-6]"),
    ('d', r"(?:0[1-9]|[1,2][0-9]|3[0,1])"),
    ('b', r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"),
    (
        'B',
        r"(?:January|February|March|April|May|June|July|August|September|October|November|December)",
    ),
    ('m', r"(?:0[1-9]|1[0-2])"),
    ('Y', r"\d{4}"),
    ('y', r"\d{2}"),
    ('H', r"(?:[0,1][0-9]|2[0-3])"),
    ('I', r"(?:0[0-9]|1[0-2])"),
    ('p', r"[A,P]M"),
    ('M', r"[0-5][0-9]"),
    ('S', r"[0-5][0-9]"),
    ('f', r"\d{6}"),
    ('z', r"[+-]\d{4}"),
    ('Z', r"[A-Z]{1,4}T"),
    ('j', r"(?:0[0-9][1-9]|[1,2][0-9][0-9]|3[0-5][0-9]|36[0-6])"),
    ('L', r"\.\d{3}"),
];

impl Multiline {
    /// From `awslogs-multiline-pattern`.
    pub fn pattern(pattern: &str) -> Result<Self, String> {
        let regex = regex::Regex::new(pattern).map_err(|e| {
            format!("awslogs could not parse multiline pattern key {pattern:?}: {e}")
        })?;
        Ok(Self {
            source: pattern.to_string(),
            regex,
        })
    }

    /// From `awslogs-datetime-format`: each `%x` becomes its regular expression (an unknown one
    /// becomes nothing, as in Docker); the rest is taken as a regular expression.
    pub fn datetime_format(format: &str) -> Result<Self, String> {
        let mut out = String::new();
        let mut chars = format.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some(k) => {
                    if let Some((_, re)) = STRFTIME_TO_REGEX.iter().find(|(x, _)| *x == k) {
                        out.push_str(re);
                    }
                }
                None => out.push('%'),
            }
        }
        Self::pattern(&out)
    }

    /// Whether `line` starts a new event.
    pub fn starts_event(&self, line: &str) -> bool {
        self.regex.is_match(line)
    }
}

impl AwsLogsConfig {
    /// The config of an `awslogs` log configuration (`None` for other drivers or without
    /// `awslogs-group`).
    ///
    /// Err is the engine's complaint about the options (both multi-line options, or a pattern
    /// that is not a regular expression), as Docker refuses such a container.
    pub fn from_log_configuration(lc: &ecs::LogConfiguration) -> Result<Option<Self>, String> {
        if lc.log_driver.as_ref().map(|d| d.as_str()) != Some("awslogs") {
            return Ok(None);
        }
        let Some(options) = lc.options.as_ref() else {
            return Ok(None);
        };
        let Some(group) = options.get("awslogs-group").map(|g| g.trim().to_string()) else {
            return Ok(None);
        };
        if group.is_empty() {
            return Ok(None);
        }
        let datetime = options
            .get("awslogs-datetime-format")
            .filter(|v| !v.is_empty());
        let pattern = options
            .get("awslogs-multiline-pattern")
            .filter(|v| !v.is_empty());
        let mode = options.get("mode").map(String::as_str).unwrap_or("");
        if !matches!(mode, "" | "blocking" | "non-blocking") {
            return Err(format!("logger: logging mode not supported: {mode}"));
        }
        let non_blocking_buffer = match options.get("max-buffer-size") {
            Some(_) if mode != "non-blocking" => {
                return Err(
                    "logger: max-buffer-size option is only supported with 'mode=non-blocking'"
                        .into(),
                )
            }
            Some(v) => Some(parse_ram_bytes(v).ok_or_else(|| {
                format!("error parsing option max-buffer-size: invalid size: '{v}'")
            })?),
            None if mode == "non-blocking" => Some(DEFAULT_MAX_BUFFER_SIZE),
            None => None,
        };
        let multiline = match (datetime, pattern) {
            (Some(_), Some(_)) => {
                return Err("you cannot configure log opt 'awslogs-datetime-format' and 'awslogs-multiline-pattern' at the same time".into())
            }
            (Some(f), None) => Some(Multiline::datetime_format(f)?),
            (None, Some(p)) => Some(Multiline::pattern(p)?),
            (None, None) => None,
        };
        Ok(Some(Self {
            group,
            region: options.get("awslogs-region").cloned(),
            stream_prefix: options
                .get("awslogs-stream-prefix")
                .filter(|p| !p.is_empty())
                .cloned(),
            create_group: options
                .get("awslogs-create-group")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            multiline,
            non_blocking_buffer,
        }))
    }

    /// The stream of one container: `<prefix>/<container-name>/<task-id>`, or the runtime id
    /// without a prefix.
    pub fn stream_name(&self, container_name: &str, task_id: &str, runtime_id: &str) -> String {
        match &self.stream_prefix {
            Some(p) => format!("{p}/{container_name}/{task_id}"),
            None => runtime_id.to_string(),
        }
    }
}

/// One event of a `PutLogEvents` batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// The line.
    pub message: String,
}

/// Where log events go: the CloudWatch Logs calls the driver needs.
#[async_trait]
pub trait LogSink: Debug + Send + Sync + 'static {
    /// `CreateLogGroup`.
    async fn create_log_group(&self, group: &str) -> Result<(), ControlPlaneError>;
    /// `CreateLogStream`.
    async fn create_log_stream(&self, group: &str, stream: &str) -> Result<(), ControlPlaneError>;
    /// `PutLogEvents` (events in chronological order).
    async fn put_log_events(
        &self,
        group: &str,
        stream: &str,
        events: &[LogEvent],
    ) -> Result<(), ControlPlaneError>;
}

fn is_code(e: &ControlPlaneError, code: &str) -> bool {
    matches!(e, ControlPlaneError::Rejected { code: c, .. } if c == code)
}

/// Whether `e` says the group or stream does not exist.
pub fn is_not_found(e: &ControlPlaneError) -> bool {
    is_code(e, "ResourceNotFoundException")
}

/// Creates the group (when `awslogs-create-group` is true) and the stream, ignoring
/// `ResourceAlreadyExistsException`. A missing group surfaces as `ResourceNotFoundException`.
pub async fn prepare(
    sink: &dyn LogSink,
    config: &AwsLogsConfig,
    stream: &str,
) -> Result<(), ControlPlaneError> {
    if config.create_group {
        match sink.create_log_group(&config.group).await {
            Ok(()) => {}
            Err(e) if is_code(&e, "ResourceAlreadyExistsException") => {}
            Err(e) => return Err(e),
        }
    }
    match sink.create_log_stream(&config.group, stream).await {
        Ok(()) => Ok(()),
        Err(e) if is_code(&e, "ResourceAlreadyExistsException") => Ok(()),
        Err(e) => Err(e),
    }
}

/// The ECS stopped reason for a container whose log stream could not be created.
pub fn start_failure_reason(e: &ControlPlaneError) -> String {
    format!(
        "CannotStartContainerError: Error response from daemon: failed to initialize logging driver: failed to create Cloudwatch log stream: {e}"
    )
}

/// Tuning of a [`Shipper`].
#[derive(Debug, Clone)]
pub struct ShipperConfig {
    /// Longest time a line waits in the batch.
    pub flush_interval: Duration,
    /// Events per batch.
    pub max_events: usize,
    /// Bytes per batch (with [`EVENT_OVERHEAD`] per event).
    pub max_bytes: usize,
    /// Retry backoff bounds.
    pub backoff_min: Duration,
    /// Retry backoff bounds.
    pub backoff_max: Duration,
    /// With multi-line joining: how long an event waits for more lines after its first one
    /// (Docker's driver: its 5 s publish interval).
    pub multiline_wait: Duration,
}

impl Default for ShipperConfig {
    fn default() -> Self {
        Self {
            flush_interval: Duration::from_millis(500),
            max_events: MAX_BATCH_EVENTS,
            max_bytes: MAX_BATCH_BYTES,
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            multiline_wait: Duration::from_secs(5),
        }
    }
}

/// A position in a container's output: the engine timestamp of the last line and how many
/// lines (read so far) carry exactly that timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Seconds since the epoch.
    pub secs: u64,
    /// Nanoseconds within the second.
    pub nanos: u32,
    /// Lines with exactly this timestamp already consumed.
    pub count: u64,
}

impl Cursor {
    fn time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::new(self.secs, self.nanos)
    }

    fn advance(pos: Option<Cursor>, ts: SystemTime) -> Cursor {
        let d = ts.duration_since(UNIX_EPOCH).unwrap_or_default();
        let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
        match pos {
            Some(p) if p.secs == secs && p.nanos == nanos => Cursor {
                count: p.count + 1,
                ..p
            },
            _ => Cursor {
                secs,
                nanos,
                count: 1,
            },
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct CursorFile {
    group: String,
    stream: String,
    cursor: Cursor,
}

/// The checkpoint file of a container.
pub fn cursor_path(data_dir: &Path, id: &ContainerId) -> PathBuf {
    data_dir
        .join("awslogs")
        .join(format!("{}.json", id.as_str()))
}

/// Reads a container's checkpoint (`None` when absent or unreadable).
pub fn load_cursor(path: &Path) -> Option<Cursor> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice::<CursorFile>(&bytes) {
        Ok(f) => Some(f.cursor),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "unreadable awslogs cursor; shipping from the start");
            None
        }
    }
}

fn save_cursor(path: &Path, group: &str, stream: &str, cursor: Cursor) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec(&CursorFile {
        group: group.to_string(),
        stream: stream.to_string(),
        cursor,
    })
    .map_err(std::io::Error::other)?;
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, path)
}

/// Removes a container's checkpoint.
pub fn remove_cursor(path: &Path) {
    let _ = std::fs::remove_file(path);
}

fn epoch_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Splits `s` into pieces of at most `max` bytes on char boundaries.
fn split_message(s: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

#[derive(Default)]
struct Batch {
    events: Vec<LogEvent>,
    bytes: usize,
    /// Read position after the last event.
    end: Option<Cursor>,
    deadline: Option<tokio::time::Instant>,
}

impl Batch {
    fn fits(&self, msg_len: usize, ts: i64, cfg: &ShipperConfig) -> bool {
        self.events.len() < cfg.max_events
            && self.bytes + msg_len + EVENT_OVERHEAD <= cfg.max_bytes
            && self
                .events
                .first()
                .is_none_or(|f| ts - f.timestamp <= MAX_BATCH_SPAN_MS)
    }
}

/// A multi-line event being joined.
struct Pending {
    timestamp: i64,
    message: String,
    /// Read position after its last line.
    end: Option<Cursor>,
    /// When it is sent even if no new event starts.
    deadline: tokio::time::Instant,
}

/// Follows one container's output into its log stream. Build with [`Shipper::new`], run with
/// [`Shipper::run`] (ends when the container has exited and everything is shipped, or is gone).
pub struct Shipper<R: ContainerRuntime> {
    runtime: Arc<R>,
    sink: Arc<dyn LogSink>,
    id: ContainerId,
    config: AwsLogsConfig,
    stream: String,
    cursor_path: PathBuf,
    tuning: ShipperConfig,
    /// Position of the last line read from the engine.
    read: Option<Cursor>,
    /// Timestamp of the last event put in a batch (keeps events chronological).
    last_ms: i64,
    /// The batch being delivered while the next one fills.
    inflight: Option<Delivery>,
    /// The multi-line event being joined.
    pending: Option<Pending>,
}

impl<R: ContainerRuntime> Shipper<R> {
    /// A shipper for container `id` into `config.group` / `stream`, checkpointing in
    /// `data_dir`.
    pub fn new(
        runtime: Arc<R>,
        sink: Arc<dyn LogSink>,
        id: ContainerId,
        config: AwsLogsConfig,
        stream: String,
        data_dir: &Path,
        tuning: ShipperConfig,
    ) -> Self {
        let cursor_path = cursor_path(data_dir, &id);
        Self {
            runtime,
            sink,
            id,
            config,
            stream,
            cursor_path,
            tuning,
            read: None,
            last_ms: 0,
            inflight: None,
            pending: None,
        }
    }

    /// Ships until the container has exited and its output is drained.
    pub async fn run(mut self) {
        self.read = load_cursor(&self.cursor_path);
        if let Some(c) = self.read {
            self.last_ms = epoch_ms(c.time());
            tracing::info!(container = %self.id.short(), stream = %self.stream, "resuming awslogs shipping from the checkpoint");
        }
        let mut batch = Batch::default();
        let mut reconnect = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        // After the container is seen exited, one last pass drains what is left.
        let mut last_pass = false;
        loop {
            let resume = self.read;
            let mut seen_at_resume: u64 = 0;
            let mut logs = self.runtime.logs(
                &self.id,
                LogOptions {
                    follow: true,
                    since: resume.map(|c| c.time()),
                    tail: None,
                    stdout: true,
                    stderr: true,
                },
            );
            let mut gone = false;
            loop {
                let wake = match (batch.deadline, self.pending.as_ref().map(|p| p.deadline)) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let inflight = self.inflight.as_mut();
                let delivering = inflight.is_some();
                let next = tokio::select! {
                    n = logs.next() => n,
                    // (The far-off instant is only a placeholder: the branch is off without a
                    // wake-up.)
                    _ = tokio::time::sleep_until(wake.unwrap_or_else(|| {
                        tokio::time::Instant::now() + Duration::from_secs(86_400)
                    })), if wake.is_some() => {
                        let now = tokio::time::Instant::now();
                        if self.pending.as_ref().is_some_and(|p| p.deadline <= now) {
                            self.emit_pending(&mut batch).await;
                        }
                        if batch.deadline.is_some_and(|d| d <= now) {
                            self.flush(&mut batch).await;
                        }
                        continue;
                    }
                    _ = async { if let Some(d) = inflight { d.await } }, if delivering => {
                        self.inflight = None;
                        continue;
                    }
                };
                let line = match next {
                    Some(Ok(line)) => line,
                    Some(Err(e)) if e.is_not_found() => {
                        gone = true;
                        break;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(container = %self.id.short(), error = %e, "reading container logs failed; reconnecting");
                        break;
                    }
                    None => break,
                };
                reconnect.reset();
                // Skip what was already read before this (re)connection.
                if let (Some(r), Some(ts)) = (resume, line.timestamp) {
                    if ts < r.time() {
                        continue;
                    }
                    if ts == r.time() && seen_at_resume < r.count {
                        seen_at_resume += 1;
                        continue;
                    }
                }
                self.push(&mut batch, line).await;
            }
            drop(logs);
            if gone || last_pass {
                break;
            }
            self.flush(&mut batch).await;
            match self.runtime.inspect_container(&self.id).await {
                Ok(info) if info.state.status.is_terminal() => last_pass = true,
                Err(e) if e.is_not_found() => break,
                _ => {
                    // Keep the batch in flight moving while waiting to reconnect.
                    let pause = tokio::time::sleep(reconnect.delay());
                    match self.inflight.as_mut() {
                        Some(d) => tokio::select! {
                            _ = d => self.inflight = None,
                            _ = pause => {}
                        },
                        None => pause.await,
                    }
                }
            }
        }
        // The output is over: the last multi-line event is complete.
        self.emit_pending(&mut batch).await;
        self.flush(&mut batch).await;
        self.settle().await;
        tracing::debug!(container = %self.id.short(), stream = %self.stream, "awslogs shipper done");
    }

    async fn push(&mut self, batch: &mut Batch, line: LogLine) {
        let ts = match line.timestamp {
            Some(t) => {
                self.read = Some(Cursor::advance(self.read, t));
                epoch_ms(t)
            }
            None => epoch_ms(SystemTime::now()),
        };
        let Some(multiline) = &self.config.multiline else {
            self.add_event(batch, ts, &line.line).await;
            // Empty lines carry no event (CloudWatch rejects empty messages) but move the cursor.
            if !batch.events.is_empty() {
                batch.end = self.read;
            }
            return;
        };
        // Multi-line: a matching line starts a new event, others join the current one (also
        // cut when it would outgrow one event), as Docker's driver does.
        let starts = multiline.starts_event(&line.line);
        let too_big = self
            .pending
            .as_ref()
            .is_some_and(|p| p.message.len() + line.line.len() + 1 > MAX_EVENT_BYTES);
        if starts || too_big {
            self.emit_pending(batch).await;
        }
        let wait = self.tuning.multiline_wait;
        let p = self.pending.get_or_insert_with(|| Pending {
            timestamp: ts,
            message: String::new(),
            end: None,
            deadline: tokio::time::Instant::now() + wait,
        });
        p.message.push_str(&line.line);
        p.message.push('\n');
        p.end = self.read;
    }

    /// Moves the multi-line event being joined into the batch.
    async fn emit_pending(&mut self, batch: &mut Batch) {
        let Some(p) = self.pending.take() else {
            return;
        };
        self.add_event(batch, p.timestamp, &p.message).await;
        if !batch.events.is_empty() {
            batch.end = p.end;
        }
    }

    /// Adds one event (split when longer than an event may be) to the batch, flushing first
    /// when it does not fit.
    async fn add_event(&mut self, batch: &mut Batch, ts: i64, message: &str) {
        // CloudWatch wants chronological events; the engine's clock may step back.
        let ts = ts.max(self.last_ms);
        for piece in split_message(message, MAX_EVENT_BYTES) {
            if !batch.fits(piece.len(), ts, &self.tuning) {
                self.flush(batch).await;
            }
            batch.bytes += piece.len() + EVENT_OVERHEAD;
            batch.events.push(LogEvent {
                timestamp: ts,
                message: piece.to_string(),
            });
            self.last_ms = ts;
            if batch.deadline.is_none() {
                batch.deadline = Some(tokio::time::Instant::now() + self.tuning.flush_interval);
            }
        }
    }

    /// Hands the batch to delivery. At most one batch is in flight: this waits for the previous
    /// one first (order, and backpressure on reading), then starts this one, which the read loop
    /// drives while it reads the next lines.
    async fn flush(&mut self, batch: &mut Batch) {
        batch.deadline = None;
        if batch.events.is_empty() {
            return;
        }
        self.settle().await;
        let events = std::mem::take(&mut batch.events);
        let end = batch.end.take();
        batch.bytes = 0;
        self.inflight = Some(Box::pin(deliver(
            self.sink.clone(),
            self.config.clone(),
            self.stream.clone(),
            events,
            end,
            self.cursor_path.clone(),
            Backoff::new(self.tuning.backoff_min, self.tuning.backoff_max),
        )));
    }

    /// Waits until the batch in flight (if any) is delivered and checkpointed.
    async fn settle(&mut self) {
        if let Some(d) = self.inflight.take() {
            d.await;
        }
    }
}

/// A batch on its way: sent with retries until accepted (or refused for good), then checkpointed.
type Delivery = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

async fn deliver(
    sink: Arc<dyn LogSink>,
    config: AwsLogsConfig,
    stream: String,
    events: Vec<LogEvent>,
    end: Option<Cursor>,
    cursor_path: PathBuf,
    mut backoff: Backoff,
) {
    let mut warned_missing = false;
    loop {
        let err = match sink.put_log_events(&config.group, &stream, &events).await {
            Ok(()) => break,
            Err(e) => e,
        };
        if is_not_found(&err) {
            match prepare(&*sink, &config, &stream).await {
                Ok(()) => continue,
                Err(e) if is_not_found(&e) => {
                    if !warned_missing {
                        tracing::warn!(group = %config.group, stream = %stream, "awslogs: the log group does not exist and awslogs-create-group is not true; holding the container's logs until it is created");
                        warned_missing = true;
                    }
                }
                Err(e) => {
                    tracing::warn!(group = %config.group, stream = %stream, error = %e, "awslogs: creating the log stream failed; retrying");
                }
            }
        } else if err.is_retryable()
            || matches!(&err, ControlPlaneError::Rejected { code, .. } if code == "ServiceUnavailableException" || code == "OperationAbortedException")
        {
            tracing::debug!(stream = %stream, error = %err, "PutLogEvents failed; retrying");
        } else {
            // The store refuses this batch for good (bad input): drop it, keep going.
            tracing::warn!(group = %config.group, stream = %stream, events = events.len(), error = %err, "PutLogEvents rejected a batch; dropping it");
            break;
        }
        tokio::time::sleep(backoff.delay()).await;
    }
    if let Some(end) = end {
        if let Err(e) = save_cursor(&cursor_path, &config.group, &stream, end) {
            tracing::warn!(path = %cursor_path.display(), error = %e, "cannot write the awslogs cursor");
        }
    }
}

#[derive(Debug, Default)]
struct FakeLogsState {
    /// group → stream → events.
    groups: std::collections::BTreeMap<String, std::collections::BTreeMap<String, Vec<LogEvent>>>,
    /// Sizes of the accepted PutLogEvents batches, in order.
    batches: Vec<usize>,
    /// Calls made, as `Op group[/stream]`.
    calls: Vec<String>,
    /// Fail this many upcoming calls as unreachable.
    fail_next: usize,
}

/// An in-memory [`LogSink`] with CloudWatch's errors (missing group or stream, already exists).
#[derive(Debug, Clone, Default)]
pub struct FakeLogs {
    state: Arc<Mutex<FakeLogsState>>,
}

impl FakeLogs {
    fn lock(&self) -> std::sync::MutexGuard<'_, FakeLogsState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a group directly.
    pub fn add_group(&self, group: &str) {
        self.lock().groups.entry(group.into()).or_default();
    }

    /// Whether the group exists.
    pub fn has_group(&self, group: &str) -> bool {
        self.lock().groups.contains_key(group)
    }

    /// The events of a stream (`None` if the stream does not exist).
    pub fn events(&self, group: &str, stream: &str) -> Option<Vec<LogEvent>> {
        self.lock().groups.get(group)?.get(stream).cloned()
    }

    /// The messages of a stream (empty if it does not exist).
    pub fn messages(&self, group: &str, stream: &str) -> Vec<String> {
        self.events(group, stream)
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.message)
            .collect()
    }

    /// Stream names of a group.
    pub fn streams(&self, group: &str) -> Vec<String> {
        self.lock()
            .groups
            .get(group)
            .map(|g| g.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Sizes of the accepted batches.
    pub fn batches(&self) -> Vec<usize> {
        self.lock().batches.clone()
    }

    /// Calls made.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Makes the next `n` calls fail as unreachable.
    pub fn fail_next(&self, n: usize) {
        self.lock().fail_next = n;
    }

    fn check(s: &mut FakeLogsState) -> Result<(), ControlPlaneError> {
        if s.fail_next > 0 {
            s.fail_next -= 1;
            return Err(ControlPlaneError::Unreachable("fake logs down".into()));
        }
        Ok(())
    }
}

fn rejected(code: &str, message: &str) -> ControlPlaneError {
    ControlPlaneError::Rejected {
        status: 400,
        code: code.into(),
        message: message.into(),
    }
}

#[async_trait]
impl LogSink for FakeLogs {
    async fn create_log_group(&self, group: &str) -> Result<(), ControlPlaneError> {
        let mut s = self.lock();
        s.calls.push(format!("CreateLogGroup {group}"));
        Self::check(&mut s)?;
        if s.groups.contains_key(group) {
            return Err(rejected(
                "ResourceAlreadyExistsException",
                "The specified log group already exists",
            ));
        }
        s.groups.insert(group.into(), Default::default());
        Ok(())
    }

    async fn create_log_stream(&self, group: &str, stream: &str) -> Result<(), ControlPlaneError> {
        let mut s = self.lock();
        s.calls.push(format!("CreateLogStream {group}/{stream}"));
        Self::check(&mut s)?;
        let Some(g) = s.groups.get_mut(group) else {
            return Err(rejected(
                "ResourceNotFoundException",
                "The specified log group does not exist.",
            ));
        };
        if g.contains_key(stream) {
            return Err(rejected(
                "ResourceAlreadyExistsException",
                "The specified log stream already exists",
            ));
        }
        g.insert(stream.into(), Vec::new());
        Ok(())
    }

    async fn put_log_events(
        &self,
        group: &str,
        stream: &str,
        events: &[LogEvent],
    ) -> Result<(), ControlPlaneError> {
        let mut s = self.lock();
        s.calls.push(format!("PutLogEvents {group}/{stream}"));
        Self::check(&mut s)?;
        if events.is_empty() || events.len() > MAX_BATCH_EVENTS {
            return Err(rejected("InvalidParameterException", "bad batch size"));
        }
        let bytes: usize = events
            .iter()
            .map(|e| e.message.len() + EVENT_OVERHEAD)
            .sum();
        if bytes > MAX_BATCH_BYTES {
            return Err(rejected("InvalidParameterException", "Upload too large"));
        }
        if events.windows(2).any(|p| p[1].timestamp < p[0].timestamp)
            || events.iter().any(|e| e.message.is_empty())
        {
            return Err(rejected(
                "InvalidParameterException",
                "out of order or empty",
            ));
        }
        let Some(g) = s.groups.get_mut(group) else {
            return Err(rejected(
                "ResourceNotFoundException",
                "The specified log group does not exist.",
            ));
        };
        let Some(st) = g.get_mut(stream) else {
            return Err(rejected(
                "ResourceNotFoundException",
                "The specified log stream does not exist.",
            ));
        };
        st.extend_from_slice(events);
        s.batches.push(events.len());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_runtime::{ContainerSpec, FakeConfig, FakeRuntime, LogSource};

    fn cfg(create: bool) -> AwsLogsConfig {
        AwsLogsConfig {
            group: "/ecs/web".into(),
            region: Some("us-east-1".into()),
            stream_prefix: Some("ecs".into()),
            create_group: create,
            multiline: None,
            non_blocking_buffer: None,
        }
    }

    async fn container(rt: &FakeRuntime) -> ContainerId {
        rt.add_image("busybox");
        let id = rt
            .create_container(&ContainerSpec {
                name: "c1".into(),
                image: "busybox".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        rt.start_container(&id).await.unwrap();
        id
    }

    fn shipper(
        rt: &FakeRuntime,
        logs: &FakeLogs,
        id: &ContainerId,
        config: AwsLogsConfig,
        dir: &Path,
    ) -> Shipper<FakeRuntime> {
        Shipper::new(
            Arc::new(rt.clone()),
            Arc::new(logs.clone()),
            id.clone(),
            config,
            "ecs/app/tid".into(),
            dir,
            ShipperConfig {
                backoff_max: Duration::from_secs(1),
                ..ShipperConfig::default()
            },
        )
    }

    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    #[test]
    fn config_and_stream_names() {
        let lc: ecs::LogConfiguration = serde_json::from_value(serde_json::json!({
            "logDriver": "awslogs",
            "options": {"awslogs-group": "/ecs/web", "awslogs-region": "us-east-1",
                        "awslogs-stream-prefix": "ecs", "awslogs-create-group": "true"}
        }))
        .unwrap();
        let c = AwsLogsConfig::from_log_configuration(&lc).unwrap().unwrap();
        assert_eq!(c, cfg(true));
        assert_eq!(c.stream_name("web", "abc", "dead"), "ecs/web/abc");
        let lc: ecs::LogConfiguration = serde_json::from_value(serde_json::json!({
            "logDriver": "awslogs", "options": {"awslogs-group": "g"}
        }))
        .unwrap();
        let c = AwsLogsConfig::from_log_configuration(&lc).unwrap().unwrap();
        assert!(!c.create_group);
        assert_eq!(c.stream_name("web", "abc", "dead"), "dead");
        let lc: ecs::LogConfiguration =
            serde_json::from_value(serde_json::json!({"logDriver": "json-file"})).unwrap();
        assert!(AwsLogsConfig::from_log_configuration(&lc)
            .unwrap()
            .is_none());
    }

    #[test]
    fn long_lines_split_on_char_boundaries() {
        let s = "é".repeat(10);
        let parts = split_message(&s, 5);
        assert!(parts.iter().all(|p| p.len() <= 5));
        assert_eq!(parts.concat(), s);
        assert!(split_message("", 5).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn prepare_creates_group_and_stream_idempotently() {
        let logs = FakeLogs::default();
        prepare(&logs, &cfg(true), "ecs/app/t").await.unwrap();
        prepare(&logs, &cfg(true), "ecs/app/t").await.unwrap();
        assert_eq!(logs.streams("/ecs/web"), vec!["ecs/app/t"]);
        // Without create-group a missing group is ResourceNotFoundException.
        let e = prepare(
            &logs,
            &AwsLogsConfig {
                group: "/nope".into(),
                ..cfg(false)
            },
            "s",
        )
        .await
        .unwrap_err();
        assert!(is_not_found(&e));
        assert!(!logs.has_group("/nope"));
        assert_eq!(
            start_failure_reason(&e),
            "CannotStartContainerError: Error response from daemon: failed to initialize logging driver: failed to create Cloudwatch log stream: ResourceNotFoundException: The specified log group does not exist."
        );
    }

    #[tokio::test(start_paused = true)]
    async fn ships_in_order_creating_group_and_stream_then_ends_after_exit() {
        let rt = FakeRuntime::new(FakeConfig::default());
        let logs = FakeLogs::default();
        let dir = tempfile::tempdir().unwrap();
        let id = container(&rt).await;
        rt.emit_log(&id, LogSource::Stdout, "before").unwrap();
        let join = tokio::spawn(shipper(&rt, &logs, &id, cfg(true), dir.path()).run());
        settle().await;
        for i in 0..20 {
            let src = if i % 2 == 0 {
                LogSource::Stdout
            } else {
                LogSource::Stderr
            };
            rt.emit_log(&id, src, format!("line {i}")).unwrap();
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        rt.emit_log(&id, LogSource::Stdout, "").unwrap(); // empty: no event
                                                          // Within a second everything is there, in order.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut want = vec!["before".to_string()];
        want.extend((0..20).map(|i| format!("line {i}")));
        assert_eq!(logs.messages("/ecs/web", "ecs/app/tid"), want);
        let calls = logs.calls();
        assert_eq!(calls[0], "PutLogEvents /ecs/web/ecs/app/tid");
        assert!(calls.contains(&"CreateLogGroup /ecs/web".to_string()));
        assert!(calls.contains(&"CreateLogStream /ecs/web/ecs/app/tid".to_string()));
        let ev = logs.events("/ecs/web", "ecs/app/tid").unwrap();
        assert!(ev.windows(2).all(|p| p[0].timestamp <= p[1].timestamp));
        // Lines written just before the exit are drained, then the shipper ends.
        rt.emit_log(&id, LogSource::Stdout, "last words").unwrap();
        rt.exit(&id, 0).unwrap();
        tokio::time::timeout(Duration::from_secs(5), join)
            .await
            .expect("shipper ended")
            .unwrap();
        assert_eq!(
            logs.messages("/ecs/web", "ecs/app/tid").last().unwrap(),
            "last words"
        );
        // The cursor is on disk.
        assert!(load_cursor(&cursor_path(dir.path(), &id)).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn batches_respect_limits() {
        let rt = FakeRuntime::new(FakeConfig::default());
        let logs = FakeLogs::default();
        logs.add_group("/ecs/web");
        let dir = tempfile::tempdir().unwrap();
        let id = container(&rt).await;
        // 25,000 short lines (same instant) → batches of at most 10,000 events.
        for i in 0..25_000 {
            rt.emit_log(&id, LogSource::Stdout, format!("{i}")).unwrap();
        }
        // Five lines of 300 KiB: split into 256 KiB events, ≤ 1 MiB per batch.
        for _ in 0..5 {
            rt.emit_log(&id, LogSource::Stdout, "x".repeat(300 * 1024))
                .unwrap();
        }
        rt.exit(&id, 0).unwrap();
        shipper(&rt, &logs, &id, cfg(false), dir.path()).run().await;
        let batches = logs.batches();
        assert!(
            batches.iter().all(|n| *n <= MAX_BATCH_EVENTS),
            "{batches:?}"
        );
        // 25,000 lines need 3 batches; 10 big events (~1.5 MiB) need at least one more. The
        // fake refuses batches over 1 MiB (a refused batch would be missing below).
        assert!(batches.len() >= 4, "{batches:?}");
        let msgs = logs.messages("/ecs/web", "ecs/app/tid");
        assert_eq!(msgs.len(), 25_000 + 10);
        assert!(msgs[..25_000]
            .iter()
            .enumerate()
            .all(|(i, m)| *m == i.to_string()));
        assert_eq!(msgs[25_000].len(), MAX_EVENT_BYTES);
        assert_eq!(msgs[25_001].len(), 300 * 1024 - MAX_EVENT_BYTES);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_the_store_is_back() {
        let rt = FakeRuntime::new(FakeConfig::default());
        let logs = FakeLogs::default();
        logs.add_group("/ecs/web");
        let dir = tempfile::tempdir().unwrap();
        let id = container(&rt).await;
        logs.fail_next(5);
        rt.emit_log(&id, LogSource::Stdout, "a").unwrap();
        rt.emit_log(&id, LogSource::Stdout, "b").unwrap();
        rt.exit(&id, 0).unwrap();
        shipper(&rt, &logs, &id, cfg(false), dir.path()).run().await;
        assert_eq!(logs.messages("/ecs/web", "ecs/app/tid"), vec!["a", "b"]);
    }

    #[tokio::test(start_paused = true)]
    async fn missing_group_without_create_holds_logs_until_created() {
        let rt = FakeRuntime::new(FakeConfig::default());
        let logs = FakeLogs::default();
        let dir = tempfile::tempdir().unwrap();
        let id = container(&rt).await;
        rt.emit_log(&id, LogSource::Stdout, "kept").unwrap();
        let join = tokio::spawn(shipper(&rt, &logs, &id, cfg(false), dir.path()).run());
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!logs.has_group("/ecs/web"));
        logs.add_group("/ecs/web");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(logs.messages("/ecs/web", "ecs/app/tid"), vec!["kept"]);
        rt.exit(&id, 0).unwrap();
        tokio::time::timeout(Duration::from_secs(5), join)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn resumes_from_the_cursor_without_duplicates() {
        let rt = FakeRuntime::new(FakeConfig::default());
        let logs = FakeLogs::default();
        logs.add_group("/ecs/web");
        let dir = tempfile::tempdir().unwrap();
        let id = container(&rt).await;
        let first = tokio::spawn(shipper(&rt, &logs, &id, cfg(false), dir.path()).run());
        settle().await;
        // Several lines share one timestamp (the clock does not move between them).
        for i in 0..5 {
            rt.emit_log(&id, LogSource::Stdout, format!("a{i}"))
                .unwrap();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        for i in 5..8 {
            rt.emit_log(&id, LogSource::Stdout, format!("a{i}"))
                .unwrap();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        // Same-instant lines, then the agent "dies" before flushing the next ones.
        let cursor = load_cursor(&cursor_path(dir.path(), &id)).unwrap();
        assert_eq!(cursor.count, 3);
        first.abort();
        let _ = first.await;
        for i in 8..12 {
            rt.emit_log(&id, LogSource::Stdout, format!("a{i}"))
                .unwrap();
        }
        tokio::time::advance(Duration::from_millis(5)).await;
        rt.emit_log(&id, LogSource::Stdout, "a12").unwrap();
        // A new agent resumes: nothing lost, nothing twice.
        let second = tokio::spawn(shipper(&rt, &logs, &id, cfg(false), dir.path()).run());
        tokio::time::sleep(Duration::from_secs(1)).await;
        rt.exit(&id, 0).unwrap();
        tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .unwrap()
            .unwrap();
        let want: Vec<String> = (0..13).map(|i| format!("a{i}")).collect();
        assert_eq!(logs.messages("/ecs/web", "ecs/app/tid"), want);
    }

    fn multiline_cfg(pattern: &str) -> AwsLogsConfig {
        AwsLogsConfig {
            multiline: Some(Multiline::pattern(pattern).unwrap()),
            ..cfg(false)
        }
    }

    #[test]
    fn multiline_options_as_docker_reads_them() {
        let m = Multiline::datetime_format(r"\[%b %d, %Y %H:%M:%S\]").unwrap();
        assert!(m.starts_event("[Nov 23, 2026 01:02:03] boom"));
        assert!(m.starts_event("prefix [Jan 01, 1999 23:59:59] matched anywhere"));
        assert!(!m.starts_event("    at com.example.Main(Main.java:3)"));
        assert!(!m.starts_event("[Nov 32, 2026 01:02:03] not a day"));
        let iso = Multiline::datetime_format("%Y-%m-%dT%H:%M:%S%L%z").unwrap();
        assert!(iso.starts_event("2026-11-23T01:02:03.456+0000 started"));
        assert!(!iso.starts_event("2026-11-23 01:02:03 no T"));
        // Unknown sequences vanish, as in Docker's table lookup.
        assert!(Multiline::datetime_format("%Q%Y")
            .unwrap()
            .starts_event("2026"));
        let lc = |opts: serde_json::Value| -> ecs::LogConfiguration {
            serde_json::from_value(serde_json::json!({"logDriver": "awslogs", "options": opts}))
                .unwrap()
        };
        let both = lc(
            serde_json::json!({"awslogs-group": "g", "awslogs-datetime-format": "%Y",
                                         "awslogs-multiline-pattern": "^x"}),
        );
        assert_eq!(
            AwsLogsConfig::from_log_configuration(&both).unwrap_err(),
            "you cannot configure log opt 'awslogs-datetime-format' and 'awslogs-multiline-pattern' at the same time"
        );
        let bad =
            lc(serde_json::json!({"awslogs-group": "g", "awslogs-multiline-pattern": "(unclosed"}));
        let e = AwsLogsConfig::from_log_configuration(&bad).unwrap_err();
        assert!(
            e.starts_with("awslogs could not parse multiline pattern key \"(unclosed\""),
            "{e}"
        );
        let mode = |opts: serde_json::Value| AwsLogsConfig::from_log_configuration(&lc(opts));
        assert_eq!(
            mode(serde_json::json!({"awslogs-group": "g", "mode": "fast"})).unwrap_err(),
            "logger: logging mode not supported: fast"
        );
        assert_eq!(
            mode(serde_json::json!({"awslogs-group": "g", "max-buffer-size": "4m"})).unwrap_err(),
            "logger: max-buffer-size option is only supported with 'mode=non-blocking'"
        );
        assert!(mode(
            serde_json::json!({"awslogs-group": "g", "mode": "non-blocking",
                                         "max-buffer-size": "lots"})
        )
        .unwrap_err()
        .starts_with("error parsing option max-buffer-size"));
        let nb = |opts| mode(opts).unwrap().unwrap().non_blocking_buffer;
        assert_eq!(
            nb(
                serde_json::json!({"awslogs-group": "g", "mode": "non-blocking", "max-buffer-size": "4m"})
            ),
            Some(4 << 20)
        );
        assert_eq!(
            nb(serde_json::json!({"awslogs-group": "g", "mode": "non-blocking"})),
            Some(DEFAULT_MAX_BUFFER_SIZE)
        );
        assert_eq!(
            nb(serde_json::json!({"awslogs-group": "g", "mode": "blocking"})),
            None
        );
        assert_eq!(parse_ram_bytes("512k"), Some(512 << 10));
        assert_eq!(parse_ram_bytes("1.5 MiB"), Some(3 << 19));
        assert_eq!(parse_ram_bytes("100"), Some(100));
        assert_eq!(parse_ram_bytes("1x"), None);
        let ok =
            lc(serde_json::json!({"awslogs-group": "g", "awslogs-multiline-pattern": "^INFO"}));
        let c = AwsLogsConfig::from_log_configuration(&ok).unwrap().unwrap();
        assert_eq!(c.multiline, Some(Multiline::pattern("^INFO").unwrap()));
    }

    #[tokio::test(start_paused = true)]
    async fn multiline_pattern_joins_lines_into_events() {
        let rt = FakeRuntime::new(FakeConfig::default());
        let logs = FakeLogs::default();
        logs.add_group("/ecs/web");
        let dir = tempfile::tempdir().unwrap();
        let id = container(&rt).await;
        for l in [
            "preamble", "INFO a", "ERROR b", "  at x()", "", "  at y()", "INFO c",
        ] {
            rt.emit_log(&id, LogSource::Stdout, l).unwrap();
        }
        rt.exit(&id, 0).unwrap();
        shipper(&rt, &logs, &id, multiline_cfg("^(INFO|ERROR)"), dir.path())
            .run()
            .await;
        assert_eq!(
            logs.messages("/ecs/web", "ecs/app/tid"),
            vec![
                "preamble\n",
                "INFO a\n",
                "ERROR b\n  at x()\n\n  at y()\n",
                "INFO c\n"
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_multiline_event_is_sent_after_the_wait_without_a_next_event() {
        let rt = FakeRuntime::new(FakeConfig::default());
        let logs = FakeLogs::default();
        logs.add_group("/ecs/web");
        let dir = tempfile::tempdir().unwrap();
        let id = container(&rt).await;
        let join =
            tokio::spawn(shipper(&rt, &logs, &id, multiline_cfg("^ERROR"), dir.path()).run());
        settle().await;
        rt.emit_log(&id, LogSource::Stdout, "ERROR b").unwrap();
        rt.emit_log(&id, LogSource::Stdout, "  at x()").unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(logs.messages("/ecs/web", "ecs/app/tid").is_empty());
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(
            logs.messages("/ecs/web", "ecs/app/tid"),
            vec!["ERROR b\n  at x()\n"]
        );
        // A late continuation line is an event of its own.
        rt.emit_log(&id, LogSource::Stdout, "  late").unwrap();
        rt.exit(&id, 0).unwrap();
        tokio::time::timeout(Duration::from_secs(5), join)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            logs.messages("/ecs/web", "ecs/app/tid"),
            vec!["ERROR b\n  at x()\n", "  late\n"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn multiline_resume_reads_the_unsent_event_again() {
        let rt = FakeRuntime::new(FakeConfig::default());
        let logs = FakeLogs::default();
        logs.add_group("/ecs/web");
        let dir = tempfile::tempdir().unwrap();
        let id = container(&rt).await;
        let first =
            tokio::spawn(shipper(&rt, &logs, &id, multiline_cfg("^INFO"), dir.path()).run());
        settle().await;
        rt.emit_log(&id, LogSource::Stdout, "INFO a").unwrap();
        rt.emit_log(&id, LogSource::Stdout, "INFO b").unwrap();
        rt.emit_log(&id, LogSource::Stdout, "  more b").unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        // "INFO a" is shipped and checkpointed; "INFO b" is still being joined.
        assert_eq!(logs.messages("/ecs/web", "ecs/app/tid"), vec!["INFO a\n"]);
        first.abort();
        let _ = first.await;
        rt.emit_log(&id, LogSource::Stdout, "  last of b").unwrap();
        tokio::time::advance(Duration::from_millis(5)).await;
        rt.emit_log(&id, LogSource::Stdout, "INFO c").unwrap();
        let second =
            tokio::spawn(shipper(&rt, &logs, &id, multiline_cfg("^INFO"), dir.path()).run());
        settle().await;
        rt.exit(&id, 0).unwrap();
        tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            logs.messages("/ecs/web", "ecs/app/tid"),
            vec!["INFO a\n", "INFO b\n  more b\n  last of b\n", "INFO c\n"]
        );
    }
}
