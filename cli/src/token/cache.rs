//! The token cache: one 0600 JSON file per issuer, client and grant, in a 0700 directory under
//! `$XDG_CACHE_HOME/gatehouse/tokens`, replaced atomically.
use super::{TokenArgs, TokenError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A token and what renews it.
#[derive(Debug, Clone)]
pub struct Cached {
    pub token: String,
    pub expires_at: SystemTime,
    pub refresh_token: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    token: String,
    /// Unix seconds.
    expires_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
}

pub struct Cache {
    path: PathBuf,
}

impl Cache {
    pub fn new(
        dir: Option<PathBuf>,
        issuer: &str,
        client_id: &str,
        args: &TokenArgs,
    ) -> Result<Self, TokenError> {
        let dir = match dir {
            Some(d) => d,
            None => {
                let base = std::env::var_os("XDG_CACHE_HOME")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                    .ok_or_else(|| {
                        TokenError::Config(
                            "neither XDG_CACHE_HOME nor HOME is set: pass --cache-dir".into(),
                        )
                    })?;
                base.join("gatehouse").join("tokens")
            }
        };
        let key = format!("{issuer}\n{client_id}\n{:?}\n{}", args.grant, args.scopes);
        let digest = Sha256::digest(key.as_bytes());
        let name: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self {
            path: dir.join(format!("{name}.json")),
        })
    }

    /// The cached token, if any and readable; a damaged file is treated as absent.
    pub fn load(&self) -> Option<Cached> {
        let d: OnDisk = serde_json::from_slice(&std::fs::read(&self.path).ok()?).ok()?;
        Some(Cached {
            token: d.token,
            expires_at: UNIX_EPOCH + Duration::from_secs(d.expires_at),
            refresh_token: d.refresh_token,
        })
    }

    pub fn store(&self, c: &Cached) -> Result<(), TokenError> {
        let fail = |reason: String| TokenError::Cache {
            path: self.path.display().to_string(),
            reason,
        };
        let dir = self
            .path
            .parent()
            .ok_or_else(|| fail("no parent directory".into()))?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| fail(e.to_string()))?;
        let d = OnDisk {
            token: c.token.clone(),
            expires_at: c
                .expires_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            refresh_token: c.refresh_token.clone(),
        };
        let body = serde_json::to_vec(&d).map_err(|e| fail(e.to_string()))?;
        let tmp = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        // Created 0600 from the start: the token is never readable by others, not even briefly.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| fail(e.to_string()))?;
        f.write_all(&body)
            .and_then(|()| f.sync_all())
            .map_err(|e| fail(e.to_string()))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| fail(e.to_string()))
    }
}
