//! `cargo xtask bench policy`: the gateway's masking code against a plain capture copy, in one
//! run, on a 10 MiB Secret-heavy list and a 1 GiB log stream (thread CPU time, RSS), and the
//! policy's evaluation time per request with 1,000 rules (p50/p99).
use gatehouse_gateway::transcript::mask::Masker;
use gatehouse_policy::{MaskSpec, Request};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHUNK: usize = 64 << 10;
const LOG_BYTES: usize = 1 << 30;
const LIST_BYTES: usize = 10 << 20;

pub fn policy() -> anyhow::Result<()> {
    crate::bench::run_release("policy", &[], in_release)
}

/// The bench itself, run by the release xtask only.
fn in_release() -> anyhow::Result<()> {
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

    evaluation()
}

/// CPU time of this thread, from the scheduler's own accounting (nanoseconds on CPU).
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .map_or(Duration::ZERO, Duration::from_nanos)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
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

/// 1,000 rules none of which match, then the default: the worst case of first-match.
fn evaluation() -> anyhow::Result<()> {
    let mut yaml = String::from("version: 1\ndefault: {action: allow}\nrules:\n");
    for i in 0..1000 {
        yaml.push_str(&format!(
            "  - name: r{i}\n    match: {{users: [\"user-{i}-*\"], groups: [team-{i}], verbs: [delete, patch], namespaces: [\"ns-{i}\"], names: [\"/app-{i}-[a-z]+/\"]}}\n    action: deny\n"
        ));
    }
    let policy = gatehouse_policy::parse(&yaml, "bench")?;
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
        "policy evaluation, 1,000 rules, no match: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs ({n} requests)",
        p(0.50).as_secs_f64() * 1e6,
        p(0.99).as_secs_f64() * 1e6,
        times[n - 1].as_secs_f64() * 1e6
    );
    Ok(())
}
