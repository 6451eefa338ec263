//! The objects a fresh server holds: the usual system namespaces, the `kubernetes` service,
//! and a small `payments` application (deployment, pods, service, configmap, secret).

use serde_json::{Value, json};

use super::State;
use super::handler;

/// The default seed: namespaces `default`, `kube-system`, `kube-public`, `kube-node-lease`,
/// `payments`; `payments` holds configmap `app-config`, secret `db-credentials`, deployment
/// and service `payments-api`, pods `payments-api-7c9d8b5f6d-2xk4p` and `-9lq7z`.
pub fn seed_objects() -> Vec<Value> {
    let mut v = Vec::new();
    for ns in [
        "default",
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "payments",
    ] {
        v.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
    }
    v.push(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}
    }));
    v.push(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "app-config", "namespace": "payments", "labels": {"app": "payments-api"}},
        "data": {"LOG_LEVEL": "info", "PAYMENT_PROVIDER": "stripe"}
    }));
    v.push(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db-credentials", "namespace": "payments", "labels": {"app": "payments-api"}},
        "type": "Opaque",
        "stringData": {"username": "payments", "password": "s3cr3t-p4ss"}
    }));
    let labels = json!({"app": "payments-api", "pod-template-hash": "7c9d8b5f6d"});
    let container = json!({"name": "api", "image": "ghcr.io/example/payments-api:1.4.2", "ports": [{"containerPort": 8080, "name": "http"}]});
    v.push(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "payments-api", "namespace": "payments", "labels": {"app": "payments-api"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "payments-api"}},
            "template": {"metadata": {"labels": {"app": "payments-api"}}, "spec": {"containers": [container.clone()]}}
        }
    }));
    for suffix in ["2xk4p", "9lq7z"] {
        v.push(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("payments-api-7c9d8b5f6d-{suffix}"), "namespace": "payments", "labels": labels},
            "spec": {"containers": [container.clone()]}
        }));
    }
    v.push(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "payments-api", "namespace": "payments", "labels": {"app": "payments-api"}},
        "spec": {"selector": {"app": "payments-api"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    }));
    v.push(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "coredns-5d78c9869d-q8w2n", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
        "spec": {"containers": [{"name": "coredns", "image": "registry.k8s.io/coredns/coredns:v1.12.0"}]}
    }));
    v
}

pub(crate) fn seed(state: &State) -> anyhow::Result<()> {
    let mut all = if state.opts.seed_defaults {
        seed_objects()
    } else {
        // Namespaced objects need their namespace; `default` always exists.
        vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})]
    };
    all.extend(state.opts.objects.iter().cloned());
    for obj in all {
        handler::create_internal(state, obj)
            .map_err(|e| anyhow::anyhow!("seeding an object: {e}"))?;
    }
    Ok(())
}
