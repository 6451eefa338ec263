//! Relays an upgraded connection in both directions. Each direction is read, split into whole
//! frames, recorded, and only then forwarded (fail-closed); a partial frame waits for its rest.
//! The gateway sends its own keepalive pings and sets no read deadline on a quiet stream.
use super::channel::{self, Kind, Target};
use super::demux::{Demux, DemuxError, Shared, Transport};
use super::inspect::{Inspected, Inspector};
use super::record::StreamRecorder;
use super::{StreamSettings, spdy, ws};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::FutureExt as _;
use gatehouse_proto::v1::StreamDirection;
use parking_lot::Mutex as SyncMutex;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::Mutex;

/// Either side of the relay: the caller's or the API server's upgraded connection.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

type Writer = Arc<Mutex<WriteHalf<Box<dyn Io>>>>;

/// How one direction ended.
#[derive(Debug)]
enum End {
    /// The sender closed its side; `orderly` if the protocol's close came first.
    Eof {
        orderly: bool,
    },
    Io(std::io::Error),
    Bad(DemuxError),
    Record(String),
    /// A policy check ended the stream (a refused line that could not be cancelled in place).
    Policy(String),
}

/// How the stream ended: `aborted` unless it closed the protocol's way.
#[derive(Debug)]
pub struct Outcome {
    pub aborted: bool,
    pub error: Option<String>,
}

struct Side {
    transport: Transport,
    kind: Kind,
    shared: Arc<SyncMutex<Shared>>,
}

impl Side {
    /// A keepalive ping towards the caller (`to_client`) or the API server.
    fn ping(&self, to_client: bool, n: u32) -> BytesMut {
        let mut out = BytesMut::new();
        match &self.transport {
            Transport::Spdy { .. } => {
                // Server-initiated ping ids are even, client-initiated odd (SPDY/3 §2.6.5); the
                // high range keeps clear of the peers' own counters.
                let id = 0x7F00_0000u32 + n.wrapping_mul(2) % 0x00FF_FFF0 + u32::from(!to_client);
                self.shared.lock().gateway_pings.insert(id);
                spdy::encode_ping(&mut out, id);
            }
            _ => {
                let mask = (!to_client).then(mask);
                ws::encode(&mut out, true, ws::OP_PING, b"gatehouse", mask);
            }
        }
        out
    }

    /// What closes the stream with `message`: towards the caller, the error channel first
    /// (kubectl prints it) and then the protocol's close; towards the API server, the close.
    fn close_with_error(&self, to_client: bool, message: &str) -> BytesMut {
        let mut out = BytesMut::new();
        let status = channel::failure_status(message);
        match &self.transport {
            Transport::WebSocket { base64: false, .. } => {
                if to_client && self.kind != Kind::PortForward {
                    let mut m = vec![3u8];
                    m.extend_from_slice(&status);
                    ws::encode(&mut out, true, ws::OP_BINARY, &m, None);
                }
                let close = ws::close_payload(ws::CLOSE_PROTOCOL_ERROR, message);
                ws::encode(
                    &mut out,
                    true,
                    ws::OP_CLOSE,
                    &close,
                    (!to_client).then(mask),
                );
            }
            Transport::WebSocket { .. } | Transport::SpdyOverWebSocket => {
                let close = ws::close_payload(ws::CLOSE_PROTOCOL_ERROR, message);
                ws::encode(
                    &mut out,
                    true,
                    ws::OP_CLOSE,
                    &close,
                    (!to_client).then(mask),
                );
            }
            Transport::Spdy { .. } => {
                if to_client && let Some(id) = self.shared.lock().error_stream() {
                    spdy::encode_data(&mut out, id, true, &status);
                }
                spdy::encode_goaway(&mut out, 0, spdy::RST_PROTOCOL_ERROR);
            }
        }
        out
    }
}

pub(super) fn mask() -> [u8; 4] {
    let id = uuid::Uuid::new_v4();
    let b = id.as_bytes();
    [b[0], b[1], b[2], b[3]]
}

/// Relays until both sides are done, or one misbehaves. Never returns early on a quiet stream.
pub async fn run(
    client: Box<dyn Io>,
    upstream: Box<dyn Io>,
    target: &Target,
    transport: Transport,
    settings: &StreamSettings,
    rec: Arc<StreamRecorder>,
) -> Outcome {
    let shared: Arc<SyncMutex<Shared>> = Arc::default();
    let side = Arc::new(Side {
        transport: transport.clone(),
        kind: target.kind,
        shared: shared.clone(),
    });
    let (client_r, client_w) = tokio::io::split(client);
    let (up_r, up_w) = tokio::io::split(upstream);
    let client_w: Writer = Arc::new(Mutex::new(client_w));
    let up_w: Writer = Arc::new(Mutex::new(up_w));
    let demux = |dir| {
        Demux::new(
            dir,
            target.kind,
            transport.clone(),
            target.ports.clone(),
            settings.max_frame,
            shared.clone(),
        )
    };
    // Port-forward carries no remote command channels: nothing there to inspect.
    let command = target.kind != Kind::PortForward;
    let mut to_container = Box::pin(pump(
        client_r,
        Ends {
            to: up_w.clone(),
            back: client_w.clone(),
        },
        demux(StreamDirection::ToContainer),
        Inspector::to_container(
            &transport,
            &shared,
            settings
                .stdin_rules
                .clone()
                .filter(|_| command && target.tty),
        ),
        rec.clone(),
        side.clone(),
        false,
        settings.keepalive,
    ));
    let mut from_container = Box::pin(pump(
        up_r,
        Ends {
            to: client_w.clone(),
            back: up_w.clone(),
        },
        demux(StreamDirection::FromContainer),
        Inspector::from_container(
            &transport,
            &shared,
            settings.mask.clone().filter(|_| command),
            rec.masked_counter(),
        ),
        rec.clone(),
        side.clone(),
        true,
        settings.keepalive,
    ));
    let (first_is_client, end) = tokio::select! {
        e = &mut to_container => (true, e),
        e = &mut from_container => (false, e),
    };
    let who = if first_is_client {
        "the caller"
    } else {
        "the API server"
    };
    tracing::debug!(?end, who, "stream direction ended");
    let failure = match &end {
        End::Bad(e) => Some(format!(
            "gatehouse: closed the {} stream because {who} sent bad input: {e}",
            target.kind.as_str()
        )),
        End::Record(e) => Some(format!(
            "gatehouse: closed the {} stream because it could not be recorded: {e}",
            target.kind.as_str()
        )),
        End::Policy(m) => Some(m.clone()),
        _ => None,
    };
    if let Some(message) = failure {
        tracing::warn!(%message, "ending a stream");
        write(&client_w, &side.close_with_error(true, &message)).await;
        write(&up_w, &side.close_with_error(false, &message)).await;
        shutdown(&client_w).await;
        shutdown(&up_w).await;
        return Outcome {
            aborted: true,
            error: Some(message),
        };
    }
    // The first side is done sending: pass the half-close on, then give the other side a grace
    // period to finish (a command's last output and exit status).
    let (other_w, rest) = if first_is_client {
        (&up_w, &mut from_container)
    } else {
        (&client_w, &mut to_container)
    };
    shutdown(other_w).await;
    let client_vanished = first_is_client
        && target.kind != Kind::PortForward
        && !matches!(end, End::Eof { orderly: true })
        && !rec.saw_status();
    // The API server's side ending without the protocol's close or a status is a dropped
    // connection, not a finished command: kubectl sees an error, so must the recording.
    let upstream_vanished = !first_is_client
        && target.kind != Kind::PortForward
        && !matches!(end, End::Eof { orderly: true })
        && !rec.saw_status();
    let second = tokio::time::timeout(settings.grace, rest).await;
    shutdown(&client_w).await;
    shutdown(&up_w).await;
    // Go clients close TLS without close_notify once they have the exit status, and
    // port-forward always ends by the caller going away: neither is a failure.
    let mut error = match end {
        End::Io(e)
            if e.kind() != std::io::ErrorKind::UnexpectedEof
                && !rec.saw_status()
                && target.kind != Kind::PortForward =>
        {
            Some(format!("{who} connection failed: {e}"))
        }
        _ => None,
    };
    let second_failed = match second {
        Err(_) => {
            error.get_or_insert_with(|| {
                format!(
                    "the other side did not finish within {:?} after {who} closed",
                    settings.grace
                )
            });
            true
        }
        Ok(End::Bad(e)) => {
            error.get_or_insert_with(|| format!("bad input after close: {e}"));
            true
        }
        Ok(End::Record(e)) | Ok(End::Policy(e)) => {
            error.get_or_insert(e);
            true
        }
        Ok(End::Io(_)) | Ok(End::Eof { .. }) => false,
    };
    if client_vanished {
        error.get_or_insert_with(|| "the caller disconnected before the command ended".into());
    }
    if upstream_vanished {
        error.get_or_insert_with(|| {
            "the API server connection closed before the command ended".into()
        });
    }
    Outcome {
        aborted: client_vanished || upstream_vanished || second_failed || error.is_some(),
        error,
    }
}

/// Where one direction writes: onwards, and back to its sender (a notice to the caller).
struct Ends {
    to: Writer,
    back: Writer,
}

#[allow(clippy::too_many_arguments)]
async fn pump(
    mut from: ReadHalf<Box<dyn Io>>,
    ends: Ends,
    mut demux: Demux,
    mut inspector: Option<Inspector>,
    rec: Arc<StreamRecorder>,
    side: Arc<Side>,
    to_client: bool,
    keepalive: std::time::Duration,
) -> End {
    let to = ends.to;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
    let mut pings = 0u32;
    let mut orderly = false;
    // The end (or error) of the connection met while taking in a burst, for after the burst.
    let mut held: Option<std::io::Result<usize>> = None;
    loop {
        make_room(&mut buf);
        let read = match held.take() {
            Some(read) => read,
            None => tokio::select! {
                read = from.read_buf(&mut buf) => read,
                _ = ticker.tick() => {
                    pings = pings.wrapping_add(1);
                    let ping = side.ping(to_client, pings);
                    if !write(&to, &ping).await {
                        return End::Eof { orderly };
                    }
                    continue;
                }
            },
        };
        if matches!(read, Ok(n) if n > 0) {
            // A TLS read yields one record (16 KiB); take whatever else is already readable,
            // without waiting, so a burst is recorded as one event and forwarded in one write
            // instead of one per record.
            while buf.len() < BURST {
                make_room(&mut buf);
                match from.read_buf(&mut buf).now_or_never() {
                    Some(Ok(n)) if n > 0 => {}
                    None => break,
                    Some(other) => {
                        held = Some(other);
                        break;
                    }
                }
            }
        }
        let eof = matches!(read, Ok(0));
        if eof && let Some(i) = inspector.as_mut() {
            // Output held back for masking is recorded before the end.
            if let Err(e) = rec.pieces(i.finish()).await {
                return End::Record(crate::error_chain(&e));
            }
        }
        match read {
            // A partial frame is never forwarded: say so rather than drop it quietly.
            Ok(0) if !buf.is_empty() => return End::Bad(DemuxError::Truncated(buf.len())),
            Ok(0) => return End::Eof { orderly },
            Ok(_) => {}
            Err(e) => return End::Io(e),
        }
        // The frames' payloads are sliced out of the read bytes, not copied.
        let view = take_view(&mut buf);
        let inspected = match inspector.as_mut() {
            Some(i) => i.feed(&mut demux, &view),
            None => demux.feed_shared(&view).map(|fed| Inspected {
                fed,
                ..Default::default()
            }),
        };
        let Inspected {
            fed,
            replace,
            refused,
            notices,
            end,
        } = match inspected {
            Ok(i) => i,
            Err(e) => return End::Bad(e),
        };
        let used = fed.used;
        orderly |= fed.orderly_close;
        // A refused line is on record before anything of it moves on.
        for r in &refused {
            tracing::info!(rule = %r.rule, line = %r.line, "stdin line refused by policy");
            if let Err(e) = rec.refused_line(&r.line, &r.rule, &r.message).await {
                return End::Record(crate::error_chain(&e));
            }
        }
        if let Some(message) = end {
            return End::Policy(message);
        }
        if let Err(e) = rec.pieces(fed.pieces).await {
            return End::Record(crate::error_chain(&e));
        }
        // Skipped frames (ping echoes) are dropped, replaced ones written as their new bytes.
        let mut cuts: Vec<(std::ops::Range<usize>, Option<BytesMut>)> =
            fed.skip.into_iter().map(|r| (r, None)).collect();
        cuts.extend(replace.into_iter().map(|(r, b)| (r, Some(b))));
        cuts.sort_by_key(|(r, _)| r.start);
        let mut at = 0;
        let mut ok = true;
        for (r, bytes) in cuts {
            if r.start > at {
                ok &= write(&to, &view[at..r.start]).await;
            }
            if let Some(b) = bytes {
                ok &= write(&to, &b).await;
            }
            at = r.end;
        }
        if used > at {
            ok &= write(&to, &view[at..used]).await;
        }
        buf = unforwarded(view, used);
        for n in notices {
            write(&ends.back, &n).await;
        }
        if !ok {
            // The receiver is gone; keep reading so this side's end is seen and recorded.
            tracing::debug!("stream receiver went away");
        }
    }
}

/// Most bytes one direction takes in before recording and forwarding them (see `pump`).
const BURST: usize = 256 * 1024;

fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < 16 * 1024 {
        buf.reserve(64 * 1024);
    }
}

/// All of `buf` as `Bytes` to slice frames from, leaving `buf` empty and holding nothing of the
/// allocation. `buf.split()` would keep the spare capacity in `buf`, a second owner, so that
/// [`unforwarded`] could never take the allocation back and every burst would start over in a
/// fresh buffer grown by reallocation (copies of the burst, ~2% of port-forward CPU).
fn take_view(buf: &mut BytesMut) -> Bytes {
    std::mem::take(buf).freeze()
}

/// The rest of `view` after `used` (a partial frame) as the buffer for the next read, in the
/// same allocation once the recorded pieces let go of it, so a steady stream reuses one buffer.
fn unforwarded(view: Bytes, used: usize) -> BytesMut {
    match view.try_into_mut() {
        Ok(mut b) => {
            b.advance(used);
            b
        }
        Err(view) => BytesMut::from(&view[used..]),
    }
}

async fn write(to: &Writer, bytes: &[u8]) -> bool {
    if bytes.is_empty() {
        return true;
    }
    let mut w = to.lock().await;
    w.write_all(bytes).await.is_ok() && w.flush().await.is_ok()
}

async fn shutdown(to: &Writer) {
    let _ = to.lock().await.shutdown().await;
}

#[cfg(test)]
#[path = "relay_bad_input_tests.rs"]
mod bad_input_tests;

#[cfg(test)]
mod buffer_tests {
    use super::*;

    /// A steady stream reads every burst into the same allocation: once the recorded pieces
    /// let go of the view, the unforwarded rest keeps the buffer's whole capacity (a copy out
    /// would have only its own length).
    #[test]
    fn the_read_buffer_is_reclaimed_burst_after_burst() {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        for burst in 0..6u8 {
            // As the pump fills a burst: 16 KiB reads, with room made before each.
            while buf.len() < BURST {
                make_room(&mut buf);
                buf.extend_from_slice(&[burst; 16 * 1024]);
            }
            let capacity = buf.capacity();
            let view = take_view(&mut buf);
            assert_eq!(buf.capacity(), 0, "buf keeps nothing of the allocation");
            // A piece recorded and dropped, as the pump does before reclaiming.
            drop(view.slice(10..20));
            // The last 7 bytes are a partial frame.
            let used = view.len() - 7;
            buf = unforwarded(view, used);
            assert_eq!(&buf[..], &[burst; 7]);
            assert_eq!(
                buf.capacity(),
                capacity - used,
                "burst {burst}: the rest was copied to a new buffer"
            );
        }
    }

    /// While a piece still holds the view, the rest is copied out instead (correct, slower).
    #[test]
    fn a_held_view_is_copied_not_shared() {
        let mut buf = BytesMut::with_capacity(1024);
        buf.extend_from_slice(b"0123456789");
        let view = take_view(&mut buf);
        let held = view.slice(0..4);
        let rest = unforwarded(view, 6);
        assert_eq!(&rest[..], b"6789");
        assert_eq!(&held[..], b"0123");
    }
}
