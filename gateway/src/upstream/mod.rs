//! The upstream side: the real API server, reached over TLS that trusts only the cluster CA, with
//! the gateway's own credential (kubeconfig, in-cluster ServiceAccount or EKS).
mod args;
mod buffered;
mod client;
mod credential;
mod eks;
mod error;
mod in_cluster;
mod kubeconfig;
mod target;
pub(crate) mod tls;
mod token_file;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
pub(crate) mod tests;

pub use args::{UpstreamArgs, UpstreamMode};
pub use client::Upstream;
pub use error::UpstreamError;
