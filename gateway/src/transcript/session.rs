//! Sessions: one caller's activity. Requests from the same identity within the idle gap share a
//! session; each session numbers its events from 1 without gaps and chains their hashes.
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Per-session state needed to stamp the next event.
#[derive(Debug)]
pub struct SessionState {
    pub id: String,
    pub next_seq: u64,
    pub prev_hash: Vec<u8>,
    last_seen: Instant,
    /// Exchanges whose response event is still to come; the session is kept while any are.
    in_flight: u64,
}

#[derive(Debug)]
pub struct Sessions {
    idle_gap: Duration,
    /// Identity key → current session id.
    current: HashMap<String, String>,
    by_id: HashMap<String, SessionState>,
}

impl Sessions {
    pub fn new(idle_gap: Duration) -> Self {
        Self {
            idle_gap,
            current: HashMap::new(),
            by_id: HashMap::new(),
        }
    }

    /// The session for a new exchange by `who`: the current one if it was active within the
    /// idle gap, else a new one. Marks one exchange in flight.
    pub fn begin(&mut self, who: &str, now: Instant) -> &mut SessionState {
        self.evict(now);
        let live = self
            .current
            .get(who)
            .and_then(|id| self.by_id.get(id))
            .is_some_and(|s| now.duration_since(s.last_seen) <= self.idle_gap);
        if !live {
            let id = uuid::Uuid::now_v7().to_string();
            self.current.insert(who.to_string(), id.clone());
            self.by_id.insert(
                id.clone(),
                SessionState {
                    id,
                    next_seq: 1,
                    prev_hash: Vec::new(),
                    last_seen: now,
                    in_flight: 0,
                },
            );
        }
        let id = self.current.get(who).cloned().unwrap_or_default();
        let state = self
            .by_id
            .entry(id.clone())
            .or_insert_with(|| SessionState {
                id,
                next_seq: 1,
                prev_hash: Vec::new(),
                last_seen: now,
                in_flight: 0,
            });
        state.last_seen = now;
        state.in_flight += 1;
        state
    }

    /// The state of a session an exchange already belongs to (for its response event).
    pub fn get(&mut self, id: &str) -> Option<&mut SessionState> {
        self.by_id.get_mut(id)
    }

    /// The exchange is over: its session may be evicted once idle.
    pub fn end(&mut self, id: &str, now: Instant) {
        if let Some(s) = self.by_id.get_mut(id) {
            s.in_flight = s.in_flight.saturating_sub(1);
            s.last_seen = now;
        }
    }

    fn evict(&mut self, now: Instant) {
        let gap = self.idle_gap;
        self.by_id
            .retain(|_, s| s.in_flight > 0 || now.duration_since(s.last_seen) <= gap);
        let by_id = &self.by_id;
        self.current.retain(|_, id| by_id.contains_key(id));
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_identity_within_gap_shares_a_session_and_seq_is_gapless() {
        let mut s = Sessions::new(Duration::from_secs(600));
        let t0 = Instant::now();
        let a = s.begin("alice", t0).id.clone();
        s.end(&a, t0);
        let b = s.begin("alice", t0 + Duration::from_secs(599)).id.clone();
        assert_eq!(a, b);
        let c = s.begin("bob", t0).id.clone();
        assert_ne!(a, c);
        s.end(&b, t0 + Duration::from_secs(599));
        let d = s
            .begin("alice", t0 + Duration::from_secs(599 + 601))
            .id
            .clone();
        assert_ne!(a, d, "an idle gap starts a new session");
    }

    #[test]
    fn in_flight_exchanges_keep_their_session() {
        let mut s = Sessions::new(Duration::from_secs(1));
        let t0 = Instant::now();
        let long_watch = s.begin("alice", t0).id.clone();
        s.begin("bob", t0 + Duration::from_secs(10));
        assert!(s.get(&long_watch).is_some(), "watch still running");
        s.end(&long_watch, t0 + Duration::from_secs(10));
        s.begin("bob", t0 + Duration::from_secs(20));
        assert!(s.get(&long_watch).is_none(), "evicted once idle");
    }
}
