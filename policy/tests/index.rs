#![allow(clippy::unwrap_used)]
//! The indexed `evaluate` decides exactly as the linear walk of `explain` does, on random rule
//! sets (exact values, globs, regexes, wildcards, stdin rules, roles) and random requests.
use chrono::{TimeZone, Utc};
use gatehouse_policy::{Exec, Request, parse};
use proptest::prelude::*;

/// Values small enough that rules and requests often meet.
const USERS: &[&str] = &["alice", "bob", "carol"];
const GROUPS: &[&str] = &["devs", "ops", "system:authenticated"];
const VERBS: &[&str] = &["get", "list", "delete", "patch", "create"];
const RESOURCES: &[&str] = &["pods", "secrets", "namespaces", ""];
const NAMESPACES: &[&str] = &["payments", "staging", ""];
const NAMES: &[&str] = &["payments", "api-1", "db-0", ""];

/// A pattern list for one field: absent, exact values, or a glob/regex among them.
fn patterns(values: &'static [&'static str]) -> impl Strategy<Value = Option<Vec<String>>> {
    let one = prop_oneof![
        4 => prop::sample::select(values).prop_map(|v| format!("{v:?}")),
        1 => prop::sample::select(values)
            .prop_map(|v| format!("\"{}*\"", v.chars().take(2).collect::<String>())),
        1 => prop::sample::select(values)
            .prop_map(|v| format!("\"/{}.*/\"", v.chars().take(1).collect::<String>())),
        1 => Just("\"*\"".to_string()),
        // Regexes with and without a literal prefix the index may use.
        1 => prop::sample::select(&[
            "/pay(ments)?/", "/ap+i-.*/", "/a?pi-1/", "/db-[0-9]/", "/x|payments/",
            "/paymentsx?/", "/al(ice)?/", "/s.*/", "/[a-z]+/", "/abc)?(?:/",
        ][..])
        .prop_map(|v| format!("{v:?}")),
    ];
    prop::option::of(prop::collection::vec(one, 1..3))
}

fn verbs() -> impl Strategy<Value = Option<Vec<String>>> {
    let one = prop_oneof![
        6 => prop::sample::select(VERBS).prop_map(str::to_string),
        1 => Just("\"*\"".to_string()),
    ];
    prop::option::of(prop::collection::vec(one, 1..3))
}

fn rule() -> impl Strategy<Value = String> {
    (
        (
            patterns(USERS),
            patterns(GROUPS),
            verbs(),
            patterns(RESOURCES),
        ),
        (
            patterns(NAMESPACES),
            patterns(NAMES),
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.1),
            prop::sample::select(&["allow", "deny", "mask", "require_approval"][..]),
        ),
    )
        .prop_map(
            |((users, groups, verbs, resources), (namespaces, names, stdin, exec, action))| {
                let mut m = Vec::new();
                for (key, v) in [
                    ("users", users),
                    ("groups", groups),
                    ("verbs", verbs),
                    ("resources", resources),
                    ("namespaces", namespaces),
                    ("names", names),
                ] {
                    if let Some(v) = v {
                        m.push(format!("{key}: [{}]", v.join(", ")));
                    }
                }
                if stdin {
                    m.push("stdin: [\"rm *\"]".into());
                }
                if exec {
                    m.push("exec: {containers: [app]}".into());
                }
                format!("{{match: {{{}}}, action: {action}", m.join(", "))
            },
        )
}

fn request() -> impl Strategy<Value = Request> {
    (
        prop::sample::select(USERS),
        prop::sample::subsequence(GROUPS, 0..=GROUPS.len()),
        prop::sample::select(VERBS),
        prop::sample::select(RESOURCES),
        prop::sample::select(NAMESPACES),
        prop::sample::select(NAMES),
        prop::bool::ANY,
        prop::sample::subsequence(&["ops-role", "other"][..], 0..=2),
    )
        .prop_map(
            |(user, groups, verb, resource, ns, name, exec, roles)| Request {
                user: user.into(),
                groups: groups.into_iter().map(str::to_string).collect(),
                source: "10.0.0.1".into(),
                verb: verb.into(),
                resource: resource.into(),
                namespace: ns.into(),
                name: name.into(),
                exec: exec.then(|| Exec {
                    container: "app".into(),
                    argv: vec!["sh".into()],
                }),
                roles: roles.into_iter().map(str::to_string).collect(),
                time: Utc.with_ymd_and_hms(2026, 11, 18, 12, 0, 0).unwrap(),
                ..Default::default()
            },
        )
}

fn policy_yaml(rules: &[String], role_rules: &[String]) -> String {
    let mut y = String::from("version: 1\ndefault: {action: deny}\nrules:\n");
    for (i, r) in rules.iter().enumerate() {
        y.push_str(&format!("  - {r}, name: r{i}}}\n"));
    }
    y.push_str("roles:\n  - name: ops-role\n    rules:\n");
    for (i, r) in role_rules.iter().enumerate() {
        y.push_str(&format!("      - {r}, name: g{i}}}\n"));
    }
    if role_rules.is_empty() {
        y = y.replace("    rules:\n", "    rules: []\n");
    }
    y
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn indexed_evaluation_equals_the_linear_walk(
        // Over 64 rules at times, so more than one bitset word is used.
        rules in prop::collection::vec(rule(), 0..150),
        role_rules in prop::collection::vec(rule(), 0..5),
        requests in prop::collection::vec(request(), 1..20),
    ) {
        let yaml = policy_yaml(&rules, &role_rules);
        let p = parse(&yaml, "prop").unwrap();
        for r in &requests {
            prop_assert_eq!(p.evaluate(r), p.explain(r, |_| {}), "request {:?}", r);
        }
    }
}

/// The index narrows, never widens: a request some later rule matches still gets the earlier
/// wildcard rule, and a rule that lists several exact values matches each.
#[test]
fn first_match_order_survives_the_index() {
    let p = parse(
        "version: 1\ndefault: {action: allow}\nrules:\n\
         - {name: exact-late-hit, match: {users: [bob], verbs: [get]}, action: deny}\n\
         - {name: wild-first, match: {users: [\"b*\"]}, action: mask}\n\
         - {name: exact-two, match: {users: [alice, bob], verbs: [delete, patch]}, action: deny}\n",
        "t",
    )
    .unwrap();
    let req = |user: &str, verb: &str| Request {
        user: user.into(),
        verb: verb.into(),
        ..Default::default()
    };
    let name = |r: Request| p.evaluate(&r).rule.map(|(_, n)| n);
    assert_eq!(name(req("bob", "get")).as_deref(), Some("exact-late-hit"));
    assert_eq!(name(req("bob", "delete")).as_deref(), Some("wild-first"));
    assert_eq!(name(req("alice", "patch")).as_deref(), Some("exact-two"));
    assert_eq!(name(req("alice", "get")), None);
}
