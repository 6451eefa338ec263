//! `--upstream-mode in-cluster`: the pod's own ServiceAccount, like client-go's `InClusterConfig`.
use std::path::Path;
use std::time::Duration;

use super::UpstreamError;
use super::credential::Credential;
use super::target::Target;
use super::token_file::FileToken;

/// The API server URL from `KUBERNETES_SERVICE_HOST`/`PORT`.
pub(crate) fn server_from_env() -> Result<String, UpstreamError> {
    let host = std::env::var("KUBERNETES_SERVICE_HOST").ok();
    let port = std::env::var("KUBERNETES_SERVICE_PORT").ok();
    server_url(host.as_deref(), port.as_deref())
}

fn server_url(host: Option<&str>, port: Option<&str>) -> Result<String, UpstreamError> {
    match (host, port) {
        (Some(host), Some(port)) if !host.is_empty() && !port.is_empty() => {
            // An IPv6 service address needs brackets in a URL.
            if host.contains(':') {
                Ok(format!("https://[{host}]:{port}"))
            } else {
                Ok(format!("https://{host}:{port}"))
            }
        }
        _ => Err(UpstreamError::Config(
            "in-cluster mode needs KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT (is the \
             gateway running in a pod?) or --in-cluster-server"
                .into(),
        )),
    }
}

pub(crate) async fn load(
    server: String,
    ca_file: &Path,
    token_file: &Path,
    reload_every: Duration,
) -> Result<Target, UpstreamError> {
    let ca_pem = tokio::fs::read(ca_file)
        .await
        .map_err(|source| UpstreamError::ReadFile {
            what: "in-cluster CA file",
            path: ca_file.to_path_buf(),
            source,
        })?;
    let token = FileToken::new(token_file.to_path_buf(), reload_every).await?;
    Ok(Target {
        server,
        ca_pem,
        ca_what: format!("in-cluster CA file {}", ca_file.display()),
        tls_server_name: None,
        identity: None,
        credential: Credential::File(token),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_url_from_service_env() -> anyhow::Result<()> {
        assert_eq!(
            server_url(Some("10.96.0.1"), Some("443"))?,
            "https://10.96.0.1:443"
        );
        assert_eq!(
            server_url(Some("fd00::1"), Some("443"))?,
            "https://[fd00::1]:443"
        );
        assert!(server_url(None, Some("443")).is_err());
        assert!(server_url(Some(""), Some("443")).is_err());
        Ok(())
    }
}
