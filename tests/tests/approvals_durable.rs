#![allow(clippy::unwrap_used)]
//! Approvals and grants beyond one gateway process, with real kubectl v1.35 and the real
//! `gateway` and `gatehouse` binaries: a grant survives a gateway restart (the approvals file in
//! the journal directory, mode 0600) and still expires on time; a pending approval is announced
//! to a local webhook receiver, in the generic JSON and the Slack format, retried after a 500.
use gatehouse_proto::v1::{Event, event::Payload};
use gatehouse_tests::apiserver::ApiServerOptions;
use gatehouse_tests::fixture::{AUDIENCE, GatewayEnv, kubectl_via};
use gatehouse_tests::gateway_proc::GatewayProc;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn gatehouse(
    gw: &GatewayProc,
    dir: &Path,
    e: &GatewayEnv,
    user: &str,
    groups: &[&str],
    args: &[&str],
) -> (i32, String, String) {
    let token = e.issuer.token(user, groups, AUDIENCE).unwrap();
    let ca = dir.join("gateway-ca-now.pem");
    std::fs::write(&ca, &gw.ca_pem).unwrap();
    let out = tokio::process::Command::new(gatehouse_tests::binaries::path("gatehouse").unwrap())
        .args(args)
        .env("GATEHOUSE_GATEWAY", &gw.url)
        .env("GATEHOUSE_GATEWAY_CA", &ca)
        .env("GATEHOUSE_TOKEN", token)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const GRANT_POLICY: &str = r#"version: 1
default: {action: allow}
approvals: {reviewers: [sre]}
roles:
  - name: payments-writer
    rules:
      - {name: writes-in-payments, match: {namespaces: [payments], resources: [configmaps]}, action: allow}
rules:
  - name: agents-read-only
    match: {groups: [agents], verbs: [create, update, patch, delete]}
    action: deny
    message: AI agents are read-only
"#;

/// The flags `GatewayEnv::start` gave the gateway, rebuilt from the files it left in its dir.
fn gateway_args(e: &GatewayEnv, policy: &Path) -> Vec<String> {
    let dir = e.dir.path();
    vec![
        "--upstream-mode=kubeconfig".to_string(),
        format!("--kubeconfig={}", dir.join("upstream.kubeconfig").display()),
        format!("--oidc-issuer-url={}", e.issuer.url),
        format!("--oidc-audience={AUDIENCE}"),
        format!("--oidc-ca-file={}", dir.join("issuer-ca.pem").display()),
        "--oidc-username-prefix=-".to_string(),
        "--journal-fsync=always".to_string(),
        format!("--policy-file={}", policy.display()),
    ]
}

fn expired_recorded(events: &[Event]) -> bool {
    events.iter().any(|ev| match &ev.payload {
        Some(Payload::Request(r)) => r.request.as_ref().is_some_and(|k| {
            k.path.starts_with("/gatehouse/v1/grants/") && k.path.ends_with("/expired")
        }),
        _ => false,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_survives_a_gateway_restart_then_expires() {
    let tmp = tempfile::tempdir().unwrap();
    let policy = tmp.path().join("policy.yaml");
    std::fs::write(&policy, GRANT_POLICY).unwrap();
    let args = [
        "--journal-fsync=always".to_string(),
        format!("--policy-file={}", policy.display()),
    ];
    let e = GatewayEnv::start(ApiServerOptions::default(), &args)
        .await
        .unwrap();
    let label = [
        "label",
        "configmap",
        "app-config",
        "-n",
        "payments",
        "touched=yes",
        "--overwrite",
    ];
    let out = e.agent.run(&label).await.unwrap();
    assert!(out.stderr.contains("AI agents are read-only"), "{out}");

    let (code, out, err) = gatehouse(
        &e.gw,
        tmp.path(),
        &e,
        "rita",
        &["sre"],
        &[
            "grant",
            "--who",
            "agent-ops",
            "--role",
            "payments-writer",
            "--for",
            "25s",
            "--reason",
            "INC-77 restart drill",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let granted_at = tokio::time::Instant::now();
    e.agent.run(&label).await.unwrap().ok().unwrap();
    let file = e.gw.journal_dir.join("approvals.json");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .contains("INC-77 restart drill")
    );

    // Restart on the same journal directory.
    let flags = gateway_args(&e, &policy);
    let GatewayEnv {
        api,
        issuer,
        gw,
        dir,
        direct,
        agent: _,
    } = e;
    let journal = gw.journal_dir.clone();
    gw.stop().await.unwrap();
    let gw = GatewayProc::start(dir.path(), &journal, &flags)
        .await
        .unwrap();
    let token = issuer.token("agent-ops", &["agents"], AUDIENCE).unwrap();
    let agent = kubectl_via(&gw, &dir, "agent-after-restart", &token).unwrap();
    let e = GatewayEnv {
        api,
        issuer,
        gw,
        dir,
        direct,
        agent,
    };
    assert!(
        granted_at.elapsed() < Duration::from_secs(20),
        "the restart took too long to test the grant before it expires"
    );
    let out = e.agent.run(&label).await.unwrap();
    assert!(
        out.success(),
        "the grant did not survive the restart: {out}"
    );

    // It still expires by itself, and the expiry is recorded by the new process.
    e.agent
        .until_refused(&label, "AI agents are read-only", Duration::from_secs(40))
        .await
        .unwrap();
    assert!(granted_at.elapsed() >= Duration::from_secs(24));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !expired_recorded(&e.events().unwrap()) {
        assert!(tokio::time::Instant::now() < deadline, "no expiry event");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(
        !saved.contains("INC-77"),
        "an expired grant stays saved: {saved}"
    );
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Delivery {
    path: String,
    content_type: String,
    body: serde_json::Value,
}

/// A local HTTP/1.1 receiver that answers the n-th request with `codes[n]` (200 after them).
async fn receiver(codes: Vec<u16>) -> (String, Arc<parking_lot::Mutex<Vec<Delivery>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/approvals", listener.local_addr().unwrap());
    let got = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let sink = got.clone();
    tokio::spawn(async move {
        let mut n = 0usize;
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Headers, then Content-Length bytes of body.
            let (head, len) = loop {
                let r = sock.read(&mut chunk).await.unwrap_or(0);
                if r == 0 {
                    break (String::new(), 0);
                }
                buf.extend_from_slice(&chunk[..r]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).into_owned();
                    buf.drain(..i + 4);
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    break (head, len);
                }
            };
            if head.is_empty() {
                continue;
            }
            while buf.len() < len {
                let r = sock.read(&mut chunk).await.unwrap_or(0);
                if r == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..r]);
            }
            let path = head
                .lines()
                .next()
                .and_then(|l| l.split(' ').nth(1))
                .unwrap_or_default()
                .to_string();
            let content_type = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-type")
                        .then(|| v.trim().to_string())
                })
                .unwrap_or_default();
            sink.lock().push(Delivery {
                path,
                content_type,
                body: serde_json::from_slice(&buf).unwrap_or(serde_json::Value::Null),
            });
            let code = codes.get(n).copied().unwrap_or(200);
            n += 1;
            let resp =
                format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    (url, got)
}

async fn deliveries(got: &parking_lot::Mutex<Vec<Delivery>>, n: usize) -> Vec<Delivery> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.lock().len() < n {
        let seen = got.lock().clone();
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {n} deliveries: {seen:?}",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    got.lock().clone()
}

fn hold_policy(url: &str, format: &str) -> String {
    format!(
        r#"version: 1
default: {{action: allow}}
approvals:
  reviewers: [sre]
  timeout: 20s
  webhook: {{url: "{url}", format: {format}}}
rules:
  - name: hold-config-deletes
    match: {{verbs: [delete], resources: [configmaps]}}
    action: require_approval
    message: deleting config needs a second pair of eyes
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_approval_reaches_the_webhook_as_json_and_slack_retried_after_a_500() {
    let tmp = tempfile::tempdir().unwrap();
    let policy = tmp.path().join("policy.yaml");
    // Generic JSON: the first attempt is answered 500, the retry 200.
    let (url, got) = receiver(vec![500]).await;
    std::fs::write(&policy, hold_policy(&url, "generic")).unwrap();
    let args = [
        "--journal-fsync=always".to_string(),
        format!("--policy-file={}", policy.display()),
    ];
    let e = GatewayEnv::start(ApiServerOptions::default(), &args)
        .await
        .unwrap();
    let agent = e.agent.clone();
    let waiting = tokio::spawn(async move {
        agent
            .run(&["delete", "configmap", "app-config", "-n", "payments"])
            .await
    });
    let d = deliveries(&got, 2).await;
    assert_eq!(d[0].body, d[1].body, "the retry carries the same payload");
    assert_eq!(d[1].path, "/hooks/approvals");
    assert_eq!(d[1].content_type, "application/json");
    let body = &d[1].body;
    assert_eq!(body["type"], "gatehouse.approval.pending");
    let a = &body["approval"];
    assert_eq!(a["requester"], "agent-ops");
    assert_eq!(a["groups"], serde_json::json!(["agents"]));
    assert_eq!(
        a["command"],
        "kubectl delete configmap app-config -n payments"
    );
    assert_eq!(
        (&a["verb"], &a["resource"], &a["namespace"], &a["name"]),
        (
            &serde_json::json!("delete"),
            &serde_json::json!("configmaps"),
            &serde_json::json!("payments"),
            &serde_json::json!("app-config")
        )
    );
    assert_eq!(a["rule"], "hold-config-deletes");
    assert_eq!(
        a["message"],
        "approval required: deleting config needs a second pair of eyes"
    );
    let id = a["id"].as_str().unwrap().to_string();
    let (created, expires) = (
        a["created"].as_u64().unwrap(),
        a["expires"].as_u64().unwrap(),
    );
    assert!(expires >= created + 19 && expires <= created + 21, "{a}");
    let (code, out, err) = gatehouse(
        &e.gw,
        tmp.path(),
        &e,
        "rita",
        &["sre"],
        &["approvals", "deny", &id, "--reason", "not today"],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let out = waiting.await.unwrap().unwrap();
    assert!(out.stderr.contains("denied by rita: not today"), "{out}");

    // Slack format, after a hot reload: one `text` naming who, what, the rule and the id.
    let (slack_url, slack) = receiver(vec![]).await;
    std::fs::write(&policy, hold_policy(&slack_url, "slack")).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !e
        .gw
        .log
        .lock()
        .iter()
        .any(|l| l.contains("policy reloaded"))
    {
        assert!(tokio::time::Instant::now() < deadline, "no reload");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let agent = e.agent.clone();
    let waiting = tokio::spawn(async move {
        agent
            .run(&["delete", "configmap", "app-config", "-n", "payments"])
            .await
    });
    let d = deliveries(&slack, 1).await;
    let text = d[0].body["text"].as_str().unwrap().to_string();
    assert!(
        text.contains("*agent-ops*")
            && text.contains("`kubectl delete configmap app-config -n payments`")
            && text.contains("hold-config-deletes")
            && text.contains("gatehouse approvals approve "),
        "{text}"
    );
    assert_eq!(d[0].body.as_object().unwrap().len(), 1, "{:?}", d[0].body);
    let id = text
        .split("gatehouse approvals approve ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_string();
    let (code, out, err) = gatehouse(
        &e.gw,
        tmp.path(),
        &e,
        "rita",
        &["sre"],
        &["approvals", "approve", &id, "--reason", "CHG-9"],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let out = waiting.await.unwrap().unwrap();
    assert!(out.stdout.contains("deleted"), "{out}");
    // Only the first receiver saw the 500; it got exactly two attempts.
    assert_eq!(got.lock().len(), 2);
}
