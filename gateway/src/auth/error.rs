//! Errors of caller authentication.
use std::path::PathBuf;

use http::StatusCode;

/// Why a caller was not authenticated, or why authentication could not be set up.
///
/// Messages never contain credentials, so they can go into the `metav1.Status` answered to the
/// caller and into logs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The caller's credentials were missing or not accepted: answer 401.
    #[error("{0}")]
    Unauthorized(String),
    /// The credentials could not be checked right now (issuer or API server unreachable): answer
    /// 503, so that clients do not throw away a good token.
    #[error("authentication unavailable: {0}")]
    Unavailable(String),
    /// The authentication flags are unusable.
    #[error("invalid authentication configuration: {0}")]
    Config(String),
    /// A file named by the flags cannot be read.
    #[error("cannot read {what} {}", path.display())]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl AuthError {
    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        AuthError::Unauthorized(message.into())
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        AuthError::Unavailable(message.into())
    }

    /// The HTTP status to answer with.
    pub fn status_code(&self) -> StatusCode {
        match self {
            AuthError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AuthError::Config(_) | AuthError::ReadFile { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `metav1.Status` reason to answer with (`Unauthorized` for rejected credentials).
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Unauthorized(_) => "Unauthorized",
            AuthError::Unavailable(_) => "ServiceUnavailable",
            AuthError::Config(_) | AuthError::ReadFile { .. } => "InternalError",
        }
    }

    /// A short human message for the `metav1.Status`, free of secrets.
    pub fn message(&self) -> String {
        self.to_string()
    }
}
