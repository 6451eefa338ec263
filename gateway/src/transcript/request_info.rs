//! Parses a Kubernetes API request line into verb, group, version, resource, subresource,
//! namespace and name, following the apiserver's own RequestInfo rules.
use gatehouse_proto::v1::KubeRequest;

/// Parses `method` and the request URI's path and query.
pub fn parse(method: &http::Method, path: &str, query: Option<&str>) -> KubeRequest {
    let query_s = query.unwrap_or_default().to_string();
    let mut req = KubeRequest {
        method: method.as_str().to_string(),
        path: path.to_string(),
        query: query_s.clone(),
        ..Default::default()
    };
    let parts: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    let rest: &[&str] = match parts.as_slice() {
        ["api", version, rest @ ..] if !rest.is_empty() => {
            req.api_version = (*version).to_string();
            rest
        }
        ["apis", group, version, rest @ ..] if !rest.is_empty() => {
            req.api_group = (*group).to_string();
            req.api_version = (*version).to_string();
            rest
        }
        _ => {
            req.non_resource = true;
            req.verb = method.as_str().to_ascii_lowercase();
            return req;
        }
    };
    // The deprecated `/watch/` path prefix means watch, whatever the query says.
    let (legacy_watch, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    let rest: &[&str] = match rest {
        // `/namespaces/{ns}/{resource}…`, but `/namespaces/{ns}` alone (or with a
        // subresource such as `finalize`) is the namespace object itself.
        ["namespaces", ns, resource, tail @ ..]
            if *resource != "status" && *resource != "finalize" =>
        {
            req.namespace = (*ns).to_string();
            req.resource = (*resource).to_string();
            tail
        }
        [resource, tail @ ..] => {
            req.resource = (*resource).to_string();
            tail
        }
        [] => &[],
    };
    if let [name, tail @ ..] = rest {
        req.name = (*name).to_string();
        if let [sub, ..] = tail {
            req.subresource = (*sub).to_string();
        }
    }
    if req.resource == "namespaces" && !req.name.is_empty() && req.namespace.is_empty() {
        req.namespace = req.name.clone();
    }
    let watch = legacy_watch || query_flag(&query_s, "watch");
    req.verb = match *method {
        http::Method::GET | http::Method::HEAD => {
            if watch {
                "watch"
            } else if req.name.is_empty() {
                "list"
            } else {
                "get"
            }
        }
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => {
            if req.name.is_empty() {
                "deletecollection"
            } else {
                "delete"
            }
        }
        _ => "unknown",
    }
    .to_string();
    req
}

/// True when the query parameter is present and truthy (`watch=1`, `watch=true`, `watch`).
pub fn query_flag(query: &str, key: &str) -> bool {
    query_values(query, key)
        .into_iter()
        .any(|v| v.is_empty() || v == "1" || v.eq_ignore_ascii_case("true"))
}

/// Every value of `key` in the query, percent-decoded, in order.
pub fn query_values(query: &str, key: &str) -> Vec<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// The first value of `key`, if any.
pub fn query_value(query: &str, key: &str) -> Option<String> {
    query_values(query, key).into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn p(m: Method, uri: &str) -> KubeRequest {
        let (path, q) = uri
            .split_once('?')
            .map_or((uri, None), |(a, b)| (a, Some(b)));
        parse(&m, path, q)
    }

    #[test]
    fn core_and_group_resources() {
        let r = p(
            Method::GET,
            "/api/v1/namespaces/payments/configmaps/app-config",
        );
        assert_eq!(
            (
                r.verb.as_str(),
                r.api_group.as_str(),
                r.api_version.as_str()
            ),
            ("get", "", "v1")
        );
        assert_eq!(
            (r.resource.as_str(), r.namespace.as_str(), r.name.as_str()),
            ("configmaps", "payments", "app-config")
        );
        let r = p(
            Method::GET,
            "/apis/apps/v1/namespaces/p/deployments?labelSelector=a%3Db",
        );
        assert_eq!((r.verb.as_str(), r.api_group.as_str()), ("list", "apps"));
        assert_eq!(r.query, "labelSelector=a%3Db");
        let r = p(Method::GET, "/api/v1/pods?watch=1");
        assert_eq!((r.verb.as_str(), r.namespace.as_str()), ("watch", ""));
        let r = p(Method::GET, "/api/v1/watch/namespaces/p/pods");
        assert_eq!(
            (r.verb.as_str(), r.resource.as_str(), r.namespace.as_str()),
            ("watch", "pods", "p")
        );
    }

    #[test]
    fn subresources_and_namespaces() {
        let r = p(
            Method::GET,
            "/api/v1/namespaces/payments/pods/checkout-7b9/log?tailLines=200",
        );
        assert_eq!(
            (r.subresource.as_str(), r.name.as_str()),
            ("log", "checkout-7b9")
        );
        let r = p(Method::DELETE, "/api/v1/namespaces/payments");
        assert_eq!(
            (
                r.verb.as_str(),
                r.resource.as_str(),
                r.name.as_str(),
                r.namespace.as_str()
            ),
            ("delete", "namespaces", "payments", "payments")
        );
        let r = p(Method::PUT, "/api/v1/namespaces/payments/finalize");
        assert_eq!(
            (r.resource.as_str(), r.subresource.as_str()),
            ("namespaces", "finalize")
        );
        let r = p(Method::DELETE, "/api/v1/namespaces/p/configmaps");
        assert_eq!(r.verb, "deletecollection");
    }

    #[test]
    fn non_resource_urls() {
        for path in [
            "/version",
            "/api",
            "/apis",
            "/apis/apps",
            "/openapi/v3",
            "/",
        ] {
            let r = p(Method::GET, path);
            assert!(r.non_resource, "{path}");
            assert_eq!(r.verb, "get");
        }
    }
}
