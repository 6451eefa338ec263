//! HTTPS GETs of small JSON documents from the OIDC issuer (discovery and JWKS).
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use serde::de::DeserializeOwned;

use crate::auth::AuthError;

/// Discovery documents and key sets are small; anything bigger is refused.
const MAX_DOCUMENT: usize = 1024 * 1024;

pub(crate) struct Fetcher {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    timeout: Duration,
}

impl Fetcher {
    pub fn new(roots: RootCertStore, timeout: Duration) -> Result<Self, AuthError> {
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| AuthError::Config(format!("OIDC TLS settings: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        Ok(Fetcher {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        })
    }

    /// GETs `url` and parses the JSON answer. Errors are `Unavailable`: the issuer is at fault,
    /// not the caller.
    pub async fn get_json<T: DeserializeOwned>(&self, url: &Uri) -> Result<T, AuthError> {
        let fail = |what: String| AuthError::unavailable(format!("fetching {url}: {what}"));
        let request = Request::get(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| fail(e.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| fail(format!("{e:#}")))?;
            if response.status() != StatusCode::OK {
                return Err(fail(format!("HTTP {}", response.status())));
            }
            Limited::new(response.into_body(), MAX_DOCUMENT)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(|e| fail(e.to_string()))
        };
        let body = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| fail(format!("no answer within {:?}", self.timeout)))??;
        serde_json::from_slice(&body).map_err(|e| fail(format!("invalid JSON ({e})")))
    }
}
