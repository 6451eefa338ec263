//! A bare TLS relay for benchmarks: it terminates TLS, opens TLS to the upstream and copies bytes
//! both ways, with no parsing or authentication, optionally writing (and hashing) every byte to a
//! file first: the floors under the gateway on this machine. Never shipped; benches only.
use crate::apiserver::tls::TestCa;
use anyhow::Context as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use sha2::Digest as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// What the relay does with the bytes it carries besides forwarding them.
#[derive(Debug, Clone)]
pub enum Keep {
    /// Nothing: terminate, re-encrypt, copy.
    Nothing,
    /// Each read is appended to a file in this directory (one per connection and direction)
    /// before it is forwarded: the least any recorder that persists every byte must do.
    Write(PathBuf),
    /// As `Write`, and each read also goes through SHA-256 chained to the previous one, as the
    /// gateway's hash chain does.
    WriteSha256(PathBuf),
}

/// The name of the relay's runtime threads, by which benches find their CPU time.
pub const TLS_RELAY_THREADS: &str = "tls-relay";

/// A running relay on its own runtime (two worker threads, like the gateway on this machine),
/// so it does not share threads with the test API server it fronts.
pub struct TlsRelay {
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// The CA that signed the relay's serving certificate.
    pub ca_pem: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsRelay {
    /// Relays to `upstream`, whose serving certificate `upstream_ca_pem` signed.
    pub fn start(upstream: SocketAddr, upstream_ca_pem: &str) -> anyhow::Result<TlsRelay> {
        Self::start_keeping(upstream, upstream_ca_pem, Keep::Nothing)
    }

    /// As `start`, doing `keep` with every byte before it is forwarded.
    pub fn start_keeping(
        upstream: SocketAddr,
        upstream_ca_pem: &str,
        keep: Keep,
    ) -> anyhow::Result<TlsRelay> {
        let ca = TestCa::generate()?;
        let serving = ca.issue_server()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(ca.server_config(&serving)?));
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(upstream_ca_pem.as_bytes()) {
            roots
                .add(cert.context("reading the upstream CA")?)
                .context("adding the upstream CA")?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("choosing TLS versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(TLS_RELAY_THREADS)
            .enable_all()
            .build()?;
        // Bound here (callers are often inside another runtime) and handed to the relay's own.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let url = format!("https://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(TLS_RELAY_THREADS.into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        () = serve(listener, acceptor, client, upstream, keep) => {}
                        _ = stopped => {}
                    }
                });
                runtime.shutdown_background();
            })?;
        Ok(TlsRelay {
            url,
            ca_pem: ca.pem.clone(),
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// A kubeconfig for this relay with `token` (which the upstream checks).
    pub fn kubeconfig(&self, token: &str) -> String {
        crate::kubectl::kubeconfig_yaml(&self.url, &self.ca_pem, token)
    }
}

impl Drop for TlsRelay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    client: rustls::ClientConfig,
    upstream: SocketAddr,
    keep: Keep,
) {
    let mut n = 0u64;
    while let Ok((tcp, _)) = listener.accept().await {
        n += 1;
        let (acceptor, client, keep) = (acceptor.clone(), client.clone(), keep.clone());
        tokio::spawn(async move {
            if let Err(e) = relay(tcp, acceptor, client, upstream, keep, n).await {
                tracing::debug!(error = %e, "tls relay connection ended");
            }
        });
    }
}

/// One connection: the client's negotiated ALPN protocol is asked of the upstream, so both
/// ends speak the same HTTP version through a relay that does not look at it.
async fn relay(
    tcp: tokio::net::TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    mut client: rustls::ClientConfig,
    upstream: SocketAddr,
    keep: Keep,
    conn: u64,
) -> anyhow::Result<()> {
    tcp.set_nodelay(true)?;
    let mut down = acceptor.accept(tcp).await?;
    if let Some(alpn) = down.get_ref().1.alpn_protocol() {
        client.alpn_protocols = vec![alpn.to_vec()];
    }
    let up_tcp = tokio::net::TcpStream::connect(upstream).await?;
    up_tcp.set_nodelay(true)?;
    let name = ServerName::IpAddress(upstream.ip().into());
    let mut up = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(name, up_tcp)
        .await?;
    let (dir, hash) = match keep {
        Keep::Nothing => {
            tokio::io::copy_bidirectional_with_sizes(&mut down, &mut up, 64 << 10, 64 << 10)
                .await?;
            return Ok(());
        }
        Keep::Write(dir) => (dir, false),
        Keep::WriteSha256(dir) => (dir, true),
    };
    let (down_r, down_w) = tokio::io::split(down);
    let (up_r, up_w) = tokio::io::split(up);
    let to_up = keep_and_copy(down_r, up_w, dir.join(format!("{conn}-in")), hash);
    let to_down = keep_and_copy(up_r, down_w, dir.join(format!("{conn}-out")), hash);
    // An error on one side (kubectl gone without close_notify) ends the other side too.
    tokio::try_join!(to_up, to_down)?;
    Ok(())
}

/// Removes its file when dropped, also when the copy is cancelled.
struct RemovedOnDrop(PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Copies `from` to `to`, appending each read to `file` (and chaining its SHA-256) first; the
/// file is removed when the connection is done, so a long bench does not fill the disk.
async fn keep_and_copy(
    from: impl AsyncRead + Unpin,
    to: impl AsyncWrite + Unpin,
    file: PathBuf,
    hash: bool,
) -> anyhow::Result<()> {
    let out = std::fs::File::create(&file)?;
    let _removed = RemovedOnDrop(file);
    copy_keeping(from, to, out, hash).await
}

async fn copy_keeping(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut out: std::fs::File,
    hash: bool,
) -> anyhow::Result<()> {
    use futures_util::FutureExt as _;
    let mut chain = [0u8; 32];
    // Bursts of up to 256 KiB, taken in without waiting, as the gateway's relay takes them.
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let mut n = from.read(&mut buf).await?;
        let mut eof = n == 0;
        while !eof && n < buf.len() {
            match from.read(&mut buf[n..]).now_or_never() {
                Some(Ok(0)) => eof = true,
                Some(Ok(more)) => n += more,
                // Not ready, or an error the next read reports again.
                None | Some(Err(_)) => break,
            }
        }
        if n > 0 {
            // A page-cache append, synchronous as the gateway's journal append is.
            out.write_all(&buf[..n])?;
            if hash {
                let mut h = sha2::Sha256::new();
                h.update(chain);
                h.update(&buf[..n]);
                chain = h.finalize().into();
            }
            to.write_all(&buf[..n]).await?;
            to.flush().await?;
        }
        if eof {
            to.shutdown().await?;
            return Ok(());
        }
    }
}
