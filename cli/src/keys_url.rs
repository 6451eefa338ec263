//! Fetches the gateway's published digest keys (`--keys-url`, the JWKS at `/keys`) over HTTP or
//! HTTPS (public roots, or `--keys-ca`).
use crate::error::CliError;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::path::Path;
use std::time::Duration;

/// The body of `GET url`.
pub fn fetch(url: &str, ca: Option<&Path>) -> Result<String, CliError> {
    let bad = |why: String| CliError::VerifyInput(format!("cannot fetch --keys-url {url}: {why}"));
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(bad("use an http:// or https:// URL".into()));
    }
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| bad(format!("--keys-ca {}: {e}", path.display())))?;
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| bad(format!("--keys-ca {}: {e}", path.display())))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| bad(e.to_string()))?;
    rt.block_on(async {
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let req = http::Request::get(uri)
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|e| bad(e.to_string()))?;
        let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
            .await
            .map_err(|_| bad("timed out after 10s".into()))?
            .map_err(|e| bad(crate::error::chain(&e)))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| bad(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(bad(format!("HTTP {status}")));
        }
        String::from_utf8(body.to_vec()).map_err(|_| bad("the body is not UTF-8".into()))
    })
}
