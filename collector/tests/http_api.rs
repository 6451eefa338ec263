//! The JSON read API on the collector's listener, against the real ClickHouse engine: the same
//! reader-group check and access audit as gRPC, JSON errors for 401/403/400/404/405, summaries
//! that match the gRPC listing, and an NDJSON transcript equal to `gatehouse export --format ndjson`.
#![allow(clippy::unwrap_used)]
mod support;

use gatehouse_tests::collector_proc::CollectorPki;
use http_body_util::{BodyExt, Empty};
use serde_json::Value;
use support::*;

struct Reply {
    status: u16,
    content_type: String,
    www_authenticate: Option<String>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// The `error` object of a JSON error reply, checked for its HTTP code.
    fn error(&self, code: u16, status: &str) -> String {
        assert_eq!(self.status, code, "{}", self.body);
        assert_eq!(self.content_type, "application/json");
        let v = self.json();
        assert_eq!(v["error"]["code"], code, "{}", self.body);
        assert_eq!(v["error"]["status"], status, "{}", self.body);
        v["error"]["message"].as_str().unwrap().to_string()
    }
}

async fn call(client: &Https, method: &str, url: &str, token: Option<&str>) -> Reply {
    let mut req = http::Request::builder().method(method).uri(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let header = |name| {
        resp.headers()
            .get(name)
            .map(|v: &http::HeaderValue| v.to_str().unwrap().to_string())
    };
    let content_type = header("content-type").unwrap_or_default();
    let www_authenticate = header("www-authenticate");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        content_type,
        www_authenticate,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_reads_are_gated_audited_and_match_the_export() {
    let tmp = tempfile::tempdir().unwrap();
    let ch = clickhouse(tmp.path()).await;
    let pki = CollectorPki::write(tmp.path()).unwrap();
    let (col, issuer) = reader_gated_collector(tmp.path(), &ch, &pki).await;

    let events = session_events("alice", 2, 10);
    let j = journal(&tmp.path().join("journal"), &events);
    ship_all(&j, &col, &pki).await;

    let client = https(&pki);
    let base = format!("https://localhost:{}", col.addr.rsplit_once(':').unwrap().1);
    let sid = events[0].session_id.clone();
    let mallory = issuer.token("mallory", &["dev"], "gatehouse").unwrap();
    let ada = issuer.token("ada", &["auditors"], "gatehouse").unwrap();

    // Refusals: no token (401 with a Bearer challenge), a reader outside the groups (403).
    let r = call(&client, "GET", &format!("{base}/v1/sessions"), None).await;
    assert!(r.error(401, "UNAUTHENTICATED").contains("no bearer token"));
    assert_eq!(r.www_authenticate.as_deref(), Some("Bearer"));
    let r = call(
        &client,
        "GET",
        &format!("{base}/v1/sessions"),
        Some(&mallory),
    )
    .await;
    assert!(
        r.error(403, "PERMISSION_DENIED")
            .contains("mallory is in none of the reader groups")
    );
    let r = call(
        &client,
        "GET",
        &format!("{base}/v1/sessions/{sid}/events"),
        Some(&mallory),
    )
    .await;
    r.error(403, "PERMISSION_DENIED");
    assert!(!r.body.contains("kubectl"), "nothing leaks: {}", r.body);

    // An auditor lists with the same filters as gRPC.
    let r = call(
        &client,
        "GET",
        &format!("{base}/v1/sessions?identity=alice&namespace=team-a&verb=get&q=CONFIGMAP%20CM-3"),
        Some(&ada),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.content_type, "application/json");
    let list = r.json();
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{}", r.body);
    for s in sessions {
        assert_eq!(s["actor"], "alice");
        assert_eq!(s["requests"], 10);
        assert_eq!(s["errors"], 2);
        assert_eq!(s["namespaces"], serde_json::json!(["team-a"]));
    }
    let r = call(
        &client,
        "GET",
        &format!("{base}/v1/sessions?identity=bob"),
        Some(&ada),
    )
    .await;
    assert_eq!(r.json()["sessions"], serde_json::json!([]), "{}", r.body);
    // A time window after every session holds none of them.
    let r = call(
        &client,
        "GET",
        &format!("{base}/v1/sessions?identity=alice&from=2200-01-01T00:00:00Z"),
        Some(&ada),
    )
    .await;
    assert_eq!(r.json()["sessions"], serde_json::json!([]), "{}", r.body);
    // Bad input names the parameter.
    let r = call(
        &client,
        "GET",
        &format!("{base}/v1/sessions?user=alice"),
        Some(&ada),
    )
    .await;
    assert!(r.error(400, "INVALID_ARGUMENT").contains("\"user\""));
    let r = call(
        &client,
        "GET",
        &format!("{base}/v1/sessions?from=yesterday"),
        Some(&ada),
    )
    .await;
    assert!(r.error(400, "INVALID_ARGUMENT").starts_with("from: "));

    // One session by a unique prefix of its id.
    let r = call(
        &client,
        "GET",
        &format!("{base}/v1/sessions/{}", &sid[..30]),
        Some(&ada),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let s = r.json();
    assert_eq!(s["session_id"], sid.as_str());
    assert_eq!(s["requests"], 10);
    assert_eq!(s["start_unix_nano"], events[0].time_unix_nano);

    // The transcript: NDJSON, in seq order, each line what `gatehouse export` writes.
    let r = call(
        &client,
        "GET",
        &format!("{base}/v1/sessions/{sid}/events"),
        Some(&ada),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.content_type, "application/x-ndjson");
    let want: Vec<String> = events
        .iter()
        .filter(|e| e.session_id == sid)
        .map(|e| gatehouse_proto::json::event_json(e).to_string())
        .collect();
    let got: Vec<&str> = r.body.lines().collect();
    assert_eq!(got.len(), 20);
    assert_eq!(got, want);
    let r = call(
        &client,
        "GET",
        &format!("{base}/v1/sessions/{sid}/events?from_seq=19"),
        Some(&ada),
    )
    .await;
    assert_eq!(r.body.lines().collect::<Vec<_>>(), want[18..]);
    let r = call(
        &client,
        "GET",
        &format!("{base}/v1/sessions/no-such-session/events"),
        Some(&ada),
    )
    .await;
    assert!(r.error(404, "NOT_FOUND").contains("no-such-session"));
    let r = call(
        &client,
        "DELETE",
        &format!("{base}/v1/sessions/{sid}"),
        Some(&ada),
    )
    .await;
    assert_eq!(r.status, 405, "{}", r.body);

    // Every GET is on record, refused or not, with the caller's address; the DELETE read nothing.
    let audit = ch
        .query_text(
            "SELECT reader, method, allowed, peer LIKE '127.0.0.1:%' FROM access_audit ORDER BY time",
        )
        .await
        .unwrap();
    let want = [
        "\tGET /v1/sessions\t0\t1",
        "mallory\tGET /v1/sessions\t0\t1",
        "mallory\tGET /v1/sessions/{id}/events\t0\t1",
        "ada\tGET /v1/sessions\t1\t1",
        "ada\tGET /v1/sessions\t1\t1",
        "ada\tGET /v1/sessions\t1\t1",
        "ada\tGET /v1/sessions\t1\t1",
        "ada\tGET /v1/sessions\t1\t1",
        "ada\tGET /v1/sessions/{id}\t1\t1",
        "ada\tGET /v1/sessions/{id}/events\t1\t1",
        "ada\tGET /v1/sessions/{id}/events\t1\t1",
        "ada\tGET /v1/sessions/{id}/events\t1\t1",
    ];
    assert_eq!(audit.trim_end().lines().collect::<Vec<_>>(), want);
    let target = ch
        .query_text("SELECT target FROM access_audit WHERE reader = 'mallory' ORDER BY time LIMIT 1 OFFSET 1")
        .await
        .unwrap();
    assert_eq!(target.trim(), format!("/v1/sessions/{sid}/events"));
}
