//! Approvals and just-in-time grants, in memory: a `require_approval` request waits here for a
//! reviewer's verdict or its timeout; grants give a user a policy role until they expire.
pub mod api;
pub mod webhook;

use parking_lot::Mutex;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};
use tokio::sync::oneshot;

/// A held request, as reviewers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
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

#[derive(Default)]
pub struct Approvals {
    pending: Mutex<BTreeMap<String, Pending>>,
    grants: Mutex<Vec<Grant>>,
}

impl Approvals {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a held request; the receiver resolves with the verdict (drop it to give up).
    pub fn hold(&self, approval: Approval) -> oneshot::Receiver<Verdict> {
        let (answer, rx) = oneshot::channel();
        self.pending
            .lock()
            .insert(approval.id.clone(), Pending { approval, answer });
        rx
    }

    /// Forgets a held request (answered, timed out, or its caller went away).
    pub fn release(&self, id: &str) {
        self.pending.lock().remove(id);
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
        // The waiter may have given up a moment ago; the verdict is recorded either way.
        let _ = p.answer.send(verdict);
        Ok(p.approval)
    }

    /// Adds a grant.
    pub fn grant(&self, g: Grant) {
        self.grants.lock().push(g);
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
        a.grant(g("1", 3600));
        a.grant(Grant {
            expires: SystemTime::now() - Duration::from_secs(1),
            ..g("2", 0)
        });
        assert_eq!(a.roles_of("agent-ops"), ["payments-writer"]);
        assert!(a.roles_of("alice").is_empty());
        assert_eq!(a.take_expired().len(), 1);
        assert_eq!(a.grants().len(), 1);
    }
}
