//! Gateway → collector → ClickHouse with real kubectl v1.35 traffic: the real gateway binary ships
//! its journal to the real collector binary (mTLS) backed by the ClickHouse engine, and the real
//! `gatehouse` CLI reads the transcript back with `--collector`, byte for byte as it reads the
//! local journal; a reader outside the reader groups is denied with one line and audited.
#![allow(clippy::unwrap_used)]

use gatehouse_proto::v1::event::Payload;
use gatehouse_tests::apiserver::ApiServerOptions;
use gatehouse_tests::clickhouse::TestClickHouse;
use gatehouse_tests::collector_proc::{CollectorPki, CollectorProc};
use gatehouse_tests::fixture::{AUDIENCE, GatewayEnv};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;

const POD: &str = "payments-api-7c9d8b5f6d-2xk4p";

struct Stack {
    env: GatewayEnv,
    ch: TestClickHouse,
    collector: Option<CollectorProc>,
    /// The collector's flags and port, to start it again after killing it.
    collector_args: Vec<String>,
    port: u16,
    /// The collector's serving CA, for the CLI's --collector-ca.
    collector_ca: PathBuf,
    dir: TempDir,
}

/// A loopback port nobody listens on right now: the gateway is told the collector's address
/// before the collector starts (the collector needs the gateway fixture's OIDC issuer).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn stack() -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let ch = TestClickHouse::start(dir.path()).await.unwrap();
    let pki = CollectorPki::write(dir.path()).unwrap();
    let port = free_port();
    let shipping = pki
        .gateway_shipping(dir.path(), &format!("127.0.0.1:{port}"))
        .unwrap();
    let collector_ca = shipping.ca_file.clone();
    let mut opts = ApiServerOptions::default();
    opts.logs.content.insert(
        format!("payments/{POD}"),
        "line 1\nline 2\nline 3\nline 4\n".into(),
    );
    let env = GatewayEnv::start(
        opts,
        &[vec!["--journal-fsync=always".to_string()], shipping.args].concat(),
    )
    .await
    .unwrap();
    // Readers are checked by the same OIDC issuer as live access.
    let mut args = ch.collector_args();
    args.extend(pki.args());
    args.push("--batch-period=100ms".to_string());
    args.extend(env.collector_reader_args());
    let collector = CollectorProc::start(dir.path(), port, &args).await.unwrap();
    Stack {
        env,
        ch,
        collector: Some(collector),
        collector_args: args,
        port,
        collector_ca,
        dir,
    }
}

/// The real `gatehouse` CLI: (exit code, stdout, stderr).
async fn gatehouse(args: &[&str], source: &[String]) -> (i32, String, String) {
    let bin = gatehouse_tests::binaries::path("gatehouse").unwrap();
    let out = tokio::process::Command::new(bin)
        .args(args)
        .args(source)
        .env_remove("GATEHOUSE_TOKEN")
        .env_remove("GATEHOUSE_COLLECTOR")
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn journal_source(journal: &Path) -> Vec<String> {
    vec![format!("--journal={}", journal.display())]
}

impl Stack {
    /// Waits until ClickHouse holds every journaled event, each exactly once (no physical
    /// duplicates either); returns how many.
    async fn wait_stored(&self, within: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let want = self.env.events().unwrap().len();
            let stored = self
                .ch
                .query_text("SELECT count(), uniqExact(event_id) FROM events")
                .await
                .unwrap_or_default();
            if stored.trim() == format!("{want}\t{want}") {
                return want;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "ClickHouse holds {stored:?}, the journal {want} events; collector log:\n{}",
                self.collector
                    .as_ref()
                    .map(|c| c.log.lock().join("\n"))
                    .unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// One unlabelled sample of the gateway's /metrics.
    async fn gateway_metric(&self, name: &str) -> Option<f64> {
        let (_, metrics) = self.env.gw.ops_get("/metrics").await.ok()?;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
    }

    fn collector_source(&self, token: &str) -> Vec<String> {
        vec![
            format!("--collector=https://127.0.0.1:{}", self.port),
            format!("--collector-ca={}", self.collector_ca.display()),
            "--collector-server-name=localhost".to_string(),
            format!("--token={token}"),
        ]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_transcript_read_back_from_the_collector_matches_the_journal() {
    let s = stack().await;
    let k = &s.env.agent;
    let got = k
        .run(&["get", "configmap", "app-config", "-n", "payments"])
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(got.stdout.contains("app-config"), "{got}");
    let logs = k
        .run(&["logs", POD, "-n", "payments", "--tail", "2"])
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(logs.stdout, "line 3\nline 4\n");
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shipped\n  namespace: payments\ndata:\n  via: collector\n";
    let applied = k
        .run_with_stdin(&["apply", "-f", "-"], Some(manifest))
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(applied.stdout.contains("configmap/shipped"), "{applied}");
    let denied = k
        .run(&["get", "pods", "-n", "payments", "--as", "system:admin"])
        .await
        .unwrap();
    assert_eq!(denied.code, Some(1), "{denied}");
    assert!(denied.stderr.contains("Forbidden"), "{denied}");

    // Every request has its response (or denial) in the journal before the local side is read.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let events = loop {
        let events = s.env.events().unwrap();
        let requests = events
            .iter()
            .filter(|e| matches!(e.payload, Some(Payload::Request(_))))
            .count();
        let responses = events
            .iter()
            .filter(|e| matches!(e.payload, Some(Payload::Response(_))))
            .count();
        if requests == responses || tokio::time::Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let session = events
        .iter()
        .find(|e| matches!(&e.payload, Some(Payload::Denied(_))))
        .expect("the impersonation attempt is recorded as a denial")
        .session_id
        .clone();
    assert!(
        events.iter().all(|e| e.session_id == session),
        "agent-ops' commands share one session"
    );

    s.wait_stored(Duration::from_secs(60)).await;
    // The gateway says so on /metrics: nothing left to ship, an acknowledged offset.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let acked = s
            .gateway_metric("gatehouse_gateway_shipper_acked_offset_bytes")
            .await;
        let backlog = s
            .gateway_metric("gatehouse_gateway_shipper_unacked_bytes")
            .await;
        let events_acked = s
            .gateway_metric("gatehouse_gateway_shipper_events_acked_total")
            .await;
        if acked.is_some_and(|a| a > 0.0)
            && backlog == Some(0.0)
            && events_acked.is_some_and(|n| n >= events.len() as f64)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "shipper metrics: acked {acked:?} backlog {backlog:?} events {events_acked:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let reader = s
        .env
        .issuer
        .token("alice", &["auditors"], AUDIENCE)
        .unwrap();
    let remote = s.collector_source(&reader);
    let local = journal_source(&s.env.gw.journal_dir);
    let prefix = &session[..8];
    for args in [
        vec!["sessions"],
        vec!["sessions", "--json"],
        vec!["sessions", "--who", "agent-ops", "-n", "payments"],
        vec!["show", prefix],
        vec!["show", "-v", &session],
        vec!["export", prefix],
        vec!["export", &session, "--format", "ndjson"],
    ] {
        // The gateway may journal more (a session digest) meanwhile: compare again once shipped.
        let mut tries = 0;
        loop {
            let from_journal = gatehouse(&args, &local).await;
            let from_collector = gatehouse(&args, &remote).await;
            assert_eq!(
                from_journal.0, 0,
                "{args:?} on the journal: {from_journal:?}"
            );
            tries += 1;
            if from_collector == from_journal {
                break;
            }
            assert!(
                tries < 5,
                "`gatehouse {args:?}` differs between the collector and the journal:\n{from_collector:#?}\n{from_journal:#?}"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    // The transcript says what kubectl did.
    let (_, show, _) = gatehouse(&["show", &session], &remote).await;
    for line in [
        "> kubectl get configmap app-config -n payments".to_string(),
        format!("> kubectl logs {POD} -n payments -c api --tail 2"),
    ] {
        assert!(show.lines().any(|l| l == line), "missing {line:?}:\n{show}");
    }
    assert!(
        show.lines()
            .any(|l| l.starts_with("> kubectl ") && l.contains("shipped")),
        "no apply of configmap shipped:\n{show}"
    );
    assert!(
        show.lines()
            .any(|l| l.starts_with("> kubectl get pods -n payments   # denied 403 Forbidden")),
        "no denied impersonation:\n{show}"
    );
    let (_, export, _) = gatehouse(&["export", &session], &remote).await;
    let doc: serde_json::Value = serde_json::from_str(&export).unwrap();
    assert_eq!(doc["actor"], "agent-ops");
    let bodies: Vec<&str> = doc["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["response"]["body"]["text"].as_str())
        .collect();
    assert!(
        bodies.iter().any(|b| b.contains("line 3\nline 4")),
        "the logs response body is exported: {bodies:#?}"
    );

    // Unknown sessions are the same one-line error as locally.
    let missing = gatehouse(&["show", "ffffffff-nope"], &remote).await;
    assert_eq!(missing.0, 2, "{missing:?}");
    assert_eq!(missing, gatehouse(&["show", "ffffffff-nope"], &local).await);

    // A reader outside the reader groups: one line, exit 2, and the attempt is audited.
    let eve = s.env.issuer.token("eve", &["devs"], AUDIENCE).unwrap();
    let (code, out, err) = gatehouse(&["sessions"], &s.collector_source(&eve)).await;
    assert_eq!((code, out.as_str()), (2, ""), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("denied") && err.contains("eve"), "{err}");
    let (code, _, err) = gatehouse(&["show", prefix], &s.collector_source(&eve)).await;
    assert_eq!(code, 2, "{err}");
    let audited = s
        .ch
        .query_text("SELECT method, allowed FROM access_audit WHERE reader = 'eve' ORDER BY time")
        .await
        .unwrap();
    assert_eq!(audited.trim(), "ListSessions\t0\nGetSession\t0");
    let forged = gatehouse(&["sessions"], &s.collector_source("not-a-jwt")).await;
    assert_eq!(forged.0, 2, "{forged:?}");
    assert_eq!(forged.2.lines().count(), 1, "{forged:?}");
}

/// How long the collector stays down under traffic: `GATEHOUSE_OUTAGE_SECS`, 20 s by default
/// (CI); the 10-minute outage is `GATEHOUSE_OUTAGE_SECS=600`.
fn outage() -> Duration {
    let secs = std::env::var("GATEHOUSE_OUTAGE_SECS")
        .ok()
        .map(|s| {
            s.parse::<u64>()
                .unwrap_or_else(|_| panic!("GATEHOUSE_OUTAGE_SECS={s:?} is not whole seconds"))
        })
        .unwrap_or(20);
    Duration::from_secs(secs)
}

/// kubectl clients running side by side while the collector is down.
const OUTAGE_CLIENTS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_down_for_a_while_then_up_loses_and_duplicates_nothing() {
    let mut s = stack().await;
    let k = s.env.agent.clone();
    k.run(&["get", "configmap", "app-config", "-n", "payments"])
        .await
        .unwrap()
        .ok()
        .unwrap();
    let before = s.wait_stored(Duration::from_secs(60)).await;
    s.collector.take().unwrap().kill().await.unwrap();

    // kubectl keeps working while the collector is away, from several clients at once: each
    // creates configmaps and reads every third back. The journal holds the backlog and the
    // shipper retries.
    let down_for = outage();
    let until = tokio::time::Instant::now() + down_for;
    let clients: Vec<_> = (0..OUTAGE_CLIENTS)
        .map(|c| {
            let k = k.clone();
            tokio::spawn(async move {
                let mut created = Vec::new();
                let mut i = 0;
                while tokio::time::Instant::now() < until || created.is_empty() {
                    let name = format!("down-{c}-{i}");
                    k.run(&[
                        "create",
                        "configmap",
                        &name,
                        "-n",
                        "payments",
                        "--from-literal=a=b",
                    ])
                    .await
                    .unwrap()
                    .ok()
                    .unwrap();
                    if i % 3 == 0 {
                        let got = k
                            .run(&["get", "configmap", &name, "-n", "payments", "-o", "name"])
                            .await
                            .unwrap()
                            .ok()
                            .unwrap();
                        assert_eq!(got.stdout.trim(), format!("configmap/{name}"));
                    }
                    created.push(name);
                    i += 1;
                }
                created
            })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + down_for.max(Duration::from_secs(30));
    loop {
        let backlog = s
            .gateway_metric("gatehouse_gateway_shipper_unacked_bytes")
            .await;
        let retries = s
            .gateway_metric("gatehouse_gateway_shipper_retries_total")
            .await;
        if backlog.is_some_and(|b| b > 0.0) && retries.is_some_and(|r| r >= 1.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "backlog {backlog:?} retries {retries:?} while the collector is down"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut created = Vec::new();
    for c in clients {
        created.extend(c.await.unwrap());
    }
    let backlog = s
        .gateway_metric("gatehouse_gateway_shipper_unacked_bytes")
        .await
        .unwrap();
    let stored = s.ch.query_text("SELECT count() FROM events").await.unwrap();
    assert_eq!(
        stored.trim(),
        before.to_string(),
        "nothing arrives while it is down"
    );
    println!(
        "collector down {down_for:?}: {} configmaps created by {OUTAGE_CLIENTS} kubectl clients, {} events journaled, backlog {backlog} bytes",
        created.len(),
        s.env.events().unwrap().len()
    );

    s.collector = Some(
        CollectorProc::start(s.dir.path(), s.port, &s.collector_args)
            .await
            .unwrap(),
    );
    let drained_from = tokio::time::Instant::now();
    let after = s.wait_stored(Duration::from_secs(60) + down_for / 2).await;
    assert!(after >= before + 2 * created.len(), "{before} → {after}");
    // The backlog drains: nothing left unacknowledged on the gateway.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let backlog = s
            .gateway_metric("gatehouse_gateway_shipper_unacked_bytes")
            .await;
        if backlog == Some(0.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "backlog {backlog:?} after the collector came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "backlog drained {:.1}s after the restart: {after} events in ClickHouse, each once",
        drained_from.elapsed().as_secs_f64()
    );
    let creates =
        s.ch.query_text("SELECT count() FROM events WHERE kind = 'request' AND verb = 'create'")
            .await
            .unwrap();
    assert_eq!(
        creates.trim(),
        created.len().to_string(),
        "each create stored once"
    );
    let session = s.env.events().unwrap()[0].session_id.clone();
    let reader = s
        .env
        .issuer
        .token("alice", &["auditors"], AUDIENCE)
        .unwrap();
    let remote = gatehouse(&["show", &session], &s.collector_source(&reader)).await;
    let local = gatehouse(&["show", &session], &journal_source(&s.env.gw.journal_dir)).await;
    assert_eq!(remote, local);
    assert_eq!(
        remote
            .1
            .lines()
            .filter(|l| *l == "> kubectl create configmap -n payments -f -")
            .count(),
        created.len(),
        "{}",
        remote.1
    );
    // The names travel in the request bodies, exported from ClickHouse.
    let export = gatehouse(
        &["export", &session, "--format", "ndjson"],
        &s.collector_source(&reader),
    )
    .await;
    // Every `down-C-I` name in the export, found in one pass (a 10-minute outage exports MBs).
    let exported: std::collections::HashSet<&str> = export
        .1
        .match_indices("down-")
        .map(|(at, _)| {
            let rest = &export.1[at..];
            let end = rest[5..]
                .find(|c: char| !(c.is_ascii_digit() || c == '-'))
                .map_or(rest.len(), |e| e + 5);
            &rest[..end]
        })
        .collect();
    for name in &created {
        assert!(
            exported.contains(name.as_str()),
            "{name} missing from the exported request bodies"
        );
    }
}
