//! A stored bypass alert as JSON: `gatehouse alerts --json` lines and the collector's
//! `GET /v1/alerts` objects (where, who, what it reached, how often).
use super::rfc3339;
use crate::v1::{BypassAlert, Endpoint, Event, Verdict, event::Payload};
use serde_json::{Value, json};

/// An endpoint as `ip:port` (`[ip]:port` for IPv6), empty when unknown.
pub fn endpoint(e: Option<&Endpoint>) -> String {
    match e {
        Some(e) if e.ip.contains(':') => format!("[{}]:{}", e.ip, e.port),
        Some(e) => format!("{}:{}", e.ip, e.port),
        None => String::new(),
    }
}

pub fn action(a: &BypassAlert) -> &'static str {
    match a.verdict() {
        Verdict::Allowed => "allowed",
        Verdict::Blocked => "blocked",
        Verdict::Unspecified => "unspecified",
    }
}

/// One stored alert event as JSON: where, who, what it reached, and how often (the count and
/// the dedup window it covers). `Null` for an event that is not an alert.
pub fn alert_json(e: &Event) -> Value {
    let Some(Payload::Alert(a)) = &e.payload else {
        return Value::Null;
    };
    let producer = e.producer.clone().unwrap_or_default();
    json!({
        "event_id": e.event_id,
        "time": rfc3339(e.time_unix_nano),
        "time_unix_nano": e.time_unix_nano,
        "agent": producer.instance,
        "node": a.node,
        "namespace": a.pod_namespace,
        "pod": a.pod_name,
        "container": a.container,
        "workload": a.workload,
        "service_account": a.service_account,
        "host_network": a.host_network,
        "host_process": a.host_process,
        "pid": a.pid,
        "uid": a.uid,
        "comm": a.comm,
        "exe": a.exe,
        "cmdline": a.cmdline,
        "original_destination": endpoint(a.original_destination.as_ref()),
        "final_destination": endpoint(a.final_destination.as_ref()),
        "matched_by": a.matched_by,
        "action": action(a),
        "reasons": a.reasons,
        "count": a.count,
        "first_seen": rfc3339(a.window_start_unix_nano),
        "last_seen": rfc3339(a.window_end_unix_nano),
    })
}
