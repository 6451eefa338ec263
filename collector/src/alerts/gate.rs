//! Dedup (by alert id and by fingerprint, within a window) and a token-bucket rate limit, applied
//! before an alert reaches any sink.
use std::collections::HashMap;
use std::time::Duration;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Duplicate,
    RateLimited,
}

pub struct Gate {
    window: Duration,
    /// Alert ids and fingerprints seen, with when they were first let through.
    seen: HashMap<String, Instant>,
    per_minute: f64,
    tokens: f64,
    refilled: Instant,
}

impl Gate {
    pub fn new(window: Duration, per_minute: u32, now: Instant) -> Self {
        Self {
            window,
            seen: HashMap::new(),
            per_minute: f64::from(per_minute),
            tokens: f64::from(per_minute),
            refilled: now,
        }
    }

    pub fn admit(&mut self, id: &str, fingerprint: &str, now: Instant) -> Verdict {
        let window = self.window;
        self.seen.retain(|_, at| now.duration_since(*at) < window);
        // Redelivery (at-least-once ingest) repeats the id; a process retrying its direct
        // connection repeats the fingerprint. Both are one incident.
        let (id, fingerprint) = (format!("id:{id}"), format!("fp:{fingerprint}"));
        if self.seen.contains_key(&id) || self.seen.contains_key(&fingerprint) {
            return Verdict::Duplicate;
        }
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * self.per_minute / 60.0).min(self.per_minute);
        if self.tokens < 1.0 {
            return Verdict::RateLimited;
        }
        self.tokens -= 1.0;
        self.seen.insert(id, now);
        self.seen.insert(fingerprint, now);
        Verdict::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_within_the_window_and_over_the_rate_are_held_back() {
        let t0 = Instant::now();
        let mut g = Gate::new(Duration::from_secs(60), 2, t0);
        assert_eq!(g.admit("a", "f1", t0), Verdict::Pass);
        assert_eq!(g.admit("a", "f9", t0), Verdict::Duplicate, "same id");
        assert_eq!(
            g.admit("b", "f1", t0),
            Verdict::Duplicate,
            "same fingerprint"
        );
        assert_eq!(g.admit("c", "f2", t0), Verdict::Pass);
        assert_eq!(
            g.admit("d", "f3", t0),
            Verdict::RateLimited,
            "bucket of 2 is empty"
        );
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(
            g.admit("d", "f3", t1),
            Verdict::Pass,
            "one token back after 30s"
        );
        let t2 = t1 + Duration::from_secs(61);
        assert_eq!(
            g.admit("a", "f1", t2),
            Verdict::Pass,
            "the window has passed"
        );
    }
}
