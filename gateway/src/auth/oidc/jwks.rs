//! The issuer's signing keys: fetched lazily, refreshed periodically, refetched (rate-limited)
//! when a token names a key we do not know, so key rotation works.
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use parking_lot::Mutex;
use serde::Deserialize;
use tokio::time::Instant;

use super::fetch::Fetcher;
use crate::auth::AuthError;

pub(crate) struct KeyEntry {
    pub kid: Option<String>,
    /// The JWK's own `alg`, if it pins one.
    pub alg: Option<Algorithm>,
    pub key: DecodingKey,
}

pub(crate) struct KeySet {
    pub keys: Vec<KeyEntry>,
    fetched_at: Instant,
}

impl KeySet {
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

/// Where the JWKS is: configured, or discovered from the issuer.
pub(crate) enum JwksSource {
    Url(Uri),
    Discover { issuer: String, discovery: Uri },
}

pub(crate) struct Jwks {
    fetcher: Fetcher,
    source: JwksSource,
    /// The discovered `jwks_uri`, once known.
    discovered: Mutex<Option<Uri>>,
    current: Mutex<Option<Arc<KeySet>>>,
    /// Serialises fetches, so a burst of requests with a new `kid` fetches once.
    fetching: tokio::sync::Mutex<Option<Instant>>,
    refresh_every: Duration,
    min_refetch: Duration,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

impl Jwks {
    pub fn new(
        fetcher: Fetcher,
        source: JwksSource,
        refresh_every: Duration,
        min_refetch: Duration,
    ) -> Self {
        Jwks {
            fetcher,
            source,
            discovered: Mutex::new(None),
            current: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(None),
            refresh_every,
            min_refetch,
        }
    }

    /// The current keys, fetching them if there are none yet or they are due for a refresh. If
    /// a refresh fails, the previous keys stay in use.
    pub async fn keys(&self) -> Result<Arc<KeySet>, AuthError> {
        let current = self.current.lock().clone();
        match current {
            Some(set) if set.fetched_at.elapsed() < self.refresh_every => Ok(set),
            stale => {
                let mut last_fetch = self.fetching.lock().await;
                // Someone else may have fetched while we waited.
                if let Some(set) = self.current.lock().clone()
                    && set.fetched_at.elapsed() < self.refresh_every
                {
                    return Ok(set);
                }
                match self.fetch(&mut last_fetch).await {
                    Ok(set) => Ok(set),
                    Err(error) => match stale {
                        Some(set) => {
                            tracing::warn!(%error, "JWKS refresh failed, keeping the previous keys");
                            Ok(set)
                        }
                        None => Err(error),
                    },
                }
            }
        }
    }

    /// Fetches the keys again because a token names `kid`, which `seen` does not have; at most
    /// once per `min_refetch`. Returns the newest keys either way.
    pub async fn refetch_for(
        &self,
        kid: &str,
        seen: &Arc<KeySet>,
    ) -> Result<Arc<KeySet>, AuthError> {
        let mut last_fetch = self.fetching.lock().await;
        if let Some(set) = self.current.lock().clone()
            && (!Arc::ptr_eq(&set, seen) || set.has_kid(kid))
        {
            return Ok(set);
        }
        if let Some(at) = *last_fetch
            && at.elapsed() < self.min_refetch
        {
            tracing::debug!(kid, "unknown JWKS key id, refetch rate-limited");
            return Ok(seen.clone());
        }
        tracing::info!(kid, "unknown JWKS key id, fetching the key set again");
        self.fetch(&mut last_fetch).await
    }

    async fn fetch(&self, last_fetch: &mut Option<Instant>) -> Result<Arc<KeySet>, AuthError> {
        *last_fetch = Some(Instant::now());
        let url = self.jwks_url().await?;
        let raw: RawSet = self.fetcher.get_json(&url).await?;
        let mut keys = Vec::with_capacity(raw.keys.len());
        for value in raw.keys {
            match parse_key(value) {
                Ok(Some(entry)) => keys.push(entry),
                Ok(None) => {}
                Err(reason) => tracing::warn!(%url, reason, "skipping unusable JWKS key"),
            }
        }
        if keys.is_empty() {
            return Err(AuthError::unavailable(format!(
                "JWKS {url} has no usable signing keys"
            )));
        }
        tracing::debug!(%url, count = keys.len(), "fetched JWKS");
        let set = Arc::new(KeySet {
            keys,
            fetched_at: Instant::now(),
        });
        *self.current.lock() = Some(set.clone());
        Ok(set)
    }

    async fn jwks_url(&self) -> Result<Uri, AuthError> {
        match &self.source {
            JwksSource::Url(url) => Ok(url.clone()),
            JwksSource::Discover { issuer, discovery } => {
                if let Some(url) = self.discovered.lock().clone() {
                    return Ok(url);
                }
                let doc: Discovery = self.fetcher.get_json(discovery).await?;
                // OpenID Connect Discovery 1.0 §4.3: the document must name the same issuer.
                if doc.issuer != *issuer {
                    return Err(AuthError::unavailable(format!(
                        "discovery document names issuer {:?}, expected {issuer:?}",
                        doc.issuer
                    )));
                }
                let url: Uri = doc
                    .jwks_uri
                    .parse()
                    .ok()
                    .filter(|u: &Uri| u.scheme_str() == Some("https"))
                    .ok_or_else(|| {
                        AuthError::unavailable(format!(
                            "discovery document has an unusable jwks_uri {:?}",
                            doc.jwks_uri
                        ))
                    })?;
                *self.discovered.lock() = Some(url.clone());
                Ok(url)
            }
        }
    }
}

/// The usable signing keys of a JWKS document, as `fetch` takes them (fuzzing entry point).
pub(crate) fn parse_set(json: &[u8]) -> Result<Vec<KeyEntry>, String> {
    let raw: RawSet = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    Ok(raw
        .keys
        .into_iter()
        .filter_map(|value| parse_key(value).ok().flatten())
        .collect())
}

/// A signing key from one JWKS entry; `Ok(None)` for keys that are not for signatures.
fn parse_key(value: serde_json::Value) -> Result<Option<KeyEntry>, String> {
    if value
        .get("use")
        .and_then(|u| u.as_str())
        .is_some_and(|u| u != "sig")
    {
        return Ok(None);
    }
    // Symmetric keys never verify caller tokens: the issuer's clients would share the secret.
    if value.get("kty").and_then(|k| k.as_str()) == Some("oct") {
        return Ok(None);
    }
    let jwk: Jwk = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let alg = match jwk.common.key_algorithm {
        Some(alg) => Some(
            alg.to_string()
                .parse::<Algorithm>()
                .map_err(|_| format!("algorithm {alg:?} is not a signature algorithm"))?,
        ),
        None => None,
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
    Ok(Some(KeyEntry {
        kid: jwk.common.key_id,
        alg,
        key,
    }))
}
