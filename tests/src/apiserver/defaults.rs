//! Per-kind defaulting and validation, so stored objects look like a real cluster's:
//! pods are scheduled and Running, services get cluster IPs, secrets' `stringData` is encoded.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::resources::ResourceDef;
use super::status::{ApiError, ApiResult};
use super::store::{Store, meta_mut, now_rfc3339};

/// The node every test pod runs on.
pub const NODE_NAME: &str = "gatehouse-test-node";

fn obj_mut<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !v.is_object() {
        *v = json!({});
    }
    let Value::Object(m) = v else {
        unreachable!("just made an object")
    };
    let e = m.entry(key).or_insert_with(|| json!({}));
    if !e.is_object() {
        *e = json!({});
    }
    match e {
        Value::Object(o) => o,
        _ => unreachable!("just made an object"),
    }
}

fn default(m: &mut Map<String, Value>, k: &str, v: Value) {
    m.entry(k).or_insert(v);
}

fn default_pod_spec(spec: &mut Map<String, Value>) {
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "securityContext", json!({}));
    default(spec, "enableServiceLinks", json!(true));
    default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    default(spec, "priority", json!(0));
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                let image = c.get("image").and_then(Value::as_str).unwrap_or("");
                let latest = !image.contains(':') || image.ends_with(":latest");
                default(
                    c,
                    "imagePullPolicy",
                    json!(if latest { "Always" } else { "IfNotPresent" }),
                );
                default(c, "terminationMessagePath", json!("/dev/termination-log"));
                default(c, "terminationMessagePolicy", json!("File"));
                default(c, "resources", json!({}));
                if let Some(Value::Array(ports)) = c.get_mut("ports") {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        default(p, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

/// Fills server-side defaults on create (and on update for spec defaults).
pub fn apply_defaults(r: &ResourceDef, obj: &mut Value, store: &Store, creating: bool) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), json!(r.api_version()));
        m.insert("kind".into(), json!(r.kind));
    }
    match (r.group, r.kind) {
        ("", "Namespace") => {
            let meta = meta_mut(obj);
            let labels = meta.entry("labels").or_insert_with(|| json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
            default(obj_mut(obj, "spec"), "finalizers", json!(["kubernetes"]));
            default(obj_mut(obj, "status"), "phase", json!("Active"));
        }
        ("", "Secret") => {
            let m = obj.as_object_mut().map(std::mem::take).unwrap_or_default();
            let mut m = m;
            default(&mut m, "type", json!("Opaque"));
            if let Some(Value::Object(sd)) = m.remove("stringData") {
                let data = m.entry("data").or_insert_with(|| json!({}));
                if let Some(d) = data.as_object_mut() {
                    for (k, v) in sd {
                        let s = v.as_str().unwrap_or_default();
                        d.insert(
                            k,
                            json!(base64::engine::general_purpose::STANDARD.encode(s)),
                        );
                    }
                }
            }
            *obj = Value::Object(m);
        }
        ("", "Service") => {
            let spec = obj_mut(obj, "spec");
            default(spec, "type", json!("ClusterIP"));
            default(spec, "sessionAffinity", json!("None"));
            if spec.get("type").and_then(Value::as_str) != Some("ExternalName") {
                if !spec.contains_key("clusterIP") {
                    spec.insert("clusterIP".into(), json!(store.allocate_cluster_ip()));
                }
                if let Some(ip) = spec.get("clusterIP").cloned() {
                    default(spec, "clusterIPs", json!([ip]));
                }
                default(spec, "ipFamilies", json!(["IPv4"]));
                default(spec, "ipFamilyPolicy", json!("SingleStack"));
                default(spec, "internalTrafficPolicy", json!("Cluster"));
            }
            if let Some(Value::Array(ports)) = spec.get_mut("ports") {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    default(p, "protocol", json!("TCP"));
                    if let Some(port) = p.get("port").cloned() {
                        default(p, "targetPort", port);
                    }
                }
            }
            default(obj_mut(obj, "status"), "loadBalancer", json!({}));
        }
        ("", "Pod") => {
            let spec = obj_mut(obj, "spec");
            default_pod_spec(spec);
            default(spec, "nodeName", json!(NODE_NAME));
            default(spec, "serviceAccountName", json!("default"));
            default(spec, "serviceAccount", json!("default"));
            let containers: Vec<Value> = spec
                .get("containers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if creating && obj.get("status").is_none_or(|s| s.get("phase").is_none()) {
                let now = now_rfc3339();
                let statuses: Vec<Value> = containers
                    .iter()
                    .map(|c| {
                        let image = c.get("image").cloned().unwrap_or(json!(""));
                        json!({
                            "name": c.get("name").cloned().unwrap_or(json!("")),
                            "image": image,
                            "imageID": "",
                            "containerID": format!("containerd://{}", uuid::Uuid::new_v4().simple()),
                            "ready": true,
                            "started": true,
                            "restartCount": 0,
                            "state": {"running": {"startedAt": now}},
                            "lastState": {}
                        })
                    })
                    .collect();
                let ip_tail = store.current_rv() % 250 + 2;
                let cond = |t: &str| json!({"type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
                let status = json!({
                    "phase": "Running",
                    "conditions": [cond("PodReadyToStartContainers"), cond("Initialized"), cond("Ready"), cond("ContainersReady"), cond("PodScheduled")],
                    "hostIP": "10.0.0.10",
                    "hostIPs": [{"ip": "10.0.0.10"}],
                    "podIP": format!("10.244.0.{ip_tail}"),
                    "podIPs": [{"ip": format!("10.244.0.{ip_tail}")}],
                    "startTime": now,
                    "containerStatuses": statuses,
                    "qosClass": "BestEffort"
                });
                if let Some(m) = obj.as_object_mut() {
                    m.insert("status".into(), status);
                }
            }
        }
        ("apps", "Deployment") => {
            let spec = obj_mut(obj, "spec");
            default(spec, "replicas", json!(1));
            default(spec, "revisionHistoryLimit", json!(10));
            default(spec, "progressDeadlineSeconds", json!(600));
            default(
                spec,
                "strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
            );
            let replicas = spec.get("replicas").cloned().unwrap_or(json!(1));
            if let Some(t) = spec.get_mut("template") {
                default_pod_spec(obj_mut(t, "spec"));
            }
            // No controllers run here: report the desired state as reached.
            let generation = obj
                .pointer("/metadata/generation")
                .cloned()
                .unwrap_or(json!(1));
            if let Some(m) = obj.as_object_mut() {
                m.insert(
                    "status".into(),
                    json!({
                        "observedGeneration": generation,
                        "replicas": replicas,
                        "updatedReplicas": replicas,
                        "readyReplicas": replicas,
                        "availableReplicas": replicas,
                        "conditions": [
                            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."},
                            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": format!("ReplicaSet \"{name}\" has successfully progressed.")}
                        ]
                    }),
                );
            }
        }
        _ => {}
    }
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

pub(crate) fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && !s.contains('.') && is_dns_subdomain(s)
}

/// Validates an object about to be stored; errors are 422 Invalid like the apiserver's.
pub fn validate(r: &ResourceDef, name: &str, obj: &Value) -> ApiResult<()> {
    let mut causes: Vec<(String, String)> = Vec::new();
    let label_kind = matches!(r.kind, "Namespace" | "Service");
    if name.is_empty() {
        causes.push((
            "metadata.name".into(),
            "Required value: name or generateName is required".into(),
        ));
    } else if label_kind && !is_dns_label(name) {
        causes.push((
            "metadata.name".into(),
            format!("Invalid value: \"{name}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"),
        ));
    } else if !label_kind && !is_dns_subdomain(name) {
        causes.push((
            "metadata.name".into(),
            format!("Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"),
        ));
    }
    match r.kind {
        "Pod"
            if obj
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty) =>
        {
            causes.push(("spec.containers".into(), "Required value".into()));
        }
        "Deployment" => {
            if obj.pointer("/spec/selector").is_none() {
                causes.push(("spec.selector".into(), "Required value".into()));
            } else if let (Some(Value::Object(sel)), tl) = (
                obj.pointer("/spec/selector/matchLabels"),
                obj.pointer("/spec/template/metadata/labels"),
            ) {
                let ok = sel
                    .iter()
                    .all(|(k, v)| tl.and_then(|l| l.get(k)) == Some(v));
                if !ok {
                    causes.push((
                        "spec.template.metadata.labels".into(),
                        format!(
                            "Invalid value: {}: `selector` does not match template `labels`",
                            tl.cloned().unwrap_or(Value::Null)
                        ),
                    ));
                }
            }
        }
        "Secret" => {
            if let Some(Value::Object(d)) = obj.get("data") {
                for (k, v) in d {
                    let ok = v.as_str().is_some_and(|s| {
                        base64::engine::general_purpose::STANDARD.decode(s).is_ok()
                    });
                    if !ok {
                        causes.push((
                            format!("data[{k}]"),
                            "Invalid value: illegal base64 data".into(),
                        ));
                    }
                }
            }
        }
        _ => {}
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(r.group, r.kind, name, &causes))
    }
}
