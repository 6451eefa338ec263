//! One direct-against-gateway comparison: the same wrk runs against the test API server, the
//! reference paths in front of it (a bare TLS relay, nginx) and the gateway, interleaved so noise
//! on the shared machine hits all.
use super::wrk::{self, WrkResult};

/// One way to the test API server, and the bearer token it takes.
pub struct Path {
    pub name: &'static str,
    pub url: String,
    pub token: String,
    /// The proxy's processes, whose CPU time per request is reported.
    pub pids: Vec<u32>,
}

/// wrk measurements of one path at 1 and 32 connections.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub name: &'static str,
    pub c1: WrkResult,
    pub c32: WrkResult,
    /// CPU µs the path's process spent per request over all rounds, at 1 and 32 connections.
    pub cpu_us: Option<(f64, f64)>,
}

/// CPU time (user + system) `pids` spent while `run` ran, in µs, and what `run` returned.
fn with_cpu(
    pids: &[u32],
    run: impl FnOnce() -> anyhow::Result<WrkResult>,
) -> anyhow::Result<(WrkResult, Option<f64>)> {
    let ticks = || {
        pids.iter()
            .map(|p| super::procfs::Stat::read(p).map(|s| s.ticks()))
            .sum::<Option<u64>>()
            .filter(|_| !pids.is_empty())
    };
    let before = ticks();
    let r = run()?;
    let used = before
        .zip(ticks())
        .map(|(b, a)| a.saturating_sub(b) as f64 / super::procfs::CLK_TCK * 1e6);
    Ok((r, used))
}

/// Every path measured: the first is direct (what the others are held against), the last the
/// gateway (what the targets are about).
pub struct Comparison {
    pub paths: Vec<Measured>,
}

/// Rounds of interleaved runs; each figure reported is the median over the rounds.
pub const ROUNDS: usize = 3;

/// Runs the comparison of `paths` (direct first, gateway last); blocking (wrk runs as a child
/// process).
pub fn measure(paths: &[Path], seconds: u32) -> anyhow::Result<Comparison> {
    anyhow::ensure!(
        paths.len() >= 2,
        "a comparison needs direct and the gateway"
    );
    let run = |p: &Path, c, s| wrk::run(&p.url, &p.token, c, s);
    // Warm every path at both concurrencies: TLS sessions, the proxies' upstream connection
    // pools (32 callers may need more than one upstream connection), the verified-token cache.
    for c in [1, 32] {
        for p in paths {
            run(p, c, 2)?;
        }
    }
    // The paths' runs alternate, so a burst of other work on the machine lands on all of them
    // rather than on one whole measurement.
    let mut rounds: Vec<Vec<(WrkResult, WrkResult)>> = vec![Vec::new(); paths.len()];
    // Per path and concurrency: CPU µs and requests, summed over the rounds.
    let mut cpu = vec![[(0.0, 0.0); 2]; paths.len()];
    let mut add = |i: usize, at: usize, r: &WrkResult, used: Option<f64>| {
        if let Some(us) = used {
            cpu[i][at].0 += us;
            cpu[i][at].1 += r.requests_per_sec * f64::from(seconds);
        }
    };
    for _ in 0..ROUNDS {
        let mut c1 = Vec::with_capacity(paths.len());
        for (i, p) in paths.iter().enumerate() {
            let (r, used) = with_cpu(&p.pids, || run(p, 1, seconds))?;
            add(i, 0, &r, used);
            c1.push(r);
        }
        for (i, p) in paths.iter().enumerate() {
            let (c32, used) = with_cpu(&p.pids, || run(p, 32, seconds))?;
            add(i, 1, &c32, used);
            for (conns, r) in [(1, c1[i]), (32, c32)] {
                anyhow::ensure!(
                    r.non_2xx == 0,
                    "{} c{conns}: {} non-2xx responses",
                    p.name,
                    r.non_2xx
                );
            }
            rounds[i].push((c1[i], c32));
        }
    }
    let paths = paths
        .iter()
        .zip(rounds)
        .zip(cpu)
        .map(|((p, runs), cpu)| Measured {
            name: p.name,
            c1: median(runs.iter().map(|r| r.0).collect()),
            c32: median(runs.iter().map(|r| r.1).collect()),
            // Only where CPU time was read for requests at both concurrencies (a path with no
            // pids, or whose /proc could not be read, has none).
            cpu_us: (cpu[0].1 > 0.0 && cpu[1].1 > 0.0)
                .then(|| (cpu[0].0 / cpu[0].1, cpu[1].0 / cpu[1].1)),
        })
        .collect();
    Ok(Comparison { paths })
}

/// The median of each figure separately.
fn median(runs: Vec<WrkResult>) -> WrkResult {
    let mid = |f: fn(&WrkResult) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    WrkResult {
        requests_per_sec: mid(|r| r.requests_per_sec),
        p50_us: mid(|r| r.p50_us),
        p99_us: mid(|r| r.p99_us),
        non_2xx: runs.iter().map(|r| r.non_2xx).sum(),
    }
}

impl Comparison {
    /// Prints the figures and the targets they are held against.
    pub fn print(&self, label: &str) {
        let (Some(direct), Some(gateway)) = (self.paths.first(), self.paths.last()) else {
            return;
        };
        println!("  [{label}]");
        for p in &self.paths {
            let (r, d) = (p.c1, direct.c1);
            let added = if p.name == direct.name {
                String::new()
            } else {
                format!(
                    "  (adds p50 {:.1} µs, p99 {:.1} µs)",
                    r.p50_us - d.p50_us,
                    r.p99_us - d.p99_us
                )
            };
            println!(
                "  {:<8} 1 conn : p50 {:>8.1} µs  p99 {:>8.1} µs  {:>9.0} req/s{added}",
                p.name, r.p50_us, r.p99_us, r.requests_per_sec
            );
        }
        println!(
            "  added latency   : p50 {:>8.1} µs (target ≤ 150)   p99 {:>8.1} µs (target ≤ 1000)",
            gateway.c1.p50_us - direct.c1.p50_us,
            gateway.c1.p99_us - direct.c1.p99_us
        );
        for p in &self.paths {
            println!(
                "  {:<7} 32 conn : {:>9.0} req/s  (p50 {:.1} µs, p99 {:.1} µs)  {:.2}× direct",
                p.name,
                p.c32.requests_per_sec,
                p.c32.p50_us,
                p.c32.p99_us,
                p.c32.requests_per_sec / direct.c32.requests_per_sec
            );
        }
        println!(
            "  throughput ratio: {:.2}× direct (target ≥ 0.6×)",
            gateway.c32.requests_per_sec / direct.c32.requests_per_sec
        );
        for p in &self.paths {
            if let Some((c1, c32)) = p.cpu_us {
                println!(
                    "  {} CPU per request: {c1:.1} µs at 1 conn, {c32:.1} µs at 32 conn",
                    p.name
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{WrkResult, median};

    #[test]
    fn median_takes_the_middle_of_each_figure_and_sums_errors() {
        let run = |rps, p50, p99, non_2xx| WrkResult {
            requests_per_sec: rps,
            p50_us: p50,
            p99_us: p99,
            non_2xx,
        };
        let m = median(vec![
            run(300.0, 10.0, 900.0, 0),
            run(100.0, 30.0, 700.0, 1),
            run(200.0, 20.0, 800.0, 2),
        ]);
        assert_eq!(m.requests_per_sec, 200.0);
        assert_eq!(m.p50_us, 20.0);
        assert_eq!(m.p99_us, 800.0);
        assert_eq!(m.non_2xx, 3);
    }
}
