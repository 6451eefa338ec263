//! Small blocking HTTPS exchanges with the issuer (discovery, token and device endpoints): a
//! current-thread runtime per call, rustls with the issuer's CA or the web PKI roots.
use super::TokenError;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);
const MAX_BODY: usize = 1 << 20;

pub struct Http {
    rt: tokio::runtime::Runtime,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Http {
    pub fn new(ca_file: Option<&Path>) -> Result<Self, TokenError> {
        let mut roots = rustls::RootCertStore::empty();
        match ca_file {
            Some(path) => {
                let bad =
                    |e: String| TokenError::Config(format!("--issuer-ca {}: {e}", path.display()));
                let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    roots
                        .add(cert.map_err(|e| bad(e.to_string()))?)
                        .map_err(|e| bad(e.to_string()))?;
                }
                if roots.is_empty() {
                    return Err(bad("no PEM certificate in it".into()));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| TokenError::Config(format!("TLS settings: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(TIMEOUT));
        // Tokens travel here: https only.
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| TokenError::Issuer(format!("cannot start a runtime: {e}")))?;
        let client = {
            let _guard = rt.enter();
            Client::builder(TokioExecutor::new()).build(connector)
        };
        Ok(Self { rt, client })
    }

    pub fn get_json(&self, url: &str) -> Result<(StatusCode, serde_json::Value), TokenError> {
        let req = Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| TokenError::Config(format!("{url}: {e}")))?;
        self.exchange(url, req)
    }

    /// POSTs an `application/x-www-form-urlencoded` body, with HTTP Basic client authentication
    /// when `basic` is given (RFC 6749 §2.3.1).
    pub fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Result<(StatusCode, serde_json::Value), TokenError> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = Request::post(url)
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        if let Some((id, secret)) = basic {
            use base64::Engine;
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let cred = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                enc(id),
                enc(secret)
            ));
            req = req.header(http::header::AUTHORIZATION, format!("Basic {cred}"));
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| TokenError::Config(format!("{url}: {e}")))?;
        self.exchange(url, req)
    }

    fn exchange(
        &self,
        url: &str,
        req: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, serde_json::Value), TokenError> {
        let fail = |what: String| TokenError::Issuer(format!("{url}: {what}"));
        self.rt.block_on(async {
            let resp = tokio::time::timeout(TIMEOUT, self.client.request(req))
                .await
                .map_err(|_| fail(format!("no answer within {TIMEOUT:?}")))?
                .map_err(|e| fail(crate::error::chain(&e)))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| fail(e.to_string()))?
                .to_bytes();
            let json = serde_json::from_slice(&body)
                .map_err(|_| fail(format!("HTTP {status} with a body that is not JSON")))?;
            Ok((status, json))
        })
    }
}
