//! Who the caller is, once authenticated.
use std::collections::BTreeMap;

/// An authenticated caller, ready to become `Impersonate-*` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub username: String,
    pub groups: Vec<String>,
    /// Empty when the method provides none.
    pub uid: String,
    pub method: AuthMethod,
    /// Who vouched: the OIDC issuer URL, the ServiceAccount token's issuer (or
    /// `tokenreview`), or the client certificate's issuer DN.
    pub issuer: String,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    Oidc,
    ServiceAccountToken,
    ClientCert,
}

impl AuthMethod {
    pub fn as_str(&self) -> &'static str {
        match self {
            AuthMethod::Oidc => "oidc",
            AuthMethod::ServiceAccountToken => "serviceaccount-token",
            AuthMethod::ClientCert => "client-cert",
        }
    }
}
