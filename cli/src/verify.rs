//! `gatehouse verify`: checks one session's hash chain, its signed digests and its completeness
//! (seq 1.. without gaps, every event covered by a signed digest), from the journal, a collector
//! or an exported file, and names the first broken event. Exit 1 means "verified: broken".
use crate::error::CliError;
use base64::Engine;
use ed25519_dalek::pkcs8::DecodePublicKey;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use gatehouse_proto::chain::{digest_signed_bytes, event_hash, key_id};
use gatehouse_proto::json::event_json;
use gatehouse_proto::v1::{Event, SessionDigest, event::Payload};
use prost::Message;
use serde_json::Value;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Public keys by key id (the RFC 7638 thumbprint, computed here, never taken on trust).
#[derive(Debug, Default)]
pub struct Keys(HashMap<String, VerifyingKey>);

impl Keys {
    fn add(&mut self, key: VerifyingKey) {
        self.0.insert(key_id(key.as_bytes()), key);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The first thing found wrong, naming the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub seq: u64,
    /// The event's id, or "(missing)" for an event that is not there.
    pub event_id: String,
    pub reason: String,
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub events: u64,
    /// The highest seq covered by a valid signed digest.
    pub covered: u64,
    pub digests: u64,
    /// The last digest says the session ended.
    pub closed: bool,
    pub key_ids: Vec<String>,
}

/// Loads `--key` files (SPKI PEM, or a JWKS document) and the JWKS at `--keys-url`.
pub fn load_keys(
    files: &[PathBuf],
    url: Option<&str>,
    url_ca: Option<&Path>,
) -> Result<Keys, CliError> {
    let mut keys = Keys::default();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| {
            CliError::VerifyInput(format!("cannot read --key {}: {e}", f.display()))
        })?;
        if text.trim_start().starts_with('{') {
            add_jwks(&mut keys, &text, &f.display().to_string())?;
        } else {
            let key = VerifyingKey::from_public_key_pem(&text).map_err(|e| {
                CliError::VerifyInput(format!(
                    "--key {} is not an Ed25519 public key in PEM (the chart's gatehouse-signing-key ConfigMap holds it): {e}",
                    f.display()
                ))
            })?;
            keys.add(key);
        }
    }
    if let Some(url) = url {
        let body = crate::keys_url::fetch(url, url_ca)?;
        add_jwks(&mut keys, &body, url)?;
    }
    if keys.is_empty() {
        return Err(CliError::VerifyInput(
            "verify needs the gateway's public key: pass --key PEM (from the chart's gatehouse-signing-key ConfigMap) or --keys-url http://GATEWAY:9090/keys".into(),
        ));
    }
    Ok(keys)
}

fn add_jwks(keys: &mut Keys, text: &str, from: &str) -> Result<(), CliError> {
    let bad =
        |why: String| CliError::VerifyInput(format!("{from} is not a JWKS of Ed25519 keys: {why}"));
    let doc: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let list = doc["keys"]
        .as_array()
        .ok_or_else(|| bad("no \"keys\" array".into()))?;
    for k in list {
        if k["kty"] != "OKP" || k["crv"] != "Ed25519" {
            continue;
        }
        let x = k["x"].as_str().unwrap_or_default();
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(x)
            .map_err(|e| bad(format!("\"x\" is not base64url: {e}")))?;
        let raw: [u8; 32] = raw
            .try_into()
            .map_err(|_| bad("\"x\" is not 32 bytes".into()))?;
        let key = VerifyingKey::from_bytes(&raw).map_err(|e| bad(e.to_string()))?;
        keys.add(key);
    }
    Ok(())
}

/// Events of an exported file (`gatehouse export`, json or ndjson), in file order. Each event is
/// taken from its recorded encoding (`proto`), and its readable fields must say the same.
pub fn load_export(path: &Path) -> Result<Vec<Event>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::VerifyInput(format!("cannot read --file {}: {e}", path.display()))
    })?;
    let bad = |why: String| {
        CliError::VerifyInput(format!(
            "--file {} is not a gatehouse export (json or ndjson): {why}",
            path.display()
        ))
    };
    let objects: Vec<Value> = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(doc)) if doc.contains_key("events") => doc
            .get("events")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| bad("\"events\" is not an array".into()))?,
        _ => text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| serde_json::from_str(l).map_err(|e| bad(format!("line {}: {e}", n + 1))))
            .collect::<Result<_, _>>()?,
    };
    let mut events = Vec::with_capacity(objects.len());
    for (n, obj) in objects.iter().enumerate() {
        let b64 = obj["proto"].as_str().ok_or_else(|| {
            bad(format!(
                "event {} has no \"proto\" (its recorded encoding): export it again with this gatehouse",
                n + 1
            ))
        })?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| bad(format!("event {}: \"proto\" is not base64: {e}", n + 1)))?;
        let event = Event::decode(bytes.as_slice()).map_err(|e| {
            tampered_export(
                n,
                obj,
                format!("its \"proto\" is not a gatehouse.v1.Event: {e}"),
            )
        })?;
        let expected = event_json(&event);
        if let Some(field) = first_difference(&expected, obj, "") {
            return Err(CliError::Broken(describe(
                &event.session_id,
                &Broken {
                    seq: event.seq,
                    event_id: event.event_id.clone(),
                    reason: format!(
                        "its exported field `{field}` differs from the event's recorded encoding"
                    ),
                },
            )));
        }
        events.push(event);
    }
    Ok(events)
}

fn tampered_export(n: usize, obj: &Value, reason: String) -> CliError {
    CliError::Broken(format!(
        "event {} of the file (seq {}, {}) is broken: {reason}",
        n + 1,
        obj["seq"],
        obj["event_id"].as_str().unwrap_or("no event_id")
    ))
}

/// The path of the first field where `got` differs from `want` (`proto` itself excepted).
fn first_difference(want: &Value, got: &Value, path: &str) -> Option<String> {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match g.get(k) {
                    Some(gv) => {
                        if let Some(d) = first_difference(wv, gv, &p) {
                            return Some(d);
                        }
                    }
                    None => return Some(p),
                }
            }
            g.keys().find(|k| !w.contains_key(*k)).map(|k| {
                if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                }
            })
        }
        (Value::Array(w), Value::Array(g)) => {
            if w.len() != g.len() {
                return Some(path.to_string());
            }
            w.iter()
                .zip(g)
                .enumerate()
                .find_map(|(i, (a, b))| first_difference(a, b, &format!("{path}[{i}]")))
        }
        _ if want == got => None,
        _ => Some(path.to_string()),
    }
}

/// Checks the events of `session`, in the order the source returned them.
pub fn verify(session: &str, events: &[&Event], keys: &Keys) -> Result<Verified, Broken> {
    let Some(first) = events.first() else {
        return Err(Broken {
            seq: 1,
            event_id: "(missing)".into(),
            reason: "the session has no events".into(),
        });
    };
    // 1. Order and completeness of the sequence: 1, 2, 3, … as returned.
    for (i, e) in events.iter().enumerate() {
        let want = i as u64 + 1;
        if e.seq == want {
            continue;
        }
        if let Some(later) = events[i + 1..].iter().find(|x| x.seq == want) {
            return Err(broken(
                e,
                format!(
                    "out of order: it stands where seq {want} belongs, and seq {want} ({}) comes after it",
                    later.event_id
                ),
            ));
        }
        if e.seq > want {
            let range = if e.seq == want + 1 {
                format!("seq {want} is")
            } else {
                format!("seqs {want}..={} are", e.seq - 1)
            };
            return Err(Broken {
                seq: want,
                event_id: "(missing)".into(),
                reason: format!(
                    "{range} missing: seq {} ({}) follows seq {}",
                    e.seq,
                    e.event_id,
                    want - 1
                ),
            });
        }
        return Err(broken(
            e,
            format!(
                "duplicate or out of order: it appears after seq {}",
                want - 1
            ),
        ));
    }
    // 2. The hash chain.
    if !first.prev_hash.is_empty() {
        return Err(broken(
            first,
            "the first event has a prev_hash: events before it were removed".into(),
        ));
    }
    let hashes: Vec<[u8; 32]> = events.iter().map(|e| event_hash(e)).collect();
    let link_ok = |i: usize| i >= events.len() || events[i].prev_hash.as_ref() == hashes[i - 1];
    if let Some(i) = (1..events.len()).find(|&i| !link_ok(i)) {
        // Editing event k breaks only the link k → k+1; editing k+1's prev_hash breaks both
        // k → k+1 and k+1 → k+2.
        let altered = if !link_ok(i + 1) { i } else { i - 1 };
        let next = &events[altered + 1];
        return Err(broken(
            events[altered],
            format!(
                "altered: its hash no longer matches the prev_hash recorded in seq {} ({})",
                next.seq, next.event_id
            ),
        ));
    }
    // 3. Signed digests.
    let mut covered = 0u64;
    let mut digests = 0u64;
    let mut closed = false;
    let mut key_ids = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let Some(Payload::Digest(d)) = &e.payload else {
            continue;
        };
        check_digest(session, e, d, &hashes, covered, keys).map_err(|why| broken(e, why))?;
        if let Some(next) = events.get(i + 1)
            && d.closed
        {
            return Err(broken(
                next,
                format!("follows the session's closing digest (seq {})", e.seq),
            ));
        }
        covered = covered.max(d.last_seq);
        digests += 1;
        closed = d.closed;
        if !key_ids.contains(&d.key_id) {
            key_ids.push(d.key_id.clone());
        }
    }
    // 4. Every event is covered by a signature (digest events sign themselves).
    if let Some(e) = events
        .iter()
        .find(|e| e.seq > covered && !matches!(e.payload, Some(Payload::Digest(_))))
    {
        return Err(broken(
            e,
            format!(
                "not covered by a signed digest (digests cover seq 1..={covered}); if the session is still open, the gateway signs it within its --digest-interval"
            ),
        ));
    }
    Ok(Verified {
        events: events.len() as u64,
        covered,
        digests,
        closed,
        key_ids,
    })
}

fn broken(e: &Event, reason: String) -> Broken {
    Broken {
        seq: e.seq,
        event_id: e.event_id.clone(),
        reason,
    }
}

fn check_digest(
    session: &str,
    e: &Event,
    d: &SessionDigest,
    hashes: &[[u8; 32]],
    covered_before: u64,
    keys: &Keys,
) -> Result<(), String> {
    let key = keys.0.get(&d.key_id).ok_or_else(|| {
        format!(
            "digest signed by key {:?}, which is not among the given keys",
            d.key_id
        )
    })?;
    let sig = Signature::from_slice(&d.signature)
        .map_err(|_| "digest signature is not 64 bytes".to_string())?;
    key.verify(&digest_signed_bytes(d), &sig)
        .map_err(|_| "digest signature is invalid: the digest was altered".to_string())?;
    if d.session_id != session {
        return Err(format!("digest is for session {}", d.session_id));
    }
    if d.last_seq == 0 || d.last_seq >= e.seq {
        return Err(format!(
            "digest claims to cover seq {} from seq {}",
            d.last_seq, e.seq
        ));
    }
    if d.event_count != d.last_seq {
        return Err(format!(
            "digest counts {} events up to seq {}",
            d.event_count, d.last_seq
        ));
    }
    let idx = (d.last_seq - 1) as usize;
    if hashes.get(idx).map(|h| h.as_slice()) != Some(d.last_hash.as_ref()) {
        return Err(format!(
            "the chain up to seq {} does not match this signed digest: an event in seq {}..={} was altered and the chain recomputed",
            d.last_seq,
            covered_before + 1,
            d.last_seq
        ));
    }
    Ok(())
}

/// One line naming the broken event.
pub fn describe(session: &str, b: &Broken) -> String {
    format!(
        "session {session} fails verification at seq {} (event {}): {}",
        b.seq, b.event_id, b.reason
    )
}

/// Runs the checks and prints the verdict; a broken session is `CliError::Broken` (exit 1).
pub fn report(
    session: &str,
    events: &[Event],
    keys: &Keys,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let evs: Vec<&Event> = events.iter().filter(|e| e.session_id == session).collect();
    match verify(session, &evs, keys) {
        Ok(v) => {
            writeln!(
                out,
                "session {session}: verified {} events (seq 1..={}), hash chain intact, {} signed digest(s) by key {} cover seq 1..={}, {}",
                v.events,
                v.events,
                v.digests,
                v.key_ids.join(", "),
                v.covered,
                if v.closed {
                    "session closed"
                } else {
                    "session still open at its last digest"
                }
            )?;
            Ok(())
        }
        Err(b) => Err(CliError::Broken(describe(session, &b))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use gatehouse_proto::v1::RequestStarted;

    fn session(n: u64, close: bool) -> (Vec<Event>, Keys) {
        let sk = SigningKey::from_bytes(&[9u8; 32]);
        let mut keys = Keys::default();
        keys.add(sk.verifying_key());
        let mut out: Vec<Event> = Vec::new();
        for seq in 1..=n + 1 {
            let prev = out
                .last()
                .map(|e| event_hash(e).to_vec())
                .unwrap_or_default();
            let payload = if seq == n + 1 {
                let mut d = SessionDigest {
                    session_id: "s".into(),
                    last_seq: n,
                    last_hash: prev.clone().into(),
                    event_count: n,
                    closed: close,
                    key_id: key_id(sk.verifying_key().as_bytes()),
                    ..Default::default()
                };
                d.signature = sk.sign(&digest_signed_bytes(&d)).to_bytes().to_vec().into();
                Payload::Digest(d)
            } else {
                Payload::Request(RequestStarted {
                    command: format!("kubectl get pods #{seq}"),
                    ..Default::default()
                })
            };
            out.push(Event {
                event_id: format!("e{seq}"),
                session_id: "s".into(),
                seq,
                prev_hash: prev.into(),
                payload: Some(payload),
                ..Default::default()
            });
        }
        (out, keys)
    }

    fn check(events: &[Event], keys: &Keys) -> Result<Verified, Broken> {
        verify("s", &events.iter().collect::<Vec<_>>(), keys)
    }

    #[test]
    fn an_intact_signed_session_verifies() {
        let (evs, keys) = session(4, true);
        let v = check(&evs, &keys).unwrap();
        assert_eq!((v.events, v.covered, v.digests, v.closed), (5, 4, 1, true));
    }

    #[test]
    fn an_edited_event_is_named() {
        let (mut evs, keys) = session(4, true);
        if let Some(Payload::Request(r)) = &mut evs[1].payload {
            r.command = "kubectl get secrets".into();
        }
        let b = check(&evs, &keys).unwrap_err();
        assert_eq!((b.seq, b.event_id.as_str()), (2, "e2"), "{b:?}");
        assert!(b.reason.contains("altered"), "{b:?}");
    }

    #[test]
    fn a_dropped_event_is_named() {
        let (mut evs, keys) = session(4, true);
        evs.remove(2);
        let b = check(&evs, &keys).unwrap_err();
        assert_eq!(b.seq, 3, "{b:?}");
        assert!(b.reason.contains("missing"), "{b:?}");
    }

    #[test]
    fn reordered_events_are_named() {
        let (mut evs, keys) = session(4, true);
        evs.swap(1, 2);
        let b = check(&evs, &keys).unwrap_err();
        assert_eq!((b.seq, b.event_id.as_str()), (3, "e3"), "{b:?}");
        assert!(b.reason.contains("out of order"), "{b:?}");
    }

    #[test]
    fn a_recomputed_chain_fails_the_signature() {
        let (mut evs, keys) = session(4, true);
        if let Some(Payload::Request(r)) = &mut evs[0].payload {
            r.command = "kubectl get secrets".into();
        }
        for i in 1..evs.len() {
            let h = event_hash(&evs[i - 1]).to_vec();
            evs[i].prev_hash = h.into();
        }
        let b = check(&evs, &keys).unwrap_err();
        assert!(
            b.reason.contains("does not match this signed digest"),
            "{b:?}"
        );
    }

    #[test]
    fn a_forged_digest_or_unknown_key_fails() {
        let (mut evs, keys) = session(3, true);
        if let Some(Payload::Digest(d)) = &mut evs[3].payload {
            d.closed = false;
        }
        let b = check(&evs, &keys).unwrap_err();
        assert_eq!(b.seq, 4);
        assert!(b.reason.contains("signature is invalid"), "{b:?}");
        let (evs, _) = session(3, true);
        let mut other = Keys::default();
        other.add(SigningKey::from_bytes(&[1u8; 32]).verifying_key());
        let b = check(&evs, &other).unwrap_err();
        assert!(b.reason.contains("not among the given keys"), "{b:?}");
    }

    #[test]
    fn an_uncovered_tail_is_named() {
        let (mut evs, keys) = session(3, false);
        let prev = event_hash(&evs[3]).to_vec();
        evs.push(Event {
            event_id: "e5".into(),
            session_id: "s".into(),
            seq: 5,
            prev_hash: prev.into(),
            payload: Some(Payload::Request(RequestStarted::default())),
            ..Default::default()
        });
        let b = check(&evs, &keys).unwrap_err();
        assert_eq!((b.seq, b.event_id.as_str()), (5, "e5"));
        assert!(b.reason.contains("not covered"), "{b:?}");
    }

    #[test]
    fn exports_are_checked_against_their_encoding() {
        let (evs, _) = session(2, true);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.ndjson");
        let lines: Vec<String> = evs.iter().map(|e| event_json(e).to_string()).collect();
        std::fs::write(&path, lines.join("\n")).unwrap();
        assert_eq!(load_export(&path).unwrap(), evs);
        let edited = lines[1].replace("kubectl get pods #2", "kubectl get pods #9");
        assert_ne!(edited, lines[1]);
        std::fs::write(
            &path,
            [lines[0].clone(), edited, lines[2].clone()].join("\n"),
        )
        .unwrap();
        let err = load_export(&path).unwrap_err().to_string();
        assert!(err.contains("seq 2 (event e2)"), "{err}");
        assert!(err.contains("request.command"), "{err}");
    }
}
