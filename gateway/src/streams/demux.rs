//! Splits one direction of an upgraded connection into channel pieces, frame by frame, and
//! says how far the bytes form whole frames (only those are forwarded, after recording).
use super::channel::{self, Kind};
use super::spdy::{self, HeaderInflater, SpdyError};
use super::ws::{self, Assembler, Message, WsError};
use bytes::{Bytes, BytesMut};
use gatehouse_proto::v1::{StreamChannel, StreamDirection, TerminalSize};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

/// How the upgraded connection frames its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Remote command or legacy port-forward channels in WebSocket messages.
    WebSocket { protocol: String, base64: bool },
    /// SPDY/3.1, one stream per channel (or per port-forward connection and kind).
    Spdy { protocol: String },
    /// SPDY/3.1 bytes carried in WebSocket binary messages (kubectl ≥ 1.31 port-forward).
    SpdyOverWebSocket,
}

impl Transport {
    pub fn name(&self) -> &'static str {
        match self {
            Transport::WebSocket { .. } => "websocket",
            Transport::Spdy { .. } => "spdy",
            Transport::SpdyOverWebSocket => "spdy-over-websocket",
        }
    }

    pub fn protocol(&self) -> String {
        match self {
            Transport::WebSocket { protocol, .. } | Transport::Spdy { protocol } => {
                protocol.clone()
            }
            Transport::SpdyOverWebSocket => "SPDY/3.1+portforward.k8s.io".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemuxError {
    #[error(transparent)]
    Ws(#[from] WsError),
    #[error(transparent)]
    Spdy(#[from] SpdyError),
    #[error("unknown stream channel {0}")]
    UnknownChannel(u8),
    #[error("unknown SPDY stream type {0:?}")]
    UnknownStreamType(String),
    #[error("SPDY data on stream {0}, which was never opened")]
    UnknownStream(u32),
    #[error("a {0} message on a binary-only stream protocol")]
    UnexpectedMessage(&'static str),
    #[error("a base64 channel message does not decode")]
    BadBase64,
    #[error("the connection ended inside a frame ({0} bytes of it unforwarded)")]
    Truncated(usize),
}

/// One channel's bytes from one frame.
#[derive(Clone, Debug)]
pub struct Piece {
    pub direction: StreamDirection,
    pub channel: StreamChannel,
    pub data: Bytes,
    pub resize: Option<TerminalSize>,
    pub port: u32,
    pub connection: String,
}

/// What one call to [`Demux::feed`] found.
#[derive(Debug, Default)]
pub struct Fed {
    pub pieces: Vec<Piece>,
    /// Bytes at the front of the input that form whole frames.
    pub used: usize,
    /// Ranges within `..used` not to forward (echoes of the gateway's own pings).
    pub skip: Vec<Range<usize>>,
    /// Pings to answer on behalf of nobody: none today; peers answer their own pings.
    pub orderly_close: bool,
}

#[derive(Clone, Debug)]
struct SpdyStream {
    channel: StreamChannel,
    port: u32,
    connection: String,
}

/// State both directions need: SPDY streams are opened by the client and used by both.
#[derive(Debug, Default)]
pub struct Shared {
    spdy_streams: HashMap<u32, SpdyStream>,
    /// Ping ids the gateway sent on its own (keepalive); their echoes are not forwarded.
    pub gateway_pings: HashSet<u32>,
    /// Legacy WebSocket port-forward: channels whose 2-byte port prefix was already seen.
    ws_port_prefix_seen: HashSet<u8>,
}

impl Shared {
    /// The SPDY stream carrying the remote command's status, once the client opened it.
    pub fn error_stream(&self) -> Option<u32> {
        self.stream_of(StreamChannel::Error)
    }

    /// The SPDY stream of a remote command channel, once the client opened it.
    pub fn stream_of(&self, channel: StreamChannel) -> Option<u32> {
        self.spdy_streams
            .iter()
            .find(|(_, s)| s.channel == channel)
            .map(|(id, _)| *id)
    }
}

pub struct Demux {
    direction: StreamDirection,
    kind: Kind,
    transport: Transport,
    ports: Vec<u32>,
    assembler: Assembler,
    inflater: HeaderInflater,
    /// The start of a tunnelled SPDY frame that the WebSocket messages so far left unfinished
    /// (see `finish_straddling`).
    tunnel: BytesMut,
    max_frame: usize,
    shared: Arc<Mutex<Shared>>,
}

impl Demux {
    pub fn new(
        direction: StreamDirection,
        kind: Kind,
        transport: Transport,
        ports: Vec<u32>,
        max_frame: usize,
        shared: Arc<Mutex<Shared>>,
    ) -> Self {
        Demux {
            direction,
            kind,
            transport,
            ports,
            assembler: Assembler::new(max_frame),
            inflater: HeaderInflater::default(),
            tunnel: BytesMut::new(),
            max_frame,
            shared,
        }
    }

    fn sender(&self) -> ws::Sender {
        if self.direction == StreamDirection::ToContainer {
            ws::Sender::Client
        } else {
            ws::Sender::Server
        }
    }

    pub fn feed(&mut self, buf: &[u8]) -> Result<Fed, DemuxError> {
        self.feed_up_to(buf, None, usize::MAX)
    }

    /// Like [`Demux::feed`] for bytes already in a `Bytes`: the pieces' data are slices of
    /// `buf` rather than copies wherever the framing allows (unmasked WebSocket payloads and
    /// SPDY data frames, which is all of the bulk output).
    pub fn feed_shared(&mut self, buf: &Bytes) -> Result<Fed, DemuxError> {
        self.feed_up_to(buf, Some(buf), usize::MAX)
    }

    /// Like [`Demux::feed`], for at most one frame of the connection (`used` is 0 when no
    /// whole frame is there): callers that may rewrite a frame see exactly its bytes.
    pub fn feed_one(&mut self, buf: &[u8]) -> Result<Fed, DemuxError> {
        self.feed_up_to(buf, None, 1)
    }

    /// `shared`, when given, holds the same bytes as `buf`, for payloads to be sliced from.
    fn feed_up_to(
        &mut self,
        buf: &[u8],
        shared: Option<&Bytes>,
        limit: usize,
    ) -> Result<Fed, DemuxError> {
        let mut fed = Fed::default();
        let mut frames = 0usize;
        let mut more = || {
            frames += 1;
            frames <= limit
        };
        match self.transport.clone() {
            Transport::Spdy { .. } => {
                while more()
                    && let Some((frame, n)) = match shared {
                        Some(b) => spdy::decode_shared(
                            &b.slice(fed.used..),
                            &mut self.inflater,
                            self.max_frame,
                        )?,
                        None => spdy::decode(&buf[fed.used..], &mut self.inflater, self.max_frame)?,
                    }
                {
                    let at = fed.used;
                    fed.used += n;
                    if self.spdy_frame(frame, &mut fed.pieces, &mut fed.orderly_close)? {
                        fed.skip.push(at..at + n);
                    }
                }
            }
            Transport::WebSocket { base64, .. } => {
                while more()
                    && let Some((frame, n)) = self.ws_decode(buf, shared, fed.used)?
                {
                    fed.used += n;
                    if let Some(msg) = self.assembler.push(frame)? {
                        self.ws_message(msg, base64, &mut fed)?;
                    }
                }
            }
            Transport::SpdyOverWebSocket => {
                while more()
                    && let Some((frame, n)) = self.ws_decode(buf, shared, fed.used)?
                {
                    fed.used += n;
                    let message = match self.assembler.push(frame)? {
                        Some(Message::Binary(b)) => b,
                        Some(Message::Text(_)) => {
                            return Err(DemuxError::UnexpectedMessage("text"));
                        }
                        Some(Message::Close { .. }) => {
                            fed.orderly_close = true;
                            continue;
                        }
                        _ => continue,
                    };
                    // SPDY frames inside the tunnel may span messages (kube-apiserver cuts
                    // its tunnel where reads end): finish a frame left over from earlier
                    // messages, then decode what is whole straight from this one.
                    let message = if self.tunnel.is_empty() {
                        message
                    } else {
                        match self.finish_straddling(message, &mut fed.pieces)? {
                            Some(rest) => rest,
                            None => continue,
                        }
                    };
                    let mut at = 0;
                    while let Some((frame, n)) = spdy::decode_shared(
                        &message.slice(at..),
                        &mut self.inflater,
                        self.max_frame,
                    )? {
                        at += n;
                        let mut closed = false;
                        self.spdy_frame(frame, &mut fed.pieces, &mut closed)?;
                    }
                    // The unfinished rest is copied, not sliced: a slice would keep the
                    // relay's whole read buffer from being reused (`relay::unforwarded`).
                    self.tunnel.extend_from_slice(&message[at..]);
                }
            }
        }
        Ok(fed)
    }

    /// Decodes the WebSocket frame at `at`, slicing its payload from `shared` when given.
    fn ws_decode(
        &self,
        buf: &[u8],
        shared: Option<&Bytes>,
        at: usize,
    ) -> Result<Option<(ws::Frame, usize)>, WsError> {
        match shared {
            Some(b) => ws::decode_shared(&b.slice(at..), self.sender(), self.max_frame),
            None => ws::decode(&buf[at..], self.sender(), self.max_frame),
        }
    }

    fn ws_message(&mut self, msg: Message, base64: bool, fed: &mut Fed) -> Result<(), DemuxError> {
        let data = match msg {
            Message::Binary(b) if !base64 => b,
            Message::Text(t) if base64 => {
                use base64::Engine as _;
                let (&c, rest) = t.split_first().ok_or(DemuxError::BadBase64)?;
                let ch = c.checked_sub(b'0').ok_or(DemuxError::UnknownChannel(c))?;
                let mut d = vec![ch];
                d.extend(
                    base64::engine::general_purpose::STANDARD
                        .decode(rest)
                        .map_err(|_| DemuxError::BadBase64)?,
                );
                Bytes::from(d)
            }
            Message::Binary(_) => return Err(DemuxError::UnexpectedMessage("binary")),
            Message::Text(_) => return Err(DemuxError::UnexpectedMessage("text")),
            Message::Close { .. } => {
                fed.orderly_close = true;
                return Ok(());
            }
            Message::Ping(_) | Message::Pong(_) => return Ok(()),
        };
        // An empty message carries no channel (some servers open channels with one).
        let Some((&byte, payload)) = data.split_first() else {
            return Ok(());
        };
        let payload = data.slice(data.len() - payload.len()..);
        if self.kind == Kind::PortForward {
            // Legacy WebSocket port-forward: channel 2i carries data for the i-th port, 2i+1
            // its errors; the server's first message on each channel starts with the port.
            let port = self.ports.get(usize::from(byte / 2)).copied();
            let Some(port) = port else {
                return Err(DemuxError::UnknownChannel(byte));
            };
            let mut payload = payload;
            if self.direction == StreamDirection::FromContainer
                && self.shared.lock().ws_port_prefix_seen.insert(byte)
            {
                payload = payload.slice(payload.len().min(2)..);
            }
            fed.pieces.push(Piece {
                direction: self.direction,
                channel: if byte % 2 == 0 {
                    StreamChannel::PortData
                } else {
                    StreamChannel::PortError
                },
                data: payload,
                resize: None,
                port,
                connection: format!("ws-{}", byte / 2),
            });
            return Ok(());
        }
        let ch = channel::ws_channel(byte).ok_or(DemuxError::UnknownChannel(byte))?;
        let resize = if ch == StreamChannel::Resize {
            channel::parse_resize(&payload)
        } else {
            None
        };
        if ch == StreamChannel::Close
            && payload
                .first()
                .and_then(|b| channel::ws_channel(*b))
                .is_none()
        {
            return Err(DemuxError::UnknownChannel(
                payload.first().copied().unwrap_or(255),
            ));
        }
        fed.pieces.push(Piece {
            direction: self.direction,
            channel: ch,
            data: payload,
            resize,
            port: 0,
            connection: String::new(),
        });
        Ok(())
    }

    /// Finishes the tunnelled SPDY frame begun in `self.tunnel` with the front of `message`
    /// once they hold all of it, and returns the rest of `message` (`None`: still unfinished,
    /// and `message` was taken in). A data frame's payload goes out as two pieces, the held
    /// part and a slice of `message`, so the bulk of each message is never copied; the
    /// recorder merges neighbouring pieces again.
    fn finish_straddling(
        &mut self,
        message: Bytes,
        pieces: &mut Vec<Piece>,
    ) -> Result<Option<Bytes>, DemuxError> {
        let held = self.tunnel.len();
        let mut head = [0u8; spdy::HEAD_LEN];
        if held + message.len() < head.len() {
            self.tunnel.extend_from_slice(&message);
            return Ok(None);
        }
        let from_held = held.min(head.len());
        head[..from_held].copy_from_slice(&self.tunnel[..from_held]);
        head[from_held..].copy_from_slice(&message[..spdy::HEAD_LEN - from_held]);
        let spdy::Head { len, data } = spdy::Head::parse(&head, self.max_frame)?;
        let whole = spdy::HEAD_LEN + len;
        if held + message.len() < whole {
            self.tunnel.extend_from_slice(&message);
            return Ok(None);
        }
        // `held < whole` always: a frame is finished as soon as its bytes are in.
        let need = whole - held;
        let mut closed = false;
        let Some((stream_id, fin)) = data else {
            // A control frame: small, so gather it and decode as usual.
            self.tunnel.extend_from_slice(&message[..need]);
            let frame = self.tunnel.split().freeze();
            if let Some((frame, _)) =
                spdy::decode_shared(&frame, &mut self.inflater, self.max_frame)?
            {
                self.spdy_frame(frame, pieces, &mut closed)?;
            }
            return Ok(Some(message.slice(need..)));
        };
        // The payload held over (none while the head itself was still arriving)...
        let held_payload = self
            .tunnel
            .split()
            .freeze()
            .split_off(held.min(spdy::HEAD_LEN));
        if !held_payload.is_empty() {
            let frame = spdy::Frame::Data {
                stream_id,
                fin: false,
                data: held_payload,
            };
            self.spdy_frame(frame, pieces, &mut closed)?;
        }
        // ...and the rest, which always ends in this message (`need > 0`), so it carries `fin`.
        let frame = spdy::Frame::Data {
            stream_id,
            fin,
            data: message.slice(spdy::HEAD_LEN.saturating_sub(held)..need),
        };
        self.spdy_frame(frame, pieces, &mut closed)?;
        Ok(Some(message.slice(need..)))
    }

    /// Handles one SPDY frame; returns true when the frame is an echo of a gateway ping.
    fn spdy_frame(
        &mut self,
        frame: spdy::Frame,
        pieces: &mut Vec<Piece>,
        orderly_close: &mut bool,
    ) -> Result<bool, DemuxError> {
        match frame {
            spdy::Frame::SynStream {
                stream_id, headers, ..
            } => {
                let st = spdy::header(&headers, "streamtype").unwrap_or_default();
                let channel = if self.kind == Kind::PortForward && st == "error" {
                    StreamChannel::PortError
                } else {
                    channel::spdy_channel(st)
                        .ok_or_else(|| DemuxError::UnknownStreamType(st.to_string()))?
                };
                let port = spdy::header(&headers, "port")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                let connection = spdy::header(&headers, "requestid")
                    .unwrap_or_default()
                    .to_string();
                self.shared.lock().spdy_streams.insert(
                    stream_id,
                    SpdyStream {
                        channel,
                        port,
                        connection,
                    },
                );
            }
            spdy::Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                let stream = self
                    .shared
                    .lock()
                    .spdy_streams
                    .get(&stream_id)
                    .cloned()
                    .ok_or(DemuxError::UnknownStream(stream_id))?;
                if !data.is_empty() {
                    let resize = if stream.channel == StreamChannel::Resize {
                        channel::parse_resize(&data)
                    } else {
                        None
                    };
                    pieces.push(Piece {
                        direction: self.direction,
                        channel: stream.channel,
                        data,
                        resize,
                        port: stream.port,
                        connection: stream.connection.clone(),
                    });
                }
                if fin {
                    pieces.push(close_piece(self.direction, &stream));
                }
            }
            spdy::Frame::RstStream { stream_id, .. } => {
                if let Some(stream) = self.shared.lock().spdy_streams.get(&stream_id).cloned() {
                    pieces.push(close_piece(self.direction, &stream));
                }
            }
            spdy::Frame::GoAway { .. } => *orderly_close = true,
            spdy::Frame::Ping(id) => return Ok(self.shared.lock().gateway_pings.remove(&id)),
            spdy::Frame::SynReply { .. }
            | spdy::Frame::HeadersFrame { .. }
            | spdy::Frame::Settings
            | spdy::Frame::WindowUpdate { .. }
            | spdy::Frame::Unknown(_) => {}
        }
        Ok(false)
    }
}

fn close_piece(direction: StreamDirection, stream: &SpdyStream) -> Piece {
    Piece {
        direction,
        channel: StreamChannel::Close,
        data: Bytes::from(vec![channel::channel_byte(stream.channel).unwrap_or(0)]),
        resize: None,
        port: stream.port,
        connection: stream.connection.clone(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bytes::BufMut;

    fn demux(dir: StreamDirection, kind: Kind, t: Transport) -> Demux {
        Demux::new(dir, kind, t, vec![8080], 1 << 20, Arc::default())
    }

    fn v5() -> Transport {
        Transport::WebSocket {
            protocol: "v5.channel.k8s.io".into(),
            base64: false,
        }
    }

    #[test]
    fn websocket_channels_split_and_partial_frames_wait() {
        let mut d = demux(StreamDirection::ToContainer, Kind::Exec, v5());
        let mut b = BytesMut::new();
        ws::encode(&mut b, true, ws::OP_BINARY, b"\x00ls\n", Some([1, 2, 3, 4]));
        ws::encode(
            &mut b,
            true,
            ws::OP_BINARY,
            b"\x04{\"Width\":80,\"Height\":24}",
            Some([5, 6, 7, 8]),
        );
        let whole = b.len();
        ws::encode(&mut b, true, ws::OP_BINARY, b"\xff\x00", Some([0, 0, 0, 1]));
        let fed = d.feed(&b[..b.len() - 1]).unwrap();
        assert_eq!(fed.used, whole, "the partial close message is held back");
        assert_eq!(fed.pieces[0].channel, StreamChannel::Stdin);
        assert_eq!(&fed.pieces[0].data[..], b"ls\n");
        let fed = d.feed(&b[whole..]).unwrap();
        assert_eq!(fed.pieces[0].channel, StreamChannel::Close);
        assert_eq!(&fed.pieces[0].data[..], b"\x00");
    }

    #[test]
    fn websocket_resize_is_parsed() {
        let mut d = demux(StreamDirection::ToContainer, Kind::Exec, v5());
        let mut b = BytesMut::new();
        ws::encode(
            &mut b,
            true,
            ws::OP_BINARY,
            b"\x04{\"Width\":100,\"Height\":30}",
            Some([9, 9, 9, 9]),
        );
        let fed = d.feed(&b).unwrap();
        let r = fed.pieces[0].resize.unwrap();
        assert_eq!((r.width, r.height), (100, 30));
    }

    #[test]
    fn unknown_channel_is_an_error() {
        let mut d = demux(StreamDirection::FromContainer, Kind::Exec, v5());
        let mut b = BytesMut::new();
        ws::encode(&mut b, true, ws::OP_BINARY, b"\x07boo", None);
        assert!(matches!(d.feed(&b), Err(DemuxError::UnknownChannel(7))));
        let mut b = BytesMut::new();
        ws::encode(&mut b, true, ws::OP_BINARY, b"\xff\x09", Some([1, 1, 1, 1]));
        let mut d = demux(StreamDirection::ToContainer, Kind::Exec, v5());
        assert!(matches!(d.feed(&b), Err(DemuxError::UnknownChannel(9))));
    }

    #[test]
    fn unmasked_client_frame_is_an_error() {
        let mut d = demux(StreamDirection::ToContainer, Kind::Exec, v5());
        let mut b = BytesMut::new();
        ws::encode(&mut b, true, ws::OP_BINARY, b"\x00hi", None);
        assert!(matches!(d.feed(&b), Err(DemuxError::Ws(WsError::Unmasked))));
    }

    #[test]
    fn text_message_on_binary_protocol_is_an_error() {
        let mut d = demux(StreamDirection::FromContainer, Kind::Exec, v5());
        let mut b = BytesMut::new();
        ws::encode(&mut b, true, ws::OP_TEXT, b"1hi", None);
        assert!(matches!(
            d.feed(&b),
            Err(DemuxError::UnexpectedMessage("text"))
        ));
    }

    #[test]
    fn base64_protocol_decodes_channels() {
        let mut d = demux(
            StreamDirection::FromContainer,
            Kind::Exec,
            Transport::WebSocket {
                protocol: "v4.base64.channel.k8s.io".into(),
                base64: true,
            },
        );
        let mut b = BytesMut::new();
        ws::encode(&mut b, true, ws::OP_TEXT, b"1aGk=", None);
        let fed = d.feed(&b).unwrap();
        assert_eq!(fed.pieces[0].channel, StreamChannel::Stdout);
        assert_eq!(&fed.pieces[0].data[..], b"hi");
    }

    #[test]
    fn spdy_streams_map_both_directions_and_gateway_ping_echoes_are_skipped() {
        let shared: Arc<Mutex<Shared>> = Arc::default();
        let t = Transport::Spdy {
            protocol: "v4.channel.k8s.io".into(),
        };
        let mut up = Demux::new(
            StreamDirection::ToContainer,
            Kind::Exec,
            t.clone(),
            vec![],
            1 << 20,
            shared.clone(),
        );
        let mut down = Demux::new(
            StreamDirection::FromContainer,
            Kind::Exec,
            t,
            vec![],
            1 << 20,
            shared.clone(),
        );
        let mut z = spdy::HeaderDeflater::new().unwrap();
        let mut b = BytesMut::new();
        spdy::encode_syn_stream(&mut b, &mut z, 1, 0, &[("streamtype", "stdout")]).unwrap();
        spdy::encode_syn_stream(&mut b, &mut z, 3, 0, &[("streamtype", "stdin")]).unwrap();
        spdy::encode_data(&mut b, 3, true, b"input");
        let fed = up.feed(&b).unwrap();
        assert_eq!(fed.used, b.len());
        assert_eq!(fed.pieces.len(), 2);
        assert_eq!(fed.pieces[1].channel, StreamChannel::Close);
        shared.lock().gateway_pings.insert(42);
        let mut b = BytesMut::new();
        spdy::encode_data(&mut b, 1, false, b"output");
        let ping_at = b.len();
        spdy::encode_ping(&mut b, 42);
        spdy::encode_data(&mut b, 99, false, b"x");
        let err = down.feed(&b).unwrap_err();
        assert!(matches!(err, DemuxError::UnknownStream(99)));
        // That failed feed consumed the echo; a real relay ends the stream there.
        shared.lock().gateway_pings.insert(42);
        let fed = down.feed(&b[..ping_at + 12]).unwrap();
        assert_eq!(fed.pieces[0].channel, StreamChannel::Stdout);
        assert_eq!(fed.skip, vec![ping_at..ping_at + 12]);
    }

    #[test]
    fn spdy_unknown_stream_type_is_an_error() {
        let mut d = demux(
            StreamDirection::ToContainer,
            Kind::Exec,
            Transport::Spdy {
                protocol: "v4.channel.k8s.io".into(),
            },
        );
        let mut z = spdy::HeaderDeflater::new().unwrap();
        let mut b = BytesMut::new();
        spdy::encode_syn_stream(&mut b, &mut z, 1, 0, &[("streamtype", "video")]).unwrap();
        assert!(matches!(d.feed(&b), Err(DemuxError::UnknownStreamType(_))));
    }

    #[test]
    fn spdy_over_websocket_port_forward_tracks_connections() {
        let mut d = demux(
            StreamDirection::ToContainer,
            Kind::PortForward,
            Transport::SpdyOverWebSocket,
        );
        let mut z = spdy::HeaderDeflater::new().unwrap();
        let mut inner = BytesMut::new();
        spdy::encode_syn_stream(
            &mut inner,
            &mut z,
            1,
            0,
            &[
                ("streamtype", "error"),
                ("port", "8080"),
                ("requestid", "0"),
            ],
        )
        .unwrap();
        spdy::encode_syn_stream(
            &mut inner,
            &mut z,
            3,
            0,
            &[("streamtype", "data"), ("port", "8080"), ("requestid", "0")],
        )
        .unwrap();
        spdy::encode_data(&mut inner, 3, false, b"ping");
        // Split the SPDY bytes across two WebSocket messages.
        let mut b = BytesMut::new();
        let half = inner.len() - 3;
        ws::encode(
            &mut b,
            true,
            ws::OP_BINARY,
            &inner[..half],
            Some([1, 2, 3, 4]),
        );
        ws::encode(
            &mut b,
            true,
            ws::OP_BINARY,
            &inner[half..],
            Some([4, 3, 2, 1]),
        );
        let fed = d.feed(&b).unwrap();
        assert_eq!(fed.used, b.len());
        // The data frame straddles the messages: its payload comes as the two parts.
        assert_eq!(fed.pieces.len(), 2);
        for p in &fed.pieces {
            assert_eq!(p.channel, StreamChannel::PortData);
            assert_eq!(p.port, 8080);
            assert_eq!(p.connection, "0");
        }
        let data: Vec<u8> = fed.pieces.iter().flat_map(|p| p.data.to_vec()).collect();
        assert_eq!(data, b"ping");
        let mut bad = BytesMut::new();
        bad.put_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert!(d.feed(&bad).is_err());
    }

    /// SPDY bytes opening port-forward data stream 1 (port 8080, connection 0).
    fn opened_data_stream() -> BytesMut {
        let mut z = spdy::HeaderDeflater::new().unwrap();
        let mut inner = BytesMut::new();
        spdy::encode_syn_stream(
            &mut inner,
            &mut z,
            1,
            0,
            &[("streamtype", "data"), ("port", "8080"), ("requestid", "0")],
        )
        .unwrap();
        inner
    }

    /// A peer may send the tunnel a byte per message: the frames still come out whole and in
    /// order, and an oversized frame is refused as soon as its head has arrived.
    #[test]
    fn tunnelled_spdy_a_byte_per_message() {
        let mut inner = opened_data_stream();
        let payload: Vec<u8> = (0..200u8).collect();
        spdy::encode_data(&mut inner, 1, false, &payload);
        spdy::encode_data(&mut inner, 1, true, b"end");
        let mut b = BytesMut::new();
        for byte in inner.iter() {
            ws::encode(&mut b, true, ws::OP_BINARY, &[*byte], None);
        }
        let mut d = Demux::new(
            StreamDirection::FromContainer,
            Kind::PortForward,
            Transport::SpdyOverWebSocket,
            vec![],
            1 << 20,
            Arc::default(),
        );
        let fed = d.feed_shared(&b.freeze()).unwrap();
        let data: Vec<u8> = fed
            .pieces
            .iter()
            .filter(|p| p.channel == StreamChannel::PortData)
            .flat_map(|p| p.data.to_vec())
            .collect();
        assert_eq!(data, [&payload[..], b"end"].concat());
        assert_eq!(
            fed.pieces.last().map(|p| p.channel),
            Some(StreamChannel::Close)
        );

        let mut d = Demux::new(
            StreamDirection::FromContainer,
            Kind::PortForward,
            Transport::SpdyOverWebSocket,
            vec![],
            100,
            Arc::default(),
        );
        let mut big = BytesMut::new();
        spdy::encode_data(&mut big, 1, false, &payload);
        let mut b = BytesMut::new();
        ws::encode(&mut b, true, ws::OP_BINARY, &big[..3], None);
        ws::encode(&mut b, true, ws::OP_BINARY, &big[3..9], None);
        let err = d.feed_shared(&b.freeze()).unwrap_err();
        assert!(
            matches!(
                err,
                DemuxError::Spdy(SpdyError::TooLarge { len: 200, max: 100 })
            ),
            "{err}"
        );
    }

    /// The relay's zero-copy feed finds the same pieces as the copying one wherever the
    /// tunnelled SPDY frames are cut across WebSocket messages, and slices every payload out of
    /// the input but the part of a frame held over from the first message.
    #[test]
    fn shared_feed_matches_copying_feed_for_tunnelled_spdy_at_every_cut() {
        let mut inner = opened_data_stream();
        let opened = inner.len();
        spdy::encode_data(&mut inner, 1, false, b"first");
        spdy::encode_data(&mut inner, 1, false, b"second");
        spdy::encode_data(&mut inner, 1, true, b"third");
        let summary = |fed: &Fed| -> Vec<(StreamChannel, Vec<u8>)> {
            fed.pieces
                .iter()
                .map(|p| (p.channel, p.data.to_vec()))
                .collect()
        };
        for cut in 0..=inner.len() {
            let mut b = BytesMut::new();
            ws::encode(&mut b, true, ws::OP_BINARY, &inner[..cut], None);
            ws::encode(&mut b, true, ws::OP_BINARY, &inner[cut..], None);
            let shared = b.clone().freeze();
            let fresh = || {
                let shared = Arc::default();
                let (dir, kind) = (StreamDirection::FromContainer, Kind::PortForward);
                Demux::new(
                    dir,
                    kind,
                    Transport::SpdyOverWebSocket,
                    vec![],
                    1 << 20,
                    shared,
                )
            };
            let copied = fresh().feed(&b).unwrap();
            let mut demux = fresh();
            let sliced = demux.feed_shared(&shared).unwrap();
            assert_eq!(sliced.used, b.len());
            assert_eq!(summary(&sliced), summary(&copied), "cut at {cut}");
            let data: Vec<u8> = sliced.pieces.iter().flat_map(|p| p.data.to_vec()).collect();
            assert_eq!(data, b"firstsecondthird\x00", "cut at {cut}");
            // Only the part of a frame held over from the first message is a copy; all that
            // arrives in the second is sliced from the input.
            let range = shared.as_ptr_range();
            let copied: Vec<&Piece> = sliced
                .pieces
                .iter()
                .filter(|p| p.channel == StreamChannel::PortData)
                .filter(|p| !range.contains(&p.data.as_ptr()))
                .collect();
            assert!(copied.len() <= 1, "cut at {cut}: {} copies", copied.len());
            if let Some(p) = copied.first() {
                assert!(p.data.len() < cut, "cut at {cut}");
            }
            let fins = sliced
                .pieces
                .iter()
                .filter(|p| p.channel == StreamChannel::Close)
                .count();
            assert_eq!(fins, 1, "cut at {cut}: the stream ends once");
            if cut == opened {
                // Every data frame sits whole in the second message: one piece each.
                assert_eq!(sliced.pieces.len(), 4);
            }
            // Once the pieces are recorded, the demux holds nothing of the input, so the relay
            // reuses its read buffer (`relay::unforwarded`).
            drop(sliced);
            assert!(
                shared.try_into_mut().is_ok(),
                "cut at {cut}: input still held"
            );
            drop(demux);
        }
    }
}
