//! Ingest end to end: the real shipper and the real collector binary into the real ClickHouse
//! engine (chdb fixture, or CLICKHOUSE_URL): delivery, crash between insert and ack, ClickHouse
//! outage, authentication, bad input and dead letters.
#![allow(clippy::unwrap_used)]
mod support;

use gatehouse_proto::v1::{JournalRecord, ShipBatch};
use gatehouse_shipper::{Shipper, ShipperConfig, TlsConfig};
use gatehouse_tests::collector_proc::CollectorPki;
use prost::Message;
use std::time::Duration;
use support::*;

fn shipper_config(addr: &str, pki: &CollectorPki) -> ShipperConfig {
    let client = pki.client_ca.issue_client("gateway-test", &[]).unwrap();
    let mut cfg = ShipperConfig::new(format!("https://{addr}"));
    cfg.tls = Some(TlsConfig {
        ca_pem: pki.server_ca.pem.clone().into_bytes(),
        identity: Some((client.cert_pem.into_bytes(), client.key_pem.into_bytes())),
        domain_name: Some("localhost".into()),
    });
    cfg.max_batch_records = 40;
    cfg.backoff_max = Duration::from_millis(500);
    cfg
}

fn segments(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_journal_lands_once_and_segments_go_only_after_ack() {
    let tmp = tempfile::tempdir().unwrap();
    let ch = clickhouse(tmp.path()).await;
    let pki = CollectorPki::write(tmp.path()).unwrap();
    let col = collector(tmp.path(), &ch, &pki, &[]).await;
    let events = session_events("alice", 3, 50);
    let jdir = tmp.path().join("journal");
    let j = journal(&jdir, &events);
    assert!(segments(&jdir) > 2, "the test needs several segments");
    let shipper = Shipper::new(j.clone(), shipper_config(&col.addr, &pki)).unwrap();
    let metrics = shipper.metrics().clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(shipper.run(async move {
        let _ = stop_rx.await;
    }));
    assert!(
        wait_acked(&j, Duration::from_secs(60)).await,
        "journal not acknowledged; log:\n{}",
        col.log.lock().join("\n")
    );
    assert_eq!(metrics.events_acked.get(), 300);
    assert_eq!(
        segments(&jdir),
        1,
        "acknowledged segments are deleted, the active one stays"
    );
    assert_eq!(
        eventually(
            &ch,
            "SELECT count() FROM events FINAL",
            "300",
            Duration::from_secs(5)
        )
        .await,
        "300"
    );
    let per_session = ch
        .query_text("SELECT uniqExactMerge(requests), uniqExactMerge(errors) FROM sessions GROUP BY session_id ORDER BY session_id")
        .await
        .unwrap();
    assert_eq!(per_session.trim(), "50\t10\n50\t10\n50\t10");
    // Appended later: shipped from where the ack stopped.
    let more = session_events("bob", 1, 5);
    for e in &more {
        j.append(&e.encode_to_vec()).unwrap();
    }
    assert!(wait_acked(&j, Duration::from_secs(30)).await);
    assert_eq!(
        eventually(
            &ch,
            "SELECT count() FROM events FINAL",
            "310",
            Duration::from_secs(5)
        )
        .await,
        "310"
    );
    let _ = stop_tx.send(());
    task.await.unwrap();
}

/// Large captured bodies (a big list, a Secret dump): with the shipper's default 4 MiB batch
/// bound, 1.5 MiB responses must not add up to a message the collector refuses to decode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_megabyte_responses_ship_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let ch = clickhouse(tmp.path()).await;
    let pki = CollectorPki::write(tmp.path()).unwrap();
    let col = collector(tmp.path(), &ch, &pki, &[]).await;
    let mut events = session_events("erin", 1, 8);
    for e in &mut events {
        if let Some(gatehouse_proto::v1::event::Payload::Response(r)) = &mut e.payload {
            let data = vec![b'x'; 1536 << 10];
            r.body = Some(gatehouse_proto::v1::Body {
                total_bytes: data.len() as u64,
                data: data.into(),
                content_type: "application/json".into(),
                ..Default::default()
            });
        }
    }
    let j = journal(&tmp.path().join("journal"), &events);
    let mut cfg = shipper_config(&col.addr, &pki);
    cfg.max_batch_records = ShipperConfig::new("").max_batch_records;
    let shipper = Shipper::new(j.clone(), cfg).unwrap();
    let metrics = shipper.metrics().clone();
    let task = tokio::spawn(shipper.run(tokio::time::sleep(Duration::from_secs(120))));
    assert!(
        wait_acked(&j, Duration::from_secs(60)).await,
        "not acknowledged after {} retries; collector log:\n{}",
        metrics.retries.get(),
        col.log.lock().join("\n")
    );
    assert_eq!(metrics.retries.get(), 0, "no stream was refused");
    assert_eq!(
        eventually(
            &ch,
            "SELECT count(), countIf(length(payload) > 1572864) FROM events FINAL",
            "16\t8",
            Duration::from_secs(5)
        )
        .await,
        "16\t8"
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_killed_between_insert_and_ack_stores_each_event_once() {
    let tmp = tempfile::tempdir().unwrap();
    let ch = clickhouse(tmp.path()).await;
    let pki = CollectorPki::write(tmp.path()).unwrap();
    let col = collector(tmp.path(), &ch, &pki, &[]).await;
    let events = session_events("carol", 2, 25);
    let j = journal(&tmp.path().join("journal"), &events);
    // Ship everything by hand and never read the ack: the collector inserts, then dies.
    let records: Vec<JournalRecord> = gatehouse_journal::Reader::read_all(j.dir())
        .unwrap()
        .into_iter()
        .map(|r| JournalRecord {
            end: r.end,
            event: r.payload.into(),
        })
        .collect();
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(ShipBatch {
        batch_seq: 1,
        records,
    })
    .await
    .unwrap();
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", pki.token).parse().unwrap(),
    );
    let mut client = ingest(channel(&col.addr, &pki, None).await.unwrap());
    let _acks = client.ship(req).await.unwrap();
    assert_eq!(
        eventually(
            &ch,
            "SELECT count() FROM events",
            "100",
            Duration::from_secs(30)
        )
        .await,
        "100"
    );
    let port = col.port();
    col.kill().await.unwrap();
    assert_eq!(j.acked_offset(), 0, "the shipper side never saw an ack");

    let col = collector_on(tmp.path(), port, &ch, &pki, &[]).await;
    let shipper = Shipper::new(j.clone(), shipper_config(&col.addr, &pki)).unwrap();
    let task = tokio::spawn(shipper.run(tokio::time::sleep(Duration::from_secs(60))));
    assert!(wait_acked(&j, Duration::from_secs(60)).await);
    task.abort();
    // Replayed rows were inserted again; reads see each event exactly once.
    assert_eq!(
        ch.query_text("SELECT count() >= 100 FROM events")
            .await
            .unwrap()
            .trim(),
        "1"
    );
    assert_eq!(
        ch.query_text("SELECT count() FROM events FINAL")
            .await
            .unwrap()
            .trim(),
        "100"
    );
    assert_eq!(
        ch.query_text("SELECT count() FROM (SELECT event_id FROM events LIMIT 1 BY event_id)")
            .await
            .unwrap()
            .trim(),
        "100"
    );
    assert_eq!(
        ch.query_text("SELECT uniqExactMerge(requests) FROM sessions GROUP BY session_id")
            .await
            .unwrap()
            .trim(),
        "25\n25"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_outage_holds_the_journal_then_delivers_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let mut ch = clickhouse(tmp.path()).await;
    if !ch.is_fixture() {
        eprintln!("skipped: a real CLICKHOUSE_URL server cannot be stopped by the test");
        return;
    }
    let pki = CollectorPki::write(tmp.path()).unwrap();
    let col = collector(tmp.path(), &ch, &pki, &["--queue-batches=2"]).await;
    let events = session_events("dave", 2, 60);
    let jdir = tmp.path().join("journal");
    let j = journal(&jdir, &events);
    let segs = segments(&jdir);
    ch.stop().await.unwrap();
    let mut cfg = shipper_config(&col.addr, &pki);
    cfg.max_batch_records = 10;
    let shipper = Shipper::new(j.clone(), cfg).unwrap();
    let metrics = shipper.metrics().clone();
    let task = tokio::spawn(shipper.run(tokio::time::sleep(Duration::from_secs(120))));
    // Wait (bounded) for the push-back, however slow a loaded CI machine is.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while metrics.retries.get() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        j.acked_offset(),
        0,
        "nothing is acknowledged while ClickHouse is down"
    );
    assert_eq!(segments(&jdir), segs, "the journal holds every segment");
    assert!(
        metrics.retries.get() > 0,
        "the full write queue pushed back (RESOURCE_EXHAUSTED) and the shipper backed off"
    );
    let retried = || {
        col.log
            .lock()
            .iter()
            .any(|l| l.contains("ClickHouse insert failed; retrying"))
    };
    while !retried() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(retried(), "the collector retries the insert");
    ch.resume().await.unwrap();
    assert!(
        wait_acked(&j, Duration::from_secs(60)).await,
        "log:\n{}",
        col.log.lock().join("\n")
    );
    task.abort();
    assert_eq!(
        ch.query_text("SELECT count() FROM events FINAL")
            .await
            .unwrap()
            .trim(),
        "240"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_certificates_and_tokens_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ch = clickhouse(tmp.path()).await;
    let pki = CollectorPki::write(tmp.path()).unwrap();
    let col = collector(tmp.path(), &ch, &pki, &[]).await;
    let events = session_events("erin", 1, 1);
    let batch = || {
        let records = events
            .iter()
            .enumerate()
            .map(|(i, e)| JournalRecord {
                end: (i as u64 + 1) * 100,
                event: e.encode_to_vec().into(),
            })
            .collect();
        tokio_stream::iter(vec![ShipBatch {
            batch_seq: 1,
            records,
        }])
    };

    // No credential, and a wrong token.
    let mut c = ingest(channel(&col.addr, &pki, None).await.unwrap());
    let err = c.ship(batch()).await.err().unwrap();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
    let mut req = tonic::Request::new(batch());
    req.metadata_mut()
        .insert("authorization", "Bearer forged".parse().unwrap());
    let err = c.ship(req).await.err().unwrap();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");

    // A certificate from the right CA that names no configured client.
    let intruder = pki.client_ca.issue_client("intruder", &[]).unwrap();
    let mut c = ingest(
        channel(
            &col.addr,
            &pki,
            Some((&intruder.cert_pem, &intruder.key_pem)),
        )
        .await
        .unwrap(),
    );
    let err = c.ship(batch()).await.err().unwrap();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");

    // A certificate naming a configured client but signed by another CA: the handshake fails.
    let other = gatehouse_tests::apiserver::tls::TestCa::generate().unwrap();
    let forged = other.issue_client("gateway-test", &[]).unwrap();
    let refused = match channel(&col.addr, &pki, Some((&forged.cert_pem, &forged.key_pem))).await {
        Err(_) => true,
        Ok(ch) => ingest(ch).ship(batch()).await.is_err(),
    };
    assert!(refused, "a certificate from an unknown CA must not ingest");

    // The genuine client certificate is accepted.
    let good = pki.client_ca.issue_client("gateway-test", &[]).unwrap();
    let mut c = ingest(
        channel(&col.addr, &pki, Some((&good.cert_pem, &good.key_pem)))
            .await
            .unwrap(),
    );
    let mut acks = c.ship(batch()).await.unwrap().into_inner();
    let ack = acks.message().await.unwrap().unwrap();
    assert_eq!((ack.batch_seq, ack.durable_offset), (1, 200));
    assert_eq!(
        ch.query_text("SELECT count() FROM events FINAL")
            .await
            .unwrap()
            .trim(),
        "2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_named_and_refused_rows_go_to_the_dead_letter_file() {
    let tmp = tempfile::tempdir().unwrap();
    let ch = clickhouse(tmp.path()).await;
    let pki = CollectorPki::write(tmp.path()).unwrap();
    let col = collector(tmp.path(), &ch, &pki, &["--batch-period=500ms"]).await;
    let good = pki.client_ca.issue_client("gateway-test", &[]).unwrap();
    let conn = channel(&col.addr, &pki, Some((&good.cert_pem, &good.key_pem)))
        .await
        .unwrap();

    // A malformed event id: INVALID_ARGUMENT naming the field.
    let mut bad = session_events("frank", 1, 1);
    bad[1].event_id = "not-a-uuid".into();
    let records = bad
        .iter()
        .enumerate()
        .map(|(i, e)| JournalRecord {
            end: (i as u64 + 1) * 10,
            event: e.encode_to_vec().into(),
        })
        .collect();
    let mut acks = ingest(conn.clone())
        .ship(tokio_stream::iter(vec![ShipBatch {
            batch_seq: 1,
            records,
        }]))
        .await
        .unwrap()
        .into_inner();
    let err = acks.message().await.err().unwrap();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("records[1].event.event_id"),
        "{}",
        err.message()
    );

    // Well-formed, but ClickHouse refuses it (the events table's time_is_sane constraint):
    // dead-lettered, acknowledged, and the good batch next to it is stored.
    let fine = session_events("frank", 1, 3);
    let mut broken = session_events("frank", 1, 1);
    broken[0].time_unix_nano = 1_000;
    let rec = |evs: &[gatehouse_proto::v1::Event], base: u64| -> Vec<JournalRecord> {
        evs.iter()
            .enumerate()
            .map(|(i, e)| JournalRecord {
                end: base + i as u64 + 1,
                event: e.encode_to_vec().into(),
            })
            .collect()
    };
    let batches = vec![
        ShipBatch {
            batch_seq: 1,
            records: rec(&fine, 0),
        },
        ShipBatch {
            batch_seq: 2,
            records: rec(&broken, 100),
        },
    ];
    let mut acks = ingest(conn)
        .ship(tokio_stream::iter(batches))
        .await
        .unwrap()
        .into_inner();
    let a1 = acks.message().await.unwrap().unwrap();
    let a2 = acks.message().await.unwrap().unwrap();
    assert_eq!((a1.batch_seq, a1.dead_lettered), (1, 0));
    assert_eq!(
        (a2.batch_seq, a2.durable_offset, a2.dead_lettered),
        (2, 102, 2)
    );
    assert_eq!(
        ch.query_text("SELECT count() FROM events FINAL")
            .await
            .unwrap()
            .trim(),
        "6"
    );
    let dead = std::fs::read_to_string(&col.dead_letter).unwrap();
    // Dead letters are whole recorded events: owner-only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&col.dead_letter)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "dead-letter file mode {mode:o}");
    let lines: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0]["reason"].as_str().unwrap().contains("469"),
        "{dead}"
    );
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(lines[0]["event"].as_str().unwrap())
        .unwrap();
    let back = gatehouse_proto::v1::Event::decode(raw.as_slice()).unwrap();
    assert_eq!(back.event_id, broken[0].event_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_min_rows_goes_without_waiting_out_the_period() {
    let tmp = tempfile::tempdir().unwrap();
    let ch = clickhouse(tmp.path()).await;
    let pki = CollectorPki::write(tmp.path()).unwrap();
    // The shipper's window (8 batches of 40) never fills a 100k-row insert: only the early
    // flush at --batch-min-rows (one shipped batch here, so no tail is left below it) can
    // answer before the 10-minute period.
    let col = collector(
        tmp.path(),
        &ch,
        &pki,
        &[
            "--batch-period=10m",
            "--batch-min-rows=40",
            "--batch-max-rows=100000",
        ],
    )
    .await;
    let events = session_events("carol", 2, 100);
    let j = journal(&tmp.path().join("journal"), &events);
    let shipper = Shipper::new(j.clone(), shipper_config(&col.addr, &pki)).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(shipper.run(async move {
        let _ = stop_rx.await;
    }));
    assert!(
        wait_acked(&j, Duration::from_secs(120)).await,
        "400 events were not acknowledged long before the period; log:\n{}",
        col.log.lock().join("\n")
    );
    assert_eq!(
        ch.query_text("SELECT count() FROM events FINAL")
            .await
            .unwrap()
            .trim(),
        "400"
    );
    // Fewer than --batch-min-rows rows wait for more (or for the period).
    for e in session_events("carol", 1, 5) {
        j.append(&e.encode_to_vec()).unwrap();
    }
    assert!(
        !wait_acked(&j, Duration::from_secs(3)).await,
        "10 rows were inserted without waiting for more"
    );
    let _ = stop_tx.send(());
    task.await.unwrap();
}
