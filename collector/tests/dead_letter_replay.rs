//! `collector dead-letter replay` against the real ClickHouse engine: good events go in once
//! (twice replayed, still once), events still refused land in FILE.refused with the reason.
#![allow(clippy::unwrap_used)]
mod support;

use base64::Engine;
use gatehouse_collector::config::{ClickHouseArgs, Compression, SchemaArgs};
use gatehouse_tests::clickhouse::TestClickHouse;
use prost::Message;

fn line(event: &[u8]) -> String {
    serde_json::json!({
        "time_unix_nano": "1",
        "reason": "Code: 117. DB::Exception: test",
        "event": base64::engine::general_purpose::STANDARD.encode(event),
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_stores_good_events_once_and_keeps_the_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ch = TestClickHouse::start(tmp.path()).await.unwrap();
    let args = ClickHouseArgs {
        clickhouse_url: ch.url.clone(),
        clickhouse_database: ch.database.clone(),
        clickhouse_user: None,
        clickhouse_password: None,
        clickhouse_compression: if ch.compression {
            Compression::Lz4
        } else {
            Compression::None
        },
    };
    let schema = SchemaArgs {
        recordings_ttl_days: 365,
        frames_ttl_days: 90,
        alerts_ttl_days: 180,
        rollup_ttl_days: 90,
        audit_ttl_days: 400,
        clickhouse_cluster: None,
    };
    gatehouse_collector::schema::migrate(&args, &schema)
        .await
        .unwrap();

    let good = support::session_events("replayed", 1, 2);
    let mut ancient = good[0].clone();
    ancient.event_id = uuid::Uuid::now_v7().to_string();
    ancient.time_unix_nano = 1_000_000_000; // 1970: the table's time_is_sane constraint refuses it
    let mut text: Vec<String> = good.iter().map(|e| line(&e.encode_to_vec())).collect();
    text.insert(1, line(&ancient.encode_to_vec()));
    text.push("not json".into());
    let file = tmp.path().join("dead-letter.ndjson");
    std::fs::write(&file, text.join("\n") + "\n").unwrap();

    let replay = || {
        std::process::Command::new(gatehouse_tests::binaries::path("collector").unwrap())
            .args(["dead-letter", "replay"])
            .arg(&file)
            .args(ch.collector_args())
            .output()
            .unwrap()
    };
    for _ in 0..2 {
        let out = replay();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
        assert!(
            stdout.contains("replayed 4 events; still refused 2"),
            "{stdout}{stderr}"
        );
        assert!(stderr.contains("dead-letter.ndjson.refused"), "{stderr}");
    }
    let refused = std::fs::read_to_string(tmp.path().join("dead-letter.ndjson.refused")).unwrap();
    let refused: Vec<&str> = refused.lines().collect();
    assert_eq!(refused.len(), 2, "{refused:#?}");
    assert!(refused.contains(&"not json"), "{refused:#?}");
    assert!(
        refused
            .iter()
            .any(|l| l.contains("replay_refused") && l.contains("Code: 469")),
        "{refused:#?}"
    );

    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        text.join("\n") + "\n",
        "the dead-letter file is left as it was"
    );
    let ids: Vec<String> = good.iter().map(|e| format!("'{}'", e.event_id)).collect();
    let stored = ch
        .query_text(&format!(
            "SELECT count() FROM (SELECT event_id FROM events WHERE event_id IN ({}) LIMIT 1 BY event_id)",
            ids.join(",")
        ))
        .await
        .unwrap();
    assert_eq!(stored.trim(), "4");
}
