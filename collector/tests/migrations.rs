//! Schema migrations against the real ClickHouse engine: the second run is a no-op, through the
//! library and through `collector migrate`; a migration whose record was lost runs again cleanly.
#![allow(clippy::unwrap_used)]
use gatehouse_collector::config::{ClickHouseArgs, Compression, SchemaArgs};
use gatehouse_tests::clickhouse::TestClickHouse;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_and_rerun_as_a_no_op() {
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
        frames_ttl_days: 30,
        alerts_ttl_days: 30,
        rollup_ttl_days: 90,
        audit_ttl_days: 400,
        clickhouse_cluster: None,
    };
    let first = gatehouse_collector::schema::migrate(&args, &schema)
        .await
        .unwrap();
    assert_eq!(first.applied, vec![1, 2, 3]);
    assert_eq!(first.version, 3);
    assert!(first.ttl_changed.is_empty(), "{first:?}");
    let tables =
        "SELECT name, engine FROM system.tables WHERE database = currentDatabase() ORDER BY name";
    let before = ch.query_text(tables).await.unwrap();
    for t in [
        "access_audit",
        "alerts",
        "events",
        "events_hourly",
        "sessions",
        "schema_migrations",
    ] {
        assert!(before.contains(t), "{t} missing:\n{before}");
    }
    let ddl = ch.query_text("SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = 'alerts'").await.unwrap();
    assert!(
        ddl.contains("toIntervalDay(30)") && ddl.contains("ttl_only_drop_parts = 1"),
        "{ddl}"
    );

    let second = gatehouse_collector::schema::migrate(&args, &schema)
        .await
        .unwrap();
    assert!(
        second.applied.is_empty() && second.ttl_changed.is_empty(),
        "{second:?}"
    );
    let out = std::process::Command::new(gatehouse_tests::binaries::path("collector").unwrap())
        .arg("migrate")
        .args(ch.collector_args())
        // The same retention as above: nothing to change.
        .args(["--frames-ttl-days=30", "--alerts-ttl-days=30"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("applied now: []; TTL changed: []"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(ch.query_text(tables).await.unwrap(), before);
    assert_eq!(
        ch.query_text("SELECT count() FROM schema_migrations")
            .await
            .unwrap()
            .trim(),
        "3"
    );

    // Migration 3 gave the alerts table the agent's workload and hostNetwork, next to the
    // ServiceAccount.
    let columns = "SELECT name, type FROM system.columns WHERE database = currentDatabase() \
                   AND table = 'alerts' ORDER BY position";
    let alert_columns = ch.query_text(columns).await.unwrap();
    assert!(
        alert_columns.contains(
            "service_account\tLowCardinality(String)\nworkload\tLowCardinality(String)\nhost_network\tUInt8\n"
        ),
        "{alert_columns}"
    );
    // As if a run died after the ALTER but before recording it: the next run applies version 3
    // again, and the ALTER is a no-op on the columns already there.
    ch.query_text("DELETE FROM schema_migrations WHERE version = 3")
        .await
        .unwrap();
    let rerun = gatehouse_collector::schema::migrate(&args, &schema)
        .await
        .unwrap();
    assert_eq!(rerun.applied, vec![3], "{rerun:?}");
    assert_eq!(ch.query_text(columns).await.unwrap(), alert_columns);
    assert_eq!(
        ch.query_text("SELECT count() FROM schema_migrations WHERE version = 3")
            .await
            .unwrap()
            .trim(),
        "1"
    );

    // Changed retention reaches the existing tables, once; recordings outlive frame data.
    let longer = SchemaArgs {
        recordings_ttl_days: 730,
        frames_ttl_days: 14,
        ..schema
    };
    let third = gatehouse_collector::schema::migrate(&args, &longer)
        .await
        .unwrap();
    assert_eq!(third.ttl_changed, vec!["events", "sessions"], "{third:?}");
    let ddl = |table: &'static str| {
        let ch = &ch;
        async move {
            ch.query_text(&format!("SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = '{table}'"))
                .await
                .unwrap()
        }
    };
    let events = ddl("events").await;
    assert_eq!(
        gatehouse_collector::schema::ttl::days(&events),
        vec![14, 730],
        "{events}"
    );
    assert!(events.contains("stream_frame"), "{events}");
    assert_eq!(
        gatehouse_collector::schema::ttl::days(&ddl("sessions").await),
        vec![730]
    );
    let fourth = gatehouse_collector::schema::migrate(&args, &longer)
        .await
        .unwrap();
    assert!(
        fourth.applied.is_empty() && fourth.ttl_changed.is_empty(),
        "{fourth:?}"
    );
}
