//! Bearer tokens the API server itself understands (ServiceAccount tokens above all), verified
//! with a TokenReview sent with the gateway's own credential, and cached briefly.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::bearer::peek_issuer;
use super::ttl_cache::TtlCache;
use super::{AuthArgs, AuthError, AuthMethod, Identity};
use crate::upstream::Upstream;

const PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

pub(crate) struct TokenReviewer {
    upstream: Arc<Upstream>,
    audiences: Vec<String>,
    /// Keyed by the token's SHA-256, never the token. Rejections are cached as their message.
    cache: TtlCache<[u8; 32], Result<Identity, String>>,
    ttl: Duration,
    negative_ttl: Duration,
}

#[derive(Deserialize)]
struct Review {
    #[serde(default)]
    status: ReviewStatus,
}

#[derive(Default, Deserialize)]
struct ReviewStatus {
    #[serde(default)]
    authenticated: bool,
    #[serde(default)]
    user: ReviewUser,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    error: String,
}

#[derive(Default, Deserialize)]
struct ReviewUser {
    #[serde(default)]
    username: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    extra: BTreeMap<String, Vec<String>>,
}

impl TokenReviewer {
    pub fn from_args(args: &AuthArgs, upstream: Arc<Upstream>) -> Option<Self> {
        args.token_review.then(|| TokenReviewer {
            upstream,
            audiences: args
                .token_review_audiences
                .iter()
                .filter(|a| !a.is_empty())
                .cloned()
                .collect(),
            cache: TtlCache::new(args.token_review_cache_size),
            ttl: args.token_review_cache_ttl,
            negative_ttl: args.token_review_negative_cache_ttl,
        })
    }

    pub async fn review(&self, token: &str) -> Result<Identity, AuthError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(cached) = self.cache.get(&key) {
            return cached.map_err(AuthError::Unauthorized);
        }
        match self.ask(token).await {
            Ok(identity) => {
                self.cache.insert(key, Ok(identity.clone()), self.ttl);
                Ok(identity)
            }
            Err(AuthError::Unauthorized(message)) => {
                self.cache
                    .insert(key, Err(message.clone()), self.negative_ttl);
                Err(AuthError::Unauthorized(message))
            }
            // Not cached: the next request should try again.
            Err(other) => Err(other),
        }
    }

    async fn ask(&self, token: &str) -> Result<Identity, AuthError> {
        let mut spec = json!({ "token": token });
        if !self.audiences.is_empty() {
            spec["audiences"] = json!(self.audiences);
        }
        let body = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": spec,
        });
        let request = Request::post(PATH)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(Bytes::from(body.to_string()))
            .map_err(|e| AuthError::unavailable(format!("building TokenReview: {e}")))?;
        let response = self.upstream.send_buffered(request).await.map_err(|e| {
            tracing::warn!(error = %e, "TokenReview request failed");
            AuthError::unavailable("cannot reach the API server to review the token")
        })?;
        if !response.status().is_success() {
            // The body is deliberately not logged: a TokenReview echoes the token.
            tracing::warn!(status = %response.status(), "API server refused the gateway's TokenReview (does the gateway's principal have `create` on tokenreviews?)");
            return Err(AuthError::unavailable(format!(
                "token review failed: API server answered {}",
                response.status()
            )));
        }
        let review: Review = serde_json::from_slice(response.body())
            .map_err(|_| AuthError::unavailable("token review failed: malformed answer"))?;
        let status = review.status;
        if !status.authenticated {
            let detail = status.error.chars().take(200).collect::<String>();
            return Err(AuthError::unauthorized(if detail.is_empty() {
                "token rejected by the API server".to_string()
            } else {
                format!("token rejected by the API server: {detail}")
            }));
        }
        if !self.audiences.is_empty()
            && !status.audiences.iter().any(|a| self.audiences.contains(a))
        {
            return Err(AuthError::unauthorized("token audience mismatch"));
        }
        if status.user.username.is_empty() {
            return Err(AuthError::unavailable(
                "token review failed: authenticated without a username",
            ));
        }
        Ok(Identity {
            username: status.user.username,
            groups: status.user.groups,
            uid: status.user.uid,
            method: AuthMethod::ServiceAccountToken,
            issuer: peek_issuer(token).unwrap_or_else(|| "tokenreview".to_string()),
            extra: status.user.extra,
        })
    }
}
