//! Shared helpers of the collector integration tests: events, journals, gRPC clients.
#![allow(dead_code, clippy::unwrap_used)]
use gatehouse_journal::{Journal, JournalOptions};
use gatehouse_proto::v1::event::Payload;
use gatehouse_proto::v1::ingest_client::IngestClient;
use gatehouse_proto::v1::{Event, Identity, KubeRequest, RequestStarted, ResponseFinished};
use gatehouse_tests::clickhouse::TestClickHouse;
use gatehouse_tests::collector_proc::{CollectorPki, CollectorProc};
use prost::Message;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity as TlsIdentity};

/// Session events: for each of `sessions` sessions, `per` request/response pairs, stamped in the
/// last hour.
pub fn session_events(user: &str, sessions: usize, per: usize) -> Vec<Event> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let mut out = Vec::new();
    for _ in 0..sessions {
        let session = uuid::Uuid::now_v7().to_string();
        let mut seq = 0;
        for i in 0..per {
            let cmd = format!("kubectl get configmap cm-{i} -n team-a");
            let req_id = uuid::Uuid::now_v7().to_string();
            seq += 1;
            out.push(Event {
                event_id: req_id.clone(),
                session_id: session.clone(),
                seq,
                time_unix_nano: now - 3_600_000_000_000 + (seq as i64) * 1_000_000,
                identity: Some(Identity {
                    username: user.to_string(),
                    groups: vec!["dev".into()],
                    ..Default::default()
                }),
                command_id: uuid::Uuid::now_v7().to_string(),
                payload: Some(Payload::Request(RequestStarted {
                    request: Some(KubeRequest {
                        method: "GET".into(),
                        path: format!("/api/v1/namespaces/team-a/configmaps/cm-{i}"),
                        verb: "get".into(),
                        api_version: "v1".into(),
                        resource: "configmaps".into(),
                        namespace: "team-a".into(),
                        name: format!("cm-{i}"),
                        ..Default::default()
                    }),
                    command: cmd,
                    ..Default::default()
                })),
                ..Default::default()
            });
            seq += 1;
            out.push(Event {
                event_id: uuid::Uuid::now_v7().to_string(),
                session_id: session.clone(),
                seq,
                time_unix_nano: now - 3_600_000_000_000 + (seq as i64) * 1_000_000,
                identity: Some(Identity {
                    username: user.to_string(),
                    groups: vec!["dev".into()],
                    ..Default::default()
                }),
                payload: Some(Payload::Response(ResponseFinished {
                    request_event_id: req_id,
                    status_code: if i % 5 == 4 { 404 } else { 200 },
                    ..Default::default()
                })),
                ..Default::default()
            });
        }
    }
    out
}

pub fn journal(dir: &Path, events: &[Event]) -> Arc<Journal> {
    let (j, _) = Journal::open(
        dir,
        JournalOptions {
            max_segment_bytes: 16 << 10,
            ..Default::default()
        },
    )
    .unwrap();
    for e in events {
        j.append(&e.encode_to_vec()).unwrap();
    }
    j
}

pub async fn clickhouse(dir: &Path) -> TestClickHouse {
    TestClickHouse::start(dir).await.unwrap()
}

pub async fn collector(
    dir: &Path,
    ch: &TestClickHouse,
    pki: &CollectorPki,
    extra: &[&str],
) -> CollectorProc {
    collector_on(dir, 0, ch, pki, extra).await
}

pub async fn collector_on(
    dir: &Path,
    port: u16,
    ch: &TestClickHouse,
    pki: &CollectorPki,
    extra: &[&str],
) -> CollectorProc {
    let mut args = ch.collector_args();
    args.extend(pki.args());
    if !extra.iter().any(|a| a.starts_with("--batch-period")) {
        args.push("--batch-period=100ms".into());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    CollectorProc::start(dir, port, &args).await.unwrap()
}

/// A channel to the collector over TLS, optionally with a client certificate.
pub async fn channel(
    addr: &str,
    pki: &CollectorPki,
    client_cert: Option<(&str, &str)>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.server_ca.pem))
        .domain_name("localhost");
    if let Some((cert, key)) = client_cert {
        tls = tls.identity(TlsIdentity::from_pem(cert, key));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
}

pub fn ingest(ch: Channel) -> IngestClient<Channel> {
    IngestClient::new(ch)
}

/// Runs `sql` until its text output equals `want`, for at most `within`.
pub async fn eventually(ch: &TestClickHouse, sql: &str, want: &str, within: Duration) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let got = ch
            .query_text(sql)
            .await
            .unwrap_or_else(|e| format!("error: {e}"));
        if got.trim() == want || tokio::time::Instant::now() > deadline {
            return got.trim().to_string();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the journal's acknowledged offset reaches its end.
pub async fn wait_acked(j: &Journal, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if j.acked_offset() == j.end_offset() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
