//! One direct-against-gateway comparison: the same wrk runs against the test API server, a bare
//! TLS relay and the gateway in front of it, interleaved so noise on the shared machine hits all.
use super::wrk::{self, WrkResult};

/// wrk measurements of the three paths at 1 and 32 connections.
#[derive(Debug, Clone, Copy)]
pub struct Comparison {
    pub direct_c1: WrkResult,
    pub relay_c1: WrkResult,
    pub gateway_c1: WrkResult,
    pub direct_c32: WrkResult,
    pub relay_c32: WrkResult,
    pub gateway_c32: WrkResult,
}

/// Where to send the 1 KiB GET, and with which bearer token, for each path.
pub struct Targets {
    pub direct_url: String,
    pub direct_token: String,
    /// The bare TLS relay in front of the direct server (`tests/src/tls_relay.rs`), which takes
    /// the direct token.
    pub relay_url: String,
    pub gateway_url: String,
    pub gateway_token: String,
}

/// Rounds of interleaved runs; each figure reported is the median over the rounds.
pub const ROUNDS: usize = 3;

/// Runs the comparison; blocking (wrk runs as a child process).
pub fn measure(t: &Targets, seconds: u32) -> anyhow::Result<Comparison> {
    let direct = |c, s| wrk::run(&t.direct_url, &t.direct_token, c, s);
    let relay = |c, s| wrk::run(&t.relay_url, &t.direct_token, c, s);
    let gateway = |c, s| wrk::run(&t.gateway_url, &t.gateway_token, c, s);
    // Warm both paths at both concurrencies: TLS sessions, the gateway's upstream connection
    // pool (32 callers may need more than one upstream connection), its verified-token cache.
    for c in [1, 32] {
        direct(c, 2)?;
        relay(c, 2)?;
        gateway(c, 2)?;
    }
    // Direct, relay and gateway runs alternate, so a burst of other work on the machine lands on both
    // paths rather than on one whole measurement.
    let mut rounds = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let round = Comparison {
            direct_c1: direct(1, seconds)?,
            relay_c1: relay(1, seconds)?,
            gateway_c1: gateway(1, seconds)?,
            direct_c32: direct(32, seconds)?,
            relay_c32: relay(32, seconds)?,
            gateway_c32: gateway(32, seconds)?,
        };
        for (name, r) in [
            ("direct c1", round.direct_c1),
            ("relay c1", round.relay_c1),
            ("gateway c1", round.gateway_c1),
            ("direct c32", round.direct_c32),
            ("relay c32", round.relay_c32),
            ("gateway c32", round.gateway_c32),
        ] {
            anyhow::ensure!(r.non_2xx == 0, "{name}: {} non-2xx responses", r.non_2xx);
        }
        rounds.push(round);
    }
    let pick = |f: fn(&Comparison) -> WrkResult| median(rounds.iter().map(f).collect());
    Ok(Comparison {
        direct_c1: pick(|c| c.direct_c1),
        relay_c1: pick(|c| c.relay_c1),
        gateway_c1: pick(|c| c.gateway_c1),
        direct_c32: pick(|c| c.direct_c32),
        relay_c32: pick(|c| c.relay_c32),
        gateway_c32: pick(|c| c.gateway_c32),
    })
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
        let (d1, r1, g1) = (self.direct_c1, self.relay_c1, self.gateway_c1);
        println!("  [{label}]");
        println!(
            "  direct   1 conn : p50 {:>8.1} µs  p99 {:>8.1} µs  {:>9.0} req/s",
            d1.p50_us, d1.p99_us, d1.requests_per_sec
        );
        println!(
            "  relay    1 conn : p50 {:>8.1} µs  p99 {:>8.1} µs  {:>9.0} req/s  (bare TLS relay adds p50 {:.1} µs, p99 {:.1} µs)",
            r1.p50_us,
            r1.p99_us,
            r1.requests_per_sec,
            r1.p50_us - d1.p50_us,
            r1.p99_us - d1.p99_us
        );
        println!(
            "  gateway  1 conn : p50 {:>8.1} µs  p99 {:>8.1} µs  {:>9.0} req/s",
            g1.p50_us, g1.p99_us, g1.requests_per_sec
        );
        println!(
            "  added latency   : p50 {:>8.1} µs (target ≤ 150)   p99 {:>8.1} µs (target ≤ 1000)",
            g1.p50_us - d1.p50_us,
            g1.p99_us - d1.p99_us
        );
        println!(
            "  direct  32 conn : {:>9.0} req/s  (p50 {:.1} µs, p99 {:.1} µs)",
            self.direct_c32.requests_per_sec, self.direct_c32.p50_us, self.direct_c32.p99_us
        );
        println!(
            "  relay   32 conn : {:>9.0} req/s  (p50 {:.1} µs, p99 {:.1} µs)  bare TLS relay: {:.2}× direct",
            self.relay_c32.requests_per_sec,
            self.relay_c32.p50_us,
            self.relay_c32.p99_us,
            self.relay_c32.requests_per_sec / self.direct_c32.requests_per_sec
        );
        println!(
            "  gateway 32 conn : {:>9.0} req/s  (p50 {:.1} µs, p99 {:.1} µs)",
            self.gateway_c32.requests_per_sec, self.gateway_c32.p50_us, self.gateway_c32.p99_us
        );
        println!(
            "  throughput ratio: {:.2}× direct (target ≥ 0.6×)",
            self.gateway_c32.requests_per_sec / self.direct_c32.requests_per_sec
        );
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
