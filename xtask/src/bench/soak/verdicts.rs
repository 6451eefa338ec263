//! The soak's pass/fail definitions: p99 latency per time window and its drift, and whether the
//! gateway's RSS stayed flat. Pure functions over the samples, so the definitions are unit-tested.

/// The most the p99 may drift between the start and the end of the run (issue 7).
pub const MAX_P99_DRIFT: f64 = 0.20;
/// The most the gateway's RSS may grow between the start and the end of the run. A leak grows
/// RSS linearly with requests: over the 10-minute run (~240k requests) 10 % of a ~50 MiB gateway
/// is ~20 bytes a request, while allocator noise after warm-up is a few hundred KiB.
pub const MAX_RSS_GROWTH: f64 = 0.10;

/// One answered request: when it started (ms since the load began) and how long it took (µs).
#[derive(Clone, Copy, Debug)]
pub struct Latency {
    pub at_ms: u32,
    pub micros: u32,
}

/// The latencies of the requests started in one window of the run.
#[derive(Debug)]
pub struct Window {
    pub start_s: u64,
    pub requests: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The `p` quantile (nearest rank) of `sorted` microseconds, in ms; NaN when empty.
pub fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1000.0
}

/// The whole windows of `window_s` seconds in a run of `run_s` seconds (a shorter tail is left
/// out of the series: its p99 would rest on fewer requests than the others).
pub fn windows(lat: &[Latency], window_s: u64, run_s: u64) -> Vec<Window> {
    let n = usize::try_from(run_s / window_s.max(1)).unwrap_or(0);
    let mut buckets: Vec<Vec<u32>> = vec![Vec::new(); n];
    for l in lat {
        let w = u64::from(l.at_ms) / (window_s * 1000);
        if let Some(b) = usize::try_from(w).ok().and_then(|w| buckets.get_mut(w)) {
            b.push(l.micros);
        }
    }
    buckets
        .into_iter()
        .enumerate()
        .map(|(i, mut b)| {
            b.sort_unstable();
            Window {
                start_s: i as u64 * window_s,
                requests: b.len(),
                p50_ms: percentile_ms(&b, 0.50),
                p99_ms: percentile_ms(&b, 0.99),
            }
        })
        .collect()
}

/// Whole windows at the start counted as warm-up: the first 10 % of the run, at least one window.
/// Connections, TLS sessions and the allocator's arenas are being set up then, and the clients
/// are still spreading out; the drift and RSS verdicts judge the steady state after it.
pub fn warmup_windows(window_s: u64, run_s: u64) -> usize {
    let warm = (run_s / 10).max(window_s);
    usize::try_from(warm.div_ceil(window_s.max(1))).unwrap_or(usize::MAX)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    }
}

/// A value at the start and at the end of the steady state, and the relative change.
#[derive(Debug)]
pub struct Change {
    pub first: f64,
    pub last: f64,
    /// `last / first - 1`.
    pub change: f64,
    /// Values per third that the medians were taken over.
    pub per_third: usize,
}

/// The median of the first third of `values` against the median of the last third (None with
/// fewer than 3 values). Why thirds and medians: one window's p99 rests on its slowest 1 % of
/// requests, so a single scheduler stall (the machine also runs ClickHouse, the collector and
/// 25 kubectl processes) can double it. A median over a third of the run ignores such a window
/// while a real trend, a slow leak or a growing queue, moves the whole last third.
pub fn first_vs_last_third(values: &[f64]) -> Option<Change> {
    let per_third = values.len() / 3;
    if per_third == 0 {
        return None;
    }
    let first = median(&values[..per_third]);
    let last = median(&values[values.len() - per_third..]);
    Some(Change {
        first,
        last,
        change: last / first - 1.0,
        per_third,
    })
}

/// The p99 drift over the windows after warm-up; it passes when `|change| <= MAX_P99_DRIFT`
/// (a p99 that falls by a fifth is as much a drift as one that rises: the load is constant).
pub fn p99_drift(windows: &[Window], warmup: usize) -> Option<Change> {
    let p99s: Vec<f64> = windows
        .iter()
        .skip(warmup)
        .map(|w| w.p99_ms)
        .filter(|p| p.is_finite())
        .collect();
    first_vs_last_third(&p99s)
}

/// The RSS growth over the samples `(seconds, KiB)` taken after `warmup_s`; it passes when
/// `change <= MAX_RSS_GROWTH` (shrinking is fine).
pub fn rss_growth(samples: &[(f64, u64)], warmup_s: f64) -> Option<Change> {
    let rss: Vec<f64> = samples
        .iter()
        .filter(|(at, _)| *at >= warmup_s)
        .map(|(_, kib)| *kib as f64)
        .collect();
    first_vs_last_third(&rss)
}

/// The least-squares slope of `(seconds, KiB)` samples after `warmup_s`, in MiB per minute.
pub fn rss_slope_mib_per_min(samples: &[(f64, u64)], warmup_s: f64) -> f64 {
    let pts: Vec<(f64, f64)> = samples
        .iter()
        .filter(|(at, _)| *at >= warmup_s)
        .map(|(at, kib)| (*at, *kib as f64 / 1024.0))
        .collect();
    let n = pts.len() as f64;
    if pts.len() < 2 {
        return 0.0;
    }
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / n,
        pts.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx * 60.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn win(p99: &[f64]) -> Vec<Window> {
        p99.iter()
            .enumerate()
            .map(|(i, p)| Window {
                start_s: i as u64 * 30,
                requests: 1000,
                p50_ms: p / 4.0,
                p99_ms: *p,
            })
            .collect()
    }

    #[test]
    fn one_slow_window_is_not_a_drift_but_a_trend_is() {
        // Warm-up window slow, one stall in the last third: flat.
        let w = win(&[50.0, 10.0, 10.5, 9.8, 10.2, 10.0, 31.0, 10.1, 9.9, 10.3]);
        let d = p99_drift(&w, 1).unwrap();
        assert_eq!(d.per_third, 3);
        assert!(d.change.abs() <= MAX_P99_DRIFT, "{d:?}");
        // A steady climb of 5 % a window: the last third is well past 20 %.
        let rising: Vec<f64> = (0..10).map(|i| 10.0 * 1.05f64.powi(i)).collect();
        let d = p99_drift(&win(&rising), 1).unwrap();
        assert!(d.change > MAX_P99_DRIFT, "{d:?}");
        // Falling by a third is a drift too.
        let d = p99_drift(&win(&[10.0, 10.0, 10.0, 10.0, 6.0, 6.0, 6.0]), 0).unwrap();
        assert!(d.change < -MAX_P99_DRIFT, "{d:?}");
    }

    #[test]
    fn too_few_windows_give_no_verdict() {
        assert!(p99_drift(&win(&[10.0, 10.0, 10.0]), 1).is_none());
    }

    #[test]
    fn windows_bucket_by_start_time_and_drop_the_partial_tail() {
        let lat: Vec<Latency> = (0..2500u32)
            .map(|i| Latency {
                at_ms: i * 10,
                micros: if i % 100 == 99 { 9_000 } else { 1_000 },
            })
            .collect();
        // 25 s of requests in 10 s windows: two whole windows, the last 5 s left out.
        let w = windows(&lat, 10, 25);
        assert_eq!(w.len(), 2);
        assert_eq!((w[0].requests, w[1].requests), (1000, 1000));
        assert_eq!(w[0].p50_ms, 1.0);
        assert_eq!(w[0].p99_ms, 1.0);
        assert_eq!(percentile_ms(&[1_000, 2_000], 1.0), 2.0);
    }

    #[test]
    fn warmup_is_a_tenth_of_the_run_in_whole_windows() {
        assert_eq!(warmup_windows(30, 600), 2);
        assert_eq!(warmup_windows(5, 90), 2);
        assert_eq!(warmup_windows(30, 60), 1);
    }

    #[test]
    fn rss_growth_and_slope_see_a_leak() {
        let flat: Vec<(f64, u64)> = (0..60).map(|i| (i as f64 * 5.0, 50_000)).collect();
        let g = rss_growth(&flat, 30.0).unwrap();
        assert_eq!(g.change, 0.0);
        assert_eq!(rss_slope_mib_per_min(&flat, 30.0), 0.0);
        // 1 MiB a minute from 50 MiB over 5 minutes.
        let leak: Vec<(f64, u64)> = (0..60)
            .map(|i| (i as f64 * 5.0, 51_200 + i * 1024 / 12))
            .collect();
        let g = rss_growth(&leak, 30.0).unwrap();
        assert!(g.change > 0.05, "{g:?}");
        let slope = rss_slope_mib_per_min(&leak, 30.0);
        assert!((slope - 1.0).abs() < 0.05, "{slope}");
    }
}
