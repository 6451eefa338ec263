//! Bypass alert routing end to end: alerts shipped to the real collector binary (stored in the
//! ClickHouse engine) reach a local Alertmanager v2 receiver and a local JSON webhook; the
//! receiver's 500s are retried, duplicates and alerts over the rate limit are not sent.
#![allow(clippy::unwrap_used)]
mod support;

use bytes::Bytes;
use gatehouse_proto::v1::event::Payload;
use gatehouse_proto::v1::{BypassAlert, Endpoint, Event, JournalRecord, ShipBatch, Verdict};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;
use tokio_stream::StreamExt;

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    idempotency_key: String,
    authorization: String,
    body: Value,
    status: u16,
}

/// A local HTTP receiver that answers 500 to its first `fail_first` requests, then 200.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

async fn receiver(fail_first: usize) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let n = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (g, n) = (g.clone(), n.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let (g, n) = (g.clone(), n.clone());
                    async move {
                        let header = |h: &str| {
                            req.headers()
                                .get(h)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_string()
                        };
                        let (path, key, auth) = (
                            req.uri().path().to_string(),
                            header("idempotency-key"),
                            header("authorization"),
                        );
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let status = if n.fetch_add(1, Ordering::SeqCst) < fail_first {
                            500
                        } else {
                            200
                        };
                        g.lock().unwrap().push(Received {
                            path,
                            idempotency_key: key,
                            authorization: auth,
                            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                            status,
                        });
                        let mut resp = http::Response::new(Full::new(Bytes::from_static(b"{}")));
                        *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Receiver { url, got }
}

fn alert(id: &str, pod: &str) -> Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    Event {
        event_id: id.to_string(),
        time_unix_nano: now,
        payload: Some(Payload::Alert(BypassAlert {
            node: "node-a".into(),
            pod_namespace: "payments".into(),
            pod_name: pod.into(),
            container: "app".into(),
            pid: 4242,
            tgid: 4242,
            uid: 1000,
            comm: "curl".into(),
            cmdline: "curl -k https://10.96.0.1/api".into(),
            original_destination: Some(Endpoint {
                ip: "10.96.0.1".into(),
                port: 443,
            }),
            final_destination: Some(Endpoint {
                ip: "172.18.0.2".into(),
                port: 6443,
            }),
            verdict: Verdict::Allowed as i32,
            count: 1,
            matched_by: "service_vip".into(),
            workload: "Deployment/web".into(),
            host_network: true,
            ..Default::default()
        })),
        ..Default::default()
    }
    .encode_to_vec()
    .into()
}

async fn metrics(ops: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(ops).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn counter(page: &str, sink: &str, outcome: &str) -> u64 {
    let want = format!(
        "gatehouse_collector_alert_notifications_total{{sink=\"{sink}\",outcome=\"{outcome}\"}} "
    );
    page.lines()
        .find_map(|l| l.strip_prefix(&want))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_alertmanager_and_webhook_with_retry_dedup_and_rate_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let ch = clickhouse(tmp.path()).await;
    let pki = gatehouse_tests::collector_proc::CollectorPki::write(tmp.path()).unwrap();
    let am = receiver(2).await;
    let hook = receiver(0).await;
    let token_file = tmp.path().join("webhook-token");
    std::fs::write(&token_file, "hook-secret\n").unwrap();
    let col = collector(
        tmp.path(),
        &ch,
        &pki,
        &[
            &format!("--alertmanager-url={}", am.url),
            &format!("--alert-webhook-url={}/hooks/gatehouse", hook.url),
            &format!("--alert-webhook-token-file={}", token_file.display()),
            "--alert-link-template=https://grafana.example/d/bypass?var-event_id={event_id}",
            "--alert-retry-backoff=100ms",
            "--alert-rate-limit=3",
            "--alert-dedup-window=10m",
        ],
    )
    .await;
    let ops = col
        .log
        .lock()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|v| v["fields"]["ops_listen"].as_str().map(str::to_string))
        .unwrap();

    let a1 = uuid::Uuid::now_v7().to_string();
    // a1 twice (a redelivery), the same incident under a new id, then four other pods.
    let mut alerts = vec![
        (a1.clone(), "web-1"),
        (a1.clone(), "web-1"),
        (uuid::Uuid::now_v7().to_string(), "web-1"),
    ];
    for pod in ["web-2", "web-3", "web-4", "web-5"] {
        alerts.push((uuid::Uuid::now_v7().to_string(), pod));
    }
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", pki.token).parse().unwrap(),
    );
    let mut client = ingest(channel(&col.addr, &pki, None).await.unwrap());
    let mut acks = client.ship(req).await.unwrap().into_inner();
    for (i, (id, pod)) in alerts.iter().enumerate() {
        let seq = i as u64 + 1;
        tx.send(ShipBatch {
            batch_seq: seq,
            records: vec![JournalRecord {
                end: seq * 100,
                event: alert(id, pod),
            }],
        })
        .await
        .unwrap();
        // One at a time, so the router sees them in this order.
        let ack = tokio::time::timeout(Duration::from_secs(30), acks.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(ack.batch_seq, seq);
    }

    // Alertmanager: a1 fails twice (500) and is retried, then web-2 and web-3; the limit of 3
    // per minute holds back web-4 and web-5.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while (am.got.lock().unwrap().len() < 5 || hook.got.lock().unwrap().len() < 3)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Anything still to come (a missed dedup, a rate limit not applied) would arrive by now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = || col.log.lock().join("\n");
    let got = am.got.lock().unwrap().clone();
    assert_eq!(
        got.iter().map(|r| r.status).collect::<Vec<_>>(),
        [500, 500, 200, 200, 200],
        "alertmanager requests; log:\n{}",
        log()
    );
    assert!(got.iter().all(|r| r.path == "/api/v2/alerts"));
    assert_eq!(got[0].body, got[2].body, "the retry resends the same alert");
    let pods: Vec<&str> = got[2..]
        .iter()
        .map(|r| r.body[0]["labels"]["pod"].as_str().unwrap())
        .collect();
    assert_eq!(pods, ["web-1", "web-2", "web-3"]);
    let first = &got[2].body[0];
    assert_eq!(first["labels"]["alertname"], "GatehouseApiServerBypass");
    assert_eq!(first["labels"]["namespace"], "payments");
    assert_eq!(first["labels"]["node"], "node-a");
    assert_eq!(first["labels"]["matched_by"], "service_vip");
    assert_eq!(first["labels"]["destination"], "172.18.0.2:6443");
    assert_eq!(first["labels"]["workload"], "Deployment/web");
    assert_eq!(first["labels"]["host_network"], "true");
    assert_eq!(first["annotations"]["event_id"], a1.as_str());
    assert!(
        first["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("payments/web-1 container app of Deployment/web (host network) on node"),
        "{first}"
    );
    assert_eq!(
        first["generatorURL"],
        format!("https://grafana.example/d/bypass?var-event_id={a1}")
    );
    let starts = humantime::parse_rfc3339(first["startsAt"].as_str().unwrap()).unwrap();
    let ends = humantime::parse_rfc3339(first["endsAt"].as_str().unwrap()).unwrap();
    assert!(ends > starts + Duration::from_secs(25 * 60), "{first}");

    let got = hook.got.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "webhook requests: {got:?}");
    assert!(got.iter().all(|r| r.path == "/hooks/gatehouse"
        && r.authorization == "Bearer hook-secret"
        && r.status == 200));
    assert_eq!(got[0].idempotency_key, a1);
    assert_eq!(got[0].body["id"], a1.as_str());
    assert_eq!(got[0].body["kind"], "BypassAlert");
    assert_eq!(
        got[0].body["alert"]["cmdline"],
        "curl -k https://10.96.0.1/api"
    );
    assert_eq!(got[0].body["alert"]["pid"], 4242);
    assert_eq!(got[0].body["alert"]["workload"], "Deployment/web");
    assert_eq!(got[0].body["alert"]["host_network"], true);
    let fps: std::collections::HashSet<&str> = got
        .iter()
        .map(|r| r.body["fingerprint"].as_str().unwrap())
        .collect();
    assert_eq!(
        fps.len(),
        3,
        "distinct incidents have distinct fingerprints"
    );

    let page = metrics(&ops).await;
    assert_eq!(counter(&page, "router", "deduplicated"), 2, "{page}");
    assert_eq!(counter(&page, "router", "rate_limited"), 2, "{page}");
    assert_eq!(counter(&page, "alertmanager", "retried"), 2, "{page}");
    assert_eq!(counter(&page, "alertmanager", "sent"), 3, "{page}");
    assert_eq!(counter(&page, "webhook", "sent"), 3, "{page}");
    // Every alert is stored, whether or not it was sent.
    assert_eq!(
        eventually(
            &ch,
            "SELECT uniqExact(event_id) FROM alerts",
            "6",
            Duration::from_secs(10)
        )
        .await,
        "6"
    );
    // Stored with the alert, for the Grafana panels and SQL.
    assert_eq!(
        ch.query_text("SELECT DISTINCT workload, host_network FROM alerts")
            .await
            .unwrap(),
        "Deployment/web\t1\n"
    );
}

#[tokio::test]
async fn a_bad_alert_receiver_url_is_a_config_error() {
    let tmp = tempfile::tempdir().unwrap();
    let tokens = tmp.path().join("tokens");
    std::fs::write(&tokens, "gw tok\n").unwrap();
    let out = tokio::process::Command::new(gatehouse_tests::binaries::path("collector").unwrap())
        .args([
            "serve",
            "--alertmanager-url=ftp://am.example",
            "--no-migrate",
            // Past the listener check (TLS or an explicit plaintext), so the alert flags are
            // what is refused.
            "--insecure-plaintext",
        ])
        .arg(format!("--ingest-token-file={}", tokens.display()))
        .arg(format!(
            "--dead-letter-file={}",
            tmp.path().join("dl").display()
        ))
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--alertmanager-url: \"ftp://am.example\" is not an http(s) URL"),
        "{err}"
    );
}
