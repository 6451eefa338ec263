//! `gatehouse token`: a client-go ExecCredential plugin. Prints a short-lived OIDC token for the
//! gateway, from the cache, a refresh token, the device-code flow (people), client credentials
//! or a projected ServiceAccount token file (AI agents).
mod cache;
mod error;
mod grants;
mod http;

pub use error::TokenError;

use clap::{Args, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// How a token is obtained when the cache has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Grant {
    /// OAuth 2.0 device authorization (RFC 8628): open the printed URL, enter the code.
    DeviceCode,
    /// OAuth 2.0 client credentials (a workload or AI agent with its own client).
    ClientCredentials,
    /// A token file kept fresh by someone else, e.g. a projected ServiceAccount token.
    TokenFile,
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// OIDC issuer URL (https); its discovery document names the endpoints.
    #[arg(long, env = "GATEHOUSE_OIDC_ISSUER")]
    pub issuer: Option<String>,
    /// OAuth client id registered at the issuer (also the gateway's --oidc-audience).
    #[arg(long, env = "GATEHOUSE_OIDC_CLIENT_ID")]
    pub client_id: Option<String>,
    /// File holding the client secret (client-credentials; optional for device-code).
    #[arg(long, env = "GATEHOUSE_OIDC_CLIENT_SECRET_FILE")]
    pub client_secret_file: Option<PathBuf>,
    /// PEM CA bundle of the issuer (default: the public web PKI roots).
    #[arg(long, env = "GATEHOUSE_OIDC_CA_FILE")]
    pub issuer_ca: Option<PathBuf>,
    /// How to get a token when none is cached.
    #[arg(
        long,
        env = "GATEHOUSE_GRANT",
        value_enum,
        default_value = "device-code"
    )]
    pub grant: Grant,
    /// Scopes requested (space separated).
    #[arg(
        long,
        env = "GATEHOUSE_OIDC_SCOPES",
        default_value = "openid groups offline_access"
    )]
    pub scopes: String,
    /// The token file of --grant token-file (e.g. /var/run/secrets/tokens/gatehouse).
    #[arg(long, env = "GATEHOUSE_TOKEN_SOURCE_FILE")]
    pub token_source_file: Option<PathBuf>,
    /// Token cache directory (default $XDG_CACHE_HOME/gatehouse/tokens or ~/.cache/…).
    #[arg(long, env = "GATEHOUSE_TOKEN_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// A cached token is used while it has at least this long left.
const MIN_LIFETIME: Duration = Duration::from_secs(60);

/// Prints an `ExecCredential` with a valid token on `out`; prompts (device code) go to stderr.
pub fn run(args: &TokenArgs, out: &mut dyn Write) -> Result<(), TokenError> {
    let (token, expiry) = obtain(args)?;
    let cred = serde_json::json!({
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {
            "token": token,
            "expirationTimestamp": humantime::format_rfc3339_seconds(expiry).to_string(),
        }
    });
    writeln!(out, "{cred}").map_err(TokenError::Output)
}

fn obtain(args: &TokenArgs) -> Result<(String, SystemTime), TokenError> {
    if args.grant == Grant::TokenFile {
        let path = args.token_source_file.as_ref().ok_or_else(|| {
            TokenError::Config("--grant token-file needs --token-source-file".into())
        })?;
        let token = std::fs::read_to_string(path)
            .map_err(|e| TokenError::Config(format!("cannot read {}: {e}", path.display())))?
            .trim()
            .to_string();
        let expiry = grants::jwt_expiry(&token).ok_or_else(|| {
            TokenError::Config(format!("{} does not hold a JWT with exp", path.display()))
        })?;
        return Ok((token, expiry));
    }
    let issuer = args
        .issuer
        .as_deref()
        .ok_or_else(|| TokenError::Config("--issuer is required".into()))?;
    let client_id = args
        .client_id
        .as_deref()
        .ok_or_else(|| TokenError::Config("--client-id is required".into()))?;
    let cache = cache::Cache::new(args.cache_dir.clone(), issuer, client_id, args)?;
    let cached = cache.load();
    if let Some(c) = &cached
        && c.expires_at > SystemTime::now() + MIN_LIFETIME
    {
        return Ok((c.token.clone(), c.expires_at));
    }
    let secret = match &args.client_secret_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| TokenError::Config(format!("cannot read {}: {e}", p.display())))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let client = grants::Client::new(issuer, client_id, secret, args)?;
    let fresh = match cached.and_then(|c| c.refresh_token) {
        // A failed refresh (revoked, expired) falls through to a full login.
        Some(rt) => match client.refresh(&rt) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("gatehouse: refresh failed ({e}); signing in again");
                None
            }
        },
        None => None,
    };
    let fresh = match fresh {
        Some(t) => t,
        None if args.grant == Grant::DeviceCode => client.device_code(&args.scopes)?,
        None => client.client_credentials(&args.scopes)?,
    };
    cache.store(&fresh)?;
    Ok((fresh.token, fresh.expires_at))
}
