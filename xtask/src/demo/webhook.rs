//! A local JSON webhook receiver for the demo: the collector's alert routing POSTs each bypass
//! alert here, and the demo prints what arrived (the collector's webhook sink, for real).
use anyhow::Context;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// One POST the receiver got.
#[derive(Debug)]
pub struct Received {
    pub path: String,
    pub idempotency_key: String,
    pub body: serde_json::Value,
}

pub struct Receiver {
    /// `http://127.0.0.1:PORT/gatehouse-alerts`, for `--alert-webhook-url`.
    pub url: String,
    rx: mpsc::UnboundedReceiver<Received>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Requests larger than this are not alerts; the receiver refuses them.
const MAX_REQUEST: usize = 1 << 20;

impl Receiver {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the webhook receiver")?;
        let url = format!("http://{}/gatehouse-alerts", listener.local_addr()?);
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(tcp, &tx).await {
                        eprintln!("demo webhook receiver: {e:#}");
                    }
                });
            }
        });
        Ok(Self { url, rx, task })
    }

    /// The next alert POSTed, or None when none arrives within `wait`.
    pub async fn next(&mut self, wait: std::time::Duration) -> Option<Received> {
        tokio::time::timeout(wait, self.rx.recv())
            .await
            .ok()
            .flatten()
    }
}

/// Reads one HTTP/1.1 request (Content-Length body, as the collector's client sends), answers
/// 200 and closes the connection.
async fn serve(mut tcp: TcpStream, tx: &mpsc::UnboundedSender<Received>) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        anyhow::ensure!(buf.len() < MAX_REQUEST, "request head too large");
        let mut chunk = [0u8; 4096];
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            // The client's pooled connection closing without a request.
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let path = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_string();
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    let len: usize = header("content-length")
        .context("the webhook request has no Content-Length")?
        .parse()
        .context("the webhook request's Content-Length is not a number")?;
    anyhow::ensure!(
        len <= MAX_REQUEST,
        "webhook body of {len} bytes is too large"
    );
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let mut chunk = [0u8; 4096];
        let n = tcp.read(&mut chunk).await?;
        anyhow::ensure!(
            n > 0,
            "the webhook request ended after {} of {len} bytes",
            body.len()
        );
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    tcp.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await?;
    let body = serde_json::from_slice(&body).context("the webhook body is not JSON")?;
    let _ = tx.send(Received {
        path,
        idempotency_key: header("idempotency-key").unwrap_or_default(),
        body,
    });
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn send(url: &str, parts: &[&[u8]]) -> String {
        let addr = url
            .strip_prefix("http://")
            .and_then(|u| u.split('/').next())
            .unwrap();
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        for p in parts {
            tcp.write_all(p).await.unwrap();
            tcp.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn a_post_split_across_reads_is_delivered_with_its_key() {
        let mut r = Receiver::start().await.unwrap();
        let body = br#"{"kind":"BypassAlert","labels":{"pod":"ops-runner-0"}}"#;
        let head = format!(
            "POST /gatehouse-alerts HTTP/1.1\r\nHost: x\r\nidempotency-key: 01a2\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let answer = send(&r.url, &[head.as_bytes(), &body[..10], &body[10..]]).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        let got = r.next(Duration::from_secs(5)).await.unwrap();
        assert_eq!(got.path, "/gatehouse-alerts");
        assert_eq!(got.idempotency_key, "01a2");
        assert_eq!(got.body["labels"]["pod"], "ops-runner-0");
    }

    #[tokio::test]
    async fn a_request_without_content_length_is_not_delivered() {
        let mut r = Receiver::start().await.unwrap();
        let answer = send(
            &r.url,
            &[b"POST /gatehouse-alerts HTTP/1.1\r\nHost: x\r\n\r\n{}"],
        )
        .await;
        assert_eq!(
            answer, "",
            "no answer to a request the receiver cannot read"
        );
        assert!(r.next(Duration::from_millis(300)).await.is_none());
    }
}
