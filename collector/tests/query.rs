//! The read side against the real ClickHouse engine: reader groups gate listing and transcripts
//! (OIDC, as for live access), and every call, allowed or not, lands in `access_audit`.
#![allow(clippy::unwrap_used)]
mod support;

use gatehouse_proto::v1::query_client::QueryClient;
use gatehouse_proto::v1::{GetSessionRequest, ListSessionsRequest};
use gatehouse_tests::collector_proc::CollectorPki;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_reader_groups_read_and_every_read_is_audited() {
    let tmp = tempfile::tempdir().unwrap();
    let ch = clickhouse(tmp.path()).await;
    let pki = CollectorPki::write(tmp.path()).unwrap();
    let (col, issuer) = reader_gated_collector(tmp.path(), &ch, &pki).await;

    let events = session_events("alice", 2, 10);
    let j = journal(&tmp.path().join("journal"), &events);
    ship_all(&j, &col, &pki).await;

    let mut q = QueryClient::new(channel(&col.addr, &pki, None).await.unwrap());
    let mallory = issuer.token("mallory", &["dev"], "gatehouse").unwrap();
    assert_reader_gate(
        |token| {
            let mut q = q.clone();
            async move {
                let req = maybe_authed(ListSessionsRequest::default(), token.as_deref());
                q.list_sessions(req).await
            }
        },
        &mallory,
    )
    .await;
    let sid = events[0].session_id.clone();
    let err = q
        .get_session(authed(
            GetSessionRequest {
                session_id: sid.clone(),
                from_seq: 0,
            },
            &mallory,
        ))
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");

    // An auditor lists (filtered by user and free text) and reads an ordered transcript.
    let auditor = issuer.token("ada", &["auditors"], "gatehouse").unwrap();
    let list = q
        .list_sessions(authed(
            ListSessionsRequest {
                username: "alice".into(),
                text: "CONFIGMAP CM-3".into(),
                namespace: "team-a".into(),
                ..Default::default()
            },
            &auditor,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.sessions.len(), 2);
    assert!(
        list.sessions
            .iter()
            .all(|s| s.requests == 10 && s.errors == 2 && s.actor == "alice")
    );
    let none = q
        .list_sessions(authed(
            ListSessionsRequest {
                username: "bob".into(),
                ..Default::default()
            },
            &auditor,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(none.sessions.is_empty());
    let mut stream = q
        .get_session(authed(
            GetSessionRequest {
                session_id: sid[..30].to_string(),
                from_seq: 0,
            },
            &auditor,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(e) = stream.message().await.unwrap() {
        got.push(e);
    }
    let want: Vec<_> = events
        .iter()
        .filter(|e| e.session_id == sid)
        .cloned()
        .collect();
    assert_eq!(
        got, want,
        "the transcript comes back whole and in seq order"
    );

    let audit = ch
        .query_text("SELECT reader, method, allowed FROM access_audit ORDER BY time")
        .await
        .unwrap();
    assert_eq!(
        audit.trim_end(),
        "\tListSessions\t0\nmallory\tListSessions\t0\nmallory\tGetSession\t0\nada\tListSessions\t1\nada\tListSessions\t1\nada\tGetSession\t1"
    );
}
