//! `cargo xtask bench soak`: 200 HTTP/2 get/list clients, 20 `kubectl exec -i` sessions and 5
//! `kubectl get --watch` through the gateway, which ships to the collector and ClickHouse; prints
//! p99, RSS and CPU over time and fails unless errors, p99 drift, RSS and ClickHouse rows all pass.
use super::procfs::{CLK_TCK, Stat, rss_kib};
use anyhow::Context;
use bytes::Bytes;
use gatehouse_tests::apiserver::ApiServerOptions;
use gatehouse_tests::clickhouse::TestClickHouse;
use gatehouse_tests::collector_proc::{CollectorPki, CollectorProc};
use gatehouse_tests::fixture::{AUDIENCE, GatewayEnv};
use gatehouse_tests::kubectl::Kubectl;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use verdicts::Latency;

mod verdicts;

const CLIENTS: usize = 200;
const EXECS: usize = 20;
const WATCHES: usize = 5;
/// ConfigMaps the clients read, and the list they page through.
const CONFIGMAPS: usize = 50;
/// How long one exec session lasts before it is closed and a new one opened.
const EXEC_SESSION: Duration = Duration::from_secs(30);
/// The User-Agent of the HTTP clients: their rows are found in ClickHouse by it.
const UA: &str = "gatehouse-soak/1";

pub fn soak() -> anyhow::Result<()> {
    super::run_release("soak", || super::block_on(run()))
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
    /// HTTP requests sent by the clients and the mutator.
    sent: AtomicU64,
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
    // The p99 series: 30 s windows over 10 minutes (12k requests each), shorter in short runs.
    let window_s = setting("GATEHOUSE_SOAK_WINDOW_SECS", (secs / 20).clamp(5, 30))?;
    anyhow::ensure!(
        window_s > 0 && secs >= 5 * window_s,
        "GATEHOUSE_SOAK_SECS={secs} must hold at least 5 windows of GATEHOUSE_SOAK_WINDOW_SECS={window_s}"
    );
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
    // The whole recording path runs during the soak: the gateway ships its journal to the
    // release collector (default batching), which inserts into the ClickHouse engine.
    let dir = tempfile::tempdir()?;
    let ch = TestClickHouse::start(dir.path()).await?;
    let pki = CollectorPki::write(dir.path())?;
    let mut cargs = ch.collector_args();
    cargs.extend(pki.args());
    let col = CollectorProc::start(dir.path(), 0, &cargs).await?;
    let e = GatewayEnv::start(opts, &pki.gateway_shipping(dir.path(), &col.addr)?.args).await?;
    let pid = e.gw.pid().context("the gateway has no pid")?;
    let pids = Pids {
        gateway: pid,
        collector: col.pid().context("the collector has no pid")?,
        clickhouse: ch.fixture_pid(),
    };
    let token = e.issuer.token("soak", &["bench"], AUDIENCE)?;
    let tls = Arc::new(client_tls(&e.gw.ca_pem)?);
    let addr = e.gw.url.trim_start_matches("https://").to_string();
    println!(
        "soak: {CLIENTS} HTTP/2 clients (get/list, {pause_ms} ms apart), {EXECS} exec sessions, {WATCHES} watches for {secs} s; gateway → collector → ClickHouse ({})",
        if ch.is_fixture() {
            "chdb fixture"
        } else {
            "CLICKHOUSE_URL"
        }
    );

    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let until = tokio::time::Instant::now() + duration;

    let (start_kib, start_fds) = (rss_kib(pid).unwrap_or(0), fds(pid).unwrap_or(0));
    let cpu_start = cpu_ticks(&pids);
    let sampler = tokio::spawn(async move {
        let mut samples = Vec::new();
        loop {
            let (kib, fd) = (rss_kib(pid).unwrap_or(0), fds(pid).unwrap_or(0));
            let at = started.elapsed().as_secs_f64();
            if samples.len().is_multiple_of(6) {
                println!("  t={at:>4.0}s  gateway RSS {kib:>7} KiB  fds {fd:>5}");
            }
            samples.push(Sample {
                at,
                rss_kib: kib,
                fds: fd,
                cpu: cpu_ticks(&pids),
            });
            if tokio::time::Instant::now() >= until {
                return samples;
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
            http_client(
                c,
                &tls,
                &addr,
                &token,
                pause_ms,
                (started, until),
                &counters,
            )
            .await
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
    let samples = sampler.await?;
    let cpu_end = cpu_ticks(&pids);
    let (end_kib, end_fds) = (rss_kib(pid).unwrap_or(0), fds(pid).unwrap_or(0));
    let elapsed = started.elapsed().as_secs_f64();
    let c = &counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let (sent, answered) = (get(&c.sent), get(&c.answered));

    // Wait for the shipper to hand everything the gateway recorded to ClickHouse (shipping
    // deletes acknowledged journal segments, so the gateway's own count of appended events is
    // the measure), then stop the gateway.
    let drain_started = Instant::now();
    let stored = wait_shipped(&ch, &e.gw, sent, answered).await?;
    let drain_secs = drain_started.elapsed().as_secs_f64();
    let gw_log = e.gw.log.clone();
    let status = e.gw.stop().await?;
    anyhow::ensure!(status.success(), "the gateway exited {status}");
    let dead_letters = std::fs::read_to_string(&col.dead_letter)
        .map(|s| s.lines().count())
        .unwrap_or(0);
    let chdb_kib = pids.clickhouse.and_then(rss_kib);
    let collector_kib = rss_kib(pids.collector);

    let mut all: Vec<u32> = lat.iter().map(|l| l.micros).collect();
    all.sort_unstable();
    println!("gatehouse soak benchmark ({elapsed:.0} s, loopback, release gateway and collector)");
    println!(
        "  gateway RSS: start {start_kib} KiB, max {} KiB, end {end_kib} KiB ({:+.1} MiB start→end)",
        samples.iter().map(|s| s.rss_kib).max().unwrap_or(0),
        (end_kib as f64 - start_kib as f64) / 1024.0
    );
    println!(
        "  gateway open fds: start {start_fds}, max {}, end {end_fds}",
        samples.iter().map(|s| s.fds).max().unwrap_or(0)
    );
    println!(
        "  HTTP get/list/patch: {sent} sent, {answered} answered ({:.0}/s; the load asks {:.0}/s), p50 {:.2} ms, p99 {:.2} ms; errors: {} non-2xx, {} without an answer",
        answered as f64 / elapsed,
        CLIENTS as f64 * 1000.0 / pause_ms.max(1) as f64 + 1.0,
        verdicts::percentile_ms(&all, 0.50),
        verdicts::percentile_ms(&all, 0.99),
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
    print_cpu(&cpu_start, &cpu_end, elapsed);
    println!(
        "  memory at the end: collector {} KiB, ClickHouse (chdb) {} KiB",
        collector_kib.map_or("?".into(), |k| k.to_string()),
        chdb_kib.map_or("?".into(), |k| k.to_string())
    );

    // The time series: p99 per window, the gateway's RSS and the CPU of each process in it.
    let series = verdicts::windows(&lat, window_s, secs);
    let warmup = verdicts::warmup_windows(window_s, secs);
    let warmup_s = (warmup as u64 * window_s) as f64;
    println!("  per {window_s} s window (the first {warmup} are warm-up; CPU in % of one core):");
    println!(
        "    {:>9}  {:>6}  {:>8}  {:>8}  {:>9}  {:>5}  {:>4}  {:>4}  {:>4}  {:>4}",
        "window", "req/s", "p50 ms", "p99 ms", "RSS KiB", "fds", "gw", "col", "chdb", "load"
    );
    for (i, w) in series.iter().enumerate() {
        let end_s = w.start_s + window_s;
        let at_or_before = |t: u64| samples.iter().rev().find(|s| s.at <= t as f64 + 0.5);
        let (from, to) = (at_or_before(w.start_s), at_or_before(end_s));
        let pct = |f: fn(&Cpu) -> u64| match (from, to) {
            (Some(a), Some(b)) if b.at > a.at => format!(
                "{:>4.0}",
                f(&b.cpu).saturating_sub(f(&a.cpu)) as f64 / CLK_TCK / (b.at - a.at) * 100.0
            ),
            _ => "   -".into(),
        };
        println!(
            "    {:>4}-{:<4}  {:>6.0}  {:>8.2}  {:>8.2}  {:>9}  {:>5}  {}  {}  {}  {}{}",
            w.start_s,
            end_s,
            w.requests as f64 / window_s as f64,
            w.p50_ms,
            w.p99_ms,
            to.map_or(0, |s| s.rss_kib),
            to.map_or(0, |s| s.fds),
            pct(|c| c.gateway),
            pct(|c| c.collector),
            pct(|c| c.clickhouse),
            pct(|c| c.load),
            if i < warmup { "  warm-up" } else { "" }
        );
    }

    let mut failed = Vec::new();
    let mut verdict = |name: &str, pass: bool, detail: String| {
        println!(
            "  {:<4} {name}: {detail}",
            if pass { "PASS" } else { "FAIL" }
        );
        if !pass {
            failed.push(name.to_string());
        }
    };
    println!("verdicts:");
    let errors =
        get(&c.non_2xx) + get(&c.transport_errors) + get(&c.exec_errors) + get(&c.watch_restarts);
    verdict(
        "errors = 0",
        errors == 0,
        format!(
            "{errors} ({} non-2xx, {} HTTP without an answer, {} exec sessions failed, {} watches ended early)",
            get(&c.non_2xx),
            get(&c.transport_errors),
            get(&c.exec_errors),
            get(&c.watch_restarts)
        ),
    );
    match verdicts::p99_drift(&series, warmup) {
        Some(d) => verdict(
            "p99 drift <= 20%",
            d.change.abs() <= verdicts::MAX_P99_DRIFT,
            format!(
                "median p99 of the first {n} windows after warm-up {:.2} ms, of the last {n} {:.2} ms ({:+.1}%)",
                d.first,
                d.last,
                d.change * 100.0,
                n = d.per_third
            ),
        ),
        None => verdict(
            "p99 drift <= 20%",
            false,
            format!(
                "fewer than 3 windows after warm-up ({} in all)",
                series.len()
            ),
        ),
    }
    let rss: Vec<(f64, u64)> = samples.iter().map(|s| (s.at, s.rss_kib)).collect();
    match verdicts::rss_growth(&rss, warmup_s) {
        Some(g) => verdict(
            "RSS flat (<= +10%)",
            g.change <= verdicts::MAX_RSS_GROWTH,
            format!(
                "median of the first {n} samples after warm-up {:.0} KiB, of the last {n} {:.0} KiB ({:+.1}%); trend {:+.2} MiB/min",
                g.first,
                g.last,
                g.change * 100.0,
                verdicts::rss_slope_mib_per_min(&rss, warmup_s),
                n = g.per_third
            ),
        ),
        None => verdict(
            "RSS flat (<= +10%)",
            false,
            "fewer than 3 RSS samples after warm-up".into(),
        ),
    }
    verdict(
        "ClickHouse rows = requests sent",
        stored.ua_requests == sent
            && stored.ua_responses == answered
            && stored.exec_requests == get(&c.exec_sessions),
        format!(
            "{} request rows for {sent} sent, {} response rows for {answered} answered, {} exec request rows for {} sessions (shipped in {drain_secs:.1} s after the load)",
            stored.ua_requests,
            stored.ua_responses,
            stored.exec_requests,
            get(&c.exec_sessions)
        ),
    );
    verdict(
        "ClickHouse holds each recorded event once",
        stored.rows == stored.distinct_ids && stored.rows == stored.recorded && dead_letters == 0,
        format!(
            "{} rows, {} distinct event ids, {} events recorded by the gateway; {dead_letters} dead letters",
            stored.rows, stored.distinct_ids, stored.recorded
        ),
    );
    if failed.iter().any(|f| f.starts_with("ClickHouse")) {
        // Rows missing: the shipper's and the collector's own words say where they stopped.
        for (who, log) in [("gateway", &gw_log), ("collector", &col.log)] {
            let log = log.lock();
            let notable: Vec<&String> = log
                .iter()
                .filter(|l| !l.contains("\"INFO\"") && !l.contains(" INFO "))
                .collect();
            println!(
                "  last warnings of the {who} ({} of {} log lines):",
                notable.len().min(20),
                log.len()
            );
            for l in notable.iter().rev().take(20).rev() {
                println!("    {l}");
            }
        }
    }
    anyhow::ensure!(failed.is_empty(), "soak failed: {}", failed.join(", "));
    Ok(())
}

/// What ClickHouse holds once the shipper has caught up.
struct Stored {
    rows: u64,
    distinct_ids: u64,
    /// Request and response rows of the HTTP clients (by User-Agent), exec request rows.
    ua_requests: u64,
    ua_responses: u64,
    exec_requests: u64,
    /// Events the gateway appended to its journal (its metrics, read after the load).
    recorded: u64,
}

/// Polls ClickHouse until it holds a row for each of the `sent` requests and `answered`
/// responses and as many rows as the gateway recorded events, or 5 minutes pass (1 minute
/// without a new row); returns the last counts either way (the verdicts judge them).
async fn wait_shipped(
    ch: &TestClickHouse,
    gw: &gatehouse_tests::gateway_proc::GatewayProc,
    sent: u64,
    answered: u64,
) -> anyhow::Result<Stored> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    // A shipper that has stopped moving will not catch up: give up after a minute without a row.
    let (mut last_rows, mut last_change) = (u64::MAX, tokio::time::Instant::now());
    loop {
        let text = ch
            .query_text(&format!(
                "SELECT count(), uniqExact(event_id), \
                 countIf(kind = 'request' AND user_agent = '{UA}'), \
                 countIf(kind = 'response' AND user_agent = '{UA}'), \
                 countIf(kind = 'request' AND subresource = 'exec') FROM events"
            ))
            .await?;
        let n: Vec<u64> = text
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .with_context(|| format!("unexpected ClickHouse answer {text:?}"))?;
        let [rows, distinct_ids, ua_requests, ua_responses, exec_requests] = n[..] else {
            anyhow::bail!("unexpected ClickHouse answer {text:?}");
        };
        let stored = Stored {
            rows,
            distinct_ids,
            ua_requests,
            ua_responses,
            exec_requests,
            recorded: recorded_events(gw).await?,
        };
        let now = tokio::time::Instant::now();
        if rows != last_rows {
            (last_rows, last_change) = (rows, now);
        }
        let timed_out = now >= deadline || now - last_change >= Duration::from_secs(60);
        let caught_up = ua_requests >= sent && ua_responses >= answered && rows >= stored.recorded;
        if caught_up || timed_out {
            return Ok(stored);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The processes whose CPU the soak reports.
#[derive(Clone, Copy)]
struct Pids {
    gateway: u32,
    collector: u32,
    clickhouse: Option<u32>,
}

/// CPU time in ticks (user + system) of each process; `load` is this xtask with the kubectl
/// processes it has reaped; `machine` is every CPU's busy time.
#[derive(Clone, Copy, Default)]
struct Cpu {
    gateway: u64,
    collector: u64,
    clickhouse: u64,
    load: u64,
    machine: u64,
}

struct Sample {
    at: f64,
    rss_kib: u64,
    fds: u64,
    cpu: Cpu,
}

fn machine_busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    cpu.split_whitespace()
        .skip(1)
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v.parse::<u64>().unwrap_or(0))
        .sum()
}

fn cpu_ticks(p: &Pids) -> Cpu {
    let own = |pid: u32| Stat::read(pid).map_or(0, |s| s.ticks());
    Cpu {
        gateway: own(p.gateway),
        collector: own(p.collector),
        clickhouse: p.clickhouse.map_or(0, own),
        load: Stat::read("self").map_or(0, |s| s.ticks_with_children()),
        machine: machine_busy_ticks(),
    }
}

fn print_cpu(a: &Cpu, b: &Cpu, secs: f64) {
    let pct = |x: u64, y: u64| y.saturating_sub(x) as f64 / CLK_TCK / secs * 100.0;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "  CPU over the load (% of one core): gateway {:.0}%, collector {:.0}%, ClickHouse (chdb) {:.0}%, load generator and kubectl {:.0}%; machine busy {:.0}% of {cores} cores",
        pct(a.gateway, b.gateway),
        pct(a.collector, b.collector),
        pct(a.clickhouse, b.clickhouse),
        pct(a.load, b.load),
        pct(a.machine, b.machine) / cores as f64
    );
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

/// Gets and lists until `until`; returns its latencies, timed from `started`.
async fn http_client(
    c: usize,
    tls: &Arc<rustls::ClientConfig>,
    addr: &str,
    token: &str,
    pause_ms: u64,
    (started, until): (Instant, tokio::time::Instant),
    counters: &Counters,
) -> Vec<Latency> {
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
        counters.sent.fetch_add(1, Ordering::Relaxed);
        match send(s, http::Method::GET, &path, token, None).await {
            Ok(status) => {
                lat.push(Latency {
                    at_ms: t
                        .duration_since(started)
                        .as_millis()
                        .min(u128::from(u32::MAX)) as u32,
                    micros: t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32,
                });
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
            counters.sent.fetch_add(1, Ordering::Relaxed);
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

fn fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// `gatehouse_gateway_journal_appended_events_total` from the gateway's metrics.
async fn recorded_events(gw: &gatehouse_tests::gateway_proc::GatewayProc) -> anyhow::Result<u64> {
    let (_, metrics) = gw.ops_get("/metrics").await?;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("gatehouse_gateway_journal_appended_events_total "))
        .and_then(|v| v.trim().parse().ok())
        .context("the gateway's metrics have no gatehouse_gateway_journal_appended_events_total")
}
