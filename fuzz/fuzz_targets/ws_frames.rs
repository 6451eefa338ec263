//! WebSocket frame parser (`gateway/src/streams/ws.rs`): decoding never panics, a frame decodes
//! the same whole or split at any point, re-encoding a frame decodes back to it, and reassembly
//! never panics.
#![no_main]

use bytes::BytesMut;
use gatehouse_gateway::streams::ws::{self, Assembler, Sender};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, stream)) = data.split_first() else {
        return;
    };
    let from = if ctl & 1 == 0 {
        Sender::Client
    } else {
        Sender::Server
    };
    // Small limits reach the size checks; large ones the payload paths.
    let max = if ctl & 2 == 0 { 64 } else { 1 << 20 };
    let split = usize::from(ctl >> 2) % (stream.len() + 1);

    let whole = frames(stream, from, max, stream.len());
    let chunked = frames(stream, from, max, split.max(1));
    assert_eq!(whole, chunked, "splitting the stream changed its frames");

    let mut assembler = Assembler::new(max);
    for frame in whole.0 {
        let mut out = BytesMut::new();
        let mask = (from == Sender::Client).then_some([0x12, 0x34, 0x56, 0x78]);
        ws::encode(&mut out, frame.fin, frame.opcode, &frame.payload, mask);
        let again = ws::decode(&out, from, max).expect("re-encoded frame decodes");
        assert_eq!(
            again,
            Some((frame.clone(), out.len())),
            "frame does not round-trip"
        );
        let _ = assembler.push(frame);
    }
});

/// The frames of `stream`, delivered `chunk` bytes at a time, and the error that ended it.
fn frames(
    stream: &[u8],
    from: Sender,
    max: usize,
    chunk: usize,
) -> (Vec<ws::Frame>, Option<ws::WsError>) {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in stream.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match ws::decode(&buf, from, max) {
                Ok(Some((frame, used))) => {
                    assert!(used > 0 && used <= buf.len());
                    let _ = buf.split_to(used);
                    out.push(frame);
                }
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}
