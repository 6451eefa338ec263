//! OIDC verification against a fake issuer over HTTPS.
