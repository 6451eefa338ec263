//! `--upstream-mode kubeconfig`: a kubeconfig file parsed by hand (one file, no merging).
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

use super::UpstreamError;
use super::credential::Credential;
use super::target::Target;
use super::tls::ClientIdentity;
use super::token_file::{FileToken, bearer};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Kubeconfig {
    #[serde(default)]
    clusters: Option<Vec<Named<Cluster>>>,
    #[serde(default)]
    users: Option<Vec<Named<User>>>,
    #[serde(default)]
    contexts: Option<Vec<Named<Context>>>,
    #[serde(default)]
    current_context: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "user", alias = "context", default)]
    value: Option<T>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    server: Option<String>,
    certificate_authority: Option<String>,
    certificate_authority_data: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
    tls_server_name: Option<String>,
    proxy_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct User {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
    client_certificate: Option<String>,
    client_certificate_data: Option<String>,
    client_key: Option<String>,
    client_key_data: Option<String>,
    username: Option<String>,
    exec: Option<serde_yaml::Value>,
    auth_provider: Option<serde_yaml::Value>,
    #[serde(rename = "as")]
    impersonate: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Context {
    cluster: Option<String>,
    user: Option<String>,
}

/// The kubeconfig path to use: the flag, else the first `$KUBECONFIG` entry, else `~/.kube/config`.
pub(crate) fn default_path(flag: Option<&Path>) -> Result<PathBuf, UpstreamError> {
    if let Some(path) = flag {
        return Ok(path.to_path_buf());
    }
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .as_ref()
        .and_then(|v| std::env::split_paths(v).find(|p| !p.as_os_str().is_empty()))
    {
        return Ok(first);
    }
    match std::env::var_os("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".kube").join("config")),
        None => Err(UpstreamError::Config(
            "no --kubeconfig given and neither $KUBECONFIG nor $HOME is set".into(),
        )),
    }
}

/// Reads `path` and resolves `context` (or the current-context) into a target.
pub(crate) async fn load(
    path: &Path,
    context: Option<&str>,
    reload_every: Duration,
) -> Result<Target, UpstreamError> {
    let raw = tokio::fs::read(path)
        .await
        .map_err(|source| UpstreamError::ReadFile {
            what: "kubeconfig",
            path: path.to_path_buf(),
            source,
        })?;
    let config: Kubeconfig = if raw.trim_ascii().is_empty() {
        Kubeconfig::default()
    } else {
        serde_yaml::from_slice(&raw).map_err(|source| UpstreamError::KubeconfigYaml {
            path: path.to_path_buf(),
            source,
        })?
    };
    let base = path.parent().unwrap_or(Path::new("."));
    Resolver { path, base, config }
        .resolve(context, reload_every)
        .await
}

struct Resolver<'a> {
    path: &'a Path,
    base: &'a Path,
    config: Kubeconfig,
}

impl Resolver<'_> {
    fn err(&self, message: impl Into<String>) -> UpstreamError {
        UpstreamError::Kubeconfig {
            path: self.path.to_path_buf(),
            message: message.into(),
        }
    }

    async fn resolve(
        self,
        context: Option<&str>,
        reload_every: Duration,
    ) -> Result<Target, UpstreamError> {
        let context_name = match context.or(self.config.current_context.as_deref()) {
            Some(name) if !name.is_empty() => name.to_string(),
            _ => return Err(self.err("no current-context set; pass --kube-context")),
        };
        let ctx = find(self.config.contexts.as_deref(), &context_name)
            .ok_or_else(|| self.err(format!("context {context_name:?} not found")))?;
        let cluster_name = ctx
            .cluster
            .as_deref()
            .ok_or_else(|| self.err(format!("context {context_name:?} names no cluster")))?;
        let cluster = find(self.config.clusters.as_deref(), cluster_name)
            .ok_or_else(|| self.err(format!("cluster {cluster_name:?} not found")))?;
        let user_name = ctx.user.as_deref().unwrap_or_default();
        let default_user = User::default();
        let user = if user_name.is_empty() {
            &default_user
        } else {
            find(self.config.users.as_deref(), user_name)
                .ok_or_else(|| self.err(format!("user {user_name:?} not found")))?
        };

        let server = match cluster.server.as_deref() {
            Some(s) if !s.is_empty() => s.to_string(),
            _ => return Err(self.err(format!("cluster {cluster_name:?} has no server"))),
        };
        if cluster.proxy_url.is_some() {
            return Err(self.err(format!(
                "cluster {cluster_name:?} sets proxy-url, which the gateway does not support"
            )));
        }
        let (ca_pem, ca_what) = match (
            &cluster.certificate_authority_data,
            &cluster.certificate_authority,
        ) {
            (Some(data), _) if !data.is_empty() => (
                self.decode(data, "certificate-authority-data")?,
                format!("certificate-authority-data of cluster {cluster_name:?}"),
            ),
            (_, Some(file)) if !file.is_empty() => {
                let path = self.base.join(file);
                (
                    read_file(&path, "certificate-authority").await?,
                    format!("certificate-authority {}", path.display()),
                )
            }
            _ if cluster.insecure_skip_tls_verify => {
                return Err(self.err(format!(
                    "cluster {cluster_name:?} sets insecure-skip-tls-verify; the gateway always \
                     verifies the API server, so set certificate-authority(-data) instead"
                )));
            }
            _ => {
                return Err(self.err(format!(
                    "cluster {cluster_name:?} has no certificate-authority or \
                     certificate-authority-data; the gateway trusts only the cluster CA"
                )));
            }
        };

        if user.exec.is_some() {
            return Err(self.err(format!(
                "user {user_name:?} uses an exec credential plugin, which the gateway does not \
                 support yet; use a token, tokenFile or client certificate user, or \
                 --upstream-mode eks for EKS"
            )));
        }
        if user.auth_provider.is_some() {
            return Err(self.err(format!(
                "user {user_name:?} uses an auth-provider, which the gateway does not support"
            )));
        }
        if user.username.is_some() {
            return Err(self.err(format!(
                "user {user_name:?} uses basic auth (username/password), which the gateway does \
                 not support"
            )));
        }
        if user.impersonate.is_some() {
            return Err(self.err(format!(
                "user {user_name:?} sets `as`; the gateway sets impersonation itself"
            )));
        }

        let cert = self
            .data_or_file(
                &user.client_certificate_data,
                &user.client_certificate,
                "client-certificate",
            )
            .await?;
        let key = self
            .data_or_file(&user.client_key_data, &user.client_key, "client-key")
            .await?;
        let identity = match (cert, key) {
            (Some(cert), Some(key)) => Some(ClientIdentity::from_pem(
                &cert,
                &key,
                &format!("user {user_name:?}"),
            )?),
            (None, None) => None,
            _ => {
                return Err(self.err(format!(
                    "user {user_name:?} has a client certificate without a key, or a key \
                     without a certificate"
                )));
            }
        };

        let credential = match (&user.token_file, &user.token) {
            // Like client-go's transport, a tokenFile wins and is re-read.
            (Some(file), _) if !file.is_empty() => {
                Credential::File(FileToken::new(self.base.join(file), reload_every).await?)
            }
            (_, Some(token)) if !token.is_empty() => Credential::Static(bearer(
                token.trim().as_bytes(),
                &format!("token of user {user_name:?}"),
            )?),
            _ => Credential::None,
        };
        if identity.is_none() && matches!(credential, Credential::None) {
            return Err(self.err(format!(
                "user {user_name:?} has no token, tokenFile or client certificate"
            )));
        }

        Ok(Target {
            server,
            ca_pem,
            ca_what,
            tls_server_name: cluster.tls_server_name.clone().filter(|s| !s.is_empty()),
            identity,
            credential,
        })
    }

    fn decode(&self, data: &str, field: &str) -> Result<Vec<u8>, UpstreamError> {
        let compact: String = data.split_ascii_whitespace().collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|e| self.err(format!("{field} is not valid base64 ({e})")))
    }

    async fn data_or_file(
        &self,
        data: &Option<String>,
        file: &Option<String>,
        field: &'static str,
    ) -> Result<Option<Vec<u8>>, UpstreamError> {
        match (data, file) {
            (Some(data), _) if !data.is_empty() => {
                self.decode(data, &format!("{field}-data")).map(Some)
            }
            (_, Some(file)) if !file.is_empty() => {
                read_file(&self.base.join(file), field).await.map(Some)
            }
            _ => Ok(None),
        }
    }
}

fn find<'a, T>(items: Option<&'a [Named<T>]>, name: &str) -> Option<&'a T> {
    items?
        .iter()
        .find(|item| item.name == name)
        .and_then(|item| item.value.as_ref())
}

async fn read_file(path: &Path, what: &'static str) -> Result<Vec<u8>, UpstreamError> {
    tokio::fs::read(path)
        .await
        .map_err(|source| UpstreamError::ReadFile {
            what,
            path: path.to_path_buf(),
            source,
        })
}
