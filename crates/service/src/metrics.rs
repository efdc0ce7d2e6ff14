//! Prometheus metrics (`GET /metrics`, OpenMetrics text): API requests by target and outcome,
//! request latency, agent polls held, service-scheduler passes; for HA: leadership (is_leader,
//! leader changes, fenced commits), state-store operation latency ([`InstrumentedStore`]) and
//! watch lag (a replica's own heartbeat from commit to its watch); the SQLite writer's group
//! commits and where a write's time goes ([`SqliteWriterCollector`]).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `X-Amz-Target` (`AmazonEC2ContainerServiceV20141113.RunTask`), or the route for /v2 and others.
    pub target: String,
    /// `ok`, or the AWS error code.
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabel {
    pub target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreOpLabels {
    /// `get`, `range`, `snapshot`, `txn`, `current_revision`, `watch`, `wipe`.
    pub op: String,
    /// `ok`, `conflict` (a txn compare failed) or `error`.
    pub outcome: String,
}

/// State-store operation latency, process-wide (the store is wrapped before the `App` exists).
pub static STORE_OPS: std::sync::LazyLock<Family<StoreOpLabels, Histogram>> =
    std::sync::LazyLock::new(|| {
        Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.00005, 2.0, 18)))
    });

/// The SQLite writer's counters (`berth_store::writer_stats`), read at each scrape. Per commit:
/// `transactions / commits` is the mean group size; per transaction, queue and (through the
/// group) apply and commit time. All zero on etcd.
#[derive(Debug)]
pub struct SqliteWriterCollector;

impl Collector for SqliteWriterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = berth_store::writer_stats();
        let help = "SQLite group commits by the store's writer";
        counter(&mut encoder, "sqlite_commits", help, s.commits)?;
        let help = "Store transactions carried by those commits";
        counter(&mut encoder, "sqlite_transactions", help, s.txns)?;
        let help = "Time store transactions waited for their group commit to start, summed over transactions";
        counter(&mut encoder, "sqlite_queue_seconds", help, s.queue_seconds)?;
        let help = "Time the writer spent applying groups before COMMIT";
        counter(&mut encoder, "sqlite_apply_seconds", help, s.apply_seconds)?;
        let help = "Time the writer spent in COMMIT (writing and syncing the WAL)";
        counter(
            &mut encoder,
            "sqlite_commit_seconds",
            help,
            s.commit_seconds,
        )
    }
}

/// Encodes one counter read at scrape time.
fn counter<N: prometheus_client::encoding::EncodeCounterValue>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: N,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
}

pub struct Metrics {
    registry: std::sync::Mutex<Registry>,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<TargetLabel, Histogram>,
    pub agent_polls_held: Gauge,
    pub scheduler_passes: Counter,
    /// 1 while this replica leads.
    pub is_leader: Gauge,
    /// Times this replica became or stopped being the leader.
    pub leader_changes: Counter,
    /// Seconds from this replica's last heartbeat commit to its arrival through the store watch.
    pub watch_lag: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Control-plane replicas seen alive in the store (`replicas/`).
    pub replicas: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("berth");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<TargetLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        let agent_polls_held = Gauge::default();
        let scheduler_passes = Counter::default();
        registry.register(
            "api_requests",
            "API requests by target and outcome",
            requests.clone(),
        );
        registry.register(
            "api_request_duration_seconds",
            "API request latency",
            latency.clone(),
        );
        registry.register(
            "agent_polls_held",
            "Agent long-polls currently held open",
            agent_polls_held.clone(),
        );
        registry.register(
            "service_scheduler_passes",
            "Passes of the service scheduler loop",
            scheduler_passes.clone(),
        );
        let is_leader = Gauge::default();
        let leader_changes = Counter::default();
        let watch_lag = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        let replicas = Gauge::default();
        registry.register(
            "is_leader",
            "1 while this replica is the leader (runs the service scheduler)",
            is_leader.clone(),
        );
        registry.register(
            "leader_changes",
            "Leadership changes seen by this replica (elected or deposed)",
            leader_changes.clone(),
        );
        registry.register(
            "store_watch_lag_seconds",
            "Time from this replica's heartbeat commit to its delivery by the store watch",
            watch_lag.clone(),
        );
        registry.register(
            "replicas",
            "Control-plane replicas alive in the store",
            replicas.clone(),
        );
        registry.register(
            "store_operation_duration_seconds",
            "State-store operation latency by operation and outcome",
            STORE_OPS.clone(),
        );
        registry.register_collector(Box::new(SqliteWriterCollector));
        Self {
            registry: std::sync::Mutex::new(registry),
            requests,
            latency,
            agent_polls_held,
            scheduler_passes,
            is_leader,
            leader_changes,
            watch_lag,
            replicas,
        }
    }
}

impl Metrics {
    /// Records one API request.
    pub fn observe(&self, target: &str, known: bool, code: &str, seconds: f64) {
        // Unknown targets are folded so a client cannot grow the label set without bound (the
        // edge says which are known: a registered service's operation).
        let target = if known {
            target.to_string()
        } else {
            "other".to_string()
        };
        self.requests
            .get_or_create(&RequestLabels {
                target: target.clone(),
                code: code.to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&TargetLabel { target })
            .observe(seconds);
    }

    /// Adds a collector (a service's own metrics, the background-task driver's).
    pub fn register_collector(&self, collector: Box<dyn Collector>) {
        if let Ok(mut r) = self.registry.lock() {
            r.register_collector(collector);
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let Ok(registry) = self.registry.lock() else {
            return out;
        };
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

/// A [`StateStore`](berth_store::StateStore) that times every operation into [`STORE_OPS`].
pub struct InstrumentedStore {
    inner: std::sync::Arc<dyn berth_store::StateStore>,
}

impl InstrumentedStore {
    /// Wraps `inner`.
    pub fn wrap(
        inner: std::sync::Arc<dyn berth_store::StateStore>,
    ) -> std::sync::Arc<dyn berth_store::StateStore> {
        std::sync::Arc::new(Self { inner })
    }
}

fn timed<T>(
    op: &str,
    started: std::time::Instant,
    r: &berth_store::Result<T>,
    conflict: impl FnOnce(&T) -> bool,
) {
    let outcome = match r {
        Ok(v) if conflict(v) => "conflict",
        Ok(_) => "ok",
        Err(_) => "error",
    };
    STORE_OPS
        .get_or_create(&StoreOpLabels {
            op: op.to_string(),
            outcome: outcome.to_string(),
        })
        .observe(started.elapsed().as_secs_f64());
}

#[async_trait::async_trait]
impl berth_store::StateStore for InstrumentedStore {
    async fn get(&self, key: &str) -> berth_store::Result<Option<berth_store::KeyValue>> {
        let t = std::time::Instant::now();
        let r = self.inner.get(key).await;
        timed("get", t, &r, |_| false);
        r
    }
    async fn range(
        &self,
        req: berth_store::RangeRequest,
    ) -> berth_store::Result<berth_store::RangeResult> {
        let t = std::time::Instant::now();
        let r = self.inner.range(req).await;
        timed("range", t, &r, |_| false);
        r
    }
    async fn snapshot(&self, prefixes: &[String]) -> berth_store::Result<berth_store::Snapshot> {
        let t = std::time::Instant::now();
        let r = self.inner.snapshot(prefixes).await;
        timed("snapshot", t, &r, |_| false);
        r
    }
    async fn txn(&self, txn: berth_store::Txn) -> berth_store::Result<berth_store::TxnOutcome> {
        let t = std::time::Instant::now();
        let r = self.inner.txn(txn).await;
        timed("txn", t, &r, |o| !o.committed());
        r
    }
    async fn current_revision(&self) -> berth_store::Result<berth_store::Revision> {
        let t = std::time::Instant::now();
        let r = self.inner.current_revision().await;
        timed("current_revision", t, &r, |_| false);
        r
    }
    async fn watch(
        &self,
        prefix: &str,
        after: berth_store::Revision,
    ) -> berth_store::Result<berth_store::WatchStream> {
        let t = std::time::Instant::now();
        let r = self.inner.watch(prefix, after).await;
        timed("watch", t, &r, |_| false);
        r
    }
    async fn wipe(&self) -> berth_store::Result<()> {
        let t = std::time::Instant::now();
        let r = self.inner.wipe().await;
        timed("wipe", t, &r, |_| false);
        r
    }
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
}
