//! `cargo xtask bench policy`: masking CPU of the real gateway process (a 10 MiB Secret list
//! against the same ConfigMap list, a 1 GiB log stream with and without detectors), the masking
//! code alone against a copy, and policy evaluation time per request with 1,000 rules.
use crate::bench::procfs;
use anyhow::Context;
use gatehouse_gateway::transcript::mask::Masker;
use gatehouse_policy::{MaskSpec, Request};
use gatehouse_tests::apiserver::ApiServerOptions;
use gatehouse_tests::gateway_proc::GatewayProc;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const CHUNK: usize = 64 << 10;
const LOG_BYTES: usize = 1 << 30;
const LIST_BYTES: usize = 10 << 20;

pub fn policy() -> anyhow::Result<()> {
    crate::bench::run_release("policy", in_release)
}

/// The bench itself, run by the release xtask only.
fn in_release() -> anyhow::Result<()> {
    // Policy evaluation first: it is quick and least disturbed by what the gateways leave behind.
    evaluation()?;
    if std::env::var_os("GATEHOUSE_BENCH_SKIP_GATEWAY").is_none() {
        crate::bench::block_on(gateway_cpu())?;
    }
    println!("masking code alone (no TLS, HTTP or journal), against a plain copy:");
    let list = secret_list();
    let rounds = 10;
    let base = measure(|| {
        for _ in 0..rounds {
            copy(&list);
        }
    });
    let masked = measure(|| {
        for _ in 0..rounds {
            mask(Masker::new(), &list);
        }
    });
    report(
        &format!(
            "{} MiB Secret list x{rounds} (built-in Secret masking)",
            list.len() >> 20
        ),
        base,
        masked,
        list.len() * rounds,
    );

    let spec: Arc<MaskSpec> = Arc::new(serde_yaml::from_str("{}")?);
    let block = log_block();
    let base = measure(|| stream(&block, None));
    let masked = measure(|| stream(&block, Some(spec.clone())));
    report(
        "1 GiB log stream (all 4 detectors)",
        base,
        masked,
        LOG_BYTES,
    );
    Ok(())
}

/// CPU time of this thread, from the scheduler's own accounting (nanoseconds on CPU).
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .map_or(Duration::ZERO, Duration::from_nanos)
}

fn rss_kib() -> u64 {
    procfs::rss_kib("self").unwrap_or(0)
}

struct Run {
    cpu: Duration,
    rss_growth_kib: u64,
}

fn measure(f: impl FnOnce()) -> Run {
    let rss = rss_kib();
    let cpu = thread_cpu();
    f();
    Run {
        cpu: thread_cpu() - cpu,
        rss_growth_kib: rss_kib().saturating_sub(rss),
    }
}

fn report(what: &str, base: Run, masked: Run, bytes: usize) {
    let ratio = masked.cpu.as_secs_f64() / base.cpu.as_secs_f64().max(1e-9);
    let mib_s = bytes as f64 / (1 << 20) as f64 / masked.cpu.as_secs_f64().max(1e-9);
    println!(
        "{what}: copy {:.3}s CPU, masked {:.3}s CPU ({ratio:.1}x the copy, {mib_s:.0} MiB/s); RSS growth {} KiB / {} KiB",
        base.cpu.as_secs_f64(),
        masked.cpu.as_secs_f64(),
        base.rss_growth_kib,
        masked.rss_growth_kib,
    );
}

/// What the capture does without masking: copy each chunk out.
fn copy(body: &[u8]) {
    let mut out = Vec::with_capacity(CHUNK);
    for c in body.chunks(CHUNK) {
        out.clear();
        out.extend_from_slice(c);
        std::hint::black_box(&out);
    }
}

fn mask(mut m: Masker, body: &[u8]) -> u32 {
    let mut out = Vec::with_capacity(CHUNK * 2);
    for c in body.chunks(CHUNK) {
        out.clear();
        m.feed(c, &mut out);
        std::hint::black_box(&out);
    }
    m.finish(&mut out);
    m.masked()
}

/// 1 GiB as `block` repeated, chunk by chunk, never held whole.
fn stream(block: &[u8], spec: Option<Arc<MaskSpec>>) {
    let mut m = spec.map(Masker::text);
    let mut out = Vec::with_capacity(CHUNK * 2);
    let mut sent = 0;
    while sent < LOG_BYTES {
        for c in block.chunks(CHUNK) {
            out.clear();
            match &mut m {
                Some(m) => m.feed(c, &mut out),
                None => out.extend_from_slice(c),
            }
            std::hint::black_box(&out);
            sent += c.len();
        }
    }
    if let Some(m) = &mut m {
        m.finish(&mut out);
        std::hint::black_box(m.masked());
    }
}

/// 1 MiB of log lines, one in 100 carrying an AWS key.
fn log_block() -> Vec<u8> {
    let mut out = Vec::with_capacity(1 << 20);
    let mut i = 0u64;
    while out.len() < (1 << 20) {
        if i.is_multiple_of(100) {
            out.extend_from_slice(
                format!("{i:010} payments-api export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n")
                    .as_bytes(),
            );
        } else {
            out.extend_from_slice(
                format!("{i:010} payments-api GET /v1/orders 200 12ms user=42 trace=ab12cd34\n")
                    .as_bytes(),
            );
        }
        i += 1;
    }
    out
}

/// A SecretList of ~10 MiB: 4 KiB Secrets with four data values each.
fn secret_list() -> Vec<u8> {
    let mut out = String::from(
        r#"{"kind":"SecretList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":["#,
    );
    let mut i = 0;
    while out.len() < LIST_BYTES {
        if i > 0 {
            out.push(',');
        }
        let v = |k: usize| format!("{:0>1000}", format!("c2VjcmV0LXZhbHVl{i}{k}"));
        out.push_str(&format!(
            r#"{{"metadata":{{"name":"s{i}","namespace":"payments","labels":{{"app":"payments-api"}}}},"type":"Opaque","data":{{"a":"{}","b":"{}","c":"{}","d":"{}"}}}}"#,
            v(0),
            v(1),
            v(2),
            v(3)
        ));
        i += 1;
    }
    out.push_str("]}");
    out.into_bytes()
}

/// Evaluation time per request with 1,000 rules, none of which match (the default decides),
/// in three shapes: rules the index rules out by an exact value (the bench's original shape),
/// rules that match the request's verb and resource but name other namespaces (exact, so also
/// ruled out), rules that match verb, resource and namespace and fail only on a regex over the
/// name (its literal prefix rules them out), and the same with a regex that has no literal
/// prefix (the index runs such regexes as one `RegexSet`).
fn evaluation() -> anyhow::Result<()> {
    /// What a shape is called, and its rule number `i`'s `match:`.
    type Shape = (&'static str, fn(usize) -> String);
    let shapes: [Shape; 4] = [
        (
            "different users/groups/namespaces (glob user, regex name)",
            |i| {
                format!(
                    "{{users: [\"user-{i}-*\"], groups: [team-{i}], verbs: [delete, patch], namespaces: [\"ns-{i}\"], names: [\"/app-{i}-[a-z]+/\"]}}"
                )
            },
        ),
        ("same verb and resource, other namespaces (exact)", |i| {
            format!("{{verbs: [delete], resources: [pods], namespaces: [\"ns-{i}\"]}}")
        }),
        (
            "same verb, resource and namespace, failing on a regex name with a literal prefix",
            |i| {
                format!(
                    "{{verbs: [delete], resources: [pods], namespaces: [payments], names: [\"/app-{i}-[a-z]+/\"]}}"
                )
            },
        ),
        (
            "same verb, resource and namespace, failing on a regex name without a literal prefix (one RegexSet pass)",
            |i| {
                format!(
                    "{{verbs: [delete], resources: [pods], namespaces: [payments], names: [\"/[a-z]+-{i}-[a-z]+/\"]}}"
                )
            },
        ),
    ];
    let req = Request {
        user: "alice@example.com".into(),
        groups: vec!["devs".into(), "system:authenticated".into()],
        source: "10.1.2.3".into(),
        verb: "delete".into(),
        resource: "pods".into(),
        namespace: "payments".into(),
        name: "payments-api-1".into(),
        ..Default::default()
    };
    for (what, rule) in shapes {
        let mut yaml = String::from("version: 1\ndefault: {action: allow}\nrules:\n");
        for i in 0..1000 {
            yaml.push_str(&format!(
                "  - name: r{i}\n    match: {}\n    action: deny\n",
                rule(i)
            ));
        }
        let policy = gatehouse_policy::parse(&yaml, "bench")?;
        anyhow::ensure!(policy.evaluate(&req).rule.is_none(), "a rule matched");
        let n = 20_000;
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            std::hint::black_box(policy.evaluate(std::hint::black_box(&req)));
            times.push(t.elapsed());
        }
        times.sort();
        let p = |q: f64| times[((n as f64 * q) as usize).min(n - 1)];
        println!(
            "policy evaluation, 1,000 rules, no match, {what}: p50 {:.1} µs, p99 {:.1} µs (target ≤ 20 µs), max {:.1} µs ({n} requests)",
            p(0.50).as_secs_f64() * 1e6,
            p(0.99).as_secs_f64() * 1e6,
            times[n - 1].as_secs_f64() * 1e6
        );
    }
    Ok(())
}

/// Secrets (and as many ConfigMaps) in the served list: 4 values of 1,000 bytes each, ~10 MiB.
const LIST_OBJECTS: usize = 2_400;

/// The real gateway's CPU time (utime + stime of its process) for the same client work with
/// masking and without, in interleaved rounds: (a) one gateway serving a Secret list (built-in
/// Secret masking of the transcript) and the ConfigMap list of the same shape (not masked); the
/// whole body is captured (`--capture-bytes=16MiB`) so the masker sees all of it; (b) a 1 GiB
/// `logs?follow=true` through a gateway whose policy masks logs with all detectors in DLP mode
/// (every byte scanned and rewritten live) and through one whose policy has no mask rule.
async fn gateway_cpu() -> anyhow::Result<()> {
    let rounds: usize = env_num("GATEHOUSE_BENCH_ROUNDS", 3);
    let fetches: usize = env_num("GATEHOUSE_BENCH_LIST_FETCHES", 20);
    let log_bytes: u64 = env_num("GATEHOUSE_BENCH_LOG_BYTES", 1 << 30);
    let dir = tempfile::tempdir()?;
    let mut opts = ApiServerOptions::default();
    opts.objects.push(json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}
    }));
    for i in 0..LIST_OBJECTS {
        let v = |k: usize| format!("{:0>1000}", format!("c2VjcmV0LXZhbHVl{i}{k}"));
        let data = json!({"a": v(0), "b": v(1), "c": v(2), "d": v(3)});
        let meta = |kind: &str| json!({"name": format!("{kind}-{i}"), "namespace": "bench", "labels": {"app": "payments-api"}});
        opts.objects.push(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": meta("s"), "type": "Opaque", "data": data.clone()
        }));
        opts.objects.push(json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("c"), "data": data
        }));
    }
    crate::bench::push_logger(&mut opts, log_bytes);
    // The servers run until the end of the bench.
    let crate::bench::Upstream {
        api: _api,
        issuer: _issuer,
        args: base,
        token,
    } = crate::bench::Upstream::start(opts, dir.path()).await?;

    // (a) Secret list against ConfigMap list, one gateway.
    let mut flags = base.clone();
    flags.push("--capture-bytes=16MiB".into());
    let (gw, ca) = start_gateway(dir.path(), "list", &flags).await?;
    let client = Client { token };
    let secrets = format!("{}/api/v1/namespaces/bench/secrets", gw.url);
    let configmaps = format!("{}/api/v1/namespaces/bench/configmaps", gw.url);
    let size = client.fetch(&ca, &secrets).await?;
    let cm_size = client.fetch(&ca, &configmaps).await?;
    let mut list = [Total::default(), Total::default()];
    for round in 0..rounds {
        // Alternate which goes first, so a drift in machine load falls on both.
        for k in [round % 2, 1 - round % 2] {
            let url = if k == 0 { &secrets } else { &configmaps };
            list[k].add(
                measure_gateway(&gw, async {
                    for _ in 0..fetches {
                        client.fetch(&ca, url).await?;
                    }
                    Ok::<(), anyhow::Error>(())
                })
                .await?,
            );
        }
    }
    gw.stop().await?;

    // (b) 1 GiB of logs, detectors in DLP mode against no mask rule.
    let plain = dir.path().join("plain.yaml");
    std::fs::write(&plain, "version: 1\ndefault: {action: allow}\n")?;
    let masking = dir.path().join("mask-logs.yaml");
    std::fs::write(
        &masking,
        "version: 1\ndefault: {action: allow}\nrules:\n  - name: mask-logs\n    match: {resources: [pods], subresources: [log]}\n    action: mask\n    mask: {dlp: true}\n",
    )?;
    let mut gws = Vec::new();
    for (i, policy) in [&masking, &plain].into_iter().enumerate() {
        let mut flags = base.clone();
        flags.push(format!("--policy-file={}", policy.display()));
        gws.push(start_gateway(dir.path(), &format!("logs-{i}"), &flags).await?);
    }
    let mut logs = [Total::default(), Total::default()];
    for round in 0..rounds {
        for k in [round % 2, 1 - round % 2] {
            let (gw, ca) = &gws[k];
            let url = format!(
                "{}/api/v1/namespaces/bench/pods/big-logger/log?follow=true&limitBytes={log_bytes}",
                gw.url
            );
            let got = std::cell::Cell::new(0);
            logs[k].add(
                measure_gateway(gw, async {
                    got.set(client.fetch(ca, &url).await?);
                    Ok::<(), anyhow::Error>(())
                })
                .await?,
            );
            anyhow::ensure!(
                got.get() == log_bytes,
                "the log stream ended after {} of {log_bytes} bytes",
                got.get()
            );
        }
    }
    for (gw, _) in gws {
        gw.stop().await?;
    }

    println!(
        "gateway process CPU (utime+stime), {rounds} interleaved rounds, busy machines inflate both sides alike:"
    );
    print_pair(
        &format!(
            "{} KiB Secret list x{fetches} (masked in the transcript) vs {} KiB ConfigMap list (not masked)",
            size >> 10,
            cm_size >> 10
        ),
        &list,
    );
    print_pair(
        &format!(
            "{} MiB logs -f, all detectors (DLP) vs no mask rule",
            log_bytes >> 20
        ),
        &logs,
    );
    Ok(())
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A gateway in its own directory (its TLS files and CA, its journal), and its CA file.
async fn start_gateway(
    dir: &Path,
    name: &str,
    flags: &[String],
) -> anyhow::Result<(GatewayProc, PathBuf)> {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir)?;
    let gw = GatewayProc::start(&dir, &dir.join("journal"), flags).await?;
    let ca = dir.join("gateway-ca.pem");
    std::fs::write(&ca, &gw.ca_pem)?;
    Ok((gw, ca))
}

/// curl against the gateway: its CPU is not the gateway's.
struct Client {
    token: String,
}

impl Client {
    /// GETs `url` trusting `ca`, returning the body's size.
    async fn fetch(&self, ca: &Path, url: &str) -> anyhow::Result<u64> {
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download}"])
            .arg("--cacert")
            .arg(ca)
            .arg("-H")
            .arg(format!("Authorization: Bearer {}", self.token))
            .arg(url)
            .output()
            .await
            .context("running curl")?;
        anyhow::ensure!(
            out.status.success(),
            "curl {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
    }
}

#[derive(Default)]
struct Total {
    cpu: Duration,
    /// Peak RSS above the RSS at the start of its run, the largest over the rounds.
    rss_growth_kib: u64,
    peak_kib: u64,
}

impl Total {
    fn add(&mut self, (cpu, start, peak): (Duration, u64, u64)) {
        self.cpu += cpu;
        self.rss_growth_kib = self.rss_growth_kib.max(peak.saturating_sub(start));
        self.peak_kib = self.peak_kib.max(peak);
    }
}

fn print_pair(what: &str, [masked, plain]: &[Total; 2]) {
    let ratio = masked.cpu.as_secs_f64() / plain.cpu.as_secs_f64().max(1e-9);
    println!(
        "  {what}: masked {:.2}s, not masked {:.2}s, ratio {ratio:.2}x (target ≤ 1.3x); RSS growth in a run {} KiB / {} KiB, peak {} KiB / {} KiB",
        masked.cpu.as_secs_f64(),
        plain.cpu.as_secs_f64(),
        masked.rss_growth_kib,
        plain.rss_growth_kib,
        masked.peak_kib,
        plain.peak_kib,
    );
}

/// Runs `work` and returns the gateway's CPU time over it, its RSS at the start and its peak RSS
/// (sampled every 20 ms).
async fn measure_gateway(
    gw: &GatewayProc,
    work: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<(Duration, u64, u64)> {
    let pid = gw.pid().context("the gateway has no pid")?;
    let start = procfs::rss_kib(pid).unwrap_or(0);
    let peak = Arc::new(AtomicU64::new(start));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(procfs::rss_kib(pid).unwrap_or(0), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let before = proc_cpu(pid)?;
    let result = work.await;
    let cpu = proc_cpu(pid)?.saturating_sub(before);
    sampler.abort();
    result?;
    peak.fetch_max(procfs::rss_kib(pid).unwrap_or(0), Ordering::Relaxed);
    Ok((cpu, start, peak.load(Ordering::Relaxed)))
}

/// User and system CPU time of a process.
fn proc_cpu(pid: u32) -> anyhow::Result<Duration> {
    let stat = procfs::Stat::read(pid).with_context(|| format!("reading /proc/{pid}/stat"))?;
    Ok(Duration::from_secs_f64(
        stat.ticks() as f64 / procfs::CLK_TCK,
    ))
}
