//! The CLI's one blocking HTTP(S) client for one-shot calls (reviewer API, digest keys, the OIDC
//! issuer): a current-thread runtime, rustls trusting a given CA file or the web PKI roots.
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

/// Answers larger than this are refused: every caller expects a small JSON document.
const MAX_BODY: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The CA file; the caller names the flag it came from.
    #[error("{0}")]
    Ca(String),
    #[error("TLS settings: {0}")]
    Tls(String),
    #[error("cannot start a runtime: {0}")]
    Runtime(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Transport(String),
    #[error("reading the answer: {0}")]
    Body(String),
}

/// Which URL schemes the client may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schemes {
    /// Tokens travel in the request or the answer: never in clear text.
    HttpsOnly,
    /// Public documents (digest keys) and test set-ups.
    HttpOrHttps,
}

pub struct BlockingClient {
    rt: tokio::runtime::Runtime,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl BlockingClient {
    /// `ca_file` replaces the web PKI roots when given (a private gateway or issuer CA).
    pub fn new(
        ca_file: Option<&Path>,
        schemes: Schemes,
        timeout: Duration,
    ) -> Result<Self, HttpError> {
        let roots = root_store(ca_file)?;
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let builder = HttpsConnectorBuilder::new().with_tls_config(tls);
        let connector = match schemes {
            Schemes::HttpsOnly => builder.https_only().enable_http1().wrap_connector(http),
            Schemes::HttpOrHttps => builder.https_or_http().enable_http1().wrap_connector(http),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| HttpError::Runtime(e.to_string()))?;
        let client = {
            // The pool's idle-connection timer needs the runtime it will run on.
            let _guard = rt.enter();
            Client::builder(TokioExecutor::new()).build(connector)
        };
        Ok(Self {
            rt,
            client,
            timeout,
        })
    }

    /// Sends `req` and collects the whole answer (up to 4 MiB), whatever its status.
    pub fn send(&self, req: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), HttpError> {
        self.rt.block_on(async {
            let resp = tokio::time::timeout(self.timeout, self.client.request(req))
                .await
                .map_err(|_| HttpError::Timeout(self.timeout))?
                .map_err(|e| HttpError::Transport(crate::error::chain(&e)))?;
            let status = resp.status();
            let body = tokio::time::timeout(
                self.timeout,
                Limited::new(resp.into_body(), MAX_BODY).collect(),
            )
            .await
            .map_err(|_| HttpError::Timeout(self.timeout))?
            .map_err(|e| HttpError::Body(e.to_string()))?
            .to_bytes();
            Ok((status, body))
        })
    }
}

/// The roots a client trusts: every certificate in the PEM file, or the web PKI when none.
fn root_store(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, HttpError> {
    let mut roots = rustls::RootCertStore::empty();
    let Some(path) = ca_file else {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(roots);
    };
    let bad = |e: String| HttpError::Ca(format!("{}: {e}", path.display()));
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots
            .add(cert.map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = BlockingClient::new(Some(&path), Schemes::HttpsOnly, Duration::from_secs(1))
            .err()
            .unwrap();
        assert!(matches!(err, HttpError::Ca(_)), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("ca.pem") && msg.contains("no PEM certificate"),
            "{msg}"
        );
    }

    #[test]
    fn a_missing_ca_file_is_refused() {
        let err = BlockingClient::new(
            Some(Path::new("/nonexistent/ca.pem")),
            Schemes::HttpOrHttps,
            Duration::from_secs(1),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn https_only_refuses_a_clear_text_url_without_sending() {
        let client = BlockingClient::new(None, Schemes::HttpsOnly, Duration::from_secs(5)).unwrap();
        // Nothing listens here; the scheme check must answer before any connection attempt.
        let req = Request::get("http://127.0.0.1:9/token")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let err = client.send(req).unwrap_err();
        assert!(matches!(err, HttpError::Transport(_)), "{err:?}");
        assert!(err.to_string().contains("scheme"), "{err}");
    }
}
