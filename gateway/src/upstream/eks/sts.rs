//! STS AssumeRole over the Query API, signed with SigV4.
use std::collections::BTreeMap;

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;

use super::sigv4::{self, Credentials};
use crate::upstream::UpstreamError;

pub(crate) struct Sts {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    endpoint: Uri,
    region: String,
    timeout: Duration,
}

/// Temporary credentials and when they expire.
pub(crate) struct Assumed {
    pub credentials: Credentials,
    pub expiration: DateTime<Utc>,
}

fn eks_err(message: impl Into<String>) -> UpstreamError {
    UpstreamError::Eks {
        message: message.into(),
        source: None,
    }
}

impl Sts {
    pub fn new(
        endpoint: Uri,
        region: String,
        roots: RootCertStore,
        timeout: Duration,
    ) -> Result<Self, UpstreamError> {
        let config = crate::upstream::tls::client_config(roots, None)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        Ok(Sts {
            client: Client::builder(TokioExecutor::new()).build(connector),
            endpoint,
            region,
            timeout,
        })
    }

    pub async fn assume_role(
        &self,
        base: &Credentials,
        role_arn: &str,
        session_name: &str,
        duration_seconds: u32,
    ) -> Result<Assumed, UpstreamError> {
        let form = BTreeMap::from([
            ("Action".to_string(), "AssumeRole".to_string()),
            ("Version".to_string(), "2011-06-15".to_string()),
            ("RoleArn".to_string(), role_arn.to_string()),
            ("RoleSessionName".to_string(), session_name.to_string()),
            ("DurationSeconds".to_string(), duration_seconds.to_string()),
        ]);
        let body = sigv4::canonical_query(&form);
        let host = self
            .endpoint
            .authority()
            .map(|a| a.as_str().to_string())
            .ok_or_else(|| eks_err("STS endpoint has no host"))?;
        let path = match self.endpoint.path() {
            "" => "/",
            p => p,
        };
        let now = Utc::now();
        let mut headers = BTreeMap::from([
            (
                "content-type".to_string(),
                "application/x-www-form-urlencoded; charset=utf-8".to_string(),
            ),
            ("host".to_string(), host),
            ("x-amz-date".to_string(), sigv4::amz_date(now)),
        ]);
        if let Some(token) = &base.session_token {
            headers.insert("x-amz-security-token".into(), token.clone());
        }
        let canonical = sigv4::canonical_request(
            "POST",
            path,
            "",
            &headers,
            &sigv4::sha256_hex(body.as_bytes()),
        );
        let signature = sigv4::signature(
            &base.secret_access_key,
            now,
            &self.region,
            "sts",
            &canonical,
        );
        let authorization = format!(
            "{} Credential={}/{}/{}/sts/aws4_request, SignedHeaders={}, Signature={signature}",
            sigv4::ALGORITHM,
            base.access_key_id,
            now.format("%Y%m%d"),
            self.region,
            sigv4::signed_headers(&headers),
        );
        let mut request = Request::post(self.endpoint.clone());
        for (name, value) in &headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request
            .header(http::header::AUTHORIZATION, authorization)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| eks_err(format!("building AssumeRole request: {e}")))?;

        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| UpstreamError::Eks {
                    message: format!("AssumeRole request to {} failed", self.endpoint),
                    source: Some(Box::new(e)),
                })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), 1024 * 1024)
                .collect()
                .await
                .map_err(|e| UpstreamError::Eks {
                    message: "reading the AssumeRole response failed".into(),
                    source: Some(e),
                })?
                .to_bytes();
            Ok::<_, UpstreamError>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| eks_err(format!("STS did not answer within {:?}", self.timeout)))??;
        let text = String::from_utf8_lossy(&body);
        if !status.is_success() {
            let code = xml_text(&text, "Code").unwrap_or_default();
            let message = xml_text(&text, "Message").unwrap_or_default();
            return Err(eks_err(format!(
                "AssumeRole on {role_arn} failed: HTTP {status} {code}: {message}"
            )));
        }
        let field = |tag: &str| {
            xml_text(&text, tag).ok_or_else(|| eks_err(format!("AssumeRole response has no {tag}")))
        };
        let expiration = field("Expiration")?;
        let expiration = DateTime::parse_from_rfc3339(&expiration)
            .map_err(|_| eks_err(format!("AssumeRole Expiration {expiration:?} is malformed")))?
            .with_timezone(&Utc);
        Ok(Assumed {
            credentials: Credentials {
                access_key_id: field("AccessKeyId")?,
                secret_access_key: field("SecretAccessKey")?,
                session_token: Some(field("SessionToken")?),
            },
            expiration,
        })
    }
}

/// The text of the first `<tag>…</tag>` in `xml`, entity-decoded. STS answers have a fixed,
/// flat shape, so this is enough and avoids an XML parser.
pub(crate) fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(
        xml[start..end]
            .trim()
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

pub(crate) fn default_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}
