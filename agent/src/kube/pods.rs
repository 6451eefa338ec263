//! The pods on this node, from the node-scoped pod watch: who a pod cgroup belongs to
//! (namespace, name, ServiceAccount, workload, containers), kept for a while after deletion so
//! alerts for connects made just before a pod went away still resolve.
use std::collections::{BTreeMap, HashMap, VecDeque};

use k8s_openapi::api::core::v1::Pod;

use super::reflector::Change;

/// Deleted pods remembered for late alerts.
const DELETED_CAP: usize = 1024;

/// What an alert says about a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub service_account: String,
    /// `Kind/name` of the controller, with a ReplicaSet folded into its Deployment.
    pub workload: String,
    pub host_network: bool,
    /// Container id (the 64-hex runtime id) → container name.
    pub containers: HashMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

impl PodInfo {
    pub fn from_pod(pod: &Pod) -> Option<Self> {
        let meta = &pod.metadata;
        let uid = meta.uid.clone()?;
        let spec = pod.spec.as_ref();
        let labels = meta.labels.clone().unwrap_or_default();
        let workload = meta
            .owner_references
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|o| o.controller == Some(true))
            .map(|o| {
                // Deployment pods are owned by a ReplicaSet named <deployment>-<pod-template-hash>.
                let hash = labels.get("pod-template-hash");
                match (o.kind.as_str(), hash) {
                    ("ReplicaSet", Some(h)) if o.name.ends_with(&format!("-{h}")) => {
                        format!("Deployment/{}", &o.name[..o.name.len() - h.len() - 1])
                    }
                    _ => format!("{}/{}", o.kind, o.name),
                }
            })
            .unwrap_or_default();
        let mut containers = HashMap::new();
        if let Some(status) = &pod.status {
            for cs in status
                .container_statuses
                .iter()
                .flatten()
                .chain(status.init_container_statuses.iter().flatten())
                .chain(status.ephemeral_container_statuses.iter().flatten())
            {
                // "containerd://<id>", "docker://<id>", "cri-o://<id>".
                if let Some(id) = cs.container_id.as_deref() {
                    let id = id.rsplit("://").next().unwrap_or(id);
                    containers.insert(id.to_string(), cs.name.clone());
                }
            }
        }
        Some(Self {
            uid,
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            service_account: spec
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".into()),
            workload,
            host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
            containers,
            labels,
        })
    }

    /// The username the API server knows this pod's ServiceAccount token by: the key the
    /// gateway records, so the collector can ask whether this identity ever went through it.
    pub fn identity(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account
        )
    }
}

/// Live pods by uid, plus a bounded memory of deleted ones.
#[derive(Debug, Default)]
pub struct Pods {
    live: HashMap<String, PodInfo>,
    deleted: HashMap<String, PodInfo>,
    deleted_order: VecDeque<String>,
}

impl Pods {
    pub fn apply(&mut self, change: Change<Pod>) {
        match change {
            Change::Reset(all) => {
                let fresh: HashMap<String, PodInfo> = all
                    .iter()
                    .filter_map(PodInfo::from_pod)
                    .map(|p| (p.uid.clone(), p))
                    .collect();
                let gone: Vec<PodInfo> = self
                    .live
                    .drain()
                    .filter(|(uid, _)| !fresh.contains_key(uid))
                    .map(|(_, p)| p)
                    .collect();
                for p in gone {
                    self.remember_deleted(p);
                }
                self.live = fresh;
            }
            Change::Apply(pod) => {
                if let Some(p) = PodInfo::from_pod(&pod) {
                    self.live.insert(p.uid.clone(), p);
                }
            }
            Change::Delete(pod) => {
                if let Some(uid) = pod.metadata.uid.as_deref() {
                    let p = self.live.remove(uid).or_else(|| PodInfo::from_pod(&pod));
                    if let Some(p) = p {
                        self.remember_deleted(p);
                    }
                }
            }
        }
    }

    fn remember_deleted(&mut self, p: PodInfo) {
        self.deleted_order.push_back(p.uid.clone());
        self.deleted.insert(p.uid.clone(), p);
        while self.deleted_order.len() > DELETED_CAP {
            if let Some(old) = self.deleted_order.pop_front() {
                self.deleted.remove(&old);
            }
        }
    }

    /// A live pod, else a recently deleted one.
    pub fn get(&self, uid: &str) -> Option<&PodInfo> {
        self.live.get(uid).or_else(|| self.deleted.get(uid))
    }

    pub fn live(&self) -> impl Iterator<Item = &PodInfo> {
        self.live.values()
    }

    pub fn live_count(&self) -> usize {
        self.live.len()
    }
}

/// An equality-based label selector (`k=v,k2=v2`, `k` for "has the label").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(Vec<(String, Option<String>)>);

impl std::str::FromStr for Selector {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut reqs = Vec::new();
        for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (k, v) = match term.split_once('=') {
                Some((k, v)) => (k.trim_end_matches('='), Some(v.trim().to_string())),
                None => (term, None),
            };
            let k = k.trim();
            if k.is_empty() || k.contains('!') {
                return Err(format!(
                    "label selector term {term:?}: only KEY=VALUE and KEY are supported"
                ));
            }
            reqs.push((k.to_string(), v));
        }
        if reqs.is_empty() {
            return Err("empty label selector".into());
        }
        Ok(Self(reqs))
    }
}

impl Selector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|(k, v)| match v {
            Some(v) => labels.get(k) == Some(v),
            None => labels.contains_key(k),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn reads_identity_workload_and_containers() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "api-7c9d8b5f6d-2xk4p", "namespace": "payments", "uid": "u1",
                "labels": {"app": "api", "pod-template-hash": "7c9d8b5f6d"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "api-7c9d8b5f6d", "uid": "rs", "controller": true}]},
            "spec": {"serviceAccountName": "payments-api", "hostNetwork": true,
                "containers": [{"name": "api"}]},
            "status": {"containerStatuses": [{"name": "api", "containerID": "containerd://abc",
                "image": "", "imageID": "", "ready": true, "restartCount": 0}]}
        }));
        let info = PodInfo::from_pod(&p).unwrap();
        assert_eq!(info.workload, "Deployment/api");
        assert_eq!(
            info.identity(),
            "system:serviceaccount:payments:payments-api"
        );
        assert!(info.host_network);
        assert_eq!(info.containers.get("abc").map(String::as_str), Some("api"));
    }

    #[test]
    fn deleted_pods_stay_resolvable() {
        let p = pod(serde_json::json!({"metadata": {"name": "a", "namespace": "n", "uid": "u1"}}));
        let mut pods = Pods::default();
        pods.apply(Change::Apply(p.clone()));
        pods.apply(Change::Delete(p));
        assert_eq!(pods.live_count(), 0);
        assert_eq!(pods.get("u1").unwrap().name, "a");
        // A relist that no longer has a pod moves it to the deleted memory too.
        let q = pod(serde_json::json!({"metadata": {"name": "b", "namespace": "n", "uid": "u2"}}));
        pods.apply(Change::Apply(q));
        pods.apply(Change::Reset(Vec::new()));
        assert_eq!(pods.get("u2").unwrap().name, "b");
    }

    #[test]
    fn selectors_match_equality_and_existence() {
        let sel: Selector = "app.kubernetes.io/component=gateway,tier".parse().unwrap();
        let mut labels = BTreeMap::new();
        labels.insert("app.kubernetes.io/component".into(), "gateway".into());
        assert!(!sel.matches(&labels));
        labels.insert("tier".into(), "x".into());
        assert!(sel.matches(&labels));
        assert!("a!=b".parse::<Selector>().is_err());
        assert!("".parse::<Selector>().is_err());
    }
}
