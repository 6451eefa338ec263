//! End-to-end tests of `Upstream` against a local HTTPS API server stand-in.
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use clap::Parser;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

use super::testing::{PeerCerts, TestPki, serve_https, write};
use super::{Upstream, UpstreamArgs, UpstreamError};
use crate::body::{BoxBody, empty, full};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    upstream: UpstreamArgs,
}

pub(crate) fn args(flags: &[&str]) -> UpstreamArgs {
    Cli::parse_from(std::iter::once("gateway").chain(flags.iter().copied())).upstream
}

fn b64(data: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Answers with what it saw, as JSON; `/slow` answers after 5 s.
async fn echo(req: Request<Incoming>) -> http::Response<BoxBody> {
    if req.uri().path() == "/slow" {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let peer = req
        .extensions()
        .get::<PeerCerts>()
        .map(|p| base64::engine::general_purpose::STANDARD.encode(&p.0[0]));
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let seen = json!({
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query(),
        "version": format!("{:?}", req.version()),
        "authorization": header("authorization"),
        "upgrade": header("upgrade"),
        "peer": peer,
    });
    http::Response::new(full(seen.to_string()))
}

async fn echo_server(pki: &TestPki, client_auth: bool) -> anyhow::Result<SocketAddr> {
    serve_https(pki.server_config(client_auth)?, echo).await
}

fn kubeconfig(server: &str, cluster_extra: &str, user: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
current-context: test
contexts:
- name: test
  context:
    cluster: c1
    user: u1
- name: other
  context:
    cluster: c1
    user: missing
clusters:
- name: c1
  cluster:
    server: {server}
{cluster_extra}
users:
- name: u1
  user:
{user}
"
    )
}

async fn get(upstream: &Upstream, path: &str) -> anyhow::Result<(StatusCode, Value)> {
    let req = Request::get(path)
        .header("authorization", "Bearer caller-token-must-not-leak")
        .body(empty())?;
    let resp = upstream.send(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, serde_json::from_slice(&body)?))
}

#[tokio::test]
async fn kubeconfig_token_and_ca_data_over_h2_when_asked() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new("cluster ca")?;
    let addr = echo_server(&pki, false).await?;
    let config = kubeconfig(
        &format!("https://127.0.0.1:{}/", addr.port()),
        &format!("    certificate-authority-data: {}", b64(&pki.ca_pem)),
        "    token: gateway-token",
    );
    let path = write(dir.path(), "config", config)?;
    let upstream = Upstream::from_args(&args(&[
        "--kubeconfig",
        path.to_str().unwrap_or_default(),
        "--upstream-http2=true",
    ]))
    .await?;
    assert_eq!(
        upstream.base_url().to_string(),
        format!("https://127.0.0.1:{}/", addr.port())
    );

    let (status, seen) = get(&upstream, "/api/v1/pods?watch=1&resourceVersion=5").await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen["path"], "/api/v1/pods");
    assert_eq!(seen["query"], "watch=1&resourceVersion=5");
    // The caller's token is replaced by the gateway's own.
    assert_eq!(seen["authorization"], "Bearer gateway-token");
    // ALPN offered h2 and the server took it.
    assert_eq!(seen["version"], "HTTP/2.0");

    // A second request reuses the pooled connection and still works.
    let (_, seen) = get(&upstream, "/version").await?;
    assert_eq!(seen["path"], "/version");
    Ok(())
}

#[tokio::test]
async fn upgrade_requests_use_http1_and_buffered_helper_posts() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new("cluster ca")?;
    let addr = echo_server(&pki, false).await?;
    let ca = write(dir.path(), "ca.crt", &pki.ca_pem)?;
    let config = kubeconfig(
        &format!("https://localhost:{}/prefix", addr.port()),
        &format!("    certificate-authority: {}", ca.display()),
        "    token: t",
    );
    let path = write(dir.path(), "config", config)?;
    let upstream =
        Upstream::from_args(&args(&["--kubeconfig", path.to_str().unwrap_or_default()])).await?;

    let req = Request::get("/api/v1/namespaces/d/pods/p/exec?command=ls")
        .version(http::Version::HTTP_2)
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .body(empty())?;
    let resp = upstream.send(req).await?;
    let seen: Value = serde_json::from_slice(&resp.into_body().collect().await?.to_bytes())?;
    assert_eq!(seen["version"], "HTTP/1.1");
    assert_eq!(seen["upgrade"], "websocket");
    // The server URL's path prefix is kept.
    assert_eq!(seen["path"], "/prefix/api/v1/namespaces/d/pods/p/exec");

    let req = Request::post("/apis/authentication.k8s.io/v1/tokenreviews")
        .body(Bytes::from_static(b"{}"))?;
    let resp = upstream.send_buffered(req).await?;
    let seen: Value = serde_json::from_slice(resp.body())?;
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["authorization"], "Bearer t");
    Ok(())
}

#[tokio::test]
async fn buffered_helper_times_out() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new("cluster ca")?;
    let addr = echo_server(&pki, false).await?;
    let config = kubeconfig(
        &format!("https://127.0.0.1:{}", addr.port()),
        &format!("    certificate-authority-data: {}", b64(&pki.ca_pem)),
        "    token: t",
    );
    let path = write(dir.path(), "config", config)?;
    let upstream = Upstream::from_args(&args(&[
        "--kubeconfig",
        path.to_str().unwrap_or_default(),
        "--upstream-timeout-request",
        "300ms",
    ]))
    .await?;
    let err = upstream
        .send_buffered(Request::get("/slow").body(Bytes::new())?)
        .await;
    assert!(matches!(err, Err(UpstreamError::Timeout(_))), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn kubeconfig_client_certificate() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new("cluster ca")?;
    let addr = echo_server(&pki, true).await?;
    let (cert, key) = pki.client_cert("gatehouse", &["system:masters"])?;
    write(dir.path(), "client.crt", &cert)?;
    let config = kubeconfig(
        &format!("https://127.0.0.1:{}", addr.port()),
        &format!("    certificate-authority-data: {}", b64(&pki.ca_pem)),
        // A relative path resolves against the kubeconfig's directory.
        &format!(
            "    client-certificate: client.crt\n    client-key-data: {}",
            b64(&key)
        ),
    );
    let path = write(dir.path(), "config", config)?;
    let upstream =
        Upstream::from_args(&args(&["--kubeconfig", path.to_str().unwrap_or_default()])).await?;
    let (_, seen) = get(&upstream, "/api").await?;
    let want = CertificateDer::from_pem_slice(cert.as_bytes())?;
    assert_eq!(
        seen["peer"],
        base64::engine::general_purpose::STANDARD.encode(&want)
    );
    // No token configured: the caller's Authorization is removed, not forwarded.
    assert_eq!(seen["authorization"], Value::Null);
    // By default ordinary requests go over pooled HTTP/1.1, though the server offers h2.
    assert_eq!(seen["version"], "HTTP/1.1");
    Ok(())
}

#[tokio::test]
async fn only_the_cluster_ca_is_trusted() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let real = TestPki::new("real ca")?;
    let other = TestPki::new("other ca")?;
    let addr = echo_server(&real, false).await?;
    let config = kubeconfig(
        &format!("https://127.0.0.1:{}", addr.port()),
        &format!("    certificate-authority-data: {}", b64(&other.ca_pem)),
        "    token: t",
    );
    let path = write(dir.path(), "config", config)?;
    let upstream =
        Upstream::from_args(&args(&["--kubeconfig", path.to_str().unwrap_or_default()])).await?;
    let err = get(&upstream, "/api").await;
    let err = err.err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(err.contains("certificate"), "{err}");
    Ok(())
}

#[tokio::test]
async fn token_file_is_reread() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new("cluster ca")?;
    let addr = echo_server(&pki, false).await?;
    let token = write(dir.path(), "token", "first\n")?;
    let config = kubeconfig(
        &format!("https://127.0.0.1:{}", addr.port()),
        &format!("    certificate-authority-data: {}", b64(&pki.ca_pem)),
        "    tokenFile: token",
    );
    let path = write(dir.path(), "config", config)?;
    let upstream = Upstream::from_args(&args(&[
        "--kubeconfig",
        path.to_str().unwrap_or_default(),
        "--upstream-token-reload-interval",
        "0s",
    ]))
    .await?;
    assert_eq!(
        get(&upstream, "/").await?.1["authorization"],
        "Bearer first"
    );
    std::fs::write(&token, "second")?;
    assert_eq!(
        get(&upstream, "/").await?.1["authorization"],
        "Bearer second"
    );
    // A rotation that briefly removes the file keeps the last good token.
    std::fs::remove_file(&token)?;
    assert_eq!(
        get(&upstream, "/").await?.1["authorization"],
        "Bearer second"
    );
    Ok(())
}

#[tokio::test]
async fn in_cluster_token_is_reread() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new("cluster ca")?;
    let addr = echo_server(&pki, false).await?;
    let ca = write(dir.path(), "ca.crt", &pki.ca_pem)?;
    let token = write(dir.path(), "token", "sa-token-1")?;
    let upstream = Upstream::from_args(&args(&[
        "--upstream-mode",
        "in-cluster",
        "--in-cluster-server",
        &format!("https://127.0.0.1:{}", addr.port()),
        "--in-cluster-ca-file",
        ca.to_str().unwrap_or_default(),
        "--in-cluster-token-file",
        token.to_str().unwrap_or_default(),
        "--upstream-token-reload-interval",
        "200ms",
    ]))
    .await?;
    assert_eq!(
        get(&upstream, "/").await?.1["authorization"],
        "Bearer sa-token-1"
    );
    // kubelet-style rotation: write a new file and rename it into place.
    let next = write(dir.path(), "token.new", "sa-token-2")?;
    std::fs::rename(next, &token)?;
    // Within the reload interval the cached token is still used ...
    assert_eq!(
        get(&upstream, "/").await?.1["authorization"],
        "Bearer sa-token-1"
    );
    // ... and after it the new one.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        get(&upstream, "/").await?.1["authorization"],
        "Bearer sa-token-2"
    );
    Ok(())
}

#[tokio::test]
async fn in_cluster_missing_files_fail_at_start() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new("cluster ca")?;
    let ca = write(dir.path(), "ca.crt", &pki.ca_pem)?;
    let err = Upstream::from_args(&args(&[
        "--upstream-mode",
        "in-cluster",
        "--in-cluster-server",
        "https://127.0.0.1:1",
        "--in-cluster-ca-file",
        ca.to_str().unwrap_or_default(),
        "--in-cluster-token-file",
        dir.path().join("nope").to_str().unwrap_or_default(),
    ]))
    .await;
    let err = err.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.starts_with("cannot read token file"), "{err}");
    Ok(())
}

/// Kubeconfig shapes the gateway refuses, each with its message.
#[tokio::test]
async fn kubeconfig_errors_are_clear() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new("cluster ca")?;
    let ca = format!("    certificate-authority-data: {}", b64(&pki.ca_pem));
    let server = "https://127.0.0.1:6443";
    let cases: Vec<(&str, String, &[&str], &str)> = vec![
        (
            "yaml",
            "clusters: [".into(),
            &[],
            "is not a valid kubeconfig",
        ),
        ("empty", String::new(), &[], "no current-context set"),
        (
            "context",
            kubeconfig(server, &ca, "    token: t"),
            &["--kube-context", "nope"],
            "context \"nope\" not found",
        ),
        (
            "user",
            kubeconfig(server, &ca, "    token: t"),
            &["--kube-context", "other"],
            "user \"missing\" not found",
        ),
        (
            "exec",
            kubeconfig(server, &ca, "    exec:\n      command: aws"),
            &[],
            "exec credential plugin, which the gateway does not support yet",
        ),
        (
            "insecure",
            kubeconfig(server, "    insecure-skip-tls-verify: true", "    token: t"),
            &[],
            "sets insecure-skip-tls-verify",
        ),
        (
            "noca",
            kubeconfig(server, "", "    token: t"),
            &[],
            "has no certificate-authority",
        ),
        (
            "badb64",
            kubeconfig(
                server,
                "    certificate-authority-data: '%%%'",
                "    token: t",
            ),
            &[],
            "certificate-authority-data is not valid base64",
        ),
        (
            "notpem",
            kubeconfig(
                server,
                &format!("    certificate-authority-data: {}", b64("hello")),
                "    token: t",
            ),
            &[],
            "contains no PEM certificate",
        ),
        (
            "certnokey",
            kubeconfig(
                server,
                &ca,
                &format!("    client-certificate-data: {}", b64(&pki.ca_pem)),
            ),
            &[],
            "client certificate without a key",
        ),
        (
            "nocreds",
            kubeconfig(server, &ca, "    {}"),
            &[],
            "has no token, tokenFile or client certificate",
        ),
        (
            "http",
            kubeconfig("http://127.0.0.1:8080", &ca, "    token: t"),
            &[],
            "must be reached over https",
        ),
        (
            "cafile",
            kubeconfig(
                server,
                "    certificate-authority: missing.crt",
                "    token: t",
            ),
            &[],
            "cannot read certificate-authority",
        ),
    ];
    for (name, contents, extra, want) in cases {
        let path = write(dir.path(), name, contents)?;
        let mut flags = vec!["--kubeconfig", path.to_str().unwrap_or_default()];
        flags.extend_from_slice(extra);
        let err = match Upstream::from_args(&args(&flags)).await {
            Ok(_) => panic!("{name}: accepted"),
            Err(err) => err.to_string(),
        };
        assert!(err.contains(want), "{name}: {err}");
    }
    let missing = dir.path().join("absent");
    let err = Upstream::from_args(&args(&[
        "--kubeconfig",
        missing.to_str().unwrap_or_default(),
    ]))
    .await
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.starts_with("cannot read kubeconfig"), "{err}");
    Ok(())
}
