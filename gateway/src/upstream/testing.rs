//! Test support: a throwaway CA and a local HTTPS server on 127.0.0.1:0.
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::body::BoxBody;

/// A CA that issues server and client certificates.
pub(crate) struct TestPki {
    pub ca_pem: String,
    ca: Certificate,
    ca_key: KeyPair,
}

/// The client certificate chain the TLS server verified, as a request extension.
#[derive(Clone, Debug)]
pub(crate) struct PeerCerts(pub Vec<CertificateDer<'static>>);

impl TestPki {
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate()?;
        let ca = params.self_signed(&ca_key)?;
        Ok(TestPki {
            ca_pem: ca.pem(),
            ca,
            ca_key,
        })
    }

    /// A certificate and key (PEM) for `127.0.0.1` and `localhost`.
    pub fn server_cert(&self) -> anyhow::Result<(String, String)> {
        let params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.ca, &self.ca_key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A client certificate (PEM) with `cn` as CommonName and one O per group.
    pub fn client_cert(&self, cn: &str, groups: &[&str]) -> anyhow::Result<(String, String)> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        for group in groups {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *group);
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.ca, &self.ca_key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A TLS server configuration offering h2 and http/1.1; with `client_auth`, it asks for (but
    /// does not require) a client certificate issued by this CA.
    pub fn server_config(&self, client_auth: bool) -> anyhow::Result<ServerConfig> {
        let (cert_pem, key_pem) = self.server_cert()?;
        let chain =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from(self.ca.der().to_vec()))?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// Serves HTTPS (h1 and h2, with upgrades) on 127.0.0.1:0 until the test's runtime ends.
pub(crate) async fn serve_https<F, Fut>(
    config: ServerConfig,
    handler: F,
) -> anyhow::Result<SocketAddr>
where
    F: Fn(http::Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = http::Response<BoxBody>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let handler = handler.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let peer = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .map(|c| PeerCerts(c.iter().map(|c| c.clone().into_owned()).collect()));
                let service =
                    hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
                        if let Some(peer) = &peer {
                            req.extensions_mut().insert(peer.clone());
                        }
                        let fut = handler(req);
                        async move { Ok::<_, Infallible>(fut.await) }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// Writes `contents` to `dir/name` and returns the path.
pub(crate) fn write(
    dir: &std::path::Path,
    name: &str,
    contents: impl AsRef<[u8]>,
) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
