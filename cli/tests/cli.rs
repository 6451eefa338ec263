//! Drives the real `gatehouse` binary over a journal of known events: listing, filters, the
//! transcript, exports, and one-line errors with the documented exit codes.
#![allow(clippy::unwrap_used)]
use gatehouse_journal::{FsyncPolicy, Journal, JournalOptions};
use gatehouse_proto::v1::{self as pb, Event, event::Payload};
use prost::Message;
use std::path::Path;
use std::process::Command;

const MIN: i64 = 60_000_000_000;
const T0: i64 = 1_795_000_000_000_000_000;

#[allow(clippy::too_many_arguments)]
fn request(
    session: &str,
    seq: u64,
    t: i64,
    user: &str,
    cmd_id: &str,
    verb: &str,
    ns: &str,
    command: &str,
) -> Event {
    Event {
        event_id: format!("{session}-{seq}"),
        session_id: session.into(),
        seq,
        time_unix_nano: t,
        identity: Some(pb::Identity {
            username: user.into(),
            ..Default::default()
        }),
        client: Some(pb::Client {
            source_ip: "10.0.0.7".into(),
            ..Default::default()
        }),
        command_id: cmd_id.into(),
        payload: Some(Payload::Request(pb::RequestStarted {
            request: Some(pb::KubeRequest {
                verb: verb.into(),
                namespace: ns.into(),
                non_resource: verb == "discovery",
                ..Default::default()
            }),
            command: command.into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn response(session: &str, seq: u64, t: i64, req_seq: u64, status: u32) -> Event {
    Event {
        event_id: format!("{session}-{seq}"),
        session_id: session.into(),
        seq,
        time_unix_nano: t,
        payload: Some(Payload::Response(pb::ResponseFinished {
            request_event_id: format!("{session}-{req_seq}"),
            status_code: status,
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn write_journal(dir: &Path) {
    let (j, _) = Journal::open(
        dir,
        JournalOptions {
            fsync: FsyncPolicy::Never,
            ..Default::default()
        },
    )
    .unwrap();
    let s1 = "0195aaaa-0000-7000-8000-000000000001";
    let s2 = "0195bbbb-0000-7000-8000-000000000002";
    let events = vec![
        request(
            s1,
            1,
            T0,
            "agent-ops",
            "c1",
            "discovery",
            "",
            "kubectl get --raw /api",
        ),
        request(
            s1,
            2,
            T0 + 1,
            "agent-ops",
            "c1",
            "get",
            "payments",
            "kubectl get configmap app-config -n payments",
        ),
        response(s1, 3, T0 + 2, 2, 200),
        request(
            s2,
            1,
            T0 + MIN,
            "alice",
            "c9",
            "list",
            "default",
            "kubectl get pods -n default",
        ),
        request(
            s1,
            4,
            T0 + 2 * MIN,
            "agent-ops",
            "c2",
            "get",
            "payments",
            "kubectl logs checkout-7b9 -n payments --tail 200",
        ),
        response(s1, 5, T0 + 2 * MIN + 14_000_000_000, 4, 200),
        request(
            s1,
            6,
            T0 + 2 * MIN + 14_000_000_000,
            "agent-ops",
            "c3",
            "delete",
            "payments",
            "kubectl delete pod nope -n payments",
        ),
        response(s1, 7, T0 + 2 * MIN + 14_000_000_000, 6, 404),
    ];
    for e in events {
        j.append(&e.encode_to_vec()).unwrap();
    }
}

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

#[test]
fn show_prints_the_ordered_transcript() {
    let tmp = tempfile::tempdir().unwrap();
    write_journal(tmp.path());
    let j = tmp.path().to_str().unwrap();
    let (code, out, err) = gatehouse(&["show", "0195aaaa", "--journal", j]);
    assert_eq!(code, 0, "{err}");
    let expected = "session 0195aaaa-0000-7000-8000-000000000001  actor agent-ops  duration 2m14s\n\
                    > kubectl get configmap app-config -n payments\n\
                    > kubectl logs checkout-7b9 -n payments --tail 200\n\
                    > kubectl delete pod nope -n payments   # 404\n";
    assert_eq!(out, expected);
}

#[test]
fn sessions_filters_by_who_namespace_and_time() {
    let tmp = tempfile::tempdir().unwrap();
    write_journal(tmp.path());
    let j = tmp.path().to_str().unwrap();
    let (code, out, _) = gatehouse(&["sessions", "--journal", j]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 3, "{out}");
    let (_, out, _) = gatehouse(&["sessions", "--journal", j, "--who", "alice", "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["actor"], "alice");
    assert_eq!(v["namespaces"][0], "default");
    let (_, out, _) = gatehouse(&["sessions", "--journal", j, "-n", "payments", "--json"]);
    assert_eq!(out.lines().count(), 1);
    assert!(out.contains("agent-ops"));
    // alice's session lies entirely before T0 + 90 s ends, agent-ops' continues after.
    let since = chrono::DateTime::from_timestamp_nanos(T0 + 90 * 1_000_000_000).to_rfc3339();
    let (_, out, _) = gatehouse(&["sessions", "--journal", j, "--since", &since, "--json"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    let (_, out, _) = gatehouse(&["sessions", "--journal", j, "--since", "1h", "--json"]);
    assert_eq!(
        out, "",
        "all sessions are from 2026-11-19, over an hour ago"
    );
}

#[test]
fn export_json_and_ndjson() {
    let tmp = tempfile::tempdir().unwrap();
    write_journal(tmp.path());
    let j = tmp.path().to_str().unwrap();
    let (code, out, _) = gatehouse(&["export", "0195aaaa", "--journal", j, "--format", "ndjson"]);
    assert_eq!(code, 0);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 7);
    assert_eq!(
        lines[1]["request"]["command"],
        "kubectl get configmap app-config -n payments"
    );
    assert_eq!(lines[6]["response"]["status_code"], 404);
    let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6, 7]);
    let (code, out, _) = gatehouse(&["export", "0195bbbb", "--journal", j]);
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["actor"], "alice");
    assert_eq!(doc["events"].as_array().unwrap().len(), 1);
}

#[test]
fn bad_input_gets_one_line_and_the_right_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    write_journal(tmp.path());
    let j = tmp.path().to_str().unwrap();
    let (code, _, err) = gatehouse(&["show", "ffff", "--journal", j]);
    assert_eq!((code, err.lines().count()), (2, 1), "{err}");
    assert!(err.contains("gatehouse sessions"), "{err}");
    let (code, _, err) = gatehouse(&["show", "0195", "--journal", j]);
    assert_eq!(code, 2);
    assert!(err.contains("matches 2 sessions"), "{err}");
    let (code, _, err) = gatehouse(&["sessions", "--journal", j, "--since", "last tuesday"]);
    assert_eq!(code, 2);
    assert!(err.contains("RFC 3339"), "{err}");
    let (code, _, err) = gatehouse(&["sessions", "--journal", "/nonexistent/journal"]);
    assert_eq!((code, err.lines().count()), (64, 1), "{err}");
    let (code, _, _) = gatehouse(&["export", "0195aaaa", "--journal", j, "--format", "xml"]);
    assert_eq!(code, 2);
}

#[test]
fn a_corrupt_journal_record_is_reported_not_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let (j, _) = Journal::open(tmp.path(), JournalOptions::default()).unwrap();
    j.append(b"\xff\xff\xff not protobuf").unwrap();
    drop(j);
    let (code, _, err) = gatehouse(&["sessions", "--journal", tmp.path().to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("offset 0"), "{err}");
}
