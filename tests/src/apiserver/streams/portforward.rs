//! Port-forward (`portforward.k8s.io` over SPDY/3.1, raw or tunnelled in WebSocket): per TCP
//! connection the client opens an `error` and a `data` stream (`port`, `requestID`); the "pod"
//! is this host, so the data stream is joined to a real TCP connection to 127.0.0.1:<port>.
use std::collections::HashMap;

use bytes::Bytes;
use gatehouse_gateway::streams::spdy::{self, Frame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::spdy_conn::{W, data, pong, spawn_reader, spawn_writer};

pub(super) trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

pub(super) async fn serve(io: Box<dyn Io>, tunnel: bool) {
    let (r, w) = tokio::io::split(io);
    let wtx = spawn_writer(w, tunnel);
    let mut frames = spawn_reader(r, tunnel, wtx.clone());
    // requestID → error stream id.
    let mut error_streams: HashMap<String, u32> = HashMap::new();
    // data stream id → bytes towards the TCP connection (`None` = the client's FIN).
    let mut conns: HashMap<u32, mpsc::Sender<Option<Bytes>>> = HashMap::new();
    while let Some(f) = frames.recv().await {
        match f {
            Frame::SynStream {
                stream_id, headers, ..
            } => {
                let _ = wtx.send(W::SynReply(stream_id)).await;
                let st = spdy::header(&headers, "streamtype").unwrap_or_default();
                let request = spdy::header(&headers, "requestid")
                    .unwrap_or_default()
                    .to_string();
                let port = spdy::header(&headers, "port").and_then(|p| p.parse::<u16>().ok());
                match st {
                    "error" => {
                        error_streams.insert(request, stream_id);
                    }
                    "data" => {
                        let (tx, rx) = mpsc::channel(64);
                        conns.insert(stream_id, tx);
                        let error_id = error_streams.get(&request).copied();
                        tokio::spawn(connection(stream_id, error_id, port, rx, wtx.clone()));
                    }
                    _ => {}
                }
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                if let Some(tx) = conns.get(&stream_id) {
                    if !data.is_empty() {
                        let _ = tx.send(Some(data)).await;
                    }
                    if fin {
                        let _ = tx.send(None).await;
                    }
                }
            }
            Frame::RstStream { stream_id, .. } => {
                conns.remove(&stream_id);
            }
            Frame::Ping(id) => {
                let _ = wtx.send(pong(id)).await;
            }
            Frame::GoAway { .. } => break,
            _ => {}
        }
    }
}

async fn connection(
    id: u32,
    error_id: Option<u32>,
    port: Option<u16>,
    mut from_client: mpsc::Receiver<Option<Bytes>>,
    wtx: mpsc::Sender<W>,
) {
    let fail = |msg: String| {
        let wtx = wtx.clone();
        async move {
            if let Some(e) = error_id {
                let _ = wtx.send(data(e, true, msg.as_bytes())).await;
            }
            let _ = wtx.send(data(id, true, &[])).await;
        }
    };
    let Some(port) = port else {
        return fail("missing or invalid port header".into()).await;
    };
    let tcp = match TcpStream::connect(("127.0.0.1", port)).await {
        Ok(t) => t,
        Err(e) => {
            return fail(format!(
                "error forwarding port {port} to pod: dial tcp4 127.0.0.1:{port}: {e}"
            ))
            .await;
        }
    };
    let (mut tr, mut tw) = tcp.into_split();
    let to_tcp = tokio::spawn(async move {
        while let Some(Some(b)) = from_client.recv().await {
            if tw.write_all(&b).await.is_err() {
                return;
            }
        }
        let _ = tw.shutdown().await;
    });
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match tr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if wtx.send(data(id, false, &buf[..n])).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = wtx.send(data(id, true, &[])).await;
    // kubectl reads the error stream to its end before it lets a connection go.
    if let Some(e) = error_id {
        let _ = wtx.send(data(e, true, &[])).await;
    }
    let _ = to_tcp.await;
}
