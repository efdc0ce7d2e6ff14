//! The driver's behaviour under tokio's paused clock: sleeps advance virtual time exactly, so
//! counts after a sleep are deterministic.

use berth_tasks::{
    Activator, BackgroundTask, Driver, Mode, RegisterError, TaskError, TaskSpec, TaskStatus,
};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::sleep;

const HOUR: Duration = Duration::from_secs(3600);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Lets every spawned task run until it waits on a timer, without moving time by more than 1 ms.
async fn settle() {
    sleep(Duration::from_millis(1)).await;
}

/// Counts activations; each takes `work` (virtual time) and tracks the most seen at once.
#[derive(Default)]
struct Counter {
    runs: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    work: Duration,
}

impl Counter {
    fn taking(work: Duration) -> Arc<Self> {
        Arc::new(Self {
            work,
            ..Self::default()
        })
    }

    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl BackgroundTask for Counter {
    async fn activate(&self) -> Result<String, TaskError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        if !self.work.is_zero() {
            sleep(self.work).await;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let n = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(format!("pass {n}"))
    }
}

fn leader() -> Driver {
    Driver::new(|| true)
}

fn one(driver: &mut Driver, spec: TaskSpec, task: impl BackgroundTask) -> Activator {
    match driver.register(spec, task) {
        Ok(a) => a,
        Err(e) => panic!("register: {e}"),
    }
}

fn status_of(statuses: &[TaskStatus], name: &str) -> TaskStatus {
    match statuses.iter().find(|s| s.name == name) {
        Some(s) => s.clone(),
        None => panic!("no status for {name}"),
    }
}

#[tokio::test(start_paused = true)]
async fn period_is_respected() {
    let c = Counter::taking(Duration::ZERO);
    let mut d = leader();
    one(
        &mut d,
        TaskSpec::new("p", secs(10), Mode::EveryReplica),
        c.clone(),
    );
    let h = d.start();
    settle().await;
    assert_eq!(c.runs(), 1, "runs at once");
    sleep(Duration::from_millis(9_900)).await;
    assert_eq!(c.runs(), 1, "not before the period");
    sleep(Duration::from_millis(200)).await; // t = 10.1 s
    assert_eq!(c.runs(), 2);
    sleep(secs(20)).await; // t = 30.1 s
    assert_eq!(c.runs(), 4);
    assert!(h.shutdown().await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn initial_delay_then_period() {
    let c = Counter::taking(Duration::ZERO);
    let mut d = leader();
    let spec = TaskSpec::new("delayed", secs(10), Mode::EveryReplica).initial_delay(secs(5));
    one(&mut d, spec, c.clone());
    let h = d.start();
    sleep(Duration::from_millis(4_900)).await;
    assert_eq!(c.runs(), 0);
    sleep(Duration::from_millis(200)).await; // 5.1
    assert_eq!(c.runs(), 1);
    sleep(secs(10)).await; // 15.1
    assert_eq!(c.runs(), 2);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn wake_runs_early_and_moves_the_period() {
    let c = Counter::taking(Duration::ZERO);
    let mut d = leader();
    let spec = TaskSpec::new("w", secs(100), Mode::EveryReplica).initial_delay(HOUR);
    let a = one(&mut d, spec, c.clone());
    assert_eq!(a.name(), "w");
    let h = d.start();
    sleep(secs(10)).await;
    assert_eq!(c.runs(), 0);
    a.wake();
    settle().await;
    assert_eq!(c.runs(), 1, "woken run");
    // The next periodic run is due a period after the woken one (t ≈ 110 s), not at the delay.
    sleep(secs(99)).await;
    assert_eq!(c.runs(), 1);
    sleep(secs(2)).await;
    assert_eq!(c.runs(), 2);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn wake_before_start_runs_at_once() {
    let c = Counter::taking(Duration::ZERO);
    let mut d = leader();
    let spec = TaskSpec::new("early", HOUR, Mode::EveryReplica).initial_delay(HOUR);
    let a = one(&mut d, spec, c.clone());
    a.wake();
    let h = d.start();
    settle().await;
    assert_eq!(c.runs(), 1);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn wakes_while_running_coalesce_into_one_follow_up() {
    let c = Counter::taking(secs(5));
    let mut d = leader();
    let a = one(
        &mut d,
        TaskSpec::new("c", HOUR, Mode::EveryReplica),
        c.clone(),
    );
    let h = d.start();
    settle().await; // first activation in flight
    for _ in 0..5 {
        a.wake();
        sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(c.runs(), 0);
    sleep(secs(20)).await;
    assert_eq!(c.runs(), 2, "one run, one follow-up for all five wakes");
    assert_eq!(c.max_in_flight.load(Ordering::SeqCst), 1);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn never_two_activations_at_once() {
    // Activations take 3 s, the period is 1 s, and wakes keep coming.
    let c = Counter::taking(secs(3));
    let mut d = leader();
    let a = one(
        &mut d,
        TaskSpec::new("n", secs(1), Mode::EveryReplica),
        c.clone(),
    );
    let h = d.start();
    for _ in 0..40 {
        a.wake();
        sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(c.max_in_flight.load(Ordering::SeqCst), 1);
    // 10 s of back-to-back 3 s runs: 3 finished, the 4th in flight.
    assert_eq!(c.runs(), 3);
    assert!(h.status()[0].running);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn min_interval_spaces_activations() {
    let c = Counter::taking(Duration::ZERO);
    let mut d = leader();
    let spec = TaskSpec::new("m", HOUR, Mode::EveryReplica).min_interval(secs(2));
    let a = one(&mut d, spec, c.clone());
    let h = d.start();
    settle().await;
    assert_eq!(c.runs(), 1);
    a.wake();
    a.wake();
    sleep(Duration::from_millis(1_500)).await;
    assert_eq!(c.runs(), 1, "held back by min_interval");
    sleep(secs(1)).await;
    assert_eq!(c.runs(), 2, "the wakes coalesced into one run");
    sleep(secs(10)).await;
    assert_eq!(c.runs(), 2);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn leader_only_is_skipped_then_runs_when_leadership_is_gained() {
    let leading = Arc::new(AtomicBool::new(false));
    let (tx, rx) = tokio::sync::watch::channel(false);
    let l = leading.clone();
    let mut d = Driver::new(move || l.load(Ordering::SeqCst)).leader_changes(rx);
    let lo = Counter::taking(Duration::ZERO);
    let every = Counter::taking(Duration::ZERO);
    one(
        &mut d,
        TaskSpec::new("lo", secs(10), Mode::LeaderOnly),
        lo.clone(),
    );
    one(
        &mut d,
        TaskSpec::new("every", secs(10), Mode::EveryReplica),
        every.clone(),
    );
    let h = d.start();
    sleep(secs(25)).await; // due at 0, 10, 20
    assert_eq!(lo.runs(), 0);
    assert_eq!(every.runs(), 3, "every-replica tasks ignore leadership");
    let s = status_of(&h.status(), "lo");
    assert_eq!((s.runs, s.skipped), (0, 3));
    assert_eq!(s.last_outcome.as_deref(), Some("skipped: not leader"));
    assert_eq!(s.last_start, None);

    leading.store(true, Ordering::SeqCst);
    let _ = tx.send(true);
    settle().await;
    assert_eq!(lo.runs(), 1, "runs promptly on gaining leadership");
    sleep(secs(10)).await;
    assert_eq!(lo.runs(), 2, "then on its period");

    // Deposed: the next due activation is skipped again.
    leading.store(false, Ordering::SeqCst);
    let _ = tx.send(false);
    sleep(secs(10)).await;
    assert_eq!(lo.runs(), 2);
    let s = status_of(&h.status(), "lo");
    assert_eq!((s.runs, s.skipped), (2, 4));
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn without_a_change_signal_a_new_leader_runs_at_the_next_period() {
    let leading = Arc::new(AtomicBool::new(false));
    let l = leading.clone();
    let mut d = Driver::new(move || l.load(Ordering::SeqCst));
    let lo = Counter::taking(Duration::ZERO);
    one(
        &mut d,
        TaskSpec::new("lo", secs(10), Mode::LeaderOnly),
        lo.clone(),
    );
    let h = d.start();
    sleep(secs(5)).await;
    leading.store(true, Ordering::SeqCst);
    sleep(secs(4)).await; // t = 9
    assert_eq!(lo.runs(), 0);
    sleep(secs(2)).await; // t = 11
    assert_eq!(lo.runs(), 1);
    h.shutdown().await;
}

/// Fails, then panics, then succeeds.
#[derive(Default)]
struct Flaky(AtomicUsize);

#[async_trait::async_trait]
impl BackgroundTask for Flaky {
    async fn activate(&self) -> Result<String, TaskError> {
        match self.0.fetch_add(1, Ordering::SeqCst) {
            0 => Err("boom".into()),
            1 => panic!("kaboom"),
            _ => Ok("fine".to_string()),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn errors_and_panics_are_recorded_and_the_loop_goes_on() {
    let mut d = leader();
    one(
        &mut d,
        TaskSpec::new("flaky", secs(10), Mode::EveryReplica),
        Flaky::default(),
    );
    let h = d.start();
    settle().await;
    let s = status_of(&h.status(), "flaky");
    assert_eq!((s.runs, s.failures), (1, 1));
    assert_eq!(s.last_outcome.as_deref(), Some("error: boom"));
    sleep(secs(10)).await;
    let s = status_of(&h.status(), "flaky");
    assert_eq!((s.runs, s.failures), (2, 2));
    assert_eq!(s.last_outcome.as_deref(), Some("error: panicked: kaboom"));
    assert!(!s.running);
    sleep(secs(10)).await;
    let s = status_of(&h.status(), "flaky");
    assert_eq!((s.runs, s.failures), (3, 2));
    assert_eq!(s.last_outcome.as_deref(), Some("ok: fine"));
    assert!(h.shutdown().await.is_empty());
}

/// Sleeps `work`; records whether an activation finished or was dropped half-way.
struct Slow {
    work: Duration,
    finished: AtomicUsize,
    dropped: Arc<AtomicUsize>,
}

struct CountDrop(Arc<AtomicUsize>);

impl Drop for CountDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl BackgroundTask for Slow {
    async fn activate(&self) -> Result<String, TaskError> {
        let guard = CountDrop(self.dropped.clone());
        sleep(self.work).await;
        std::mem::forget(guard);
        self.finished.fetch_add(1, Ordering::SeqCst);
        Ok("done".to_string())
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_everything_and_waits_for_in_flight_work() {
    let fast = Counter::taking(Duration::ZERO);
    let slow = Arc::new(Slow {
        work: secs(5),
        finished: AtomicUsize::new(0),
        dropped: Arc::default(),
    });
    let mut d = leader();
    let fa = one(
        &mut d,
        TaskSpec::new("fast", secs(1), Mode::EveryReplica),
        fast.clone(),
    );
    one(
        &mut d,
        TaskSpec::new("slow", HOUR, Mode::EveryReplica),
        slow.clone(),
    );
    let h = d.start();
    let monitor = h.monitor();
    sleep(Duration::from_millis(2_500)).await;
    assert_eq!(fast.runs(), 3);
    assert_eq!(slow.finished.load(Ordering::SeqCst), 0);
    let t0 = tokio::time::Instant::now();
    assert!(h.shutdown().await.is_empty());
    assert_eq!(
        t0.elapsed(),
        Duration::from_millis(2_500),
        "waited for slow"
    );
    assert_eq!(slow.finished.load(Ordering::SeqCst), 1);
    assert_eq!(slow.dropped.load(Ordering::SeqCst), 0);
    let runs = fast.runs();
    fa.wake(); // a no-op now
    sleep(secs(30)).await;
    assert_eq!(fast.runs(), runs, "nothing runs after shutdown");
    assert!(monitor.status().iter().all(|s| !s.running));
}

#[tokio::test(start_paused = true)]
async fn shutdown_aborts_work_that_outlives_the_grace() {
    let slow = Arc::new(Slow {
        work: HOUR,
        finished: AtomicUsize::new(0),
        dropped: Arc::default(),
    });
    let mut d = leader().shutdown_grace(secs(2));
    one(
        &mut d,
        TaskSpec::new("slow", HOUR, Mode::EveryReplica),
        slow.clone(),
    );
    let h = d.start();
    let monitor = h.monitor();
    settle().await;
    let t0 = tokio::time::Instant::now();
    assert_eq!(h.shutdown().await, vec!["slow"]);
    assert_eq!(t0.elapsed(), secs(2));
    settle().await;
    assert_eq!(slow.dropped.load(Ordering::SeqCst), 1, "activation dropped");
    assert_eq!(slow.finished.load(Ordering::SeqCst), 0);
    let s = status_of(&monitor.status(), "slow");
    assert!(!s.running);
    assert_eq!(
        s.last_outcome.as_deref(),
        Some("error: aborted at shutdown")
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_handle_stops_the_loops() {
    let c = Counter::taking(Duration::ZERO);
    let mut d = leader();
    one(
        &mut d,
        TaskSpec::new("d", secs(1), Mode::EveryReplica),
        c.clone(),
    );
    let h = d.start();
    settle().await;
    drop(h);
    sleep(secs(10)).await;
    assert_eq!(c.runs(), 1);
}

#[tokio::test(start_paused = true)]
async fn status_fields() {
    let c = Counter::taking(secs(2));
    let mut d = leader().clock(|| 1_700_000_000.5);
    let monitor = d.monitor();
    one(
        &mut d,
        TaskSpec::new("s", secs(30), Mode::LeaderOnly),
        c.clone(),
    );
    let h = d.start();
    settle().await;
    let s = status_of(&monitor.status(), "s");
    assert!(s.running);
    assert_eq!(s.last_start, Some(1_700_000_000.5));
    assert_eq!(s.last_outcome, None);
    sleep(secs(3)).await;
    let s = h.status().remove(0);
    assert_eq!(
        s,
        TaskStatus {
            name: "s".to_string(),
            mode: Mode::LeaderOnly,
            period_seconds: 30.0,
            runs: 1,
            failures: 0,
            skipped: 0,
            last_start: Some(1_700_000_000.5),
            last_duration_seconds: Some(2.0),
            last_outcome: Some("ok: pass 1".to_string()),
            running: false,
        }
    );
    let json = serde_json::to_value(&s).unwrap_or_default();
    assert_eq!(json["name"], "s");
    assert_eq!(json["mode"], "leader_only");
    assert_eq!(json["periodSeconds"], 30.0);
    assert_eq!(json["lastDurationSeconds"], 2.0);
    assert_eq!(json["lastOutcome"], "ok: pass 1");
    assert_eq!(json["running"], false);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn metrics_expose_each_series_per_task() {
    let mut d = leader().clock(|| 1_700_000_000.0);
    one(
        &mut d,
        TaskSpec::new("flaky", secs(10), Mode::EveryReplica),
        Flaky::default(),
    );
    one(
        &mut d,
        TaskSpec::new("idle", HOUR, Mode::EveryReplica).initial_delay(HOUR),
        Counter::taking(Duration::ZERO),
    );
    let mut registry = prometheus_client::registry::Registry::with_prefix("berth");
    registry.register_collector(Box::new(d.monitor()));
    let h = d.start();
    sleep(Duration::from_millis(10_500)).await; // flaky: error, then panic
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        panic!("encode: {e}");
    }
    for line in [
        "# TYPE berth_background_task_runs counter",
        "berth_background_task_runs_total{task=\"flaky\"} 2",
        "berth_background_task_runs_total{task=\"idle\"} 0",
        "berth_background_task_failures_total{task=\"flaky\"} 2",
        "berth_background_task_skipped_total{task=\"flaky\"} 0",
        "# TYPE berth_background_task_last_duration_seconds gauge",
        "berth_background_task_last_duration_seconds{task=\"flaky\"} 0.0",
        "# TYPE berth_background_task_last_run_timestamp_seconds gauge",
        "berth_background_task_last_run_timestamp_seconds{task=\"flaky\"} 1700000000.0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    assert!(
        !text.contains("last_duration_seconds{task=\"idle\"}"),
        "no duration before a first run:\n{text}"
    );
    h.shutdown().await;
}

#[test]
fn registration_errors() {
    let mut d = leader();
    assert!(d
        .register(
            TaskSpec::new("a", secs(1), Mode::EveryReplica),
            Counter::taking(Duration::ZERO)
        )
        .is_ok());
    assert_eq!(
        d.register(
            TaskSpec::new("a", secs(2), Mode::LeaderOnly),
            Counter::taking(Duration::ZERO)
        )
        .err(),
        Some(RegisterError::Duplicate("a"))
    );
    assert_eq!(
        d.register(
            TaskSpec::new("z", Duration::ZERO, Mode::EveryReplica),
            Counter::taking(Duration::ZERO)
        )
        .err(),
        Some(RegisterError::ZeroPeriod("z"))
    );
    assert_eq!(d.monitor().status().len(), 1);
}
