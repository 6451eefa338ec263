//! A bare TLS relay for benchmarks: it terminates TLS, opens TLS to the upstream and copies bytes
//! both ways, with no parsing, authentication or recording. Next to the gateway it shows what
//! terminating and re-encrypting alone costs on this machine. Never shipped; benches only.
use crate::apiserver::tls::TestCa;
use anyhow::Context as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;

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
            .thread_name("tls-relay")
            .enable_all()
            .build()?;
        // Bound here (callers are often inside another runtime) and handed to the relay's own.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let url = format!("https://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("tls-relay".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        () = serve(listener, acceptor, client, upstream) => {}
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
) {
    while let Ok((tcp, _)) = listener.accept().await {
        let (acceptor, client) = (acceptor.clone(), client.clone());
        tokio::spawn(async move {
            if let Err(e) = relay(tcp, acceptor, client, upstream).await {
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
    tokio::io::copy_bidirectional_with_sizes(&mut down, &mut up, 64 << 10, 64 << 10).await?;
    Ok(())
}
