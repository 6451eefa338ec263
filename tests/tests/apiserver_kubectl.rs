//! Real kubectl v1.35 against the in-process test apiserver: each test starts its own
//! server and kubectl `HOME`, runs kubectl as a subprocess and checks what it prints.

use std::time::Duration;

use gatehouse_tests::apiserver::{
    ADMIN_TOKEN, ALICE_TOKEN, ApiServerOptions, DenyRule, TestApiServer,
};
use gatehouse_tests::kubectl::Kubectl;
use tempfile::TempDir;

struct Env {
    server: TestApiServer,
    kubectl: Kubectl,
    _dir: TempDir,
}

async fn env_with(opts: ApiServerOptions, token: &str) -> Env {
    let server = TestApiServer::start(opts)
        .await
        .expect("start test apiserver");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubectl = Kubectl::new(dir.path(), &server.kubeconfig(token)).expect("kubectl setup");
    Env {
        server,
        kubectl,
        _dir: dir,
    }
}

async fn env() -> Env {
    env_with(ApiServerOptions::default(), ADMIN_TOKEN).await
}

impl Env {
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl.run(args).await.expect("run kubectl");
        assert!(out.success(), "expected success:\n{out}");
        out.stdout
    }

    async fn apply(
        &self,
        args: &[&str],
        manifest: &str,
    ) -> gatehouse_tests::kubectl::KubectlOutput {
        self.kubectl
            .run_with_stdin(args, Some(manifest))
            .await
            .expect("run kubectl")
    }
}

/// Splits a kubectl table into rows of whitespace-separated cells.
fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[tokio::test]
async fn get_namespaces_prints_the_table() {
    let e = env().await;
    let out = e.ok(&["get", "ns"]).await;
    let r = rows(&out);
    assert_eq!(r[0], ["NAME", "STATUS", "AGE"], "{out}");
    let names: Vec<&str> = r[1..].iter().map(|row| row[0].as_str()).collect();
    assert_eq!(
        names,
        [
            "default",
            "kube-node-lease",
            "kube-public",
            "kube-system",
            "payments"
        ],
        "{out}"
    );
    assert!(
        r[1..]
            .iter()
            .all(|row| row[1] == "Active" && row[2].ends_with('s')),
        "{out}"
    );
    // kubectl asked for a Table, and discovery came from the aggregated endpoints.
    let reqs = e.server.requests();
    let list = reqs
        .iter()
        .find(|r| r.path == "/api/v1/namespaces")
        .expect("namespaces list request");
    assert!(
        list.header("accept").unwrap_or("").contains("as=Table"),
        "{list:?}"
    );
    assert!(reqs.iter().any(|r| {
        r.path == "/apis"
            && r.header("accept")
                .unwrap_or("")
                .contains("APIGroupDiscoveryList")
    }));
}

#[tokio::test]
async fn get_pods_in_payments() {
    let e = env().await;
    let out = e.ok(&["get", "pods", "-n", "payments"]).await;
    let r = rows(&out);
    assert_eq!(
        r[0],
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{out}"
    );
    assert_eq!(r.len(), 3, "{out}");
    for row in &r[1..] {
        assert!(row[0].starts_with("payments-api-"), "{out}");
        assert_eq!(&row[1..4], ["1/1", "Running", "0"], "{out}");
    }
    let wide = e.ok(&["get", "pods", "-n", "payments", "-o", "wide"]).await;
    assert!(
        wide.lines().next().unwrap_or("").contains("IP") && wide.contains("gatehouse-test-node"),
        "{wide}"
    );
}

#[tokio::test]
async fn get_configmap_as_yaml() {
    let e = env().await;
    let out = e
        .ok(&[
            "get",
            "configmap",
            "app-config",
            "-n",
            "payments",
            "-o",
            "yaml",
        ])
        .await;
    let v: serde_yaml::Value = serde_yaml::from_str(&out).expect("yaml output");
    assert_eq!(v["kind"], "ConfigMap", "{out}");
    assert_eq!(v["apiVersion"], "v1", "{out}");
    assert_eq!(v["metadata"]["name"], "app-config", "{out}");
    assert_eq!(v["metadata"]["namespace"], "payments", "{out}");
    assert_eq!(v["data"]["LOG_LEVEL"], "info", "{out}");
    assert!(
        v["metadata"]["resourceVersion"]
            .as_str()
            .is_some_and(|s| s.parse::<u64>().is_ok()),
        "{out}"
    );
    assert!(
        v["metadata"]["uid"].as_str().is_some_and(|s| s.len() == 36),
        "{out}"
    );
    // managedFields exist on the server but kubectl hides them by default.
    assert!(!out.contains("managedFields"), "{out}");
}

#[tokio::test]
async fn describe_configmap() {
    let e = env().await;
    let out = e
        .ok(&["describe", "configmap", "app-config", "-n", "payments"])
        .await;
    for want in [
        "Name:         app-config",
        "Namespace:    payments",
        "Labels:       app=payments-api",
        "LOG_LEVEL:\n----\ninfo",
        "PAYMENT_PROVIDER:\n----\nstripe",
        "Events:  <none>",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}

const WEB_V1: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  namespace: payments\ndata:\n  color: blue\n";
const WEB_V2: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  namespace: payments\ndata:\n  color: green\n  size: large\n";

#[tokio::test]
async fn apply_creates_configures_and_leaves_unchanged() {
    let e = env().await;
    let a = e.apply(&["apply", "-f", "-"], WEB_V1).await;
    assert!(a.success() && a.stdout == "configmap/web created\n", "{a}");
    let b = e.apply(&["apply", "-f", "-"], WEB_V2).await;
    assert!(
        b.success() && b.stdout == "configmap/web configured\n",
        "{b}"
    );
    assert!(
        b.stderr.is_empty(),
        "no warnings expected (openapi v3 patch path):\n{b}"
    );
    let c = e.apply(&["apply", "-f", "-"], WEB_V2).await;
    assert!(
        c.success() && c.stdout == "configmap/web unchanged\n",
        "{c}"
    );
    let obj = e
        .server
        .object("", "configmaps", "payments", "web")
        .expect("stored");
    assert_eq!(
        obj["data"],
        serde_json::json!({"color": "green", "size": "large"})
    );
    // Removing a key from the manifest removes it from the object (three-way merge).
    let d = e.apply(&["apply", "-f", "-"], WEB_V1).await;
    assert!(
        d.success() && d.stdout == "configmap/web configured\n",
        "{d}"
    );
    let obj = e
        .server
        .object("", "configmaps", "payments", "web")
        .expect("stored");
    assert_eq!(obj["data"], serde_json::json!({"color": "blue"}));
    // The writes asked for strict server-side field validation.
    let reqs = e.server.requests();
    let patch = reqs.iter().find(|r| r.method == "PATCH").expect("a PATCH");
    assert_eq!(
        patch.header("content-type"),
        Some("application/strategic-merge-patch+json")
    );
    assert!(
        patch
            .query
            .as_deref()
            .unwrap_or("")
            .contains("fieldValidation=Strict"),
        "{patch:?}"
    );
}

#[tokio::test]
async fn apply_rejects_unknown_fields_strictly() {
    let e = env().await;
    let bad = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\n  namespace: payments\ncolour: blue\n";
    let out = e.apply(&["apply", "-f", "-"], bad).await;
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr.contains("Error from server (BadRequest)")
            && out
                .stderr
                .contains("strict decoding error: unknown field \"colour\""),
        "{out}"
    );
    assert!(
        e.server
            .object("", "configmaps", "payments", "bad")
            .is_none()
    );
}

#[tokio::test]
async fn apply_server_side() {
    let e = env().await;
    let a = e
        .apply(&["apply", "--server-side", "-f", "-"], WEB_V2)
        .await;
    assert!(
        a.success() && a.stdout == "configmap/web serverside-applied\n",
        "{a}"
    );
    let obj = e
        .server
        .object("", "configmaps", "payments", "web")
        .expect("stored");
    let mf = &obj["metadata"]["managedFields"][0];
    assert_eq!(mf["manager"], "kubectl", "{obj}");
    assert_eq!(mf["operation"], "Apply", "{obj}");
    // Dropping a field the manager owned deletes it.
    let b = e
        .apply(&["apply", "--server-side", "-f", "-"], WEB_V1)
        .await;
    assert!(
        b.success() && b.stdout == "configmap/web serverside-applied\n",
        "{b}"
    );
    let obj = e
        .server
        .object("", "configmaps", "payments", "web")
        .expect("stored");
    assert_eq!(obj["data"], serde_json::json!({"color": "blue"}));
    // Another manager changing an owned field conflicts unless forced.
    let c = e
        .apply(
            &[
                "apply",
                "--server-side",
                "--field-manager",
                "other",
                "-f",
                "-",
            ],
            WEB_V2,
        )
        .await;
    assert_eq!(c.code, Some(1), "{c}");
    assert!(
        c.stderr
            .contains("conflict with \"kubectl\" using v1: .data.color"),
        "{c}"
    );
    let d = e
        .apply(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager",
                "other",
                "-f",
                "-",
            ],
            WEB_V2,
        )
        .await;
    assert!(d.success(), "{d}");
    let apply = e
        .server
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .expect("PATCH");
    assert_eq!(
        apply.header("content-type"),
        Some("application/apply-patch+yaml")
    );
}

#[tokio::test]
async fn delete_then_get_is_not_found() {
    let e = env().await;
    let out = e
        .ok(&["delete", "configmap", "app-config", "-n", "payments"])
        .await;
    assert_eq!(
        out,
        "configmap \"app-config\" deleted from payments namespace\n"
    );
    let get = e
        .kubectl
        .run(&["get", "configmap", "app-config", "-n", "payments"])
        .await
        .expect("run");
    assert_eq!(get.code, Some(1), "{get}");
    assert_eq!(
        get.stderr, "Error from server (NotFound): configmaps \"app-config\" not found\n",
        "{get}"
    );
    let pod = e
        .ok(&[
            "delete",
            "pod",
            "payments-api-7c9d8b5f6d-2xk4p",
            "-n",
            "payments",
        ])
        .await;
    assert_eq!(
        pod,
        "pod \"payments-api-7c9d8b5f6d-2xk4p\" deleted from payments namespace\n"
    );
}

#[tokio::test]
async fn get_missing_object_fails_with_not_found() {
    let e = env().await;
    let out = e
        .kubectl
        .run(&["get", "configmap", "nope", "-n", "payments"])
        .await
        .expect("run");
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(out.stdout, "", "{out}");
    assert_eq!(
        out.stderr, "Error from server (NotFound): configmaps \"nope\" not found\n",
        "{out}"
    );
    let dep = e
        .kubectl
        .run(&["get", "deploy", "nope", "-n", "payments"])
        .await
        .expect("run");
    assert_eq!(
        dep.stderr, "Error from server (NotFound): deployments.apps \"nope\" not found\n",
        "{dep}"
    );
}

#[tokio::test]
async fn logs_tail_two_lines() {
    let e = env().await;
    let out = e
        .ok(&[
            "logs",
            "--tail",
            "2",
            "-n",
            "payments",
            "payments-api-7c9d8b5f6d-2xk4p",
        ])
        .await;
    assert_eq!(
        out,
        "api line 9: pod payments-api-7c9d8b5f6d-2xk4p is running\napi line 10: pod payments-api-7c9d8b5f6d-2xk4p is running\n"
    );
}

#[tokio::test]
async fn logs_follow_streams_new_lines() {
    let e = env().await;
    let mut s = e
        .kubectl
        .spawn(&[
            "logs",
            "-f",
            "-n",
            "payments",
            "payments-api-7c9d8b5f6d-2xk4p",
        ])
        .expect("spawn");
    s.wait_for_line(Duration::from_secs(20), |l| l.starts_with("api line 10:"))
        .await
        .expect("existing log");
    // Lines after the existing ten only exist if the stream keeps going.
    s.wait_for_line(Duration::from_secs(20), |l| l.starts_with("api line 13:"))
        .await
        .expect("followed lines");
    s.kill().await.expect("kill");
    let req = e
        .server
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/log"))
        .expect("log request");
    assert!(
        req.query.as_deref().unwrap_or("").contains("follow=true"),
        "{req:?}"
    );
}

#[tokio::test]
async fn get_watch_sees_new_objects() {
    let e = env().await;
    let mut w = e
        .kubectl
        .spawn(&["get", "configmaps", "-n", "payments", "-w"])
        .expect("spawn");
    w.wait_for_line(Duration::from_secs(20), |l| l.starts_with("NAME"))
        .await
        .expect("header");
    w.wait_for_line(Duration::from_secs(20), |l| l.starts_with("app-config"))
        .await
        .expect("existing row");
    let created = e
        .ok(&[
            "create",
            "configmap",
            "watched",
            "-n",
            "payments",
            "--from-literal=k=v",
        ])
        .await;
    assert_eq!(created, "configmap/watched created\n");
    let line = w
        .wait_for_line(Duration::from_secs(20), |l| l.starts_with("watched"))
        .await
        .expect("the watch shows the new configmap");
    assert_eq!(rows(&line)[0][1], "1", "{line}");
    w.kill().await.expect("kill");
    assert!(
        e.server
            .requests()
            .iter()
            .any(|r| r.query.as_deref().unwrap_or("").contains("watch=true"))
    );
}

#[tokio::test]
async fn auth_whoami_with_and_without_impersonation() {
    let e = env().await;
    let out = e.ok(&["auth", "whoami"]).await;
    assert_eq!(
        rows(&out),
        [
            vec!["ATTRIBUTE", "VALUE"],
            vec!["Username", "kubernetes-admin"],
            vec![
                "Groups",
                "[kubeadm:cluster-admins",
                "system:masters",
                "system:authenticated]"
            ],
        ],
        "{out}"
    );
    let out = e
        .ok(&[
            "auth",
            "whoami",
            "--as",
            "alice",
            "--as-group",
            "devs",
            "--as-uid",
            "u-1",
        ])
        .await;
    assert_eq!(
        rows(&out),
        [
            vec!["ATTRIBUTE", "VALUE"],
            vec!["Username", "alice"],
            vec!["UID", "u-1"],
            vec!["Groups", "[devs", "system:authenticated]"],
        ],
        "{out}"
    );
    let req = e
        .server
        .requests()
        .into_iter()
        .rfind(|r| r.path.ends_with("/selfsubjectreviews"))
        .expect("whoami request");
    assert_eq!(req.header("impersonate-user"), Some("alice"));
    assert_eq!(req.header_values("impersonate-group"), ["devs"]);
    assert_eq!(req.authenticated_user.as_deref(), Some("kubernetes-admin"));
}

#[tokio::test]
async fn impersonation_needs_permission() {
    let e = env_with(ApiServerOptions::default(), ALICE_TOKEN).await;
    let out = e.ok(&["auth", "whoami"]).await;
    assert!(out.contains("alice"), "{out}");
    // Warm the discovery cache first: uncached, the impersonation check fails discovery
    // too, and kubectl then reports only "Forbidden: unknown" (as against a real cluster).
    e.ok(&["get", "configmaps", "-n", "payments"]).await;
    let denied = e
        .kubectl
        .run(&["get", "configmaps", "-n", "payments", "--as", "bob"])
        .await
        .expect("run");
    assert_eq!(denied.code, Some(1), "{denied}");
    assert_eq!(
        denied.stderr,
        "Error from server (Forbidden): users \"bob\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope\n",
        "{denied}"
    );
}

#[tokio::test]
async fn auth_can_i_follows_the_deny_rules() {
    let opts = ApiServerOptions {
        deny: vec![DenyRule {
            user: "kubernetes-admin".into(),
            verb: "delete".into(),
            resource: "secrets".into(),
            namespace: None,
        }],
        ..ApiServerOptions::default()
    };
    let e = env_with(opts, ADMIN_TOKEN).await;
    assert_eq!(
        e.ok(&["auth", "can-i", "delete", "pods", "-n", "payments"])
            .await,
        "yes\n"
    );
    let no = e
        .kubectl
        .run(&["auth", "can-i", "delete", "secrets", "-n", "payments"])
        .await
        .expect("run");
    assert_eq!((no.code, no.stdout.as_str()), (Some(1), "no\n"), "{no}");
    let forbidden = e
        .kubectl
        .run(&["delete", "secret", "db-credentials", "-n", "payments"])
        .await
        .expect("run");
    assert_eq!(forbidden.code, Some(1), "{forbidden}");
    assert_eq!(
        forbidden.stderr,
        "Error from server (Forbidden): secrets \"db-credentials\" is forbidden: User \"kubernetes-admin\" cannot delete resource \"secrets\" in API group \"\" in the namespace \"payments\"\n",
        "{forbidden}"
    );
}

#[tokio::test]
async fn get_secrets() {
    let e = env().await;
    let out = e.ok(&["get", "secrets", "-n", "payments"]).await;
    let r = rows(&out);
    assert_eq!(r[0], ["NAME", "TYPE", "DATA", "AGE"], "{out}");
    assert_eq!(&r[1][..3], ["db-credentials", "Opaque", "2"], "{out}");
    let pw = e
        .ok(&[
            "get",
            "secret",
            "db-credentials",
            "-n",
            "payments",
            "-o",
            "jsonpath={.data.password}",
        ])
        .await;
    assert_eq!(pw, "czNjcjN0LXA0c3M=");
}

#[tokio::test]
async fn bad_token_is_unauthorized() {
    let e = env_with(ApiServerOptions::default(), "not-a-token").await;
    let out = e.kubectl.run(&["get", "ns"]).await.expect("run");
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr.contains(
            "error: You must be logged in to the server (the server has asked for the client to provide credentials)"
        ),
        "{out}"
    );
}
