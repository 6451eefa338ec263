//! The issuer's endpoints (discovery, token, device authorization) as JSON exchanges over the
//! CLI's blocking HTTPS client; https only, since tokens travel both ways.
use super::TokenError;
use crate::http::{BlockingClient, HttpError, Schemes};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use std::path::Path;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

pub struct Http {
    client: BlockingClient,
}

impl Http {
    pub fn new(ca_file: Option<&Path>) -> Result<Self, TokenError> {
        let client =
            BlockingClient::new(ca_file, Schemes::HttpsOnly, TIMEOUT).map_err(|e| match e {
                HttpError::Ca(why) => TokenError::Config(format!("--issuer-ca {why}")),
                HttpError::Tls(_) => TokenError::Config(e.to_string()),
                other => TokenError::Issuer(other.to_string()),
            })?;
        Ok(Self { client })
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
        let (status, body) = self
            .client
            .send(req)
            .map_err(|e| TokenError::Issuer(format!("{url}: {e}")))?;
        let json = serde_json::from_slice(&body).map_err(|_| {
            TokenError::Issuer(format!("{url}: HTTP {status} with a body that is not JSON"))
        })?;
        Ok((status, json))
    }
}
