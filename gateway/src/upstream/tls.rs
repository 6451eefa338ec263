//! TLS client settings for the API server: the cluster CA as the only trust root, optionally a
//! client certificate. There is deliberately no way to skip verification.
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::UpstreamError;

/// A client certificate chain (leaf first) and its private key.
pub(crate) struct ClientIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl ClientIdentity {
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8], what: &str) -> Result<Self, UpstreamError> {
        let chain = parse_certs(cert_pem, &format!("{what} client certificate"))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
            UpstreamError::pem(
                format!("{what} client key"),
                format!("no usable private key ({e})"),
            )
        })?;
        Ok(ClientIdentity { chain, key })
    }
}

/// Parses every certificate in `pem`; at least one must be present.
pub(crate) fn parse_certs(
    pem: &[u8],
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, UpstreamError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| UpstreamError::pem(what, format!("malformed PEM ({e})")))?;
    if certs.is_empty() {
        return Err(UpstreamError::pem(what, "contains no PEM certificate"));
    }
    Ok(certs)
}

/// A root store holding exactly the certificates in `ca_pem`.
pub(crate) fn root_store(ca_pem: &[u8], what: &str) -> Result<RootCertStore, UpstreamError> {
    let mut roots = RootCertStore::empty();
    for cert in parse_certs(ca_pem, what)? {
        roots
            .add(cert)
            .map_err(|e| UpstreamError::pem(what, format!("unusable CA certificate ({e})")))?;
    }
    Ok(roots)
}

/// The ring crypto provider, set explicitly so no process-wide default is needed.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls client configuration trusting only `roots`, presenting `identity` if given.
pub(crate) fn client_config(
    roots: RootCertStore,
    identity: Option<ClientIdentity>,
) -> Result<ClientConfig, UpstreamError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(UpstreamError::Tls)?
        .with_root_certificates(roots);
    match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain, id.key)
            .map_err(UpstreamError::Tls),
        None => Ok(builder.with_no_client_auth()),
    }
}
