//! Tampering in ClickHouse is detected: the real gateway (with a signing key) ships a kubectl
//! session to the real collector and the ClickHouse engine; the real `gatehouse verify
//! --collector` accepts it as stored, then names the event when a row's payload is edited, two
//! rows are reordered (their `seq` swapped) or a row is deleted.
#![allow(clippy::unwrap_used)]

use gatehouse_proto::v1::Event;
use gatehouse_proto::v1::event::Payload;
use gatehouse_tests::apiserver::ApiServerOptions;
use gatehouse_tests::clickhouse::TestClickHouse;
use gatehouse_tests::collector_proc::{CollectorPki, CollectorProc};
use gatehouse_tests::fixture::{AUDIENCE, GatewayEnv};
use prost::Message;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn gatehouse(args: &[&str]) -> (i32, String, String) {
    let bin = gatehouse_tests::binaries::path("gatehouse").unwrap();
    let out = tokio::process::Command::new(bin)
        .args(args)
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

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn read_journal(dir: &Path) -> Vec<Event> {
    gatehouse_journal::Reader::read_all(dir)
        .unwrap()
        .into_iter()
        .map(|r| Event::decode(r.payload.as_slice()).unwrap())
        .collect()
}

/// Runs a mutation and waits for it (the fixture and a real server both honour mutations_sync).
async fn mutate(ch: &TestClickHouse, sql: &str) {
    ch.query_text(&format!("{sql} SETTINGS mutations_sync = 2"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_reordered_and_deleted_rows_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let ch = TestClickHouse::start(dir.path()).await.unwrap();
    let pki = CollectorPki::write(dir.path()).unwrap();
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let signing = write(dir.path(), "signing.pem", &kp.serialize_pem());
    let public = write(dir.path(), "signing.pub.pem", &kp.public_key_pem());
    let port = free_port();
    let shipping = pki
        .gateway_shipping(dir.path(), &format!("127.0.0.1:{port}"))
        .unwrap();
    let collector_ca = shipping.ca_file.clone();
    let env = GatewayEnv::start(
        ApiServerOptions::default(),
        &[
            vec![
                "--journal-fsync=always".to_string(),
                format!("--signing-key={}", signing.display()),
                "--digest-interval=200ms".to_string(),
                "--session-idle-gap=5s".to_string(),
            ],
            shipping.args,
        ]
        .concat(),
    )
    .await
    .unwrap();
    let mut args = ch.collector_args();
    args.extend(pki.args());
    args.push("--batch-period=100ms".to_string());
    args.extend(env.collector_reader_args());
    let collector = CollectorProc::start(dir.path(), port, &args).await.unwrap();

    for cmd in [
        &["get", "configmaps", "-n", "payments"][..],
        &["get", "configmap", "app-config", "-n", "payments"][..],
        &["get", "namespaces"][..],
    ] {
        env.agent.run(cmd).await.unwrap().ok().unwrap();
    }

    // The session is sealed (closing digest) and every one of its events is stored.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (session, events) = loop {
        let all = read_journal(&env.gw.journal_dir);
        let sealed = all.iter().find_map(|e| match &e.payload {
            Some(Payload::Digest(d)) if d.closed => Some(e.session_id.clone()),
            _ => None,
        });
        if let Some(s) = sealed {
            let evs: Vec<Event> = all.into_iter().filter(|e| e.session_id == s).collect();
            let stored = ch
                .query_text(&format!(
                    "SELECT count() FROM events WHERE session_id = '{s}'"
                ))
                .await
                .unwrap_or_default();
            if stored.trim() == evs.len().to_string() {
                break (s, evs);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session was not sealed and stored in time; collector log:\n{}",
            collector.log.lock().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        events.len() >= 7,
        "three exchanges and a digest: {events:?}"
    );

    let reader = env.issuer.token("alice", &["auditors"], AUDIENCE).unwrap();
    let source = [
        format!("--collector=https://{}", collector.addr),
        format!("--collector-ca={}", collector_ca.display()),
        "--collector-server-name=localhost".to_string(),
        format!("--token={reader}"),
        format!("--key={}", public.display()),
    ];
    let verify = || {
        let mut a = vec!["verify".to_string(), session.clone()];
        a.extend(source.iter().cloned());
        async move {
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            gatehouse(&a).await
        }
    };
    let (code, out, err) = verify().await;
    assert_eq!(code, 0, "as stored: {out}{err}");
    assert!(out.contains("session closed"), "{out}");

    let second = &events[1];
    let third = &events[2];

    // 1. A row's payload edited (the response's status code, or the request's command).
    let original = ch
        .query_text(&format!(
            "SELECT hex(payload) FROM events WHERE event_id = toUUID('{}')",
            second.event_id
        ))
        .await
        .unwrap();
    let original = original.trim().to_string();
    let mut edited = second.clone();
    match &mut edited.payload {
        Some(Payload::Response(r)) => r.status_code = if r.status_code == 200 { 404 } else { 200 },
        Some(Payload::Request(r)) => r.command = "kubectl get secrets -A".into(),
        _ => edited.time_unix_nano += 1,
    }
    let hex: String = edited
        .encode_to_vec()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert_ne!(hex, original);
    let set = |hex: &str| {
        format!(
            "ALTER TABLE events UPDATE payload = unhex('{hex}') WHERE event_id = toUUID('{}')",
            second.event_id
        )
    };
    mutate(&ch, &set(&hex)).await;
    let (code, _, err) = verify().await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("seq 2 (event {})", second.event_id)) && err.contains("altered"),
        "{err}"
    );
    mutate(&ch, &set(&original)).await;
    let (code, out, err) = verify().await;
    assert_eq!(code, 0, "restored: {out}{err}");

    // 2. Two rows reordered: their seq columns swapped.
    let swap = format!(
        "ALTER TABLE events UPDATE seq = multiIf(seq = 2, 3, seq = 3, 2, seq) \
         WHERE session_id = '{session}' AND seq IN (2, 3)"
    );
    mutate(&ch, &swap).await;
    let (code, _, err) = verify().await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("seq 3 (event {})", third.event_id)) && err.contains("out of order"),
        "{err}"
    );
    mutate(&ch, &swap).await;
    let (code, out, err) = verify().await;
    assert_eq!(code, 0, "restored: {out}{err}");

    // 3. A row deleted.
    mutate(
        &ch,
        &format!(
            "ALTER TABLE events DELETE WHERE event_id = toUUID('{}')",
            second.event_id
        ),
    )
    .await;
    let (code, _, err) = verify().await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("seq 2 (event (missing))") && err.contains(&third.event_id),
        "{err}"
    );
}
