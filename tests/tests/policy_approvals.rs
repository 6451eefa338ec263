#![allow(clippy::unwrap_used)]
//! Policy enforcement beyond allow/deny, with real kubectl v1.35 and the real `gateway` and
//! `gatehouse` binaries: detectors masking `kubectl logs` (transcript, and live in DLP mode),
//! DLP on Secrets, a held request a reviewer approves or denies while kubectl waits, the
//! approval timeout, a just-in-time grant that works and then expires, and label rules.
use gatehouse_proto::v1::{Event, event::Payload};
use gatehouse_tests::apiserver::ApiServerOptions;
use gatehouse_tests::fixture::{AUDIENCE, GatewayEnv};
use gatehouse_tests::on_disk;
use std::time::Duration;
use tempfile::TempDir;

const AWS: &str = "AKIAIOSFODNN7EXAMPLE";
const PAY_POD: &str = "payments-api-7c9d8b5f6d-2xk4p";
const DNS_POD: &str = "coredns-5d78c9869d-q8w2n";

async fn start(policy: &str, opts: ApiServerOptions) -> (GatewayEnv, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, policy).unwrap();
    let args = vec![
        "--journal-fsync=always".to_string(),
        format!("--policy-file={}", path.display()),
    ];
    (GatewayEnv::start(opts, &args).await.unwrap(), dir)
}

/// `gatehouse <args>` as `user` (groups `groups`) against the gateway's reviewer API.
async fn gatehouse(
    e: &GatewayEnv,
    user: &str,
    groups: &[&str],
    args: &[&str],
) -> (i32, String, String) {
    let token = e.issuer.token(user, groups, AUDIENCE).unwrap();
    let ca = e.dir.path().join("gateway-ca.pem");
    std::fs::write(&ca, &e.gw.ca_pem).unwrap();
    let out = tokio::process::Command::new(gatehouse_tests::binaries::path("gatehouse").unwrap())
        .args(args)
        .env("GATEHOUSE_GATEWAY", &e.gw.url)
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

/// Request events whose path starts with `prefix`, with the body recorded for each.
fn requests_under(events: &[Event], prefix: &str) -> Vec<(String, String, String)> {
    events
        .iter()
        .filter_map(|ev| match &ev.payload {
            Some(Payload::Request(r)) => {
                let k = r.request.clone().unwrap_or_default();
                k.path.starts_with(prefix).then(|| {
                    (
                        ev.identity
                            .as_ref()
                            .map(|i| i.username.clone())
                            .unwrap_or_default(),
                        k.path,
                        String::from_utf8_lossy(&r.body.clone().unwrap_or_default().data)
                            .into_owned(),
                    )
                })
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detectors_mask_logs_in_the_transcript_and_dlp_masks_what_kubectl_sees() {
    let log = format!("starting\nexport AWS_ACCESS_KEY_ID={AWS}\nready\n");
    let mut opts = ApiServerOptions::default();
    opts.logs
        .content
        .insert(format!("payments/{PAY_POD}"), log.clone());
    opts.logs
        .content
        .insert(format!("kube-system/{DNS_POD}"), log.clone());
    let policy = r#"version: 1
default: {action: allow}
rules:
  - name: mask-payments-logs
    match: {resources: [pods], subresources: [log], namespaces: [payments]}
    action: mask
  - name: dlp-system-logs
    match: {resources: [pods], subresources: [log], namespaces: [kube-system]}
    action: mask
    mask: {detectors: [aws_access_key], dlp: true}
  - name: dlp-secrets
    match: {resources: [secrets]}
    action: mask
    mask: {dlp: true}
"#;
    let (e, _dir) = start(policy, opts).await;

    // Transcript mode: kubectl sees the line as it is.
    let out = e
        .agent
        .run(&["logs", PAY_POD, "-n", "payments"])
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(out.stdout, log, "{out}");
    // DLP mode: the key is masked in what kubectl prints too, lines intact.
    let out = e
        .agent
        .run(&["logs", DNS_POD, "-n", "kube-system"])
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(!out.stdout.contains(AWS), "{out}");
    assert!(
        out.stdout
            .starts_with("starting\nexport AWS_ACCESS_KEY_ID=***"),
        "{out}"
    );
    assert!(out.stdout.ends_with("\nready\n"), "{out}");
    // DLP on a Secret, as JSON: kubectl sees masked values (kubectl asked for protobuf-or-JSON
    // or JSON; the gateway negotiated JSON).
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode("s3cr3t-p4ss");
    let out = e
        .agent
        .run(&[
            "get",
            "secret",
            "db-credentials",
            "-n",
            "payments",
            "-o",
            "jsonpath={.data.password}",
        ])
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(
        out.stdout.starts_with("***") && !out.stdout.contains(&b64),
        "{out}"
    );
    // Table (`kubectl get secrets`) still works under DLP.
    let out = e
        .agent
        .run(&["get", "secrets", "-n", "payments"])
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(out.stdout.contains("db-credentials"), "{out}");

    // The journal holds the key nowhere, and each response says how many values it masked.
    let disk = on_disk::journal_bytes(&e.gw.journal_dir).unwrap();
    assert!(
        !on_disk::contains(&disk, AWS),
        "the AWS key is in the journal"
    );
    assert!(
        !on_disk::contains(&disk, &b64),
        "the secret is in the journal"
    );
    let events = e.events().unwrap();
    let log_paths: std::collections::HashMap<String, String> = events
        .iter()
        .filter_map(|ev| match &ev.payload {
            Some(Payload::Request(r)) => Some((
                ev.event_id.clone(),
                r.request.clone().unwrap_or_default().path,
            )),
            _ => None,
        })
        .collect();
    let masked: Vec<(String, u32)> = events
        .iter()
        .filter_map(|ev| match &ev.payload {
            Some(Payload::Response(r)) => Some((
                log_paths
                    .get(&r.request_event_id)
                    .cloned()
                    .unwrap_or_default(),
                r.body.clone().unwrap_or_default().masked_values,
            )),
            _ => None,
        })
        .filter(|(p, _)| p.ends_with("/log"))
        .collect();
    assert_eq!(masked.len(), 2, "{masked:?}");
    assert!(masked.iter().all(|(_, n)| *n == 1), "{masked:?}");
}

const HOLD: &str = r#"version: 1
default: {action: allow}
approvals: {reviewers: [sre, agents], timeout: TIMEOUT}
rules:
  - name: hold-config-deletes
    match: {verbs: [delete], resources: [configmaps]}
    action: require_approval
    message: deleting config needs a second pair of eyes
"#;

/// The id of the one pending approval, as the reviewer's CLI lists it.
async fn pending_id(e: &GatewayEnv) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (code, out, err) =
            gatehouse(e, "rita", &["sre"], &["approvals", "list", "--json"]).await;
        assert_eq!(code, 0, "{out}{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        if let Some(a) = v.as_array().and_then(|a| a.first()) {
            assert_eq!(a["requester"], "agent-ops");
            assert_eq!(a["rule"], "hold-config-deletes");
            return a["id"].as_str().unwrap().to_string();
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing pending");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_request_waits_for_a_reviewer_who_approves_or_denies_it() {
    let (e, _dir) = start(&HOLD.replace("TIMEOUT", "90s"), ApiServerOptions::default()).await;
    let del = "/api/v1/namespaces/payments/configmaps/app-config";
    let agent = e.agent.clone();
    let waiting = tokio::spawn(async move {
        agent
            .run(&["delete", "configmap", "app-config", "-n", "payments"])
            .await
    });
    let id = pending_id(&e).await;
    // Held: nothing reached the API server yet.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiting.is_finished());
    assert_eq!(
        e.api
            .requests()
            .iter()
            .filter(|r| r.method == "DELETE" && r.path == del)
            .count(),
        0
    );
    // The requester, although in a reviewer group, cannot approve their own request.
    let (code, _, err) = gatehouse(
        &e,
        "agent-ops",
        &["agents"],
        &["approvals", "approve", &id, "--reason", "mine"],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("agent-ops cannot approve or deny their own request"),
        "{err}"
    );
    // A non-reviewer cannot see the list.
    let (code, _, err) = gatehouse(&e, "mallory", &["devs"], &["approvals", "list"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("mallory is not a reviewer"), "{err}");
    // A reason is required.
    let (code, _, err) = gatehouse(
        &e,
        "rita",
        &["sre"],
        &["approvals", "approve", &id, "--reason", " "],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("a reason is required"), "{err}");

    let (code, out, err) = gatehouse(
        &e,
        "rita",
        &["sre"],
        &["approvals", "approve", &id, "--reason", "CHG-1234 cleanup"],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("approved {id}")), "{out}");
    let out = waiting.await.unwrap().unwrap().ok().unwrap();
    assert!(out.stdout.contains("deleted"), "{out}");
    assert_eq!(
        e.api
            .requests()
            .iter()
            .filter(|r| r.method == "DELETE" && r.path == del)
            .count(),
        1
    );

    // A denial: kubectl gets a 403 naming the reviewer and the reason.
    let agent = e.agent.clone();
    let waiting = tokio::spawn(async move {
        agent
            .run(&["delete", "configmap", "other", "-n", "payments"])
            .await
    });
    let id2 = pending_id(&e).await;
    let (code, out, err) = gatehouse(
        &e,
        "rita",
        &["sre"],
        &[
            "approvals",
            "deny",
            &id2,
            "--reason",
            "not during the freeze",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let out = waiting.await.unwrap().unwrap();
    assert!(
        out.stderr.contains(&format!("Error from server (Forbidden): gatehouse: approval {id2} was denied by rita: not during the freeze")),
        "{out}"
    );

    // Every step is in the transcript: the pending approvals, the verdicts with reasons.
    let events = e.events().unwrap();
    let actions = requests_under(&events, "/gatehouse/v1/approvals/");
    let by = |p: &str| {
        actions
            .iter()
            .find(|a| a.1 == p)
            .cloned()
            .unwrap_or_default()
    };
    let pending = by(&format!("/gatehouse/v1/approvals/{id}"));
    assert_eq!(pending.0, "agent-ops");
    assert!(pending.2.contains("hold-config-deletes"), "{actions:?}");
    let approved = by(&format!("/gatehouse/v1/approvals/{id}/approve"));
    assert_eq!(approved.0, "rita");
    assert!(approved.2.contains("CHG-1234 cleanup"), "{actions:?}");
    let denied = by(&format!("/gatehouse/v1/approvals/{id2}/deny"));
    assert!(denied.2.contains("not during the freeze"), "{actions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_request_nobody_approves_times_out_with_a_clear_403() {
    let (e, _dir) = start(&HOLD.replace("TIMEOUT", "2s"), ApiServerOptions::default()).await;
    let out = e
        .agent
        .run(&["delete", "configmap", "app-config", "-n", "payments"])
        .await
        .unwrap();
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains("Error from server (Forbidden): gatehouse: approval ")
            && out.stderr.contains("timed out after 2s: no reviewer approved it (approval required: deleting config needs a second pair of eyes)"),
        "{out}"
    );
    assert!(e.api.requests().iter().all(|r| r.method != "DELETE"));
    let (code, out, _) = gatehouse(&e, "rita", &["sre"], &["approvals", "list"]).await;
    assert_eq!((code, out.trim()), (0, "no pending approvals"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_just_in_time_grant_works_then_expires_and_labels_match() {
    let policy = r#"version: 1
default: {action: allow}
approvals: {reviewers: [sre]}
roles:
  - name: payments-writer
    rules:
      - {name: writes-in-payments, match: {namespaces: [payments], resources: [configmaps]}, action: allow}
rules:
  - name: no-listing-by-app
    match: {verbs: [list], resources: [pods], labels: {app: "payments-*"}}
    action: deny
    message: list pods by name, not by app label
  - name: agents-read-only
    match: {groups: [agents], verbs: [create, update, patch, delete]}
    action: deny
    message: AI agents are read-only
"#;
    let (e, _dir) = start(policy, ApiServerOptions::default()).await;
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
    assert!(
        out.stderr.contains("gatehouse: AI agents are read-only"),
        "{out}"
    );

    // Labels: a selector the rule matches is refused; another is not.
    let out = e
        .agent
        .run(&["get", "pods", "-n", "payments", "-l", "app=payments-api"])
        .await
        .unwrap();
    assert!(
        out.stderr.contains("list pods by name, not by app label"),
        "{out}"
    );
    e.agent
        .run(&["get", "pods", "-n", "payments", "-l", "tier=web"])
        .await
        .unwrap()
        .ok()
        .unwrap();

    // Bad grants are refused with one line and exit 2.
    let (code, _, err) = gatehouse(
        &e,
        "rita",
        &["sre"],
        &[
            "grant",
            "--who",
            "agent-ops",
            "--role",
            "root",
            "--for",
            "5m",
            "--reason",
            "x",
        ],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no role \"root\""), "{err}");
    let (code, _, err) = gatehouse(
        &e,
        "agent-ops",
        &["agents"],
        &[
            "grant",
            "--who",
            "agent-ops",
            "--role",
            "payments-writer",
            "--for",
            "5m",
            "--reason",
            "x",
        ],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("agent-ops is not a reviewer"), "{err}");

    let (code, out, err) = gatehouse(
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
            "4s",
            "--reason",
            "INC-42 hotfix",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("granted payments-writer to agent-ops until "),
        "{out}"
    );
    e.agent.run(&label).await.unwrap().ok().unwrap();

    // It expires by itself.
    e.agent
        .until_refused(&label, "AI agents are read-only", Duration::from_secs(20))
        .await
        .unwrap();
    let events = e.events().unwrap();
    let grants = requests_under(&events, "/gatehouse/v1/grants");
    assert!(
        grants
            .iter()
            .any(|g| g.0 == "rita" && g.2.contains("INC-42 hotfix")),
        "{grants:?}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !requests_under(&e.events().unwrap(), "/gatehouse/v1/grants/")
        .iter()
        .any(|g| g.1.ends_with("/expired") && g.0 == "agent-ops")
    {
        assert!(tokio::time::Instant::now() < deadline, "no expiry event");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
