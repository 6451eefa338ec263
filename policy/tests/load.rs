#![allow(clippy::unwrap_used)]
//! Bad policy files are refused with the line and column of the problem.
use gatehouse_policy::{LoadError, load_file, parse};

fn located(text: &str) -> (usize, usize, String) {
    match parse(text, "policy.yaml") {
        Err(LoadError::Invalid {
            line,
            column,
            message,
            ..
        }) => (line, column, message),
        other => panic!("expected a located error, got {other:?}"),
    }
}

#[test]
fn errors_carry_line_and_column() {
    // Unknown key (typo) inside a rule.
    let (l, c, m) = located(
        "version: 1\ndefault: {action: allow}\nrules:\n  - name: a\n    action: deny\n    mesage: hi\n",
    );
    assert_eq!(l, 6, "{m}");
    assert_eq!(c, 5, "{m}");
    assert!(m.contains("unknown field `mesage`"), "{m}");
    // A bad regex is found where it is written.
    let (l, _, m) = located(
        "version: 1\ndefault: {action: allow}\nrules:\n  - name: a\n    match:\n      names: [\"/(/\"]\n    action: deny\n",
    );
    assert_eq!(l, 6, "{m}");
    assert!(m.contains("invalid regex /(/"), "{m}");
    // An unknown verb and an unknown action.
    let (l, _, m) = located(
        "version: 1\ndefault: {action: allow}\nrules:\n  - name: a\n    match: {verbs: [delte]}\n    action: deny\n",
    );
    assert_eq!(l, 5, "{m}");
    assert!(m.contains("unknown variant `delte`"), "{m}");
    let (l, _, m) = located("version: 1\ndefault: {action: permit}\n");
    assert_eq!(l, 2, "{m}");
    assert!(m.contains("unknown variant `permit`"), "{m}");
    // Bad time of day, and a missing default.
    let (l, _, m) = located(
        "version: 1\ndefault: {action: allow}\nrules:\n  - name: a\n    match:\n      time:\n        - {start: '25:00'}\n    action: deny\n",
    );
    assert_eq!(l, 7, "{m}");
    assert!(m.contains("invalid time of day"), "{m}");
    let (_, _, m) = located("version: 1\nrules: []\n");
    assert!(m.contains("missing field `default`"), "{m}");
    let (l, _, m) = located("version: 2\ndefault: {action: allow}\n");
    assert_eq!(l, 1, "{m}");
    assert!(m.contains("unsupported policy version 2"), "{m}");
    // Broken YAML syntax.
    let (l, _, _) = located("version: 1\ndefault: {action: allow\n");
    assert!(l >= 2);
    // The rendered error is one line: file:line:column: message.
    let e = parse("version: 1\ndefault: {action: permit}\n", "p.yaml").unwrap_err();
    let s = e.to_string();
    assert!(s.starts_with("p.yaml:2:"), "{s}");
    assert!(!s.contains('\n'), "{s}");
}

#[test]
fn missing_file_is_a_read_error() {
    let e = load_file(std::path::Path::new("/nonexistent/policy.yaml")).unwrap_err();
    assert!(matches!(e, LoadError::Read { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "cannot read policy file /nonexistent/policy.yaml"
    );
}
