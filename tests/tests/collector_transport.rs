//! The collector's transport with the real binaries: a plaintext (h2c) client on the TLS ingest
//! port is refused and nothing it sent is stored; a collector given no certificate refuses to
//! start unless told `--insecure-plaintext`; its dead-letter file is owner-only.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use gatehouse_tests::apiserver::ApiServerOptions;
use gatehouse_tests::clickhouse::TestClickHouse;
use gatehouse_tests::collector_proc::{CollectorPki, CollectorProc};
use gatehouse_tests::fixture::GatewayEnv;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// One unlabelled sample of the gateway's /metrics.
async fn gateway_metric(env: &GatewayEnv, name: &str) -> Option<f64> {
    let (_, metrics) = env.gw.ops_get("/metrics").await.ok()?;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
}

/// A gRPC `Ingest/Ship` call over plaintext HTTP/2 (prior knowledge) with a valid ingest token:
/// what any h2c client would send. Returns what went wrong, or the HTTP answer it got.
async fn h2c_ship(addr: &str, token: &str) -> Result<String, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
    let driver = tokio::spawn(conn);
    // An empty gRPC message frame (uncompressed, length 0): an empty ShipBatch.
    let req = http::Request::post(format!("http://{addr}/gatehouse.v1.Ingest/Ship"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), send.send_request(req)).await;
    driver.abort();
    match answer {
        Err(_) => Err("no answer within 10s".into()),
        Ok(Err(e)) => Err(format!("request: {e}")),
        Ok(Ok(resp)) => Ok(format!("{} {:?}", resp.status(), resp.headers())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_client_on_the_tls_port_is_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let ch = TestClickHouse::start(dir.path()).await.unwrap();
    let pki = CollectorPki::write(dir.path()).unwrap();
    let mut args = ch.collector_args();
    args.extend(pki.args());
    args.push("--batch-period=100ms".into());
    let col = CollectorProc::start(dir.path(), 0, &args).await.unwrap();
    assert_eq!(mode(&col.dead_letter), 0o600, "dead-letter file mode");

    // A raw h2c client holding a valid token: the TLS listener never speaks HTTP/2 to it.
    let raw = h2c_ship(&col.addr, &pki.token).await;
    assert!(raw.is_err(), "a plaintext gRPC call was answered: {raw:?}");

    // The real gateway told to ship to the TLS port over http:// with a valid token: kubectl
    // still works (the journal holds it), shipping fails and says so, nothing reaches ClickHouse.
    let token_file = dir.path().join("gw-token");
    std::fs::write(&token_file, &pki.token).unwrap();
    let env = GatewayEnv::start(
        ApiServerOptions::default(),
        &[
            format!("--collector-url=http://{}", col.addr),
            format!("--collector-token-file={}", token_file.display()),
        ],
    )
    .await
    .unwrap();
    let got = env
        .agent
        .run(&["get", "configmap", "app-config", "-n", "payments"])
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(got.stdout.contains("app-config"), "{got}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let retries = gateway_metric(&env, "gatehouse_gateway_shipper_retries_total").await;
        let backlog = gateway_metric(&env, "gatehouse_gateway_shipper_unacked_bytes").await;
        if retries.is_some_and(|r| r >= 2.0) && backlog.is_some_and(|b| b > 0.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "retries {retries:?} backlog {backlog:?}; gateway log:\n{}",
            env.gw.log.lock().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let warned: Vec<String> = env
        .gw
        .log
        .lock()
        .iter()
        .filter(|l| l.contains("shipping interrupted"))
        .cloned()
        .collect();
    assert!(
        !warned.is_empty(),
        "the gateway does not say shipping fails; log:\n{}",
        env.gw.log.lock().join("\n")
    );
    assert!(!env.events().unwrap().is_empty(), "the journal holds it");
    let stored = ch.query_text("SELECT count() FROM events").await.unwrap();
    assert_eq!(stored.trim(), "0", "plaintext ingest stored something");
    let acked = gateway_metric(&env, "gatehouse_gateway_shipper_events_acked_total").await;
    assert!(acked.is_none_or(|a| a == 0.0), "acked {acked:?}");
}

/// `collector serve` with `args` and no listener flags of the test helper: (exit code, stderr)
/// if it exits within 20 s, or `None` if it is still running (then it is killed).
async fn serve_exit(args: &[String]) -> Option<(Option<i32>, String)> {
    let bin = gatehouse_tests::binaries::path("collector").unwrap();
    let mut child = tokio::process::Command::new(bin)
        .arg("serve")
        .args(["--listen=127.0.0.1:0", "--ops-listen=127.0.0.1:0"])
        .args(args)
        .env("LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(20), child.wait()).await {
        Ok(status) => {
            let mut err = String::new();
            let mut pipe = child.stderr.take().unwrap();
            tokio::io::AsyncReadExt::read_to_string(&mut pipe, &mut err)
                .await
                .unwrap();
            Some((status.unwrap().code(), err))
        }
        Err(_) => {
            child.kill().await.unwrap();
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_certificate_the_collector_starts_only_when_told_insecure_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let pki = CollectorPki::write(dir.path()).unwrap();
    let dead_letter = dir.path().join("refused-start-dl.ndjson");
    let base = vec![
        format!("--ingest-token-file={}", pki.token_file.display()),
        format!("--dead-letter-file={}", dead_letter.display()),
        // Nothing listens here: validation must stop it before ClickHouse is contacted.
        "--clickhouse-url=http://127.0.0.1:1".to_string(),
    ];

    // No certificate, no flag: a configuration error (64) naming both ways out, nothing bound.
    let (code, err) = serve_exit(&base).await.expect("it must not start");
    assert_eq!(code, Some(64), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("--tls-cert") && err.contains("--insecure-plaintext"),
        "{err}"
    );
    assert!(!err.contains("collector listening"), "{err}");
    assert!(!dead_letter.exists(), "it got past validation");

    // The flag together with a certificate is a contradiction, refused by the parser.
    let mut both = pki.args();
    both.extend(base[1..].iter().cloned());
    both.push("--insecure-plaintext".into());
    let (code, err) = serve_exit(&both).await.expect("it must not start");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--insecure-plaintext"), "{err}");

    // Told so, it serves h2c, and the real gateway ships to it over http://.
    let ch = TestClickHouse::start(dir.path()).await.unwrap();
    let mut args = ch.collector_args();
    args.extend([
        format!("--ingest-token-file={}", pki.token_file.display()),
        "--insecure-plaintext".to_string(),
        "--batch-period=100ms".to_string(),
    ]);
    let col = CollectorProc::start(dir.path(), 0, &args).await.unwrap();
    let listening = col
        .log
        .lock()
        .iter()
        .find(|l| l.contains("collector listening"))
        .cloned()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&listening).unwrap();
    assert_eq!(v["fields"]["tls"], false, "{listening}");
    assert_eq!(mode(&col.dead_letter), 0o600, "dead-letter file mode");
    let token_file = dir.path().join("gw-token");
    std::fs::write(&token_file, &pki.token).unwrap();
    let env = GatewayEnv::start(
        ApiServerOptions::default(),
        &[
            format!("--collector-url=http://{}", col.addr),
            format!("--collector-token-file={}", token_file.display()),
        ],
    )
    .await
    .unwrap();
    env.agent
        .run(&["get", "configmap", "app-config", "-n", "payments"])
        .await
        .unwrap()
        .ok()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let want = env.events().unwrap().len();
        let got = ch
            .query_text("SELECT count(), uniqExact(event_id) FROM events")
            .await
            .unwrap_or_default();
        if want > 0 && got.trim() == format!("{want}\t{want}") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ClickHouse holds {got:?}, the journal {want}; collector log:\n{}",
            col.log.lock().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
