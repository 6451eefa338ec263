//! Builds the gateway from its configuration (validating everything first) and serves the TLS
//! listener and the operations listener until SIGTERM.
pub mod keys;
pub mod ops;
pub mod tls;

use crate::auth::{self, Authenticator};
use crate::config::GatewayArgs;
use crate::metrics::Metrics;
use crate::proxy::impersonation::Impersonator;
use crate::proxy::{ConnInfo, Proxy, ProxySettings};
use crate::transcript::digest::Digester;
use crate::transcript::recorder::Recorder;
use crate::transcript::signing::DigestSigner;
use crate::upstream::Upstream;
use gatehouse_journal::{Journal, JournalOptions};
use gatehouse_proto::v1::Producer;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use ops::Ops;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("invalid TLS configuration")]
    Tls(#[from] tls::TlsError),
    #[error("invalid authentication configuration")]
    Auth(#[from] auth::AuthError),
    #[error("invalid upstream configuration")]
    Upstream(#[from] crate::upstream::UpstreamError),
    #[error("invalid identity mapping")]
    IdentityMap(#[from] crate::proxy::impersonation::MapError),
    #[error("cannot open the journal")]
    Journal(#[from] gatehouse_journal::JournalError),
    #[error("invalid collector configuration")]
    Shipping(#[from] crate::shipping::ShippingError),
    #[error("invalid policy file")]
    Policy(#[from] gatehouse_policy::LoadError),
    #[error("invalid digest signing key")]
    SigningKey(#[from] crate::transcript::signing::SigningKeyError),
    #[error("cannot load approvals and grants")]
    Approvals(#[from] crate::approvals::store::StoreError),
    #[error("--capture-bytes {0} is larger than the journal's largest record allows")]
    CaptureTooLarge(u64),
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A validated gateway, ready to bind.
pub struct Gateway {
    args: GatewayArgs,
    proxy: Arc<Proxy>,
    tls: Arc<rustls::ServerConfig>,
    ops: Ops,
    shipper: Option<gatehouse_shipper::Shipper>,
    digester: Arc<crate::transcript::digest::Digester>,
}

/// The bound listeners' addresses (port 0 resolved), for tests and logs.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub listen: SocketAddr,
    pub ops: SocketAddr,
}

impl Gateway {
    /// Validates the whole configuration and opens the journal; binds nothing.
    pub async fn build(args: GatewayArgs) -> Result<Self, BuildError> {
        // Leave room in a journal record for the event's other fields.
        if args.capture_bytes > (gatehouse_journal::MAX_RECORD_LEN as u64) / 4 {
            return Err(BuildError::CaptureTooLarge(args.capture_bytes));
        }
        let client_verifier = auth::client_cert_verifier(&args.auth)?;
        let tls = tls::server_config(&args.tls_cert, &args.tls_key, client_verifier)?;
        let impersonator =
            Impersonator::load(args.identity_map.as_deref(), &args.allow_impersonation)?;
        let policy = match &args.policy_file {
            Some(path) => Some(Arc::new(crate::policy::LivePolicy::load(path)?)),
            None => None,
        };
        let signer = Arc::new(match &args.signing_key {
            Some(path) => DigestSigner::load(path)?,
            None => DigestSigner::ephemeral()?,
        });
        let upstream = Arc::new(Upstream::from_args(&args.upstream).await?);
        let auth = Authenticator::new(&args.auth, upstream.clone()).await?;
        let (journal, recovery) = Journal::open(
            &args.journal_dir,
            JournalOptions {
                max_segment_bytes: args.journal_segment_bytes,
                max_unacked_bytes: args.journal_max_bytes,
                fsync: args.journal_fsync,
            },
        )?;
        tracing::info!(
            dir = %args.journal_dir.display(),
            end_offset = recovery.end_offset,
            truncated_bytes = recovery.truncated_bytes,
            "journal open"
        );
        let shipper = crate::shipping::shipper(&args.collector, journal.clone())?;
        let mut metrics = Metrics::new();
        if let Some(s) = &shipper {
            metrics.register_shipper(s.metrics());
        }
        let metrics = Arc::new(metrics);
        let producer = Producer {
            component: "gateway".into(),
            instance: args.instance.clone().unwrap_or_else(hostname),
            version: crate::VERSION.into(),
        };
        let recorder = Arc::new(
            Recorder::new(
                journal.clone(),
                args.session_idle_gap,
                producer,
                metrics.clone(),
            )
            .with_digests(),
        );
        if signer.is_ephemeral() {
            tracing::warn!(
                kid = signer.kid(),
                "no --signing-key: session digests are signed with a key generated for this process only; they verify only against this process's /keys. Configure GATEWAY_SIGNING_KEY in production"
            );
        }
        let digester = Arc::new(Digester::new(
            recorder.clone(),
            signer.clone(),
            args.digest_interval,
        ));
        let proxy = Arc::new(Proxy {
            settings: ProxySettings {
                capture_bytes: args.capture_bytes as usize,
            },
            auth,
            upstream,
            recorder,
            metrics: metrics.clone(),
            impersonator,
            policy,
            // Grants and the approvals' history survive restarts, next to the journal.
            approvals: Arc::new(crate::approvals::Approvals::with_store(&args.journal_dir)?),
        });
        let ops = Ops {
            metrics,
            journal,
            max_unacked: args.journal_max_bytes,
            signer,
        };
        Ok(Self {
            args,
            proxy,
            tls: Arc::new(tls),
            ops,
            shipper,
            digester,
        })
    }

    /// Binds both listeners; the returned future serves until `shutdown` resolves.
    pub async fn bind(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(Bound, impl std::future::Future<Output = ()>), ServeError> {
        let listener = TcpListener::bind(self.args.listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: self.args.listen,
                source,
            })?;
        let ops_listener = TcpListener::bind(self.args.ops_listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: self.args.ops_listen,
                source,
            })?;
        let bound = Bound {
            listen: listener.local_addr().unwrap_or(self.args.listen),
            ops: ops_listener.local_addr().unwrap_or(self.args.ops_listen),
        };
        tracing::info!(listen = %bound.listen, ops = %bound.ops, "gateway listening");
        let ops_task = tokio::spawn(serve_ops(ops_listener, self.ops.clone()));
        // Hot reload: re-read every second until the process ends.
        if let Some(policy) = &self.proxy.policy {
            let _detached = policy.clone().watch(Duration::from_secs(1));
            let _expiry = crate::approvals::api::expire_grants(
                self.proxy.approvals.clone(),
                self.proxy.recorder.clone(),
            );
        }
        // Ships until the process ends; what is unshipped stays in the journal for next time.
        let ship_task = self
            .shipper
            .map(|s| tokio::spawn(s.run(std::future::pending())));
        let digest_task = tokio::spawn(self.digester.clone().run());
        let digester = self.digester;
        let grace = self.args.shutdown_grace;
        let journal = self.ops.journal.clone();
        let serve = async move {
            serve_tls(
                listener,
                TlsAcceptor::from(self.tls),
                self.proxy,
                shutdown,
                grace,
            )
            .await;
            ops_task.abort();
            digest_task.abort();
            // Every session ends with the process: seal each with its closing digest.
            let sealed = tokio::task::spawn_blocking(move || digester.tick(true)).await;
            tracing::info!(sealed = sealed.unwrap_or(0), "sessions sealed");
            if let Some(t) = ship_task {
                t.abort();
            }
            if let Err(e) = journal.sync() {
                tracing::error!(error = %e, "final journal sync failed");
            }
        };
        Ok((bound, serve))
    }
}

async fn serve_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    proxy: Arc<Proxy>,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Watches and log streams are long and quiet: keep h2 connections alive with pings
    // rather than timing them out.
    builder.http1().timer(TokioTimer::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_concurrent_streams(1000);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let proxy = proxy.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            let client_certs =
                tls.get_ref().1.peer_certificates().map(|c| {
                    Arc::new(c.iter().map(|d| d.clone().into_owned()).collect::<Vec<_>>())
                });
            let conn = ConnInfo { peer, client_certs };
            let svc = service_fn(move |req| {
                let proxy = proxy.clone();
                let conn = conn.clone();
                async move { Ok::<_, std::convert::Infallible>(proxy.handle(req, conn).await) }
            });
            let served = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
            if let Err(e) = watcher.watch(served.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!("shutdown grace elapsed with connections open"),
    }
}

async fn serve_ops(listener: TcpListener, ops: Ops) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let ops = ops.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let resp = ops.handle(&req);
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "gateway".into())
}
