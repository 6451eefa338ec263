//! AWS Signature Version 4, as much as the gateway needs: a header-signed POST (STS AssumeRole)
//! and a query-presigned GET (the EKS token).
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};

/// Everything but the RFC 3986 unreserved characters is encoded, as SigV4 requires.
const SIGV4: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub(crate) const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// AWS credentials for signing.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

pub(crate) fn encode(s: &str) -> String {
    utf8_percent_encode(s, SIGV4).to_string()
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&key, data.as_bytes()).as_ref().to_vec()
}

/// `20130524T000000Z`.
pub(crate) fn amz_date(at: DateTime<Utc>) -> String {
    at.format("%Y%m%dT%H%M%SZ").to_string()
}

/// The query string in canonical form: keys and values encoded, sorted by key.
pub(crate) fn canonical_query(params: &BTreeMap<String, String>) -> String {
    let mut encoded: Vec<(String, String)> =
        params.iter().map(|(k, v)| (encode(k), encode(v))).collect();
    encoded.sort();
    encoded
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The hex signature of a canonical request.
pub(crate) fn signature(
    secret: &str,
    at: DateTime<Utc>,
    region: &str,
    service: &str,
    canonical_request: &str,
) -> String {
    let date = at.format("%Y%m%d").to_string();
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{scope}\n{}",
        amz_date(at),
        sha256_hex(canonical_request.as_bytes())
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), &date);
    let k_region = hmac(&k_date, region);
    let k_service = hmac(&k_region, service);
    let k_signing = hmac(&k_service, "aws4_request");
    hex::encode(hmac(&k_signing, &string_to_sign))
}

/// The canonical request text. `headers` must have lowercase names.
pub(crate) fn canonical_request(
    method: &str,
    path: &str,
    query: &str,
    headers: &BTreeMap<String, String>,
    payload_hash: &str,
) -> String {
    let canonical_headers: String = headers
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();
    let signed = signed_headers(headers);
    format!("{method}\n{path}\n{query}\n{canonical_headers}\n{signed}\n{payload_hash}")
}

pub(crate) fn signed_headers(headers: &BTreeMap<String, String>) -> String {
    headers.keys().cloned().collect::<Vec<_>>().join(";")
}

/// Presigns `GET https://{host}{path}?{params}` with `headers` signed (besides `host`), valid
/// for `expires` seconds; returns the full URL.
#[allow(clippy::too_many_arguments)]
pub(crate) fn presign_get(
    creds: &Credentials,
    at: DateTime<Utc>,
    region: &str,
    service: &str,
    host: &str,
    path: &str,
    mut params: BTreeMap<String, String>,
    extra_headers: &[(&str, &str)],
    expires: u32,
) -> String {
    let mut headers = BTreeMap::from([("host".to_string(), host.to_string())]);
    for (k, v) in extra_headers {
        headers.insert(k.to_ascii_lowercase(), v.to_string());
    }
    let scope = format!(
        "{}/{}/{region}/{service}/aws4_request",
        creds.access_key_id,
        at.format("%Y%m%d")
    );
    params.insert("X-Amz-Algorithm".into(), ALGORITHM.into());
    params.insert("X-Amz-Credential".into(), scope);
    params.insert("X-Amz-Date".into(), amz_date(at));
    params.insert("X-Amz-Expires".into(), expires.to_string());
    params.insert("X-Amz-SignedHeaders".into(), signed_headers(&headers));
    if let Some(token) = &creds.session_token {
        params.insert("X-Amz-Security-Token".into(), token.clone());
    }
    let query = canonical_query(&params);
    // Query-presigned requests to services other than S3 sign the (empty) payload's hash.
    let request = canonical_request("GET", path, &query, &headers, &sha256_hex(b""));
    let signature = signature(&creds.secret_access_key, at, region, service, &request);
    format!("https://{host}{path}?{query}&X-Amz-Signature={signature}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// The presigned-URL example from AWS's "Authenticating Requests: Using Query Parameters"
    /// (S3, which signs `UNSIGNED-PAYLOAD`): an independent known answer for the algorithm.
    #[test]
    fn aws_documented_query_presign_example() -> anyhow::Result<()> {
        let at = Utc
            .with_ymd_and_hms(2013, 5, 24, 0, 0, 0)
            .single()
            .ok_or_else(|| anyhow::anyhow!("bad date"))?;
        let params = BTreeMap::from([
            ("X-Amz-Algorithm".to_string(), ALGORITHM.to_string()),
            (
                "X-Amz-Credential".to_string(),
                "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request".to_string(),
            ),
            ("X-Amz-Date".to_string(), "20130524T000000Z".to_string()),
            ("X-Amz-Expires".to_string(), "86400".to_string()),
            ("X-Amz-SignedHeaders".to_string(), "host".to_string()),
        ]);
        let headers = BTreeMap::from([(
            "host".to_string(),
            "examplebucket.s3.amazonaws.com".to_string(),
        )]);
        let request = canonical_request(
            "GET",
            "/test.txt",
            &canonical_query(&params),
            &headers,
            "UNSIGNED-PAYLOAD",
        );
        assert_eq!(
            signature(
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                at,
                "us-east-1",
                "s3",
                &request
            ),
            "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
        Ok(())
    }
}
