//! WebSocket framing (RFC 6455 §5): an incremental decoder that checks masking per direction,
//! a message assembler for fragmented messages, an encoder, and the handshake accept key.
use bytes::{BufMut, Bytes, BytesMut};

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Close codes used by the gateway and the test server.
pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
pub const CLOSE_TOO_BIG: u16 = 1009;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WsError {
    #[error("reserved bits set in a websocket frame (no extension was negotiated)")]
    ReservedBits,
    #[error("unknown websocket opcode {0:#x}")]
    UnknownOpcode(u8),
    #[error("a client websocket frame was not masked (RFC 6455 §5.1)")]
    Unmasked,
    #[error("a server websocket frame was masked (RFC 6455 §5.1)")]
    MaskedFromServer,
    #[error("websocket frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: u64, max: usize },
    #[error("websocket control frame is fragmented or longer than 125 bytes")]
    BadControl,
    #[error("websocket continuation frame without a message to continue")]
    UnexpectedContinuation,
    #[error("new websocket data frame while a fragmented message is unfinished")]
    UnfinishedMessage,
    #[error("websocket frame length is not minimally encoded or has the top bit set")]
    BadLength,
}

/// Which side wrote the bytes being decoded: clients must mask, servers must not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    Client,
    Server,
}

/// One frame, payload already unmasked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Bytes,
}

/// Decodes one frame from the front of `buf`. `Ok(None)` means more bytes are needed; on
/// success returns the frame and how many bytes of `buf` it used.
pub fn decode(buf: &[u8], from: Sender, max: usize) -> Result<Option<(Frame, usize)>, WsError> {
    decode_with(buf, from, max, |r| Bytes::copy_from_slice(&buf[r]))
}

/// Like [`decode`] for bytes already in a `Bytes`: an unmasked payload (everything the API
/// server sends) is a slice of `buf`, not a copy. Masked payloads are unmasked into a copy.
pub fn decode_shared(
    buf: &Bytes,
    from: Sender,
    max: usize,
) -> Result<Option<(Frame, usize)>, WsError> {
    decode_with(buf, from, max, |r| buf.slice(r))
}

/// `unmasked` turns the range of an unmasked payload within `buf` into its bytes.
fn decode_with(
    buf: &[u8],
    from: Sender,
    max: usize,
    unmasked: impl FnOnce(std::ops::Range<usize>) -> Bytes,
) -> Result<Option<(Frame, usize)>, WsError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let b0 = buf[0];
    let b1 = buf[1];
    if b0 & 0x70 != 0 {
        return Err(WsError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    if !matches!(
        opcode,
        OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
    ) {
        return Err(WsError::UnknownOpcode(opcode));
    }
    let masked = b1 & 0x80 != 0;
    match (from, masked) {
        (Sender::Client, false) => return Err(WsError::Unmasked),
        (Sender::Server, true) => return Err(WsError::MaskedFromServer),
        _ => {}
    }
    let (len, mut at) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            let len = u64::from(u16::from_be_bytes([buf[2], buf[3]]));
            if len < 126 {
                return Err(WsError::BadLength);
            }
            (len, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(b);
            if len >> 63 != 0 || len <= 0xFFFF {
                return Err(WsError::BadLength);
            }
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    if opcode >= OP_CLOSE && (!fin || len > 125) {
        return Err(WsError::BadControl);
    }
    if len > max as u64 {
        return Err(WsError::TooLarge { len, max });
    }
    let len = len as usize;
    let mask = if masked {
        if buf.len() < at + 4 {
            return Ok(None);
        }
        let m = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        at += 4;
        Some(m)
    } else {
        None
    };
    if buf.len() < at + len {
        return Ok(None);
    }
    let payload = match mask {
        Some(m) => {
            let mut p = BytesMut::from(&buf[at..at + len]);
            apply_mask(&mut p, m);
            p.freeze()
        }
        None => unmasked(at..at + len),
    };
    Ok(Some((
        Frame {
            fin,
            opcode,
            payload,
        },
        at + len,
    )))
}

fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    // Word-at-a-time XOR: unmasking sits on the hot path of every stdin byte.
    let word = u32::from_ne_bytes(mask);
    let mut chunks = data.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i];
    }
}

/// Appends one frame to `out`; `mask` is required for client frames.
pub fn encode(out: &mut BytesMut, fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    out.put_u8(if fin { 0x80 } else { 0 } | (opcode & 0x0F));
    let mbit = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.put_u8(mbit | len as u8);
    } else if len <= 0xFFFF {
        out.put_u8(mbit | 126);
        out.put_u16(len as u16);
    } else {
        out.put_u8(mbit | 127);
        out.put_u64(len as u64);
    }
    match mask {
        Some(m) => {
            out.put_slice(&m);
            let start = out.len();
            out.put_slice(payload);
            apply_mask(&mut out[start..], m);
        }
        None => out.put_slice(payload),
    }
}

/// The payload of a close frame: status code and reason (truncated to fit 125 bytes).
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    let mut r = reason.as_bytes();
    if r.len() > 123 {
        r = &r[..123];
    }
    p.extend_from_slice(r);
    p
}

/// A whole data message, or a control frame, as seen after reassembly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Binary(Bytes),
    Text(Bytes),
    Close { code: Option<u16>, reason: String },
    Ping(Bytes),
    Pong(Bytes),
}

/// Reassembles fragmented data messages (control frames may interleave, §5.4).
#[derive(Debug, Default)]
pub struct Assembler {
    partial: Option<(u8, BytesMut)>,
    max: usize,
}

impl Assembler {
    pub fn new(max: usize) -> Self {
        Assembler { partial: None, max }
    }

    pub fn push(&mut self, frame: Frame) -> Result<Option<Message>, WsError> {
        match frame.opcode {
            OP_CLOSE => {
                let p = &frame.payload;
                let (code, reason) = if p.len() >= 2 {
                    (
                        Some(u16::from_be_bytes([p[0], p[1]])),
                        String::from_utf8_lossy(&p[2..]).into_owned(),
                    )
                } else {
                    (None, String::new())
                };
                Ok(Some(Message::Close { code, reason }))
            }
            OP_PING => Ok(Some(Message::Ping(frame.payload))),
            OP_PONG => Ok(Some(Message::Pong(frame.payload))),
            OP_CONTINUATION => {
                let Some((op, mut buf)) = self.partial.take() else {
                    return Err(WsError::UnexpectedContinuation);
                };
                if buf.len() + frame.payload.len() > self.max {
                    return Err(WsError::TooLarge {
                        len: (buf.len() + frame.payload.len()) as u64,
                        max: self.max,
                    });
                }
                buf.extend_from_slice(&frame.payload);
                if frame.fin {
                    Ok(Some(data_message(op, buf.freeze())))
                } else {
                    self.partial = Some((op, buf));
                    Ok(None)
                }
            }
            op => {
                if self.partial.is_some() {
                    return Err(WsError::UnfinishedMessage);
                }
                if frame.fin {
                    Ok(Some(data_message(op, frame.payload)))
                } else {
                    self.partial = Some((op, BytesMut::from(&frame.payload[..])));
                    Ok(None)
                }
            }
        }
    }
}

fn data_message(op: u8, data: Bytes) -> Message {
    if op == OP_TEXT {
        Message::Text(data)
    } else {
        Message::Binary(data)
    }
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn accept_key(key: &str) -> String {
    use base64::Engine as _;
    const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.trim().as_bytes());
    ctx.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(ctx.finish().as_ref())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn frame(fin: bool, op: u8, payload: &[u8], mask: Option<[u8; 4]>) -> BytesMut {
        let mut b = BytesMut::new();
        encode(&mut b, fin, op, payload, mask);
        b
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn round_trips_masked_and_unmasked_at_every_length_form() {
        for len in [0usize, 5, 125, 126, 300, 65535, 65536, 200_000] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let b = frame(true, OP_BINARY, &data, Some([1, 2, 3, 4]));
            let (f, used) = decode(&b, Sender::Client, 1 << 20).unwrap().unwrap();
            assert_eq!(used, b.len());
            assert_eq!(&f.payload[..], &data[..]);
            let b = frame(true, OP_BINARY, &data, None);
            let (f, _) = decode(&b, Sender::Server, 1 << 20).unwrap().unwrap();
            assert_eq!(&f.payload[..], &data[..]);
        }
    }

    #[test]
    fn truncated_frames_ask_for_more_at_every_cut() {
        let b = frame(true, OP_BINARY, &[7u8; 300], Some([9, 9, 9, 9]));
        for cut in 0..b.len() {
            assert_eq!(decode(&b[..cut], Sender::Client, 1 << 20).unwrap(), None);
        }
    }

    #[test]
    fn unmasked_client_frame_is_refused() {
        let b = frame(true, OP_BINARY, b"\x00ls", None);
        assert_eq!(
            decode(&b, Sender::Client, 1024).unwrap_err(),
            WsError::Unmasked
        );
        let b = frame(true, OP_BINARY, b"\x01out", Some([1, 1, 1, 1]));
        assert_eq!(
            decode(&b, Sender::Server, 1024).unwrap_err(),
            WsError::MaskedFromServer
        );
    }

    #[test]
    fn oversized_frame_is_refused_from_its_header_alone() {
        let mut b = BytesMut::new();
        b.put_u8(0x82);
        b.put_u8(127);
        b.put_u64(1 << 40);
        assert!(matches!(
            decode(&b, Sender::Server, 1 << 20).unwrap_err(),
            WsError::TooLarge { .. }
        ));
    }

    #[test]
    fn malformed_headers_are_refused() {
        // Reserved bit.
        assert_eq!(
            decode(&[0xC2, 0x00], Sender::Server, 10).unwrap_err(),
            WsError::ReservedBits
        );
        // Opcode 3 is reserved.
        assert_eq!(
            decode(&[0x83, 0x00], Sender::Server, 10).unwrap_err(),
            WsError::UnknownOpcode(3)
        );
        // Fragmented ping.
        assert_eq!(
            decode(&[0x09, 0x00], Sender::Server, 10).unwrap_err(),
            WsError::BadControl
        );
        // 16-bit length used for a 5-byte payload.
        assert_eq!(
            decode(&[0x82, 126, 0, 5], Sender::Server, 10).unwrap_err(),
            WsError::BadLength
        );
    }

    #[test]
    fn fragmented_messages_reassemble_around_control_frames() {
        let mut a = Assembler::new(1024);
        let f = |fin, op, p: &[u8]| Frame {
            fin,
            opcode: op,
            payload: Bytes::copy_from_slice(p),
        };
        assert_eq!(a.push(f(false, OP_BINARY, b"\x01he")).unwrap(), None);
        assert_eq!(
            a.push(f(true, OP_PING, b"p")).unwrap(),
            Some(Message::Ping(Bytes::from_static(b"p")))
        );
        assert_eq!(a.push(f(false, OP_CONTINUATION, b"ll")).unwrap(), None);
        assert_eq!(
            a.push(f(true, OP_CONTINUATION, b"o")).unwrap(),
            Some(Message::Binary(Bytes::from_static(b"\x01hello")))
        );
        assert_eq!(
            a.push(f(true, OP_CONTINUATION, b"x")).unwrap_err(),
            WsError::UnexpectedContinuation
        );
        a.push(f(false, OP_BINARY, b"a")).unwrap();
        assert_eq!(
            a.push(f(true, OP_BINARY, b"b")).unwrap_err(),
            WsError::UnfinishedMessage
        );
    }

    #[test]
    fn close_frames_carry_code_and_reason() {
        let mut a = Assembler::new(1024);
        let m = a
            .push(Frame {
                fin: true,
                opcode: OP_CLOSE,
                payload: Bytes::from(close_payload(1000, "bye")),
            })
            .unwrap();
        assert_eq!(
            m,
            Some(Message::Close {
                code: Some(1000),
                reason: "bye".into()
            })
        );
    }
}
