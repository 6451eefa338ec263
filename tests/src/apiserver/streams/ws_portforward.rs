//! Legacy WebSocket port-forward (`v4.channel.k8s.io` on `/portforward`, what non-Go clients
//! use), server side as the kubelet does it: the i-th `ports` value gets channel 2i for data
//! and 2i+1 for errors, and the server's first message on each channel is the port (2 bytes,
//! little-endian). The "pod" is this host: each port is a real TCP connection to 127.0.0.1.
use bytes::BytesMut;
use gatehouse_gateway::streams::ws::{self, Assembler, Message, Sender};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const MAX: usize = 16 << 20;

fn message(out: &mut BytesMut, channel: u8, data: &[u8]) {
    let mut m = Vec::with_capacity(data.len() + 1);
    m.push(channel);
    m.extend_from_slice(data);
    ws::encode(out, true, ws::OP_BINARY, &m, None);
}

pub(super) async fn serve<IO>(io: IO, ports: Vec<u16>)
where
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
    // Per port: the writing half of its TCP connection (None once it failed or closed).
    let mut sinks = Vec::new();
    let (done_tx, mut done_rx) = mpsc::channel::<()>(ports.len().max(1));
    for (i, port) in ports.iter().enumerate() {
        let (data_ch, err_ch) = ((2 * i) as u8, (2 * i + 1) as u8);
        let mut hello = BytesMut::new();
        message(&mut hello, data_ch, &port.to_le_bytes());
        message(&mut hello, err_ch, &port.to_le_bytes());
        let _ = wtx.send(hello).await;
        match TcpStream::connect(("127.0.0.1", *port)).await {
            Ok(tcp) => {
                let (mut tr, tw) = tcp.into_split();
                sinks.push(Some(tw));
                let wtx = wtx.clone();
                let done = done_tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 32 * 1024];
                    while let Ok(n) = tr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let mut f = BytesMut::new();
                        message(&mut f, data_ch, &buf[..n]);
                        if wtx.send(f).await.is_err() {
                            break;
                        }
                    }
                    let _ = done.send(()).await;
                });
            }
            Err(e) => {
                sinks.push(None);
                let mut f = BytesMut::new();
                message(
                    &mut f,
                    err_ch,
                    format!("failed to connect to localhost:{port}: {e}").as_bytes(),
                );
                let _ = wtx.send(f).await;
                let _ = done_tx.send(()).await;
            }
        }
    }
    drop(done_tx);
    let mut open = ports.len();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut asm = Assembler::new(MAX);
    'conn: loop {
        loop {
            let (frame, n) = match ws::decode(&buf, Sender::Client, MAX) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "bad websocket frame from the client");
                    break 'conn;
                }
            };
            let _ = buf.split_to(n);
            match asm.push(frame) {
                Ok(Some(Message::Binary(b))) => {
                    let Some((&ch, rest)) = b.split_first() else {
                        continue;
                    };
                    let i = usize::from(ch / 2);
                    if ch % 2 == 0
                        && let Some(Some(sink)) = sinks.get_mut(i)
                        && sink.write_all(rest).await.is_err()
                    {
                        sinks[i] = None;
                    }
                }
                Ok(Some(Message::Ping(p))) => {
                    let mut f = BytesMut::new();
                    ws::encode(&mut f, true, ws::OP_PONG, &p, None);
                    let _ = wtx.send(f).await;
                }
                Ok(Some(Message::Close { .. })) | Err(_) => break 'conn,
                Ok(_) => {}
            }
        }
        buf.reserve(32 * 1024);
        tokio::select! {
            n = r.read_buf(&mut buf) => match n {
                Ok(0) | Err(_) => break 'conn,
                Ok(_) => {}
            },
            d = done_rx.recv(), if open > 0 => {
                if d.is_some() {
                    open -= 1;
                }
                // Every connection behind the ports ended: the session is over.
                if open == 0 || d.is_none() {
                    break 'conn;
                }
            }
        }
    }
    let mut f = BytesMut::new();
    ws::encode(
        &mut f,
        true,
        ws::OP_CLOSE,
        &ws::close_payload(ws::CLOSE_NORMAL, ""),
        None,
    );
    let _ = wtx.send(f).await;
    drop(wtx);
    drop(sinks);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await;
}
