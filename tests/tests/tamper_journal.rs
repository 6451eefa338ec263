//! Tamper evidence end to end with real kubectl v1.35 through the real gateway binary: sessions
//! get signed digests (periodic, on close, and on SIGTERM), the key is published at `/keys`, and
//! the real `gatehouse verify` accepts the journal and exported files as recorded, and names the
//! event when an exported frame is changed (readable field or encoding), a line is dropped or two
//! are swapped. Journal and export files are owner-only (0600).
#![allow(clippy::unwrap_used)]

use base64::Engine;
use gatehouse_proto::v1::event::Payload;
use gatehouse_proto::v1::{Event, StreamChannel};
use gatehouse_tests::apiserver::ApiServerOptions;
use gatehouse_tests::fixture::GatewayEnv;
use prost::Message;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const MARKER: &str = "frame-marker-4711";

/// A fresh Ed25519 key: (private PKCS#8 PEM path, public SPKI PEM path, raw public key).
fn signing_key(dir: &Path, name: &str) -> (PathBuf, PathBuf, Vec<u8>) {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    std::fs::write(&private, kp.serialize_pem()).unwrap();
    std::fs::write(&public, kp.public_key_pem()).unwrap();
    (private, public, kp.public_key_raw().to_vec())
}

fn pod() -> ApiServerOptions {
    ApiServerOptions {
        objects: vec![json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "checkout-7b9", "namespace": "payments"},
            "spec": {"containers": [{"name": "app", "image": "busybox", "stdin": true}]}
        })],
        ..Default::default()
    }
}

/// The real `gatehouse` CLI: (exit code, stdout, stderr).
async fn gatehouse(args: &[&str]) -> (i32, String, String) {
    let bin = gatehouse_tests::binaries::path("gatehouse").unwrap();
    let out = tokio::process::Command::new(bin)
        .args(args)
        .env_remove("GATEHOUSE_COLLECTOR")
        .env_remove("GATEHOUSE_VERIFY_KEY")
        .env_remove("GATEHOUSE_KEYS_URL")
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn read_journal(dir: &Path) -> Vec<Event> {
    gatehouse_journal::Reader::read_all(dir)
        .unwrap()
        .into_iter()
        .map(|r| Event::decode(r.payload.as_slice()).unwrap())
        .collect()
}

fn closing_digest(events: &[Event], session: &str) -> bool {
    events.iter().any(|e| {
        e.session_id == session && matches!(&e.payload, Some(Payload::Digest(d)) if d.closed)
    })
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_signed_verified_and_tampering_names_the_event() {
    let keys = tempfile::tempdir().unwrap();
    let (private, public, raw) = signing_key(keys.path(), "gateway");
    let env = GatewayEnv::start(
        pod(),
        &[
            format!("--signing-key={}", private.display()),
            "--digest-interval=200ms".to_string(),
            "--session-idle-gap=5s".to_string(),
        ],
    )
    .await
    .unwrap();
    let journal = env.gw.journal_dir.display().to_string();
    let k = &env.agent;
    k.run(&["get", "configmap", "-n", "payments"])
        .await
        .unwrap()
        .ok()
        .unwrap();
    let exec = k
        .run(&[
            "exec",
            "checkout-7b9",
            "-n",
            "payments",
            "-c",
            "app",
            "--",
            "sh",
            "-c",
            &format!("echo {MARKER}"),
        ])
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(exec.stdout, format!("{MARKER}\n"));

    // The session of the exec is sealed with a closing digest once idle past the gap.
    let frame = |e: &Event| {
        matches!(&e.payload, Some(Payload::StreamFrame(f))
            if f.channel == StreamChannel::Stdout as i32 && f.data.as_ref() == format!("{MARKER}\n").as_bytes())
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (session, frame_seq, frame_id) = loop {
        let events = read_journal(&env.gw.journal_dir);
        if let Some(f) = events.iter().find(|e| frame(e))
            && closing_digest(&events, &f.session_id)
        {
            break (f.session_id.clone(), f.seq, f.event_id.clone());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no closing digest for the exec's session: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let events: Vec<Event> = read_journal(&env.gw.journal_dir)
        .into_iter()
        .filter(|e| e.session_id == session)
        .collect();
    let last = events.last().unwrap();
    let Some(Payload::Digest(d)) = &last.payload else {
        panic!("the session does not end with its digest: {last:?}")
    };
    assert!(d.closed);
    assert_eq!(
        d.last_seq,
        last.seq - 1,
        "the closing digest covers every event"
    );
    assert_eq!(
        d.key_id,
        gatehouse_proto::chain::key_id(&raw.clone().try_into().unwrap())
    );

    // The key is published as a JWKS.
    let (status, body) = env.gw.ops_get("/keys").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let jwks: Value = serde_json::from_str(&body).unwrap();
    let jwk = &jwks["keys"][0];
    assert_eq!(
        (jwk["kty"].as_str(), jwk["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    assert_eq!(jwk["kid"].as_str(), Some(d.key_id.as_str()));
    assert_eq!(
        jwk["x"].as_str().unwrap(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw)
    );

    // The journal verifies, with the key file or the published JWKS.
    let pubkey = format!("--key={}", public.display());
    let src = format!("--journal={journal}");
    let (code, out, err) = gatehouse(&["verify", &session, &src, &pubkey]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("verified") && out.contains("session closed"),
        "{out}"
    );
    let keys_url = format!("--keys-url={}/keys", env.gw.ops_url);
    let (code, out, err) = gatehouse(&["verify", &session, &src, &keys_url]).await;
    assert_eq!(code, 0, "{out}{err}");
    // Another key: the digest is not trusted. No key at all: a usage error.
    let (_, other, _) = signing_key(keys.path(), "other");
    let other = format!("--key={}", other.display());
    let (code, _, err) = gatehouse(&["verify", &session, &src, &other]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not among the given keys"), "{err}");
    let (code, _, err) = gatehouse(&["verify", &session, &src]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--key"), "{err}");

    // Journal files are owner-only.
    for entry in std::fs::read_dir(&env.gw.journal_dir).unwrap() {
        let p = entry.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{} is not 0600", p.display());
    }
    assert_eq!(mode(&env.gw.journal_dir), 0o700);

    // Exports are owner-only and verify as exported, in both formats.
    let out_dir = tempfile::tempdir().unwrap();
    let ndjson = out_dir.path().join("session.ndjson");
    let json_file = out_dir.path().join("session.json");
    for (format, file) in [("ndjson", &ndjson), ("json", &json_file)] {
        let o = format!("--output={}", file.display());
        let (code, _, err) = gatehouse(&["export", &session, &src, "--format", format, &o]).await;
        assert_eq!(code, 0, "{err}");
        assert_eq!(mode(file), 0o600, "{format} export is not 0600");
        let f = format!("--file={}", file.display());
        let (code, out, err) = gatehouse(&["verify", &session, &f, &pubkey]).await;
        assert_eq!(code, 0, "{format}: {out}{err}");
    }
    // An existing file is tightened to 0600 too.
    std::fs::set_permissions(&ndjson, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = format!("--output={}", ndjson.display());
    let (code, _, err) = gatehouse(&["export", &session, &src, "--format=ndjson", &o]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(mode(&ndjson), 0o600);

    let lines: Vec<String> = std::fs::read_to_string(&ndjson)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let at = lines
        .iter()
        .position(|l| l.contains(MARKER) && l.contains("stream_frame"))
        .unwrap();
    let tampered = out_dir.path().join("tampered.ndjson");
    let f = format!("--file={}", tampered.display());
    let verify_tampered = |lines: Vec<String>| {
        std::fs::write(&tampered, lines.join("\n")).unwrap();
        let f = f.clone();
        let pubkey = pubkey.clone();
        let session = session.clone();
        async move { gatehouse(&["verify", &session, &f, &pubkey]).await }
    };
    let named = format!("seq {frame_seq} (event {frame_id})");

    // 1. The frame's readable text changed.
    let mut edited = lines.clone();
    edited[at] = edited[at].replace(MARKER, "frame-marker-0000");
    let (code, _, err) = verify_tampered(edited).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&named), "{err}");
    assert!(err.contains("stream_frame.text"), "{err}");

    // 2. The frame changed consistently, text and encoding: the chain breaks at that event.
    let mut obj: Value = serde_json::from_str(&lines[at]).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut ev = Event::decode(
        b64.decode(obj["proto"].as_str().unwrap())
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    if let Some(Payload::StreamFrame(fr)) = &mut ev.payload {
        fr.data = b"frame-marker-0000\n".to_vec().into();
    }
    obj["stream_frame"]["text"] = json!("frame-marker-0000\n");
    obj["proto"] = json!(b64.encode(ev.encode_to_vec()));
    let mut forged = lines.clone();
    forged[at] = obj.to_string();
    let (code, _, err) = verify_tampered(forged).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&named) && err.contains("altered"), "{err}");

    // 3. The frame's line dropped.
    let mut dropped = lines.clone();
    dropped.remove(at);
    let (code, _, err) = verify_tampered(dropped).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("seq {frame_seq} (event (missing))")) && err.contains("missing"),
        "{err}"
    );

    // 4. The frame's line swapped with the one after it.
    let mut swapped = lines.clone();
    swapped.swap(at, at + 1);
    let (code, _, err) = verify_tampered(swapped).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("out of order"), "{err}");
    assert!(err.contains(&format!("seq {}", frame_seq + 1)), "{err}");

    // 5. The closing digest cut off: the session can no longer pass as closed. (Events after
    // the last digest are reported unsigned; a cut exactly at a periodic digest reads as a
    // session that was still open then.)
    let mut cut = lines.clone();
    cut.pop();
    let (code, out, err) = verify_tampered(cut).await;
    assert!(!out.contains("session closed"), "{out}");
    assert!(
        (code == 1 && err.contains("not covered by a signed digest"))
            || (code == 0 && out.contains("still open")),
        "{code}: {out}{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_seals_open_sessions() {
    let keys = tempfile::tempdir().unwrap();
    let (private, public, _) = signing_key(keys.path(), "gateway");
    // Defaults: a 60s digest interval and a 10m idle gap, so only shutdown seals the session.
    let env = GatewayEnv::start(
        ApiServerOptions::default(),
        &[format!("--signing-key={}", private.display())],
    )
    .await
    .unwrap();
    env.agent
        .run(&["get", "configmaps", "-n", "payments"])
        .await
        .unwrap()
        .ok()
        .unwrap();
    let journal = env.gw.journal_dir.clone();
    let before = read_journal(&journal);
    let session = before[0].session_id.clone();
    assert!(
        !before
            .iter()
            .any(|e| matches!(e.payload, Some(Payload::Digest(_))))
    );
    let src = format!("--journal={}", journal.display());
    let pubkey = format!("--key={}", public.display());
    let (code, _, err) = gatehouse(&["verify", &session, &src, &pubkey]).await;
    assert_eq!(code, 1, "unsigned yet: {err}");
    assert!(err.contains("not covered by a signed digest"), "{err}");

    let status = env.gw.stop().await.unwrap();
    assert!(status.success(), "{status:?}");
    let after = read_journal(&journal);
    assert!(closing_digest(&after, &session), "{after:?}");
    let (code, out, err) = gatehouse(&["verify", &session, &src, &pubkey]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("session closed"), "{out}");
}
