//! The policy parser (`policy/src/load.rs`, `pattern.rs`, `window.rs`): any text loads or is
//! refused with an error, never a panic; a loaded policy evaluates any request, and `evaluate`
//! agrees with `explain`. Input: policy YAML, a NUL, then request fields one per line.
#![no_main]

use chrono::{TimeZone, Utc};
use gatehouse_policy::{Exec, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (text, fields) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b""[..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Ok(policy) = gatehouse_policy::parse(text, "fuzz") else {
        return;
    };
    for rule in &policy.rules {
        let _ = rule.matches.describe();
    }
    let fields = String::from_utf8_lossy(fields);
    let mut f = fields.split('\n').map(str::to_string);
    let mut next = || f.next().unwrap_or_default();
    // Field by field, so fields added to `Request` later keep their defaults here.
    let mut request = Request::default();
    request.user = next();
    request.groups = next().split(',').map(str::to_string).collect();
    request.source = next();
    request.verb = next();
    request.api_group = next();
    request.resource = next();
    request.subresource = next();
    request.namespace = next();
    request.name = next();
    request.labels = next()
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    request.roles = next().split(',').map(str::to_string).collect();
    let container = next();
    let argv: Vec<String> = next().split(' ').map(str::to_string).collect();
    let line = next();
    let secs = next()
        .bytes()
        .fold(0i64, |a, b| a.wrapping_mul(31).wrapping_add(i64::from(b)));
    request.time = Utc
        .timestamp_opt(secs.rem_euclid(4_102_444_800), 0)
        .single()
        .unwrap_or_default();
    request.exec = (!container.is_empty()).then_some(Exec {
        container,
        argv,
        ..Exec::default()
    });

    let decision = policy.evaluate(&request);
    let explained = policy.explain(&request, |_| {});
    assert_eq!(decision, explained, "evaluate and explain disagree");
    for rule in &policy.rules {
        let _ = rule.matches.first_miss(&request);
    }
    if policy.watches_stdin(&request) {
        let _ = policy.check_line(&request, &line);
    }
});
