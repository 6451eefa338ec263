//! Prometheus metrics of the shipper, registered under its host's prefix as `<prefix>_shipper_*`
//! (`gatehouse_gateway_shipper_*`, `gatehouse_agent_shipper_*`).
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Default)]
pub struct ShipperMetrics {
    pub events_acked: Counter,
    pub batches_sent: Counter,
    pub dead_lettered: Counter,
    pub retries: Counter,
    pub connected: Gauge,
    pub acked_offset: Gauge,
    pub unacked_bytes: Gauge,
}

impl ShipperMetrics {
    pub fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("shipper");
        r.register(
            "events_acked",
            "Events the collector acknowledged as durable",
            self.events_acked.clone(),
        );
        r.register(
            "batches_sent",
            "Batches sent to the collector",
            self.batches_sent.clone(),
        );
        r.register(
            "dead_lettered_events",
            "Shipped events the collector dead-lettered",
            self.dead_lettered.clone(),
        );
        r.register(
            "retries",
            "Streams restarted after an error",
            self.retries.clone(),
        );
        r.register(
            "connected",
            "1 while a stream to the collector is up",
            self.connected.clone(),
        );
        r.register(
            "acked_offset_bytes",
            "Journal offset acknowledged by the collector",
            self.acked_offset.clone(),
        );
        r.register(
            "unacked_bytes",
            "Journal bytes not yet acknowledged",
            self.unacked_bytes.clone(),
        );
    }
}
