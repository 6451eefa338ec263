//! `cargo xtask bench collector`: the release collector binary in front of the ClickHouse
//! engine (the chdb fixture, or `CLICKHOUSE_URL`), measured end to end in one run: journal →
//! shipper → gRPC Ingest → ClickHouse events/s, request-to-queryable lag, listing one identity's
//! sessions among 10M stored events, and how soon the replay of a 1-hour session starts.
use anyhow::{Context as _, ensure};
use bytes::Bytes;
use gatehouse_journal::{FsyncPolicy, Journal, JournalOptions};
use gatehouse_proto::v1::event::Payload;
use gatehouse_proto::v1::query_client::QueryClient;
use gatehouse_proto::v1::{
    Event, GetSessionRequest, Identity, KubeRequest, ListSessionsRequest, RequestStarted,
    ResponseFinished, StreamChannel, StreamDirection, StreamFrame,
};
use gatehouse_shipper::{Shipper, ShipperConfig, TlsConfig};
use gatehouse_tests::clickhouse::TestClickHouse;
use gatehouse_tests::collector_proc::{CollectorPki, CollectorProc};
use gatehouse_tests::discard_clickhouse::DiscardClickHouse;
use gatehouse_tests::oidc::TestIssuer;
use prost::Message;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// Short sessions shipped in the throughput run, each of `PAIRS` request/response pairs.
const SESSIONS: usize = 2_000;
const PAIRS: usize = 91;
/// The 1-hour interactive session: one stdout frame every 100 ms.
const HOUR_FRAMES: usize = 36_000;
/// Rows seeded with `INSERT … SELECT FROM numbers()` for the listing measurement.
const SEEDED: u64 = 10_000_000;
/// Seeded events per session, and the identities they are spread over.
const SEEDED_PER_SESSION: u64 = 100;
const SEEDED_ACTORS: u64 = 1_000;
/// Days the seeded sessions are spread over.
const SEEDED_DAYS: u64 = 30;
const LAG_SAMPLES: usize = 40;
const QUERY_SAMPLES: usize = 20;
const REPLAY_SAMPLES: usize = 10;

pub fn collector() -> anyhow::Result<()> {
    super::run_release("collector", || super::block_on(run()))
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn identity(user: &str) -> Option<Identity> {
    Some(Identity {
        username: user.to_string(),
        groups: vec!["dev".into()],
        ..Default::default()
    })
}

/// A request/response pair of session `session` at `seq`, `seq + 1`.
fn pair(session: &str, user: &str, seq: u64, time: i64, i: usize) -> [Event; 2] {
    let req_id = uuid::Uuid::now_v7().to_string();
    let request = Event {
        event_id: req_id.clone(),
        session_id: session.to_string(),
        seq,
        time_unix_nano: time,
        identity: identity(user),
        command_id: uuid::Uuid::now_v7().to_string(),
        payload: Some(Payload::Request(RequestStarted {
            request: Some(KubeRequest {
                method: "GET".into(),
                path: format!("/api/v1/namespaces/team-a/configmaps/cm-{i}"),
                verb: "get".into(),
                api_version: "v1".into(),
                resource: "configmaps".into(),
                namespace: "team-a".into(),
                name: format!("cm-{i}"),
                ..Default::default()
            }),
            command: format!("kubectl get configmap cm-{i} -n team-a"),
            ..Default::default()
        })),
        ..Default::default()
    };
    let response = Event {
        event_id: uuid::Uuid::now_v7().to_string(),
        session_id: session.to_string(),
        seq: seq + 1,
        time_unix_nano: time + 2_000_000,
        identity: identity(user),
        payload: Some(Payload::Response(ResponseFinished {
            request_event_id: req_id,
            status_code: 200,
            latency_nanos: 2_000_000,
            ..Default::default()
        })),
        ..Default::default()
    };
    [request, response]
}

/// The shipped data set: `SESSIONS` short sessions and one 1-hour exec session (returned id).
fn write_journal(journal: &Journal) -> anyhow::Result<(String, u64)> {
    let start = now_nanos() - 2 * 3_600_000_000_000;
    let mut count = 0u64;
    for s in 0..SESSIONS {
        let session = uuid::Uuid::now_v7().to_string();
        let user = format!("shipped-{}", s % 50);
        let t0 = start + (s as i64) * 1_000_000_000;
        for i in 0..PAIRS {
            for e in pair(
                &session,
                &user,
                2 * i as u64 + 1,
                t0 + i as i64 * 5_000_000,
                i,
            ) {
                journal.append(&e.encode_to_vec())?;
                count += 1;
            }
        }
    }
    let hour = uuid::Uuid::now_v7().to_string();
    let [opened, _] = pair(&hour, "operator", 1, start, 0);
    let exec_id = opened.event_id.clone();
    journal.append(&opened.encode_to_vec())?;
    count += 1;
    for f in 0..HOUR_FRAMES {
        let offset = f as u64 * 100_000_000;
        let e = Event {
            event_id: uuid::Uuid::now_v7().to_string(),
            session_id: hour.clone(),
            seq: f as u64 + 2,
            time_unix_nano: start + offset as i64,
            identity: identity("operator"),
            payload: Some(Payload::StreamFrame(StreamFrame {
                request_event_id: exec_id.clone(),
                offset_nanos: offset,
                direction: StreamDirection::FromContainer as i32,
                channel: StreamChannel::Stdout as i32,
                data: format!("line {f}: tail of a long-running job\r\n")
                    .into_bytes()
                    .into(),
                size: 40,
                ..Default::default()
            })),
            ..Default::default()
        };
        journal.append(&e.encode_to_vec())?;
        count += 1;
    }
    Ok((hour, count))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn run() -> anyhow::Result<()> {
    // The measurements to run (comma-separated; all by default). Ingest always runs: it ships
    // the 1-hour session that replay reads; list and replay also need the 10M-event seed.
    let parts = super::parts_from_env(
        "GATEHOUSE_BENCH_COLLECTOR_PARTS",
        &["ingest", "lag", "discard", "list", "replay"],
    )?;
    let dir = tempfile::tempdir()?;
    let ch = TestClickHouse::start(dir.path()).await?;
    let pki = CollectorPki::write(dir.path())?;
    let issuer = TestIssuer::start().await?;
    let issuer_ca = dir.path().join("issuer-ca.pem");
    std::fs::write(&issuer_ca, &issuer.ca_pem)?;
    let mut args = ch.collector_args();
    args.extend(pki.args());
    args.extend([
        format!("--oidc-issuer-url={}", issuer.url),
        "--oidc-audience=gatehouse".to_string(),
        format!("--oidc-ca-file={}", issuer_ca.display()),
        "--oidc-username-prefix=-".to_string(),
        "--reader-groups=auditors".to_string(),
    ]);
    let collector = CollectorProc::start(dir.path(), 0, &args).await?;
    println!(
        "collector: release binary, default batching (50k rows or 1 s; from 10k rows early when no more is queued and one of 2 insert slots is free); ClickHouse: {}",
        if ch.is_fixture() {
            "the chdb 26.9 engine behind tests/support/chdb_http.py (a stand-in for a server: \
             one Python process, no LZ4 transfer compression)"
        } else {
            "CLICKHOUSE_URL"
        }
    );

    // 1. Throughput: a pre-written journal shipped by the real shipper until fully acknowledged.
    let (journal, _) = Journal::open(
        &dir.path().join("journal"),
        JournalOptions {
            fsync: FsyncPolicy::Never,
            ..Default::default()
        },
    )?;
    let (hour_session, events) = write_journal(&journal)?;
    let shipper = shipper_to(&journal, &collector, &pki)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let cpu_before = CpuTimes::now();
    let started = Instant::now();
    let ship = tokio::spawn(shipper.run(async move {
        let _ = stopped.await;
    }));
    wait_acked(&journal, Duration::from_secs(600)).await?;
    let elapsed = started.elapsed();
    let cpu = CpuTimes::now().since(&cpu_before);
    let stored = ch
        .query_text("SELECT count() FROM events")
        .await?
        .trim()
        .parse::<u64>()?;
    ensure!(
        stored == events,
        "{stored} rows stored for {events} shipped"
    );
    println!(
        "ingest: {events} events (journal → shipper → gRPC → ClickHouse) in {:.2} s = {:.0} events/s (target ≥ 100k/s)",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64()
    );
    println!(
        "ingest CPU over those {:.2} s (2 cores = {:.2} core-s available): collector {:.2} s, ClickHouse fixture (python + chdb engine) {:.2} s, this process (journal reads, shipper, gRPC client) {:.2} s",
        elapsed.as_secs_f64(),
        2.0 * elapsed.as_secs_f64(),
        cpu.collector,
        cpu.fixture,
        cpu.bench
    );
    let inserts = collector_metric(&collector, "inserts_total").await?;
    println!(
        "ingest: {inserts:.0} INSERTs of {:.0} rows on average",
        events as f64 / inserts.max(1.0)
    );
    let end_to_end = events as f64 / elapsed.as_secs_f64();
    let same = (inserts as usize).max(1);
    let large = (events as usize).div_ceil(ENGINE_LARGE_INSERT).max(1);
    for chunks in [same, large] {
        let alone = engine_alone(&ch, events, chunks).await?;
        println!(
            "engine alone: the same rows as {chunks} RowBinary INSERTs of {:.0} rows, 2 at a time, straight into a fresh copy of the schema (no gRPC, collector or shipper): {:.2} s = {:.0} rows/s, fixture CPU {:.2} s; end-to-end ingest was {:.2}× this",
            events as f64 / chunks as f64,
            alone.elapsed.as_secs_f64(),
            alone.rows_per_sec,
            alone.fixture_cpu,
            end_to_end / alone.rows_per_sec
        );
    }

    // 2. Request-to-queryable lag: one event appended to the journal, polled for in ClickHouse.
    if parts.contains(&"lag") {
        let mut lags = Vec::new();
        for i in 0..LAG_SAMPLES {
            let session = uuid::Uuid::now_v7().to_string();
            let [e, _] = pair(&session, "lag", 1, now_nanos(), i);
            let id = e.event_id.clone();
            let t0 = Instant::now();
            journal.append(&e.encode_to_vec())?;
            let sql = format!(
                "SELECT count() FROM events WHERE time >= now64(9) - INTERVAL 1 MINUTE AND event_id = '{id}'"
            );
            loop {
                if ch.query_text(&sql).await?.trim() == "1" {
                    break;
                }
                ensure!(
                    t0.elapsed() < Duration::from_secs(30),
                    "event {id} never became queryable"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            lags.push(t0.elapsed());
            tokio::time::sleep(Duration::from_millis(50 + (i as u64 * 37) % 200)).await;
        }
        lags.sort();
        println!(
            "lag: request-to-queryable over {LAG_SAMPLES} events: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (target p99 ≤ 2 s)",
            percentile(&lags, 0.5).as_secs_f64() * 1e3,
            percentile(&lags, 0.99).as_secs_f64() * 1e3,
            lags.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        );
    }
    let _ = stop.send(());
    let _ = ship.await;
    if parts.contains(&"discard") {
        discard_ingest(&ch, &pki, dir.path()).await?;
    }
    if !parts.contains(&"list") && !parts.contains(&"replay") {
        return Ok(());
    }

    // 3. 10M stored events, generated inside ClickHouse over its HTTP interface (the
    // materialized views fire as for ingest). Sessions of 100 events, 25 s apart on average,
    // spread over 30 days; identities are skewed as in real clusters: the session's actor index
    // is the cube of a uniform draw, so user-0 holds about 10% of the sessions and most
    // identities a handful.
    let t0 = Instant::now();
    let session = format!("intDiv(number, {SEEDED_PER_SESSION})");
    let sessions = SEEDED / SEEDED_PER_SESSION;
    let span_ms = SEEDED_DAYS * 86_400_000;
    ch.query_text(&format!(
        "INSERT INTO events (event_id, session_id, seq, time, kind, producer, instance, actor, \
         groups, auth_method, verb, resource, namespace, name, command, status_code, failed, payload) \
         SELECT generateUUIDv4(number), concat('seed-', toString({session})), \
         number % {SEEDED_PER_SESSION} + 1, \
         now64(9) - toIntervalMillisecond(intDiv({session} * {span_ms}, {sessions})) + toIntervalMillisecond((number % {SEEDED_PER_SESSION}) * 250), \
         if(number % 2 = 0, 'request', 'response'), 'gateway', 'seed', \
         concat('user-', toString(toUInt32(pow((cityHash64({session}) % 1000000) / 1000000., 3) * {SEEDED_ACTORS}))), \
         [concat('team-', toString(cityHash64({session}) % 20))], 'oidc', \
         ['get', 'list', 'watch', 'patch', 'delete', 'create'][number % 13 % 6 + 1], \
         ['configmaps', 'pods', 'deployments', 'secrets', 'services'][number % 7 % 5 + 1], \
         concat('ns-', toString(cityHash64({session}, 1) % 50)), \
         concat('obj-', toString(number % 100)), \
         if(number % 2 = 0, concat('kubectl get configmap obj-', toString(number % 100)), ''), \
         if(number % 2 = 0, 0, if(number % 23 = 1, 404, 200)), toUInt8(number % 23 = 1), '' \
         FROM numbers({SEEDED})"
    ))
    .await?;
    let seed_secs = t0.elapsed().as_secs_f64();
    let total = ch.query_text("SELECT count() FROM events").await?;
    println!(
        "seeded {SEEDED} events ({sessions} sessions of {SEEDED_PER_SESSION}, {SEEDED_ACTORS} skewed identities, {SEEDED_DAYS} days) with INSERT … SELECT FROM numbers() over HTTP in {seed_secs:.1} s; {} events stored",
        total.trim()
    );

    let channel = query_channel(&collector.addr, &pki).await?;
    let mut query = QueryClient::new(channel);
    let token = issuer.token("auditor", &["auditors"], "gatehouse")?;
    let https = json_client(&pki)?;
    let port = collector
        .addr
        .rsplit_once(':')
        .map(|(_, p)| p)
        .unwrap_or("0");

    // 4. Listing one identity's sessions among them: the heaviest identity (its first 1,000
    // sessions, the default page), a typical one and a light one, round robin.
    if parts.contains(&"list") {
        let counts = ch
        .query_text(
            "SELECT actor, uniqExact(session_id) AS n FROM events WHERE producer = 'gateway' AND instance = 'seed' \
             GROUP BY actor ORDER BY n DESC",
        )
        .await?;
        let counts: Vec<(String, u64)> = counts
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .filter_map(|(a, n)| Some((a.to_string(), n.parse().ok()?)))
            .collect();
        ensure!(
            counts.len() > 10,
            "the seed made {} identities",
            counts.len()
        );
        let picks = [
            counts[0].clone(),
            counts[counts.len() / 2].clone(),
            counts[counts.len() - 1].clone(),
        ];
        let mut lists = Vec::new();
        for i in 0..QUERY_SAMPLES {
            let (user, n) = &picks[i % picks.len()];
            let t0 = Instant::now();
            let got = query
                .list_sessions(authed(
                    ListSessionsRequest {
                        username: user.clone(),
                        ..Default::default()
                    },
                    &token,
                ))
                .await?
                .into_inner();
            lists.push(t0.elapsed());
            let want = (*n).min(1000);
            ensure!(
                got.sessions.len() as u64 == want,
                "{user} has {} sessions listed, expected {want}",
                got.sessions.len()
            );
        }
        lists.sort();
        println!(
            "list (gRPC ListSessions): one identity's sessions among {} stored events, identities with {} / {} / {} sessions: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms over {QUERY_SAMPLES} calls (target ≤ 300 ms; each call also writes its access-audit row)",
            total.trim(),
            picks[0].1,
            picks[1].1,
            picks[2].1,
            percentile(&lists, 0.5).as_secs_f64() * 1e3,
            percentile(&lists, 0.99).as_secs_f64() * 1e3,
            lists.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        );
        let mut json_lists = Vec::new();
        for i in 0..QUERY_SAMPLES {
            let (user, n) = &picks[i % picks.len()];
            let t0 = Instant::now();
            let body = json_get(
                &https,
                &format!("https://localhost:{port}/v1/sessions?identity={user}"),
                &token,
            )
            .await?;
            json_lists.push(t0.elapsed());
            let got: serde_json::Value = serde_json::from_slice(&body)?;
            let listed = got["sessions"].as_array().map_or(0, Vec::len) as u64;
            ensure!(
                listed == (*n).min(1000),
                "JSON: {user} has {listed} sessions listed"
            );
        }
        json_lists.sort();
        println!(
            "list (JSON GET /v1/sessions?identity=): p50 {:.0} ms, p99 {:.0} ms over {QUERY_SAMPLES} calls",
            percentile(&json_lists, 0.5).as_secs_f64() * 1e3,
            percentile(&json_lists, 0.99).as_secs_f64() * 1e3,
        );
    }

    // 5. Replay of the 1-hour session: time to the first streamed event, and to the last.
    if parts.contains(&"replay") {
        let mut firsts = Vec::new();
        let mut alls = Vec::new();
        for _ in 0..REPLAY_SAMPLES {
            let t0 = Instant::now();
            let mut stream = query
                .get_session(authed(
                    GetSessionRequest {
                        session_id: hour_session.clone(),
                        from_seq: 0,
                    },
                    &token,
                ))
                .await?
                .into_inner();
            let mut n = 0usize;
            while let Some(_e) = stream.message().await? {
                if n == 0 {
                    firsts.push(t0.elapsed());
                }
                n += 1;
            }
            alls.push(t0.elapsed());
            ensure!(
                n == HOUR_FRAMES + 1,
                "the 1-hour session streamed {n} events, expected {}",
                HOUR_FRAMES + 1
            );
        }
        firsts.sort();
        alls.sort();
        println!(
            "replay (gRPC GetSession): 1-hour session ({} events) among {} stored starts streaming in p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms over {REPLAY_SAMPLES} runs; fully streamed in p50 {:.0} ms (target start ≤ 500 ms)",
            HOUR_FRAMES + 1,
            total.trim(),
            percentile(&firsts, 0.5).as_secs_f64() * 1e3,
            percentile(&firsts, 0.99).as_secs_f64() * 1e3,
            firsts.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
            percentile(&alls, 0.5).as_secs_f64() * 1e3
        );
        let mut json_firsts = Vec::new();
        for _ in 0..REPLAY_SAMPLES {
            let t0 = Instant::now();
            let (first, lines) = json_stream(
                &https,
                &format!("https://localhost:{port}/v1/sessions/{hour_session}/events"),
                &token,
                t0,
            )
            .await?;
            json_firsts.push(first);
            ensure!(
                lines == HOUR_FRAMES + 1,
                "JSON: the 1-hour session streamed {lines} lines, expected {}",
                HOUR_FRAMES + 1
            );
        }
        json_firsts.sort();
        println!(
            "replay (JSON GET /v1/sessions/{{id}}/events, NDJSON): first line in p50 {:.0} ms, p99 {:.0} ms over {REPLAY_SAMPLES} runs",
            percentile(&json_firsts, 0.5).as_secs_f64() * 1e3,
            percentile(&json_firsts, 0.99).as_secs_f64() * 1e3,
        );
    }
    drop(collector);
    Ok(())
}

/// The real shipper (as the gateway runs it, default window and batch size) to `collector`.
fn shipper_to(
    journal: &Arc<Journal>,
    collector: &CollectorProc,
    pki: &CollectorPki,
) -> anyhow::Result<Shipper> {
    let client = pki.client_ca.issue_client("gateway-test", &[])?;
    let mut cfg = ShipperConfig::new(format!("https://{}", collector.addr));
    cfg.tls = Some(TlsConfig {
        ca_pem: pki.server_ca.pem.clone().into_bytes(),
        identity: Some((client.cert_pem.into_bytes(), client.key_pem.into_bytes())),
        domain_name: Some("localhost".into()),
    });
    Ok(Shipper::new(journal.clone(), cfg)?)
}

/// The same ingest into a second collector whose ClickHouse endpoint decodes and counts the
/// inserted rows but stores nothing (`tests/src/discard_clickhouse.rs`; schema statements go to
/// the real engine): what the collector and shipper do on this machine without the engine's
/// share of the CPU. Not the end-to-end figure.
async fn discard_ingest(
    ch: &TestClickHouse,
    pki: &CollectorPki,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let discard = DiscardClickHouse::start(&ch.url).await?;
    let dir = dir.join("discard");
    std::fs::create_dir_all(&dir)?;
    let mut args: Vec<String> = ch
        .collector_args()
        .into_iter()
        .map(|a| a.replace(&ch.url, &discard.url))
        .collect();
    args.extend(pki.args());
    let collector = CollectorProc::start(&dir, 0, &args).await?;
    let (journal, _) = Journal::open(
        &dir.join("journal"),
        JournalOptions {
            fsync: FsyncPolicy::Never,
            ..Default::default()
        },
    )?;
    let (_, events) = write_journal(&journal)?;
    let shipper = shipper_to(&journal, &collector, pki)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let cpu_before = CpuTimes::now();
    let started = Instant::now();
    let ship = tokio::spawn(shipper.run(async move {
        let _ = stopped.await;
    }));
    wait_acked(&journal, Duration::from_secs(600)).await?;
    let elapsed = started.elapsed();
    let cpu = CpuTimes::now().since(&cpu_before);
    let _ = stop.send(());
    let _ = ship.await;
    ensure!(
        discard.rows() == events,
        "the discard endpoint counted {} rows for {events} shipped",
        discard.rows()
    );
    println!(
        "collector alone, NOT the end-to-end figure: {events} events (journal → shipper → gRPC → collector → INSERTs to a discard ClickHouse endpoint that decodes and counts rows, stores nothing) in {:.2} s = {:.0} events/s, {} INSERTs; CPU: collectors {:.2} s, this process (shipper, gRPC client, discard endpoint) {:.2} s, fixture {:.2} s",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64(),
        discard.inserts(),
        cpu.collector,
        cpu.bench,
        cpu.fixture
    );
    Ok(())
}

/// Rows per INSERT in the engine-alone run with large inserts (the collector's `--batch-max-rows`).
const ENGINE_LARGE_INSERT: usize = 50_000;

/// How fast the ClickHouse engine takes the ingested rows by itself.
struct EngineAlone {
    elapsed: Duration,
    rows_per_sec: f64,
    fixture_cpu: f64,
}

/// The ceiling for end-to-end ingest on this machine: the `rows` ingest stored, read back as
/// RowBinary in `chunks` consecutive parts and inserted into a fresh database migrated by the collector
/// binary, two INSERTs at a time like the collector's insert slots, with nothing else running.
async fn engine_alone(
    ch: &TestClickHouse,
    rows: u64,
    chunks: usize,
) -> anyhow::Result<EngineAlone> {
    const COLUMNS: &str = "event_id, session_id, seq, time, kind, producer, instance, actor, groups, \
        auth_method, source_ip, user_agent, command_id, verb, api_group, resource, subresource, \
        namespace, name, command, status_code, failed, payload";
    let database = format!("{}_engine_alone_{chunks}", ch.database);
    let mut args = ch.collector_args();
    args.retain(|a| !a.starts_with("--clickhouse-database="));
    let status = tokio::process::Command::new(gatehouse_tests::binaries::path("collector")?)
        .arg("migrate")
        .arg(format!("--clickhouse-database={database}"))
        .args(&args)
        .env("LOG", "warn")
        .status()
        .await?;
    ensure!(status.success(), "collector migrate {database}: {status}");
    // Merges of the parts ingest wrote would otherwise run during the timed inserts.
    for table in ["events", "sessions", "events_hourly"] {
        ch.query_text(&format!("OPTIMIZE TABLE {table} FINAL"))
            .await?;
    }
    let settled = Instant::now();
    while ch
        .query_text("SELECT count() FROM system.merges")
        .await?
        .trim()
        != "0"
    {
        ensure!(
            settled.elapsed() < Duration::from_secs(120),
            "ClickHouse merges did not finish within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut parts = Vec::with_capacity(chunks);
    // In journal order (event ids are UUIDv7s made in order), as the shipper sent them: how rows
    // are spread over sessions and time decides the materialized views' and merges' work.
    let per = (rows as usize).div_ceil(chunks);
    for i in 0..chunks {
        let sql = format!(
            "SELECT {COLUMNS} FROM events ORDER BY toString(event_id) LIMIT {per} OFFSET {} FORMAT RowBinary",
            i * per
        );
        parts.push(ch.query_bytes(&ch.database, &sql, Bytes::new()).await?);
    }
    let insert = format!("INSERT INTO events ({COLUMNS}) FORMAT RowBinary");
    let slot = |mine: Vec<Bytes>| {
        let (insert, database) = (&insert, &database);
        async move {
            for part in mine {
                ch.query_bytes(database, insert, part).await?;
            }
            anyhow::Ok(())
        }
    };
    let (even, odd): (Vec<_>, Vec<_>) =
        parts.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let strip = |v: Vec<(usize, Bytes)>| v.into_iter().map(|(_, b)| b).collect::<Vec<_>>();
    let cpu_before = CpuTimes::now();
    let started = Instant::now();
    let (a, b) = tokio::join!(slot(strip(even)), slot(strip(odd)));
    let elapsed = started.elapsed();
    let cpu = CpuTimes::now().since(&cpu_before);
    a?;
    b?;
    let stored: u64 = ch
        .query_bytes(
            &database,
            "SELECT count() FROM events FORMAT TabSeparated",
            Bytes::new(),
        )
        .await
        .map(|out| String::from_utf8_lossy(&out).trim().parse())??;
    ensure!(
        stored == rows,
        "engine alone: {stored} rows stored for {rows}"
    );
    ch.query_bytes(
        &database,
        &format!("DROP DATABASE {database}"),
        Bytes::new(),
    )
    .await?;
    Ok(EngineAlone {
        elapsed,
        rows_per_sec: rows as f64 / elapsed.as_secs_f64(),
        fixture_cpu: cpu.fixture,
    })
}

/// `gatehouse_collector_<name>` from the collector's ops listener.
async fn collector_metric(collector: &CollectorProc, name: &str) -> anyhow::Result<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ops = collector
        .log
        .lock()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "collector listening")
        .and_then(|v| v["fields"]["ops_listen"].as_str().map(str::to_string))
        .context("the collector did not log its ops address")?;
    let mut tcp = tokio::net::TcpStream::connect(&ops).await?;
    tcp.write_all(format!("GET /metrics HTTP/1.0\r\nhost: {ops}\r\n\r\n").as_bytes())
        .await?;
    let mut text = String::new();
    tcp.read_to_string(&mut text).await?;
    let metric = format!("gatehouse_collector_{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&metric)?.trim().parse::<f64>().ok())
        .with_context(|| format!("no {metric}in the collector's metrics"))
}

/// User and system CPU seconds of this process and of its children by kind, from /proc.
struct CpuTimes {
    bench: f64,
    collector: f64,
    fixture: f64,
}

impl CpuTimes {
    fn now() -> Self {
        let me = std::process::id();
        let mut t = CpuTimes {
            bench: super::procfs::process_cpu(me),
            collector: 0.0,
            fixture: 0.0,
        };
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return t;
        };
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            let Some(stat) = super::procfs::Stat::read(pid) else {
                continue;
            };
            if stat.ppid != me {
                continue;
            }
            let cpu = stat.ticks() as f64 / super::procfs::CLK_TCK;
            match stat.comm.as_str() {
                "collector" => t.collector += cpu,
                c if c.starts_with("python") => t.fixture += cpu,
                _ => {}
            }
        }
        t
    }

    fn since(&self, before: &Self) -> Self {
        Self {
            bench: self.bench - before.bench,
            collector: self.collector - before.collector,
            fixture: self.fixture - before.fixture,
        }
    }
}

type JsonSender = hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>;

/// A TLS config trusting the collector's CA, offering HTTP/2 (the JSON API rides the gRPC port).
fn json_client(pki: &CollectorPki) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from_pem_slice(
        pki.server_ca.pem.as_bytes(),
    )?)?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// A fresh connection per call, as a script calling the API would make.
async fn json_send(
    tls: &Arc<rustls::ClientConfig>,
    url: &str,
    token: &str,
) -> anyhow::Result<http::Response<hyper::body::Incoming>> {
    let uri: http::Uri = url.parse()?;
    let port = uri.port_u16().unwrap_or(443);
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(rustls_pki_types::ServerName::try_from("localhost")?, tcp)
        .await?;
    let (mut send, conn): (JsonSender, _) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await?;
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Empty::new())?;
    let resp = send.send_request(req).await?;
    ensure!(
        resp.status() == http::StatusCode::OK,
        "{url}: {}",
        resp.status()
    );
    Ok(resp)
}

async fn json_get(
    tls: &Arc<rustls::ClientConfig>,
    url: &str,
    token: &str,
) -> anyhow::Result<bytes::Bytes> {
    use http_body_util::BodyExt;
    Ok(json_send(tls, url, token)
        .await?
        .into_body()
        .collect()
        .await?
        .to_bytes())
}

/// Time from `t0` to the first NDJSON line, and the number of lines.
async fn json_stream(
    tls: &Arc<rustls::ClientConfig>,
    url: &str,
    token: &str,
    t0: Instant,
) -> anyhow::Result<(Duration, usize)> {
    use http_body_util::BodyExt;
    let mut body = json_send(tls, url, token).await?.into_body();
    let mut first = None;
    let mut lines = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            let n = data.iter().filter(|b| **b == b'\n').count();
            if n > 0 && first.is_none() {
                first = Some(t0.elapsed());
            }
            lines += n;
        }
    }
    Ok((first.unwrap_or_default(), lines))
}

/// `msg` with the reader's token.
fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Ok(v) = format!("Bearer {token}").parse() {
        r.metadata_mut().insert("authorization", v);
    }
    r
}

async fn wait_acked(journal: &Arc<Journal>, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while journal.acked_offset() < journal.end_offset() {
        ensure!(
            Instant::now() < deadline,
            "the journal was not acknowledged within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

async fn query_channel(addr: &str, pki: &CollectorPki) -> anyhow::Result<Channel> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.server_ca.pem))
        .domain_name("localhost");
    Ok(Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .connect()
        .await?)
}
