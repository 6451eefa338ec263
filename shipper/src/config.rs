//! What the shipper needs to know: where the collector is, how to prove who we are, and how
//! large and how many batches may be in flight.
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// PEM CA bundle that must have signed the collector's certificate.
    pub ca_pem: Vec<u8>,
    /// PEM client certificate and key (mTLS), naming this gateway or agent.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Server name to verify, when it differs from the URL's host.
    pub domain_name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ShipperConfig {
    /// `https://collector:7443` (or `http://` for a plaintext h2c collector).
    pub url: String,
    pub tls: Option<TlsConfig>,
    /// Sent as `authorization: Bearer …` on every stream.
    pub token: Option<String>,
    /// Most records per batch.
    pub max_batch_records: usize,
    /// Most event bytes per batch.
    pub max_batch_bytes: usize,
    /// Batches sent but not yet acknowledged.
    pub window: usize,
    /// How often the journal's tail is polled when there is nothing new.
    pub poll_interval: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Bound on connecting and on each acknowledgement; past it the stream is restarted.
    pub timeout: Duration,
}

impl ShipperConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            tls: None,
            token: None,
            max_batch_records: 5_000,
            max_batch_bytes: 4 << 20,
            window: 8,
            poll_interval: Duration::from_millis(50),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
        }
    }
}
