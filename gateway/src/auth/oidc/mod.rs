//! OIDC bearer JWTs: signature against the issuer's JWKS, then `iss`, `aud`, `exp`, `nbf`, then
//! the claim mapping.
mod claims;
mod fetch;
mod jwks;

#[cfg(test)]
mod tests;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use self::claims::ClaimMapping;
use self::fetch::Fetcher;
use self::jwks::{Jwks, JwksSource, KeyEntry};
use super::ttl_cache::TtlCache;
use super::{AuthArgs, AuthError, Identity};
use sha2::{Digest, Sha256};

pub struct OidcVerifier {
    issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    jwks: Jwks,
    mapping: ClaimMapping,
    /// Verified tokens by SHA-256, so a busy caller costs one signature check per TTL rather
    /// than one per request (the check dominates the gateway's per-request CPU otherwise).
    verified: TtlCache<[u8; 32], Identity>,
    cache_ttl: std::time::Duration,
}

impl OidcVerifier {
    /// The verifier configured by `args`, or `None` without `--oidc-issuer-url`. No network I/O.
    pub fn from_args(args: &AuthArgs) -> Result<Option<Self>, AuthError> {
        let Some(issuer) = args.oidc_issuer_url.clone() else {
            return Ok(None);
        };
        let https = |flag: &str, url: &str| -> Result<http::Uri, AuthError> {
            url.parse::<http::Uri>()
                .ok()
                .filter(|u| u.scheme_str() == Some("https") && u.host().is_some())
                .ok_or_else(|| AuthError::Config(format!("{flag} {url:?} is not an https URL")))
        };
        https("--oidc-issuer-url", &issuer)?;
        let audiences: Vec<String> = args
            .oidc_audience
            .iter()
            .filter(|a| !a.is_empty())
            .cloned()
            .collect();
        if audiences.is_empty() {
            return Err(AuthError::Config(
                "--oidc-audience is required with --oidc-issuer-url".into(),
            ));
        }
        let algorithms = args
            .oidc_signing_algs
            .iter()
            .map(|name| {
                let alg: Algorithm = name.trim().parse().map_err(|_| {
                    AuthError::Config(format!("--oidc-signing-algs: unknown algorithm {name:?}"))
                })?;
                if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                    return Err(AuthError::Config(format!(
                        "--oidc-signing-algs: {name} is refused; only asymmetric algorithms verify \
                         caller tokens"
                    )));
                }
                Ok(alg)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if algorithms.is_empty() {
            return Err(AuthError::Config("--oidc-signing-algs is empty".into()));
        }

        let roots = match &args.oidc_ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|source| AuthError::ReadFile {
                    what: "OIDC CA file",
                    path: path.clone(),
                    source,
                })?;
                crate::upstream::tls::root_store(&pem, &format!("OIDC CA file {}", path.display()))
                    .map_err(|e| AuthError::Config(e.to_string()))?
            }
            None => rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        };
        let source = match &args.oidc_jwks_url {
            Some(url) => JwksSource::Url(https("--oidc-jwks-url", url)?),
            None => JwksSource::Discover {
                issuer: issuer.clone(),
                discovery: https(
                    "--oidc-issuer-url",
                    &format!(
                        "{}/.well-known/openid-configuration",
                        issuer.trim_end_matches('/')
                    ),
                )?,
            },
        };
        let jwks = Jwks::new(
            Fetcher::new(roots, args.oidc_http_timeout)?,
            source,
            args.oidc_jwks_refresh_interval,
            args.oidc_jwks_min_refetch_interval,
        );

        // kube-apiserver: without a prefix flag, non-email usernames get "{issuer}#"; "-" means
        // no prefix.
        let username_prefix = match args.oidc_username_prefix.as_deref() {
            Some("-") => None,
            Some(prefix) => Some(prefix.to_string()),
            None if args.oidc_username_claim == "email" => None,
            None => Some(format!("{issuer}#")),
        };
        let mapping = ClaimMapping {
            issuer: issuer.clone(),
            username_claim: args.oidc_username_claim.clone(),
            username_prefix,
            groups_claim: args.oidc_groups_claim.clone(),
            groups_prefix: args.oidc_groups_prefix.clone(),
            uid_claim: args.oidc_uid_claim.clone().filter(|c| !c.is_empty()),
        };
        Ok(Some(OidcVerifier {
            issuer,
            audiences,
            algorithms,
            leeway: args.oidc_leeway.as_secs(),
            jwks,
            mapping,
            verified: TtlCache::new(args.oidc_cache_size),
            cache_ttl: args.oidc_cache_ttl,
        }))
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The identity of `token` if this verifier accepted that exact token within the cache TTL
    /// (and before its expiry): no decoding, one hash.
    pub fn cached(&self, token: &str) -> Option<Identity> {
        self.verified.get(&Sha256::digest(token.as_bytes()).into())
    }

    /// Verifies `token`, which claims to come from our issuer.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let token_hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(identity) = self.verified.get(&token_hash) {
            return Ok(identity);
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::unauthorized("malformed token"))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(AuthError::unauthorized(format!(
                "token signing algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let mut keys = self.jwks.keys().await?;
        if let Some(kid) = &header.kid
            && !keys.has_kid(kid)
        {
            keys = self.jwks.refetch_for(kid, &keys).await?;
        }
        let candidates: Vec<&KeyEntry> = keys
            .keys
            .iter()
            .filter(|k| match (&header.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            })
            .filter(|k| k.alg.is_none_or(|alg| alg == header.alg))
            .collect();
        if candidates.is_empty() {
            return Err(AuthError::unauthorized("token signed by an unknown key"));
        }

        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&self.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = self.leeway;

        for key in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => {
                    let identity = self.mapping.identity(&data.claims)?;
                    // Never cache past the token's own expiry.
                    let now = chrono::Utc::now().timestamp();
                    let left = data
                        .claims
                        .get("exp")
                        .and_then(Value::as_i64)
                        .unwrap_or(now)
                        - now;
                    let ttl = self
                        .cache_ttl
                        .min(std::time::Duration::from_secs(left.max(0) as u64));
                    self.verified.insert(token_hash, identity.clone(), ttl);
                    return Ok(identity);
                }
                // Another key with the same (or no) kid may still match.
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::InvalidSignature
                            | ErrorKind::InvalidAlgorithm
                            | ErrorKind::InvalidKeyFormat
                            | ErrorKind::InvalidEcdsaKey
                            | ErrorKind::InvalidRsaKey(_)
                    ) => {}
                Err(e) => return Err(claim_error(e.kind())),
            }
        }
        Err(AuthError::unauthorized("token signature is invalid"))
    }
}

/// Fuzzing entry point (`fuzz/fuzz_targets/oidc_jwt.rs`), not an API: runs an untrusted JWKS
/// document and token through the same parsing, key selection, signature and claim checks as
/// [`OidcVerifier::verify`], without the network, for issuer `https://issuer.example` and
/// audience `gatehouse`.
#[doc(hidden)]
pub fn fuzz_verify(jwks_json: &[u8], token: &str) -> Result<Identity, AuthError> {
    // The gateway peeks at the unverified issuer first, to pick a verifier.
    let _ = super::bearer::peek_issuer(token);
    let keys = jwks::parse_set(jwks_json).map_err(AuthError::unauthorized)?;
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| AuthError::unauthorized("malformed token"))?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&["https://issuer.example"]);
    validation.set_audience(&["gatehouse"]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let mapping = ClaimMapping {
        issuer: "https://issuer.example".into(),
        username_claim: "email".into(),
        username_prefix: None,
        groups_claim: "groups".into(),
        groups_prefix: Some("oidc:".into()),
        uid_claim: Some("sub".into()),
    };
    for key in keys.iter().filter(|k| match (&header.kid, &k.kid) {
        (Some(want), Some(have)) => want == have,
        _ => true,
    }) {
        if key.alg.is_some_and(|alg| alg != header.alg) {
            continue;
        }
        if let Ok(data) = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
            return mapping.identity(&data.claims);
        }
    }
    Err(AuthError::unauthorized("token signature is invalid"))
}

/// A caller-facing message for a token that verified but failed a claim check.
fn claim_error(kind: &ErrorKind) -> AuthError {
    AuthError::unauthorized(match kind {
        ErrorKind::ExpiredSignature => "token expired".to_string(),
        ErrorKind::ImmatureSignature => "token not yet valid".to_string(),
        ErrorKind::InvalidAudience => "token audience mismatch".to_string(),
        ErrorKind::InvalidIssuer => "token issuer mismatch".to_string(),
        ErrorKind::MissingRequiredClaim(claim) => format!("token has no {claim:?} claim"),
        ErrorKind::InvalidClaimFormat(claim) => format!("token claim {claim:?} is malformed"),
        _ => "invalid token".to_string(),
    })
}
