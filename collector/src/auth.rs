//! Who may call: shippers (gateways, agents) by client certificate and/or bearer token, and
//! readers by OIDC JWT in a configured reader group.
use gatehouse_gateway::auth::{Identity, OidcVerifier};
use sha2::{Digest, Sha256};
use std::path::Path;
use tonic::{Request, Status};

/// The ingest policy: a client certificate naming an allowed client, or a known token.
pub struct IngestAuth {
    /// (name, SHA-256 of the token)
    tokens: Vec<(String, [u8; 32])>,
    clients: Vec<String>,
}

impl IngestAuth {
    pub fn new(
        token_file: Option<&Path>,
        clients: Vec<String>,
    ) -> Result<Self, crate::CollectorError> {
        let mut tokens = Vec::new();
        if let Some(path) = token_file {
            let text = std::fs::read_to_string(path).map_err(|source| {
                crate::CollectorError::ReadFile {
                    path: path.display().to_string(),
                    source,
                }
            })?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let Some((name, token)) = line.split_once(char::is_whitespace) else {
                    return Err(crate::CollectorError::Config(format!(
                        "{} line {}: expected `NAME TOKEN`",
                        path.display(),
                        n + 1
                    )));
                };
                tokens.push((name.to_string(), digest(token.trim())));
            }
            if tokens.is_empty() {
                return Err(crate::CollectorError::Config(format!(
                    "{} holds no token",
                    path.display()
                )));
            }
        }
        Ok(Self { tokens, clients })
    }

    /// The caller's name, or UNAUTHENTICATED.
    pub fn check<T>(&self, req: &Request<T>) -> Result<String, Status> {
        if let Some(certs) = req.peer_certs()
            && let Some(leaf) = certs.first()
        {
            let names = cert_names(leaf.as_ref());
            if let Some(name) = names.iter().find(|n| self.clients.contains(n)) {
                return Ok(name.clone());
            }
            if self.tokens.is_empty() {
                return Err(Status::unauthenticated(format!(
                    "client certificate {names:?} is not a configured gateway or agent"
                )));
            }
        }
        let Some(token) = bearer(req) else {
            return Err(Status::unauthenticated(
                "no accepted client certificate and no bearer token",
            ));
        };
        let presented = digest(token);
        // Compare every digest fully, so timing does not tell which prefix matched.
        let mut found = None;
        for (name, want) in &self.tokens {
            let diff = want
                .iter()
                .zip(presented.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 {
                found = Some(name.clone());
            }
        }
        found
            .ok_or_else(|| Status::unauthenticated("bearer token is not a configured ingest token"))
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The `authorization: Bearer …` token of a request.
pub fn bearer<T>(req: &Request<T>) -> Option<&str> {
    req.metadata()
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// CN and DNS SANs of a DER certificate.
pub fn cert_names(der: &[u8]) -> Vec<String> {
    use x509_cert::der::Decode;
    let Ok(cert) = x509_cert::Certificate::from_der(der) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    for rdn in cert.tbs_certificate.subject.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid == x509_cert::der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3")
                && let Ok(s) = atv
                    .value
                    .decode_as::<x509_cert::der::asn1::Utf8StringRef<'_>>()
            {
                names.push(s.as_str().to_string());
            }
        }
    }
    if let Ok(Some((_, san))) = cert
        .tbs_certificate
        .get::<x509_cert::ext::pkix::SubjectAltName>()
    {
        for n in san.0 {
            if let x509_cert::ext::pkix::name::GeneralName::DnsName(d) = n {
                names.push(d.as_str().to_string());
            }
        }
    }
    names
}

/// The read policy: an OIDC identity in one of the reader groups.
pub struct ReaderAuth {
    oidc: Option<OidcVerifier>,
    groups: Vec<String>,
}

/// Why a read was refused, before the audit row is written.
pub enum ReadRefusal {
    Unauthenticated(String),
    Denied(Identity, String),
}

impl ReaderAuth {
    pub fn new(oidc: Option<OidcVerifier>, groups: Vec<String>) -> Self {
        Self { oidc, groups }
    }

    /// The reader presenting `token` (an `Authorization: Bearer` value), if allowed to read.
    pub async fn check_token(&self, token: Option<&str>) -> Result<Identity, ReadRefusal> {
        let Some(oidc) = &self.oidc else {
            return Err(ReadRefusal::Unauthenticated(
                "reading recordings is disabled: the collector has no --oidc-issuer-url".into(),
            ));
        };
        let Some(token) = token else {
            return Err(ReadRefusal::Unauthenticated("no bearer token".into()));
        };
        let id = oidc
            .verify(token)
            .await
            .map_err(|e| ReadRefusal::Unauthenticated(gatehouse_gateway::error_chain(&e)))?;
        if id.groups.iter().any(|g| self.groups.contains(g)) {
            Ok(id)
        } else {
            let why = format!("{} is in none of the reader groups", id.username);
            Err(ReadRefusal::Denied(id, why))
        }
    }
}
