//! Security checks of issue 7: nothing in the repository turns TLS verification off, and the real
//! gateway binary trusts only the configured upstream CA: a kubeconfig naming another CA makes
//! every forwarded request fail (kubectl sees the error), and `insecure-skip-tls-verify` in the
//! upstream kubeconfig stops the gateway before it listens (exit 64).
#![allow(clippy::unwrap_used)]

use gatehouse_tests::apiserver::tls::TestCa;
use gatehouse_tests::apiserver::{ApiServerOptions, GATEWAY_TOKEN, TestApiServer};
use gatehouse_tests::fixture::{AUDIENCE, kubectl_via};
use gatehouse_tests::gateway_proc::GatewayProc;
use gatehouse_tests::kubectl::workspace_root;
use gatehouse_tests::oidc::TestIssuer;
use std::path::{Path, PathBuf};

/// What turns certificate verification off, in kubeconfigs, kubectl flags and Rust TLS clients.
const FORBIDDEN: &[&str] = &[
    "insecure-skip-tls-verify",
    "insecure_skip_tls_verify",
    "insecureSkipTLSVerify",
    "danger_accept_invalid_certs",
    "danger_accept_invalid_hostnames",
    "NoCertificateVerification",
];

/// Files that name a forbidden setting only to refuse it or to test that it is refused.
const ALLOWED: &[(&str, &str)] = &[
    (
        "gateway/src/upstream/kubeconfig.rs",
        "rejects a kubeconfig that sets insecure-skip-tls-verify",
    ),
    (
        "gateway/src/upstream/tests.rs",
        "asserts that such a kubeconfig is rejected",
    ),
    (
        "cli/src/kubeconfig.rs",
        "documents that the kubeconfigs it writes never set it",
    ),
    ("tests/tests/tamper_security.rs", "this check"),
];

fn scanned(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    matches!(
        ext,
        "rs" | "sh" | "py" | "yaml" | "yml" | "tpl" | "json" | "toml" | "txt" | "conf"
    ) || name == "Dockerfile"
        || name.starts_with("NOTES")
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Build output, VCS data, fuzz corpora (random bytes) and third-party trees.
        if matches!(
            name.as_ref(),
            "target" | ".git" | "node_modules" | "corpus" | "artifacts" | ".venv"
        ) {
            continue;
        }
        if path.is_dir() {
            walk(&path, out);
        } else if scanned(&path) {
            out.push(path);
        }
    }
}

#[test]
fn nothing_turns_tls_verification_off() {
    let root = workspace_root();
    let mut files = Vec::new();
    walk(&root, &mut files);
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("charts/gatehouse/values.yaml")),
        "the walk must cover the chart"
    );
    assert!(
        files.len() > 100,
        "the walk found only {} files",
        files.len()
    );
    let mut offenders = Vec::new();
    for f in &files {
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if ALLOWED.iter().any(|(p, _)| *p == rel) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            // A test asserting that output lacks the setting names it without setting it.
            let asserts_absence = FORBIDDEN
                .iter()
                .any(|w| line.contains(&format!("contains(\"{w}\")")));
            if FORBIDDEN.iter().any(|w| line.contains(w)) && !asserts_absence {
                offenders.push(format!("{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "TLS verification must never be turned off:\n{}",
        offenders.join("\n")
    );
    // The allow-list stays honest: each allowed file exists and still names the setting.
    for (p, why) in ALLOWED {
        let path = root.join(p);
        if let Ok(text) = std::fs::read_to_string(&path) {
            assert!(
                FORBIDDEN.iter().any(|w| text.contains(w)),
                "{p} is allowed ({why}) but no longer names a forbidden setting: drop it from ALLOWED"
            );
        }
    }
}

/// Gateway flags for the test API server at `kubeconfig`, with OIDC callers from `issuer`.
fn gateway_args(kubeconfig: &Path, issuer: &TestIssuer, issuer_ca: &Path) -> Vec<String> {
    vec![
        "--upstream-mode=kubeconfig".to_string(),
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--oidc-issuer-url={}", issuer.url),
        format!("--oidc-audience={AUDIENCE}"),
        format!("--oidc-ca-file={}", issuer_ca.display()),
        "--oidc-username-prefix=-".to_string(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_ca_is_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let api = TestApiServer::start(ApiServerOptions::default())
        .await
        .unwrap();
    let issuer = TestIssuer::start().await.unwrap();
    let issuer_ca = dir.path().join("issuer-ca.pem");
    std::fs::write(&issuer_ca, &issuer.ca_pem).unwrap();
    let right = api.kubeconfig(GATEWAY_TOKEN);
    let other = TestCa::generate().unwrap();
    let b64 = |pem: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(pem)
    };
    let right_ca = b64(&api_ca_pem(&right));
    assert!(
        right.contains(&right_ca),
        "the kubeconfig embeds the server's CA"
    );
    let wrong = right.replace(&right_ca, &b64(&other.pem));
    let kubeconfig = dir.path().join("upstream.kubeconfig");
    std::fs::write(&kubeconfig, &wrong).unwrap();
    let gw = GatewayProc::start(
        dir.path(),
        &dir.path().join("journal"),
        &gateway_args(&kubeconfig, &issuer, &issuer_ca),
    )
    .await
    .unwrap();
    let token = issuer.token("agent-ops", &["agents"], AUDIENCE).unwrap();
    let k = kubectl_via(&gw, &dir, "agent", &token).unwrap();
    let out = k
        .run(&["get", "configmaps", "-n", "payments"])
        .await
        .unwrap();
    assert_eq!(out.code, Some(1), "{out}");
    assert!(!out.stdout.contains("app-config"), "{out}");
    let log = gw.log.lock().join("\n");
    assert!(
        log.contains("upstream request failed"),
        "the gateway logs the upstream failure: {log}"
    );
    // The TLS handshake failed: not one request reached the API server.
    assert!(api.requests().is_empty(), "{:?}", api.requests().len());
    drop(gw);

    // The same API server with its real CA works: the failure above was the pin.
    std::fs::write(&kubeconfig, &right).unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let gw = GatewayProc::start(
        dir2.path(),
        &dir2.path().join("journal"),
        &gateway_args(&kubeconfig, &issuer, &issuer_ca),
    )
    .await
    .unwrap();
    let k = kubectl_via(&gw, &dir2, "agent", &token).unwrap();
    let out = k
        .run(&["get", "configmaps", "-n", "payments"])
        .await
        .unwrap();
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        !api.requests().is_empty(),
        "requests arrive with the right CA"
    );

    // insecure-skip-tls-verify is refused before the gateway listens.
    let insecure = right.replace(
        &format!("certificate-authority-data: {right_ca}"),
        "insecure-skip-tls-verify: true",
    );
    assert_ne!(insecure, right);
    std::fs::write(&kubeconfig, &insecure).unwrap();
    let dir3 = tempfile::tempdir().unwrap();
    let tls = gatehouse_tests::gateway_proc::write_tls(dir3.path()).unwrap();
    let out = tokio::process::Command::new(gatehouse_tests::binaries::path("gateway").unwrap())
        .arg("--listen=127.0.0.1:0")
        .arg("--ops-listen=127.0.0.1:0")
        .arg(format!("--tls-cert={}", tls.cert.display()))
        .arg(format!("--tls-key={}", tls.key.display()))
        .arg(format!(
            "--journal-dir={}",
            dir3.path().join("journal").display()
        ))
        .args(gateway_args(&kubeconfig, &issuer, &issuer_ca))
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "bad config: {err}");
    assert!(err.contains("sets insecure-skip-tls-verify"), "{err}");
}

/// The CA PEM embedded in a kubeconfig written by the test helpers.
fn api_ca_pem(kubeconfig: &str) -> String {
    use base64::Engine;
    let line = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("certificate-authority-data:"))
        .unwrap()
        .trim()
        .to_string();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(line)
            .unwrap(),
    )
    .unwrap()
}
