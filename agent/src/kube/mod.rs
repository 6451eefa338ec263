//! The Kubernetes side of the agent: watches that keep the API-server endpoint set live
//! (Service, EndpointSlices, control-plane Nodes) and the pods on this node (for attribution,
//! the gateway allowlist and per-namespace modes).
pub mod apiserver;
pub mod client;
pub mod pods;
pub mod reflector;

use k8s_openapi::api::{
    core::v1::{Node, Pod, Service},
    discovery::v1::EndpointSlice,
};
use tokio::sync::mpsc;

pub use client::{Client, KubeConfig};
use reflector::Change;

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("kubernetes client configuration: {0}")]
    Config(String),
    #[error("kubernetes API: {0}")]
    Http(String),
    #[error("kubernetes API answered {code}: {message}")]
    Status { code: u16, message: String },
}

/// A change from one of the watches (boxed: typed objects are kilobytes).
#[derive(Debug)]
pub enum KubeEvent {
    Services(Box<Change<Service>>),
    Slices(Box<Change<EndpointSlice>>),
    Nodes(Box<Change<Node>>),
    Pods(Box<Change<Pod>>),
}

/// Percent-encodes a selector value for a query string.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The collections the agent watches, as (path, query).
pub struct Watches {
    pub services: (String, String),
    pub slices: (String, String),
    pub nodes: (String, String),
    pub pods: (String, String),
}

impl Watches {
    pub fn new(node: &str, control_plane_selector: &str) -> Self {
        Self {
            services: (
                "/api/v1/namespaces/default/services".into(),
                format!("fieldSelector={}", enc("metadata.name=kubernetes")),
            ),
            slices: (
                "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices".into(),
                format!(
                    "labelSelector={}",
                    enc("kubernetes.io/service-name=kubernetes")
                ),
            ),
            nodes: (
                "/api/v1/nodes".into(),
                format!("labelSelector={}", enc(control_plane_selector)),
            ),
            pods: (
                "/api/v1/pods".into(),
                format!("fieldSelector={}", enc(&format!("spec.nodeName={node}"))),
            ),
        }
    }
}

/// Starts every watch; changes arrive on the returned channel until it is dropped.
pub fn spawn(client: &Client, watches: Watches) -> mpsc::Receiver<KubeEvent> {
    let (tx, rx) = mpsc::channel(256);
    let Watches {
        services,
        slices,
        nodes,
        pods,
    } = watches;
    tokio::spawn(reflector::run(
        client.clone(),
        services.0,
        services.1,
        tx.clone(),
        |c| KubeEvent::Services(Box::new(c)),
    ));
    tokio::spawn(reflector::run(
        client.clone(),
        slices.0,
        slices.1,
        tx.clone(),
        |c| KubeEvent::Slices(Box::new(c)),
    ));
    tokio::spawn(reflector::run(
        client.clone(),
        nodes.0,
        nodes.1,
        tx.clone(),
        |c| KubeEvent::Nodes(Box::new(c)),
    ));
    tokio::spawn(reflector::run(client.clone(), pods.0, pods.1, tx, |c| {
        KubeEvent::Pods(Box::new(c))
    }));
    rx
}

/// One list of each API-server endpoint source (for `--dry-run`): fails rather than retries.
pub async fn snapshot(
    client: &Client,
    watches: &Watches,
) -> Result<apiserver::ApiServerSources, KubeError> {
    async fn list<T: k8s_openapi::Resource + serde::de::DeserializeOwned>(
        client: &Client,
        (path, query): &(String, String),
    ) -> Result<Vec<T>, KubeError> {
        let (items, _) = client.list(&format!("{path}?{query}")).await?;
        items.into_iter().map(reflector::typed::<T>).collect()
    }
    let mut s = apiserver::ApiServerSources::default();
    s.apply_services(Change::Reset(list(client, &watches.services).await?));
    s.apply_slices(Change::Reset(list(client, &watches.slices).await?));
    s.apply_nodes(Change::Reset(list(client, &watches.nodes).await?));
    Ok(s)
}
