//! `Authenticator` end to end: method selection, TokenReview through a fake API server (with its
//! cache), and client certificates.
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use http::{HeaderMap, Request};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

use super::testing::{FakeIdp, RSA_KEY_1, Signer, auth_args, now};
use super::{AuthError, AuthMethod, Authenticator, client_cert_verifier};
use crate::body::full;
use crate::upstream::testing::{TestPki, serve_https, write};
use crate::upstream::{Upstream, UpstreamArgs};

const GOOD_SA: &str = "good-sa-token";

/// A fake API server answering TokenReviews; counts reviews.
struct FakeApiServer {
    upstream: Arc<Upstream>,
    reviews: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

async fn fake_api_server() -> anyhow::Result<FakeApiServer> {
    fake_api_server_as("gateway-token").await
}

/// The fake API server, reached with `gateway_token` as the gateway's own credential.
async fn fake_api_server_as(gateway_token: &str) -> anyhow::Result<FakeApiServer> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new("cluster ca")?;
    let reviews = Arc::new(AtomicUsize::new(0));
    let counter = reviews.clone();
    let handler = move |req: Request<Incoming>| {
        let counter = counter.clone();
        async move {
            let reply = |status: http::StatusCode, body: Value| {
                let mut resp = http::Response::new(full(body.to_string()));
                *resp.status_mut() = status;
                resp
            };
            // Only the gateway's own credential may create TokenReviews.
            let gateway = req
                .headers()
                .get("authorization")
                .map(|v| v.as_bytes().to_vec());
            if gateway.as_deref() != Some(b"Bearer gateway-token".as_slice()) {
                return reply(http::StatusCode::FORBIDDEN, json!({"kind": "Status"}));
            }
            if req.uri().path() != "/apis/authentication.k8s.io/v1/tokenreviews" {
                return reply(http::StatusCode::NOT_FOUND, json!({}));
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let body = req.into_body().collect().await.map(|b| b.to_bytes());
            let review: Value = body
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            let token = review["spec"]["token"].as_str().unwrap_or_default();
            let audiences = review["spec"]["audiences"].clone();
            let known = token == GOOD_SA || token == "wrong-aud" || token.starts_with("eyJ");
            let status = if known {
                json!({
                    "authenticated": true,
                    "user": {
                        "username": "system:serviceaccount:apps:builder",
                        "uid": "0b5d-uid",
                        "groups": ["system:serviceaccounts", "system:serviceaccounts:apps"],
                        "extra": {"authentication.kubernetes.io/pod-name": ["builder-0"]},
                    },
                    // Like the API server: the audiences the token is valid for.
                    "audiences": if audiences.is_null() || token == "wrong-aud" {
                        json!(["https://kubernetes.default.svc"])
                    } else {
                        audiences
                    },
                })
            } else {
                json!({"authenticated": false, "error": "invalid bearer token"})
            };
            let mut answer = review.clone();
            answer["status"] = status;
            reply(http::StatusCode::CREATED, answer)
        }
    };
    let addr = serve_https(pki.server_config(false)?, handler).await?;
    let config = format!(
        "current-context: c
contexts: [{{name: c, context: {{cluster: c, user: u}}}}]
clusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{}', certificate-authority-data: {}}}}}]
users: [{{name: u, user: {{token: {gateway_token}}}}}]
",
        addr.port(),
        base64::engine::general_purpose::STANDARD.encode(&pki.ca_pem)
    );
    let path = write(dir.path(), "kubeconfig", config)?;
    let args: UpstreamArgs =
        crate::upstream::tests::args(&["--kubeconfig", path.to_str().unwrap_or_default()]);
    let upstream = Arc::new(Upstream::from_args(&args).await?);
    Ok(FakeApiServer {
        upstream,
        reviews,
        _dir: dir,
    })
}

fn bearer(token: &str) -> anyhow::Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    headers.insert("authorization", format!("Bearer {token}").parse()?);
    Ok(headers)
}

#[tokio::test]
async fn token_review_accepts_rejects_and_caches() -> anyhow::Result<()> {
    let api = fake_api_server().await?;
    let auth = Authenticator::new(
        &auth_args(&[
            "--token-review",
            "--token-review-cache-ttl",
            "1h",
            "--token-review-negative-cache-ttl",
            "200ms",
        ]),
        api.upstream.clone(),
    )
    .await?;

    let id = auth.authenticate(&bearer(GOOD_SA)?, None).await?;
    assert_eq!(id.username, "system:serviceaccount:apps:builder");
    assert_eq!(id.uid, "0b5d-uid");
    assert_eq!(
        id.groups,
        vec!["system:serviceaccounts", "system:serviceaccounts:apps"]
    );
    assert_eq!(id.method, AuthMethod::ServiceAccountToken);
    assert_eq!(
        id.extra.get("authentication.kubernetes.io/pod-name"),
        Some(&vec!["builder-0".to_string()])
    );
    assert_eq!(api.reviews.load(Ordering::SeqCst), 1);
    // Cached: the second call does not reach the API server.
    assert_eq!(auth.authenticate(&bearer(GOOD_SA)?, None).await?, id);
    assert_eq!(api.reviews.load(Ordering::SeqCst), 1);

    // Rejections are cached briefly, then asked again.
    let err = auth.authenticate(&bearer("bogus")?, None).await;
    let err = err
        .err()
        .ok_or_else(|| anyhow::anyhow!("bogus token accepted"))?;
    assert_eq!(err.reason(), "Unauthorized");
    assert_eq!(err.status_code(), http::StatusCode::UNAUTHORIZED);
    assert_eq!(
        err.message(),
        "token rejected by the API server: invalid bearer token"
    );
    assert!(auth.authenticate(&bearer("bogus")?, None).await.is_err());
    assert_eq!(api.reviews.load(Ordering::SeqCst), 2);
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    assert!(auth.authenticate(&bearer("bogus")?, None).await.is_err());
    assert_eq!(api.reviews.load(Ordering::SeqCst), 3);

    let err = auth.authenticate(&HeaderMap::new(), None).await.err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("no credentials provided")
    );
    Ok(())
}

#[tokio::test]
async fn token_review_audiences_and_failures() -> anyhow::Result<()> {
    let api = fake_api_server().await?;
    let auth = Authenticator::new(
        &auth_args(&["--token-review", "--token-review-audiences", "gatehouse"]),
        api.upstream.clone(),
    )
    .await?;
    // The fake echoes the requested audiences, so the check passes.
    auth.authenticate(&bearer(GOOD_SA)?, None).await?;

    let err = auth.authenticate(&bearer("wrong-aud")?, None).await.err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("token audience mismatch")
    );

    // A gateway credential the API server refuses makes authentication unavailable (503), and
    // the failure is not cached.
    let refused = fake_api_server_as("not-the-gateway").await?;
    let auth =
        Authenticator::new(&auth_args(&["--token-review"]), refused.upstream.clone()).await?;
    for _ in 0..2 {
        let err = auth
            .authenticate(&bearer(GOOD_SA)?, None)
            .await
            .err()
            .ok_or_else(|| anyhow::anyhow!("accepted"))?;
        assert_eq!(err.status_code(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err.reason(), "ServiceUnavailable");
        assert_eq!(
            err.message(),
            "authentication unavailable: token review failed: API server answered 403 Forbidden"
        );
    }
    Ok(())
}

#[tokio::test]
async fn foreign_jwt_falls_through_to_token_review() -> anyhow::Result<()> {
    let api = fake_api_server().await?;
    let signer = Signer::rsa("k1", RSA_KEY_1)?;
    let idp = FakeIdp::start(vec![signer.jwk()?]).await?;
    let dir = tempfile::tempdir()?;
    let ca = write(dir.path(), "idp.pem", &idp.pki.ca_pem)?;
    let oidc_flags = [
        "--oidc-issuer-url",
        idp.issuer.as_str(),
        "--oidc-audience",
        "gatehouse",
        "--oidc-ca-file",
        ca.to_str().unwrap_or_default(),
    ];
    let claims =
        |iss: &str| json!({"iss": iss, "aud": "gatehouse", "sub": "ann", "exp": now() + 60});
    let oidc_token = signer.sign(&claims(&idp.issuer))?;
    // A ServiceAccount token is a JWT from the cluster's issuer.
    let sa_jwt = signer.sign(&claims("https://kubernetes.default.svc.cluster.local"))?;

    let mut flags = oidc_flags.to_vec();
    flags.push("--token-review");
    let auth = Authenticator::new(&auth_args(&flags), api.upstream.clone()).await?;
    let id = auth.authenticate(&bearer(&oidc_token)?, None).await?;
    assert_eq!(id.method, AuthMethod::Oidc);
    assert_eq!(api.reviews.load(Ordering::SeqCst), 0);
    let id = auth.authenticate(&bearer(&sa_jwt)?, None).await?;
    assert_eq!(id.method, AuthMethod::ServiceAccountToken);
    assert_eq!(id.issuer, "https://kubernetes.default.svc.cluster.local");
    assert_eq!(api.reviews.load(Ordering::SeqCst), 1);

    // Without TokenReview, the foreign JWT is refused with a clear message.
    let auth = Authenticator::new(&auth_args(&oidc_flags), api.upstream.clone()).await?;
    let err = auth.authenticate(&bearer(&sa_jwt)?, None).await.err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("token issuer not accepted")
    );
    let err = auth.authenticate(&bearer("opaque")?, None).await.err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("invalid bearer token")
    );
    let err = auth.authenticate(&HeaderMap::new(), None).await.err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("no credentials provided")
    );
    // An expired OIDC token does not fall through to TokenReview.
    let expired = signer
        .sign(&json!({"iss": idp.issuer, "aud": "gatehouse", "sub": "ann", "exp": now() - 600}))?;
    let err = auth.authenticate(&bearer(&expired)?, None).await.err();
    assert_eq!(err.map(|e| e.to_string()).as_deref(), Some("token expired"));
    Ok(())
}

#[tokio::test]
async fn client_certificates() -> anyhow::Result<()> {
    let api = fake_api_server().await?;
    let dir = tempfile::tempdir()?;
    let clients = TestPki::new("client ca")?;
    let ca = write(dir.path(), "client-ca.pem", &clients.ca_pem)?;
    let args = auth_args(&["--client-ca-file", ca.to_str().unwrap_or_default()]);

    let verifier = client_cert_verifier(&args)?.ok_or_else(|| anyhow::anyhow!("no verifier"))?;
    // Bearer tokens stay the main path: a certificate is optional.
    assert!(verifier.offer_client_auth());
    assert!(!verifier.client_auth_mandatory());
    assert!(client_cert_verifier(&auth_args(&[]))?.is_none());

    let auth = Authenticator::new(&args, api.upstream.clone()).await?;
    let chain = |pem: &str| -> anyhow::Result<Vec<CertificateDer<'static>>> {
        Ok(CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<Vec<_>, _>>()?)
    };
    // rcgen keeps one O per certificate; several are covered in client_cert.rs.
    let (cert, _) = clients.client_cert("jane", &["devs"])?;
    let id = auth
        .authenticate(&HeaderMap::new(), Some(&chain(&cert)?))
        .await?;
    assert_eq!(id.username, "jane");
    assert_eq!(id.groups, vec!["devs"]);
    assert_eq!(id.method, AuthMethod::ClientCert);
    assert_eq!(id.issuer, "CN=client ca");

    // A certificate from another CA is refused even if the TLS layer let it through.
    let stranger = TestPki::new("other ca")?;
    let (cert, _) = stranger.client_cert("mallory", &["system:masters"])?;
    let err = auth
        .authenticate(&HeaderMap::new(), Some(&chain(&cert)?))
        .await
        .err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("client certificate not accepted")
    );
    // No certificate and no token.
    let err = auth.authenticate(&HeaderMap::new(), None).await.err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("no credentials provided")
    );
    // Bearer tokens are not accepted when only client certificates are configured.
    let err = auth.authenticate(&bearer("x")?, None).await.err();
    assert!(matches!(err, Some(AuthError::Unauthorized(_))));
    Ok(())
}

#[tokio::test]
async fn nothing_enabled_is_a_config_error() -> anyhow::Result<()> {
    let api = fake_api_server().await?;
    let err = Authenticator::new(&auth_args(&[]), api.upstream.clone())
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("no authentication method enabled"), "{err}");
    Ok(())
}
