//! SPDY/3.1 framing as Kubernetes uses it (moby/spdystream): an incremental frame decoder,
//! encoders, and the per-direction zlib header contexts primed with the SPDY/3 dictionary.
use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::sync::LazyLock;

pub const FLAG_FIN: u8 = 0x01;
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status codes used here.
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_CANCEL: u32 = 5;

/// Most decompressed header bytes accepted per header block: a zlib bomb must not grow memory.
const MAX_HEADER_BLOCK: usize = 256 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpdyError {
    #[error("unsupported SPDY version {0} (only 3 is spoken)")]
    Version(u16),
    #[error("SPDY frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("SPDY {kind} frame is malformed: {what}")]
    Malformed {
        kind: &'static str,
        what: &'static str,
    },
    #[error("SPDY header block does not inflate with the SPDY/3 dictionary: {0}")]
    Zlib(String),
    #[error("SPDY header block inflates past {MAX_HEADER_BLOCK} bytes")]
    HeadersTooLarge,
}

/// A decoded frame. Unknown control frame types are reported, not refused (§2.2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    SynStream {
        stream_id: u32,
        associated: u32,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings,
    Ping(u32),
    GoAway {
        last_stream_id: u32,
        status: u32,
    },
    HeadersFrame {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Unknown(u16),
}

/// Header name/value pairs, names lower-case as SPDY/3 requires.
pub type Headers = Vec<(String, String)>;

/// The value of a header, if present.
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Decodes one frame from the front of `buf` (`Ok(None)`: need more bytes), inflating header
/// blocks with `inflater`, which must be the one context for this direction of the connection.
pub fn decode(
    buf: &[u8],
    inflater: &mut HeaderInflater,
    max: usize,
) -> Result<Option<(Frame, usize)>, SpdyError> {
    decode_with(buf, inflater, max, |r| Bytes::copy_from_slice(&buf[r]))
}

/// Like [`decode`] for bytes already in a `Bytes`: a data frame's payload is a slice of `buf`,
/// not a copy (the relay's hot path moves every stdout and port-forward byte through here).
pub fn decode_shared(
    buf: &Bytes,
    inflater: &mut HeaderInflater,
    max: usize,
) -> Result<Option<(Frame, usize)>, SpdyError> {
    decode_with(buf, inflater, max, |r| buf.slice(r))
}

/// What a frame's first 8 bytes say, all a reader needs before the rest has arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Payload bytes after the head.
    pub len: usize,
    /// `(stream_id, fin)` of a data frame; `None` for a control frame.
    pub data: Option<(u32, bool)>,
}

pub const HEAD_LEN: usize = 8;

impl Head {
    /// Reads a frame head, refusing a payload longer than `max`.
    pub fn parse(head: &[u8; HEAD_LEN], max: usize) -> Result<Head, SpdyError> {
        let len = (usize::from(head[5]) << 16) | (usize::from(head[6]) << 8) | usize::from(head[7]);
        if len > max {
            return Err(SpdyError::TooLarge { len, max });
        }
        let data =
            (head[0] & 0x80 == 0).then(|| (u32_at(head, 0) & 0x7FFF_FFFF, head[4] & FLAG_FIN != 0));
        Ok(Head { len, data })
    }
}

/// `payload` turns the range of a data frame's payload within `buf` into its bytes.
fn decode_with(
    buf: &[u8],
    inflater: &mut HeaderInflater,
    max: usize,
    payload: impl FnOnce(std::ops::Range<usize>) -> Bytes,
) -> Result<Option<(Frame, usize)>, SpdyError> {
    let Some(head) = buf.first_chunk::<HEAD_LEN>() else {
        return Ok(None);
    };
    let Head { len, data } = Head::parse(head, max)?;
    if buf.len() < HEAD_LEN + len {
        return Ok(None);
    }
    let flags = buf[4];
    let body = &buf[HEAD_LEN..HEAD_LEN + len];
    let used = HEAD_LEN + len;
    if let Some((stream_id, fin)) = data {
        return Ok(Some((
            Frame::Data {
                stream_id,
                fin,
                data: payload(HEAD_LEN..used),
            },
            used,
        )));
    }
    let version = u16::from_be_bytes([buf[0], buf[1]]) & 0x7FFF;
    if version != 3 {
        return Err(SpdyError::Version(version));
    }
    let kind = u16::from_be_bytes([buf[2], buf[3]]);
    let need = |n: usize, kind: &'static str| {
        if body.len() < n {
            Err(SpdyError::Malformed {
                kind,
                what: "too short",
            })
        } else {
            Ok(())
        }
    };
    let frame = match kind {
        TYPE_SYN_STREAM => {
            need(10, "SYN_STREAM")?;
            Frame::SynStream {
                stream_id: u32_at(body, 0) & 0x7FFF_FFFF,
                associated: u32_at(body, 4) & 0x7FFF_FFFF,
                flags,
                headers: inflater.inflate(&body[10..])?,
            }
        }
        TYPE_SYN_REPLY => {
            need(4, "SYN_REPLY")?;
            Frame::SynReply {
                stream_id: u32_at(body, 0) & 0x7FFF_FFFF,
                flags,
                headers: inflater.inflate(&body[4..])?,
            }
        }
        TYPE_HEADERS => {
            need(4, "HEADERS")?;
            Frame::HeadersFrame {
                stream_id: u32_at(body, 0) & 0x7FFF_FFFF,
                flags,
                headers: inflater.inflate(&body[4..])?,
            }
        }
        TYPE_RST_STREAM => {
            need(8, "RST_STREAM")?;
            Frame::RstStream {
                stream_id: u32_at(body, 0) & 0x7FFF_FFFF,
                status: u32_at(body, 4),
            }
        }
        TYPE_SETTINGS => {
            need(4, "SETTINGS")?;
            let n = u32_at(body, 0) as usize;
            if body.len() != 4 + n.saturating_mul(8) {
                return Err(SpdyError::Malformed {
                    kind: "SETTINGS",
                    what: "entry count does not match the length",
                });
            }
            Frame::Settings
        }
        TYPE_PING => {
            if body.len() != 4 {
                return Err(SpdyError::Malformed {
                    kind: "PING",
                    what: "length is not 4",
                });
            }
            Frame::Ping(u32_at(body, 0))
        }
        TYPE_GOAWAY => {
            need(8, "GOAWAY")?;
            Frame::GoAway {
                last_stream_id: u32_at(body, 0) & 0x7FFF_FFFF,
                status: u32_at(body, 4),
            }
        }
        TYPE_WINDOW_UPDATE => {
            need(8, "WINDOW_UPDATE")?;
            Frame::WindowUpdate {
                stream_id: u32_at(body, 0) & 0x7FFF_FFFF,
                delta: u32_at(body, 4) & 0x7FFF_FFFF,
            }
        }
        other => Frame::Unknown(other),
    };
    Ok(Some((frame, used)))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn control(out: &mut BytesMut, kind: u16, flags: u8, body: &[u8]) {
    out.put_u16(0x8003);
    out.put_u16(kind);
    out.put_u8(flags);
    put_u24(out, body.len());
    out.put_slice(body);
}

fn put_u24(out: &mut BytesMut, n: usize) {
    out.put_u8((n >> 16) as u8);
    out.put_u8((n >> 8) as u8);
    out.put_u8(n as u8);
}

/// The largest DATA payload one frame can carry (24-bit length).
pub const MAX_DATA: usize = 0xFF_FFFF;

pub fn encode_data(out: &mut BytesMut, stream_id: u32, fin: bool, data: &[u8]) {
    out.put_u32(stream_id & 0x7FFF_FFFF);
    out.put_u8(if fin { FLAG_FIN } else { 0 });
    put_u24(out, data.len());
    out.put_slice(data);
}

pub fn encode_syn_stream(
    out: &mut BytesMut,
    deflater: &mut HeaderDeflater,
    stream_id: u32,
    flags: u8,
    headers: &[(&str, &str)],
) -> Result<(), SpdyError> {
    let mut body = BytesMut::new();
    body.put_u32(stream_id);
    body.put_u32(0);
    body.put_u16(0);
    body.put_slice(&deflater.deflate(headers)?);
    control(out, TYPE_SYN_STREAM, flags, &body);
    Ok(())
}

pub fn encode_syn_reply(
    out: &mut BytesMut,
    deflater: &mut HeaderDeflater,
    stream_id: u32,
    flags: u8,
    headers: &[(&str, &str)],
) -> Result<(), SpdyError> {
    let mut body = BytesMut::new();
    body.put_u32(stream_id);
    body.put_slice(&deflater.deflate(headers)?);
    control(out, TYPE_SYN_REPLY, flags, &body);
    Ok(())
}

pub fn encode_rst(out: &mut BytesMut, stream_id: u32, status: u32) {
    let mut body = BytesMut::new();
    body.put_u32(stream_id);
    body.put_u32(status);
    control(out, TYPE_RST_STREAM, 0, &body);
}

pub fn encode_ping(out: &mut BytesMut, id: u32) {
    control(out, TYPE_PING, 0, &id.to_be_bytes());
}

pub fn encode_goaway(out: &mut BytesMut, last_stream_id: u32, status: u32) {
    let mut body = BytesMut::new();
    body.put_u32(last_stream_id);
    body.put_u32(status);
    control(out, TYPE_GOAWAY, 0, &body);
}

/// The SPDY/3 header compression dictionary (draft 3 §2.6.10.1), built from its parts: 1,423
/// bytes of length-prefixed header names and values, then common status lines and tokens.
pub static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    const WORDS: &[&str] = &[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
    ];
    const TAIL: &str = "origin100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";
    let mut d = Vec::with_capacity(1423);
    for w in WORDS {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    // "origin" is length-prefixed too; the rest follows without prefixes.
    d.extend_from_slice(&6u32.to_be_bytes());
    d.extend_from_slice(TAIL.as_bytes());
    d
});

/// One direction's header decompression context (SPDY shares it across the connection).
pub struct HeaderInflater {
    z: Decompress,
}

impl Default for HeaderInflater {
    fn default() -> Self {
        HeaderInflater {
            z: Decompress::new(true),
        }
    }
}

impl std::fmt::Debug for HeaderInflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeaderInflater")
    }
}

impl HeaderInflater {
    pub fn inflate(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        let mut out: Vec<u8> = Vec::with_capacity(1024);
        let mut input = block;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity());
            }
            let before_in = self.z.total_in();
            let before_out = out.len();
            let result = self
                .z
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            let used = (self.z.total_in() - before_in) as usize;
            input = &input[used..];
            match result {
                Ok(Status::StreamEnd) => {
                    return Err(SpdyError::Zlib("the zlib stream ended".into()));
                }
                Ok(_) => {
                    if out.len() > MAX_HEADER_BLOCK {
                        return Err(SpdyError::HeadersTooLarge);
                    }
                    // Done once all input is consumed and inflate had room to spare.
                    if input.is_empty() && out.len() < out.capacity() {
                        break;
                    }
                    if used == 0 && out.len() == before_out && out.len() < out.capacity() {
                        return Err(SpdyError::Zlib("inflate made no progress".into()));
                    }
                }
                Err(e) if e.needs_dictionary().is_some() => {
                    self.z
                        .set_dictionary(&DICTIONARY)
                        .map_err(|e| SpdyError::Zlib(e.to_string()))?;
                }
                Err(e) => return Err(SpdyError::Zlib(e.to_string())),
            }
        }
        parse_block(&out)
    }
}

fn parse_block(b: &[u8]) -> Result<Headers, SpdyError> {
    let bad = |what| SpdyError::Malformed {
        kind: "header block",
        what,
    };
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], SpdyError> {
        let end = at.checked_add(n).ok_or(bad("length overflows"))?;
        let s = b.get(at..end).ok_or(bad("truncated"))?;
        at = end;
        Ok(s)
    };
    let count = u32::from_be_bytes(take(4)?.try_into().map_err(|_| bad("truncated"))?);
    if count as usize > b.len() / 8 {
        return Err(bad("more pairs than bytes"));
    }
    let mut headers = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let n = u32::from_be_bytes(take(4)?.try_into().map_err(|_| bad("truncated"))?);
        let name = String::from_utf8_lossy(take(n as usize)?).to_ascii_lowercase();
        let n = u32::from_be_bytes(take(4)?.try_into().map_err(|_| bad("truncated"))?);
        let value = take(n as usize)?;
        // NUL separates the values of a repeated header.
        for v in value.split(|c| *c == 0) {
            headers.push((name.clone(), String::from_utf8_lossy(v).into_owned()));
        }
    }
    Ok(headers)
}

/// One direction's header compression context.
pub struct HeaderDeflater {
    z: Compress,
}

impl std::fmt::Debug for HeaderDeflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeaderDeflater")
    }
}

impl HeaderDeflater {
    pub fn new() -> Result<Self, SpdyError> {
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(&DICTIONARY)
            .map_err(|e| SpdyError::Zlib(e.to_string()))?;
        Ok(HeaderDeflater { z })
    }

    pub fn deflate(&mut self, headers: &[(&str, &str)]) -> Result<Vec<u8>, SpdyError> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (k, v) in headers {
            raw.extend_from_slice(&(k.len() as u32).to_be_bytes());
            raw.extend_from_slice(k.to_ascii_lowercase().as_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
            raw.extend_from_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = &raw[..];
        loop {
            out.reserve(raw.len() + 64);
            let before = self.z.total_in();
            self.z
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Zlib(e.to_string()))?;
            input = &input[(self.z.total_in() - before) as usize..];
            // A sync flush is complete when it did not fill the output buffer.
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn dictionary_is_the_spec_one() {
        assert_eq!(DICTIONARY.len(), 1423);
        assert_eq!(&DICTIONARY[..11], b"\0\0\0\x07options");
        assert!(DICTIONARY.ends_with(b",enq=0."));
    }

    #[test]
    fn syn_stream_round_trips_through_shared_zlib_contexts() {
        let mut d = HeaderDeflater::new().unwrap();
        let mut i = HeaderInflater::default();
        let mut buf = BytesMut::new();
        for (id, t) in [(1, "error"), (3, "stdin"), (5, "stdout")] {
            encode_syn_stream(&mut buf, &mut d, id, 0, &[("streamType", t)]).unwrap();
        }
        encode_data(&mut buf, 3, true, b"hello");
        encode_ping(&mut buf, 7);
        let mut at = 0;
        let mut frames = Vec::new();
        while let Some((f, used)) = decode(&buf[at..], &mut i, 1 << 20).unwrap() {
            frames.push(f);
            at += used;
        }
        assert_eq!(frames.len(), 5);
        assert_eq!(
            frames[2],
            Frame::SynStream {
                stream_id: 5,
                associated: 0,
                flags: 0,
                headers: vec![("streamtype".into(), "stdout".into())]
            }
        );
        assert_eq!(
            frames[3],
            Frame::Data {
                stream_id: 3,
                fin: true,
                data: Bytes::from_static(b"hello")
            }
        );
        assert_eq!(frames[4], Frame::Ping(7));
    }

    #[test]
    fn truncated_frames_ask_for_more() {
        let mut d = HeaderDeflater::new().unwrap();
        let mut buf = BytesMut::new();
        encode_syn_stream(&mut buf, &mut d, 1, 0, &[("streamtype", "error")]).unwrap();
        for cut in 0..buf.len() {
            let mut i = HeaderInflater::default();
            assert_eq!(decode(&buf[..cut], &mut i, 1 << 20).unwrap(), None);
        }
    }

    #[test]
    fn bad_zlib_is_refused() {
        let mut buf = BytesMut::new();
        let mut body = BytesMut::new();
        body.put_u32(1);
        body.put_u32(0);
        body.put_u16(0);
        body.put_slice(b"this is not zlib at all");
        control(&mut buf, TYPE_SYN_STREAM, 0, &body);
        let mut i = HeaderInflater::default();
        assert!(matches!(
            decode(&buf, &mut i, 1 << 20).unwrap_err(),
            SpdyError::Zlib(_)
        ));
    }

    #[test]
    fn oversized_and_malformed_frames_are_refused() {
        let mut buf = BytesMut::new();
        encode_data(&mut buf, 1, false, &vec![0u8; 5000]);
        let mut i = HeaderInflater::default();
        assert!(matches!(
            decode(&buf, &mut i, 4096).unwrap_err(),
            SpdyError::TooLarge { .. }
        ));
        let mut buf = BytesMut::new();
        control(&mut buf, TYPE_PING, 0, &[0, 1]);
        assert!(matches!(
            decode(&buf, &mut i, 4096).unwrap_err(),
            SpdyError::Malformed { kind: "PING", .. }
        ));
        let mut buf = BytesMut::new();
        buf.put_u16(0x8002);
        buf.put_u16(TYPE_PING);
        buf.put_u8(0);
        put_u24(&mut buf, 4);
        buf.put_u32(1);
        assert_eq!(
            decode(&buf, &mut i, 4096).unwrap_err(),
            SpdyError::Version(2)
        );
    }

    #[test]
    fn header_block_with_lying_counts_is_refused() {
        assert!(parse_block(&[0xFF, 0xFF, 0xFF, 0xFF]).is_err());
        assert!(parse_block(&[0, 0, 0, 1, 0, 0, 0, 9, b'a']).is_err());
    }
}
