//! A small Kubernetes API client: list and watch over HTTPS with a bearer token, which is all
//! the agent needs (a full kube-rs client would double the agent's dependency tree).
use std::{path::PathBuf, sync::Arc, time::Duration};

use bytes::{Buf as _, Bytes, BytesMut};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Client as HyperClient, connect::HttpConnector},
    rt::TokioExecutor,
};
use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, pem::PemObject as _};
use serde_json::Value;

use super::KubeError;

/// A list answer is read whole; a node's pods or the apiserver's slices stay far below this.
const MAX_LIST: usize = 64 << 20;
/// One watch event; a pod object is a few KiB.
const MAX_EVENT: usize = 4 << 20;

/// Where the API server is and how to prove who the agent is.
#[derive(Debug, Clone)]
pub struct KubeConfig {
    pub url: String,
    pub ca_file: PathBuf,
    /// Re-read on every request: projected ServiceAccount tokens rotate.
    pub token_file: Option<PathBuf>,
}

#[derive(Clone)]
pub struct Client {
    http: HyperClient<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    base: Arc<str>,
    token_file: Option<Arc<PathBuf>>,
}

impl Client {
    pub fn new(config: &KubeConfig) -> Result<Self, KubeError> {
        let pem = std::fs::read(&config.ca_file).map_err(|e| {
            KubeError::Config(format!(
                "reading the API server CA {}: {e}",
                config.ca_file.display()
            ))
        })?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| {
                KubeError::Config(format!("{}: malformed PEM ({e})", config.ca_file.display()))
            })?;
            roots.add(cert).map_err(|e| {
                KubeError::Config(format!("{}: unusable CA ({e})", config.ca_file.display()))
            })?;
        }
        if roots.is_empty() {
            return Err(KubeError::Config(format!(
                "{} holds no certificate",
                config.ca_file.display()
            )));
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| KubeError::Config(format!("TLS settings: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        config
            .url
            .parse::<Uri>()
            .ok()
            .filter(|u| u.scheme_str() == Some("https") && u.host().is_some())
            .ok_or_else(|| {
                KubeError::Config(format!(
                    "API server URL {:?} must be https://HOST[:PORT]",
                    config.url
                ))
            })?;
        Ok(Self {
            http: HyperClient::builder(TokioExecutor::new()).build(connector),
            base: config.url.trim_end_matches('/').into(),
            token_file: config.token_file.clone().map(Arc::new),
        })
    }

    async fn get(&self, path_and_query: &str) -> Result<hyper::Response<Incoming>, KubeError> {
        let url = format!("{}{path_and_query}", self.base);
        let mut req = Request::get(&url).header(http::header::ACCEPT, "application/json");
        if let Some(f) = &self.token_file {
            let token = tokio::fs::read_to_string(f.as_path())
                .await
                .map_err(|e| KubeError::Config(format!("reading token {}: {e}", f.display())))?;
            req = req.header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", token.trim()),
            );
        }
        let req = req
            .body(Empty::new())
            .map_err(|e| KubeError::Http(format!("{url}: {e}")))?;
        let resp = self
            .http
            .request(req)
            .await
            .map_err(|e| KubeError::Http(format!("{url}: {e}")))?;
        if resp.status() != StatusCode::OK {
            let status = resp.status();
            let body = Limited::new(resp.into_body(), 64 << 10)
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                .unwrap_or_default();
            return Err(KubeError::Status {
                code: status.as_u16(),
                message: format!("{url}: {}", status_message(&body)),
            });
        }
        Ok(resp)
    }

    /// Lists a collection; returns its items and resourceVersion.
    pub async fn list(&self, path_and_query: &str) -> Result<(Vec<Value>, String), KubeError> {
        let resp = self.get(path_and_query).await?;
        let body = tokio::time::timeout(
            Duration::from_secs(60),
            Limited::new(resp.into_body(), MAX_LIST).collect(),
        )
        .await
        .map_err(|_| KubeError::Http(format!("{path_and_query}: list timed out")))?
        .map_err(|e| KubeError::Http(format!("{path_and_query}: {e}")))?
        .to_bytes();
        let mut v: Value = serde_json::from_slice(&body)
            .map_err(|e| KubeError::Http(format!("{path_and_query}: invalid JSON ({e})")))?;
        let rv = v
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let items = match v.get_mut("items").map(Value::take) {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        Ok((items, rv))
    }

    /// Opens a watch; events are read with [`Watch::next`].
    pub async fn watch(&self, path_and_query: &str) -> Result<Watch, KubeError> {
        Ok(Watch {
            body: self.get(path_and_query).await?.into_body(),
            buf: BytesMut::new(),
        })
    }
}

/// The `message` of a metav1.Status body, or the body itself.
fn status_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| body.chars().take(200).collect())
}

/// A watch response: newline-delimited JSON `{"type": ..., "object": ...}`.
pub struct Watch {
    body: Incoming,
    buf: BytesMut,
}

impl Watch {
    /// The next event, or None when the server ended the watch.
    pub async fn next(&mut self) -> Result<Option<(String, Value)>, KubeError> {
        loop {
            if let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
                let line = self.buf.split_to(nl + 1);
                let line = line.chunk();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let mut v: Value = serde_json::from_slice(line)
                    .map_err(|e| KubeError::Http(format!("watch event: invalid JSON ({e})")))?;
                let kind = v
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let object = v.get_mut("object").map(Value::take).unwrap_or_default();
                return Ok(Some((kind, object)));
            }
            if self.buf.len() > MAX_EVENT {
                return Err(KubeError::Http("watch event too large".into()));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(KubeError::Http(format!("watch: {e}"))),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}
