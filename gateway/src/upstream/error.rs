//! Errors of the upstream side.
use std::path::PathBuf;
use std::time::Duration;

/// Why the gateway could not set up, or talk to, the real API server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The flags contradict each other or miss something.
    #[error("invalid upstream configuration: {0}")]
    Config(String),
    /// A file named by the configuration cannot be read.
    #[error("cannot read {what} {}", path.display())]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The kubeconfig is not YAML of the expected shape.
    #[error("kubeconfig {} is not a valid kubeconfig", path.display())]
    KubeconfigYaml {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    /// The kubeconfig parses but cannot be used as it is.
    #[error("kubeconfig {}: {message}", path.display())]
    Kubeconfig { path: PathBuf, message: String },
    /// A certificate or key is not usable PEM.
    #[error("invalid {what}: {message}")]
    Pem { what: String, message: String },
    /// rustls refused the TLS settings (for example a key that does not match its certificate).
    #[error("cannot build the upstream TLS configuration")]
    Tls(#[source] rustls::Error),
    /// The API server URL is unusable.
    #[error("invalid API server URL {url:?}: {message}")]
    ServerUrl { url: String, message: String },
    /// The request handed to `send` has a URI that cannot be joined to the API server URL.
    #[error("invalid request URI: {0}")]
    RequestUri(String),
    /// The gateway's own credential could not be obtained.
    #[error("cannot obtain the gateway's upstream credential: {0}")]
    Credential(String),
    /// EKS token minting (AssumeRole or presigning) failed.
    #[error("eks credential: {message}")]
    Eks {
        message: String,
        #[source]
        source: Option<crate::body::BoxError>,
    },
    /// Connecting to or exchanging with the API server failed.
    #[error("request to the API server failed")]
    Request(#[source] hyper_util::client::legacy::Error),
    /// Reading a buffered response body failed.
    #[error("reading the API server's response failed")]
    ResponseBody(#[source] crate::body::BoxError),
    /// A buffered response was larger than the helper accepts.
    #[error("API server response is larger than {0} bytes")]
    ResponseTooLarge(usize),
    /// A buffered exchange took longer than the configured request timeout.
    #[error("API server did not answer within {0:?}")]
    Timeout(Duration),
}

impl UpstreamError {
    /// Whether the failure happened while connecting (the API server is unreachable), which a
    /// proxy answers with 502/503 rather than 500.
    pub fn is_connect(&self) -> bool {
        matches!(self, UpstreamError::Request(e) if e.is_connect())
    }

    pub(crate) fn pem(what: impl Into<String>, message: impl Into<String>) -> Self {
        UpstreamError::Pem {
            what: what.into(),
            message: message.into(),
        }
    }
}
