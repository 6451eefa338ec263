//! A test OIDC issuer: serves discovery and JWKS over HTTPS (its own CA) and mints ES256 JWTs,
//! with key rotation and a foreign key for wrong-signature tests. Its token endpoint speaks the
//! refresh-token, device-code (RFC 8628, approved after one pending poll) and
//! client-credentials grants for registered clients.
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
use std::collections::HashMap;
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
    /// Clients and grant state of the token endpoint.
    pub grants: Arc<parking_lot::Mutex<Grants>>,
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
        let grants = Arc::new(parking_lot::Mutex::new(Grants {
            token_lifetime_secs: 3600,
            ..Grants::default()
        }));
        let (k, f, issuer) = (keys.clone(), jwks_fetches.clone(), url.clone());
        let g = grants.clone();
        let server = tokio::spawn(async move {
            let acceptor = TlsAcceptor::from(tls);
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, k, f, issuer, g) = (
                    acceptor.clone(),
                    k.clone(),
                    f.clone(),
                    issuer.clone(),
                    g.clone(),
                );
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (k, f, issuer, g) = (k.clone(), f.clone(), issuer.clone(), g.clone());
                        async move {
                            let resp = if req.method() == http::Method::POST {
                                let path = req.uri().path().to_string();
                                let auth = req
                                    .headers()
                                    .get(http::header::AUTHORIZATION)
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_string);
                                let body = http_body_util::BodyExt::collect(req.into_body())
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                token_endpoint(&path, auth.as_deref(), &body, &k, &g, &issuer)
                            } else {
                                answer(&req, &k, &f, &issuer)
                            };
                            Ok::<_, std::convert::Infallible>(resp)
                        }
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
            grants,
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

    /// Registers an OAuth client: `secret` (None for a public client) and the identity its
    /// client-credentials tokens carry.
    pub fn register_client(&self, id: &str, secret: Option<&str>, user: &str, groups: &[&str]) {
        self.grants.lock().clients.insert(
            id.to_string(),
            TestClient {
                secret: secret.map(str::to_string),
                user: user.to_string(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
            },
        );
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
            "token_endpoint": format!("{issuer}/token"),
            "device_authorization_endpoint": format!("{issuer}/device"),
            "grant_types_supported": ["refresh_token", "client_credentials", "urn:ietf:params:oauth:grant-type:device_code"],
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

/// A registered OAuth client.
#[derive(Debug, Clone, Default)]
pub struct TestClient {
    pub secret: Option<String>,
    /// Who client-credentials tokens (and device-code approvals) are for.
    pub user: String,
    pub groups: Vec<String>,
}

/// Token endpoint state and counters.
#[derive(Debug, Default)]
pub struct Grants {
    pub clients: HashMap<String, TestClient>,
    /// device_code → (client id, polls so far).
    pub devices: HashMap<String, (String, u32)>,
    /// refresh token → client id.
    pub refresh_tokens: HashMap<String, String>,
    pub device_authorizations: u64,
    pub device_tokens: u64,
    pub refreshes: u64,
    pub client_credentials: u64,
    /// `exp - iat` of minted tokens.
    pub token_lifetime_secs: i64,
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn oauth_error(status: StatusCode, code: &str) -> Response<Full<Bytes>> {
    json_response(status, &json!({ "error": code }))
}

/// `/device` and `/token`: form-encoded OAuth requests.
fn token_endpoint(
    path: &str,
    authorization: Option<&str>,
    body: &[u8],
    keys: &RwLock<Vec<SigningKey>>,
    grants: &parking_lot::Mutex<Grants>,
    issuer: &str,
) -> Response<Full<Bytes>> {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    // Client authentication: HTTP Basic, or client_id alone for a public client.
    let basic = authorization
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':').map(|(i, p)| {
                let dec = |v: &str| {
                    percent_encoding::percent_decode_str(&v.replace('+', " "))
                        .decode_utf8_lossy()
                        .to_string()
                };
                (dec(i), dec(p))
            })
        });
    let mut g = grants.lock();
    let client_id = match &basic {
        Some((id, _)) => id.clone(),
        None => form.get("client_id").cloned().unwrap_or_default(),
    };
    let Some(client) = g.clients.get(&client_id).cloned() else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    };
    if client.secret.is_some() && basic.as_ref().map(|(_, s)| s) != client.secret.as_ref() {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let lifetime = g.token_lifetime_secs;
    let mint = |user: &str, groups: &[String]| {
        let now = chrono::Utc::now().timestamp();
        let signed = keys.read().last().map(|k| {
            k.sign(&json!({
                "iss": issuer, "sub": user, "aud": client_id, "groups": groups,
                "iat": now, "nbf": now - 5, "exp": now + lifetime,
                "jti": uuid::Uuid::new_v4().to_string(),
            }))
        });
        match signed {
            Some(Ok(t)) => Some(t),
            _ => None,
        }
    };
    if path == "/device" {
        g.device_authorizations += 1;
        let device_code = uuid::Uuid::new_v4().simple().to_string();
        let user_code = format!("GH-{}", &device_code[..4].to_uppercase());
        g.devices
            .insert(device_code.clone(), (client_id.clone(), 0));
        return json_response(
            StatusCode::OK,
            &json!({
                "device_code": device_code, "user_code": user_code,
                "verification_uri": format!("{issuer}/activate"),
                "verification_uri_complete": format!("{issuer}/activate?user_code={user_code}"),
                "expires_in": 600, "interval": 1,
            }),
        );
    }
    if path != "/token" {
        return oauth_error(StatusCode::NOT_FOUND, "not_found");
    }
    let user_tokens = |g: &mut Grants, user: &str, groups: &[String]| {
        let Some(t) = mint(user, groups) else {
            return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error");
        };
        let rt = format!("rt-{}", uuid::Uuid::new_v4().simple());
        g.refresh_tokens.insert(rt.clone(), client_id.clone());
        json_response(
            StatusCode::OK,
            &json!({
                "access_token": t, "id_token": t, "token_type": "Bearer",
                "expires_in": lifetime, "refresh_token": rt,
            }),
        )
    };
    match form.get("grant_type").map(String::as_str) {
        Some("urn:ietf:params:oauth:grant-type:device_code") => {
            let code = form.get("device_code").cloned().unwrap_or_default();
            let Some((owner, polls)) = g.devices.get_mut(&code) else {
                return oauth_error(StatusCode::BAD_REQUEST, "expired_token");
            };
            if *owner != client_id {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            *polls += 1;
            // The user "enters the code" while the client waits: one pending answer first.
            if *polls < 2 {
                return oauth_error(StatusCode::BAD_REQUEST, "authorization_pending");
            }
            g.devices.remove(&code);
            g.device_tokens += 1;
            user_tokens(&mut g, &client.user, &client.groups)
        }
        Some("refresh_token") => {
            let rt = form.get("refresh_token").cloned().unwrap_or_default();
            // Rotated: each refresh token works once.
            match g.refresh_tokens.remove(&rt) {
                Some(owner) if owner == client_id => {
                    g.refreshes += 1;
                    user_tokens(&mut g, &client.user, &client.groups)
                }
                _ => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant"),
            }
        }
        Some("client_credentials") => {
            if client.secret.is_none() {
                return oauth_error(StatusCode::UNAUTHORIZED, "unauthorized_client");
            }
            g.client_credentials += 1;
            match mint(&client.user, &client.groups) {
                Some(t) => json_response(
                    StatusCode::OK,
                    &json!({"access_token": t, "token_type": "Bearer", "expires_in": lifetime}),
                ),
                None => oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
            }
        }
        _ => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    }
}
