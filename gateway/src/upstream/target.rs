//! Where the API server is and how the gateway proves who it is: what every upstream mode resolves
//! to before the HTTP client is built.
use super::credential::Credential;
use super::tls::ClientIdentity;

pub(crate) struct Target {
    /// API server URL, e.g. `https://10.0.0.1:443` or `https://host:6443/prefix`.
    pub server: String,
    /// PEM of the cluster CA: the only trust root.
    pub ca_pem: Vec<u8>,
    /// Where the CA came from, for error messages.
    pub ca_what: String,
    /// Name to verify the server certificate against instead of the URL host.
    pub tls_server_name: Option<String>,
    pub identity: Option<ClientIdentity>,
    pub credential: Credential,
}
