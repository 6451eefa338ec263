//! Delivery to one sink: its own queue and task, one POST per alert, retried with doubling
//! backoff after connection errors, timeouts, 429 and 5xx; other answers are final.
use super::config::{AlertArgs, RetryPolicy};
use super::{AlertMetrics, Notice, alertmanager, webhook};
use crate::error::CollectorError;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Notifications one sink may have queued; past it they are counted as dropped.
const SINK_QUEUE: usize = 256;
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The HTTP(S) client shared by the sinks.
pub struct Poster {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    webhook_token: Option<String>,
}

impl Poster {
    pub fn new(args: &AlertArgs) -> Result<Self, CollectorError> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|source| CollectorError::ReadFile {
                path: p.display().to_string(),
                source,
            })
        };
        let mut roots = rustls::RootCertStore::empty();
        match &args.alert_ca_file {
            Some(path) => {
                let pem = read(path)?;
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| {
                        CollectorError::Config(format!("--alert-ca-file {}: {e}", path.display()))
                    })?;
                    roots.add(cert).map_err(|e| {
                        CollectorError::Config(format!("--alert-ca-file {}: {e}", path.display()))
                    })?;
                }
                if roots.is_empty() {
                    return Err(CollectorError::Config(format!(
                        "--alert-ca-file {}: no PEM certificate in it",
                        path.display()
                    )));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| CollectorError::Config(format!("alert TLS settings: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(args.alert_timeout));
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let webhook_token = match &args.alert_webhook_token_file {
            Some(p) => Some(String::from_utf8_lossy(&read(p)?).trim().to_string()),
            None => None,
        };
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout: args.alert_timeout,
            webhook_token,
        })
    }

    /// One attempt: `Ok` on 2xx, `Err((retryable, why))` otherwise.
    async fn post(
        &self,
        url: &str,
        body: &Bytes,
        idempotency_key: &str,
        bearer: Option<&str>,
    ) -> Result<(), (bool, String)> {
        let mut req = Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "gatehouse-collector")
            .header("Idempotency-Key", idempotency_key);
        if let Some(token) = bearer {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req
            .body(Full::new(body.clone()))
            .map_err(|e| (false, e.to_string()))?;
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => Err((true, format!("no answer within {:?}", self.timeout))),
            Ok(Err(e)) => Err((true, format!("{e:#}"))),
            Ok(Ok(resp)) if resp.status().is_success() => Ok(()),
            Ok(Ok(resp)) => {
                let s = resp.status();
                Err((
                    s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error(),
                    format!("HTTP {s}"),
                ))
            }
        }
    }
}

/// A running sink: notices go into its queue.
pub struct Sink {
    name: &'static str,
    tx: mpsc::Sender<(String, Bytes)>,
    metrics: AlertMetrics,
}

impl Sink {
    pub fn spawn(
        name: &'static str,
        url: String,
        poster: Arc<Poster>,
        policy: RetryPolicy,
        metrics: AlertMetrics,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<(String, Bytes)>(SINK_QUEUE);
        let m = metrics.clone();
        tokio::spawn(async move {
            while let Some((id, body)) = rx.recv().await {
                let bearer = (name == "webhook")
                    .then_some(poster.webhook_token.as_deref())
                    .flatten();
                let mut delay = policy.backoff;
                let mut attempt = 0;
                loop {
                    match poster.post(&url, &body, &id, bearer).await {
                        Ok(()) => {
                            m.count(name, "sent");
                            tracing::info!(sink = name, event_id = %id, "bypass alert sent");
                            break;
                        }
                        Err((retryable, why)) if retryable && attempt < policy.retries => {
                            attempt += 1;
                            m.count(name, "retried");
                            tracing::warn!(sink = name, event_id = %id, attempt, %why, "alert delivery failed; retrying in {delay:?}");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(MAX_BACKOFF);
                        }
                        Err((_, why)) => {
                            m.count(name, "failed");
                            tracing::error!(sink = name, event_id = %id, %why, "alert delivery gave up");
                            break;
                        }
                    }
                }
            }
        });
        Self { name, tx, metrics }
    }

    pub fn send(&self, n: &Notice) {
        let body = match self.name {
            "alertmanager" => alertmanager::body(n),
            _ => webhook::body(n),
        };
        let body = Bytes::from(body.to_string());
        if self.tx.try_send((n.event_id.clone(), body)).is_err() {
            self.metrics.count(self.name, "dropped");
            tracing::warn!(
                sink = self.name,
                "alert sink queue is full; a notification is dropped"
            );
        }
    }
}
