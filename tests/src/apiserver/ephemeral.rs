//! `pods/<name>/ephemeralcontainers` (what `kubectl debug` patches) and the kubelet's part: only
//! `spec.ephemeralContainers` may change, existing ones never; a new one is reported Waiting,
//! then Running; when its process ends it is Terminated and never restarted.
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::State;
use super::resources::ResourceDef;
use super::status::{ApiError, ApiResult};
use super::store::{Write, now_rfc3339};

/// How long the "kubelet" takes to start a new ephemeral container: long enough that kubectl
/// sees it Waiting and has to watch for Running, as against a real node.
const START_DELAY: Duration = Duration::from_millis(300);

/// Fields the API server refuses on an ephemeral container (`EphemeralContainerCommon`).
const FORBIDDEN: &[&str] = &[
    "ports",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "resources",
];

fn names(pod: &Value, list: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{list}"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn ephemeral(pod: &Value) -> Vec<Value> {
    pod.pointer("/spec/ephemeralContainers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The update as the ephemeralcontainers strategy makes it: the current pod with only the
/// requested `spec.ephemeralContainers`, validated, and a Waiting status for each new one.
/// Returns the names of the new ephemeral containers.
pub(crate) fn update(
    r: &ResourceDef,
    name: &str,
    cur: &Value,
    requested: &mut Value,
) -> ApiResult<Vec<String>> {
    let old = ephemeral(cur);
    let new = ephemeral(requested);
    let mut causes: Vec<(String, String)> = Vec::new();
    for (i, o) in old.iter().enumerate() {
        let oname = o.get("name").and_then(Value::as_str).unwrap_or_default();
        match new
            .iter()
            .find(|n| n.get("name").and_then(Value::as_str) == Some(oname))
        {
            None => causes.push((
                "spec.ephemeralContainers".into(),
                format!("Forbidden: existing ephemeral containers \"{oname}\" may not be removed"),
            )),
            Some(n) if n != o => causes.push((
                format!("spec.ephemeralContainers[{i}]"),
                format!("Forbidden: existing ephemeral containers \"{oname}\" may not be changed"),
            )),
            Some(_) => {}
        }
    }
    let regular: Vec<String> = names(cur, "containers")
        .into_iter()
        .chain(names(cur, "initContainers"))
        .collect();
    let mut seen: Vec<String> = regular.clone();
    let mut added = Vec::new();
    for (i, c) in new.iter().enumerate() {
        let path = format!("spec.ephemeralContainers[{i}]");
        let cname = c.get("name").and_then(Value::as_str).unwrap_or_default();
        let is_old = old.iter().any(|o| o.get("name") == c.get("name"));
        if cname.is_empty() {
            causes.push((format!("{path}.name"), "Required value".into()));
        } else if !super::defaults::is_dns_label(cname) {
            causes.push((
                format!("{path}.name"),
                format!("Invalid value: \"{cname}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"),
            ));
        } else if seen.iter().any(|s| s == cname) {
            causes.push((
                format!("{path}.name"),
                format!("Duplicate value: \"{cname}\""),
            ));
        }
        seen.push(cname.to_string());
        if is_old {
            continue;
        }
        if c.get("image")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            causes.push((format!("{path}.image"), "Required value".into()));
        }
        if let Some(t) = c.get("targetContainerName").and_then(Value::as_str)
            && !regular.iter().any(|n| n == t)
        {
            causes.push((
                format!("{path}.targetContainerName"),
                format!("Not found: \"{t}\""),
            ));
        }
        for f in FORBIDDEN {
            // kubectl sends `"resources": {}`; only a set value is refused.
            let set = c
                .get(*f)
                .is_some_and(|v| !v.is_null() && v.as_object().is_none_or(|o| !o.is_empty()));
            if set {
                causes.push((
                    format!("{path}.{f}"),
                    "Forbidden: cannot be set for an Ephemeral Container".into(),
                ));
            }
        }
        added.push(cname.to_string());
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid(r.group, r.kind, name, &causes));
    }
    let mut next = cur.clone();
    next["spec"]["ephemeralContainers"] = Value::Array(new);
    if let Some(rv) = requested.pointer("/metadata/resourceVersion") {
        next["metadata"]["resourceVersion"] = rv.clone();
    }
    let mut statuses = cur
        .pointer("/status/ephemeralContainerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for n in &added {
        let image = next["spec"]["ephemeralContainers"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == json!(n)))
            .map(|c| c["image"].clone())
            .unwrap_or(json!(""));
        statuses.push(json!({
            "name": n,
            "image": image,
            "imageID": "",
            "ready": false,
            "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}},
            "lastState": {}
        }));
    }
    if !statuses.is_empty() {
        next["status"]["ephemeralContainerStatuses"] = Value::Array(statuses);
    }
    *requested = next;
    Ok(added)
}

/// Replaces the named ephemeral container's state in the stored pod.
fn set_state(
    state: &State,
    r: &'static ResourceDef,
    ns: &str,
    pod: &str,
    container: &str,
    f: impl FnOnce(&mut Value),
) -> ApiResult<()> {
    state.store.write(r, ns, pod, false, |cur| {
        let cur = cur.ok_or_else(|| ApiError::not_found(r.group, r.plural, pod))?;
        let mut next = cur.clone();
        let status = next
            .pointer_mut("/status/ephemeralContainerStatuses")
            .and_then(Value::as_array_mut)
            .and_then(|a| a.iter_mut().find(|s| s["name"] == json!(container)))
            .ok_or_else(|| {
                ApiError::internal(format!("no status for ephemeral container {container}"))
            })?;
        f(status);
        Ok(Write::Update(next))
    })?;
    Ok(())
}

/// The kubelet starting new ephemeral containers: Running after `START_DELAY`.
pub(crate) fn start(
    state: Arc<State>,
    r: &'static ResourceDef,
    ns: String,
    pod: String,
    added: Vec<String>,
) {
    if added.is_empty() {
        return;
    }
    tokio::spawn(async move {
        tokio::time::sleep(START_DELAY).await;
        for c in added {
            let res = set_state(&state, r, &ns, &pod, &c, |s| {
                s["containerID"] = json!(format!("containerd://{}", uuid::Uuid::new_v4().simple()));
                s["started"] = json!(true);
                s["state"] = json!({"running": {"startedAt": now_rfc3339()}});
            });
            if let Err(e) = res {
                tracing::debug!(pod = %pod, container = %c, error = %e.message, "starting ephemeral container");
            }
        }
    });
}

/// Whether `container` is one of the pod's ephemeral containers.
pub(crate) fn is_ephemeral(pod: &Value, container: &str) -> bool {
    !container.is_empty()
        && names(pod, "ephemeralContainers")
            .iter()
            .any(|n| n == container)
}

/// Whether the named ephemeral container has run and ended (they are never restarted).
pub(crate) fn terminated(pod: &Value, container: &str) -> bool {
    pod.pointer("/status/ephemeralContainerStatuses")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|s| s["name"] == json!(container)))
        .is_some_and(|s| s.pointer("/state/terminated").is_some())
}

/// The ephemeral container's process ended with `exit_code`: record it Terminated.
pub(crate) fn exited(state: &State, ns: &str, pod: &str, container: &str, exit_code: i64) {
    let Some(r) = super::resources::find("", "v1", "pods") else {
        return;
    };
    let res = set_state(state, r, ns, pod, container, |s| {
        let started = s
            .pointer("/state/running/startedAt")
            .cloned()
            .unwrap_or_else(|| json!(now_rfc3339()));
        s["started"] = json!(false);
        s["state"] = json!({"terminated": {
            "exitCode": exit_code,
            "reason": if exit_code == 0 { "Completed" } else { "Error" },
            "startedAt": started,
            "finishedAt": now_rfc3339(),
            "containerID": s["containerID"].clone(),
        }});
    });
    if let Err(e) = res {
        tracing::debug!(pod, container, error = %e.message, "ending ephemeral container");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods() -> &'static ResourceDef {
        super::super::resources::find("", "v1", "pods").unwrap()
    }

    fn pod(ephemeral: Value) -> Value {
        json!({
            "metadata": {"name": "p", "namespace": "n", "resourceVersion": "7"},
            "spec": {
                "containers": [{"name": "app", "image": "busybox"}],
                "ephemeralContainers": ephemeral,
            },
            "status": {"phase": "Running"},
        })
    }

    fn causes(e: ApiError) -> Vec<String> {
        assert_eq!(e.code, 422, "{}", e.message);
        e.details.unwrap()["causes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{}: {}",
                    c["field"].as_str().unwrap(),
                    c["message"].as_str().unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn a_new_container_is_added_waiting_and_nothing_else_changes() {
        let cur = pod(json!([]));
        let mut req = pod(
            json!([{"name": "dbg", "image": "busybox", "targetContainerName": "app", "resources": {}}]),
        );
        req["spec"]["containers"][0]["image"] = json!("nginx");
        req["metadata"]["labels"] = json!({"sneaky": "yes"});
        let added = update(pods(), "p", &cur, &mut req).unwrap();
        assert_eq!(added, vec!["dbg".to_string()]);
        assert_eq!(req["spec"]["containers"][0]["image"], "busybox");
        assert!(req["metadata"].get("labels").is_none());
        assert_eq!(req["spec"]["ephemeralContainers"][0]["name"], "dbg");
        let st = &req["status"]["ephemeralContainerStatuses"][0];
        assert_eq!(st["name"], "dbg");
        assert_eq!(st["state"]["waiting"]["reason"], "ContainerCreating");
        assert_eq!(req["status"]["phase"], "Running");
    }

    #[test]
    fn existing_ephemeral_containers_may_not_change_or_go() {
        let cur = pod(json!([{"name": "dbg", "image": "busybox"}]));
        let mut changed = pod(json!([{"name": "dbg", "image": "alpine"}]));
        assert_eq!(
            causes(update(pods(), "p", &cur, &mut changed).unwrap_err()),
            [
                "spec.ephemeralContainers[0]: Forbidden: existing ephemeral containers \"dbg\" may not be changed"
            ]
        );
        let mut removed = pod(json!([]));
        assert_eq!(
            causes(update(pods(), "p", &cur, &mut removed).unwrap_err()),
            [
                "spec.ephemeralContainers: Forbidden: existing ephemeral containers \"dbg\" may not be removed"
            ]
        );
    }

    #[test]
    fn new_containers_are_validated() {
        let cur = pod(json!([]));
        let mut req = pod(json!([
            {"name": "app", "image": "busybox"},
            {"name": "x", "targetContainerName": "nope", "ports": [{"containerPort": 80}]},
        ]));
        assert_eq!(
            causes(update(pods(), "p", &cur, &mut req).unwrap_err()),
            [
                "spec.ephemeralContainers[0].name: Duplicate value: \"app\"",
                "spec.ephemeralContainers[1].image: Required value",
                "spec.ephemeralContainers[1].targetContainerName: Not found: \"nope\"",
                "spec.ephemeralContainers[1].ports: Forbidden: cannot be set for an Ephemeral Container",
            ]
        );
    }

    #[test]
    fn terminated_and_membership_read_the_pod() {
        let mut p = pod(json!([{"name": "dbg", "image": "busybox"}]));
        assert!(is_ephemeral(&p, "dbg"));
        assert!(!is_ephemeral(&p, "app"));
        assert!(!terminated(&p, "dbg"));
        p["status"]["ephemeralContainerStatuses"] =
            json!([{"name": "dbg", "state": {"terminated": {"exitCode": 0}}}]);
        assert!(terminated(&p, "dbg"));
    }
}
