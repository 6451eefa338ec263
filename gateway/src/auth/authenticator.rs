//! `Authenticator`: picks the method that fits the request's credentials.
use std::sync::Arc;

use rustls_pki_types::CertificateDer;

use super::bearer::{bearer_token, peek_issuer};
use super::client_cert::ClientCertAuthenticator;
use super::oidc::OidcVerifier;
use super::token_review::TokenReviewer;
use super::{AuthArgs, AuthError, Identity};
use crate::upstream::Upstream;

/// Authenticates callers by client certificate, OIDC JWT or TokenReview.
pub struct Authenticator {
    oidc: Option<OidcVerifier>,
    token_review: Option<TokenReviewer>,
    client_certs: Option<ClientCertAuthenticator>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("oidc_issuer", &self.oidc.as_ref().map(|o| o.issuer()))
            .field("token_review", &self.token_review.is_some())
            .field("client_certs", &self.client_certs.is_some())
            .finish()
    }
}

impl Authenticator {
    /// Validates the flags and reads the CA files; contacts nobody (JWKS is fetched on first use).
    pub async fn new(args: &AuthArgs, upstream: Arc<Upstream>) -> Result<Self, AuthError> {
        let authenticator = Authenticator {
            oidc: OidcVerifier::from_args(args)?,
            token_review: TokenReviewer::from_args(args, upstream),
            client_certs: ClientCertAuthenticator::from_args(args)?,
        };
        if authenticator.oidc.is_none()
            && authenticator.token_review.is_none()
            && authenticator.client_certs.is_none()
        {
            return Err(AuthError::Config(
                "no authentication method enabled: set --oidc-issuer-url, --token-review or \
                 --client-ca-file"
                    .into(),
            ));
        }
        tracing::info!(authenticator = ?authenticator, "caller authentication configured");
        Ok(authenticator)
    }

    /// Authenticates one request from its headers and, if the TLS client presented one, the
    /// verified client certificate chain (leaf first). As in kube-apiserver, a client
    /// certificate is tried before a bearer token.
    pub async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        client_cert: Option<&[CertificateDer<'static>]>,
    ) -> Result<Identity, AuthError> {
        let result = self.authenticate_inner(headers, client_cert).await;
        match &result {
            Ok(id) => {
                tracing::debug!(user = %id.username, method = id.method.as_str(), "caller authenticated");
            }
            Err(AuthError::Unavailable(reason)) => {
                tracing::warn!(%reason, "caller authentication unavailable");
            }
            Err(error) => tracing::debug!(%error, "caller not authenticated"),
        }
        result
    }

    async fn authenticate_inner(
        &self,
        headers: &http::HeaderMap,
        client_cert: Option<&[CertificateDer<'static>]>,
    ) -> Result<Identity, AuthError> {
        if let (Some(certs), Some(chain)) = (&self.client_certs, client_cert)
            && !chain.is_empty()
        {
            return certs.identity(chain);
        }
        let Some(token) = bearer_token(headers)? else {
            return Err(AuthError::unauthorized("no credentials provided"));
        };
        // A token verified moments ago (the common case: a client's every request carries the
        // same one) is found without decoding it to see who issued it.
        if let Some(identity) = self.oidc.as_ref().and_then(|oidc| oidc.cached(token)) {
            return Ok(identity);
        }
        let issuer = peek_issuer(token);
        if let Some(oidc) = &self.oidc
            && issuer.as_deref() == Some(oidc.issuer())
        {
            return oidc.verify(token).await;
        }
        // ServiceAccount tokens are JWTs too, from the cluster's issuer: the API server decides.
        if let Some(review) = &self.token_review {
            return review.review(token).await;
        }
        Err(AuthError::unauthorized(match (&self.oidc, issuer) {
            (Some(_), Some(_)) => "token issuer not accepted",
            (Some(_), None) => "invalid bearer token",
            (None, _) => "bearer tokens are not accepted",
        }))
    }
}
