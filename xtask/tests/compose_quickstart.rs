//! The Compose quick start without a container engine: `deploy/compose/setup.sh` makes the TLS
//! material and `gatehouse.kubeconfig`, the real gateway binary runs with the environment
//! compose.yaml gives its container (container paths mapped to a temp dir), and real kubectl
//! `get pods` goes through it to the test API server; then `gatehouse sessions` lists the session.
#![allow(clippy::unwrap_used)]

use std::{process::Stdio, time::Duration};

use gatehouse_tests::{
    apiserver::{ApiServerOptions, GATEWAY_TOKEN, TestApiServer},
    binaries,
    kubectl::Kubectl,
};
use tokio::io::{AsyncBufReadExt as _, BufReader};

#[tokio::test(flavor = "multi_thread")]
async fn readme_quick_start_runs_kubectl_through_the_gateway_and_lists_the_session() {
    let root = xtask::workspace_root();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // setup.sh, as the README runs it (in a copy, so the checkout stays clean).
    std::fs::copy(root.join("deploy/compose/setup.sh"), dir.join("setup.sh")).unwrap();
    let out = std::process::Command::new("bash")
        .arg(dir.join("setup.sh"))
        .arg("jane")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "setup.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The cluster in "your kubeconfig": the test API server, with a credential that may impersonate.
    let api = TestApiServer::start(ApiServerOptions::default())
        .await
        .unwrap();
    let upstream = dir.join("upstream.kubeconfig");
    api.write_kubeconfig(&upstream, GATEWAY_TOKEN).unwrap();

    // The gateway service's environment from compose.yaml, container paths mapped to `dir`.
    let compose: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("deploy/compose/compose.yaml")).unwrap(),
    )
    .unwrap();
    let env = compose["services"]["gateway"]["environment"]
        .as_mapping()
        .unwrap();
    let mut cmd = tokio::process::Command::new(binaries::path("gateway").unwrap());
    cmd.env_clear();
    for (k, v) in env {
        let (k, v) = (k.as_str().unwrap(), v.as_str().unwrap());
        if k.starts_with("GATEWAY_COLLECTOR_") {
            continue; // no collector in this test: the journal keeps the events
        }
        let v = v
            .replace("/etc/gatehouse/tls/", &format!("{}/tls/", dir.display()))
            .replace("/etc/gatehouse/kubeconfig", &upstream.display().to_string())
            .replace("/var/lib/gatehouse/", &format!("{}/state/", dir.display()));
        assert!(
            !v.starts_with("/etc") && !v.starts_with("/var"),
            "{k}={v} not mapped"
        );
        cmd.env(k, v);
    }
    // Port 0 instead of the published 8443/9090; JSON logs to learn the bound address.
    cmd.env("GATEWAY_LISTEN", "127.0.0.1:0")
        .env("GATEWAY_OPS_LISTEN", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .env("LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut gateway = cmd.spawn().unwrap();
    let mut lines = BufReader::new(gateway.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    let listen = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            log.push(line.clone());
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["fields"]["message"] == "gateway listening"
            {
                return Some(v["fields"]["listen"].as_str().unwrap().to_string());
            }
        }
        None
    })
    .await
    .unwrap_or(None)
    .unwrap_or_else(|| panic!("the gateway did not start; log:\n{}", log.join("\n")));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    // gatehouse.kubeconfig as setup.sh wrote it, but for the port the gateway got.
    let kubeconfig = std::fs::read_to_string(dir.join("gatehouse.kubeconfig")).unwrap();
    assert!(
        kubeconfig.contains("server: https://127.0.0.1:8443"),
        "{kubeconfig}"
    );
    let kubeconfig = kubeconfig.replace("https://127.0.0.1:8443", &format!("https://{listen}"));
    let kubectl = Kubectl::new(&dir.join("kubectl"), &kubeconfig).unwrap();
    let pods = kubectl
        .run(&["get", "pods", "-A"])
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(pods.stdout.contains("payments-api"), "{}", pods.stdout);
    // The cluster saw jane (the client certificate's CN), impersonated by the gateway.
    let who = kubectl
        .run(&["auth", "whoami"])
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(
        who.stdout.contains("jane") && who.stdout.contains("gatehouse:evaluators"),
        "{}",
        who.stdout
    );
    let seen = api.requests();
    assert!(
        seen.iter()
            .any(|r| r.header("impersonate-user") == Some("jane")),
        "no request reached the API server as jane"
    );

    // `gatehouse sessions` over the journal the gateway wrote.
    let journal = dir.join("state/journal");
    let sessions = std::process::Command::new(binaries::path("gatehouse").unwrap())
        .args(["sessions", "--journal"])
        .arg(&journal)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&sessions.stdout);
    assert!(
        sessions.status.success(),
        "{}",
        String::from_utf8_lossy(&sessions.stderr)
    );
    let row = text
        .lines()
        .find(|l| l.contains("jane"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        row.split_whitespace()
            .any(|w| w.parse::<u32>().is_ok_and(|n| n >= 2)),
        "{row}"
    );

    gateway.kill().await.unwrap();
}
