//! Prometheus metrics (`GET /metrics`, OpenMetrics text): API requests by target and outcome,
//! request latency, agent polls held, service-scheduler passes.

use prometheus_client::encoding::EncodeLabelSet;
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

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<TargetLabel, Histogram>,
    pub agent_polls_held: Gauge,
    pub scheduler_passes: Counter,
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
        Self {
            registry,
            requests,
            latency,
            agent_polls_held,
            scheduler_passes,
        }
    }
}

impl Metrics {
    /// Records one API request.
    pub fn observe(&self, target: &str, code: &str, seconds: f64) {
        // Unknown targets are folded so a client cannot grow the label set without bound.
        let known = target.split_once('.').is_some_and(|(p, op)| {
            (p == berth_ecs_api::ecs::TARGET_PREFIX
                && berth_ecs_api::ecs::Operation::from_name(op).is_some())
                || p == crate::logs::TARGET_PREFIX
                || p == crate::admin::TARGET_PREFIX
                || p == berth_agent_api::TARGET_PREFIX
        });
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

    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
