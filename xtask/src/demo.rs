//! `cargo xtask demo`: real kubectl, as an AI agent with an OIDC token, through the real gateway
//! binary to the test API server; then the transcript the reviewer reads.
use anyhow::Context;
use gatehouse_tests::apiserver::{ApiServerOptions, GATEWAY_TOKEN, TestApiServer};
use gatehouse_tests::gateway_proc::GatewayProc;
use gatehouse_tests::oidc::TestIssuer;
use std::path::Path;
use tokio::process::Command;

const MANIFEST: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: feature-flags
  namespace: payments
data:
  checkout_v2: \"true\"
";

pub fn run() -> anyhow::Result<()> {
    let tools = crate::tools::tools_bin()?;
    crate::tools::cargo_build(&["-p", "gatehouse-gateway", "-p", "gatehouse-cli", "--bins"])?;
    let dir = crate::workspace_root().join("target/demo");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(demo(&dir, &tools))
}

async fn demo(dir: &Path, tools: &Path) -> anyhow::Result<()> {
    // The test API server stands in for a cluster; point --kubeconfig at a real one instead.
    let mut opts = ApiServerOptions::default();
    opts.objects.push(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "checkout-7b9", "namespace": "payments", "labels": {"app": "checkout"}},
        "spec": {"containers": [{"name": "app", "image": "ghcr.io/example/checkout:2.3.0"}]}
    }));
    opts.logs.content.insert(
        "payments/checkout-7b9".into(),
        "2026-11-21T10:00:01Z starting checkout v2.3.0\n2026-11-21T10:00:02Z connected to payments-db\n2026-11-21T10:00:05Z ready on :8080\n".into(),
    );
    let api = TestApiServer::start(opts).await?;
    let upstream_kubeconfig = dir.join("upstream.kubeconfig");
    api.write_kubeconfig(&upstream_kubeconfig, GATEWAY_TOKEN)?;
    let issuer = TestIssuer::start().await?;
    let issuer_ca = dir.join("issuer-ca.pem");
    std::fs::write(&issuer_ca, &issuer.ca_pem)?;
    let journal = dir.join("journal");
    let gw = GatewayProc::start(
        dir,
        &journal,
        &[
            "--upstream-mode=kubeconfig".into(),
            format!("--kubeconfig={}", upstream_kubeconfig.display()),
            format!("--oidc-issuer-url={}", issuer.url),
            "--oidc-audience=gatehouse".into(),
            format!("--oidc-ca-file={}", issuer_ca.display()),
            "--oidc-username-prefix=-".into(),
        ],
    )
    .await?;
    println!(
        "test API server {}  gateway {}  journal {}\n",
        api.url(),
        gw.url,
        journal.display()
    );

    let agent = dir.join("agent.kubeconfig");
    gw.write_kubeconfig(
        &agent,
        &issuer.token("agent-ops", &["agents"], "gatehouse")?,
    )?;
    let manifest = dir.join("feature-flags.yaml");
    std::fs::write(&manifest, MANIFEST)?;
    let m = manifest.display().to_string();
    let commands: Vec<Vec<&str>> = vec![
        vec!["auth", "whoami"],
        vec!["get", "namespaces"],
        vec!["get", "configmap", "app-config", "-n", "payments"],
        vec!["get", "pods", "-n", "payments"],
        vec!["logs", "checkout-7b9", "-n", "payments", "--tail", "3"],
        vec!["apply", "-f", &m],
        vec!["delete", "configmap", "feature-flags", "-n", "payments"],
        vec!["get", "secret", "no-such-secret", "-n", "payments"],
        vec!["get", "pods", "-n", "payments", "--as", "system:admin"],
    ];
    let home = dir.join("home");
    std::fs::create_dir_all(&home)?;
    for args in &commands {
        println!("$ kubectl {}", args.join(" "));
        let out = Command::new(tools.join("kubectl"))
            .args(args)
            .env("KUBECONFIG", &agent)
            .env("HOME", &home)
            .output()
            .await?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        print!("{}", String::from_utf8_lossy(&out.stderr));
        println!();
    }
    // A caller with a forged token is refused and recorded too.
    let forged = dir.join("forged.kubeconfig");
    gw.write_kubeconfig(&forged, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWxsb3J5In0.")?;
    println!("$ kubectl get pods -n payments   (with a forged token)");
    let out = Command::new(tools.join("kubectl"))
        .args(["get", "pods", "-n", "payments"])
        .env("KUBECONFIG", &forged)
        .env("HOME", &home)
        .output()
        .await?;
    println!("{}", String::from_utf8_lossy(&out.stderr));

    let gatehouse = gatehouse_tests::binaries::path("gatehouse")?;
    let j = journal.display().to_string();
    println!("$ gatehouse sessions --journal {j}");
    let out = Command::new(&gatehouse)
        .args(["sessions", "--journal", &j])
        .output()
        .await?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    let out = Command::new(&gatehouse)
        .args(["sessions", "--journal", &j, "--who", "agent-ops", "--json"])
        .output()
        .await?;
    let first = String::from_utf8_lossy(&out.stdout);
    let session: serde_json::Value =
        serde_json::from_str(first.lines().next().context("no agent session recorded")?)?;
    let id = session["session_id"].as_str().context("session id")?;
    println!("\n$ gatehouse show {id} --journal {j}");
    let out = Command::new(&gatehouse)
        .args(["show", id, "--journal", &j])
        .output()
        .await?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    gw.stop().await?;
    Ok(())
}
