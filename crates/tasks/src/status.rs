//! What the driver records per task, shown as [`TaskStatus`] and as Prometheus series.

use crate::Mode;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One task as `berth status` shows it (JSON keys in camelCase).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatus {
    pub name: String,
    pub mode: Mode,
    pub period_seconds: f64,
    /// Activations that ran to an outcome (successes and failures).
    pub runs: u64,
    /// Activations that returned an error or panicked.
    pub failures: u64,
    /// Due activations skipped because this replica did not lead.
    pub skipped: u64,
    /// When the last activation started, unix epoch seconds.
    pub last_start: Option<f64>,
    /// How long the last finished activation took, seconds.
    pub last_duration_seconds: Option<f64>,
    /// `ok: <status>`, `error: <message>` or `skipped: not leader`, for the last due activation.
    pub last_outcome: Option<String>,
    /// An activation is in flight.
    pub running: bool,
}

pub(crate) enum Outcome {
    Ok(String),
    Error(String),
}

pub(crate) fn system_clock() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[derive(Debug, Default)]
struct Stats {
    runs: u64,
    failures: u64,
    skipped: u64,
    last_start: Option<f64>,
    last_duration: Option<f64>,
    last_outcome: Option<String>,
    running: bool,
}

#[derive(Debug)]
pub(crate) struct TaskState {
    pub(crate) name: &'static str,
    mode: Mode,
    period: Duration,
    stats: Mutex<Stats>,
}

impl TaskState {
    pub(crate) fn new(name: &'static str, mode: Mode, period: Duration) -> Self {
        Self {
            name,
            mode,
            period,
            stats: Mutex::default(),
        }
    }

    fn stats(&self) -> MutexGuard<'_, Stats> {
        // Nothing panics while holding it; a poisoned lock still holds consistent numbers.
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn begin(&self, now: f64) {
        let mut s = self.stats();
        s.running = true;
        s.last_start = Some(now);
    }

    pub(crate) fn finish(&self, outcome: Outcome, elapsed: Duration) {
        let mut s = self.stats();
        s.running = false;
        s.runs += 1;
        s.last_duration = Some(elapsed.as_secs_f64());
        s.last_outcome = Some(match outcome {
            Outcome::Ok(status) => format!("ok: {status}"),
            Outcome::Error(message) => {
                s.failures += 1;
                format!("error: {message}")
            }
        });
    }

    pub(crate) fn skipped(&self) {
        let mut s = self.stats();
        s.skipped += 1;
        s.last_outcome = Some("skipped: not leader".to_string());
    }

    /// The activation in flight was aborted at shutdown (not counted as a run).
    pub(crate) fn aborted(&self) {
        let mut s = self.stats();
        if s.running {
            s.running = false;
            s.last_outcome = Some("error: aborted at shutdown".to_string());
        }
    }

    fn status(&self) -> TaskStatus {
        let s = self.stats();
        TaskStatus {
            name: self.name.to_string(),
            mode: self.mode,
            period_seconds: self.period.as_secs_f64(),
            runs: s.runs,
            failures: s.failures,
            skipped: s.skipped,
            last_start: s.last_start,
            last_duration_seconds: s.last_duration,
            last_outcome: s.last_outcome.clone(),
            running: s.running,
        }
    }
}

/// A view of a driver's tasks: [`TaskMonitor::status`], and a Prometheus
/// [`Collector`] of per-task series (label `task`), read at each scrape:
///
/// - `background_task_runs_total`, `background_task_failures_total`,
///   `background_task_skipped_total` (counters);
/// - `background_task_last_duration_seconds`, `background_task_last_run_timestamp_seconds`
///   (gauges, unix epoch seconds for the latter; absent until the task's first activation).
///
/// Names carry no `berth_` prefix: register it with
/// `Registry::register_collector(Box::new(monitor))` in a registry made by
/// `Registry::with_prefix("berth")` (as the control plane's is) to get `berth_background_task_*`.
#[derive(Debug, Clone, Default)]
pub struct TaskMonitor {
    tasks: Arc<RwLock<Vec<Arc<TaskState>>>>,
}

impl TaskMonitor {
    pub(crate) fn push(&self, state: Arc<TaskState>) {
        self.tasks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(state);
    }

    fn tasks(&self) -> Vec<Arc<TaskState>> {
        self.tasks.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every task's status, in registration order.
    pub fn status(&self) -> Vec<TaskStatus> {
        self.tasks().iter().map(|t| t.status()).collect()
    }
}

impl Collector for TaskMonitor {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = self.status();
        let e = &mut encoder;
        let help = "Background task activations that ran (succeeded or failed)";
        counter(e, "background_task_runs", help, &s, |t| t.runs)?;
        let help = "Background task activations that returned an error or panicked";
        counter(e, "background_task_failures", help, &s, |t| t.failures)?;
        let help = "Due leader-only background task activations skipped on a non-leader";
        counter(e, "background_task_skipped", help, &s, |t| t.skipped)?;
        let help = "Duration of the background task's last finished activation";
        let name = "background_task_last_duration_seconds";
        gauge(e, name, help, &s, |t| t.last_duration_seconds)?;
        let help = "When the background task's last activation started (unix epoch seconds)";
        let name = "background_task_last_run_timestamp_seconds";
        gauge(e, name, help, &s, |t| t.last_start)
    }
}

/// One counter family, a sample per task.
fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    tasks: &[TaskStatus],
    value: impl Fn(&TaskStatus) -> u64,
) -> Result<(), std::fmt::Error> {
    let metric_type = ConstCounter::new(0u64).metric_type();
    let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
    for t in tasks {
        let labels = [("task", t.name.as_str())];
        ConstCounter::new(value(t)).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One gauge family, a sample per task that has a value.
fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    tasks: &[TaskStatus],
    value: impl Fn(&TaskStatus) -> Option<f64>,
) -> Result<(), std::fmt::Error> {
    let metric_type = ConstGauge::new(0.0f64).metric_type();
    let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
    for t in tasks {
        if let Some(v) = value(t) {
            let labels = [("task", t.name.as_str())];
            ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}
