//! Prometheus metrics of the gateway, named `gatehouse_gateway_<name>_<unit>[_total]`.
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeniedLabels {
    pub reason: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Histogram,
    pub denied: Family<DeniedLabels, Counter>,
    pub journal_appended_bytes: Counter,
    pub journal_appended_events: Counter,
    pub journal_unacked_bytes: Gauge,
    pub journal_errors: Counter,
    pub response_bytes: Counter,
    pub request_bytes: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gatehouse_gateway");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests relayed, by verb and status code",
            requests.clone(),
        );
        // 50 µs … ~26 s: sub-millisecond proxy overhead up to slow lists.
        let request_duration = Histogram::new(exponential_buckets(0.00005, 2.0, 20));
        registry.register(
            "request_duration_seconds",
            "Time from request head to response head",
            request_duration.clone(),
        );
        let denied = Family::<DeniedLabels, Counter>::default();
        registry.register(
            "denied_requests",
            "Requests refused before forwarding, by reason",
            denied.clone(),
        );
        let journal_appended_bytes = Counter::default();
        registry.register(
            "journal_appended_bytes",
            "Bytes appended to the journal",
            journal_appended_bytes.clone(),
        );
        let journal_appended_events = Counter::default();
        registry.register(
            "journal_appended_events",
            "Events appended to the journal: what the collector must end up holding",
            journal_appended_events.clone(),
        );
        let journal_unacked_bytes = Gauge::default();
        registry.register(
            "journal_unacked_bytes",
            "Journal bytes not yet acknowledged by the collector",
            journal_unacked_bytes.clone(),
        );
        let journal_errors = Counter::default();
        registry.register(
            "journal_errors",
            "Events the journal refused",
            journal_errors.clone(),
        );
        let response_bytes = Counter::default();
        registry.register(
            "response_bytes",
            "Response body bytes relayed to callers",
            response_bytes.clone(),
        );
        let request_bytes = Counter::default();
        registry.register(
            "request_bytes",
            "Request body bytes relayed upstream",
            request_bytes.clone(),
        );
        Self {
            registry,
            requests,
            request_duration,
            denied,
            journal_appended_bytes,
            journal_appended_events,
            journal_unacked_bytes,
            journal_errors,
            response_bytes,
            request_bytes,
        }
    }

    /// Exposes the journal shipper's metrics as `gatehouse_gateway_shipper_*`: backlog
    /// (unacked bytes), acknowledged offset, retries, events acknowledged.
    pub fn register_shipper(&mut self, shipper: &gatehouse_shipper::ShipperMetrics) {
        shipper.register(&mut self.registry);
    }

    pub fn deny(&self, reason: &str) {
        self.denied
            .get_or_create(&DeniedLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
