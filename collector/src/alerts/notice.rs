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
        let workload = if a.host_process != 0 {
            format!("host process {} ({})", a.comm, a.exe)
        } else {
            format!("{}/{} container {}", a.namespace, a.pod, a.container)
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
                "{workload} on node {} connected to the API server at {} without the gateway ({})",
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
