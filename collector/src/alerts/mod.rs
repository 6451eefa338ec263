//! Bypass alert routing: every alert the collector has stored is deduplicated, rate limited and
//! pushed to Alertmanager (API v2) and/or a generic JSON webhook, each with retries.
mod alertmanager;
mod config;
mod delivery;
mod gate;
mod notice;
mod webhook;

pub use config::AlertArgs;
pub use notice::Notice;

use crate::error::CollectorError;
use crate::rows::AlertRow;
use delivery::{Poster, Sink};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Stored alerts waiting for the router; past it new ones are counted as dropped (they stay in
/// ClickHouse and on the dashboards, only the notification is lost).
const ROUTER_QUEUE: usize = 1024;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `alertmanager` or `webhook`; `router` for decisions taken before any sink.
    pub sink: &'static str,
    /// `sent`, `failed`, `retried`, `deduplicated`, `rate_limited` or `dropped`.
    pub outcome: &'static str,
}

/// Counters of routed alert notifications, by sink and outcome.
#[derive(Debug, Clone, Default)]
pub struct AlertMetrics {
    pub notifications: Family<OutcomeLabels, Counter>,
}

impl AlertMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.sub_registry_with_prefix("gatehouse_collector").register(
            "alert_notifications",
            "Bypass alert notifications by sink and outcome",
            self.notifications.clone(),
        );
    }

    pub(crate) fn count(&self, sink: &'static str, outcome: &'static str) {
        self.notifications
            .get_or_create(&OutcomeLabels { sink, outcome })
            .inc();
    }
}

/// Hands stored alerts to the routing task. Cheap to clone; never blocks ingest.
#[derive(Clone)]
pub struct AlertRouter {
    tx: mpsc::Sender<AlertRow>,
    metrics: AlertMetrics,
}

impl AlertRouter {
    /// Queues alerts that are now durable in ClickHouse.
    pub fn notify(&self, alerts: Vec<AlertRow>) {
        for a in alerts {
            if self.tx.try_send(a).is_err() {
                self.metrics.count("router", "dropped");
                tracing::warn!("alert routing queue is full; a notification is dropped");
            }
        }
    }
}

/// Starts the router and one delivery task per configured sink. `None` when no sink is set.
pub fn spawn(
    args: &AlertArgs,
    registry: &mut Registry,
) -> Result<Option<AlertRouter>, CollectorError> {
    args.validate()?;
    let mut sinks = Vec::new();
    let poster = if args.alertmanager_url.is_some() || args.alert_webhook_url.is_some() {
        Arc::new(Poster::new(args)?)
    } else {
        return Ok(None);
    };
    let metrics = AlertMetrics::default();
    metrics.register(registry);
    if let Some(url) = &args.alertmanager_url {
        let endpoint = format!("{}/api/v2/alerts", url.trim_end_matches('/'));
        sinks.push(Sink::spawn(
            "alertmanager",
            endpoint,
            poster.clone(),
            args.retry_policy(),
            metrics.clone(),
        ));
    }
    if let Some(url) = &args.alert_webhook_url {
        sinks.push(Sink::spawn(
            "webhook",
            url.clone(),
            poster.clone(),
            args.retry_policy(),
            metrics.clone(),
        ));
    }
    let (tx, mut rx) = mpsc::channel::<AlertRow>(ROUTER_QUEUE);
    let mut gate = gate::Gate::new(
        args.alert_dedup_window,
        args.alert_rate_limit,
        std::time::Instant::now(),
    );
    let link = args.alert_link_template.clone();
    let resolve_after = args.alert_resolve_after;
    let m = metrics.clone();
    tokio::spawn(async move {
        while let Some(row) = rx.recv().await {
            let notice = Notice::new(&row, link.as_deref(), resolve_after);
            match gate.admit(
                &notice.event_id,
                &notice.fingerprint,
                std::time::Instant::now(),
            ) {
                gate::Verdict::Pass => {
                    for sink in &sinks {
                        sink.send(&notice);
                    }
                }
                gate::Verdict::Duplicate => {
                    m.count("router", "deduplicated");
                    tracing::debug!(event_id = %notice.event_id, fingerprint = %notice.fingerprint, "duplicate alert not routed");
                }
                gate::Verdict::RateLimited => {
                    m.count("router", "rate_limited");
                    tracing::warn!(event_id = %notice.event_id, "alert rate limit reached; notification suppressed (the alert is stored)");
                }
            }
        }
    });
    Ok(Some(AlertRouter { tx, metrics }))
}
