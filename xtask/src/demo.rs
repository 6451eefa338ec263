//! `cargo xtask demo`: the ClickHouse engine (chdb stand-in), the real collector and the real
//! gateway shipping to it in front of the test API server; real kubectl as the AI agent
//! `agent-ops`; a bypass caught by the real eBPF node agent (root); then the transcript and the
//! exec replay, read from the collector.
mod bypass;
mod webhook;

use anyhow::Context;
use gatehouse_tests::apiserver::{ADMIN_TOKEN, ApiServerOptions, GATEWAY_TOKEN, TestApiServer};
use gatehouse_tests::clickhouse::TestClickHouse;
use gatehouse_tests::collector_proc::{CollectorPki, CollectorProc};
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

/// The demo's policy: agents may do anything except delete in payments.
const POLICY: &str = r#"version: 1
default:
  action: allow
rules:
  - name: no-deletes-in-payments
    match:
      verbs: [delete]
      namespaces: [payments]
    action: deny
    message: "deleting in payments needs a change request"
"#;

fn step(n: u32, what: &str) {
    println!("\n==> [{n}/7] {what}");
}

pub fn run() -> anyhow::Result<()> {
    let tools = crate::tools::tools_bin()?;
    // Decided before the build: the bypass step needs the agent built with its eBPF object.
    let bypass = bypass::prepare();
    let mut packages = vec![
        "-p",
        "gatehouse-gateway",
        "-p",
        "gatehouse-cli",
        "-p",
        "gatehouse-collector",
    ];
    match &bypass {
        Ok(ready) => {
            step(
                1,
                "building the gateway, collector, CLI and node agent (with its eBPF programs)",
            );
            println!("bpf-linker: {}", ready.linker_dir.display());
            packages.extend(["-p", "gatehouse-agent"]);
        }
        Err(_) => step(1, "building the gateway, collector and CLI"),
    }
    packages.push("--bins");
    build(
        &packages,
        bypass.as_ref().ok().and_then(|r| r.path_env.as_ref()),
    )?;
    let dir = crate::workspace_root().join("target/demo");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        // On ctrl-c the demo future is dropped, and with it everything it started: the agent,
        // its cgroup and pinned maps, the gateway, collector and ClickHouse engine.
        tokio::select! {
            r = demo(&dir, &tools, bypass) => r,
            _ = tokio::signal::ctrl_c() => {
                println!("\ninterrupted: cleaning up");
                Err(anyhow::anyhow!("interrupted"))
            }
        }
    })
}

/// `cargo build ARGS`, with PATH set when bpf-linker was installed just now.
fn build(args: &[&str], path: Option<&std::ffi::OsString>) -> anyhow::Result<()> {
    let Some(path) = path else {
        return crate::tools::cargo_build(args);
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .arg("build")
        .args(args)
        .env("PATH", path)
        .current_dir(crate::workspace_root())
        .status()
        .context("running cargo build")?;
    anyhow::ensure!(status.success(), "cargo build {} failed", args.join(" "));
    Ok(())
}

async fn demo(
    dir: &Path,
    tools: &Path,
    bypass: Result<bypass::Ready, String>,
) -> anyhow::Result<()> {
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
    step(
        2,
        "starting the ClickHouse engine (chdb fixture: a stand-in for a ClickHouse server) and the collector",
    );
    let ch = TestClickHouse::start(dir).await?;
    let pki = CollectorPki::write(dir)?;
    // The node agent ships with its own ingest token.
    let agent_token = format!("tok-{}", uuid::Uuid::new_v4().simple());
    let mut tokens = std::fs::read_to_string(&pki.token_file)?;
    tokens.push_str(&format!("{} {agent_token}\n", bypass::INGEST_NAME));
    std::fs::write(&pki.token_file, tokens)?;
    // The collector routes stored bypass alerts to this local receiver (and prints nothing
    // unless one arrives).
    let mut receiver = webhook::Receiver::start().await?;
    let api = TestApiServer::start(opts).await?;
    let upstream_kubeconfig = dir.join("upstream.kubeconfig");
    api.write_kubeconfig(&upstream_kubeconfig, GATEWAY_TOKEN)?;
    let issuer = TestIssuer::start().await?;
    let issuer_ca = dir.join("issuer-ca.pem");
    std::fs::write(&issuer_ca, &issuer.ca_pem)?;
    let mut col_args = ch.collector_args();
    col_args.extend(pki.args());
    col_args.extend([
        "--batch-period=200ms".to_string(),
        format!("--oidc-issuer-url={}", issuer.url),
        "--oidc-audience=gatehouse".into(),
        format!("--oidc-ca-file={}", issuer_ca.display()),
        "--oidc-username-prefix=-".into(),
        "--reader-groups=auditors".into(),
        format!("--alert-webhook-url={}", receiver.url),
    ]);
    let col = CollectorProc::start(dir, 0, &col_args).await?;
    println!("collector {}  ClickHouse {}", col.addr, ch.url);
    step(
        3,
        "starting the gateway in front of the test API server (a stand-in: --kubeconfig points it at a real cluster)",
    );
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, POLICY)?;
    let client = pki.client_ca.issue_client("gateway-test", &[])?;
    let (cert, key, col_ca) = (
        dir.join("gw-client.crt"),
        dir.join("gw-client.key"),
        dir.join("collector-ca.crt"),
    );
    std::fs::write(&cert, &client.cert_pem)?;
    std::fs::write(&key, &client.key_pem)?;
    std::fs::write(&col_ca, &pki.server_ca.pem)?;
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
            format!("--policy-file={}", policy.display()),
            format!("--collector-url=https://{}", col.addr),
            format!("--collector-ca-file={}", col_ca.display()),
            format!("--collector-client-cert={}", cert.display()),
            format!("--collector-client-key={}", key.display()),
            "--collector-server-name=localhost".into(),
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
    step(4, "kubectl as agent-ops through the gateway");
    let commands: Vec<Vec<&str>> = vec![
        vec!["get", "pods", "-n", "payments"],
        vec!["logs", "checkout-7b9", "-n", "payments", "--tail", "3"],
        vec!["describe", "pod", "checkout-7b9", "-n", "payments"],
        vec![
            "exec",
            "checkout-7b9",
            "-n",
            "payments",
            "-c",
            "app",
            "--",
            "sh",
            "-c",
            "echo checking the flags; echo checkout_v2=true",
        ],
        vec!["apply", "-f", &m],
        vec!["delete", "configmap", "feature-flags", "-n", "payments"],
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
    step(
        5,
        "a direct connection to the API server, around the gateway (bypass), and the node agent's alert",
    );
    let direct = dir.join("direct.kubeconfig");
    std::fs::write(&direct, api.kubeconfig(ADMIN_TOKEN))?;
    let bypass_failed = match bypass {
        Ok(ready) => {
            let cx = bypass::Ctx {
                dir,
                kubectl: tools.join("kubectl"),
                home: &home,
                api: &api,
                ch: &ch,
                collector_addr: &col.addr,
                collector_ca: &col_ca,
                ingest_token: &agent_token,
                reader_token: &issuer.token("auditor", &["auditors"], "gatehouse")?,
                webhook: &mut receiver,
                direct_kubeconfig: &direct,
            };
            // Reported after the rest of the demo has run, so one failure does not hide it.
            bypass::run(&ready, cx).await.err().inspect(|e| {
                println!("bypass step FAILED: {e:#}");
            })
        }
        Err(why) => {
            println!(
                "$ kubectl get pods -n payments   (straight to the API server, not via the gateway)"
            );
            let out = Command::new(tools.join("kubectl"))
                .args(["get", "pods", "-n", "payments", "-o", "name"])
                .env("KUBECONFIG", &direct)
                .env("HOME", &home)
                .output()
                .await?;
            print!("{}", String::from_utf8_lossy(&out.stdout));
            println!(
                "bypass alert skipped: the connection above is not recorded by the gateway, and detecting it needs the eBPF node agent, which cannot run here: {why}; agent/tests cover the real detection and collector/tests/alert_routing.rs the alert delivery"
            );
            None
        }
    };

    step(6, "the transcript, read back from the collector");
    let gatehouse = gatehouse_tests::binaries::path("gatehouse")?;
    let reader = issuer.token("auditor", &["auditors"], "gatehouse")?;
    let col_src = [
        format!("--collector=https://{}", col.addr),
        format!("--collector-ca={}", col_ca.display()),
        "--collector-server-name=localhost".to_string(),
        format!("--token={reader}"),
    ];
    let j = format!("--journal={}", journal.display());
    // Stored once the gateway's shipper has delivered the journal.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut stored = String::new();
    let mut last = 0;
    while tokio::time::Instant::now() < deadline {
        stored = ch
            .query_text("SELECT count() FROM events WHERE actor = 'agent-ops'")
            .await
            .unwrap_or_default();
        // Settled: the same non-zero count twice in a row, half a second apart.
        let n = stored.trim().parse::<u64>().unwrap_or(0);
        if n > 0 && n == last {
            break;
        }
        last = n;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    println!("events of agent-ops in ClickHouse: {}", stored.trim());
    let mut source: Vec<String> = col_src.to_vec();
    let out = Command::new(&gatehouse)
        .arg("sessions")
        .args(&source)
        .args(["--who", "agent-ops", "--json"])
        .output()
        .await?;
    let out = if out.status.success() {
        out
    } else {
        println!(
            "(the collector source is not available in this CLI build: {}; reading the gateway journal)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        source = vec![j.clone()];
        Command::new(&gatehouse)
            .args(["sessions", &j, "--who", "agent-ops", "--json"])
            .output()
            .await?
    };
    let first = String::from_utf8_lossy(&out.stdout);
    let session: serde_json::Value =
        serde_json::from_str(first.lines().next().context("no agent session recorded")?)?;
    let id = session["session_id"]
        .as_str()
        .context("session id")?
        .to_string();
    println!("$ gatehouse show {id}");
    let out = Command::new(&gatehouse)
        .args(["show", &id])
        .args(&source)
        .output()
        .await?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));

    step(7, "replaying the exec");
    println!("$ gatehouse replay {id} --speed 20");
    let out = Command::new(&gatehouse)
        .args(["replay", &id, "--speed", "20"])
        .args(&source)
        .stdin(std::process::Stdio::null())
        .output()
        .await?;
    if out.status.success() {
        print!("{}", String::from_utf8_lossy(&out.stdout));
    } else {
        println!(
            "(replay unavailable: {}; the exec as recorded:)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let out = Command::new(&gatehouse)
            .args(["show", &id, "-v"])
            .args(&source)
            .output()
            .await?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    println!("\ncleaning up: gateway, collector, ClickHouse engine, test API server, issuer");
    gw.stop().await?;
    drop(col);
    drop(ch);
    match bypass_failed {
        Some(e) => Err(e.context("the bypass step failed (see above)")),
        None => Ok(()),
    }
}
