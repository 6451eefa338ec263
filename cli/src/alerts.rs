//! `gatehouse alerts`: the node agents' bypass alerts as the collector stores them, printed as
//! a table or JSON lines (one alert per line, the same object `GET /v1/alerts` returns).
use crate::error::CliError;
use gatehouse_proto::json::{action, alert_json, endpoint, rfc3339};
use gatehouse_proto::v1::{Event, event::Payload};
use std::io::Write;

/// Prints alerts (newest first, as the collector returns them).
pub fn print(alerts: &[Event], json: bool, out: &mut dyn Write) -> Result<(), CliError> {
    if json {
        for e in alerts {
            writeln!(out, "{}", alert_json(e))?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "{:<24}  {:<16}  {:<32}  {:<7}  {:<11}  {:<21}  {:>5}  PROCESS",
        "TIME", "NODE", "NAMESPACE/POD", "ACTION", "MATCHED BY", "DESTINATION", "COUNT"
    )?;
    for e in alerts {
        let Some(Payload::Alert(a)) = &e.payload else {
            continue;
        };
        let pod = if a.host_process {
            "(host process)".to_string()
        } else {
            format!("{}/{}", a.pod_namespace, a.pod_name)
        };
        let process = if a.cmdline.is_empty() {
            format!("{} (pid {})", a.comm, a.pid)
        } else {
            format!("{} (pid {})", a.cmdline, a.pid)
        };
        writeln!(
            out,
            "{:<24}  {:<16}  {:<32}  {:<7}  {:<11}  {:<21}  {:>5}  {}",
            rfc3339(e.time_unix_nano),
            a.node,
            pod,
            action(a),
            a.matched_by,
            endpoint(a.original_destination.as_ref()),
            a.count,
            process
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_proto::v1::{BypassAlert, Endpoint, Verdict};
    use serde_json::Value;

    fn sample() -> Event {
        Event {
            event_id: "0193a3c4-0000-7000-8000-000000000001".into(),
            time_unix_nano: 1_796_083_200_000_000_000,
            payload: Some(Payload::Alert(BypassAlert {
                node: "node-a".into(),
                pod_namespace: "payments".into(),
                pod_name: "web-1".into(),
                pid: 4242,
                comm: "curl".into(),
                cmdline: "curl -k https://10.96.0.1/api".into(),
                original_destination: Some(Endpoint {
                    ip: "10.96.0.1".into(),
                    port: 443,
                }),
                verdict: Verdict::Blocked as i32,
                count: 3,
                matched_by: "service_vip".into(),
                window_start_unix_nano: 1_796_083_200_000_000_000,
                window_end_unix_nano: 1_796_083_260_000_000_000,
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn json_lines_carry_where_what_and_how_often() {
        let mut out = Vec::new();
        print(&[sample()], true, &mut out).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["pod"], "web-1");
        assert_eq!(v["action"], "blocked");
        assert_eq!(v["original_destination"], "10.96.0.1:443");
        assert_eq!(v["count"], 3);
        assert_eq!(v["first_seen"], "2026-12-01T00:00:00.000Z");
        assert_eq!(v["last_seen"], "2026-12-01T00:01:00.000Z");
    }

    #[test]
    fn table_has_one_row_per_alert() {
        let mut out = Vec::new();
        print(&[sample(), sample()], false, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("TIME"));
        assert!(lines[1].contains("payments/web-1"), "{text}");
        assert!(lines[1].contains("blocked"), "{text}");
        assert!(
            lines[1].contains("curl -k https://10.96.0.1/api (pid 4242)"),
            "{text}"
        );
    }
}
