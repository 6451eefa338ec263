//! `Upstream`: the HTTP client for the API server.
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, HOST, UPGRADE};
use http::uri::PathAndQuery;
use http::{Request, Response, Uri, Version};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::ServerName;

use super::buffered::BufferedConnector;
use super::credential::Credential;
use super::target::Target;
use super::{UpstreamArgs, UpstreamError, UpstreamMode, in_cluster, kubeconfig, tls};
use crate::body::{BoxBody, full};

type HttpsClient = Client<HttpsConnector<HttpConnector>, BoxBody>;
/// Upgrades (exec, attach, port-forward) read the API server's bytes through a buffer.
type UpgradeClient = Client<HttpsConnector<BufferedConnector>, BoxBody>;

/// The largest response `send_buffered` accepts.
const MAX_BUFFERED_RESPONSE: usize = 16 * 1024 * 1024;

/// The real API server, with the gateway's own credential.
pub struct Upstream {
    base_url: Uri,
    /// Path prefix of the server URL without a trailing `/` (usually empty).
    base_path: String,
    /// Offers h2 and http/1.1; carries ordinary requests and watches.
    client: HttpsClient,
    /// HTTP/1.1 only: protocol upgrades (exec, attach, port-forward) cannot run over h2.
    upgrade_client: UpgradeClient,
    credential: Credential,
    request_timeout: Duration,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("base_url", &self.base_url)
            .field("credential", &self.credential.kind())
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// Resolves the configured mode into a ready client. Reads files (and, in EKS mode, assumes the
    /// role), but does not contact the API server.
    pub async fn from_args(args: &UpstreamArgs) -> Result<Self, UpstreamError> {
        let target = match args.mode {
            UpstreamMode::Kubeconfig => {
                let path = kubeconfig::default_path(args.kubeconfig.as_deref())?;
                kubeconfig::load(
                    &path,
                    args.kube_context.as_deref(),
                    args.upstream_token_reload_interval,
                )
                .await?
            }
            UpstreamMode::InCluster => {
                let server = match &args.in_cluster_server {
                    Some(server) => server.clone(),
                    None => in_cluster::server_from_env()?,
                };
                in_cluster::load(
                    server,
                    &args.in_cluster_ca_file,
                    &args.in_cluster_token_file,
                    args.upstream_token_reload_interval,
                )
                .await?
            }
            UpstreamMode::Eks => super::eks::target(args).await?,
        };
        let upstream = Self::from_target(target, args)?;
        tracing::info!(server = %upstream.base_url, mode = ?args.mode, credential = upstream.credential.kind(), "upstream API server configured");
        Ok(upstream)
    }

    pub(crate) fn from_target(target: Target, args: &UpstreamArgs) -> Result<Self, UpstreamError> {
        let base_url = parse_server(&target.server)?;
        let base_path = base_url.path().trim_end_matches('/').to_string();
        let roots = tls::root_store(&target.ca_pem, &target.ca_what)?;
        let config = tls::client_config(roots, target.identity)?;
        let server_name = target
            .tls_server_name
            .map(|name| {
                ServerName::try_from(name.clone()).map_err(|_| UpstreamError::ServerUrl {
                    url: target.server.clone(),
                    message: format!("tls-server-name {name:?} is not a valid DNS name or IP"),
                })
            })
            .transpose()?;

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(args.upstream_timeout_connect));
        http.set_keepalive(Some(Duration::from_secs(60)));

        let https = || {
            let builder = HttpsConnectorBuilder::new()
                .with_tls_config(config.clone())
                .https_only();
            match &server_name {
                Some(name) => {
                    builder.with_server_name_resolver(FixedServerNameResolver::new(name.clone()))
                }
                None => builder,
            }
        };
        let connector = if args.upstream_http2 {
            https()
                .enable_http1()
                .enable_http2()
                .wrap_connector(http.clone())
        } else {
            https().enable_http1().wrap_connector(http.clone())
        };
        // Upgrades always go over HTTP/1.1.
        let upgrade_connector = https()
            .enable_http1()
            .wrap_connector(BufferedConnector(http.clone()));
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(args.upstream_pool_idle_timeout)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            // Pings keep idle watch streams alive through load balancers and detect dead peers.
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_timeout(Duration::from_secs(20));
        Ok(Upstream {
            base_url,
            base_path,
            client: builder.build(connector),
            upgrade_client: builder.build(upgrade_connector),
            credential: target.credential,
            request_timeout: args.upstream_timeout_request,
        })
    }

    /// The API server URL.
    pub fn base_url(&self) -> &Uri {
        &self.base_url
    }

    /// Sends `req` (its URI is path-and-query only, e.g. `/api/v1/pods?watch=1`) to the API
    /// server, adding the gateway's credential. Any `Authorization` and `Host` on `req` are
    /// replaced. Requests with an `Upgrade` header go over HTTP/1.1 so that
    /// `hyper::upgrade::on(response)` works; everything else may share an h2 connection. Both
    /// bodies stream, and there is no whole-response timeout.
    pub async fn send(
        &self,
        mut req: Request<BoxBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        *req.uri_mut() = self.join(req.uri())?;
        // The client chooses h2 or HTTP/1.1 per connection; an HTTP/2 version here would make it
        // refuse an HTTP/1.1 connection.
        *req.version_mut() = Version::HTTP_11;
        let headers = req.headers_mut();
        headers.remove(HOST);
        headers.remove(AUTHORIZATION);
        if let Some(value) = self.credential.authorization().await? {
            headers.insert(AUTHORIZATION, value);
        }
        let response = if headers.contains_key(UPGRADE) {
            self.upgrade_client.request(req).await
        } else {
            self.client.request(req).await
        };
        response.map_err(UpstreamError::Request)
    }

    /// Sends a small request and reads the whole response (at most 16 MiB), all within the
    /// request timeout. For the gateway's own calls such as TokenReview.
    pub async fn send_buffered(
        &self,
        req: Request<Bytes>,
    ) -> Result<Response<Bytes>, UpstreamError> {
        let (parts, body) = req.into_parts();
        let req = Request::from_parts(parts, full(body));
        let exchange = async {
            let response = self.send(req).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_BUFFERED_RESPONSE)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        UpstreamError::ResponseTooLarge(MAX_BUFFERED_RESPONSE)
                    } else {
                        UpstreamError::ResponseBody(e)
                    }
                })?
                .to_bytes();
            Ok(Response::from_parts(parts, body))
        };
        tokio::time::timeout(self.request_timeout, exchange)
            .await
            .map_err(|_| UpstreamError::Timeout(self.request_timeout))?
    }

    fn join(&self, uri: &Uri) -> Result<Uri, UpstreamError> {
        let pq = uri
            .path_and_query()
            .map(PathAndQuery::as_str)
            .unwrap_or("/");
        if !pq.starts_with('/') {
            return Err(UpstreamError::RequestUri(format!(
                "{pq:?} does not start with /"
            )));
        }
        let mut parts = self.base_url.clone().into_parts();
        let joined = format!("{}{pq}", self.base_path);
        parts.path_and_query = Some(
            joined
                .parse()
                .map_err(|e| UpstreamError::RequestUri(format!("{e}")))?,
        );
        Uri::from_parts(parts).map_err(|e| UpstreamError::RequestUri(format!("{e}")))
    }
}

fn parse_server(server: &str) -> Result<Uri, UpstreamError> {
    let err = |message: &str| UpstreamError::ServerUrl {
        url: server.to_string(),
        message: message.to_string(),
    };
    let uri: Uri = server.parse().map_err(|_| err("not a URL"))?;
    if uri.scheme_str() != Some("https") {
        return Err(err("the API server must be reached over https"));
    }
    if uri.host().is_none() {
        return Err(err("no host"));
    }
    if uri.query().is_some() {
        return Err(err("a query is not allowed"));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        assert!(parse_server("https://10.0.0.1:6443").is_ok());
        assert!(parse_server("https://example.com/prefix/").is_ok());
        assert!(matches!(
            parse_server("http://10.0.0.1:6443"),
            Err(UpstreamError::ServerUrl { .. })
        ));
        assert!(parse_server("not a url").is_err());
    }
}
