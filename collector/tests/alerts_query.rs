//! The alerts read side against the real ClickHouse engine: `ListAlerts` filters (node,
//! namespace, pod, workload, matched_by, action, time, limit), newest first with redeliveries
//! folded, reader groups and the access audit; and the real `gatehouse alerts` CLI over it.
#![allow(clippy::unwrap_used)]
mod support;

use bytes::Bytes;
use gatehouse_proto::v1::event::Payload;
use gatehouse_proto::v1::query_client::QueryClient;
use gatehouse_proto::v1::{BypassAlert, Endpoint, Event, ListAlertsRequest, Verdict};
use gatehouse_tests::collector_proc::CollectorPki;
use http_body_util::{BodyExt, Empty};
use serde_json::Value;
use support::*;

/// `GET url` over HTTPS trusting the collector's test CA: (status, body).
async fn get(pki: &CollectorPki, url: &str, token: &str) -> (u16, Value) {
    let req = http::Request::get(url)
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = https(pki).request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

/// An alert `hours_ago` hours old.
fn alert(
    hours_ago: i64,
    node: &str,
    ns: &str,
    pod: &str,
    verdict: Verdict,
    matched_by: &str,
) -> Event {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let t = now - hours_ago * 3_600_000_000_000;
    Event {
        event_id: uuid::Uuid::now_v7().to_string(),
        time_unix_nano: t,
        payload: Some(Payload::Alert(BypassAlert {
            node: node.into(),
            pod_namespace: ns.into(),
            pod_name: pod.into(),
            container: "app".into(),
            pid: 4242,
            comm: "curl".into(),
            cmdline: format!("curl -k https://10.96.0.1/api # {pod}"),
            original_destination: Some(Endpoint {
                ip: "10.96.0.1".into(),
                port: 443,
            }),
            verdict: verdict as i32,
            count: 2,
            matched_by: matched_by.into(),
            workload: format!("Deployment/{ns}"),
            window_start_unix_nano: t - 60_000_000_000,
            window_end_unix_nano: t,
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// The real `gatehouse` CLI: (exit code, stdout, stderr).
async fn gatehouse(args: &[String]) -> (i32, String, String) {
    let bin = gatehouse_tests::binaries::path("gatehouse").unwrap();
    let out = tokio::process::Command::new(bin)
        .args(args)
        .env_remove("GATEHOUSE_TOKEN")
        .env_remove("GATEHOUSE_COLLECTOR")
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn pods(alerts: &[Event]) -> Vec<String> {
    alerts
        .iter()
        .map(|e| match &e.payload {
            Some(Payload::Alert(a)) => a.pod_name.clone(),
            other => panic!("not an alert: {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_filtered_newest_first_gated_audited_and_printed_by_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let ch = clickhouse(tmp.path()).await;
    let pki = CollectorPki::write(tmp.path()).unwrap();
    let (col, issuer) = reader_gated_collector(tmp.path(), &ch, &pki).await;

    let web1 = alert(
        3,
        "node-a",
        "payments",
        "web-1",
        Verdict::Allowed,
        "service_vip",
    );
    let web2 = alert(
        2,
        "node-a",
        "payments",
        "web-2",
        Verdict::Blocked,
        "endpoint_ip",
    );
    let sys = alert(
        1,
        "node-b",
        "kube-system",
        "sys-1",
        Verdict::Allowed,
        "node_ip",
    );
    // web-1 journaled twice: a redelivery with the same event id is one alert.
    let events = [web1.clone(), web2.clone(), sys.clone(), web1.clone()];
    let j = journal(&tmp.path().join("journal"), &events);
    ship_all(&j, &col, &pki).await;

    let q = QueryClient::new(channel(&col.addr, &pki, None).await.unwrap());
    let mallory = issuer.token("mallory", &["dev"], "gatehouse").unwrap();
    assert_reader_gate(
        |token| {
            let mut q = q.clone();
            async move {
                let req = maybe_authed(ListAlertsRequest::default(), token.as_deref());
                q.list_alerts(req).await
            }
        },
        &mallory,
    )
    .await;

    let auditor = issuer.token("ada", &["auditors"], "gatehouse").unwrap();
    let list = |f: ListAlertsRequest| {
        let mut q = q.clone();
        let auditor = auditor.clone();
        async move { q.list_alerts(authed(f, &auditor)).await }
    };
    let all = list(ListAlertsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .alerts;
    assert_eq!(
        all,
        vec![sys.clone(), web2.clone(), web1.clone()],
        "newest first, each stored alert once and byte for byte"
    );
    let cases = [
        (
            ListAlertsRequest {
                node: "node-a".into(),
                ..Default::default()
            },
            vec!["web-2", "web-1"],
        ),
        (
            ListAlertsRequest {
                action: "blocked".into(),
                ..Default::default()
            },
            vec!["web-2"],
        ),
        (
            ListAlertsRequest {
                namespace: "payments".into(),
                matched_by: "service_vip".into(),
                ..Default::default()
            },
            vec!["web-1"],
        ),
        (
            ListAlertsRequest {
                workload: "Deployment/kube-system".into(),
                ..Default::default()
            },
            vec!["sys-1"],
        ),
        (
            ListAlertsRequest {
                pod: "web-1".into(),
                ..Default::default()
            },
            vec!["web-1"],
        ),
        (
            ListAlertsRequest {
                since_unix_nano: web2.time_unix_nano,
                until_unix_nano: web2.time_unix_nano,
                ..Default::default()
            },
            vec!["web-2"],
        ),
        (
            ListAlertsRequest {
                limit: 1,
                ..Default::default()
            },
            vec!["sys-1"],
        ),
        (
            ListAlertsRequest {
                node: "node-c".into(),
                ..Default::default()
            },
            vec![],
        ),
    ];
    for (filter, want) in cases {
        let got = list(filter.clone()).await.unwrap().into_inner().alerts;
        assert_eq!(pods(&got), want, "{filter:?}");
    }
    let err = list(ListAlertsRequest {
        action: "dropped".into(),
        ..Default::default()
    })
    .await
    .err()
    .unwrap();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().starts_with("action: "), "{err}");

    let audit = ch
        .query_text(
            "SELECT reader, allowed, count() FROM access_audit WHERE method = 'ListAlerts' \
             GROUP BY reader, allowed ORDER BY reader",
        )
        .await
        .unwrap();
    assert_eq!(audit.trim_end(), "\t0\t1\nada\t1\t10\nmallory\t0\t1");

    // The JSON API, through the same query and audit.
    let base = format!(
        "https://localhost:{}/v1/alerts",
        col.addr.rsplit(':').next().unwrap()
    );
    let (code, body) = get(
        &pki,
        &format!("{base}?node=node-a&action=blocked"),
        &auditor,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let got = body["alerts"].as_array().unwrap();
    assert_eq!(got.len(), 1, "{body}");
    assert_eq!(got[0]["event_id"], web2.event_id);
    assert_eq!(got[0]["matched_by"], "endpoint_ip");
    let (code, body) = get(&pki, &format!("{base}?user=ada"), &auditor).await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    let (code, body) = get(&pki, &base, &mallory).await;
    assert_eq!(code, 403, "{body}");
    let audit = ch
        .query_text(
            "SELECT reader, allowed, count() FROM access_audit WHERE method = 'GET /v1/alerts' \
             GROUP BY reader, allowed ORDER BY reader",
        )
        .await
        .unwrap();
    assert_eq!(audit.trim_end(), "ada\t1\t2\nmallory\t0\t1");

    // The CLI, over the same API.
    let ca = tmp.path().join("collector-ca.pem");
    std::fs::write(&ca, &pki.server_ca.pem).unwrap();
    let source = |token: &str| {
        vec![
            format!("--collector=https://{}", col.addr),
            format!("--collector-ca={}", ca.display()),
            "--collector-server-name=localhost".to_string(),
            format!("--token={token}"),
        ]
    };
    let mut args = vec![
        "alerts".to_string(),
        "--node=node-a".into(),
        "--json".into(),
    ];
    args.extend(source(&auditor));
    let (code, out, err) = gatehouse(&args).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0]["pod"], "web-2");
    assert_eq!(lines[0]["action"], "blocked");
    assert_eq!(lines[0]["event_id"], web2.event_id);
    assert_eq!(lines[1]["pod"], "web-1");
    assert_eq!(lines[1]["count"], 2);
    assert_eq!(lines[1]["original_destination"], "10.96.0.1:443");

    let mut args = vec![
        "alerts".to_string(),
        "--namespace=kube-system".into(),
        "--since=90m".into(),
    ];
    args.extend(source(&auditor));
    let (code, out, err) = gatehouse(&args).await;
    assert_eq!(code, 0, "{err}");
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows[0].starts_with("TIME"), "{out}");
    assert!(rows[1].contains("kube-system/sys-1"), "{out}");
    assert!(rows[1].contains("node_ip"), "{out}");

    // Refused, misspelt and missing settings: one line each, with its exit code.
    let mut args = vec!["alerts".to_string()];
    args.extend(source(&mallory));
    let (code, _, err) = gatehouse(&args).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("denied the read"), "{err}");
    let mut args = vec!["alerts".to_string(), "--since=last tuesday".into()];
    args.extend(source(&auditor));
    let (code, _, err) = gatehouse(&args).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid time \"last tuesday\""), "{err}");
    let (code, _, err) = gatehouse(&["alerts".to_string()]).await;
    assert_eq!(code, 64, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("pass --collector"), "{err}");
}
