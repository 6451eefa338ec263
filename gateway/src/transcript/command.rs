//! Reconstructs the kubectl command line equivalent to one API request, for transcripts:
//! `GET …/namespaces/payments/configmaps/app-config` → `kubectl get configmap app-config -n payments`.
use super::request_info::{query_flag, query_value, query_values};
use gatehouse_proto::v1::KubeRequest;

/// Cluster-scoped resources: listing them needs no `-A`.
const CLUSTER_SCOPED: &[&str] = &[
    "namespaces",
    "nodes",
    "persistentvolumes",
    "clusterroles",
    "clusterrolebindings",
    "customresourcedefinitions",
    "storageclasses",
    "priorityclasses",
    "apiservices",
    "mutatingwebhookconfigurations",
    "validatingwebhookconfigurations",
    "certificatesigningrequests",
    "csidrivers",
    "csinodes",
    "runtimeclasses",
    "ingressclasses",
    "volumeattachments",
    "tokenreviews",
    "selfsubjectreviews",
    "selfsubjectaccessreviews",
    "selfsubjectrulesreviews",
    "subjectaccessreviews",
];

/// Plural resource names whose singular is not the plural minus "s".
const IRREGULAR: &[(&str, &str)] = &[
    ("endpoints", "endpoints"),
    ("ingresses", "ingress"),
    ("networkpolicies", "networkpolicy"),
    ("podsecuritypolicies", "podsecuritypolicy"),
    ("priorityclasses", "priorityclass"),
    ("storageclasses", "storageclass"),
    ("ingressclasses", "ingressclass"),
    ("runtimeclasses", "runtimeclass"),
    ("leases", "lease"),
    ("poddisruptionbudgets", "poddisruptionbudget"),
];

/// The singular form kubectl users type for a plural resource.
pub fn singular(resource: &str) -> String {
    if let Some((_, s)) = IRREGULAR.iter().find(|(p, _)| *p == resource) {
        return (*s).to_string();
    }
    if let Some(stem) = resource.strip_suffix("ies") {
        return format!("{stem}y");
    }
    if let Some(stem) = resource.strip_suffix("sses") {
        return format!("{stem}ss");
    }
    resource.strip_suffix('s').unwrap_or(resource).to_string()
}

/// The resource as kubectl names it: `deployments.apps` is just `deployment` for built-in
/// groups; other groups keep the qualified form so the line stays unambiguous.
fn resource_arg(req: &KubeRequest, singular_form: bool) -> String {
    let base = if singular_form {
        singular(&req.resource)
    } else {
        req.resource.clone()
    };
    let builtin = req.api_group.is_empty()
        || !req.api_group.contains('.')
        || req.api_group.ends_with(".k8s.io");
    if builtin {
        base
    } else {
        format!("{base}.{}", req.api_group)
    }
}

fn quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if safe {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

fn ns_flag(req: &KubeRequest, out: &mut Vec<String>) {
    if !req.namespace.is_empty() && req.resource != "namespaces" {
        out.push("-n".into());
        out.push(req.namespace.clone());
    } else if req.namespace.is_empty()
        && req.name.is_empty()
        && !CLUSTER_SCOPED.contains(&req.resource.as_str())
    {
        out.push("-A".into());
    }
}

fn selectors(req: &KubeRequest, out: &mut Vec<String>) -> Option<String> {
    if let Some(l) = query_value(&req.query, "labelSelector").filter(|s| !s.is_empty()) {
        out.push("-l".into());
        out.push(l);
    }
    let mut field_name = None;
    if let Some(f) = query_value(&req.query, "fieldSelector").filter(|s| !s.is_empty()) {
        // kubectl turns `get pod x -w` into a watch with fieldSelector=metadata.name=x.
        match f.strip_prefix("metadata.name=") {
            Some(name) if !name.contains(',') => field_name = Some(name.to_string()),
            _ => {
                out.push("--field-selector".into());
                out.push(f);
            }
        }
    }
    field_name
}

/// Builds the command for `req`. `body` is the captured request body (JSON) of type
/// `content_type`, used for the name of created objects and for patch and review contents.
pub fn reconstruct(req: &KubeRequest, content_type: &str, body: &[u8]) -> String {
    let words = if req.non_resource {
        non_resource(req)
    } else if !req.subresource.is_empty() {
        subresource(req, content_type, body)
    } else {
        resource(req, content_type, body)
    };
    words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

fn non_resource(req: &KubeRequest) -> Vec<String> {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/version") => vec!["kubectl".into(), "version".into()],
        _ => {
            let mut uri = req.path.clone();
            if !req.query.is_empty() {
                uri = format!("{uri}?{}", req.query);
            }
            let verb = match req.method.as_str() {
                "GET" => "--raw",
                _ => return vec!["kubectl".into(), "raw".into(), req.method.clone(), uri],
            };
            vec!["kubectl".into(), "get".into(), verb.into(), uri]
        }
    }
}

fn object_name(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let meta = v.get("metadata")?;
    meta.get("name")
        .or_else(|| meta.get("generateName"))
        .and_then(|n| n.as_str())
        .map(str::to_string)
}

fn resource(req: &KubeRequest, content_type: &str, body: &[u8]) -> Vec<String> {
    let mut w: Vec<String> = vec!["kubectl".into()];
    match req.resource.as_str() {
        "selfsubjectreviews" if req.verb == "create" => {
            w.extend(["auth".into(), "whoami".into()]);
            return w;
        }
        "selfsubjectaccessreviews" if req.verb == "create" => {
            w.extend(["auth".into(), "can-i".into()]);
            w.extend(can_i_args(body));
            return w;
        }
        _ => {}
    }
    match req.verb.as_str() {
        "get" => {
            w.extend(["get".into(), resource_arg(req, true), req.name.clone()]);
            ns_flag(req, &mut w);
        }
        "list" | "watch" => {
            w.push("get".into());
            let mut tail = Vec::new();
            let named = selectors(req, &mut tail);
            match named {
                Some(name) => {
                    w.push(resource_arg(req, true));
                    w.push(name);
                }
                None => w.push(resource_arg(req, false)),
            }
            ns_flag(req, &mut w);
            w.extend(tail);
            if req.verb == "watch" {
                w.push("--watch".into());
            }
        }
        "create" => {
            let name = object_name(body).unwrap_or_default();
            w.extend(["create".into(), resource_arg(req, true)]);
            if !name.is_empty() {
                w.push(name);
            }
            ns_flag(req, &mut w);
            w.extend(["-f".into(), "-".into()]);
        }
        "update" => {
            w.extend(["replace".into(), resource_arg(req, true), req.name.clone()]);
            ns_flag(req, &mut w);
            w.extend(["-f".into(), "-".into()]);
        }
        "patch" => {
            w.extend(["patch".into(), resource_arg(req, true), req.name.clone()]);
            ns_flag(req, &mut w);
            w.extend(patch_args(req, content_type, body));
        }
        "delete" => {
            w.extend(["delete".into(), resource_arg(req, true), req.name.clone()]);
            ns_flag(req, &mut w);
        }
        "deletecollection" => {
            w.extend(["delete".into(), resource_arg(req, false)]);
            ns_flag(req, &mut w);
            let mut sel = Vec::new();
            selectors(req, &mut sel);
            if sel.is_empty() {
                w.push("--all".into());
            }
            w.extend(sel);
        }
        other => {
            w.extend([other.into(), resource_arg(req, true)]);
            if !req.name.is_empty() {
                w.push(req.name.clone());
            }
            ns_flag(req, &mut w);
        }
    }
    if query_value(&req.query, "dryRun").is_some_and(|d| d == "All") {
        w.push("--dry-run=server".into());
    }
    w
}

/// The most a reconstructed patch argument carries; the full body is in the event.
const MAX_PATCH_ARG: usize = 512;

fn patch_args(req: &KubeRequest, content_type: &str, body: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let kind = match content_type {
        t if t.starts_with("application/apply-patch") => {
            // Server-side apply arrives as a PATCH; say so.
            out.push("--server-side-apply".into());
            if let Some(m) = query_value(&req.query, "fieldManager") {
                out.push(format!("--field-manager={m}"));
            }
            return out;
        }
        t if t.starts_with("application/merge-patch") => "merge",
        t if t.starts_with("application/json-patch") => "json",
        _ => "strategic",
    };
    out.push("--type".into());
    out.push(kind.into());
    let text = String::from_utf8_lossy(body);
    let mut patch: String = text.chars().take(MAX_PATCH_ARG).collect();
    if patch.len() < text.len() {
        patch.push('…');
    }
    out.push("-p".into());
    out.push(patch);
    out
}

fn can_i_args(body: &[u8]) -> Vec<String> {
    let Some(v) = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .or_else(|| access_review_from_protobuf(body))
    else {
        return Vec::new();
    };
    let spec = &v["spec"];
    let mut out = Vec::new();
    if let Some(ra) = spec.get("resourceAttributes") {
        let s = |k: &str| {
            ra.get(k)
                .and_then(|x| x.as_str())
                .unwrap_or_default()
                .to_string()
        };
        out.push(s("verb"));
        let mut res = s("resource");
        if !s("subresource").is_empty() {
            res = format!("{res}/{}", s("subresource"));
        }
        if !s("group").is_empty() {
            res = format!("{res}.{}", s("group"));
        }
        if !s("name").is_empty() {
            res = format!("{res}/{}", s("name"));
        }
        out.push(res);
        if !s("namespace").is_empty() {
            out.extend(["-n".into(), s("namespace")]);
        }
    } else if let Some(nra) = spec.get("nonResourceAttributes") {
        let s = |k: &str| {
            nra.get(k)
                .and_then(|x| x.as_str())
                .unwrap_or_default()
                .to_string()
        };
        out.extend([s("verb"), s("path")]);
    }
    out.retain(|s| !s.is_empty());
    out
}

/// kubectl sends `SelfSubjectAccessReview` as protobuf: `k8s\0` + `runtime.Unknown` whose
/// field 2 is the object; we read just the spec into the JSON shape `can_i_args` reads.
fn access_review_from_protobuf(body: &[u8]) -> Option<serde_json::Value> {
    let unknown = body.strip_prefix(b"k8s\0")?;
    let raw = proto_field(unknown, 2)?;
    let spec = proto_field(raw, 2)?;
    let text = |buf: &[u8], n: u32| {
        proto_field(buf, n)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
            .to_string()
    };
    if let Some(ra) = proto_field(spec, 1) {
        return Some(serde_json::json!({"spec": {"resourceAttributes": {
            "namespace": text(ra, 1), "verb": text(ra, 2), "group": text(ra, 3),
            "resource": text(ra, 5), "subresource": text(ra, 6), "name": text(ra, 7),
        }}}));
    }
    let nra = proto_field(spec, 2)?;
    Some(
        serde_json::json!({"spec": {"nonResourceAttributes": {"path": text(nra, 1), "verb": text(nra, 2)}}}),
    )
}

/// The first length-delimited field `number` of a protobuf message, skipping the others.
fn proto_field(mut buf: &[u8], number: u32) -> Option<&[u8]> {
    fn varint(buf: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = buf.split_first()?;
            *buf = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let len = match key & 7 {
            0 => {
                varint(&mut buf)?;
                continue;
            }
            1 => 8,
            5 => 4,
            2 => usize::try_from(varint(&mut buf)?).ok()?,
            _ => return None,
        };
        if buf.len() < len {
            return None;
        }
        let (field, rest) = buf.split_at(len);
        if key >> 3 == u64::from(number) && key & 7 == 2 {
            return Some(field);
        }
        buf = rest;
    }
    None
}

fn subresource(req: &KubeRequest, content_type: &str, body: &[u8]) -> Vec<String> {
    let q = &req.query;
    let mut w: Vec<String> = vec!["kubectl".into()];
    match (req.resource.as_str(), req.subresource.as_str()) {
        ("pods", "log") => {
            w.extend(["logs".into(), req.name.clone()]);
            ns_flag(req, &mut w);
            if let Some(c) = query_value(q, "container") {
                w.extend(["-c".into(), c]);
            }
            if query_flag(q, "follow") {
                w.push("-f".into());
            }
            if query_flag(q, "previous") {
                w.push("--previous".into());
            }
            if query_flag(q, "timestamps") {
                w.push("--timestamps".into());
            }
            if let Some(n) = query_value(q, "tailLines") {
                w.extend(["--tail".into(), n]);
            }
            if let Some(s) = query_value(q, "sinceSeconds") {
                w.push(format!("--since={s}s"));
            }
            if let Some(t) = query_value(q, "sinceTime") {
                w.push(format!("--since-time={t}"));
            }
            if let Some(b) = query_value(q, "limitBytes") {
                w.push(format!("--limit-bytes={b}"));
            }
        }
        ("pods", sub @ ("exec" | "attach")) => {
            w.extend([sub.to_string(), req.name.clone()]);
            ns_flag(req, &mut w);
            if let Some(c) = query_value(q, "container") {
                w.extend(["-c".into(), c]);
            }
            let stdin = query_flag(q, "stdin");
            let tty = query_flag(q, "tty");
            match (stdin, tty) {
                (true, true) => w.push("-it".into()),
                (true, false) => w.push("-i".into()),
                (false, true) => w.push("-t".into()),
                (false, false) => {}
            }
            let argv = query_values(q, "command");
            if sub == "exec" && !argv.is_empty() {
                w.push("--".into());
                w.extend(argv);
            }
        }
        ("pods", "portforward") => {
            w.extend(["port-forward".into(), format!("pod/{}", req.name)]);
            ns_flag(req, &mut w);
            w.extend(query_values(q, "ports"));
        }
        (_, "scale") if req.verb == "patch" || req.verb == "update" => {
            w.extend(["scale".into(), resource_arg(req, true), req.name.clone()]);
            ns_flag(req, &mut w);
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
                && let Some(n) = v["spec"]["replicas"].as_i64()
            {
                w.push(format!("--replicas={n}"));
            }
        }
        (_, sub) => {
            let verb = match req.verb.as_str() {
                "list" => "get",
                "update" => "replace",
                v => v,
            };
            w.extend([
                verb.to_string(),
                resource_arg(req, true),
                req.name.clone(),
                format!("--subresource={sub}"),
            ]);
            ns_flag(req, &mut w);
            if req.verb == "patch" {
                w.extend(patch_args(req, content_type, body));
            }
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcript::request_info::parse;

    fn cmd(method: &str, uri: &str, ct: &str, body: &str) -> String {
        let (path, q) = uri
            .split_once('?')
            .map_or((uri, None), |(a, b)| (a, Some(b)));
        let m = http::Method::from_bytes(method.as_bytes()).unwrap();
        reconstruct(&parse(&m, path, q), ct, body.as_bytes())
    }

    #[test]
    fn the_issue_examples() {
        assert_eq!(
            cmd(
                "GET",
                "/api/v1/namespaces/payments/configmaps/app-config",
                "",
                ""
            ),
            "kubectl get configmap app-config -n payments"
        );
        assert_eq!(
            cmd(
                "GET",
                "/api/v1/namespaces/payments/pods/checkout-7b9/log?tailLines=200",
                "",
                ""
            ),
            "kubectl logs checkout-7b9 -n payments --tail 200"
        );
    }

    #[test]
    fn reads() {
        assert_eq!(
            cmd("GET", "/api/v1/namespaces/p/pods?limit=500", "", ""),
            "kubectl get pods -n p"
        );
        assert_eq!(cmd("GET", "/api/v1/pods", "", ""), "kubectl get pods -A");
        assert_eq!(
            cmd("GET", "/api/v1/namespaces", "", ""),
            "kubectl get namespaces"
        );
        assert_eq!(
            cmd(
                "GET",
                "/apis/apps/v1/namespaces/p/deployments?labelSelector=app%3Dweb&watch=true",
                "",
                ""
            ),
            "kubectl get deployments -n p -l app=web --watch"
        );
        assert_eq!(
            cmd(
                "GET",
                "/api/v1/namespaces/p/pods?fieldSelector=metadata.name%3Dweb-1&watch=1",
                "",
                ""
            ),
            "kubectl get pod web-1 -n p --watch"
        );
        assert_eq!(
            cmd(
                "GET",
                "/apis/stable.example.com/v1/namespaces/p/crontabs/x",
                "",
                ""
            ),
            "kubectl get crontab.stable.example.com x -n p"
        );
        assert_eq!(
            cmd(
                "GET",
                "/api/v1/namespaces/p/pods/web/log?container=app&follow=true",
                "",
                ""
            ),
            "kubectl logs web -n p -c app -f"
        );
        assert_eq!(cmd("GET", "/version", "", ""), "kubectl version");
        assert_eq!(cmd("GET", "/apis", "", ""), "kubectl get --raw /apis");
    }

    #[test]
    fn writes() {
        assert_eq!(
            cmd(
                "POST",
                "/api/v1/namespaces/p/configmaps?fieldManager=kubectl-client-side-apply",
                "application/json",
                r#"{"kind":"ConfigMap","metadata":{"name":"app"}}"#
            ),
            "kubectl create configmap app -n p -f -"
        );
        assert_eq!(
            cmd("DELETE", "/api/v1/namespaces/p/configmaps/app", "", ""),
            "kubectl delete configmap app -n p"
        );
        assert_eq!(
            cmd(
                "DELETE",
                "/api/v1/namespaces/p/configmaps?labelSelector=a%3Db",
                "",
                ""
            ),
            "kubectl delete configmaps -n p -l a=b"
        );
        assert_eq!(
            cmd(
                "PATCH",
                "/api/v1/namespaces/p/configmaps/app",
                "application/merge-patch+json",
                r#"{"data":{"k":"v"}}"#
            ),
            r#"kubectl patch configmap app -n p --type merge -p '{"data":{"k":"v"}}'"#
        );
        assert_eq!(
            cmd(
                "PATCH",
                "/apis/apps/v1/namespaces/p/deployments/web?fieldManager=kubectl&force=false",
                "application/apply-patch+yaml",
                "kind: Deployment"
            ),
            "kubectl patch deployment web -n p --server-side-apply --field-manager=kubectl"
        );
        assert_eq!(
            cmd("DELETE", "/api/v1/namespaces/payments", "", ""),
            "kubectl delete namespace payments"
        );
        assert_eq!(
            cmd(
                "POST",
                "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                "application/json",
                "{}"
            ),
            "kubectl auth whoami"
        );
        assert_eq!(
            cmd(
                "POST",
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                "application/json",
                r#"{"spec":{"resourceAttributes":{"namespace":"p","verb":"delete","resource":"pods"}}}"#
            ),
            "kubectl auth can-i delete pods -n p"
        );
        assert_eq!(
            cmd(
                "POST",
                "/api/v1/namespaces/p/pods/web/exec?command=sh&command=-c&command=echo+hi&container=app&stdin=true&tty=true",
                "",
                ""
            ),
            "kubectl exec web -n p -c app -it -- sh -c 'echo hi'"
        );
    }

    #[test]
    fn can_i_from_protobuf_body() {
        // k8s\0 + Unknown{raw(2): SSAR{spec(2): {resourceAttributes(1): {ns(1), verb(2), resource(5)}}}}
        let ra = [
            &[0x0a, 1, b'p'][..],
            &[0x12, 6],
            b"delete",
            &[0x2a, 4],
            b"pods",
        ]
        .concat();
        let spec = [&[0x0a, ra.len() as u8][..], &ra].concat();
        let ssar = [&[0x12, spec.len() as u8][..], &spec].concat();
        let unknown = [&[0x0a, 0][..], &[0x12, ssar.len() as u8], &ssar].concat();
        let body = [&b"k8s\0"[..], &unknown].concat();
        let r = parse(
            &http::Method::POST,
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            None,
        );
        assert_eq!(
            reconstruct(&r, "application/vnd.kubernetes.protobuf", &body),
            "kubectl auth can-i delete pods -n p"
        );
        // Garbage never panics.
        for junk in [&b"k8s\0"[..], b"k8s\0\x12\xff\xff", b"k8s\0\x0a"] {
            assert_eq!(reconstruct(&r, "", junk), "kubectl auth can-i");
        }
    }

    #[test]
    fn singulars() {
        for (p, s) in [
            ("policies", "policy"),
            ("ingresses", "ingress"),
            ("endpoints", "endpoints"),
            ("storageclasses", "storageclass"),
            ("pods", "pod"),
        ] {
            assert_eq!(singular(p), s);
        }
    }
}
