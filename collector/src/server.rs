//! Wires the collector together: configuration → migrations → writer → gRPC (TLS/mTLS) and ops
//! listeners.
use crate::auth::{IngestAuth, ReaderAuth};
use crate::config::ServeArgs;
use crate::error::CollectorError;
use crate::http_api::JsonApi;
use crate::ingest::IngestService;
use crate::metrics::Metrics;
use crate::query::QueryService;
use crate::writer::{self, DeadLetter, WriterOptions};
use gatehouse_proto::v1::ingest_server::IngestServer;
use gatehouse_proto::v1::query_server::QueryServer;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

/// A collector bound to its sockets, ready to serve.
pub struct Bound {
    pub grpc_addr: SocketAddr,
    pub ops_addr: SocketAddr,
}

/// Validates, migrates (unless disabled), binds, and returns the serving future.
pub async fn start(
    args: ServeArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(Bound, impl Future<Output = Result<(), CollectorError>>), CollectorError> {
    args.validate()?;
    let ingest_auth = Arc::new(IngestAuth::new(
        args.ingest_token_file.as_deref(),
        args.ingest_clients.clone(),
    )?);
    let oidc = match &args.oidc_issuer_url {
        Some(_) => gatehouse_gateway::auth::OidcVerifier::from_args(&oidc_args(&args))
            .map_err(|e| CollectorError::Config(gatehouse_gateway::error_chain(&e)))?,
        None => None,
    };
    let reader_auth = Arc::new(ReaderAuth::new(oidc, args.reader_groups.clone()));
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let read = |p: &std::path::Path| {
                std::fs::read(p).map_err(|source| CollectorError::ReadFile {
                    path: p.display().to_string(),
                    source,
                })
            };
            let mut tls =
                ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
            if let Some(ca) = &args.client_ca_file {
                // Optional at the TLS layer so token-only shippers can connect; IngestAuth then
                // requires an accepted certificate or a token on every stream.
                tls = tls
                    .client_ca_root(Certificate::from_pem(read(ca)?))
                    .client_auth_optional(true);
            }
            Some(tls)
        }
        _ => None,
    };
    let dead_letter = Arc::new(DeadLetter::open(&args.dead_letter_file).map_err(|source| {
        CollectorError::DeadLetter {
            path: args.dead_letter_file.display().to_string(),
            source,
        }
    })?);

    if !args.no_migrate {
        let report = crate::schema::migrate(&args.clickhouse, &args.schema).await?;
        tracing::info!(applied = ?report.applied, version = report.version, ttl_changed = ?report.ttl_changed, "schema is current");
    }

    let metrics = Metrics::default();
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let alerts = crate::alerts::spawn(&args.alerts, &mut registry)?;
    let client = crate::clickhouse_client::client(&args.clickhouse, true);
    let writer = writer::spawn(
        client.clone(),
        WriterOptions {
            max_rows: args.batch_max_rows,
            min_rows: args.batch_min_rows,
            max_bytes: args.batch_max_bytes,
            period: args.batch_period,
            queue: args.queue_batches,
            concurrency: args.insert_concurrency,
        },
        dead_letter,
        metrics.clone(),
    );

    let grpc = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| CollectorError::Bind {
            addr: args.listen.to_string(),
            source,
        })?;
    let ops = tokio::net::TcpListener::bind(args.ops_listen)
        .await
        .map_err(|source| CollectorError::Bind {
            addr: args.ops_listen.to_string(),
            source,
        })?;
    let bound = Bound {
        grpc_addr: grpc.local_addr().map_err(|source| CollectorError::Bind {
            addr: args.listen.to_string(),
            source,
        })?,
        ops_addr: ops.local_addr().map_err(|source| CollectorError::Bind {
            addr: args.ops_listen.to_string(),
            source,
        })?,
    };
    tracing::info!(
        listen = %bound.grpc_addr,
        ops_listen = %bound.ops_addr,
        tls = tls.is_some(),
        "collector listening"
    );
    tokio::spawn(crate::ops::serve(ops, Arc::new(registry)));

    let query = Arc::new(QueryService {
        client,
        auth: reader_auth,
        metrics: metrics.clone(),
    });
    // HTTP/1.1 too, for the JSON read API's plain-HTTP clients; gRPC itself stays HTTP/2.
    let mut builder = Server::builder().accept_http1(true);
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).map_err(CollectorError::Serve)?;
    }
    let router = builder
        .add_service(
            IngestServer::new(IngestService {
                auth: ingest_auth,
                writer,
                metrics,
                alerts,
            })
            .max_decoding_message_size(args.max_message_bytes),
        )
        .add_service(QueryServer::from_arc(query.clone()))
        .add_service(JsonApi::new(query));
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc);
    let serve = async move {
        router
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .map_err(CollectorError::Serve)
    };
    Ok((bound, serve))
}

/// The gateway's OIDC settings from the collector's flags (same verifier as live access).
fn oidc_args(args: &ServeArgs) -> gatehouse_gateway::auth::AuthArgs {
    use clap::Parser;
    #[derive(Parser)]
    struct Defaults {
        #[command(flatten)]
        auth: gatehouse_gateway::auth::AuthArgs,
    }
    let mut a = Defaults::parse_from(["collector"]).auth;
    a.oidc_issuer_url = args.oidc_issuer_url.clone();
    a.oidc_audience = args.oidc_audience.clone();
    a.oidc_jwks_url = args.oidc_jwks_url.clone();
    a.oidc_ca_file = args.oidc_ca_file.clone();
    a.oidc_username_claim = args.oidc_username_claim.clone();
    a.oidc_username_prefix = args.oidc_username_prefix.clone();
    a.oidc_groups_claim = args.oidc_groups_claim.clone();
    a.token_review = false;
    a.client_ca_file = None;
    a
}
