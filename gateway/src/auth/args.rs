//! Command-line flags of caller authentication.
use std::path::PathBuf;
use std::time::Duration;

/// How the gateway authenticates its callers: OIDC bearer JWTs, ServiceAccount tokens through
/// TokenReview, and client certificates. Any combination may be enabled.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// OIDC issuer URL (https); enables OIDC bearer tokens. Must equal the tokens' `iss`.
    #[arg(long, env = "GATEWAY_OIDC_ISSUER_URL")]
    pub oidc_issuer_url: Option<String>,

    /// Accepted token audience(s) (`aud`); required with --oidc-issuer-url. Comma-separated.
    #[arg(long, env = "GATEWAY_OIDC_AUDIENCE", value_delimiter = ',')]
    pub oidc_audience: Vec<String>,

    /// JWKS URL (default: `jwks_uri` from {issuer}/.well-known/openid-configuration).
    #[arg(long, env = "GATEWAY_OIDC_JWKS_URL")]
    pub oidc_jwks_url: Option<String>,

    /// PEM CA bundle that is the only trust root for the issuer's TLS (default: the public
    /// web PKI roots).
    #[arg(long, env = "GATEWAY_OIDC_CA_FILE")]
    pub oidc_ca_file: Option<PathBuf>,

    /// Claim holding the username.
    #[arg(long, env = "GATEWAY_OIDC_USERNAME_CLAIM", default_value = "sub")]
    pub oidc_username_claim: String,

    /// Prefix for usernames. As in kube-apiserver: unset means `{issuer}#` unless the username
    /// claim is `email`; `-` means no prefix.
    #[arg(long, env = "GATEWAY_OIDC_USERNAME_PREFIX")]
    pub oidc_username_prefix: Option<String>,

    /// Claim holding the groups (a string or an array of strings).
    #[arg(long, env = "GATEWAY_OIDC_GROUPS_CLAIM", default_value = "groups")]
    pub oidc_groups_claim: String,

    /// Prefix for every group.
    #[arg(long, env = "GATEWAY_OIDC_GROUPS_PREFIX")]
    pub oidc_groups_prefix: Option<String>,

    /// Claim holding the user's UID (sent as `Impersonate-Uid`); none by default.
    #[arg(long, env = "GATEWAY_OIDC_UID_CLAIM")]
    pub oidc_uid_claim: Option<String>,

    /// Accepted signing algorithms. Comma-separated.
    #[arg(
        long,
        env = "GATEWAY_OIDC_SIGNING_ALGS",
        value_delimiter = ',',
        default_value = "RS256,ES256"
    )]
    pub oidc_signing_algs: Vec<String>,

    /// Clock skew allowed when checking `exp` and `nbf`.
    #[arg(long, env = "GATEWAY_OIDC_LEEWAY", value_parser = humantime::parse_duration, default_value = "30s")]
    pub oidc_leeway: Duration,

    /// JWKS older than this is fetched again at the next use.
    #[arg(long, env = "GATEWAY_OIDC_JWKS_REFRESH_INTERVAL", value_parser = humantime::parse_duration, default_value = "10m")]
    pub oidc_jwks_refresh_interval: Duration,

    /// At most one JWKS fetch per this interval for tokens with an unknown `kid`.
    #[arg(long, env = "GATEWAY_OIDC_JWKS_MIN_REFETCH_INTERVAL", value_parser = humantime::parse_duration, default_value = "10s")]
    pub oidc_jwks_min_refetch_interval: Duration,

    /// How long a verified OIDC token is remembered (never past its `exp`); 0 disables. Keys
    /// removed from the JWKS stop being accepted after at most this long.
    #[arg(long, env = "GATEWAY_OIDC_CACHE_TTL", value_parser = humantime::parse_duration, default_value = "10s")]
    pub oidc_cache_ttl: Duration,

    /// Most verified OIDC tokens remembered.
    #[arg(long, env = "GATEWAY_OIDC_CACHE_SIZE", default_value_t = 10_000)]
    pub oidc_cache_size: usize,

    /// Timeout for discovery and JWKS requests to the issuer.
    #[arg(long, env = "GATEWAY_OIDC_HTTP_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10s")]
    pub oidc_http_timeout: Duration,

    /// Verify other bearer tokens (such as ServiceAccount tokens) with a TokenReview on the API
    /// server, using the gateway's own credential.
    #[arg(long, env = "GATEWAY_TOKEN_REVIEW")]
    pub token_review: bool,

    /// Audiences put in TokenReview `spec.audiences` (default: the API server's).
    #[arg(long, env = "GATEWAY_TOKEN_REVIEW_AUDIENCES", value_delimiter = ',')]
    pub token_review_audiences: Vec<String>,

    /// How long an accepted TokenReview is cached.
    #[arg(long, env = "GATEWAY_TOKEN_REVIEW_CACHE_TTL", value_parser = humantime::parse_duration, default_value = "10s")]
    pub token_review_cache_ttl: Duration,

    /// How long a rejected TokenReview is cached.
    #[arg(long, env = "GATEWAY_TOKEN_REVIEW_NEGATIVE_CACHE_TTL", value_parser = humantime::parse_duration, default_value = "2s")]
    pub token_review_negative_cache_ttl: Duration,

    /// Most TokenReview results kept in the cache.
    #[arg(
        long,
        env = "GATEWAY_TOKEN_REVIEW_CACHE_SIZE",
        default_value_t = 10_000
    )]
    pub token_review_cache_size: usize,

    /// PEM CA bundle for client certificates; enables client-certificate authentication
    /// (CN is the username, O the groups).
    #[arg(long, env = "GATEWAY_CLIENT_CA_FILE")]
    pub client_ca_file: Option<PathBuf>,
}
