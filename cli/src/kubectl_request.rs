//! Turns a kubectl command line (`kubectl delete ns payments`) into the API request it would
//! make, for `gatehouse policy test`. Covers the common verbs and built-in resources; custom
//! resources are written as `plural.group` (`widgets.example.com`).
use gatehouse_policy::{Exec, Request};

/// Built-in resources: (plural, short names and singulars, API group, namespaced).
const RESOURCES: &[(&str, &[&str], &str, bool)] = &[
    ("pods", &["po", "pod"], "", true),
    ("services", &["svc", "service"], "", true),
    ("configmaps", &["cm", "configmap"], "", true),
    ("secrets", &["secret"], "", true),
    ("serviceaccounts", &["sa", "serviceaccount"], "", true),
    (
        "persistentvolumeclaims",
        &["pvc", "persistentvolumeclaim"],
        "",
        true,
    ),
    ("events", &["ev", "event"], "", true),
    ("endpoints", &["ep"], "", true),
    ("namespaces", &["ns", "namespace"], "", false),
    ("nodes", &["no", "node"], "", false),
    ("persistentvolumes", &["pv", "persistentvolume"], "", false),
    ("deployments", &["deploy", "deployment"], "apps", true),
    ("replicasets", &["rs", "replicaset"], "apps", true),
    ("statefulsets", &["sts", "statefulset"], "apps", true),
    ("daemonsets", &["ds", "daemonset"], "apps", true),
    ("jobs", &["job"], "batch", true),
    ("cronjobs", &["cj", "cronjob"], "batch", true),
    ("ingresses", &["ing", "ingress"], "networking.k8s.io", true),
    (
        "networkpolicies",
        &["netpol", "networkpolicy"],
        "networking.k8s.io",
        true,
    ),
    ("roles", &["role"], "rbac.authorization.k8s.io", true),
    (
        "rolebindings",
        &["rolebinding"],
        "rbac.authorization.k8s.io",
        true,
    ),
    (
        "clusterroles",
        &["clusterrole"],
        "rbac.authorization.k8s.io",
        false,
    ),
    (
        "clusterrolebindings",
        &["clusterrolebinding"],
        "rbac.authorization.k8s.io",
        false,
    ),
];

/// Flags that take a value as the next word.
const VALUE_FLAGS: &[&str] = &[
    "-n",
    "--namespace",
    "-o",
    "--output",
    "-c",
    "--container",
    "-l",
    "--selector",
    "-f",
    "--filename",
    "--field-selector",
    "--replicas",
    "--tail",
    "--since",
    "--context",
    "--cluster",
    "--user",
];

/// (plural, group, namespaced) of a resource as kubectl accepts it.
fn resolve(kind: &str) -> Result<(String, String, bool), String> {
    let lower = kind.to_ascii_lowercase();
    for (plural, aliases, group, namespaced) in RESOURCES {
        if lower == *plural || aliases.contains(&lower.as_str()) {
            return Ok((plural.to_string(), group.to_string(), *namespaced));
        }
    }
    match lower.split_once('.') {
        Some((plural, group)) if !plural.is_empty() && group.contains('.') => {
            Ok((plural.to_string(), group.to_string(), true))
        }
        _ => Err(format!(
            "unknown resource {kind:?}: use a built-in kind (pods, deploy, secrets, ns, …) or plural.group for custom resources"
        )),
    }
}

/// Splits a command line into words, honouring single and double quotes.
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unbalanced quote in --request".into());
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// Parses `kubectl VERB …` into a request (caller fields left empty).
pub fn parse(line: &str) -> Result<Request, String> {
    let mut w = words(line)?;
    if w.first().map(String::as_str) == Some("kubectl") {
        w.remove(0);
    }
    let (mut args, argv) = match w.iter().position(|a| a == "--") {
        Some(i) => {
            let argv = w.split_off(i + 1);
            w.pop();
            (w, argv)
        }
        None => (w, Vec::new()),
    };
    // Pull out the flags we use; drop the rest.
    let mut namespace = None;
    let mut container = String::new();
    let (mut all, mut watch) = (false, false);
    let mut positional = Vec::new();
    let mut it = std::mem::take(&mut args).into_iter();
    while let Some(a) = it.next() {
        if !a.starts_with('-') || a == "-" {
            positional.push(a);
            continue;
        }
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        };
        let value = if VALUE_FLAGS.contains(&flag.as_str()) {
            match inline {
                Some(v) => Some(v),
                None => Some(it.next().ok_or(format!("flag {flag} needs a value"))?),
            }
        } else {
            None
        };
        match flag.as_str() {
            "-n" | "--namespace" => namespace = value,
            "-c" | "--container" => container = value.unwrap_or_default(),
            "--all" => all = true,
            "-w" | "--watch" => watch = true,
            _ => {}
        }
    }
    let mut pos = positional.into_iter();
    let verb_word = pos
        .next()
        .ok_or("empty request: write a kubectl command such as \"kubectl get pods -n payments\"")?;
    let target: Vec<String> = pos.collect();

    let mut r = Request::default();
    let (resource_word, name) = match verb_word.as_str() {
        // `kubectl exec POD -- argv` and `kubectl logs POD`: the pod is the only operand.
        "exec" | "logs" | "attach" | "port-forward" => {
            let pod = target
                .first()
                .ok_or(format!("kubectl {verb_word} needs a pod name"))?;
            let name = pod.strip_prefix("pod/").unwrap_or(pod).to_string();
            ("pods".to_string(), Some(name))
        }
        _ => {
            let first = target.first().ok_or(format!(
                "kubectl {verb_word} needs a resource, e.g. \"kubectl {verb_word} pods\""
            ))?;
            match first.split_once('/') {
                Some((kind, name)) => (kind.to_string(), Some(name.to_string())),
                None => (first.clone(), target.get(1).cloned()),
            }
        }
    };
    let (resource, group, namespaced) = resolve(&resource_word)?;
    let named = name.is_some();
    let (verb, subresource) = match verb_word.as_str() {
        "get" | "describe" if watch => ("watch", ""),
        "get" | "describe" if named => ("get", ""),
        "get" | "describe" => ("list", ""),
        "delete" if named => ("delete", ""),
        "delete" if all => ("deletecollection", ""),
        "delete" => return Err("kubectl delete needs a name or --all".into()),
        "create" | "run" | "expose" => ("create", ""),
        "apply" | "patch" | "edit" | "label" | "annotate" | "set" => ("patch", ""),
        "replace" => ("update", ""),
        "scale" => ("patch", "scale"),
        "exec" => ("create", "exec"),
        "attach" => ("create", "attach"),
        "port-forward" => ("create", "portforward"),
        "logs" => ("get", "log"),
        other => {
            return Err(format!(
                "unsupported kubectl verb {other:?}: use get, describe, delete, create, apply, patch, edit, replace, scale, exec, logs, attach or port-forward"
            ));
        }
    };
    r.verb = verb.into();
    r.subresource = subresource.into();
    r.api_group = group;
    r.name = name.unwrap_or_default();
    r.namespace = if resource == "namespaces" {
        // The namespace object is in itself, as the gateway sees it.
        r.name.clone()
    } else if namespaced {
        namespace.unwrap_or_else(|| "default".into())
    } else {
        String::new()
    };
    r.resource = resource;
    if verb_word == "exec" {
        if argv.is_empty() {
            return Err("kubectl exec needs a command after --, e.g. \"-- sh\"".into());
        }
        r.exec = Some(Exec { container, argv });
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Request {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn shape(r: &Request) -> (&str, &str, &str, &str, &str, &str) {
        (
            &r.verb,
            &r.api_group,
            &r.resource,
            &r.subresource,
            &r.namespace,
            &r.name,
        )
    }

    #[test]
    fn common_commands() {
        let r = p("kubectl delete ns payments");
        assert_eq!(
            shape(&r),
            ("delete", "", "namespaces", "", "payments", "payments")
        );
        let r = p("get pods -n payments");
        assert_eq!(shape(&r), ("list", "", "pods", "", "payments", ""));
        let r = p("kubectl get secret db-credentials -n payments -o yaml");
        assert_eq!(
            shape(&r),
            ("get", "", "secrets", "", "payments", "db-credentials")
        );
        let r = p("kubectl --namespace=payments get deploy/checkout -w");
        assert_eq!(
            shape(&r),
            ("watch", "apps", "deployments", "", "payments", "checkout")
        );
        let r = p("kubectl scale deployment checkout --replicas 3");
        assert_eq!(
            shape(&r),
            (
                "patch",
                "apps",
                "deployments",
                "scale",
                "default",
                "checkout"
            )
        );
        let r = p("kubectl delete cm --all -n p");
        assert_eq!(
            shape(&r),
            ("deletecollection", "", "configmaps", "", "p", "")
        );
        let r = p("kubectl get nodes");
        assert_eq!(shape(&r), ("list", "", "nodes", "", "", ""));
        let r = p("kubectl get widgets.example.com w1");
        assert_eq!(
            shape(&r),
            ("get", "example.com", "widgets", "", "default", "w1")
        );
        let r = p("kubectl logs checkout-1 -n payments -c app");
        assert_eq!(
            shape(&r),
            ("get", "", "pods", "log", "payments", "checkout-1")
        );
    }

    #[test]
    fn exec_keeps_container_and_argv() {
        let r = p("kubectl exec -it checkout-1 -n payments -c app -- sh -c 'rm -rf /data'");
        assert_eq!(
            shape(&r),
            ("create", "", "pods", "exec", "payments", "checkout-1")
        );
        let exec = r.exec.unwrap_or_default();
        assert_eq!(exec.container, "app");
        assert_eq!(exec.argv, ["sh", "-c", "rm -rf /data"]);
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        for (bad, says) in [
            ("", "empty request"),
            ("kubectl", "empty request"),
            ("kubectl get", "needs a resource"),
            ("kubectl get gizmos", "unknown resource \"gizmos\""),
            ("kubectl frobnicate pods", "unsupported kubectl verb"),
            ("kubectl delete pods", "needs a name or --all"),
            ("kubectl exec checkout-1", "needs a command after --"),
            ("kubectl get pods -n", "flag -n needs a value"),
            ("kubectl get 'pods", "unbalanced quote"),
        ] {
            let e = parse(bad).err().unwrap_or_default();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
