//! Builds the policy's request shape from a parsed API request and its authenticated caller.
use crate::auth::Identity;
use crate::transcript::request_info::{query_value, query_values};
use gatehouse_policy::{Exec, Request};
use gatehouse_proto::v1::KubeRequest;

/// The caller (as authenticated, before identity mapping), its address and the request.
pub fn request_of(kube: &KubeRequest, identity: &Identity, source_ip: &str) -> Request {
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
        time: chrono::Utc::now(),
    }
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
        let r = request_of(&kube, &alice(), "10.0.0.7");
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
    fn deleting_a_namespace() {
        let kube = parse(&http::Method::DELETE, "/api/v1/namespaces/payments", None);
        let r = request_of(&kube, &alice(), "127.0.0.1");
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
