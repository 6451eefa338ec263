//! Prometheus metrics of the collector (`gatehouse_collector_*`).
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub events_stored: Counter,
    pub alerts_stored: Counter,
    pub inserts: Counter,
    pub insert_retries: Counter,
    pub dead_lettered: Counter,
    pub batches_rejected: Counter,
    pub backpressure: Counter,
    pub queued_batches: Gauge,
    pub inserts_in_flight: Gauge,
    pub reads: Counter,
    pub reads_denied: Counter,
}

impl Metrics {
    pub fn register(&self, r: &mut Registry) {
        let prefix = r.sub_registry_with_prefix("gatehouse_collector");
        prefix.register(
            "events_stored",
            "Session events inserted into ClickHouse",
            self.events_stored.clone(),
        );
        prefix.register(
            "alerts_stored",
            "Bypass alerts inserted into ClickHouse",
            self.alerts_stored.clone(),
        );
        prefix.register(
            "inserts",
            "INSERT statements that succeeded",
            self.inserts.clone(),
        );
        prefix.register(
            "insert_retries",
            "Inserts retried after a connection or server error",
            self.insert_retries.clone(),
        );
        prefix.register(
            "dead_lettered_events",
            "Events ClickHouse refused as bad data, written to the dead-letter file",
            self.dead_lettered.clone(),
        );
        prefix.register(
            "batches_rejected",
            "Shipped batches answered INVALID_ARGUMENT",
            self.batches_rejected.clone(),
        );
        prefix.register(
            "backpressure",
            "Shipped batches answered RESOURCE_EXHAUSTED",
            self.backpressure.clone(),
        );
        prefix.register(
            "queued_batches",
            "Shipped batches waiting for the ClickHouse writer",
            self.queued_batches.clone(),
        );
        prefix.register(
            "inserts_in_flight",
            "INSERTs sent to ClickHouse and not yet answered",
            self.inserts_in_flight.clone(),
        );
        prefix.register("reads", "Query calls allowed", self.reads.clone());
        prefix.register(
            "reads_denied",
            "Query calls refused (unauthenticated or not a reader)",
            self.reads_denied.clone(),
        );
    }
}
