//! The approvals file (`approvals.json` in the journal directory): pending and decided approvals
//! and grants, so a restart keeps the grants reviewers gave. Written whole on every change to a
//! temporary file (mode 0600), fsynced, renamed over the old one, and the directory fsynced.
use super::{Approval, Grant};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The file's name inside the journal directory (the journal reads only `*.seg`).
pub const FILE: &str = "approvals.json";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read the approvals file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the approvals file {path} is not valid: {message} (fix or remove it)")]
    Invalid { path: String, message: String },
    #[error("cannot write the approvals file {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// What an approval came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Outcome {
    Pending,
    Approved {
        by: String,
        reason: String,
    },
    Denied {
        by: String,
        reason: String,
    },
    TimedOut,
    /// The gateway stopped while the request was held: its caller was disconnected.
    Interrupted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub approval: Approval,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub version: u32,
    pub approvals: Vec<Entry>,
    pub grants: Vec<Grant>,
}

pub struct Store {
    path: PathBuf,
    dir: PathBuf,
}

impl Store {
    /// The store in `dir`, and what it holds (empty when there is no file yet).
    pub fn open(dir: &Path) -> Result<(Store, State), StoreError> {
        let path = dir.join(FILE);
        let store = Store {
            path: path.clone(),
            dir: dir.to_path_buf(),
        };
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((store, State::default()));
            }
            Err(source) => {
                return Err(StoreError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let state: State = serde_json::from_slice(&text).map_err(|e| StoreError::Invalid {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        if state.version != 1 {
            return Err(StoreError::Invalid {
                path: path.display().to_string(),
                message: format!("version {} (this gateway reads version 1)", state.version),
            });
        }
        Ok((store, state))
    }

    /// Replaces the file with `state`, durably.
    pub fn save(&self, state: &State) -> Result<(), StoreError> {
        let err = |source| StoreError::Write {
            path: self.path.display().to_string(),
            source,
        };
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(state).map_err(|e| err(e.into()))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            // Who may approve what, and why, is nobody else's business on the node.
            .mode(0o600)
            .open(&tmp)
            .map_err(err)?;
        f.write_all(&body).map_err(err)?;
        f.sync_all().map_err(err)?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(err)?;
        // The rename is durable only once the directory entry is.
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    fn secs(t: SystemTime) -> u64 {
        t.duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn a_saved_state_reads_back_the_same_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let (store, empty) = Store::open(dir.path()).unwrap();
        assert!(empty.approvals.is_empty() && empty.grants.is_empty());
        let now = UNIX_EPOCH + Duration::from_secs(secs(SystemTime::now()));
        let state = State {
            version: 1,
            approvals: vec![Entry {
                approval: Approval {
                    id: "a1".into(),
                    requester: "alice".into(),
                    groups: vec!["dev".into()],
                    command: "kubectl delete pod x".into(),
                    verb: "delete".into(),
                    resource: "pods".into(),
                    namespace: "payments".into(),
                    name: "x".into(),
                    rule: "hold".into(),
                    message: "approval required".into(),
                    created: now,
                    expires: now + Duration::from_secs(60),
                },
                outcome: Outcome::Approved {
                    by: "bob".into(),
                    reason: "ticket 7".into(),
                },
            }],
            grants: vec![Grant {
                id: "g1".into(),
                who: "agent-ops".into(),
                role: "payments-writer".into(),
                reason: "incident".into(),
                granted_by: "bob".into(),
                created: now,
                expires: now + Duration::from_secs(1800),
            }],
        };
        store.save(&state).unwrap();
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.path().join("approvals.json.tmp").exists());
        let (_, back) = Store::open(dir.path()).unwrap();
        assert_eq!(back.approvals, state.approvals);
        assert_eq!(back.grants.len(), 1);
        assert_eq!(back.grants[0].expires, state.grants[0].expires);
    }

    #[test]
    fn a_broken_file_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{\"version\": 1, \"grants\": [").unwrap();
        let e = Store::open(dir.path()).err().unwrap().to_string();
        assert!(e.contains("approvals.json is not valid"), "{e}");
        std::fs::write(
            dir.path().join(FILE),
            b"{\"version\": 2, \"approvals\": [], \"grants\": []}",
        )
        .unwrap();
        let e = Store::open(dir.path()).err().unwrap().to_string();
        assert!(e.contains("version 2"), "{e}");
    }
}
