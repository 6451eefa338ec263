//! Approvals and just-in-time grants: a `require_approval` request waits here for a reviewer's
//! verdict or its timeout; grants give a user a policy role until they expire. With a store,
//! every change is written to disk, so grants and the approvals' history survive a restart.
pub mod api;
pub mod store;
pub mod webhook;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};
use store::{Entry, Outcome, State, Store, StoreError};
use tokio::sync::oneshot;

/// A held request, as reviewers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub id: String,
    pub requester: String,
    pub groups: Vec<String>,
    /// The reconstructed command (`kubectl delete pod web-1 -n payments`).
    pub command: String,
    pub verb: String,
    pub resource: String,
    pub namespace: String,
    pub name: String,
    pub rule: String,
    pub message: String,
    #[serde(with = "unix_seconds")]
    pub created: SystemTime,
    #[serde(with = "unix_seconds")]
    pub expires: SystemTime,
}

/// What a reviewer decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Approved {
        by: String,
        reason: String,
    },
    Denied {
        by: String,
        reason: String,
    },
    /// Nobody decided in time.
    TimedOut,
}

/// A time-boxed role for one user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub who: String,
    pub role: String,
    pub reason: String,
    pub granted_by: String,
    #[serde(with = "unix_seconds")]
    pub created: SystemTime,
    #[serde(with = "unix_seconds")]
    pub expires: SystemTime,
}

/// Why a reviewer's action was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReviewError {
    #[error("no pending approval {0}")]
    NotFound(String),
    #[error("{0} cannot approve or deny their own request")]
    SelfApproval(String),
}

struct Pending {
    approval: Approval,
    answer: oneshot::Sender<Verdict>,
}

/// Decided approvals kept in the store, newest last.
const HISTORY_MAX: usize = 1000;

#[derive(Default)]
pub struct Approvals {
    pending: Mutex<BTreeMap<String, Pending>>,
    grants: Mutex<Vec<Grant>>,
    /// Decided approvals (newest last), for the store.
    history: Mutex<Vec<Entry>>,
    store: Option<Store>,
    /// Held while a snapshot is taken and written, so writes land in the order of changes.
    saving: Mutex<()>,
}

impl Approvals {
    /// In memory only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Backed by the approvals file in `dir`: its grants are active again (expired ones are
    /// recorded and dropped by the expiry task), its decided approvals kept, and approvals that
    /// were pending when the gateway stopped become `interrupted` (their callers were cut off).
    pub fn with_store(dir: &Path) -> Result<Self, StoreError> {
        let (store, state) = Store::open(dir)?;
        let mut history = Vec::new();
        for mut e in state.approvals {
            if e.outcome == Outcome::Pending {
                tracing::warn!(
                    id = e.approval.id,
                    requester = e.approval.requester,
                    "an approval was pending when the gateway stopped; its request was not run"
                );
                e.outcome = Outcome::Interrupted;
            }
            history.push(e);
        }
        let now = SystemTime::now();
        let active = state.grants.iter().filter(|g| g.expires > now).count();
        tracing::info!(
            grants = active,
            approvals = history.len(),
            "approvals file loaded"
        );
        let a = Approvals {
            grants: Mutex::new(state.grants),
            history: Mutex::new(history),
            store: Some(store),
            ..Default::default()
        };
        a.save()?;
        Ok(a)
    }

    /// Writes the current state to the store, if there is one.
    fn save(&self) -> Result<(), StoreError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let _order = self.saving.lock();
        let mut approvals: Vec<Entry> = self.history.lock().clone();
        approvals.extend(self.pending.lock().values().map(|p| Entry {
            approval: p.approval.clone(),
            outcome: Outcome::Pending,
        }));
        let state = State {
            version: 1,
            approvals,
            grants: self.grants.lock().clone(),
        };
        store.save(&state)
    }

    /// Saves, logging a failure: the in-memory state stays authoritative for this process.
    fn save_logged(&self) {
        if let Err(e) = self.save() {
            tracing::error!(error = %crate::error_chain(&e), "could not save the approvals file");
        }
    }

    fn remember(&self, approval: Approval, outcome: Outcome) {
        let mut h = self.history.lock();
        h.push(Entry { approval, outcome });
        if h.len() > HISTORY_MAX {
            let extra = h.len() - HISTORY_MAX;
            h.drain(..extra);
        }
    }

    /// Decided and interrupted approvals, oldest first.
    pub fn history(&self) -> Vec<Entry> {
        self.history.lock().clone()
    }

    /// Registers a held request; the receiver resolves with the verdict (drop it to give up).
    pub fn hold(&self, approval: Approval) -> oneshot::Receiver<Verdict> {
        let (answer, rx) = oneshot::channel();
        self.pending
            .lock()
            .insert(approval.id.clone(), Pending { approval, answer });
        self.save_logged();
        rx
    }

    /// Forgets a held request (answered, timed out, or its caller went away); one nobody
    /// decided is remembered as timed out.
    pub fn release(&self, id: &str) {
        let left = self.pending.lock().remove(id);
        if let Some(p) = left {
            self.remember(p.approval, Outcome::TimedOut);
            self.save_logged();
        }
    }

    /// Pending approvals, oldest first (ids are time-ordered UUIDv7).
    pub fn list(&self) -> Vec<Approval> {
        let now = SystemTime::now();
        self.pending
            .lock()
            .values()
            .filter(|p| p.approval.expires > now && !p.answer.is_closed())
            .map(|p| p.approval.clone())
            .collect()
    }

    /// Answers a held request. The reviewer must not be its requester.
    pub fn decide(&self, id: &str, verdict: Verdict) -> Result<Approval, ReviewError> {
        let mut pending = self.pending.lock();
        let by = match &verdict {
            Verdict::Approved { by, .. } | Verdict::Denied { by, .. } => by.clone(),
            Verdict::TimedOut => String::new(),
        };
        match pending.get(id) {
            None => return Err(ReviewError::NotFound(id.to_string())),
            Some(p) if p.answer.is_closed() => {
                pending.remove(id);
                return Err(ReviewError::NotFound(id.to_string()));
            }
            Some(p) if p.approval.requester == by => return Err(ReviewError::SelfApproval(by)),
            Some(_) => {}
        }
        let p = pending
            .remove(id)
            .ok_or_else(|| ReviewError::NotFound(id.to_string()))?;
        drop(pending);
        let outcome = match &verdict {
            Verdict::Approved { by, reason } => Outcome::Approved {
                by: by.clone(),
                reason: reason.clone(),
            },
            Verdict::Denied { by, reason } => Outcome::Denied {
                by: by.clone(),
                reason: reason.clone(),
            },
            Verdict::TimedOut => Outcome::TimedOut,
        };
        self.remember(p.approval.clone(), outcome);
        // Saved before the waiter goes on: an approved request runs only once it is on disk.
        self.save_logged();
        // The waiter may have given up a moment ago; the verdict is recorded either way.
        let _ = p.answer.send(verdict);
        Ok(p.approval)
    }

    /// Adds a grant; with a store, only once it is on disk (a grant that would vanish on a
    /// restart is refused).
    pub fn grant(&self, g: Grant) -> Result<(), StoreError> {
        let id = g.id.clone();
        self.grants.lock().push(g);
        if let Err(e) = self.save() {
            self.grants.lock().retain(|x| x.id != id);
            return Err(e);
        }
        Ok(())
    }

    /// Roles `user` holds right now.
    pub fn roles_of(&self, user: &str) -> Vec<String> {
        let now = SystemTime::now();
        self.grants
            .lock()
            .iter()
            .filter(|g| g.who == user && g.expires > now)
            .map(|g| g.role.clone())
            .collect()
    }

    /// Active grants.
    pub fn grants(&self) -> Vec<Grant> {
        let now = SystemTime::now();
        self.grants
            .lock()
            .iter()
            .filter(|g| g.expires > now)
            .cloned()
            .collect()
    }

    /// Removes and returns grants that have expired (each is recorded as it goes).
    pub fn take_expired(&self) -> Vec<Grant> {
        let now = SystemTime::now();
        let mut grants = self.grants.lock();
        let (gone, kept): (Vec<Grant>, Vec<Grant>) =
            grants.drain(..).partition(|g| g.expires <= now);
        *grants = kept;
        drop(grants);
        if !gone.is_empty() {
            self.save_logged();
        }
        gone
    }
}

/// Seconds since the Unix epoch (what the CLI prints and compares).
mod unix_seconds {
    use serde::Serializer;
    use std::time::{SystemTime, UNIX_EPOCH};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let secs = <u64 as serde::Deserialize>::deserialize(d)?;
        Ok(UNIX_EPOCH + std::time::Duration::from_secs(secs))
    }
}

/// `now + d`, saturating.
pub fn after(d: Duration) -> SystemTime {
    SystemTime::now()
        .checked_add(d)
        .unwrap_or_else(SystemTime::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval(id: &str, requester: &str) -> Approval {
        Approval {
            id: id.into(),
            requester: requester.into(),
            groups: vec![],
            command: "kubectl delete pod x".into(),
            verb: "delete".into(),
            resource: "pods".into(),
            namespace: "payments".into(),
            name: "x".into(),
            rule: "hold-deletes".into(),
            message: "approval required".into(),
            created: SystemTime::now(),
            expires: after(Duration::from_secs(60)),
        }
    }

    #[tokio::test]
    async fn a_reviewer_answers_but_never_their_own_request() {
        let a = Approvals::new();
        let rx = a.hold(approval("1", "alice"));
        assert_eq!(a.list().len(), 1);
        let own = Verdict::Approved {
            by: "alice".into(),
            reason: "mine".into(),
        };
        assert_eq!(
            a.decide("1", own),
            Err(ReviewError::SelfApproval("alice".into()))
        );
        let ok = Verdict::Approved {
            by: "bob".into(),
            reason: "ticket 7".into(),
        };
        assert!(a.decide("1", ok.clone()).is_ok());
        assert_eq!(rx.await.ok(), Some(ok.clone()));
        assert!(a.list().is_empty());
        assert_eq!(a.decide("1", ok), Err(ReviewError::NotFound("1".into())));
    }

    #[test]
    fn an_abandoned_request_is_not_listed() {
        let a = Approvals::new();
        drop(a.hold(approval("1", "alice")));
        assert!(a.list().is_empty());
    }

    #[test]
    fn a_store_brings_back_grants_and_history_and_interrupts_what_was_pending() {
        let dir = tempfile::tempdir().unwrap();
        let a = Approvals::with_store(dir.path()).unwrap();
        let grant = Grant {
            id: "g1".into(),
            who: "agent-ops".into(),
            role: "payments-writer".into(),
            reason: "incident".into(),
            granted_by: "bob".into(),
            created: SystemTime::now(),
            expires: after(Duration::from_secs(3600)),
        };
        a.grant(grant).unwrap();
        let _held = a.hold(approval("1", "alice"));
        let _decided = a.hold(approval("2", "alice"));
        let ok = Verdict::Denied {
            by: "bob".into(),
            reason: "no".into(),
        };
        a.decide("2", ok).unwrap();
        drop(a);

        let b = Approvals::with_store(dir.path()).unwrap();
        assert_eq!(b.roles_of("agent-ops"), ["payments-writer"]);
        assert!(
            b.list().is_empty(),
            "nobody waits for a pre-restart approval"
        );
        let h: Vec<(String, Outcome)> = b
            .history()
            .into_iter()
            .map(|e| (e.approval.id, e.outcome))
            .collect();
        assert_eq!(
            h,
            [
                (
                    "2".to_string(),
                    Outcome::Denied {
                        by: "bob".into(),
                        reason: "no".into()
                    }
                ),
                ("1".to_string(), Outcome::Interrupted),
            ]
        );
    }

    #[test]
    fn grants_expire_by_themselves() {
        let a = Approvals::new();
        let g = |id: &str, secs: u64| Grant {
            id: id.into(),
            who: "agent-ops".into(),
            role: "payments-writer".into(),
            reason: "incident".into(),
            granted_by: "bob".into(),
            created: SystemTime::now(),
            expires: after(Duration::from_secs(secs)),
        };
        a.grant(g("1", 3600)).unwrap();
        a.grant(Grant {
            expires: SystemTime::now() - Duration::from_secs(1),
            ..g("2", 0)
        })
        .unwrap();
        assert_eq!(a.roles_of("agent-ops"), ["payments-writer"]);
        assert!(a.roles_of("alice").is_empty());
        assert_eq!(a.take_expired().len(), 1);
        assert_eq!(a.grants().len(), 1);
    }
}
