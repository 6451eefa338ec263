//! `cargo xtask bench soak`: a long mixed load through the gateway: 200 HTTP/2 clients doing
//! get/list, 20 `kubectl exec -i` sessions echoing through `cat`, 5 `kubectl get --watch` fed by
//! a mutator. Prints the gateway's RSS and open fds over time, errors, p50/p99, and checks that
//! the journal holds exactly the requests that were answered.
use anyhow::Context;
use bytes::Bytes;
use gatehouse_proto::v1::{Event, event::Payload};
use gatehouse_tests::apiserver::ApiServerOptions;
use gatehouse_tests::fixture::{AUDIENCE, GatewayEnv};
use gatehouse_tests::kubectl::Kubectl;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use serde_json::json;
use std::collections::HashSet;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const CLIENTS: usize = 200;
const EXECS: usize = 20;
const WATCHES: usize = 5;
/// ConfigMaps the clients read, and the list they page through.
const CONFIGMAPS: usize = 50;
/// How long one exec session lasts before it is closed and a new one opened.
const EXEC_SESSION: Duration = Duration::from_secs(30);
/// The User-Agent of the HTTP clients: their requests are found in the journal by it.
const UA: &str = "gatehouse-soak/1";

pub fn soak() -> anyhow::Result<()> {
    super::run_release("soak", &["gatehouse-gateway"], || super::block_on(run()))
}

/// A setting from the environment, or its default.
fn setting(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v:?} is not a whole number")),
        Err(_) => Ok(default),
    }
}

#[derive(Default)]
struct Counters {
    /// HTTP requests answered (any status), of which non-2xx.
    answered: AtomicU64,
    non_2xx: AtomicU64,
    /// HTTP requests that got no answer (connection errors, timeouts).
    transport_errors: AtomicU64,
    exec_sessions: AtomicU64,
    exec_echoes: AtomicU64,
    exec_errors: AtomicU64,
    watch_lines: AtomicU64,
    watch_restarts: AtomicU64,
}

async fn run() -> anyhow::Result<()> {
    let secs = setting("GATEHOUSE_SOAK_SECS", 600)?;
    // Each HTTP client waits this long between requests: a fleet of clients and controllers,
    // not a throughput run (`bench gateway` measures that).
    let pause_ms = setting("GATEHOUSE_SOAK_PAUSE_MS", 500)?;
    let duration = Duration::from_secs(secs);

    let mut objects = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}),
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "bench", "namespace": "bench"},
            "spec": {"containers": [{"name": "app", "image": "busybox", "stdin": true}]}
        }),
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "watched", "namespace": "bench"},
            "data": {"n": "0"}
        }),
    ];
    for i in 0..CONFIGMAPS {
        objects.push(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("cm-{i}"), "namespace": "bench"},
            "data": {"payload": "x".repeat(900)}
        }));
    }
    let opts = ApiServerOptions {
        objects,
        ..Default::default()
    };
    let e = GatewayEnv::start(opts, &[]).await?;
    let pid = e.gw.pid().context("the gateway has no pid")?;
    let token = e.issuer.token("soak", &["bench"], AUDIENCE)?;
    let tls = Arc::new(client_tls(&e.gw.ca_pem)?);
    let addr = e.gw.url.trim_start_matches("https://").to_string();
    println!(
        "soak: {CLIENTS} HTTP/2 clients (get/list, {pause_ms} ms apart), {EXECS} exec sessions, {WATCHES} watches for {secs} s"
    );

    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let until = tokio::time::Instant::now() + duration;

    let (start_kib, start_fds) = (rss_kib(pid).unwrap_or(0), fds(pid).unwrap_or(0));
    let sampler = tokio::spawn(async move {
        let (mut max_kib, mut max_fds) = (0u64, 0u64);
        let mut n = 0u64;
        loop {
            let (kib, fd) = (rss_kib(pid).unwrap_or(0), fds(pid).unwrap_or(0));
            max_kib = max_kib.max(kib);
            max_fds = max_fds.max(fd);
            if n.is_multiple_of(6) {
                println!(
                    "  t={:>4}s  gateway RSS {kib:>7} KiB  fds {fd:>5}",
                    started.elapsed().as_secs()
                );
            }
            n += 1;
            if tokio::time::Instant::now() >= until {
                return (max_kib, max_fds);
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });

    let mut tasks = Vec::new();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (tls, addr, token, counters) =
            (tls.clone(), addr.clone(), token.clone(), counters.clone());
        clients.push(tokio::spawn(async move {
            // Spread the clients over the first pause.
            tokio::time::sleep(Duration::from_millis(pause_ms * c as u64 / CLIENTS as u64)).await;
            http_client(c, &tls, &addr, &token, pause_ms, until, &counters).await
        }));
    }
    // The mutator gives the watches something to see.
    {
        let (tls, addr, token, counters) =
            (tls.clone(), addr.clone(), token.clone(), counters.clone());
        tasks.push(tokio::spawn(async move {
            mutator(&tls, &addr, &token, until, &counters).await;
        }));
    }
    for w in 0..EXECS {
        let (k, counters) = (e.agent.clone(), counters.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(250 * w as u64)).await;
            exec_worker(w, &k, until, &counters).await;
        }));
    }
    for _ in 0..WATCHES {
        let (k, counters) = (e.agent.clone(), counters.clone());
        tasks.push(tokio::spawn(async move {
            watch_worker(&k, until, &counters).await;
        }));
    }
    let mut lat = Vec::new();
    for c in clients {
        lat.extend(c.await?);
    }
    for t in tasks {
        t.await?;
    }
    let (max_kib, max_fds) = sampler.await?;
    let (end_kib, end_fds) = (rss_kib(pid).unwrap_or(0), fds(pid).unwrap_or(0));
    let elapsed = started.elapsed().as_secs_f64();

    // Let the last response events land, then stop the gateway so the journal is final.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let journal_dir = e.gw.journal_dir.clone();
    let status = e.gw.stop().await?;
    anyhow::ensure!(status.success(), "the gateway exited {status}");
    let j = journal_counts(&journal_dir)?;

    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        f64::from(lat[i]) / 1000.0
    };
    let c = &counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let answered = get(&c.answered);
    println!("gatehouse soak benchmark ({elapsed:.0} s, loopback, release gateway)");
    println!(
        "  gateway RSS: start {start_kib} KiB, max {max_kib} KiB, end {end_kib} KiB ({:+.1} MiB start→end)",
        (end_kib as f64 - start_kib as f64) / 1024.0
    );
    println!("  gateway open fds: start {start_fds}, max {max_fds}, end {end_fds}");
    println!(
        "  HTTP get/list: {answered} answered ({:.0}/s), p50 {:.2} ms, p99 {:.2} ms; errors: {} non-2xx, {} without an answer",
        answered as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        get(&c.non_2xx),
        get(&c.transport_errors)
    );
    println!(
        "  exec: {} sessions, {} echoes, {} errors",
        get(&c.exec_sessions),
        get(&c.exec_echoes),
        get(&c.exec_errors)
    );
    println!(
        "  watch: {} lines seen by {WATCHES} watches, {} restarts",
        get(&c.watch_lines),
        get(&c.watch_restarts)
    );
    println!(
        "  journal: {} requests and {} responses from the HTTP clients (answered {answered}); {} exec requests ({} sessions ran); {} events in all",
        j.ua_requests,
        j.ua_responses,
        j.exec_requests,
        get(&c.exec_sessions),
        j.events
    );
    let exact = j.ua_requests == answered && j.ua_responses == answered;
    println!(
        "  journal holds exactly the requests answered: {}",
        if exact { "yes" } else { "NO" }
    );
    anyhow::ensure!(
        exact,
        "the journal holds {} requests / {} responses for {answered} answered requests",
        j.ua_requests,
        j.ua_responses
    );
    Ok(())
}

fn client_tls(ca_pem: &str) -> anyhow::Result<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

type Sender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

async fn connect(tls: &Arc<rustls::ClientConfig>, addr: &str) -> anyhow::Result<Sender> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1")?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await?;
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(send)
}

/// One request, body read to the end: its status.
async fn send(
    s: &mut Sender,
    method: http::Method,
    path: &str,
    token: &str,
    body: Option<String>,
) -> anyhow::Result<http::StatusCode> {
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "application/json")
        .header("user-agent", UA);
    if body.is_some() {
        req = req.header("content-type", "application/merge-patch+json");
    }
    let req = req.body(Full::new(body.map(Bytes::from).unwrap_or_default()))?;
    s.ready().await?;
    let resp = tokio::time::timeout(Duration::from_secs(30), async {
        let resp = s.send_request(req).await?;
        let status = resp.status();
        resp.into_body().collect().await?;
        Ok::<_, anyhow::Error>(status)
    })
    .await
    .context("no answer within 30 s")??;
    Ok(resp)
}

/// Gets and lists until `until`; returns its latencies in microseconds.
async fn http_client(
    c: usize,
    tls: &Arc<rustls::ClientConfig>,
    addr: &str,
    token: &str,
    pause_ms: u64,
    until: tokio::time::Instant,
    counters: &Counters,
) -> Vec<u32> {
    let mut lat = Vec::new();
    let mut conn: Option<Sender> = None;
    let mut i = c;
    while tokio::time::Instant::now() < until {
        if conn.is_none() {
            match connect(tls, addr).await {
                Ok(s) => conn = Some(s),
                Err(_) => {
                    counters.transport_errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                    continue;
                }
            }
        }
        let Some(s) = conn.as_mut() else { continue };
        let path = if i.is_multiple_of(4) {
            "/api/v1/namespaces/bench/configmaps?limit=500".to_string()
        } else {
            format!("/api/v1/namespaces/bench/configmaps/cm-{}", i % CONFIGMAPS)
        };
        let t = Instant::now();
        match send(s, http::Method::GET, &path, token, None).await {
            Ok(status) => {
                lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                counters.answered.fetch_add(1, Ordering::Relaxed);
                if !status.is_success() {
                    counters.non_2xx.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(_) => {
                counters.transport_errors.fetch_add(1, Ordering::Relaxed);
                conn = None;
            }
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
    }
    lat
}

/// Patches the `watched` ConfigMap every second (counted with the HTTP clients' requests).
async fn mutator(
    tls: &Arc<rustls::ClientConfig>,
    addr: &str,
    token: &str,
    until: tokio::time::Instant,
    counters: &Counters,
) {
    let mut conn: Option<Sender> = None;
    let mut n = 0u64;
    while tokio::time::Instant::now() < until {
        if conn.is_none() {
            conn = connect(tls, addr).await.ok();
        }
        if let Some(s) = conn.as_mut() {
            n += 1;
            let body = json!({"data": {"n": n.to_string()}}).to_string();
            match send(
                s,
                http::Method::PATCH,
                "/api/v1/namespaces/bench/configmaps/watched",
                token,
                Some(body),
            )
            .await
            {
                Ok(status) => {
                    counters.answered.fetch_add(1, Ordering::Relaxed);
                    if !status.is_success() {
                        counters.non_2xx.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(_) => {
                    counters.transport_errors.fetch_add(1, Ordering::Relaxed);
                    conn = None;
                }
            }
        } else {
            counters.transport_errors.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `kubectl exec -i bench -- cat` sessions, one after another, each echoing a line a second.
async fn exec_worker(w: usize, k: &Kubectl, until: tokio::time::Instant, counters: &Counters) {
    while tokio::time::Instant::now() < until {
        match exec_session(w, k, until).await {
            Ok(echoes) => {
                counters.exec_sessions.fetch_add(1, Ordering::Relaxed);
                counters.exec_echoes.fetch_add(echoes, Ordering::Relaxed);
            }
            Err(err) => {
                counters.exec_errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("soak: exec session {w}: {err:#}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn exec_session(w: usize, k: &Kubectl, until: tokio::time::Instant) -> anyhow::Result<u64> {
    let mut child = tokio::process::Command::new(&k.bin)
        .args([
            "exec", "-i", "bench", "-n", "bench", "-c", "app", "--", "cat",
        ])
        .env("KUBECONFIG", &k.kubeconfig)
        .env("HOME", &k.home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let mut out = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let end = (tokio::time::Instant::now() + EXEC_SESSION).min(until);
    let mut n = 0u64;
    while tokio::time::Instant::now() < end {
        let line = format!("soak exec {w} line {n}");
        stdin.write_all(format!("{line}\n").as_bytes()).await?;
        stdin.flush().await?;
        let back = tokio::time::timeout(Duration::from_secs(20), out.next_line())
            .await
            .context("no echo within 20 s")??
            .context("kubectl exec ended early")?;
        anyhow::ensure!(back == line, "sent {line:?}, got {back:?}");
        n += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .context("kubectl exec did not exit after stdin closed")??;
    anyhow::ensure!(status.success(), "kubectl exec exited {status}");
    Ok(n)
}

/// `kubectl get configmap watched --watch` for the whole run (restarted if it ends early).
async fn watch_worker(k: &Kubectl, until: tokio::time::Instant, counters: &Counters) {
    while tokio::time::Instant::now() < until {
        let child = tokio::process::Command::new(&k.bin)
            .args([
                "get",
                "configmap",
                "watched",
                "-n",
                "bench",
                "--watch",
                "-o",
                "jsonpath={.data.n}{\"\\n\"}",
            ])
            .env("KUBECONFIG", &k.kubeconfig)
            .env("HOME", &k.home)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let Ok(mut child) = child else {
            counters.watch_restarts.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        if let Some(out) = child.stdout.take() {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Ok(Some(_))) = tokio::time::timeout_at(until, lines.next_line()).await {
                counters.watch_lines.fetch_add(1, Ordering::Relaxed);
            }
        }
        let _ = child.kill().await;
        if tokio::time::Instant::now() < until {
            counters.watch_restarts.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

fn fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

struct JournalCounts {
    events: u64,
    /// RequestStarted events of the HTTP clients (by User-Agent), and responses to them.
    ua_requests: u64,
    ua_responses: u64,
    exec_requests: u64,
}

/// Streams the journal once (it can be large): no event is held.
fn journal_counts(dir: &std::path::Path) -> anyhow::Result<JournalCounts> {
    let mut reader = gatehouse_journal::Reader::open(dir, 0)?;
    let mut ids = HashSet::new();
    let mut c = JournalCounts {
        events: 0,
        ua_requests: 0,
        ua_responses: 0,
        exec_requests: 0,
    };
    while let Some(r) = reader.next_record()? {
        let ev = Event::decode(r.payload.as_slice())?;
        c.events += 1;
        match &ev.payload {
            Some(Payload::Request(req)) => {
                let kube = req.request.as_ref();
                if ev.client.as_ref().is_some_and(|cl| cl.user_agent == UA) {
                    c.ua_requests += 1;
                    ids.insert(ev.event_id.clone());
                }
                if kube.is_some_and(|k| k.subresource == "exec") {
                    c.exec_requests += 1;
                }
            }
            Some(Payload::Response(resp)) if ids.remove(&resp.request_event_id) => {
                c.ua_responses += 1;
            }
            _ => {}
        }
    }
    Ok(c)
}
