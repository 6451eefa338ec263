//! A bearer token read from a file and re-read periodically, because the kubelet rotates projected
//! ServiceAccount tokens (and `tokenFile` users expect the same).
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderValue;
use parking_lot::Mutex;
use tokio::time::Instant;

use super::UpstreamError;

pub(crate) struct FileToken {
    path: PathBuf,
    reload_every: Duration,
    current: Mutex<Cached>,
}

struct Cached {
    header: HeaderValue,
    read_at: Instant,
}

impl FileToken {
    /// Reads the file once now, so a missing or empty token file fails at start-up.
    pub async fn new(path: PathBuf, reload_every: Duration) -> Result<Self, UpstreamError> {
        let header = read(&path).await?;
        Ok(FileToken {
            path,
            reload_every,
            current: Mutex::new(Cached {
                header,
                read_at: Instant::now(),
            }),
        })
    }

    /// The `Authorization` value to use now, re-reading the file when the last read is older than
    /// the reload interval. A failed re-read keeps the previous token: during a kubelet rotation the
    /// file can briefly be missing, and the old token stays valid for a while.
    pub async fn authorization(&self) -> HeaderValue {
        let stale = {
            let cached = self.current.lock();
            (cached.read_at.elapsed() >= self.reload_every).then(|| cached.header.clone())
        };
        let Some(previous) = stale else {
            return self.current.lock().header.clone();
        };
        match read(&self.path).await {
            Ok(header) => {
                if header != previous {
                    tracing::info!(path = %self.path.display(), "upstream token file changed, using the new token");
                }
                *self.current.lock() = Cached {
                    header: header.clone(),
                    read_at: Instant::now(),
                };
                header
            }
            Err(error) => {
                tracing::warn!(path = %self.path.display(), error = %error, "cannot re-read the upstream token file, keeping the previous token");
                self.current.lock().read_at = Instant::now();
                previous
            }
        }
    }
}

async fn read(path: &PathBuf) -> Result<HeaderValue, UpstreamError> {
    let raw = tokio::fs::read(path)
        .await
        .map_err(|source| UpstreamError::ReadFile {
            what: "token file",
            path: path.clone(),
            source,
        })?;
    bearer(raw.trim_ascii(), &format!("token file {}", path.display()))
}

/// `Bearer <token>` as a sensitive header value.
pub(crate) fn bearer(token: &[u8], what: &str) -> Result<HeaderValue, UpstreamError> {
    if token.is_empty() {
        return Err(UpstreamError::Credential(format!("{what} is empty")));
    }
    let mut value = Vec::with_capacity(token.len() + 7);
    value.extend_from_slice(b"Bearer ");
    value.extend_from_slice(token);
    let mut header = HeaderValue::from_bytes(&value).map_err(|_| {
        UpstreamError::Credential(format!(
            "{what} contains characters not allowed in a header"
        ))
    })?;
    header.set_sensitive(true);
    Ok(header)
}
