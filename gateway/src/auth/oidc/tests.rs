//! OIDC verification against a fake issuer over HTTPS (its own CA, as `--oidc-ca-file`).
use serde_json::{Value, json};

use super::OidcVerifier;
use crate::auth::testing::{FakeIdp, RSA_KEY_1, RSA_KEY_2, Signer, auth_args, now};
use crate::auth::{AuthError, AuthMethod};
use crate::upstream::testing::write;

struct Setup {
    _dir: tempfile::TempDir,
    idp: FakeIdp,
    ca: String,
}

async fn setup(keys: Vec<Value>) -> anyhow::Result<Setup> {
    let dir = tempfile::tempdir()?;
    let idp = FakeIdp::start(keys).await?;
    let ca = write(dir.path(), "idp-ca.pem", &idp.pki.ca_pem)?
        .to_string_lossy()
        .into_owned();
    Ok(Setup { _dir: dir, idp, ca })
}

impl Setup {
    fn verifier(&self, extra: &[&str]) -> anyhow::Result<OidcVerifier> {
        let mut flags = vec![
            "--oidc-issuer-url",
            &self.idp.issuer,
            "--oidc-audience",
            "gatehouse,other",
            "--oidc-ca-file",
            &self.ca,
        ];
        flags.extend_from_slice(extra);
        OidcVerifier::from_args(&auth_args(&flags))?
            .ok_or_else(|| anyhow::anyhow!("oidc not configured"))
    }

    fn claims(&self, extra: Value) -> Value {
        let mut claims = json!({
            "iss": self.idp.issuer,
            "aud": "gatehouse",
            "sub": "user-1",
            "exp": now() + 300,
            "iat": now(),
            "groups": ["dev", "ops"],
        });
        if let (Some(base), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                base.insert(k.clone(), v.clone());
            }
        }
        claims
    }
}

fn message(result: Result<crate::auth::Identity, AuthError>) -> String {
    match result {
        Ok(id) => format!("accepted as {}", id.username),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn valid_tokens_rs256_and_es256() -> anyhow::Result<()> {
    let rsa = Signer::rsa("rsa-1", RSA_KEY_1)?;
    let ec = Signer::ec("ec-1")?;
    let s = setup(vec![rsa.jwk()?, ec.jwk()?]).await?;
    let oidc = s.verifier(&[])?;

    let id = oidc.verify(&rsa.sign(&s.claims(json!({})))?).await?;
    // kube-apiserver's default: non-email usernames get the "{issuer}#" prefix.
    assert_eq!(id.username, format!("{}#user-1", s.idp.issuer));
    assert_eq!(id.groups, vec!["dev", "ops"]);
    assert_eq!(id.method, AuthMethod::Oidc);
    assert_eq!(id.issuer, s.idp.issuer);
    assert_eq!(id.uid, "");

    // Any of the configured audiences, in an aud array, is accepted.
    let id = oidc
        .verify(&ec.sign(&s.claims(json!({"aud": ["x", "other"]})))?)
        .await?;
    assert_eq!(id.username, format!("{}#user-1", s.idp.issuer));
    // Discovery happened once, and the keys were fetched once for both tokens.
    assert_eq!(
        s.idp
            .discovery_hits
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_eq!(s.idp.jwks_hits(), 1);
    Ok(())
}

#[tokio::test]
async fn claim_mapping_flags() -> anyhow::Result<()> {
    let rsa = Signer::rsa("rsa-1", RSA_KEY_1)?;
    let s = setup(vec![rsa.jwk()?]).await?;
    let oidc = s.verifier(&[
        "--oidc-username-claim",
        "email",
        "--oidc-groups-claim",
        "roles",
        "--oidc-groups-prefix",
        "oidc:",
        "--oidc-uid-claim",
        "sub",
    ])?;
    let token = rsa.sign(&s.claims(json!({"email": "ann@example.com", "roles": "admin"})))?;
    let id = oidc.verify(&token).await?;
    // The email claim gets no default prefix.
    assert_eq!(id.username, "ann@example.com");
    assert_eq!(id.groups, vec!["oidc:admin"]);
    assert_eq!(id.uid, "user-1");

    let oidc = s.verifier(&["--oidc-username-prefix", "-"])?;
    assert_eq!(oidc.verify(&token).await?.username, "user-1");
    let oidc = s.verifier(&["--oidc-username-prefix", "sso:"])?;
    assert_eq!(oidc.verify(&token).await?.username, "sso:user-1");
    Ok(())
}

#[tokio::test]
async fn time_audience_and_issuer_checks() -> anyhow::Result<()> {
    let rsa = Signer::rsa("rsa-1", RSA_KEY_1)?;
    let s = setup(vec![rsa.jwk()?]).await?;
    let oidc = s.verifier(&[])?;
    let cases = [
        (json!({"exp": now() - 120}), "token expired"),
        (json!({"nbf": now() + 300}), "token not yet valid"),
        (json!({"aud": "someone-else"}), "token audience mismatch"),
        (
            json!({"iss": "https://evil.example"}),
            "token issuer mismatch",
        ),
    ];
    for (claims, want) in cases {
        let got = message(oidc.verify(&rsa.sign(&s.claims(claims.clone()))?).await);
        assert_eq!(got, want, "{claims}");
    }
    // Within the 30 s default leeway, a just-expired or almost-valid token is fine.
    for claims in [json!({"exp": now() - 10}), json!({"nbf": now() + 10})] {
        oidc.verify(&rsa.sign(&s.claims(claims))?).await?;
    }
    // No exp at all is refused.
    let mut claims = s.claims(json!({}));
    if let Some(map) = claims.as_object_mut() {
        map.remove("exp");
    }
    assert_eq!(
        message(oidc.verify(&rsa.sign(&claims)?).await),
        "token has no \"exp\" claim"
    );
    // A custom leeway of 0 s rejects the just-expired token.
    let strict = s.verifier(&["--oidc-leeway", "0s"])?;
    assert_eq!(
        message(
            strict
                .verify(&rsa.sign(&s.claims(json!({"exp": now() - 10})))?)
                .await
        ),
        "token expired"
    );
    Ok(())
}

#[tokio::test]
async fn wrong_key_and_algorithm_are_rejected() -> anyhow::Result<()> {
    let good = Signer::rsa("rsa-1", RSA_KEY_1)?;
    let attacker = Signer::rsa("rsa-2", RSA_KEY_2)?;
    let s = setup(vec![good.jwk()?]).await?;
    let oidc = s.verifier(&[])?;
    let claims = s.claims(json!({}));

    // Signed by another key while naming the trusted key's kid.
    let forged = attacker.sign_as("rsa-1", &claims)?;
    assert_eq!(
        message(oidc.verify(&forged).await),
        "token signature is invalid"
    );

    // A valid token with its payload altered.
    let token = good.sign(&claims)?;
    let mut parts: Vec<&str> = token.split('.').collect();
    let other = good.sign(&s.claims(json!({"sub": "admin"})))?;
    let other_payload = other.split('.').nth(1).unwrap_or_default().to_string();
    parts[1] = &other_payload;
    assert_eq!(
        message(oidc.verify(&parts.join(".")).await),
        "token signature is invalid"
    );

    // HMAC is never accepted, even with a key that "verifies".
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"secret"),
    )?;
    assert_eq!(
        message(oidc.verify(&hs).await),
        "token signing algorithm HS256 is not accepted"
    );
    assert_eq!(message(oidc.verify("not-a-jwt").await), "malformed token");
    Ok(())
}

#[tokio::test]
async fn unknown_kid_refetches_so_rotation_works() -> anyhow::Result<()> {
    let old = Signer::rsa("old", RSA_KEY_1)?;
    let new = Signer::ec("new")?;
    let s = setup(vec![old.jwk()?]).await?;
    // No verified-token cache here: this test is about which keys the JWKS holds.
    let oidc = s.verifier(&[
        "--oidc-jwks-min-refetch-interval",
        "0s",
        "--oidc-cache-ttl",
        "0s",
    ])?;
    let claims = s.claims(json!({}));

    oidc.verify(&old.sign(&claims)?).await?;
    assert_eq!(s.idp.jwks_hits(), 1);

    // Before the issuer publishes the new key, the token is refused after one refetch.
    assert_eq!(
        message(oidc.verify(&new.sign(&claims)?).await),
        "token signed by an unknown key"
    );
    assert_eq!(s.idp.jwks_hits(), 2);

    // The issuer rotates: the new key appears, the old one goes.
    *s.idp.jwks.lock() = vec![new.jwk()?];
    let id = oidc.verify(&new.sign(&claims)?).await?;
    assert_eq!(id.username, format!("{}#user-1", s.idp.issuer));
    assert_eq!(s.idp.jwks_hits(), 3);
    // Known kid now: no further fetch.
    oidc.verify(&new.sign(&claims)?).await?;
    assert_eq!(s.idp.jwks_hits(), 3);
    // The old key is gone from the refetched set.
    assert_eq!(
        message(oidc.verify(&old.sign(&claims)?).await),
        "token signed by an unknown key"
    );
    Ok(())
}

#[tokio::test]
async fn unknown_kid_refetch_is_rate_limited() -> anyhow::Result<()> {
    let old = Signer::rsa("old", RSA_KEY_1)?;
    let new = Signer::rsa("new", RSA_KEY_2)?;
    let s = setup(vec![old.jwk()?]).await?;
    // Default minimum refetch interval: 10 s.
    let oidc = s.verifier(&[])?;
    let claims = s.claims(json!({}));
    oidc.verify(&old.sign(&claims)?).await?;
    *s.idp.jwks.lock() = vec![old.jwk()?, new.jwk()?];
    // The last fetch was just now, so unknown kids do not trigger a fetch storm.
    for _ in 0..5 {
        assert_eq!(
            message(oidc.verify(&new.sign(&claims)?).await),
            "token signed by an unknown key"
        );
    }
    assert_eq!(s.idp.jwks_hits(), 1);
    Ok(())
}

#[tokio::test]
async fn explicit_jwks_url_and_unreachable_issuer() -> anyhow::Result<()> {
    let rsa = Signer::rsa("rsa-1", RSA_KEY_1)?;
    let s = setup(vec![rsa.jwk()?]).await?;
    let jwks_url = format!("{}/jwks", s.idp.issuer);
    let oidc = s.verifier(&["--oidc-jwks-url", &jwks_url])?;
    oidc.verify(&rsa.sign(&s.claims(json!({})))?).await?;
    assert_eq!(
        s.idp
            .discovery_hits
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );

    // An issuer we cannot reach makes authentication unavailable, not the caller unauthorized.
    let dir = tempfile::tempdir()?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let dead = format!("https://127.0.0.1:{}", listener.local_addr()?.port());
    drop(listener);
    let ca = write(dir.path(), "ca.pem", &s.idp.pki.ca_pem)?;
    let oidc = OidcVerifier::from_args(&auth_args(&[
        "--oidc-issuer-url",
        &dead,
        "--oidc-audience",
        "gatehouse",
        "--oidc-ca-file",
        ca.to_str().unwrap_or_default(),
    ]))?
    .ok_or_else(|| anyhow::anyhow!("not configured"))?;
    let claims = s.claims(json!({"iss": dead}));
    let err = oidc.verify(&rsa.sign(&claims)?).await;
    assert!(matches!(err, Err(AuthError::Unavailable(_))), "{err:?}");
    Ok(())
}

#[test]
fn config_is_validated() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["--oidc-issuer-url", "https://idp"],
            "--oidc-audience is required",
        ),
        (
            &["--oidc-issuer-url", "http://idp", "--oidc-audience", "a"],
            "is not an https URL",
        ),
        (
            &[
                "--oidc-issuer-url",
                "https://idp",
                "--oidc-audience",
                "a",
                "--oidc-signing-algs",
                "HS256",
            ],
            "HS256 is refused",
        ),
        (
            &[
                "--oidc-issuer-url",
                "https://idp",
                "--oidc-audience",
                "a",
                "--oidc-ca-file",
                "/nonexistent/ca.pem",
            ],
            "cannot read OIDC CA file",
        ),
    ];
    for (flags, want) in cases {
        let err = OidcVerifier::from_args(&auth_args(flags))
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains(want)),
            "{flags:?}: {err:?}"
        );
    }
}

#[tokio::test]
async fn verified_tokens_are_cached_for_the_ttl_only() -> anyhow::Result<()> {
    let key = Signer::ec("k1")?;
    let s = setup(vec![key.jwk()?]).await?;
    let cached = s.verifier(&["--oidc-jwks-min-refetch-interval", "0s"])?;
    let uncached = s.verifier(&[
        "--oidc-jwks-min-refetch-interval",
        "0s",
        "--oidc-cache-ttl",
        "0s",
    ])?;
    let token = key.sign(&s.claims(json!({})))?;
    cached.verify(&token).await?;
    uncached.verify(&token).await?;
    // The issuer rotates to a new key and withdraws the old one; a token under the new kid
    // makes both verifiers refetch the key set.
    let next = Signer::ec("k2")?;
    *s.idp.jwks.lock() = vec![next.jwk()?];
    let fresh = next.sign(&s.claims(json!({})))?;
    cached.verify(&fresh).await?;
    uncached.verify(&fresh).await?;
    // The cached verifier still knows this exact token (within its TTL); the other refuses it.
    cached.verify(&token).await?;
    assert_eq!(
        message(uncached.verify(&token).await),
        "token signed by an unknown key"
    );
    // A different token under the withdrawn key is not in the cache.
    let other = key.sign(&s.claims(json!({"sub": "someone-else"})))?;
    assert_eq!(
        message(cached.verify(&other).await),
        "token signed by an unknown key"
    );
    Ok(())
}
