//! Fetches the gateway's published digest keys (`--keys-url`, the JWKS at `/keys`) over HTTP or
//! HTTPS (public roots, or `--keys-ca`).
use crate::error::CliError;
use crate::http::{BlockingClient, HttpError, Schemes};
use http_body_util::Full;
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
    // The keys are public: plain HTTP is allowed, the signatures are what is checked.
    let client = BlockingClient::new(ca, Schemes::HttpOrHttps, Duration::from_secs(10)).map_err(
        |e| match e {
            HttpError::Ca(why) => bad(format!("--keys-ca {why}")),
            other => bad(other.to_string()),
        },
    )?;
    let req = http::Request::get(uri)
        .body(Full::new(bytes::Bytes::new()))
        .map_err(|e| bad(e.to_string()))?;
    let (status, body) = client.send(req).map_err(|e| bad(e.to_string()))?;
    if !status.is_success() {
        return Err(bad(format!("HTTP {status}")));
    }
    String::from_utf8(body.to_vec()).map_err(|_| bad("the body is not UTF-8".into()))
}
