//! `gatehouse policy test` with the real binary: which rule decides and why, and one-line
//! errors with exit code 2 (bad request) or 64 (bad policy file).
#![allow(clippy::unwrap_used)]
use std::process::Command;

const POLICY: &str = r#"version: 1
default: {action: allow}
rules:
  - name: protect-payments
    match: {verbs: [delete], resources: [namespaces], names: [payments]}
    action: deny
    message: "namespace payments is protected: open a change request"
  - name: agents-read-only
    match: {groups: ["ai-*"], verbs: [create, update, patch, delete]}
    action: deny
    message: AI agents are read-only
  - name: no-rm-rf
    match: {exec: {argv: ["/rm -[a-z]*r[a-z]* .*/"]}}
    action: require_approval
    message: recursive rm
"#;

fn gatehouse(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn policy_file(dir: &tempfile::TempDir, text: &str) -> String {
    let p = dir.path().join("policy.yaml");
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn explains_the_deciding_rule() {
    let dir = tempfile::tempdir().unwrap();
    let file = policy_file(&dir, POLICY);
    let (code, out, err) = gatehouse(&[
        "policy",
        "test",
        &file,
        "--as",
        "alice",
        "--at",
        "2026-11-18T12:00:00Z",
        "--request",
        "kubectl delete ns payments",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "request: delete namespaces/payments in namespace payments as alice (groups: none) from 127.0.0.1 at 2026-11-18T12:00:00Z\n\
         matched rule #1 \"protect-payments\": verbs: delete; resources: namespaces; names: payments\n\
         decision: deny (the caller sees: \"namespace payments is protected: open a change request\")\n"
    );

    let (code, out, _) = gatehouse(&[
        "policy",
        "test",
        &file,
        "--as=agent-ops",
        "--group=system:authenticated",
        "--group=ai-agents",
        "--request=kubectl scale deploy checkout -n payments --replicas 0",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("skipped rule #1 \"protect-payments\": verbs did not match\n"),
        "{out}"
    );
    assert!(
        out.contains("matched rule #2 \"agents-read-only\""),
        "{out}"
    );
    assert!(
        out.contains("decision: deny (the caller sees: \"AI agents are read-only\")"),
        "{out}"
    );

    let (_, out, _) = gatehouse(&[
        "policy",
        "test",
        &file,
        "--as",
        "bob",
        "--request",
        "kubectl exec -it checkout-1 -n payments -- rm -rf /data",
    ]);
    assert!(
        out.contains("exec: container \"\", argv \"rm -rf /data\""),
        "{out}"
    );
    assert!(
        out.contains("skipped rule #2 \"agents-read-only\": groups did not match"),
        "{out}"
    );
    assert!(
        out.contains(
            "decision: require_approval (the caller sees: \"approval required: recursive rm\")"
        ),
        "{out}"
    );

    let (code, out, _) = gatehouse(&[
        "policy",
        "test",
        &file,
        "--as",
        "bob",
        "--request",
        "kubectl get pods -n payments",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("no rule matched: the default decides\ndecision: allow\n"),
        "{out}"
    );
}

#[test]
fn bad_requests_exit_2_and_bad_policy_files_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let file = policy_file(&dir, POLICY);
    let (code, out, err) = gatehouse(&[
        "policy",
        "test",
        &file,
        "--as",
        "bob",
        "--request",
        "kubectl get gizmos",
    ]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("gatehouse: invalid --request: unknown resource \"gizmos\""),
        "{err}"
    );

    let bad = policy_file(
        &dir,
        &POLICY.replace(
            "action: deny\n    message: AI",
            "action: dney\n    message: AI",
        ),
    );
    let (code, out, err) = gatehouse(&[
        "policy",
        "test",
        &bad,
        "--as",
        "bob",
        "--request",
        "kubectl get pods",
    ]);
    assert_eq!(code, 64);
    assert!(out.is_empty());
    assert_eq!(
        err,
        format!(
            "gatehouse: {bad}:10:13: rules[1].action: unknown variant `dney`, expected one of `allow`, `deny`, `require_approval`, `mask`\n"
        )
    );

    let (code, _, err) = gatehouse(&[
        "policy",
        "test",
        "/nonexistent/policy.yaml",
        "--as",
        "bob",
        "--request",
        "kubectl get pods",
    ]);
    assert_eq!(code, 64);
    assert!(
        err.starts_with("gatehouse: cannot read policy file /nonexistent/policy.yaml: "),
        "{err}"
    );
}
