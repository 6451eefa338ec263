//! EKS mode against a fake STS: AssumeRole is signed correctly, and the minted token is a
//! presigned GetCallerIdentity URL whose signature verifies with the assumed credentials.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use http::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use sha2::{Digest, Sha256};

use super::sigv4::Credentials;
use crate::body::{empty, full};
use crate::upstream::testing::{TestPki, serve_https, write};
use crate::upstream::tests::args;
use crate::upstream::{Upstream, UpstreamError};

const BASE_KEY: &str = "AKIDBASE";
const BASE_SECRET: &str = "base/secret+key";
const TEMP_KEY: &str = "ASIATEMPKEY";
const TEMP_SECRET: &str = "temp/Secret+Key=";
const TEMP_TOKEN: &str = "IQoJb3JpZ2luX2VjE&session/token+=";

// ---- an independent SigV4 check, written from the spec for this test ----

fn uri_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), msg)
        .as_ref()
        .to_vec()
}

/// Recomputes the signature of a SigV4 request from its parts.
fn expected_signature(
    secret: &str,
    amz_date: &str,
    scope: &str,
    canonical_request: &str,
) -> String {
    let (date, rest) = scope.split_once('/').unwrap_or_default();
    let mut parts = rest.split('/');
    let (region, service) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    hex::encode(hmac(&key, string_to_sign.as_bytes()))
}

/// Decoded query parameters of a URL, in order of appearance.
fn query_params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            (
                percent_decode_str(k).decode_utf8_lossy().into_owned(),
                percent_decode_str(v).decode_utf8_lossy().into_owned(),
            )
        })
        .collect()
}

/// Verifies a presigned GET URL with `secret`, given the values of its signed headers.
fn verify_presigned(url: &str, secret: &str, header_values: &BTreeMap<&str, &str>) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return false;
    };
    let params = query_params(uri.query().unwrap_or_default());
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut canonical: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "X-Amz-Signature")
        .map(|(k, v)| (uri_encode(k), uri_encode(v)))
        .collect();
    canonical.sort();
    let canonical_query = canonical
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let signed = get("X-Amz-SignedHeaders");
    let mut headers = String::new();
    for name in signed.split(';') {
        let value = if name == "host" {
            uri.host().unwrap_or_default()
        } else {
            header_values.get(name).copied().unwrap_or_default()
        };
        headers.push_str(&format!("{name}:{value}\n"));
    }
    let request = format!(
        "GET\n{}\n{canonical_query}\n{headers}\n{signed}\n{}",
        uri.path(),
        hex::encode(Sha256::digest(b""))
    );
    let credential = get("X-Amz-Credential");
    let scope = credential
        .split_once('/')
        .map(|(_, s)| s)
        .unwrap_or_default();
    expected_signature(secret, &get("X-Amz-Date"), scope, &request) == get("X-Amz-Signature")
}

// ---- the fake STS ----

async fn fake_sts(pki: &TestPki, hits: Arc<AtomicUsize>) -> anyhow::Result<std::net::SocketAddr> {
    let handler = move |req: Request<Incoming>| {
        let hits = hits.clone();
        async move {
            let reply = |status: u16, body: String| {
                let mut resp = http::Response::new(full(body));
                *resp.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
                resp
            };
            let header = |name: &str| {
                req.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            let (authorization, amz_date, host, content_type) = (
                header("authorization"),
                header("x-amz-date"),
                header("host"),
                header("content-type"),
            );
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            // Check the SigV4 Authorization header against the base credentials.
            let fields: BTreeMap<&str, &str> = authorization
                .trim_start_matches("AWS4-HMAC-SHA256 ")
                .split(", ")
                .filter_map(|kv| kv.split_once('='))
                .collect();
            let credential = fields.get("Credential").copied().unwrap_or_default();
            let (key, scope) = credential.split_once('/').unwrap_or_default();
            let canonical = format!(
                "POST\n/\n\ncontent-type:{content_type}\nhost:{host}\nx-amz-date:{amz_date}\n\n{}\n{}",
                fields.get("SignedHeaders").copied().unwrap_or_default(),
                hex::encode(Sha256::digest(&body))
            );
            let good = key == BASE_KEY
                && fields.get("SignedHeaders") == Some(&"content-type;host;x-amz-date")
                && fields.get("Signature").copied()
                    == Some(expected_signature(BASE_SECRET, &amz_date, scope, &canonical).as_str());
            if !good {
                return reply(
                    403,
                    "<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code><Message>bad \
                     signature</Message></Error></ErrorResponse>"
                        .into(),
                );
            }
            let form = query_params(&String::from_utf8_lossy(&body));
            let form: BTreeMap<_, _> = form.into_iter().collect();
            if form.get("Action").map(String::as_str) != Some("AssumeRole")
                || form.get("RoleArn").map(String::as_str)
                    != Some("arn:aws:iam::111122223333:role/gatehouse")
            {
                return reply(
                    400,
                    "<ErrorResponse><Error><Code>InvalidAction</Code></Error></ErrorResponse>"
                        .into(),
                );
            }
            hits.fetch_add(1, Ordering::SeqCst);
            let expiration =
                (chrono::Utc::now() + chrono::TimeDelta::hours(1)).format("%Y-%m-%dT%H:%M:%SZ");
            reply(
                200,
                format!(
                    "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">
  <AssumeRoleResult>
    <Credentials>
      <AccessKeyId>{TEMP_KEY}</AccessKeyId>
      <SecretAccessKey>{TEMP_SECRET}</SecretAccessKey>
      <SessionToken>{}</SessionToken>
      <Expiration>{expiration}</Expiration>
    </Credentials>
  </AssumeRoleResult>
</AssumeRoleResponse>",
                    TEMP_TOKEN.replace('&', "&amp;")
                ),
            )
        }
    };
    serve_https(pki.server_config(false)?, handler).await
}

async fn seen(upstream: &Upstream) -> anyhow::Result<String> {
    let resp = upstream
        .send(Request::get("/version").body(empty())?)
        .await?;
    Ok(String::from_utf8(
        resp.into_body().collect().await?.to_bytes().to_vec(),
    )?)
}

fn decode_token(authorization: &str) -> anyhow::Result<String> {
    let token = authorization
        .strip_prefix("Bearer k8s-aws-v1.")
        .ok_or_else(|| anyhow::anyhow!("not an EKS token: {authorization}"))?;
    assert!(!token.contains('='), "padding must be stripped");
    Ok(String::from_utf8(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token)?,
    )?)
}

#[tokio::test]
async fn assume_role_then_presigned_token() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new("test ca")?;
    let hits = Arc::new(AtomicUsize::new(0));
    let sts = fake_sts(&pki, hits.clone()).await?;
    // The "EKS API server" is an echo server reporting the bearer token it got.
    let api = serve_https(
        pki.server_config(false)?,
        |req: Request<Incoming>| async move {
            let auth = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            http::Response::new(full(auth))
        },
    )
    .await?;
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem)?;
    let ca = ca.to_str().unwrap_or_default();
    let flags = [
        "--upstream-mode",
        "eks",
        "--eks-cluster-name",
        "prod-east",
        "--eks-role-arn",
        "arn:aws:iam::111122223333:role/gatehouse",
        "--eks-region",
        "us-west-2",
        "--eks-endpoint",
        &format!("https://127.0.0.1:{}", api.port()),
        "--eks-ca-file",
        ca,
        "--sts-endpoint",
        &format!("https://127.0.0.1:{}/", sts.port()),
        "--sts-ca-file",
        ca,
    ];
    let base = Credentials {
        access_key_id: BASE_KEY.into(),
        secret_access_key: BASE_SECRET.into(),
        session_token: None,
    };
    let target = super::target_with(&args(&flags), base).await?;
    let upstream = Upstream::from_target(target, &args(&flags))?;
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    let authorization = seen(&upstream).await?;
    let url = decode_token(&authorization)?;
    let uri: http::Uri = url.parse()?;
    assert_eq!(uri.scheme_str(), Some("https"));
    assert_eq!(uri.host(), Some("sts.us-west-2.amazonaws.com"));
    assert_eq!(uri.path(), "/");
    let params: BTreeMap<String, String> = query_params(uri.query().unwrap_or_default())
        .into_iter()
        .collect();
    let param = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
    assert_eq!(param("Action"), "GetCallerIdentity");
    assert_eq!(param("Version"), "2011-06-15");
    assert_eq!(param("X-Amz-Algorithm"), "AWS4-HMAC-SHA256");
    assert_eq!(param("X-Amz-Expires"), "60");
    assert_eq!(param("X-Amz-SignedHeaders"), "host;x-k8s-aws-id");
    assert_eq!(param("X-Amz-Security-Token"), TEMP_TOKEN);
    let today = chrono::Utc::now().format("%Y%m%d").to_string();
    assert_eq!(
        param("X-Amz-Credential"),
        format!("{TEMP_KEY}/{today}/us-west-2/sts/aws4_request")
    );

    // The signature verifies with the assumed credentials and the signed cluster name ...
    let cluster = BTreeMap::from([("x-k8s-aws-id", "prod-east")]);
    assert!(verify_presigned(&url, TEMP_SECRET, &cluster));
    // ... and not with another cluster name, the base secret, or an altered URL.
    assert!(!verify_presigned(
        &url,
        TEMP_SECRET,
        &BTreeMap::from([("x-k8s-aws-id", "other")])
    ));
    assert!(!verify_presigned(&url, BASE_SECRET, &cluster));
    let tampered = url.replace("X-Amz-Expires=60", "X-Amz-Expires=900");
    assert!(!verify_presigned(&tampered, TEMP_SECRET, &cluster));

    // The token is cached: the next request reuses it and STS is not asked again.
    assert_eq!(seen(&upstream).await?, authorization);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    Ok(())
}

#[tokio::test]
async fn wrong_base_credentials_fail_at_start() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new("test ca")?;
    let hits = Arc::new(AtomicUsize::new(0));
    let sts = fake_sts(&pki, hits.clone()).await?;
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem)?;
    let ca = ca.to_str().unwrap_or_default();
    let sts_url = format!("https://127.0.0.1:{}/", sts.port());
    let flags = [
        "--upstream-mode",
        "eks",
        "--eks-cluster-name",
        "c",
        "--eks-role-arn",
        "arn:aws:iam::111122223333:role/gatehouse",
        "--eks-region",
        "us-west-2",
        "--eks-endpoint",
        "https://127.0.0.1:1",
        "--eks-ca-file",
        ca,
        "--sts-endpoint",
        &sts_url,
        "--sts-ca-file",
        ca,
    ];
    let base = Credentials {
        access_key_id: BASE_KEY.into(),
        secret_access_key: "wrong".into(),
        session_token: None,
    };
    let err = match super::target_with(&args(&flags), base.clone()).await {
        Ok(_) => anyhow::bail!("accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("SignatureDoesNotMatch"), "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    let err = match super::target_with(&args(&flags[..4]), base).await {
        Ok(_) => anyhow::bail!("accepted"),
        Err(e) => e,
    };
    assert!(
        matches!(&err, UpstreamError::Config(m) if m == "--upstream-mode eks needs --eks-region"),
        "{err}"
    );
    Ok(())
}
