//! A test OIDC issuer: serves discovery and JWKS over HTTPS (its own CA) and mints ES256 JWTs,
//! with key rotation and a foreign key for wrong-signature tests.
use crate::apiserver::tls::TestCa;
use anyhow::Context as _;
use base64::Engine;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::RwLock;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// One signing key and its public JWK.
pub struct SigningKey {
    pub kid: String,
    encoding: EncodingKey,
    pub jwk: Value,
}

impl SigningKey {
    pub fn generate(kid: &str) -> anyhow::Result<Self> {
        let key = rcgen::KeyPair::generate().context("generating a P-256 key")?;
        let encoding = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes())
            .context("loading the key for signing")?;
        // rcgen's raw public key for P-256 is the uncompressed point 0x04 || X || Y.
        let raw = key.public_key_raw();
        anyhow::ensure!(
            raw.len() == 65 && raw[0] == 4,
            "unexpected public key encoding"
        );
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
            "x": b64(&raw[1..33]), "y": b64(&raw[33..65]),
        });
        Ok(Self {
            kid: kid.to_string(),
            encoding,
            jwk,
        })
    }

    /// Signs `claims` as an ES256 JWT with this key's `kid`.
    pub fn sign(&self, claims: &Value) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).context("signing a JWT")
    }
}

pub struct TestIssuer {
    /// The issuer URL (`iss`), https://127.0.0.1:PORT.
    pub url: String,
    pub ca_pem: String,
    /// Keys served in the JWKS; the last one signs.
    keys: Arc<RwLock<Vec<SigningKey>>>,
    /// JWKS requests served, to observe caching and refetching.
    pub jwks_fetches: Arc<AtomicU64>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestIssuer {
    pub async fn start() -> anyhow::Result<Self> {
        let ca = TestCa::generate()?;
        let serving = ca.issue_server()?;
        let tls = Arc::new(ca.server_config(&serving)?);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("https://127.0.0.1:{}", listener.local_addr()?.port());
        let keys = Arc::new(RwLock::new(vec![SigningKey::generate("key-1")?]));
        let jwks_fetches = Arc::new(AtomicU64::new(0));
        let (k, f, issuer) = (keys.clone(), jwks_fetches.clone(), url.clone());
        let server = tokio::spawn(async move {
            let acceptor = TlsAcceptor::from(tls);
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, k, f, issuer) =
                    (acceptor.clone(), k.clone(), f.clone(), issuer.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let resp = answer(&req, &k, &f, &issuer);
                        async move { Ok::<_, std::convert::Infallible>(resp) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Ok(Self {
            url,
            ca_pem: ca.pem.clone(),
            keys,
            jwks_fetches,
            server,
        })
    }

    /// Signs arbitrary claims with the current key.
    pub fn sign(&self, claims: &Value) -> anyhow::Result<String> {
        let keys = self.keys.read();
        keys.last().context("no signing key")?.sign(claims)
    }

    /// A valid token for `user` in `groups`, for `audience`, valid for an hour.
    pub fn token(&self, user: &str, groups: &[&str], audience: &str) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        self.sign(&json!({
            "iss": self.url, "sub": user, "aud": audience, "groups": groups,
            "iat": now, "nbf": now - 5, "exp": now + 3600,
        }))
    }

    /// Adds a new signing key (the old one stays in the JWKS, as during real rotation).
    pub fn rotate(&self, kid: &str) -> anyhow::Result<()> {
        self.keys.write().push(SigningKey::generate(kid)?);
        Ok(())
    }
}

fn answer(
    req: &Request<Incoming>,
    keys: &RwLock<Vec<SigningKey>>,
    fetches: &AtomicU64,
    issuer: &str,
) -> Response<Full<Bytes>> {
    let body = match req.uri().path() {
        "/.well-known/openid-configuration" => json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/keys"),
            "id_token_signing_alg_values_supported": ["ES256"],
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
        }),
        "/keys" => {
            fetches.fetch_add(1, Ordering::Relaxed);
            json!({ "keys": keys.read().iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
        }
        _ => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"not found")));
            *r.status_mut() = StatusCode::NOT_FOUND;
            return r;
        }
    };
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}
