//! Errors of `gatehouse token`, one line each.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Config(String),
    #[error("OIDC issuer: {0}")]
    Issuer(String),
    #[error("sign-in refused: {0}")]
    Denied(String),
    #[error("token cache {path}: {reason}")]
    Cache { path: String, reason: String },
    #[error("cannot write output: {0}")]
    Output(std::io::Error),
}

impl TokenError {
    /// 64 for configuration, 2 for a refused sign-in, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            TokenError::Config(_) => 64,
            TokenError::Denied(_) => 2,
            TokenError::Issuer(_) | TokenError::Cache { .. } | TokenError::Output(_) => 1,
        }
    }
}
