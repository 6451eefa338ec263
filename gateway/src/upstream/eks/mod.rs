//! `--upstream-mode eks`: AssumeRole on `--eks-role-arn`, then the EKS token: `k8s-aws-v1.` and
//! the base64url of a presigned STS `GetCallerIdentity` URL that signs `x-k8s-aws-id`.
mod sigv4;
mod sts;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use http::HeaderValue;
use parking_lot::Mutex;
use tokio::time::Instant;

use self::sigv4::Credentials;
use self::sts::{Assumed, Sts};
use super::credential::Credential;
use super::target::Target;
use super::token_file::bearer;
use super::{UpstreamArgs, UpstreamError};

/// EKS accepts a token for 15 minutes; mint a new one well before.
const TOKEN_REFRESH: Duration = Duration::from_secs(10 * 60);
/// Past this age a cached token is not used even if a refresh fails.
const TOKEN_MAX_AGE: Duration = Duration::from_secs(14 * 60);
/// Assumed credentials must outlive any token minted with them.
const CREDENTIALS_MARGIN: TimeDelta = TimeDelta::minutes(20);
const ASSUME_ROLE_SECONDS: u32 = 3600;

pub(crate) struct EksSettings {
    pub cluster: String,
    pub region: String,
    pub role_arn: String,
    pub session_name: String,
}

pub(crate) struct EksToken {
    settings: EksSettings,
    base: Credentials,
    sts: Sts,
    cached: Mutex<Option<(HeaderValue, Instant)>>,
    refresh: tokio::sync::Mutex<Option<Assumed>>,
}

impl EksToken {
    pub fn new(settings: EksSettings, base: Credentials, sts: Sts) -> Self {
        EksToken {
            settings,
            base,
            sts,
            cached: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(None),
        }
    }

    pub async fn authorization(&self) -> Result<HeaderValue, UpstreamError> {
        if let Some((token, minted)) = &*self.cached.lock()
            && minted.elapsed() < TOKEN_REFRESH
        {
            return Ok(token.clone());
        }
        let mut assumed = self.refresh.lock().await;
        // Someone else may have refreshed while we waited.
        if let Some((token, minted)) = &*self.cached.lock()
            && minted.elapsed() < TOKEN_REFRESH
        {
            return Ok(token.clone());
        }
        match self.mint(&mut assumed).await {
            Ok(token) => {
                *self.cached.lock() = Some((token.clone(), Instant::now()));
                Ok(token)
            }
            Err(error) => match &*self.cached.lock() {
                Some((token, minted)) if minted.elapsed() < TOKEN_MAX_AGE => {
                    tracing::warn!(error = %error, "EKS token refresh failed, using the cached token");
                    Ok(token.clone())
                }
                _ => Err(error),
            },
        }
    }

    async fn mint(&self, assumed: &mut Option<Assumed>) -> Result<HeaderValue, UpstreamError> {
        let now = Utc::now();
        let fresh = assumed
            .as_ref()
            .is_some_and(|a| a.expiration - now > CREDENTIALS_MARGIN);
        if !fresh {
            let s = &self.settings;
            let new = self
                .sts
                .assume_role(
                    &self.base,
                    &s.role_arn,
                    &s.session_name,
                    ASSUME_ROLE_SECONDS,
                )
                .await?;
            tracing::info!(role = %s.role_arn, expires = %new.expiration, "assumed the EKS role");
            *assumed = Some(new);
        }
        let credentials = assumed
            .as_ref()
            .map(|a| &a.credentials)
            .ok_or_else(|| UpstreamError::Credential("no assumed-role credentials".into()))?;
        let token = token(
            credentials,
            &self.settings.cluster,
            &self.settings.region,
            now,
        );
        bearer(token.as_bytes(), "EKS token")
    }
}

/// The EKS bearer token for `cluster`, presigned at `at`.
pub(crate) fn token(creds: &Credentials, cluster: &str, region: &str, at: DateTime<Utc>) -> String {
    let params = BTreeMap::from([
        ("Action".to_string(), "GetCallerIdentity".to_string()),
        ("Version".to_string(), "2011-06-15".to_string()),
    ]);
    let url = sigv4::presign_get(
        creds,
        at,
        region,
        "sts",
        &format!("sts.{region}.amazonaws.com"),
        "/",
        params,
        &[("x-k8s-aws-id", cluster)],
        60,
    );
    format!(
        "k8s-aws-v1.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url)
    )
}

/// Resolves EKS mode: API server and CA from flags, base AWS credentials from the standard
/// environment variables, then assumes the role once so that mistakes show at start-up.
pub(crate) async fn target(args: &UpstreamArgs) -> Result<Target, UpstreamError> {
    let base = env_credentials()?;
    target_with(args, base).await
}

pub(crate) async fn target_with(
    args: &UpstreamArgs,
    base: Credentials,
) -> Result<Target, UpstreamError> {
    let need = |value: &Option<String>, flag: &str| {
        value
            .clone()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| UpstreamError::Config(format!("--upstream-mode eks needs {flag}")))
    };
    let settings = EksSettings {
        cluster: need(&args.eks_cluster_name, "--eks-cluster-name")?,
        region: need(&args.eks_region, "--eks-region")?,
        role_arn: need(&args.eks_role_arn, "--eks-role-arn")?,
        session_name: args.eks_role_session_name.clone(),
    };
    let server = need(&args.eks_endpoint, "--eks-endpoint")?;
    let ca_file = args
        .eks_ca_file
        .clone()
        .ok_or_else(|| UpstreamError::Config("--upstream-mode eks needs --eks-ca-file".into()))?;
    let ca_pem = read(&ca_file, "EKS CA file").await?;

    let endpoint = args
        .sts_endpoint
        .clone()
        .unwrap_or_else(|| format!("https://sts.{}.amazonaws.com/", settings.region));
    let endpoint: http::Uri = endpoint
        .parse()
        .ok()
        .filter(|u: &http::Uri| u.scheme_str() == Some("https") && u.host().is_some())
        .ok_or_else(|| {
            UpstreamError::Config(format!("--sts-endpoint {endpoint:?} is not an https URL"))
        })?;
    let roots = match &args.sts_ca_file {
        Some(path) => super::tls::root_store(
            &read(path, "STS CA file").await?,
            &format!("STS CA file {}", path.display()),
        )?,
        None => sts::default_roots(),
    };
    let sts = Sts::new(
        endpoint,
        settings.region.clone(),
        roots,
        args.upstream_timeout_request,
    )?;
    let eks = EksToken::new(settings, base, sts);
    eks.authorization().await?;
    Ok(Target {
        server,
        ca_pem,
        ca_what: format!("EKS CA file {}", ca_file.display()),
        tls_server_name: None,
        identity: None,
        credential: Credential::Eks(Box::new(eks)),
    })
}

async fn read(path: &std::path::Path, what: &'static str) -> Result<Vec<u8>, UpstreamError> {
    tokio::fs::read(path)
        .await
        .map_err(|source| UpstreamError::ReadFile {
            what,
            path: path.to_path_buf(),
            source,
        })
}

fn env_credentials() -> Result<Credentials, UpstreamError> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(Credentials {
            access_key_id,
            secret_access_key,
            session_token: var("AWS_SESSION_TOKEN"),
        }),
        _ => Err(UpstreamError::Config(
            "--upstream-mode eks needs base AWS credentials in AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY (optionally AWS_SESSION_TOKEN); web identity, instance \
             profile and SSO sources are not supported yet"
                .into(),
        )),
    }
}
