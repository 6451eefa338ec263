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
    /// The highest seq a signed digest covers (or the digest event itself, when nothing else
    /// was appended in between): a later digest is due once `next_seq - 1` passes it.
    digested_seq: u64,
    /// Its closing digest is being written: no new exchange may join it.
    closing: bool,
    /// Who the session is (from its first event): digest events carry it, so every event of a
    /// session names the same actor.
    pub identity: Option<gatehouse_proto::v1::Identity>,
    pub client: Option<gatehouse_proto::v1::Client>,
}

/// A digest the digester owes a session (see `digest.rs`).
#[derive(Debug, Clone)]
pub struct DigestDue {
    pub session_id: String,
    pub last_seq: u64,
    pub last_hash: Vec<u8>,
    /// The session is over: this is its final digest.
    pub closing: bool,
    pub identity: Option<gatehouse_proto::v1::Identity>,
    pub client: Option<gatehouse_proto::v1::Client>,
}

#[derive(Debug)]
pub struct Sessions {
    idle_gap: Duration,
    /// Identity key → current session id.
    current: HashMap<String, String>,
    by_id: HashMap<String, SessionState>,
    /// Idle sessions wait for their closing digest instead of being evicted.
    sealing: bool,
}

impl Sessions {
    pub fn new(idle_gap: Duration) -> Self {
        Self {
            idle_gap,
            current: HashMap::new(),
            by_id: HashMap::new(),
            sealing: false,
        }
    }

    /// Keeps idle sessions until the digester has sealed them (`digests_due`).
    pub fn set_sealing(&mut self, on: bool) {
        self.sealing = on;
    }

    /// The session for a new exchange by `who`: the current one if it was active within the
    /// idle gap, else a new one. Marks one exchange in flight.
    pub fn begin(&mut self, who: &str, now: Instant) -> &mut SessionState {
        self.evict(now);
        let live = self
            .current
            .get(who)
            .and_then(|id| self.by_id.get(id))
            .is_some_and(|s| !s.closing && now.duration_since(s.last_seen) <= self.idle_gap);
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
                    digested_seq: 0,
                    closing: false,
                    identity: None,
                    client: None,
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
                digested_seq: 0,
                closing: false,
                identity: None,
                client: None,
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
        let sealing = self.sealing;
        self.by_id
            .retain(|_, s| sealing || s.in_flight > 0 || now.duration_since(s.last_seen) <= gap);
        let by_id = &self.by_id;
        self.current.retain(|_, id| by_id.contains_key(id));
    }

    /// The digests owed now: a closing one for each session idle past the gap (every session
    /// when `shutting_down`), and one for each open session with events since its last digest.
    /// Cheap (no signing): it runs under the recorder's lock.
    pub fn digests_due(&mut self, now: Instant, shutting_down: bool) -> Vec<DigestDue> {
        let gap = self.idle_gap;
        let mut due = Vec::new();
        let mut empty = Vec::new();
        for s in self.by_id.values_mut() {
            if s.closing {
                continue;
            }
            let last_seq = s.next_seq - 1;
            let idle = s.in_flight == 0 && now.duration_since(s.last_seen) > gap;
            let closing = shutting_down || idle;
            if closing && last_seq == 0 {
                // Nothing was ever recorded in it: nothing to seal.
                empty.push(s.id.clone());
                continue;
            }
            if !closing && last_seq <= s.digested_seq {
                continue;
            }
            s.closing = closing;
            s.digested_seq = last_seq;
            due.push(DigestDue {
                session_id: s.id.clone(),
                last_seq,
                last_hash: s.prev_hash.clone(),
                closing,
                identity: s.identity.clone(),
                client: s.client.clone(),
            });
        }
        for id in &empty {
            self.by_id.remove(id);
        }
        let by_id = &self.by_id;
        self.current
            .retain(|_, id| by_id.get(id).is_some_and(|s| !s.closing));
        due
    }

    /// A digest covering `covered` was appended as event `digest_seq`: a closed session is
    /// forgotten; an open one needs no new digest until another event follows.
    pub fn digest_written(&mut self, id: &str, covered: u64, digest_seq: u64, closing: bool) {
        if closing {
            self.by_id.remove(id);
            return;
        }
        if let Some(s) = self.by_id.get_mut(id)
            && s.digested_seq == covered
            && digest_seq == covered + 1
        {
            s.digested_seq = digest_seq;
        }
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

    #[test]
    fn sealing_keeps_idle_sessions_until_their_closing_digest() {
        let mut s = Sessions::new(Duration::from_secs(1));
        s.set_sealing(true);
        let t0 = Instant::now();
        let a = s.begin("alice", t0);
        a.next_seq = 3;
        a.prev_hash = vec![7; 32];
        let a = a.id.clone();
        s.end(&a, t0);
        let due = s.digests_due(t0, false);
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].last_seq, due[0].closing), (2, false));
        assert_eq!(due[0].last_hash, vec![7; 32]);
        // The digest itself is event 3; it alone does not make another digest due.
        s.get(&a).unwrap().next_seq = 4;
        s.digest_written(&a, 2, 3, false);
        assert!(s.digests_due(t0, false).is_empty());
        // Idle past the gap: a new exchange starts a new session, the old one is sealed.
        let b = s.begin("alice", t0 + Duration::from_secs(5)).id.clone();
        assert_ne!(a, b);
        let due = s.digests_due(t0 + Duration::from_secs(5), false);
        let closing: Vec<_> = due.iter().filter(|d| d.closing).collect();
        assert_eq!(closing.len(), 1);
        assert_eq!(
            (closing[0].session_id.as_str(), closing[0].last_seq),
            (a.as_str(), 3)
        );
        s.digest_written(&a, 3, 4, true);
        assert!(s.get(&a).is_none());
    }
}
