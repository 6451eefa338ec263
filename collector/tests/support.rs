//! Shared helpers of the collector integration tests: events, journals, shipping, gRPC and HTTPS
//! clients, the reader gate.
#![allow(dead_code, clippy::unwrap_used)]
use bytes::Bytes;
use gatehouse_journal::{Journal, JournalOptions};
use gatehouse_proto::v1::event::Payload;
use gatehouse_proto::v1::ingest_client::IngestClient;
use gatehouse_proto::v1::{Event, Identity, KubeRequest, RequestStarted, ResponseFinished};
use gatehouse_shipper::{Shipper, ShipperConfig, TlsConfig};
use gatehouse_tests::clickhouse::TestClickHouse;
use gatehouse_tests::collector_proc::{CollectorPki, CollectorProc};
use gatehouse_tests::oidc::TestIssuer;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prost::Message;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
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

/// A collector whose reads are gated on OIDC tokens from the returned issuer: only the
/// `auditors` group may read.
pub async fn reader_gated_collector(
    dir: &Path,
    ch: &TestClickHouse,
    pki: &CollectorPki,
) -> (CollectorProc, TestIssuer) {
    let issuer = TestIssuer::start().await.unwrap();
    let issuer_ca = dir.join("issuer-ca.pem");
    std::fs::write(&issuer_ca, &issuer.ca_pem).unwrap();
    let oidc = [
        format!("--oidc-issuer-url={}", issuer.url),
        "--oidc-audience=gatehouse".to_string(),
        format!("--oidc-ca-file={}", issuer_ca.display()),
        "--oidc-username-prefix=-".to_string(),
        "--reader-groups=auditors".to_string(),
    ];
    let oidc: Vec<&str> = oidc.iter().map(String::as_str).collect();
    (collector(dir, ch, pki, &oidc).await, issuer)
}

/// Ships all of `j` to `col` with the real shipper (server TLS and the ingest token) and waits
/// until every record is acknowledged, so reads see all of it.
pub async fn ship_all(j: &Arc<Journal>, col: &CollectorProc, pki: &CollectorPki) {
    let mut cfg = ShipperConfig::new(format!("https://{}", col.addr));
    cfg.tls = Some(TlsConfig {
        ca_pem: pki.server_ca.pem.clone().into_bytes(),
        identity: None,
        domain_name: Some("localhost".into()),
    });
    cfg.token = Some(pki.token.clone());
    let task = tokio::spawn(
        Shipper::new(j.clone(), cfg)
            .unwrap()
            .run(tokio::time::sleep(Duration::from_secs(60))),
    );
    assert!(
        wait_acked(j, Duration::from_secs(60)).await,
        "the journal was not acknowledged within 60s; collector log:\n{}",
        col.log.lock().join("\n")
    );
    task.abort();
}

/// `msg` with `token` as its bearer token.
pub fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// The reader gate of one gRPC read: `read(None)` (no token) is unauthenticated and
/// `read(Some(outsider))`, a valid identity outside the reader groups, is denied. Both land in
/// the access audit, in that order.
pub async fn assert_reader_gate<T, F, Fut>(read: F, outsider: &str)
where
    T: std::fmt::Debug,
    F: Fn(Option<String>) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let err = read(None).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
    let err = read(Some(outsider.to_string())).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
}

/// `msg`, with `token` as its bearer token if there is one.
pub fn maybe_authed<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    match token {
        Some(t) => authed(msg, t),
        None => tonic::Request::new(msg),
    }
}

pub type Https = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// An HTTPS client trusting the collector's test CA, offering HTTP/2 and HTTP/1.1 (ALPN).
pub fn https(pki: &CollectorPki) -> Https {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.server_ca.pem.as_bytes()).unwrap())
        .unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(
        rustls::crypto::ring::default_provider().into(),
    )
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
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
