//! SPDY/3 frame and header-block parser (`gateway/src/streams/spdy.rs`), including zlib with the
//! SPDY dictionary: decoding never panics or grows memory past the limits, a stream decodes the
//! same whole or split, and header blocks round-trip through a fresh deflater/inflater pair.
#![no_main]

use bytes::BytesMut;
use gatehouse_gateway::streams::spdy::{self, Frame, HeaderDeflater, HeaderInflater};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, stream)) = data.split_first() else {
        return;
    };
    let max = if ctl & 1 == 0 { 256 } else { 1 << 20 };
    let split = usize::from(ctl >> 1) % (stream.len() + 1);

    let whole = frames(stream, max, stream.len());
    let chunked = frames(stream, max, split.max(1));
    assert_eq!(whole, chunked, "splitting the stream changed its frames");

    for frame in &whole.0 {
        if let Frame::SynStream {
            stream_id,
            flags,
            headers,
            ..
        } = frame
        {
            let pairs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let mut deflater = HeaderDeflater::new().expect("deflater");
            let mut out = BytesMut::new();
            spdy::encode_syn_stream(&mut out, &mut deflater, *stream_id, *flags, &pairs)
                .expect("encode");
            if out.len() - 8 > 0xFF_FFFF {
                continue;
            }
            let mut inflater = HeaderInflater::default();
            let again =
                spdy::decode(&out, &mut inflater, usize::MAX).expect("re-encoded frame decodes");
            let Some((Frame::SynStream { headers: back, .. }, used)) = again else {
                panic!("re-encoded SYN_STREAM decodes as {again:?}");
            };
            assert_eq!(used, out.len());
            assert_eq!(&back, headers, "header block does not round-trip");
        }
    }
});

/// The frames of `stream`, delivered `chunk` bytes at a time through one inflater, and the error
/// that ended it.
fn frames(stream: &[u8], max: usize, chunk: usize) -> (Vec<Frame>, Option<spdy::SpdyError>) {
    let mut inflater = HeaderInflater::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in stream.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match spdy::decode(&buf, &mut inflater, max) {
                Ok(Some((frame, used))) => {
                    assert!(used >= 8 && used <= buf.len());
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
