#![allow(clippy::unwrap_used)]
//! First-match evaluation of the example policy and of small policies.
use chrono::{TimeZone, Utc};
use gatehouse_policy::{Action, Exec, Policy, Request, parse};

fn example() -> Policy {
    parse(include_str!("../example.yaml"), "example.yaml").unwrap()
}

/// A weekday at noon (2026-11-18 is a Wednesday).
fn req(user: &str, verb: &str, resource: &str, ns: &str, name: &str) -> Request {
    Request {
        user: user.into(),
        groups: vec!["system:authenticated".into()],
        source: "192.168.1.10".into(),
        verb: verb.into(),
        resource: resource.into(),
        namespace: ns.into(),
        name: name.into(),
        time: Utc.with_ymd_and_hms(2026, 11, 18, 12, 0, 0).unwrap(),
        ..Default::default()
    }
}

fn rule_of(p: &Policy, r: &Request) -> Option<String> {
    p.evaluate(r).rule.map(|(_, n)| n)
}

#[test]
fn deny_deleting_a_protected_namespace_with_its_message() {
    let p = example();
    let d = p.evaluate(&req(
        "alice",
        "delete",
        "namespaces",
        "payments",
        "payments",
    ));
    assert_eq!(d.action, Action::Deny);
    assert!(!d.allowed());
    assert_eq!(d.rule, Some((0, "protect-payments-namespace".into())));
    assert_eq!(
        d.message,
        "namespace payments is protected: open a change request"
    );
    // Globbed names, and other verbs or names fall through to the default.
    let r = req("alice", "delete", "namespaces", "prod-eu", "prod-eu");
    assert_eq!(
        rule_of(&p, &r).as_deref(),
        Some("protect-payments-namespace")
    );
    let d = p.evaluate(&req("alice", "get", "namespaces", "payments", "payments"));
    assert_eq!((d.action, d.rule), (Action::Allow, None));
    let d = p.evaluate(&req("alice", "delete", "namespaces", "staging", "staging"));
    assert_eq!((d.action, d.rule), (Action::Allow, None));
}

#[test]
fn exec_argv_regex_and_containers() {
    let p = example();
    let mut r = req("alice", "create", "pods", "payments", "checkout-1");
    r.subresource = "exec".into();
    r.exec = Some(Exec {
        container: "app".into(),
        argv: vec!["rm".into(), "-rf".into(), "/".into()],
    });
    assert_eq!(rule_of(&p, &r).as_deref(), Some("no-recursive-rm-in-exec"));
    r.exec = Some(Exec {
        container: "app".into(),
        argv: vec!["rm".into(), "-v".into(), "-R".into(), "/data".into()],
    });
    assert_eq!(rule_of(&p, &r).as_deref(), Some("no-recursive-rm-in-exec"));
    r.exec = Some(Exec {
        container: "app".into(),
        argv: vec!["rm".into(), "/tmp/x".into()],
    });
    assert_eq!(rule_of(&p, &r), None);
    // A rule with `exec` never matches a request that is not an exec.
    let small = parse(
        "version: 1\ndefault: {action: allow}\nrules:\n- name: sh\n  match: {exec: {containers: [debug*]}}\n  action: deny\n",
        "t",
    )
    .unwrap();
    r.exec = None;
    assert_eq!(rule_of(&small, &r), None);
    r.exec = Some(Exec {
        container: "debugger".into(),
        argv: vec!["sh".into()],
    });
    assert_eq!(rule_of(&small, &r).as_deref(), Some("sh"));
}

#[test]
fn groups_first_match_and_mask() {
    let p = example();
    let mut r = req("agent-ops", "patch", "deployments", "payments", "checkout");
    r.api_group = "apps".into();
    r.groups.push("ai-agents".into());
    assert_eq!(rule_of(&p, &r).as_deref(), Some("agents-read-only"));
    // The same agent reading is allowed by default.
    r.verb = "get".into();
    assert_eq!(p.evaluate(&r).action, Action::Allow);
    // Deleting the namespace hits the earlier rule first, whoever asks.
    let mut r = req("agent-ops", "delete", "namespaces", "payments", "payments");
    r.groups.push("agents".into());
    assert_eq!(
        rule_of(&p, &r).as_deref(),
        Some("protect-payments-namespace")
    );
    // Secrets: masked (allowed) in office hours, held on Saturday and at night.
    let r = req("alice", "get", "secrets", "payments", "db-credentials");
    let d = p.evaluate(&r);
    assert_eq!((d.action, d.allowed()), (Action::Mask, true));
    let mut sat = r.clone();
    sat.time = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap();
    let d = p.evaluate(&sat);
    assert_eq!(d.action, Action::RequireApproval);
    assert!(!d.allowed());
    assert_eq!(
        d.message,
        "approval required: reading payments secrets outside office hours"
    );
    let mut night = r.clone();
    night.time = Utc.with_ymd_and_hms(2026, 11, 18, 6, 59, 0).unwrap();
    assert_eq!(p.evaluate(&night).action, Action::RequireApproval);
    let mut other_ns = sat.clone();
    other_ns.namespace = "default".into();
    assert_eq!(
        rule_of(&p, &other_ns).as_deref(),
        Some("mask-secrets"),
        "the off-hours rule is limited to payments"
    );
}

#[test]
fn sources_users_and_record_payload() {
    let p = example();
    let mut r = req(
        "system:serviceaccount:ci:deployer",
        "update",
        "configmaps",
        "payments",
        "app-config",
    );
    r.source = "10.1.2.3".into();
    let d = p.evaluate(&r);
    assert_eq!(
        d.rule.map(|(_, n)| n).as_deref(),
        Some("quiet-configmap-writes-from-ci")
    );
    assert!(!d.record_payload);
    assert_eq!(d.action, Action::Allow);
    r.source = "192.168.0.1".into();
    let d = p.evaluate(&r);
    assert_eq!((d.rule, d.record_payload), (None, true));
}

#[test]
fn explicit_default_deny_and_explanations() {
    let p = parse(
        "version: 1\ndefault: {action: deny, message: not on the list}\nrules:\n\
         - name: reads\n  match: {verbs: [get, list, watch]}\n  action: allow\n\
         - name: alice-configmaps\n  match: {users: [alice], resources: [configmaps]}\n  action: allow\n",
        "t",
    )
    .unwrap();
    let d = p.evaluate(&req("bob", "delete", "pods", "p", "x"));
    assert_eq!(
        (d.action, d.rule, d.message.as_str()),
        (Action::Deny, None, "not on the list")
    );
    let mut skipped = Vec::new();
    let d = p.explain(&req("alice", "update", "configmaps", "p", "c"), |s| {
        skipped.push((s.index, s.name.to_string(), s.failed));
    });
    assert_eq!(d.rule, Some((1, "alice-configmaps".into())));
    assert_eq!(skipped, vec![(0, "reads".to_string(), "verbs")]);
    assert_eq!(
        p.rules[1].matches.describe(),
        vec!["users: alice", "resources: configmaps"]
    );
    // A deny rule without a message names itself.
    let p = parse(
        "version: 1\ndefault: {action: allow}\nrules:\n- name: nope\n  action: deny\n",
        "t",
    )
    .unwrap();
    let d = p.evaluate(&req("a", "get", "pods", "", ""));
    assert_eq!(d.message, "denied by gatehouse policy rule \"nope\"");
}
