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
use std::path::{Path, PathBuf};
use tokio::process::Command;

/// `cargo xtask demo [--kubeconfig PATH [--context NAME] [--exec-pod NS/POD[/CONTAINER]]]`.
#[derive(Debug, Default, clap::Args)]
pub struct Args {
    /// Put the gateway in front of this real cluster instead of the test API server: the
    /// gateway forwards with this kubeconfig's credential and impersonates `agent-ops`, so the
    /// cluster's RBAC decides what the scripted session may do.
    #[arg(long, env = "GATEHOUSE_DEMO_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, env = "GATEHOUSE_DEMO_CONTEXT", requires = "kubeconfig")]
    pub context: Option<String>,
    /// With --kubeconfig: a running pod the session execs into (`NS/POD` or `NS/POD/CONTAINER`);
    /// without it the real-cluster session has no exec.
    #[arg(long, env = "GATEHOUSE_DEMO_EXEC_POD", requires = "kubeconfig")]
    pub exec_pod: Option<String>,
}

/// Where the demo's gateway forwards.
enum Upstream {
    /// The test API server (a stand-in for a cluster), with the demo's objects.
    Test(Box<TestApiServer>),
    /// A real cluster: the user's kubeconfig, context and optional exec target.
    Real {
        kubeconfig: PathBuf,
        context: Option<String>,
        exec: Option<ExecPod>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ExecPod {
    namespace: String,
    pod: String,
    container: Option<String>,
}

impl std::str::FromStr for ExecPod {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [ns, pod] if !ns.is_empty() && !pod.is_empty() => Ok(Self {
                namespace: (*ns).into(),
                pod: (*pod).into(),
                container: None,
            }),
            [ns, pod, c] if !ns.is_empty() && !pod.is_empty() && !c.is_empty() => Ok(Self {
                namespace: (*ns).into(),
                pod: (*pod).into(),
                container: Some((*c).into()),
            }),
            _ => {
                anyhow::bail!("--exec-pod {s:?}: expected NAMESPACE/POD or NAMESPACE/POD/CONTAINER")
            }
        }
    }
}

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

pub fn run(args: &Args) -> anyhow::Result<()> {
    // Checked before anything is built or started.
    let real = match &args.kubeconfig {
        Some(path) => {
            anyhow::ensure!(
                path.is_file(),
                "--kubeconfig {}: no such file; pass the kubeconfig of the cluster to put the gateway in front of",
                path.display()
            );
            let exec = args.exec_pod.as_deref().map(str::parse).transpose()?;
            Some((path.clone(), args.context.clone(), exec))
        }
        None => None,
    };
    let tools = crate::tools::tools_bin()?;
    // Decided before the build: the bypass step needs the agent built with its eBPF object.
    // Against a real cluster the agent belongs on that cluster's nodes (the chart's DaemonSet).
    let bypass = match real {
        Some(_) => Err(
            "against a real cluster the node agent runs on that cluster's nodes (the chart's DaemonSet), not on this machine"
                .to_string(),
        ),
        None => bypass::prepare(),
    };
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
            r = demo(&dir, &tools, bypass, real) => r,
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
    real: Option<(PathBuf, Option<String>, Option<ExecPod>)>,
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
    let upstream = match real {
        Some((kubeconfig, context, exec)) => Upstream::Real {
            kubeconfig,
            context,
            exec,
        },
        None => Upstream::Test(Box::new(TestApiServer::start(opts).await?)),
    };
    let mut upstream_args = vec!["--upstream-mode=kubeconfig".to_string()];
    match &upstream {
        Upstream::Test(api) => {
            let path = dir.join("upstream.kubeconfig");
            api.write_kubeconfig(&path, GATEWAY_TOKEN)?;
            upstream_args.push(format!("--kubeconfig={}", path.display()));
        }
        Upstream::Real {
            kubeconfig,
            context,
            ..
        } => {
            upstream_args.push(format!("--kubeconfig={}", kubeconfig.display()));
            if let Some(c) = context {
                upstream_args.push(format!("--kube-context={c}"));
            }
        }
    }
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
    match &upstream {
        Upstream::Test(_) => step(
            3,
            "starting the gateway in front of the test API server (a stand-in; `cargo xtask demo --kubeconfig PATH` uses a real cluster)",
        ),
        Upstream::Real { kubeconfig, .. } => step(
            3,
            &format!(
                "starting the gateway in front of the cluster in {}",
                kubeconfig.display()
            ),
        ),
    }
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, POLICY)?;
    let shipping = pki.gateway_shipping(dir, &col.addr)?;
    let col_ca = shipping.ca_file.clone();
    let journal = dir.join("journal");
    let gw = GatewayProc::start(
        dir,
        &journal,
        &[
            upstream_args,
            vec![
                format!("--oidc-issuer-url={}", issuer.url),
                "--oidc-audience=gatehouse".into(),
                format!("--oidc-ca-file={}", issuer_ca.display()),
                "--oidc-username-prefix=-".into(),
                format!("--policy-file={}", policy.display()),
            ],
            shipping.args,
        ]
        .concat(),
    )
    .await?;
    match &upstream {
        Upstream::Test(api) => println!(
            "test API server {}  gateway {}  journal {}\n",
            api.url(),
            gw.url,
            journal.display()
        ),
        Upstream::Real { .. } => println!("gateway {}  journal {}\n", gw.url, journal.display()),
    }

    let agent = dir.join("agent.kubeconfig");
    gw.write_kubeconfig(
        &agent,
        &issuer.token("agent-ops", &["agents"], "gatehouse")?,
    )?;
    let manifest = dir.join("feature-flags.yaml");
    std::fs::write(&manifest, MANIFEST)?;
    let m = manifest.display().to_string();
    step(4, "kubectl as agent-ops through the gateway");
    let commands = match &upstream {
        Upstream::Test(_) => test_session(&m),
        Upstream::Real { exec, .. } => real_session(exec.as_ref()),
    };
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
    let bypass_failed = match (bypass, &upstream) {
        (Ok(ready), Upstream::Test(api)) => {
            let direct = dir.join("direct.kubeconfig");
            std::fs::write(&direct, api.kubeconfig(ADMIN_TOKEN))?;
            let cx = bypass::Ctx {
                dir,
                kubectl: tools.join("kubectl"),
                home: &home,
                api,
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
        (Ok(_), Upstream::Real { .. }) => {
            anyhow::bail!("the bypass step was prepared for the test API server only")
        }
        (Err(why), Upstream::Real { .. }) => {
            println!("bypass step skipped: {why}");
            None
        }
        (Err(why), Upstream::Test(api)) => {
            let direct = dir.join("direct.kubeconfig");
            std::fs::write(&direct, api.kubeconfig(ADMIN_TOKEN))?;
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
    // Steps 6 and 7 read what the collector stored, the read path auditors use.
    let source = [
        format!("--collector=https://{}", col.addr),
        format!("--collector-ca={}", col_ca.display()),
        "--collector-server-name=localhost".to_string(),
        format!("--token={reader}"),
    ];
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
    let out = Command::new(&gatehouse)
        .arg("sessions")
        .args(&source)
        .args(["--who", "agent-ops", "--json"])
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "gatehouse sessions could not read the sessions back from the collector at {}: {}",
        col.addr,
        String::from_utf8_lossy(&out.stderr).trim()
    );
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
    let stand_in = match upstream {
        Upstream::Test(_) => ", test API server",
        Upstream::Real { .. } => "",
    };
    println!("\ncleaning up: gateway, collector, ClickHouse engine{stand_in}, issuer");
    gw.stop().await?;
    drop(col);
    drop(ch);
    drop(upstream);
    match bypass_failed {
        Some(e) => Err(e.context("the bypass step failed (see above)")),
        None => Ok(()),
    }
}

/// The scripted session against the test API server, whose objects the demo seeded.
fn test_session(manifest: &str) -> Vec<Vec<String>> {
    let cmds: [&[&str]; 6] = [
        &["get", "pods", "-n", "payments"],
        &["logs", "checkout-7b9", "-n", "payments", "--tail", "3"],
        &["describe", "pod", "checkout-7b9", "-n", "payments"],
        &[
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
        &["apply", "-f", manifest],
        &["delete", "configmap", "feature-flags", "-n", "payments"],
    ];
    cmds.iter()
        .map(|c| c.iter().map(|s| s.to_string()).collect())
        .collect()
}

/// The scripted session against a real cluster: reads that need no seeded objects, who the
/// cluster thinks the caller is (the impersonated `agent-ops`), an exec when a pod is named,
/// and a delete the gateway's policy refuses before it reaches the cluster.
fn real_session(exec: Option<&ExecPod>) -> Vec<Vec<String>> {
    let mut cmds: Vec<Vec<String>> = vec![
        vec!["auth".into(), "whoami".into()],
        vec!["get".into(), "namespaces".into()],
        vec![
            "get".into(),
            "pods".into(),
            "-n".into(),
            "kube-system".into(),
        ],
    ];
    if let Some(e) = exec {
        let mut c = vec![
            "exec".to_string(),
            e.pod.clone(),
            "-n".into(),
            e.namespace.clone(),
        ];
        if let Some(container) = &e.container {
            c.extend(["-c".into(), container.clone()]);
        }
        c.extend([
            "--".into(),
            "sh".into(),
            "-c".into(),
            "echo hello from $(hostname)".into(),
        ]);
        cmds.push(c);
    }
    cmds.push(
        ["delete", "configmap", "feature-flags", "-n", "payments"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    cmds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_pod_parses_two_or_three_parts_and_refuses_the_rest() {
        let e: ExecPod = "payments/checkout-7b9".parse().unwrap();
        assert_eq!(
            (e.namespace.as_str(), e.pod.as_str(), e.container),
            ("payments", "checkout-7b9", None)
        );
        let e: ExecPod = "payments/checkout-7b9/app".parse().unwrap();
        assert_eq!(e.container.as_deref(), Some("app"));
        for bad in ["checkout-7b9", "payments/", "/pod", "a/b/c/d", "a//c"] {
            let err = bad.parse::<ExecPod>().unwrap_err().to_string();
            assert!(err.contains("NAMESPACE/POD"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_real_cluster_session_ends_with_the_refused_delete_and_execs_only_when_asked() {
        let without = real_session(None);
        assert!(without.iter().all(|c| c[0] != "exec"));
        assert_eq!(without.last().unwrap()[0], "delete");
        let with = real_session(Some(&"ns/p/c".parse().unwrap()));
        let exec = with.iter().find(|c| c[0] == "exec").unwrap();
        assert_eq!(&exec[1..6], ["p", "-n", "ns", "-c", "c"]);
    }

    #[test]
    fn a_missing_kubeconfig_is_refused_before_anything_is_built() {
        let args = Args {
            kubeconfig: Some(PathBuf::from("/nonexistent/kubeconfig")),
            ..Args::default()
        };
        let err = run(&args).unwrap_err().to_string();
        assert!(
            err.contains("/nonexistent/kubeconfig") && err.contains("no such file"),
            "{err}"
        );
    }
}
