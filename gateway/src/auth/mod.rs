//! Caller authentication: OIDC bearer JWTs, Kubernetes ServiceAccount tokens (TokenReview) and
//! client certificates, yielding the `Identity` the gateway impersonates.
mod args;
mod authenticator;
mod bearer;
mod client_cert;
mod error;
mod identity;
mod oidc;
mod token_review;
mod ttl_cache;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

pub use args::AuthArgs;
pub use authenticator::Authenticator;
pub use client_cert::client_cert_verifier;
pub use error::AuthError;
pub use identity::{AuthMethod, Identity};
/// Also used by the collector, so reading recordings is gated by the same OIDC checks.
pub use oidc::OidcVerifier;
#[doc(hidden)]
pub use oidc::fuzz_verify;
