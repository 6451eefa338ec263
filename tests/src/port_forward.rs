//! `kubectl port-forward` driven from a test: start it, wait until it forwards, push bytes
//! through a local connection and read back what the echo server behind the pod returns.
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// A free loopback port for kubectl to listen on.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// kubectl's arguments to forward `127.0.0.1:<mapping>` to `pod` in `namespace`.
pub fn args<'a>(pod: &'a str, namespace: &'a str, mapping: &'a str) -> [&'a str; 6] {
    [
        "port-forward",
        pod,
        "-n",
        namespace,
        "--address=127.0.0.1",
        mapping,
    ]
}

/// Spawns `cmd` (a `kubectl port-forward …` with piped stdout) and waits up to 30 s for its
/// "Forwarding from" line.
pub async fn start(mut cmd: Command) -> anyhow::Result<Child> {
    let mut child = cmd.spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("port-forward stdout is not piped"))?;
    let mut out = tokio::io::BufReader::new(stdout);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(30), out.read_line(&mut line)).await??;
    anyhow::ensure!(
        line.contains("Forwarding from"),
        "kubectl port-forward said {line:?}"
    );
    // kubectl goes on printing ("Handling connection for …"): a closed pipe would end it.
    tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = out.read_to_end(&mut sink).await;
    });
    Ok(child)
}

/// Writes `payload` to `127.0.0.1:local` while reading as many bytes back (within 30 s), and
/// returns them; the connection is closed on return.
pub async fn echo(local: u16, payload: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", local)).await?;
    let (mut r, mut w) = conn.split();
    let mut got = vec![0u8; payload.len()];
    let (sent, read) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(w.write_all(payload), r.read_exact(&mut got))
    })
    .await?;
    sent?;
    read?;
    Ok(got)
}

/// A TCP echo server on loopback (the "pod"'s port behind the forward); returns its port.
pub async fn echo_server() -> anyhow::Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Ok(port)
}
