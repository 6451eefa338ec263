//! Client certificates: verified against `--client-ca-file`; the subject's CN is the username and
//! each O a group, as in Kubernetes.
use std::collections::BTreeMap;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_cert::Certificate;
use x509_cert::der::oid::db::rfc4519;
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::name::DirectoryString;

use super::{AuthArgs, AuthError, AuthMethod, Identity};

/// The verifier for the gateway's TLS server: it asks for a client certificate, verifies one
/// that is presented against `--client-ca-file`, and also lets clients without one through
/// (bearer tokens are the main path). `None` without `--client-ca-file`.
pub fn client_cert_verifier(
    args: &AuthArgs,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, AuthError> {
    let Some(path) = &args.client_ca_file else {
        return Ok(None);
    };
    let pem = std::fs::read(path).map_err(|source| AuthError::ReadFile {
        what: "client CA file",
        path: path.clone(),
        source,
    })?;
    let roots =
        crate::upstream::tls::root_store(&pem, &format!("client CA file {}", path.display()))
            .map_err(|e| AuthError::Config(e.to_string()))?;
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| AuthError::Config(format!("client CA file {}: {e}", path.display())))?;
    Ok(Some(verifier))
}

pub(crate) struct ClientCertAuthenticator {
    verifier: Arc<dyn ClientCertVerifier>,
}

impl ClientCertAuthenticator {
    pub fn from_args(args: &AuthArgs) -> Result<Option<Self>, AuthError> {
        Ok(client_cert_verifier(args)?.map(|verifier| ClientCertAuthenticator { verifier }))
    }

    /// The identity in `chain` (leaf first). The chain is verified again here, so a TLS setup that
    /// forgot the verifier cannot turn an arbitrary certificate into an identity.
    pub fn identity(&self, chain: &[CertificateDer<'static>]) -> Result<Identity, AuthError> {
        let (leaf, intermediates) = chain
            .split_first()
            .ok_or_else(|| AuthError::unauthorized("empty client certificate chain"))?;
        self.verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map_err(|e| {
                tracing::debug!(error = %e, "client certificate rejected");
                AuthError::unauthorized("client certificate not accepted")
            })?;
        identity_from_cert(leaf)
    }
}

fn identity_from_cert(leaf: &CertificateDer<'_>) -> Result<Identity, AuthError> {
    let bad = || AuthError::unauthorized("malformed client certificate");
    let cert = Certificate::from_der(leaf).map_err(|_| bad())?;
    let mut username = None;
    let mut groups = Vec::new();
    for rdn in cert.tbs_certificate.subject.0.iter() {
        for atv in rdn.0.iter() {
            let is_cn = atv.oid == rfc4519::CN;
            if !is_cn && atv.oid != rfc4519::O {
                continue;
            }
            let der = atv.value.to_der().map_err(|_| bad())?;
            let value = match DirectoryString::from_der(&der).map_err(|_| bad())? {
                DirectoryString::Utf8String(s) => s,
                DirectoryString::PrintableString(s) => s.as_str().to_string(),
                DirectoryString::TeletexString(s) => s.as_str().to_string(),
            };
            if is_cn {
                username = Some(value);
            } else {
                groups.push(value);
            }
        }
    }
    let username = username
        .filter(|u| !u.is_empty())
        .ok_or_else(|| AuthError::unauthorized("client certificate has no common name"))?;
    Ok(Identity {
        username,
        groups,
        uid: String::new(),
        method: AuthMethod::ClientCert,
        issuer: cert.tbs_certificate.issuer.to_string(),
        extra: BTreeMap::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;

    /// Made with `openssl req -x509 -subj "/O=devs/O=system:masters/CN=jane"` (rcgen cannot
    /// repeat an attribute type): parsing only, no chain.
    const MULTI_O: &str = "
-----BEGIN CERTIFICATE-----
MIIBxjCCAWugAwIBAgIUOuFaJDEHQkUBPxVjC4CH1Hcm72UwCgYIKoZIzj0EAwIw
NzENMAsGA1UECgwEZGV2czEXMBUGA1UECgwOc3lzdGVtOm1hc3RlcnMxDTALBgNV
BAMMBGphbmUwIBcNMjYxMTIyMDAwOTQ4WhgPMjEyNjEwMjkwMDA5NDhaMDcxDTAL
BgNVBAoMBGRldnMxFzAVBgNVBAoMDnN5c3RlbTptYXN0ZXJzMQ0wCwYDVQQDDARq
YW5lMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEWr/lvtVt9hqOGO1kz2wDqYA8
qfQS28LjeVf94kwhbTGa5UHnPyka5Kija60N3ZYwUyZkwGbksES6rJSOCBXWZ6NT
MFEwHQYDVR0OBBYEFD/17IvnUONiULzUUvkZJrekZAyXMB8GA1UdIwQYMBaAFD/1
7IvnUONiULzUUvkZJrekZAyXMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwID
SQAwRgIhAMmAEvlIdCIzWPUHBTbh/Qs0UDOIvkPFZaCwhjVZZsmzAiEA2rGIR6Ud
FU/3NPjpfuMWGiw6CuaXJIOKMu8phsQST0c=
-----END CERTIFICATE-----
";

    #[test]
    fn every_organization_is_a_group() -> anyhow::Result<()> {
        let der = CertificateDer::from_pem_slice(MULTI_O.trim().as_bytes())?;
        let id = identity_from_cert(&der)?;
        assert_eq!(id.username, "jane");
        assert_eq!(id.groups, vec!["devs", "system:masters"]);
        assert!(matches!(
            identity_from_cert(&CertificateDer::from(vec![0x30, 0x00])),
            Err(AuthError::Unauthorized(_))
        ));
        Ok(())
    }
}
