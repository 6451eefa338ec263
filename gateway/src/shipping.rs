//! Shipping the journal to the collector (`--collector-url`): flags, validation, and the shared
//! shipper (`gatehouse-shipper`, also used by the node agent).
use gatehouse_journal::Journal;
use gatehouse_shipper::{Shipper, ShipperConfig, TlsConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, clap::Args)]
pub struct CollectorArgs {
    /// Collector gRPC URL (https://collector:7443). Without it the journal is kept locally only
    /// and grows until --journal-max-bytes, past which the gateway fails closed.
    #[arg(long, env = "GATEWAY_COLLECTOR_URL")]
    pub collector_url: Option<String>,
    /// PEM CA bundle that signed the collector's certificate.
    #[arg(long, env = "GATEWAY_COLLECTOR_CA_FILE")]
    pub collector_ca_file: Option<PathBuf>,
    /// PEM client certificate (mTLS) naming this gateway to the collector.
    #[arg(
        long,
        env = "GATEWAY_COLLECTOR_CLIENT_CERT",
        requires = "collector_client_key"
    )]
    pub collector_client_cert: Option<PathBuf>,
    #[arg(
        long,
        env = "GATEWAY_COLLECTOR_CLIENT_KEY",
        requires = "collector_client_cert"
    )]
    pub collector_client_key: Option<PathBuf>,
    /// File holding the bearer token for the collector's ingest.
    #[arg(long, env = "GATEWAY_COLLECTOR_TOKEN_FILE")]
    pub collector_token_file: Option<PathBuf>,
    /// Name to verify in the collector's certificate, when it differs from the URL's host.
    #[arg(long, env = "GATEWAY_COLLECTOR_SERVER_NAME")]
    pub collector_server_name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ShippingError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid collector settings")]
    Shipper(#[from] gatehouse_shipper::ShipperError),
}

/// The shipper configured by `args`, or `None` without `--collector-url`. Reads the files now,
/// so bad settings fail before any socket is bound.
pub fn shipper(
    args: &CollectorArgs,
    journal: Arc<Journal>,
) -> Result<Option<Shipper>, ShippingError> {
    let Some(url) = &args.collector_url else {
        return Ok(None);
    };
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| ShippingError::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    let mut cfg = ShipperConfig::new(url.clone());
    if let Some(ca) = &args.collector_ca_file {
        let identity = match (&args.collector_client_cert, &args.collector_client_key) {
            (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
            _ => None,
        };
        cfg.tls = Some(TlsConfig {
            ca_pem: read(ca)?,
            identity,
            domain_name: args.collector_server_name.clone(),
        });
    }
    if let Some(t) = &args.collector_token_file {
        cfg.token = Some(String::from_utf8_lossy(&read(t)?).trim().to_string());
    }
    Ok(Some(Shipper::new(journal, cfg)?))
}
