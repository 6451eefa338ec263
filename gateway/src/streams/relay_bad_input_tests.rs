//! Bad input through the whole relay: each case closes the stream with a clear error (on the
//! error channel and the protocol's close), is recorded as an aborted `StreamEnded` naming it,
//! and ends promptly: no crash, no stall.
#![allow(clippy::unwrap_used)]
use super::*;
use crate::metrics::Metrics;
use crate::streams::StreamSettings;
use crate::streams::record::StreamRecorder;
use crate::transcript::recorder::Recorder;
use bytes::BufMut;
use gatehouse_journal::{FsyncPolicy, Journal, JournalOptions, Reader};
use gatehouse_proto::v1::{Event, Producer, RequestStarted, event::Payload};
use prost::Message as _;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EXEC: &str = "/api/v1/namespaces/p/pods/web/exec";
const EXEC_QUERY: &str = "command=sh&stdin=true&stdout=true";

fn ws() -> Transport {
    Transport::WebSocket {
        protocol: "v5.channel.k8s.io".into(),
        base64: false,
    }
}

fn spdy_t() -> Transport {
    Transport::Spdy {
        protocol: "v4.channel.k8s.io".into(),
    }
}

fn masked(payload: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    ws::encode(&mut b, true, ws::OP_BINARY, payload, Some([3, 1, 4, 1]));
    b
}

/// A SPDY/3 control frame (the codec's own encoder cannot produce bad ones).
fn control(kind: u16, version: u16, body: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_u16(0x8000 | version);
    b.put_u16(kind);
    b.put_u8(0);
    let len = body.len() as u32;
    b.put_slice(&len.to_be_bytes()[1..]);
    b.put_slice(body);
    b
}

fn syn_stream_with_block(block: &[u8]) -> BytesMut {
    let mut body = BytesMut::new();
    body.put_u32(1);
    body.put_u32(0);
    body.put_u16(0);
    body.put_slice(block);
    control(1, 3, &body)
}

struct Case {
    name: &'static str,
    transport: Transport,
    /// Bytes the caller sends; `then_eof` ends its side afterwards.
    bytes: BytesMut,
    then_eof: bool,
    max_frame: usize,
    /// What the recorded error must say.
    says: &'static str,
}

fn cases() -> Vec<Case> {
    let mut unmasked = BytesMut::new();
    ws::encode(&mut unmasked, true, ws::OP_BINARY, b"\x00ls\n", None);
    // Opcode 3 is reserved (RFC 6455 §5.2).
    let mut reserved = BytesMut::new();
    reserved.put_slice(&[0x83, 0x80, 1, 2, 3, 4]);
    let whole = masked(b"\x00echo hi\n");
    let mut deflater = spdy::HeaderDeflater::new().unwrap();
    let mut unknown_type = BytesMut::new();
    spdy::encode_syn_stream(
        &mut unknown_type,
        &mut deflater,
        1,
        0,
        &[("streamtype", "telepathy")],
    )
    .unwrap();
    let big = vec![0u8; 4096];
    let mut spdy_big = BytesMut::new();
    spdy::encode_data(&mut spdy_big, 1, false, &big);
    let case = |name, transport, bytes, says| Case {
        name,
        transport,
        bytes,
        then_eof: false,
        max_frame: 1 << 20,
        says,
    };
    vec![
        case("ws unmasked", ws(), unmasked, "was not masked"),
        case("ws malformed", ws(), reserved, "opcode"),
        case(
            "ws unknown channel",
            ws(),
            masked(b"\x09hello"),
            "unknown stream channel 9",
        ),
        Case {
            max_frame: 1024,
            ..case(
                "ws oversized",
                ws(),
                masked(&[0u8; 2048]),
                "exceeds the limit of 1024",
            )
        },
        Case {
            then_eof: true,
            ..case(
                "ws truncated",
                ws(),
                BytesMut::from(&whole[..whole.len() - 3]),
                "ended inside a frame",
            )
        },
        case(
            "spdy bad zlib",
            spdy_t(),
            syn_stream_with_block(b"this is not zlib at all"),
            "does not inflate",
        ),
        case("spdy malformed", spdy_t(), control(6, 3, &[0, 1]), "PING"),
        case(
            "spdy unknown stream type",
            spdy_t(),
            unknown_type,
            "telepathy",
        ),
        Case {
            max_frame: 1024,
            ..case(
                "spdy oversized",
                spdy_t(),
                spdy_big,
                "exceeds the limit of 1024",
            )
        },
    ]
}

#[tokio::test]
async fn each_bad_input_closes_the_stream_clearly_and_is_recorded() {
    for c in cases() {
        let name = c.name;
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(
            dir.path(),
            JournalOptions {
                fsync: FsyncPolicy::Never,
                ..Default::default()
            },
        )
        .unwrap();
        let recorder = Arc::new(Recorder::new(
            journal,
            Duration::from_secs(60),
            Producer::default(),
            Arc::new(Metrics::new()),
        ));
        let started = recorder
            .begin(
                "alice",
                Event {
                    payload: Some(Payload::Request(RequestStarted::default())),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let target = Target::parse(EXEC, Some(EXEC_QUERY)).unwrap();
        let rec = Arc::new(StreamRecorder::new(
            recorder.clone(),
            started.session_id.clone(),
            Event::default(),
            started.event_id.clone(),
            &target,
            false,
        ));
        rec.opened(&target, &c.transport).await.unwrap();
        let settings = StreamSettings {
            max_frame: c.max_frame,
            grace: Duration::from_secs(2),
            ..Default::default()
        };
        let (mut caller, client_side) = tokio::io::duplex(1 << 20);
        let (upstream_side, mut server) = tokio::io::duplex(1 << 20);
        let relay = {
            let (rec, transport) = (rec.clone(), c.transport.clone());
            tokio::spawn(async move {
                run(
                    Box::new(client_side),
                    Box::new(upstream_side),
                    &target,
                    transport,
                    &settings,
                    rec,
                )
                .await
            })
        };
        caller.write_all(&c.bytes).await.unwrap();
        if c.then_eof {
            caller.shutdown().await.unwrap();
        }
        let outcome = tokio::time::timeout(Duration::from_secs(5), relay)
            .await
            .unwrap_or_else(|_| panic!("{name}: the relay stalled"))
            .unwrap();
        assert!(outcome.aborted, "{name}: {outcome:?}");
        let error = outcome.error.clone().unwrap_or_default();
        assert!(
            error.contains("the caller sent bad input") && error.contains(c.says),
            "{name}: {error}"
        );
        // The caller is told: for WebSocket a Failure status on the error channel (kubectl
        // prints it) then a close frame; for SPDY a GOAWAY. Then its side is closed.
        let mut told = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), caller.read_to_end(&mut told))
            .await
            .unwrap_or_else(|_| panic!("{name}: the caller's side was left open"))
            .unwrap();
        match c.transport {
            Transport::WebSocket { .. } => {
                let (first, n) = ws::decode(&told, ws::Sender::Server, 1 << 20)
                    .unwrap()
                    .unwrap();
                assert_eq!(first.payload.first(), Some(&3), "{name}: error channel");
                let status: serde_json::Value =
                    serde_json::from_slice(&first.payload[1..]).unwrap();
                assert_eq!(status["status"], "Failure", "{name}");
                assert!(
                    status["message"].as_str().unwrap().contains(c.says),
                    "{name}: {status}"
                );
                let (close, _) = ws::decode(&told[n..], ws::Sender::Server, 1 << 20)
                    .unwrap()
                    .unwrap();
                assert_eq!(close.opcode, ws::OP_CLOSE, "{name}");
            }
            _ => assert!(!told.is_empty(), "{name}: a GOAWAY"),
        }
        // The API server's side is closed too, and got nothing of the bad frame.
        let mut upstream = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), server.read_to_end(&mut upstream))
            .await
            .unwrap_or_else(|_| panic!("{name}: the API server's side was left open"))
            .unwrap();
        assert!(
            !upstream
                .windows(c.bytes.len().min(16))
                .any(|w| w == &c.bytes[..c.bytes.len().min(16)]),
            "{name}: the bad frame was forwarded"
        );

        // Recorded: the end, aborted, with the reason.
        rec.ended(outcome.aborted, outcome.error.clone())
            .await
            .unwrap();
        let ended = Reader::read_all(dir.path())
            .unwrap()
            .into_iter()
            .map(|r| Event::decode(r.payload.as_slice()).unwrap())
            .find_map(|e| match e.payload {
                Some(Payload::StreamEnded(x)) => Some(x),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{name}: no StreamEnded recorded"));
        assert!(ended.aborted, "{name}");
        assert_eq!(ended.error, error, "{name}");
    }
}
