//! Runs wrk (the HTTP load generator, from Debian) and parses its latency distribution.
use anyhow::Context;
use std::process::Command;

#[derive(Debug, Clone, Copy)]
pub struct WrkResult {
    pub requests_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub non_2xx: u64,
}

/// Makes sure wrk is installed (apt, idempotent).
pub fn ensure_installed() -> anyhow::Result<()> {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return Ok(());
    }
    let status = Command::new("sh")
        .args(["-c", "apt-get install -y wrk >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y wrk >/dev/null)"])
        .status()
        .context("installing wrk")?;
    anyhow::ensure!(status.success(), "could not install wrk with apt-get");
    Ok(())
}

/// wrk threads for a run: one per connection up to the CPU count, so the load generator is
/// never the direct path's bottleneck (`GATEHOUSE_BENCH_WRK_THREADS` overrides it).
fn threads(connections: u32) -> u32 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    std::env::var("GATEHOUSE_BENCH_WRK_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(cpus)
        .clamp(1, connections.max(1))
}

pub fn run(url: &str, token: &str, connections: u32, seconds: u32) -> anyhow::Result<WrkResult> {
    let threads = threads(connections);
    let out = Command::new("wrk")
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg("--latency")
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"))
        .arg("-H")
        .arg("Accept: application/json")
        .arg(url)
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(
        out.status.success(),
        "wrk failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    parse(&text).with_context(|| format!("parsing wrk output:\n{text}"))
}

fn duration_us(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1_000.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1_000_000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * mult)
}

pub fn parse(text: &str) -> Option<WrkResult> {
    let mut p50 = None;
    let mut p99 = None;
    let mut rps = None;
    let mut non_2xx = 0;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", d] => p50 = duration_us(d),
            ["99%", d] => p99 = duration_us(d),
            ["Requests/sec:", r] => rps = r.parse().ok(),
            ["Non-2xx", "or", "3xx", "responses:", n] => non_2xx = n.parse().unwrap_or(0),
            _ => {}
        }
    }
    Some(WrkResult {
        requests_per_sec: rps?,
        p50_us: p50?,
        p99_us: p99?,
        non_2xx,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_wrk_latency_output() {
        let text = "Running 1s test @ https://127.0.0.1:1/x\n  1 threads and 1 connections\n  Latency Distribution\n     50%  125.00us\n     75%  200.00us\n     90%  1.20ms\n     99%    2.50ms\n  1000 requests in 1.00s, 1.00MB read\n  Non-2xx or 3xx responses: 3\nRequests/sec:   9876.54\nTransfer/sec:      1.00MB\n";
        let r = super::parse(text).unwrap();
        assert_eq!(r.p50_us, 125.0);
        assert_eq!(r.p99_us, 2500.0);
        assert_eq!(r.requests_per_sec, 9876.54);
        assert_eq!(r.non_2xx, 3);
        assert!(super::parse("garbage").is_none());
    }
}
