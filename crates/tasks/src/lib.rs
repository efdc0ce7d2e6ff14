//! The background-task driver, after Oxide Omicron's Nexus background tasks.
//!
//! A background task is a small struct implementing [`BackgroundTask`]: one [`activate`] pass
//! that does its work and returns a short status. The [`Driver`] owns everything else: when a
//! task runs (its period, an optional initial delay, early wake-ups through its [`Activator`]),
//! whether it runs at all (a [`Mode::LeaderOnly`] task is skipped on a replica that does not
//! lead), and reporting ([`TaskMonitor::status`] for `berth status`, Prometheus series through
//! the monitor's [`Collector`](prometheus_client::collector::Collector) implementation, `tracing`
//! events).
//!
//! Invariants:
//! - one tokio task per background task: activations of one task never overlap;
//! - wake-ups arriving while a task runs (or waits) coalesce into a single follow-up activation;
//! - the next periodic activation is due one period after the previous one *started* (or was
//!   skipped); an early activation moves it; an activation longer than the period is followed
//!   at once by the next, never by a burst of catch-up runs;
//! - an activation that returns an error or panics is recorded as failed and the loop goes on
//!   (each activation runs in its own spawned tokio task, so a panic is caught as a `JoinError`);
//! - leadership is only read, through the predicate given to [`Driver::new`]: fencing the
//!   commits a leader-only task makes is the caller's job, inside [`activate`];
//! - [`DriverHandle::shutdown`] stops every loop, letting in-flight activations finish within
//!   the driver's shutdown grace and aborting those that do not.
//!
//! [`activate`]: BackgroundTask::activate

mod status;

pub use status::{TaskMonitor, TaskStatus};

use status::{Outcome, TaskState};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The error an activation may return: any error type converts with `?`, and a message with
/// `Err("...".into())`.
pub type TaskError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// One kind of periodic work.
#[async_trait::async_trait]
pub trait BackgroundTask: Send + Sync + 'static {
    /// One pass. Returns a short human status shown by `berth status` (`ok: <status>`), or an
    /// error, which is logged, counted as a failure and shown (`error: <message>`).
    async fn activate(&self) -> Result<String, TaskError>;
}

#[async_trait::async_trait]
impl<T: BackgroundTask + ?Sized> BackgroundTask for Arc<T> {
    async fn activate(&self) -> Result<String, TaskError> {
        (**self).activate().await
    }
}

/// Where a task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// On every control-plane replica.
    EveryReplica,
    /// Only while this replica leads; otherwise each due activation is recorded as skipped.
    LeaderOnly,
}

impl Mode {
    /// `every_replica` or `leader_only`, as in status JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::EveryReplica => "every_replica",
            Mode::LeaderOnly => "leader_only",
        }
    }
}

/// How a task is scheduled: built with [`TaskSpec::new`] and the optional setters.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    name: &'static str,
    period: Duration,
    mode: Mode,
    initial_delay: Duration,
    min_interval: Duration,
}

impl TaskSpec {
    /// A task named `name` (unique within a driver; it is the metrics' `task` label), activated
    /// every `period` (which must not be zero), first as soon as the driver starts.
    pub fn new(name: &'static str, period: Duration, mode: Mode) -> Self {
        Self {
            name,
            period,
            mode,
            initial_delay: Duration::ZERO,
            min_interval: Duration::ZERO,
        }
    }

    /// Waits this long after the driver starts before the first periodic activation (a wake-up
    /// still runs it at once).
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// The least time from the end of one activation to the start of the next, whatever asks
    /// for it: wake-ups arriving meanwhile coalesce into the run after it (default zero).
    pub fn min_interval(mut self, interval: Duration) -> Self {
        self.min_interval = interval;
        self
    }
}

/// A registration the driver refused: a programming error, reported rather than panicking so
/// the caller decides (at startup, `expect` is the usual answer).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegisterError {
    #[error("background task {0:?} is already registered")]
    Duplicate(&'static str),
    #[error("background task {0:?} has a zero period")]
    ZeroPeriod(&'static str),
}

/// Asks a task to run now. Cheap to clone; usable before [`Driver::start`] (the first activation
/// then happens at once) and after shutdown (a no-op).
#[derive(Debug, Clone)]
pub struct Activator {
    name: &'static str,
    notify: Arc<Notify>,
}

impl Activator {
    /// Runs the task as soon as it is idle (and, for a leader-only task, skips it if this replica
    /// does not lead). Wake-ups arriving before that run starts coalesce into it.
    pub fn wake(&self) {
        tracing::trace!(task = self.name, "background task woken");
        self.notify.notify_one();
    }

    /// The task's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

type Predicate = Arc<dyn Fn() -> bool + Send + Sync>;
type Clock = Arc<dyn Fn() -> f64 + Send + Sync>;
type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

struct Registered {
    spec: TaskSpec,
    task: Arc<dyn BackgroundTask>,
    notify: Arc<Notify>,
    state: Arc<TaskState>,
}

/// Collects background tasks, then runs them ([`Driver::start`]).
pub struct Driver {
    tasks: Vec<Registered>,
    monitor: TaskMonitor,
    is_leader: Predicate,
    /// A `()` signal per leadership change, and the future that feeds it (spawned by `start`).
    changes: Option<(watch::Receiver<()>, BoxFuture)>,
    grace: Duration,
    clock: Clock,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.tasks.iter().map(|t| t.spec.name).collect();
        f.debug_struct("Driver")
            .field("tasks", &names)
            .field("leader_changes", &self.changes.is_some())
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

/// How long [`DriverHandle::shutdown`] waits for in-flight activations by default.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

impl Driver {
    /// A driver whose leader-only tasks run while `is_leader()` holds. It is asked just before
    /// each due activation, so it should be cheap (a `watch::Receiver::borrow`, an atomic).
    pub fn new(is_leader: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        Self {
            tasks: Vec::new(),
            monitor: TaskMonitor::default(),
            is_leader: Arc::new(is_leader),
            changes: None,
            grace: DEFAULT_SHUTDOWN_GRACE,
            clock: Arc::new(status::system_clock),
        }
    }

    /// Leadership changes are announced on `changes` (any value: each change makes every
    /// leader-only task re-read the predicate, and run at once if this replica just became the
    /// leader). Without it, a new leader's tasks run at their next period.
    pub fn leader_changes<T: Send + Sync + 'static>(
        mut self,
        mut changes: watch::Receiver<T>,
    ) -> Self {
        let (tx, rx) = watch::channel(());
        let forward = Box::pin(async move {
            while changes.changed().await.is_ok() {
                if tx.send(()).is_err() {
                    break;
                }
            }
        });
        self.changes = Some((rx, forward));
        self
    }

    /// How long [`DriverHandle::shutdown`] waits for in-flight activations before aborting them
    /// (default [`DEFAULT_SHUTDOWN_GRACE`]).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The wall clock (unix epoch seconds) for status and metrics timestamps; for tests.
    pub fn clock(mut self, clock: impl Fn() -> f64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Adds a task; the returned [`Activator`] wakes it early.
    pub fn register(
        &mut self,
        spec: TaskSpec,
        task: impl BackgroundTask,
    ) -> Result<Activator, RegisterError> {
        if self.tasks.iter().any(|t| t.spec.name == spec.name) {
            return Err(RegisterError::Duplicate(spec.name));
        }
        if spec.period.is_zero() {
            return Err(RegisterError::ZeroPeriod(spec.name));
        }
        let notify = Arc::new(Notify::new());
        let state = Arc::new(TaskState::new(spec.name, spec.mode, spec.period));
        self.monitor.push(state.clone());
        self.tasks.push(Registered {
            spec: spec.clone(),
            task: Arc::new(task),
            notify: notify.clone(),
            state,
        });
        Ok(Activator {
            name: spec.name,
            notify,
        })
    }

    /// The tasks' status and metrics; it also sees tasks registered later.
    pub fn monitor(&self) -> TaskMonitor {
        self.monitor.clone()
    }

    /// Spawns one tokio task per background task (call within a tokio runtime).
    pub fn start(self) -> DriverHandle {
        let cancel = CancellationToken::new();
        let (changes, forwarder) = match self.changes {
            Some((rx, forward)) => {
                let cancel = cancel.clone();
                let forwarder = tokio::spawn(async move {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = forward => {}
                    }
                });
                (Some(rx), Some(forwarder))
            }
            None => (None, None),
        };
        let loops = self
            .tasks
            .into_iter()
            .map(|r| {
                let state = r.state.clone();
                let ctx = Loop {
                    changes: match r.spec.mode {
                        Mode::LeaderOnly => changes.clone(),
                        Mode::EveryReplica => None,
                    },
                    spec: r.spec,
                    task: r.task,
                    notify: r.notify,
                    state: r.state,
                    is_leader: self.is_leader.clone(),
                    clock: self.clock.clone(),
                    cancel: cancel.clone(),
                };
                (state, tokio::spawn(ctx.run()))
            })
            .collect();
        DriverHandle {
            cancel,
            loops,
            forwarder,
            monitor: self.monitor,
            grace: self.grace,
        }
    }
}

/// The running driver. Dropping it stops the loops too, without waiting for in-flight
/// activations (they finish in the background); prefer [`DriverHandle::shutdown`].
pub struct DriverHandle {
    cancel: CancellationToken,
    loops: Vec<(Arc<TaskState>, JoinHandle<()>)>,
    forwarder: Option<JoinHandle<()>>,
    monitor: TaskMonitor,
    grace: Duration,
}

impl DriverHandle {
    /// Every task's status, in registration order.
    pub fn status(&self) -> Vec<TaskStatus> {
        self.monitor.status()
    }

    /// The tasks' status and metrics.
    pub fn monitor(&self) -> TaskMonitor {
        self.monitor.clone()
    }

    /// Stops every loop: no activation starts after this is called; in-flight ones get the
    /// shutdown grace (in total, not per task) to finish and are then aborted (dropped at their
    /// next `.await`). Returns the names of the tasks whose activation was aborted.
    pub async fn shutdown(mut self) -> Vec<&'static str> {
        self.cancel.cancel();
        if let Some(f) = self.forwarder.take() {
            f.abort();
        }
        let deadline = Instant::now() + self.grace;
        let mut aborted = Vec::new();
        for (state, mut handle) in std::mem::take(&mut self.loops) {
            if tokio::time::timeout_at(deadline, &mut handle)
                .await
                .is_err()
            {
                handle.abort();
                // Dropping the loop drops its `AbortOnDrop`, which aborts the activation.
                let _ = handle.await;
                state.aborted();
                tracing::warn!(
                    task = state.name,
                    grace_s = self.grace.as_secs_f64(),
                    "background task aborted at shutdown"
                );
                aborted.push(state.name);
            }
        }
        aborted
    }
}

impl std::fmt::Debug for DriverHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.loops.iter().map(|(s, _)| s.name).collect();
        f.debug_struct("DriverHandle")
            .field("tasks", &names)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

impl Drop for DriverHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Aborts the spawned activation if its loop is dropped (aborted at shutdown).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One task's loop.
struct Loop {
    spec: TaskSpec,
    task: Arc<dyn BackgroundTask>,
    notify: Arc<Notify>,
    state: Arc<TaskState>,
    is_leader: Predicate,
    changes: Option<watch::Receiver<()>>,
    clock: Clock,
    cancel: CancellationToken,
}

/// The next leadership change, or never (no signal, or its sender is gone).
async fn changed(changes: &mut Option<watch::Receiver<()>>) -> bool {
    match changes {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

impl Loop {
    async fn run(mut self) {
        let name = self.spec.name;
        let mut next = Instant::now() + self.spec.initial_delay;
        let mut earliest: Option<Instant> = None;
        let mut leading = (self.is_leader)();
        loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return,
                _ = self.notify.notified() => {}
                _ = tokio::time::sleep_until(next) => {}
                ok = changed(&mut self.changes) => {
                    if !ok {
                        self.changes = None;
                        continue;
                    }
                    let now = (self.is_leader)();
                    let gained = now && !leading;
                    leading = now;
                    if !gained {
                        continue;
                    }
                    tracing::debug!(task = name, "leadership gained; activating background task");
                }
            }
            if let Some(at) = earliest {
                tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => return,
                    _ = tokio::time::sleep_until(at) => {}
                }
            }
            // Wake-ups that came in since the wait ended are served by this activation.
            tokio::select! {
                biased;
                _ = self.notify.notified() => {}
                _ = std::future::ready(()) => {}
            }
            let started = Instant::now();
            next = started + self.spec.period;
            if self.spec.mode == Mode::LeaderOnly {
                leading = (self.is_leader)();
                if !leading {
                    tracing::debug!(task = name, "not leader; background task skipped");
                    self.state.skipped();
                    continue;
                }
            }
            self.activate().await;
            earliest = Some(Instant::now() + self.spec.min_interval);
        }
    }

    async fn activate(&self) {
        let name = self.spec.name;
        self.state.begin((self.clock)());
        let started = Instant::now();
        let task = self.task.clone();
        let mut handle = AbortOnDrop(tokio::spawn(async move { task.activate().await }));
        let result = (&mut handle.0).await;
        let elapsed = started.elapsed();
        let outcome = match result {
            Ok(Ok(status)) => {
                tracing::debug!(task = name, status = %status, elapsed_s = elapsed.as_secs_f64(), "background task ran");
                Outcome::Ok(status)
            }
            Ok(Err(e)) => {
                tracing::warn!(task = name, error = %e, elapsed_s = elapsed.as_secs_f64(), "background task failed");
                Outcome::Error(e.to_string())
            }
            Err(e) => {
                let message = match e.try_into_panic() {
                    Ok(payload) => format!("panicked: {}", panic_message(payload.as_ref())),
                    Err(_) => "cancelled".to_string(),
                };
                tracing::error!(task = name, error = %message, "background task panicked");
                Outcome::Error(message)
            }
        };
        self.state.finish(outcome, elapsed);
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(non-string payload)"
    }
}
