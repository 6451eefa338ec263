//! The policy in force, replaced when its file changes. The file is re-read every poll and
//! compared with what was last seen; a bad version is logged once and the old policy stays.
use gatehouse_policy::{LoadError, Policy};
use parking_lot::RwLock;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub struct LivePolicy {
    path: PathBuf,
    current: RwLock<Arc<Policy>>,
    /// The file contents last looked at, good or bad (so a bad file is reported once).
    seen: parking_lot::Mutex<Option<Vec<u8>>>,
}

/// What one poll found.
#[derive(Debug)]
pub enum Reload {
    Unchanged,
    Applied,
    /// The file changed but is not a valid policy; the previous policy stays in force.
    Rejected(LoadError),
}

impl LivePolicy {
    /// Loads the policy file; at start a bad file is an error.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let policy = parse(&text, path)?;
        Ok(Self {
            path: path.to_path_buf(),
            current: RwLock::new(Arc::new(policy)),
            seen: parking_lot::Mutex::new(Some(text)),
        })
    }

    pub fn current(&self) -> Arc<Policy> {
        self.current.read().clone()
    }

    /// Re-reads the file once; applies it when it changed and is valid.
    pub fn poll(&self) -> Reload {
        let read = std::fs::read(&self.path);
        let mut seen = self.seen.lock();
        if seen.as_ref() == read.as_ref().ok() {
            return Reload::Unchanged;
        }
        *seen = read.as_ref().ok().cloned();
        drop(seen);
        let parsed = read
            .map_err(|source| LoadError::Read {
                path: self.path.display().to_string(),
                source,
            })
            .and_then(|text| parse(&text, &self.path));
        match parsed {
            Ok(policy) => {
                *self.current.write() = Arc::new(policy);
                Reload::Applied
            }
            Err(e) => Reload::Rejected(e),
        }
    }

    /// Polls every `interval` until the process ends, logging each change once.
    pub fn watch(self: Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let this = self.clone();
                let outcome = tokio::task::spawn_blocking(move || this.poll()).await;
                match outcome {
                    Ok(Reload::Unchanged) => {}
                    Ok(Reload::Applied) => {
                        let rules = self.current().rules.len();
                        tracing::info!(path = %self.path.display(), rules, "policy reloaded");
                    }
                    Ok(Reload::Rejected(e)) => tracing::error!(
                        error = %crate::error_chain(&e),
                        "policy file rejected; the previous policy stays in force"
                    ),
                    Err(e) => tracing::error!(error = %e, "policy reload task failed"),
                }
            }
        })
    }
}

fn parse(text: &[u8], path: &Path) -> Result<Policy, LoadError> {
    let origin = path.display().to_string();
    let text = std::str::from_utf8(text).map_err(|e| LoadError::InvalidNoLocation {
        origin: origin.clone(),
        message: format!("not UTF-8: {e}"),
    })?;
    gatehouse_policy::parse(text, &origin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_policy::{Action, Request};

    const DENY_DELETE: &str = "version: 1\ndefault: {action: allow}\nrules:\n  - name: no-delete\n    match: {verbs: [delete]}\n    action: deny\n";
    const DENY_ALL: &str = "version: 1\ndefault: {action: deny, message: closed}\n";

    fn delete() -> Request {
        Request {
            verb: "delete".into(),
            ..Default::default()
        }
    }

    fn get() -> Request {
        Request {
            verb: "get".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_bad_file_keeps_the_old_policy_and_is_reported_once() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, DENY_DELETE)?;
        let live = LivePolicy::load(&path)?;
        assert!(matches!(live.poll(), Reload::Unchanged));
        assert_eq!(live.current().evaluate(&delete()).action, Action::Deny);

        std::fs::write(
            &path,
            "version: 1\ndefault: {action: allow}\nrules:\n  - name: x\n    action: dney\n",
        )?;
        match live.poll() {
            Reload::Rejected(LoadError::Invalid { line, column, .. }) => {
                assert_eq!((line, column), (5, 13));
            }
            other => panic!("expected a located rejection, got {other:?}"),
        }
        assert!(matches!(live.poll(), Reload::Unchanged), "reported once");
        assert_eq!(live.current().evaluate(&delete()).action, Action::Deny);

        // A vanished file is reported once and changes nothing either.
        std::fs::remove_file(&path)?;
        assert!(matches!(
            live.poll(),
            Reload::Rejected(LoadError::Read { .. })
        ));
        assert!(matches!(live.poll(), Reload::Unchanged));
        assert_eq!(live.current().evaluate(&delete()).action, Action::Deny);

        std::fs::write(&path, DENY_ALL)?;
        assert!(matches!(live.poll(), Reload::Applied));
        let d = live.current().evaluate(&get());
        assert_eq!((d.action, d.message.as_str()), (Action::Deny, "closed"));
        Ok(())
    }

    #[test]
    fn a_bad_file_at_start_is_an_error() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, "version: 1\n")?;
        let e = LivePolicy::load(&path).err().map(|e| e.to_string());
        assert_eq!(
            e,
            Some(format!("{}:1:1: missing field `default`", path.display()))
        );
        Ok(())
    }

    #[tokio::test]
    async fn the_watcher_applies_a_changed_file() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, DENY_DELETE)?;
        let live = Arc::new(LivePolicy::load(&path)?);
        let task = live.clone().watch(Duration::from_millis(10));
        std::fs::write(&path, DENY_ALL)?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while live.current().evaluate(&get()).action != Action::Deny {
            assert!(tokio::time::Instant::now() < deadline, "never reloaded");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        task.abort();
        Ok(())
    }
}
