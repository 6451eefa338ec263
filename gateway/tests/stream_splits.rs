//! Property: any byte stream, split at any points, decodes through the WebSocket and SPDY/3
//! parsers into the same frames (and the same error) as when it arrives whole — TCP may cut a
//! frame anywhere, and the relay must not care. Streams are either encoded frames or noise.
//! SPDY tunnelled in WebSocket messages cut anywhere demuxes into the same bytes.
#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use gatehouse_gateway::streams::demux::{Demux, Transport};
use gatehouse_gateway::streams::spdy::{self, HeaderDeflater, HeaderInflater};
use gatehouse_gateway::streams::ws::{self, Sender};
use gatehouse_proto::v1::{StreamChannel, StreamDirection};
use proptest::prelude::*;

/// Decodes `stream` fed in the pieces `cuts` makes of it, as the relay's read loop does.
fn ws_frames(stream: &[u8], cuts: &[usize], from: Sender) -> (Vec<ws::Frame>, Option<ws::WsError>) {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in pieces(stream, cuts) {
        buf.extend_from_slice(piece);
        loop {
            let decoded = ws::decode(&buf, from, 1 << 20);
            // The relay's zero-copy decoder must see exactly what the copying one sees.
            let frozen = Bytes::copy_from_slice(&buf);
            assert_eq!(ws::decode_shared(&frozen, from, 1 << 20), decoded);
            match decoded {
                Ok(Some((frame, used))) => {
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

fn spdy_frames(stream: &[u8], cuts: &[usize]) -> (Vec<spdy::Frame>, Option<spdy::SpdyError>) {
    let mut inflater = HeaderInflater::default();
    // The zero-copy decoder's own header context, fed the same frames in step.
    let mut shared_inflater = HeaderInflater::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in pieces(stream, cuts) {
        buf.extend_from_slice(piece);
        loop {
            let decoded = spdy::decode(&buf, &mut inflater, 1 << 16);
            let frozen = Bytes::copy_from_slice(&buf);
            assert_eq!(
                spdy::decode_shared(&frozen, &mut shared_inflater, 1 << 16),
                decoded
            );
            match decoded {
                Ok(Some((frame, used))) => {
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

/// `stream` cut at `cuts` (any values; taken modulo the length, sorted, deduplicated).
fn pieces<'a>(stream: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    at.push(0);
    at.push(stream.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| &stream[w[0]..w[1]]).collect()
}

#[derive(Debug, Clone)]
struct WsFrame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
    mask: [u8; 4],
}

fn ws_frame() -> impl Strategy<Value = WsFrame> {
    (
        any::<bool>(),
        prop::sample::select(vec![
            ws::OP_CONTINUATION,
            ws::OP_TEXT,
            ws::OP_BINARY,
            ws::OP_CLOSE,
            ws::OP_PING,
            ws::OP_PONG,
        ]),
        // Lengths on both sides of the 7-bit and 16-bit length forms.
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..130),
            prop::collection::vec(any::<u8>(), 65_530..65_540),
        ],
        any::<[u8; 4]>(),
    )
        .prop_map(|(fin, opcode, mut payload, mask)| {
            if opcode >= ws::OP_CLOSE {
                payload.truncate(125);
                return WsFrame {
                    fin: true,
                    opcode,
                    payload,
                    mask,
                };
            }
            WsFrame {
                fin,
                opcode,
                payload,
                mask,
            }
        })
}

#[derive(Debug, Clone)]
enum SpdyFrame {
    Data {
        stream_id: u32,
        fin: bool,
        data: Vec<u8>,
    },
    Syn {
        stream_id: u32,
        headers: Vec<(String, String)>,
    },
    Reply {
        stream_id: u32,
        headers: Vec<(String, String)>,
    },
    Rst {
        stream_id: u32,
        status: u32,
    },
    Ping(u32),
    GoAway {
        last: u32,
        status: u32,
    },
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(("[a-z][a-z0-9-]{0,12}", "[ -~]{0,40}"), 0..6)
}

fn spdy_frame() -> impl Strategy<Value = SpdyFrame> {
    let id = 1u32..0x7FFF_FFFF;
    prop_oneof![
        (
            id.clone(),
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 0..300)
        )
            .prop_map(|(stream_id, fin, data)| SpdyFrame::Data {
                stream_id,
                fin,
                data
            }),
        (id.clone(), headers())
            .prop_map(|(stream_id, headers)| SpdyFrame::Syn { stream_id, headers }),
        (id.clone(), headers())
            .prop_map(|(stream_id, headers)| SpdyFrame::Reply { stream_id, headers }),
        (id.clone(), any::<u32>())
            .prop_map(|(stream_id, status)| SpdyFrame::Rst { stream_id, status }),
        any::<u32>().prop_map(SpdyFrame::Ping),
        (id, any::<u32>()).prop_map(|(last, status)| SpdyFrame::GoAway { last, status }),
    ]
}

fn encode_spdy(frames: &[SpdyFrame]) -> Vec<u8> {
    // One deflater for the whole stream: header compression context spans frames.
    let mut deflater = HeaderDeflater::new().unwrap();
    let mut out = BytesMut::new();
    for f in frames {
        match f {
            SpdyFrame::Data {
                stream_id,
                fin,
                data,
            } => spdy::encode_data(&mut out, *stream_id, *fin, data),
            SpdyFrame::Syn { stream_id, headers } => {
                let h: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                spdy::encode_syn_stream(&mut out, &mut deflater, *stream_id, 0, &h).unwrap();
            }
            SpdyFrame::Reply { stream_id, headers } => {
                let h: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                spdy::encode_syn_reply(&mut out, &mut deflater, *stream_id, 0, &h).unwrap();
            }
            SpdyFrame::Rst { stream_id, status } => spdy::encode_rst(&mut out, *stream_id, *status),
            SpdyFrame::Ping(id) => spdy::encode_ping(&mut out, *id),
            SpdyFrame::GoAway { last, status } => spdy::encode_goaway(&mut out, *last, *status),
        }
    }
    out.to_vec()
}

/// Port-forward data frames of `payloads` on one SPDY stream, the tunnel cut into WebSocket
/// messages at `cuts`, and each message fed in the pieces `reads` makes of the connection.
fn tunnelled(payloads: &[Vec<u8>], cuts: &[usize], reads: &[usize]) -> (Vec<u8>, usize) {
    let mut z = HeaderDeflater::new().unwrap();
    let mut tunnel = BytesMut::new();
    spdy::encode_syn_stream(
        &mut tunnel,
        &mut z,
        1,
        0,
        &[("streamtype", "data"), ("port", "80"), ("requestid", "0")],
    )
    .unwrap();
    for (i, p) in payloads.iter().enumerate() {
        spdy::encode_data(&mut tunnel, 1, i + 1 == payloads.len(), p);
    }
    let mut conn = BytesMut::new();
    for message in pieces(&tunnel, cuts) {
        ws::encode(&mut conn, true, ws::OP_BINARY, message, None);
    }
    let mut demux = Demux::new(
        StreamDirection::FromContainer,
        gatehouse_gateway::streams::channel::Kind::PortForward,
        Transport::SpdyOverWebSocket,
        vec![],
        1 << 16,
        Default::default(),
    );
    let (mut data, mut closes, mut pending) = (Vec::new(), 0, BytesMut::new());
    for read in pieces(&conn, reads) {
        pending.extend_from_slice(read);
        let fed = demux.feed_shared(&pending.clone().freeze()).unwrap();
        let _ = pending.split_to(fed.used);
        for p in fed.pieces {
            match p.channel {
                StreamChannel::PortData => data.extend_from_slice(&p.data),
                StreamChannel::Close => closes += 1,
                other => panic!("unexpected channel {other:?}"),
            }
        }
    }
    assert!(pending.is_empty());
    (data, closes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn tunnelled_spdy_demuxes_the_same_however_cut(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..3000), 1..6),
        cuts in prop::collection::vec(any::<usize>(), 0..40),
        reads in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let (data, closes) = tunnelled(&payloads, &cuts, &reads);
        prop_assert_eq!(data, payloads.concat());
        prop_assert_eq!(closes, 1);
    }

    #[test]
    fn websocket_frames_survive_any_split(
        frames in prop::collection::vec(ws_frame(), 0..8),
        client in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..40),
    ) {
        let from = if client { Sender::Client } else { Sender::Server };
        let mut stream = BytesMut::new();
        for f in &frames {
            ws::encode(&mut stream, f.fin, f.opcode, &f.payload, client.then_some(f.mask));
        }
        let whole = ws_frames(&stream, &[], from);
        prop_assert!(whole.1.is_none(), "{:?}", whole.1);
        let want: Vec<(bool, u8, Vec<u8>)> = frames.iter().map(|f| (f.fin, f.opcode, f.payload.clone())).collect();
        let got: Vec<(bool, u8, Vec<u8>)> = whole.0.iter().map(|f| (f.fin, f.opcode, f.payload.to_vec())).collect();
        prop_assert_eq!(got, want);
        prop_assert_eq!(ws_frames(&stream, &cuts, from), whole);
        // Every single cut point, too, for short streams.
        if stream.len() < 512 {
            for cut in 0..=stream.len() {
                prop_assert_eq!(ws_frames(&stream, &[cut], from), ws_frames(&stream, &[], from));
            }
        }
    }

    #[test]
    fn websocket_noise_decodes_the_same_however_split(
        noise in prop::collection::vec(any::<u8>(), 0..600),
        client in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..40),
    ) {
        let from = if client { Sender::Client } else { Sender::Server };
        prop_assert_eq!(ws_frames(&noise, &cuts, from), ws_frames(&noise, &[], from));
    }

    #[test]
    fn spdy_frames_survive_any_split(
        frames in prop::collection::vec(spdy_frame(), 0..8),
        cuts in prop::collection::vec(any::<usize>(), 0..40),
    ) {
        let stream = encode_spdy(&frames);
        let whole = spdy_frames(&stream, &[]);
        prop_assert!(whole.1.is_none(), "{:?}", whole.1);
        prop_assert_eq!(whole.0.len(), frames.len());
        for (got, want) in whole.0.iter().zip(&frames) {
            match (got, want) {
                (spdy::Frame::Data { stream_id, fin, data }, SpdyFrame::Data { stream_id: s, fin: f, data: d }) => {
                    prop_assert_eq!((stream_id, fin, &data[..]), (s, f, &d[..]));
                }
                (spdy::Frame::SynStream { stream_id, headers, .. }, SpdyFrame::Syn { stream_id: s, headers: h })
                | (spdy::Frame::SynReply { stream_id, headers, .. }, SpdyFrame::Reply { stream_id: s, headers: h }) => {
                    prop_assert_eq!((stream_id, headers), (s, h));
                }
                (spdy::Frame::RstStream { stream_id, status }, SpdyFrame::Rst { stream_id: s, status: st }) => {
                    prop_assert_eq!((stream_id, status), (s, st));
                }
                (spdy::Frame::Ping(id), SpdyFrame::Ping(want)) => prop_assert_eq!(id, want),
                (spdy::Frame::GoAway { last_stream_id, status }, SpdyFrame::GoAway { last, status: st }) => {
                    prop_assert_eq!((last_stream_id, status), (last, st));
                }
                (got, want) => prop_assert!(false, "decoded {:?} for {:?}", got, want),
            }
        }
        prop_assert_eq!(spdy_frames(&stream, &cuts), whole);
        if stream.len() < 512 {
            for cut in 0..=stream.len() {
                prop_assert_eq!(spdy_frames(&stream, &[cut]), spdy_frames(&stream, &[]));
            }
        }
    }

    #[test]
    fn spdy_noise_decodes_the_same_however_split(
        noise in prop::collection::vec(any::<u8>(), 0..600),
        cuts in prop::collection::vec(any::<usize>(), 0..40),
    ) {
        prop_assert_eq!(spdy_frames(&noise, &cuts), spdy_frames(&noise, &[]));
    }
}
