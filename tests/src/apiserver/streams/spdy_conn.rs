//! SPDY/3.1 server plumbing (one writer owning the header compressor, one frame reader, both
//! optionally tunnelled in WebSocket binary messages) and remote command v4 on top of it.
use std::collections::HashMap;
use std::time::Duration;

use bytes::BytesMut;
use gatehouse_gateway::streams::spdy::{self, Frame, HeaderDeflater, HeaderInflater};
use gatehouse_gateway::streams::ws::{self, Assembler, Message, Sender};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::Flags;
use super::process::{In, Out};

const MAX: usize = 16 << 20;

/// What the writer task sends.
pub(super) enum W {
    /// An encoded SPDY frame (wrapped in a WebSocket message when tunnelled).
    Spdy(BytesMut),
    /// A SYN_REPLY for a stream; compressed in send order, as SPDY's shared context needs.
    SynReply(u32),
    /// Bytes written as they are (WebSocket control frames of the tunnel).
    Raw(BytesMut),
}

/// Most SPDY bytes in one tunnel message: kube-apiserver's tunnel copies the kubelet's SPDY
/// byte stream into WebSocket messages a read (up to 32 KiB) at a time, so a message need not
/// start or end on a frame.
const TUNNEL_MESSAGE: usize = 32 * 1024;

pub(super) fn spawn_writer<Wr>(mut w: Wr, tunnel: bool) -> mpsc::Sender<W>
where
    Wr: AsyncWrite + Send + Unpin + 'static,
{
    let (tx, mut rx) = mpsc::channel::<W>(64);
    tokio::spawn(async move {
        let Ok(mut deflater) = HeaderDeflater::new() else {
            return;
        };
        // Tunnelled SPDY bytes not yet sent as a message.
        let mut pending = BytesMut::new();
        while let Some(item) = rx.recv().await {
            let mut out = BytesMut::new();
            match item {
                W::Raw(b) => {
                    // A WebSocket control frame goes between messages, after what is pending.
                    cut(&mut pending, &mut out, 0);
                    out.extend_from_slice(&b);
                }
                W::SynReply(id) => {
                    let mut b = BytesMut::new();
                    if spdy::encode_syn_reply(&mut b, &mut deflater, id, 0, &[]).is_err() {
                        return;
                    }
                    out = spdy_out(b, tunnel, &mut pending, rx.is_empty());
                }
                W::Spdy(b) => out = spdy_out(b, tunnel, &mut pending, rx.is_empty()),
            }
            if out.is_empty() {
                continue;
            }
            if w.write_all(&out).await.is_err() || w.flush().await.is_err() {
                return;
            }
        }
        let mut out = BytesMut::new();
        cut(&mut pending, &mut out, 0);
        if !out.is_empty() && w.write_all(&out).await.is_err() {
            return;
        }
        let _ = w.shutdown().await;
    });
    tx
}

/// What to write for SPDY bytes `b`: the bytes themselves, or, tunnelled, the whole messages they
/// complete, and the rest of what is pending too once nothing else is queued (`idle`).
fn spdy_out(b: BytesMut, tunnel: bool, pending: &mut BytesMut, idle: bool) -> BytesMut {
    if !tunnel {
        return b;
    }
    pending.extend_from_slice(&b);
    let mut out = BytesMut::new();
    cut(pending, &mut out, if idle { 0 } else { TUNNEL_MESSAGE });
    out
}

/// Moves `pending` into `out` as tunnel messages of `TUNNEL_MESSAGE` bytes, leaving fewer than
/// `keep` bytes (a message's worth or nothing) behind.
fn cut(pending: &mut BytesMut, out: &mut BytesMut, keep: usize) {
    while !pending.is_empty() && pending.len() >= keep.max(1) {
        let n = pending.len().min(TUNNEL_MESSAGE);
        let message = pending.split_to(n);
        ws::encode(out, true, ws::OP_BINARY, &message, None);
    }
}

/// Reads SPDY frames (unwrapping the WebSocket tunnel if any); answers tunnel pings itself.
pub(super) fn spawn_reader<R>(mut r: R, tunnel: bool, wtx: mpsc::Sender<W>) -> mpsc::Receiver<Frame>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::channel::<Frame>(64);
    tokio::spawn(async move {
        let mut raw = BytesMut::with_capacity(64 * 1024);
        let mut spdy_buf = BytesMut::new();
        let mut asm = Assembler::new(MAX);
        let mut inflater = HeaderInflater::default();
        loop {
            if tunnel {
                loop {
                    match ws::decode(&raw, Sender::Client, MAX) {
                        Ok(Some((f, n))) => {
                            let _ = raw.split_to(n);
                            match asm.push(f) {
                                Ok(Some(Message::Binary(b))) => spdy_buf.extend_from_slice(&b),
                                Ok(Some(Message::Ping(p))) => {
                                    let mut f = BytesMut::new();
                                    ws::encode(&mut f, true, ws::OP_PONG, &p, None);
                                    let _ = wtx.send(W::Raw(f)).await;
                                }
                                Ok(Some(Message::Close { .. })) => {
                                    let mut f = BytesMut::new();
                                    ws::encode(
                                        &mut f,
                                        true,
                                        ws::OP_CLOSE,
                                        &ws::close_payload(ws::CLOSE_NORMAL, ""),
                                        None,
                                    );
                                    let _ = wtx.send(W::Raw(f)).await;
                                    return;
                                }
                                Ok(_) => {}
                                Err(_) => return,
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::debug!(error = %e, "bad tunnel frame");
                            return;
                        }
                    }
                }
            } else {
                spdy_buf.extend_from_slice(&raw.split());
            }
            loop {
                match spdy::decode(&spdy_buf, &mut inflater, MAX) {
                    Ok(Some((f, n))) => {
                        let _ = spdy_buf.split_to(n);
                        if tx.send(f).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "bad SPDY frame from the client");
                        return;
                    }
                }
            }
            raw.reserve(32 * 1024);
            match r.read_buf(&mut raw).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    rx
}

pub(super) fn data(id: u32, fin: bool, d: &[u8]) -> W {
    let mut b = BytesMut::with_capacity(d.len() + 8);
    spdy::encode_data(&mut b, id, fin, d);
    W::Spdy(b)
}

pub(super) fn pong(id: u32) -> W {
    let mut b = BytesMut::new();
    spdy::encode_ping(&mut b, id);
    W::Spdy(b)
}

/// Remote command v4 over SPDY: wait for the client's streams, then run.
pub(super) async fn serve<IO, F>(io: IO, flags: Flags, start: F)
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    F: FnOnce() -> (mpsc::Sender<In>, mpsc::Receiver<Out>),
{
    let (r, w) = tokio::io::split(io);
    let wtx = spawn_writer(w, false);
    let mut frames = spawn_reader(r, false, wtx.clone());
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut expected = vec!["error"];
    if flags.stdin {
        expected.push("stdin");
    }
    if flags.stdout {
        expected.push("stdout");
    }
    if flags.stderr && !flags.tty {
        expected.push("stderr");
    }
    if flags.tty {
        expected.push("resize");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !expected.iter().all(|e| ids.contains_key(*e)) {
        let f = match tokio::time::timeout_at(deadline, frames.recv()).await {
            Ok(Some(f)) => f,
            // Missing streams after the deadline: run with those that exist, as the kubelet.
            Err(_) => break,
            Ok(None) => return,
        };
        match f {
            Frame::SynStream {
                stream_id, headers, ..
            } => {
                let st = spdy::header(&headers, "streamtype")
                    .unwrap_or_default()
                    .to_string();
                ids.insert(st, stream_id);
                let _ = wtx.send(W::SynReply(stream_id)).await;
            }
            Frame::Ping(id) => {
                let _ = wtx.send(pong(id)).await;
            }
            _ => {}
        }
    }
    let (in_tx, mut out_rx) = start();
    let id = |t: &str| ids.get(t).copied();
    let (stdin, resize, stdout, stderr, error) = (
        id("stdin"),
        id("resize"),
        id("stdout"),
        id("stderr"),
        id("error"),
    );
    let mut client_gone = false;
    loop {
        tokio::select! {
            f = frames.recv(), if !client_gone => match f {
                None | Some(Frame::GoAway { .. }) => {
                    client_gone = true;
                    let _ = in_tx.send(In::Gone).await;
                }
                Some(Frame::Data { stream_id, fin, data }) => {
                    if Some(stream_id) == stdin {
                        if !data.is_empty() {
                            let _ = in_tx.send(In::Stdin(data)).await;
                        }
                        if fin {
                            let _ = in_tx.send(In::StdinClosed).await;
                        }
                    } else if Some(stream_id) == resize
                        && let Some(m) = super::ws_conn::resize(&data)
                    {
                        let _ = in_tx.send(m).await;
                    }
                }
                Some(Frame::SynStream { stream_id, .. }) => {
                    let _ = wtx.send(W::SynReply(stream_id)).await;
                }
                Some(Frame::Ping(id)) => {
                    let _ = wtx.send(pong(id)).await;
                }
                Some(_) => {}
            },
            o = out_rx.recv() => match o {
                Some(Out::Stdout(d)) => {
                    if let Some(id) = stdout {
                        let _ = wtx.send(data(id, false, &d)).await;
                    }
                }
                Some(Out::Stderr(d)) => {
                    if let Some(id) = stderr.or(stdout) {
                        let _ = wtx.send(data(id, false, &d)).await;
                    }
                }
                Some(Out::Status(s)) => {
                    for id in [stdout, stderr].into_iter().flatten() {
                        let _ = wtx.send(data(id, true, &[])).await;
                    }
                    if let Some(id) = error {
                        let _ = wtx.send(data(id, true, &s)).await;
                    }
                    break;
                }
                None => break,
            },
        }
    }
    // The client closes the connection once it has read everything; don't wait forever.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while frames.recv().await.is_some() {}
    })
    .await;
    drop(wtx);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The WebSocket messages in `out`, in order.
    fn messages(out: &[u8]) -> Vec<Vec<u8>> {
        let mut at = 0;
        let mut found = Vec::new();
        while let Some((frame, n)) = ws::decode(&out[at..], ws::Sender::Server, MAX).unwrap() {
            assert!(frame.fin);
            assert_eq!(frame.opcode, ws::OP_BINARY);
            found.push(frame.payload.to_vec());
            at += n;
        }
        assert_eq!(at, out.len(), "only whole messages");
        found
    }

    /// Tunnelled, SPDY bytes go out in 32 KiB messages that ignore frame boundaries while more
    /// is queued, and all of it goes once nothing is: as kube-apiserver's tunnel cuts them.
    #[test]
    fn the_tunnel_cuts_messages_where_reads_end_not_where_frames_do() {
        let frame = |fill: u8| BytesMut::from(&vec![fill; TUNNEL_MESSAGE + 8][..]);
        let mut pending = BytesMut::new();
        let first = messages(&spdy_out(frame(1), true, &mut pending, false));
        assert_eq!(first.len(), 1);
        assert_eq!(first[0], vec![1; TUNNEL_MESSAGE]);
        assert_eq!(
            pending.len(),
            8,
            "the frame's last 8 bytes wait for the next message"
        );
        let rest = messages(&spdy_out(frame(2), true, &mut pending, true));
        assert_eq!(rest.len(), 2);
        assert_eq!(rest[0].len(), TUNNEL_MESSAGE);
        assert_eq!(
            &rest[0][..8],
            &[1; 8],
            "a message starts inside the previous frame"
        );
        assert_eq!(rest[1], vec![2; 16]);
        assert!(pending.is_empty(), "nothing waits once the queue is empty");
        // Not tunnelled: the frame's bytes as they are.
        assert_eq!(spdy_out(frame(3), false, &mut pending, false), frame(3));
    }
}
