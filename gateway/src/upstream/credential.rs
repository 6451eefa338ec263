//! The gateway's own bearer credential for the API server (a client certificate, if any, lives in
//! the TLS configuration instead).
use http::HeaderValue;

use super::UpstreamError;
use super::eks::EksToken;
use super::token_file::FileToken;

pub(crate) enum Credential {
    /// Client certificate only (or no credential at all).
    None,
    Static(HeaderValue),
    File(FileToken),
    Eks(Box<EksToken>),
}

impl Credential {
    /// The `Authorization` header value to add, if any.
    pub async fn authorization(&self) -> Result<Option<HeaderValue>, UpstreamError> {
        match self {
            Credential::None => Ok(None),
            Credential::Static(header) => Ok(Some(header.clone())),
            Credential::File(file) => Ok(Some(file.authorization().await)),
            Credential::Eks(eks) => eks.authorization().await.map(Some),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Credential::None => "none",
            Credential::Static(_) => "token",
            Credential::File(_) => "token-file",
            Credential::Eks(_) => "eks",
        }
    }
}
