//! Where the API server is, as the cluster itself says: the `default/kubernetes` Service's
//! ClusterIPs, its EndpointSlices' addresses and ports, and the control-plane Nodes' IPs.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use gatehouse_agent_common::MatchedBy;
use k8s_openapi::api::{core::v1::Node, core::v1::Service, discovery::v1::EndpointSlice};

use super::reflector::Change;
use crate::endpoints::Entry;

#[derive(Debug, Default)]
pub struct ApiServerSources {
    services: BTreeMap<String, Service>,
    slices: BTreeMap<String, EndpointSlice>,
    nodes: BTreeMap<String, Node>,
}

fn name_of(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    m.name.clone().unwrap_or_default()
}

fn apply<T>(map: &mut BTreeMap<String, T>, change: Change<T>, name: fn(&T) -> String) {
    match change {
        Change::Reset(all) => *map = all.into_iter().map(|o| (name(&o), o)).collect(),
        Change::Apply(o) => {
            map.insert(name(&o), o);
        }
        Change::Delete(o) => {
            map.remove(&name(&o));
        }
    }
}

impl ApiServerSources {
    pub fn apply_services(&mut self, c: Change<Service>) {
        apply(&mut self.services, c, |o| name_of(&o.metadata));
    }

    pub fn apply_slices(&mut self, c: Change<EndpointSlice>) {
        apply(&mut self.slices, c, |o| name_of(&o.metadata));
    }

    pub fn apply_nodes(&mut self, c: Change<Node>) {
        apply(&mut self.nodes, c, |o| name_of(&o.metadata));
    }

    /// The entries these objects name; control-plane nodes count on `node_port`.
    pub fn entries(&self, node_port: u16) -> BTreeSet<Entry> {
        let mut out = BTreeSet::new();
        let mut add = |ip: &str, port: i32, kind: MatchedBy| {
            let (Ok(addr), Ok(port)) = (ip.parse::<IpAddr>(), u16::try_from(port)) else {
                return;
            };
            if port == 0 {
                return;
            }
            out.insert(Entry {
                addr,
                prefix: if addr.is_ipv4() { 32 } else { 128 },
                port,
                matched_by: kind as u8,
            });
        };
        for svc in self.services.values() {
            let Some(spec) = &svc.spec else { continue };
            let ips: BTreeSet<&str> = spec
                .cluster_ips
                .iter()
                .flatten()
                .chain(spec.cluster_ip.iter())
                .map(String::as_str)
                .filter(|ip| *ip != "None")
                .collect();
            for ip in ips {
                for p in spec.ports.iter().flatten() {
                    add(ip, p.port, MatchedBy::ServiceVip);
                }
            }
        }
        for slice in self.slices.values() {
            for ep in &slice.endpoints {
                for ip in &ep.addresses {
                    for p in slice.ports.iter().flatten() {
                        add(ip, p.port.unwrap_or(0), MatchedBy::EndpointIp);
                    }
                }
            }
        }
        for node in self.nodes.values() {
            for a in node
                .status
                .as_ref()
                .and_then(|s| s.addresses.as_ref())
                .into_iter()
                .flatten()
            {
                if a.type_ == "InternalIP" || a.type_ == "ExternalIP" {
                    add(&a.address, i32::from(node_port), MatchedBy::NodeIp);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn service_slices_and_nodes_become_tagged_entries() {
        let mut s = ApiServerSources::default();
        s.apply_services(Change::Reset(vec![
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "kubernetes", "namespace": "default"},
                "spec": {"clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1", "fd00::1"],
                    "ports": [{"port": 443}]}
            }))
            .unwrap(),
        ]));
        s.apply_slices(Change::Apply(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "kubernetes", "namespace": "default"},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["192.0.2.10"]}, {"addresses": ["192.0.2.11"]}],
                "ports": [{"name": "https", "port": 6443}]
            }))
            .unwrap(),
        ));
        s.apply_nodes(Change::Apply(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "cp-1"},
                "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.20"},
                    {"type": "Hostname", "address": "cp-1"}]}
            }))
            .unwrap(),
        ));
        let got: Vec<String> = s.entries(6443).iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "10.96.0.1/32:443 service_vip",
                "192.0.2.10/32:6443 endpoint_ip",
                "192.0.2.11/32:6443 endpoint_ip",
                "192.0.2.20/32:6443 node_ip",
                "[fd00::1/128]:443 service_vip",
            ]
        );
    }
}
