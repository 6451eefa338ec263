//! The operations listener: `/healthz` (the process serves), `/readyz` (it can record, so it
//! will forward), Prometheus `/metrics`, and the digest signing key at `/keys`.
use crate::body::{BoxBody, full};
use crate::metrics::Metrics;
use gatehouse_journal::Journal;
use http::{Request, Response, StatusCode, header};
use std::sync::Arc;

#[derive(Clone)]
pub struct Ops {
    pub metrics: Arc<Metrics>,
    pub journal: Arc<Journal>,
    pub max_unacked: u64,
    /// The digest signing key, published at `/keys`.
    pub signer: Arc<crate::transcript::signing::DigestSigner>,
}

impl Ops {
    /// Why the gateway cannot serve, if it cannot.
    pub fn not_ready(&self) -> Option<String> {
        if self.journal.is_poisoned() {
            return Some("journal failed after a write error; restart the gateway".into());
        }
        if self.journal.is_disk_full() {
            return Some(format!(
                "no space left on the journal's filesystem ({}): requests are refused until space is freed",
                self.journal.dir().display()
            ));
        }
        let unacked = self.journal.unacked_bytes();
        if self.journal.is_full() || unacked >= self.max_unacked {
            return Some(format!(
                "journal holds {unacked} unshipped bytes, at its bound of {}: requests are refused until the collector catches up",
                self.max_unacked
            ));
        }
        None
    }

    pub fn handle<B>(&self, req: &Request<B>) -> Response<BoxBody> {
        let (code, ctype, body) = match req.uri().path() {
            "/healthz" | "/livez" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
            "/readyz" => match self.not_ready() {
                None => (StatusCode::OK, "text/plain", "ok\n".to_string()),
                Some(why) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("not ready: {why}\n"),
                ),
            },
            "/keys" => (
                StatusCode::OK,
                "application/jwk-set+json",
                super::keys::jwks(&self.signer),
            ),
            "/metrics" => {
                self.metrics
                    .journal_unacked_bytes
                    .set(self.journal.unacked_bytes() as i64);
                (
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    self.metrics.encode(),
                )
            }
            _ => (
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found\n".to_string(),
            ),
        };
        let mut resp = Response::new(full(body));
        *resp.status_mut() = code;
        if let Ok(v) = header::HeaderValue::from_str(ctype) {
            resp.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        resp
    }
}
