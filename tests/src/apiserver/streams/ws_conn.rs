//! Remote command over WebSocket (`v5`/`v4.channel.k8s.io`), server side: channel byte first,
//! v5's close channel half-closes stdin, pings are answered, the status ends the session.
use bytes::{Bytes, BytesMut};
use gatehouse_gateway::streams::ws::{self, Assembler, Message, Sender};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::process::{In, Out};

const MAX: usize = 16 << 20;

pub(super) async fn serve<IO>(
    io: IO,
    input: mpsc::Sender<In>,
    mut output: mpsc::Receiver<Out>,
    v5: bool,
) where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut r, mut w) = tokio::io::split(io);
    let (wtx, mut wrx) = mpsc::channel::<BytesMut>(64);
    let writer = tokio::spawn(async move {
        while let Some(b) = wrx.recv().await {
            if w.write_all(&b).await.is_err() || w.flush().await.is_err() {
                return;
            }
        }
        let _ = w.shutdown().await;
    });
    let reader_wtx = wtx.clone();
    let mut reader = tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut asm = Assembler::new(MAX);
        loop {
            loop {
                let (frame, n) = match ws::decode(&buf, Sender::Client, MAX) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "bad websocket frame from the client");
                        let _ = input.send(In::Gone).await;
                        return;
                    }
                };
                let _ = buf.split_to(n);
                let msg = match asm.push(frame) {
                    Ok(Some(m)) => m,
                    Ok(None) => continue,
                    Err(_) => {
                        let _ = input.send(In::Gone).await;
                        return;
                    }
                };
                match msg {
                    Message::Binary(b) => {
                        let Some((&ch, rest)) = b.split_first() else {
                            continue;
                        };
                        let rest = Bytes::copy_from_slice(rest);
                        let m = match ch {
                            0 => In::Stdin(rest),
                            4 => match resize(&rest) {
                                Some(m) => m,
                                None => continue,
                            },
                            255 if v5 && rest.first() == Some(&0) => In::StdinClosed,
                            _ => continue,
                        };
                        if input.send(m).await.is_err() {
                            return;
                        }
                    }
                    Message::Ping(p) => {
                        let mut f = BytesMut::new();
                        ws::encode(&mut f, true, ws::OP_PONG, &p, None);
                        let _ = reader_wtx.send(f).await;
                    }
                    Message::Close { .. } => {
                        // The client is done (normally after our close): answer and stop.
                        let _ = input.send(In::Gone).await;
                        let mut f = BytesMut::new();
                        ws::encode(
                            &mut f,
                            true,
                            ws::OP_CLOSE,
                            &ws::close_payload(ws::CLOSE_NORMAL, ""),
                            None,
                        );
                        let _ = reader_wtx.send(f).await;
                        return;
                    }
                    Message::Text(_) | Message::Pong(_) => {}
                }
            }
            buf.reserve(32 * 1024);
            match r.read_buf(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = input.send(In::Gone).await;
                    return;
                }
                Ok(_) => {}
            }
        }
    });
    let mut reader_done = false;
    loop {
        tokio::select! {
            o = output.recv() => {
                let Some(o) = o else { break };
                let mut f = BytesMut::new();
                let (ch, data, last) = match o {
                    Out::Stdout(d) => (1u8, d.to_vec(), false),
                    Out::Stderr(d) => (2u8, d.to_vec(), false),
                    Out::Status(s) => (3u8, s, true),
                };
                let mut m = Vec::with_capacity(data.len() + 1);
                m.push(ch);
                m.extend_from_slice(&data);
                ws::encode(&mut f, true, ws::OP_BINARY, &m, None);
                if last {
                    ws::encode(&mut f, true, ws::OP_CLOSE, &ws::close_payload(ws::CLOSE_NORMAL, ""), None);
                }
                if wtx.send(f).await.is_err() || last {
                    break;
                }
            }
            _ = &mut reader, if !reader_done => {
                // The client went away; the process side saw `Gone` and stops.
                reader_done = true;
                break;
            }
        }
    }
    drop(wtx);
    // Give the client a moment to answer the close, then end the connection.
    if !reader_done
        && tokio::time::timeout(std::time::Duration::from_secs(5), &mut reader)
            .await
            .is_err()
    {
        reader.abort();
    }
    let _ = writer.await;
}

pub(super) fn resize(data: &[u8]) -> Option<In> {
    let v: serde_json::Value = serde_json::Deserializer::from_slice(data)
        .into_iter::<serde_json::Value>()
        .filter_map(Result::ok)
        .last()?;
    Some(In::Resize {
        width: u16::try_from(v.get("Width")?.as_u64()?).ok()?,
        height: u16::try_from(v.get("Height")?.as_u64()?).ok()?,
    })
}
