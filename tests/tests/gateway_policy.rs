#![allow(clippy::unwrap_used)]
//! Policy at the gateway, with real kubectl v1.35 through the real `gateway` binary: a denied
//! request is answered 403 with the rule's message, recorded, and never reaches the API server;
//! the policy file is hot-reloaded and a bad version keeps the old policy.
use gatehouse_proto::v1::{Event, event::Payload};
use gatehouse_tests::apiserver::ApiServerOptions;
use gatehouse_tests::fixture::GatewayEnv;
use gatehouse_tests::on_disk;
use std::path::PathBuf;
use std::time::Duration;
use tempfile::TempDir;

const POLICY: &str = r#"version: 1
default:
  action: allow
rules:
  - name: protect-payments
    match:
      verbs: [delete]
      resources: [namespaces]
      names: [payments]
    action: deny
    message: "namespace payments is protected: open a change request"
"#;

struct Env {
    base: GatewayEnv,
    policy: PathBuf,
    _policy_dir: TempDir,
}

impl std::ops::Deref for Env {
    type Target = GatewayEnv;
    fn deref(&self) -> &GatewayEnv {
        &self.base
    }
}

/// Gateway flags for a policy file `policy` written into a fresh temp dir.
fn with_policy(policy: &str) -> (TempDir, PathBuf, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, policy).unwrap();
    let args = vec![
        "--journal-fsync=always".to_string(),
        format!("--policy-file={}", path.display()),
    ];
    (dir, path, args)
}

async fn env(policy: &str) -> Env {
    let (dir, path, args) = with_policy(policy);
    let base = GatewayEnv::start(ApiServerOptions::default(), &args)
        .await
        .unwrap();
    Env {
        base,
        policy: path,
        _policy_dir: dir,
    }
}

impl Env {
    fn events(&self) -> Vec<Event> {
        self.base.events().unwrap()
    }

    /// Requests the API server received for `method` `path`.
    fn upstream_hits(&self, method: &str, path: &str) -> usize {
        self.api
            .requests()
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .count()
    }

    /// Log lines (JSON) whose message is `message`.
    fn logged(&self, message: &str) -> Vec<serde_json::Value> {
        self.gw
            .log
            .lock()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["fields"]["message"] == message)
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_delete_never_reaches_the_api_server_and_reads_pass() {
    let e = env(POLICY).await;

    let out = e.agent.run(&["delete", "ns", "payments"]).await.unwrap();
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains(
            "Error from server (Forbidden): gatehouse: namespace payments is protected: open a change request"
        ),
        "{out}"
    );
    assert_eq!(e.upstream_hits("DELETE", "/api/v1/namespaces/payments"), 0);
    // The namespace is still there.
    e.direct
        .run(&["get", "ns", "payments", "-o", "name"])
        .await
        .unwrap()
        .ok()
        .unwrap();

    // The attempt is in the transcript as a refusal, with who and what.
    let denied: Vec<_> = e
        .events()
        .into_iter()
        .filter_map(|ev| match ev.payload {
            Some(Payload::Denied(d)) => Some((ev.identity, d)),
            _ => None,
        })
        .collect();
    assert_eq!(denied.len(), 1, "{denied:?}");
    let (who, d) = &denied[0];
    assert_eq!(who.as_ref().map(|i| i.username.as_str()), Some("agent-ops"));
    assert_eq!((d.status_code, d.reason.as_str()), (403, "Forbidden"));
    assert!(
        d.message.contains("namespace payments is protected"),
        "{d:?}"
    );
    let req = d.request.clone().unwrap_or_default();
    assert_eq!(
        (req.verb.as_str(), req.resource.as_str(), req.name.as_str()),
        ("delete", "namespaces", "payments")
    );

    // Reads the policy does not match are forwarded and answered as usual.
    let out = e
        .agent
        .run(&[
            "get",
            "configmap",
            "app-config",
            "-n",
            "payments",
            "-o",
            "name",
        ])
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(out.stdout.trim(), "configmap/app-config");
    assert_eq!(
        e.upstream_hits("GET", "/api/v1/namespaces/payments/configmaps/app-config"),
        1
    );
    // Deleting something else is not covered by the rule and goes through.
    e.agent
        .run(&["delete", "configmap", "app-config", "-n", "payments"])
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(
        e.upstream_hits(
            "DELETE",
            "/api/v1/namespaces/payments/configmaps/app-config"
        ),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_file_is_hot_reloaded_and_a_bad_one_keeps_the_old_policy() {
    let e = env(POLICY).await;
    let get_cm = [
        "get",
        "configmap",
        "app-config",
        "-n",
        "payments",
        "-o",
        "name",
    ];
    e.agent.run(&get_cm).await.unwrap().ok().unwrap();

    // A broken version: one precise error in the log, and the old policy stays in force.
    let bad = POLICY.replace("action: deny", "action: dney");
    std::fs::write(&e.policy, bad).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let rejected = loop {
        let r = e.logged("policy file rejected; the previous policy stays in force");
        if !r.is_empty() {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rejection logged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let error = rejected[0]["fields"]["error"].as_str().unwrap().to_string();
    assert!(
        error.starts_with(&format!(
            "{}:10:13: rules[0].action: unknown variant `dney`",
            e.policy.display()
        )),
        "{error}"
    );
    let out = e.agent.run(&["delete", "ns", "payments"]).await.unwrap();
    assert!(
        out.stderr.contains("namespace payments is protected"),
        "{out}"
    );
    e.agent.run(&get_cm).await.unwrap().ok().unwrap();
    // Several polls later it has still been reported once.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        e.logged("policy file rejected; the previous policy stays in force")
            .len(),
        1
    );

    // A good version applies without a restart.
    std::fs::write(
        &e.policy,
        "version: 1\ndefault: {action: deny, message: the gateway is read-only today}\nrules:\n  - {name: reads, match: {verbs: [get, list, watch]}, action: allow}\n",
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while e.logged("policy reloaded").is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never reloaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    e.agent.run(&get_cm).await.unwrap().ok().unwrap();
    let out = e
        .agent
        .run(&["delete", "configmap", "app-config", "-n", "payments"])
        .await
        .unwrap();
    assert!(
        out.stderr
            .contains("Error from server (Forbidden): gatehouse: the gateway is read-only today"),
        "{out}"
    );
    assert_eq!(
        e.upstream_hits(
            "DELETE",
            "/api/v1/namespaces/payments/configmaps/app-config"
        ),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_policy_file_stops_the_gateway_at_start_with_line_and_column() {
    let (_dir, policy, args) = with_policy(&POLICY.replace("verbs:", "verb:"));
    let err = GatewayEnv::start(ApiServerOptions::default(), &args)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(&format!(
            "invalid policy file: {}:7:7: rules[0].match: unknown field `verb`",
            policy.display()
        )),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_values_reach_the_caller_but_never_the_journal() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let e = env(POLICY).await;

    // The caller sees the real value (no DLP by default).
    let out = e
        .agent
        .run(&[
            "get",
            "secret",
            "db-credentials",
            "-n",
            "payments",
            "-o",
            "yaml",
        ])
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(
        out.stdout.contains(&b64("s3cr3t-p4ss")),
        "kubectl must see the real value: {out}"
    );
    // A list and a create carry Secret values too.
    let out = e
        .agent
        .run(&["get", "secrets", "-n", "payments", "-o", "json"])
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(out.stdout.contains(&b64("s3cr3t-p4ss")), "{out}");
    e.agent
        .run(&[
            "create",
            "secret",
            "generic",
            "api-key",
            "-n",
            "payments",
            "--from-literal=key=AKIAIOSFODNN7EXAMPLE",
        ])
        .await
        .unwrap()
        .ok()
        .unwrap();
    let created = e
        .direct
        .run(&[
            "get",
            "secret",
            "api-key",
            "-n",
            "payments",
            "-o",
            "jsonpath={.data.key}",
        ])
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(
        created.stdout,
        b64("AKIAIOSFODNN7EXAMPLE"),
        "the API server got the real value"
    );

    // The journal holds none of them, in any form, and says how many it masked.
    let disk = on_disk::journal_bytes(&e.gw.journal_dir).unwrap();
    for secret in ["s3cr3t-p4ss", "AKIAIOSFODNN7EXAMPLE"] {
        assert!(
            !on_disk::contains(&disk, secret),
            "{secret} is in the journal"
        );
        assert!(
            !on_disk::contains(&disk, &b64(secret)),
            "{secret} (base64) is in the journal"
        );
    }
    let events = e.events();
    let masked_responses: Vec<(String, u32)> = events
        .iter()
        .filter_map(|ev| match &ev.payload {
            Some(Payload::Response(r)) => r
                .body
                .as_ref()
                .map(|b| (b.content_type.clone(), b.masked_values)),
            _ => None,
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    assert!(
        masked_responses.len() >= 2,
        "the get and the list were masked: {masked_responses:?}"
    );
    let create = events
        .iter()
        .find_map(|ev| match &ev.payload {
            Some(Payload::Request(r))
                if r.request
                    .as_ref()
                    .is_some_and(|k| k.verb == "create" && k.resource == "secrets") =>
            {
                r.body.clone()
            }
            _ => None,
        })
        .unwrap();
    // kubectl 1.35 sends built-in objects as protobuf, which the masker does not read: such a
    // Secret body is not stored at all (and marked truncated) rather than stored unmasked.
    assert_eq!(create.content_type, "application/vnd.kubernetes.protobuf");
    assert!(create.data.is_empty() && create.truncated, "{create:?}");
    assert!(create.total_bytes > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_payload_false_keeps_bodies_out_of_the_transcript() {
    let policy = format!(
        "{POLICY}  - name: quiet-configmaps\n    match: {{resources: [configmaps]}}\n    action: allow\n    record_payload: false\n"
    );
    let e = env(&policy).await;
    let out = e
        .agent
        .run(&[
            "get",
            "configmap",
            "app-config",
            "-n",
            "payments",
            "-o",
            "json",
        ])
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(out.stdout.contains("\"name\": \"app-config\""), "{out}");
    e.agent
        .run(&["get", "ns", "payments", "-o", "name"])
        .await
        .unwrap()
        .ok()
        .unwrap();
    // (path, captured bytes, total bytes, truncated) of each response.
    let responses: Vec<(String, usize, u64, bool)> = {
        let events = e.events();
        let paths: std::collections::HashMap<String, String> = events
            .iter()
            .filter_map(|ev| match &ev.payload {
                Some(Payload::Request(r)) => Some((
                    ev.event_id.clone(),
                    r.request
                        .as_ref()
                        .map(|k| k.path.clone())
                        .unwrap_or_default(),
                )),
                _ => None,
            })
            .collect();
        events
            .iter()
            .filter_map(|ev| match &ev.payload {
                Some(Payload::Response(r)) => {
                    let b = r.body.clone().unwrap_or_default();
                    Some((
                        paths.get(&r.request_event_id).cloned().unwrap_or_default(),
                        b.data.len(),
                        b.total_bytes,
                        b.truncated,
                    ))
                }
                _ => None,
            })
            .collect()
    };
    let cm = responses
        .iter()
        .find(|r| r.0 == "/api/v1/namespaces/payments/configmaps/app-config")
        .unwrap();
    assert_eq!(cm.1, 0, "{responses:?}");
    assert!(cm.2 > 0 && cm.3, "{responses:?}");
    let ns = responses
        .iter()
        .find(|r| r.0 == "/api/v1/namespaces/payments")
        .unwrap();
    assert!(ns.1 > 0 && ns.1 as u64 == ns.2 && !ns.3, "{responses:?}");
}
