//! Frames the gateway writes itself on an exec/attach stream: a channel message rewritten with
//! other bytes (a cancelled stdin line, masked output), or a new one (a notice to the user).
use super::channel;
use super::demux::{Shared, Transport};
use super::{spdy, ws};
use bytes::BytesMut;
use gatehouse_proto::v1::StreamChannel;
use parking_lot::Mutex;

/// The frame `raw` (one whole frame of `transport`, carrying one channel message) with its
/// payload replaced by `data`; `None` when `raw` is not a frame that can be rewritten alone (a
/// fragment of a longer WebSocket message, or data too big for one SPDY frame).
pub fn replace(
    transport: &Transport,
    raw: &[u8],
    channel: StreamChannel,
    to_client: bool,
    data: &[u8],
) -> Option<BytesMut> {
    let mut out = BytesMut::with_capacity(data.len() + 16);
    match transport {
        Transport::WebSocket { base64, .. } => {
            // FIN set and a data opcode: the frame is the whole message.
            let want = if *base64 { 0x81 } else { 0x82 };
            if raw.first() != Some(&want) {
                return None;
            }
            ws_message(&mut out, *base64, channel, to_client, data)?;
        }
        Transport::Spdy { .. } => {
            // DATA frame: control bit clear, 31-bit stream id, flags, 24-bit length.
            let head: [u8; 5] = raw.get(..5)?.try_into().ok()?;
            if head[0] & 0x80 != 0 || data.len() > spdy::MAX_DATA {
                return None;
            }
            let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            spdy::encode_data(&mut out, id, head[4] & spdy::FLAG_FIN != 0, data);
        }
        Transport::SpdyOverWebSocket => return None,
    }
    Some(out)
}

/// Whether `raw` is a SPDY DATA frame that ends its stream (nothing may follow on it).
pub fn ends_stream(transport: &Transport, raw: &[u8]) -> bool {
    matches!(transport, Transport::Spdy { .. })
        && raw.len() >= 5
        && raw[0] & 0x80 == 0
        && raw[4] & spdy::FLAG_FIN != 0
}

/// A new message carrying `data` on `channel`; `None` when the channel is not open (SPDY) or
/// the transport carries no remote command channels.
pub fn message(
    transport: &Transport,
    shared: &Mutex<Shared>,
    channel: StreamChannel,
    to_client: bool,
    data: &[u8],
) -> Option<BytesMut> {
    let mut out = BytesMut::with_capacity(data.len() + 16);
    match transport {
        Transport::WebSocket { base64, .. } => {
            ws_message(&mut out, *base64, channel, to_client, data)?;
        }
        Transport::Spdy { .. } => {
            let id = shared.lock().stream_of(channel)?;
            for chunk in data.chunks(spdy::MAX_DATA) {
                spdy::encode_data(&mut out, id, false, chunk);
            }
        }
        Transport::SpdyOverWebSocket => return None,
    }
    Some(out)
}

fn ws_message(
    out: &mut BytesMut,
    base64: bool,
    channel: StreamChannel,
    to_client: bool,
    data: &[u8],
) -> Option<()> {
    let byte = channel::channel_byte(channel)?;
    // Frames towards the API server are masked (RFC 6455 §5.3).
    let mask = (!to_client).then(super::relay::mask);
    if base64 {
        use base64::Engine as _;
        let mut m = vec![b'0' + byte];
        m.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(data)
                .as_bytes(),
        );
        ws::encode(out, true, ws::OP_TEXT, &m, mask);
    } else {
        let mut m = Vec::with_capacity(data.len() + 1);
        m.push(byte);
        m.extend_from_slice(data);
        ws::encode(out, true, ws::OP_BINARY, &m, mask);
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::ws::{Sender, decode};

    #[test]
    fn a_whole_websocket_message_is_rewritten_and_a_fragment_is_not() {
        let t = Transport::WebSocket {
            protocol: "v5.channel.k8s.io".into(),
            base64: false,
        };
        let mut raw = BytesMut::new();
        ws::encode(
            &mut raw,
            true,
            ws::OP_BINARY,
            b"\x00ls\r",
            Some([1, 2, 3, 4]),
        );
        let out = replace(&t, &raw, StreamChannel::Stdin, false, b"l\x15\r").unwrap();
        let (frame, n) = decode(&out, Sender::Client, 1 << 20).unwrap().unwrap();
        assert_eq!(n, out.len());
        assert!(frame.fin);
        assert_eq!(&frame.payload[..], b"\x00l\x15\r");
        let mut frag = BytesMut::new();
        ws::encode(
            &mut frag,
            false,
            ws::OP_BINARY,
            b"\x00ls",
            Some([1, 2, 3, 4]),
        );
        assert!(replace(&t, &frag, StreamChannel::Stdin, false, b"x").is_none());
    }

    #[test]
    fn a_spdy_data_frame_keeps_its_stream_and_fin() {
        let t = Transport::Spdy {
            protocol: "v4.channel.k8s.io".into(),
        };
        let mut raw = BytesMut::new();
        spdy::encode_data(&mut raw, 7, true, b"secret");
        assert!(ends_stream(&t, &raw));
        let out = replace(&t, &raw, StreamChannel::Stdout, true, b"***").unwrap();
        let mut want = BytesMut::new();
        spdy::encode_data(&mut want, 7, true, b"***");
        assert_eq!(out, want);
    }
}
