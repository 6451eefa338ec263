//! Builds the policy's request shape from a parsed API request and its authenticated caller.
use crate::auth::Identity;
use crate::transcript::request_info::{query_value, query_values};
use gatehouse_policy::{Exec, Request};
use gatehouse_proto::v1::KubeRequest;

/// The caller (as authenticated, before identity mapping), its address and the request with
/// the captured start of its body (for the labels it sets).
pub fn request_of(
    kube: &KubeRequest,
    identity: &Identity,
    source_ip: &str,
    body: &[u8],
) -> Request {
    // exec carries its container and argv in the query (`command=rm&command=-rf&command=/`).
    let exec = (kube.resource == "pods" && kube.subresource == "exec").then(|| Exec {
        container: query_value(&kube.query, "container").unwrap_or_default(),
        argv: query_values(&kube.query, "command"),
    });
    Request {
        user: identity.username.clone(),
        groups: identity.groups.clone(),
        source: source_ip.to_string(),
        verb: kube.verb.clone(),
        api_group: kube.api_group.clone(),
        resource: kube.resource.clone(),
        subresource: kube.subresource.clone(),
        namespace: kube.namespace.clone(),
        name: kube.name.clone(),
        exec,
        labels: labels_of(kube, body),
        roles: Vec::new(),
        time: chrono::Utc::now(),
    }
}

/// Labels a request carries: `key=value` / `key==value` terms of its `labelSelector`, and the
/// `metadata.labels` of a JSON body (create, update, patch). Protobuf bodies carry none we read.
fn labels_of(kube: &KubeRequest, body: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(sel) = query_value(&kube.query, "labelSelector") {
        for term in sel.split(',') {
            if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('='))
                && !k.ends_with('!')
            {
                out.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
    }
    if body.first() == Some(&b'{')
        && let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(labels) = v
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(|l| l.as_object())
    {
        out.extend(
            labels
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthMethod;
    use crate::transcript::request_info::parse;

    fn alice() -> Identity {
        Identity {
            username: "alice".into(),
            groups: vec!["devs".into()],
            uid: String::new(),
            method: AuthMethod::Oidc,
            issuer: String::new(),
            extra: Default::default(),
        }
    }

    #[test]
    fn exec_argv_and_container_come_from_the_query() {
        let kube = parse(
            &http::Method::POST,
            "/api/v1/namespaces/payments/pods/checkout-1/exec",
            Some("command=rm&command=-rf&command=%2F&container=app&stdin=true"),
        );
        let r = request_of(&kube, &alice(), "10.0.0.7", b"");
        let exec = r.exec.unwrap_or_default();
        assert_eq!(exec.argv, ["rm", "-rf", "/"]);
        assert_eq!(exec.container, "app");
        assert_eq!(
            (r.user.as_str(), r.groups.as_slice(), r.source.as_str()),
            ("alice", &["devs".to_string()][..], "10.0.0.7")
        );
        assert_eq!(
            (r.verb.as_str(), r.subresource.as_str()),
            ("create", "exec")
        );
    }

    #[test]
    fn labels_from_the_selector_and_the_body() {
        let kube = parse(
            &http::Method::GET,
            "/api/v1/namespaces/payments/pods",
            Some("labelSelector=app%3Dweb%2Ctier%21%3Ddb%2Cenv%3D%3Dprod"),
        );
        let r = request_of(&kube, &alice(), "127.0.0.1", b"");
        assert_eq!(
            r.labels,
            [("app".into(), "web".into()), ("env".into(), "prod".into())]
        );
        let kube = parse(
            &http::Method::POST,
            "/api/v1/namespaces/payments/pods",
            None,
        );
        let body = br#"{"metadata":{"name":"x","labels":{"team":"payments"}}}"#;
        let r = request_of(&kube, &alice(), "127.0.0.1", body);
        assert_eq!(r.labels, [("team".into(), "payments".into())]);
    }

    #[test]
    fn deleting_a_namespace() {
        let kube = parse(&http::Method::DELETE, "/api/v1/namespaces/payments", None);
        let r = request_of(&kube, &alice(), "127.0.0.1", b"");
        assert!(r.exec.is_none());
        assert_eq!(
            (
                r.verb.as_str(),
                r.resource.as_str(),
                r.name.as_str(),
                r.namespace.as_str()
            ),
            ("delete", "namespaces", "payments", "payments")
        );
    }
}
