//! One stored bypass alert as a notification: Alertmanager-style labels and annotations, a
//! fingerprint of what makes it the same incident, and the link to investigate it.
use crate::rows::AlertRow;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The Alertmanager `alertname` of every gatehouse bypass alert.
pub const ALERT_NAME: &str = "GatehouseApiServerBypass";

#[derive(Debug, Clone)]
pub struct Notice {
    pub event_id: String,
    pub fingerprint: String,
    pub labels: BTreeMap<&'static str, String>,
    pub annotations: BTreeMap<&'static str, String>,
    pub starts_at: String,
    pub ends_at: String,
    pub generator_url: Option<String>,
    /// Every stored field, for the generic webhook.
    pub detail: serde_json::Value,
}

impl Notice {
    pub fn new(a: &AlertRow, link_template: Option<&str>, resolve_after: Duration) -> Self {
        let event_id = a.event_id.to_string();
        let fired = UNIX_EPOCH + Duration::from_nanos(u64::try_from(a.time).unwrap_or(0));
        let fired = if fired == UNIX_EPOCH {
            SystemTime::now()
        } else {
            fired
        };
        let who = if a.host_process != 0 {
            format!("host process {} ({})", a.comm, a.exe)
        } else {
            let mut who = format!("{}/{} container {}", a.namespace, a.pod, a.container);
            if !a.workload.is_empty() {
                who.push_str(&format!(" of {}", a.workload));
            }
            if a.host_network != 0 {
                who.push_str(" (host network)");
            }
            who
        };
        let mut labels = BTreeMap::new();
        labels.insert("alertname", ALERT_NAME.to_string());
        labels.insert(
            "severity",
            if a.action == "blocked" {
                "warning"
            } else {
                "critical"
            }
            .to_string(),
        );
        labels.insert("node", a.node.clone());
        labels.insert("namespace", a.namespace.clone());
        labels.insert("pod", a.pod.clone());
        labels.insert("container", a.container.clone());
        // The controller, so a receiver can route by workload rather than by pod name (which a
        // Deployment's pods each have their own of).
        labels.insert("workload", a.workload.clone());
        if a.host_network != 0 {
            labels.insert("host_network", "true".to_string());
        }
        labels.insert("destination", a.final_destination.clone());
        labels.insert("matched_by", a.matched_by.clone());
        labels.insert("action", a.action.to_string());
        if a.host_process != 0 {
            labels.insert("comm", a.comm.clone());
        }
        labels.retain(|_, v| !v.is_empty());
        let fingerprint = fingerprint(&labels);
        let mut annotations = BTreeMap::new();
        annotations.insert(
            "summary",
            format!(
                "{who} on node {} connected to the API server at {} without the gateway ({})",
                a.node, a.final_destination, a.action
            ),
        );
        annotations.insert(
            "description",
            format!(
                "pid {} uid {} comm {:?} cmdline {:?}; {} connect(s); matched by {}; reasons: {}",
                a.pid,
                a.uid,
                a.comm,
                a.cmdline,
                a.count.max(1),
                a.matched_by,
                if a.reasons.is_empty() {
                    "-".to_string()
                } else {
                    a.reasons.join(", ")
                }
            ),
        );
        annotations.insert("event_id", event_id.clone());
        annotations.insert(
            "query",
            format!("SELECT * FROM alerts WHERE event_id = '{event_id}'"),
        );
        let generator_url = link_template.map(|t| {
            t.replace("{event_id}", &event_id)
                .replace("{namespace}", &a.namespace)
                .replace("{pod}", &a.pod)
                .replace("{node}", &a.node)
        });
        let detail = serde_json::json!({
            "event_id": event_id,
            "time": rfc3339(fired),
            "node": a.node,
            "namespace": a.namespace,
            "pod": a.pod,
            "container": a.container,
            "pod_uid": a.pod_uid,
            "container_id": a.container_id,
            "service_account": a.service_account,
            "workload": a.workload,
            "host_network": a.host_network != 0,
            "pid": a.pid,
            "tgid": a.tgid,
            "uid": a.uid,
            "comm": a.comm,
            "exe": a.exe,
            "cmdline": a.cmdline,
            "host_process": a.host_process != 0,
            "original_destination": a.original_destination,
            "final_destination": a.final_destination,
            "action": a.action,
            "matched_by": a.matched_by,
            "reasons": a.reasons,
            "count": a.count,
        });
        Self {
            event_id,
            fingerprint,
            labels,
            annotations,
            starts_at: rfc3339(fired),
            ends_at: rfc3339(fired.max(SystemTime::now()) + resolve_after),
            generator_url,
            detail,
        }
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// The first 16 hex digits of SHA-256 over the sorted labels.
fn fingerprint(labels: &BTreeMap<&'static str, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in labels {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::rows::{Row, convert};
    use gatehouse_proto::v1::{BypassAlert, Event, event::Payload};
    use prost::Message as _;

    fn row(alert: BypassAlert) -> AlertRow {
        let e = Event {
            event_id: "0190b7a0-0000-7000-8000-000000000001".into(),
            time_unix_nano: 1_700_000_000_000_000_000,
            payload: Some(Payload::Alert(alert)),
            ..Default::default()
        };
        match convert(0, &e.encode_to_vec().into()).unwrap() {
            Row::Alert(a) => a,
            Row::Event(e) => panic!("an alert became an event row: {e:?}"),
        }
    }

    #[test]
    fn workload_and_host_network_reach_labels_summary_and_detail() {
        let a = row(BypassAlert {
            node: "node-a".into(),
            pod_namespace: "payments".into(),
            pod_name: "api-7c9d8b5f6d-2xk4p".into(),
            container: "main".into(),
            workload: "Deployment/api".into(),
            host_network: true,
            ..Default::default()
        });
        assert_eq!((a.workload.as_str(), a.host_network), ("Deployment/api", 1));
        let n = Notice::new(&a, None, Duration::from_secs(60));
        assert_eq!(n.labels["workload"], "Deployment/api");
        assert_eq!(n.labels["host_network"], "true");
        assert!(
            n.annotations["summary"]
                .starts_with("payments/api-7c9d8b5f6d-2xk4p container main of Deployment/api (host network) on node node-a"),
            "{:?}",
            n.annotations
        );
        assert_eq!(n.detail["workload"], "Deployment/api");
        assert_eq!(n.detail["host_network"], true);

        // A bare pod on the pod network: no empty workload label, no host_network label, and
        // a different incident from the Deployment's.
        let bare = row(BypassAlert {
            node: "node-a".into(),
            pod_namespace: "payments".into(),
            pod_name: "api-7c9d8b5f6d-2xk4p".into(),
            container: "main".into(),
            ..Default::default()
        });
        let m = Notice::new(&bare, None, Duration::from_secs(60));
        assert!(!m.labels.contains_key("workload"), "{:?}", m.labels);
        assert!(!m.labels.contains_key("host_network"), "{:?}", m.labels);
        assert_eq!(m.detail["host_network"], false);
        assert_ne!(m.fingerprint, n.fingerprint);
    }
}
