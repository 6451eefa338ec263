//! The agent's Kubernetes side against the test API server, with real BPF on fake pod cgroups:
//! the endpoint set from the `kubernetes` Service, its EndpointSlice and control-plane Nodes
//! (kept live), attribution from the node-scoped pod watch (including a pod deleted before its
//! alert is written), the gateway pod exempted by label, and a namespace in enforce mode.
//! Needs root; skips loudly without it.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use gatehouse_proto::v1::{BypassAlert, Verdict};
use gatehouse_tests::apiserver::{ADMIN_TOKEN, ApiServerOptions, TestApiServer};
use serde_json::json;
use support::{Agent, PinDir, TestCgroup, connect_from, listener, require};

/// Not a test: the body of helper processes that `support::connect_from` re-executes.
#[test]
#[ignore = "helper process entry point, run by the other tests"]
fn helper() {
    support::helper_main();
}

const NODE: &str = "test-node";

fn ns(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// Creates a pod on `node` with one container and reports that container's runtime id, as
/// kubelet would; returns (uid, container id). `extra_meta` and `extra_spec` add fields.
fn pod(
    api: &TestApiServer,
    namespace: &str,
    name: &str,
    node: &str,
    labels: serde_json::Value,
    extra_meta: serde_json::Value,
    extra_spec: serde_json::Value,
) -> (String, String) {
    let mut meta = json!({"name": name, "namespace": namespace, "labels": labels});
    if let Some(m) = extra_meta.as_object() {
        for (k, v) in m {
            meta[k] = v.clone();
        }
    }
    let mut spec = json!({"nodeName": node, "serviceAccountName": format!("{name}-sa"),
        "containers": [{"name": "main", "image": "example/app:1"}]});
    if let Some(m) = extra_spec.as_object() {
        for (k, v) in m {
            spec[k] = v.clone();
        }
    }
    let created = api
        .create_object(json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}))
        .unwrap();
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    let cid = format!("{:0>64}", uid.replace('-', ""));
    api.set_status(
        "",
        "pods",
        namespace,
        name,
        json!({"phase": "Running", "containerStatuses": [{"name": "main",
            "containerID": format!("containerd://{cid}"), "image": "example/app:1",
            "imageID": "", "ready": true, "restartCount": 0}]}),
    )
    .unwrap();
    (uid, cid)
}

/// The systemd-driver cgroup kubelet and containerd would make for a pod's container.
fn container_cgroup(uid: &str, cid: &str) -> String {
    format!(
        "kubepods.slice/kubepods-pod{}.slice/cri-containerd-{cid}.scope",
        uid.replace('-', "_")
    )
}

fn wait_metric(agent: &Agent, name: &str, want: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let got = agent.metric(name);
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} is {got}, want {want}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn by_tgid(alerts: &[(gatehouse_proto::v1::Event, BypassAlert)], tgid: u32) -> &BypassAlert {
    &alerts
        .iter()
        .find(|(_, a)| a.tgid == tgid)
        .unwrap_or_else(|| panic!("no alert for tgid {tgid}: {alerts:#?}"))
        .1
}

#[test]
fn endpoints_pods_gateway_and_namespace_modes_come_from_the_api_server() {
    let Some(_serial) =
        require("endpoints_pods_gateway_and_namespace_modes_come_from_the_api_server")
    else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Real listeners stand in for the API server at each address the cluster advertises.
    let vip = listener("127.0.0.1:0");
    let ep6 = listener("[::1]:0");
    let cp = listener("127.0.0.2:0");
    let (vip_a, ep6_a, cp_a) = (
        vip.local_addr().unwrap(),
        ep6.local_addr().unwrap(),
        cp.local_addr().unwrap(),
    );
    let api = rt
        .block_on(TestApiServer::start(ApiServerOptions {
            seed_defaults: false,
            objects: vec![
                ns("payments"),
                ns("gatehouse"),
                ns("locked"),
                json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "kubernetes", "namespace": "default"},
                    "spec": {"clusterIP": "127.0.0.1", "ports": [{"name": "https", "port": vip_a.port()}]}}),
                json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": "kubernetes", "namespace": "default",
                        "labels": {"kubernetes.io/service-name": "kubernetes"}},
                    "addressType": "IPv6",
                    "endpoints": [{"addresses": ["::1"]}],
                    "ports": [{"name": "https", "port": ep6_a.port()}]}),
                json!({"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": "cp-1", "labels": {"node-role.kubernetes.io/control-plane": ""}}}),
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-1"}}),
            ],
            ..Default::default()
        }))
        .unwrap();
    api.set_status(
        "",
        "nodes",
        "",
        "cp-1",
        json!({"addresses": [{"type": "InternalIP", "address": "127.0.0.2"}]}),
    )
    .unwrap();
    api.set_status(
        "",
        "nodes",
        "",
        "worker-1",
        json!({"addresses": [{"type": "InternalIP", "address": "127.0.0.3"}]}),
    )
    .unwrap();

    let app = pod(
        &api,
        "payments",
        "api-7c9d8b5f6d-2xk4p",
        NODE,
        json!({"app": "api", "pod-template-hash": "7c9d8b5f6d"}),
        json!({"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "name": "api-7c9d8b5f6d", "uid": "rs-uid", "controller": true}]}),
        json!({}),
    );
    let gw = pod(
        &api,
        "gatehouse",
        "gatehouse-gateway-0",
        NODE,
        json!({"app.kubernetes.io/name": "gatehouse", "app.kubernetes.io/component": "gateway"}),
        json!({}),
        json!({}),
    );
    // A DaemonSet pod in the node's network namespace: the alert names both.
    let locked = pod(
        &api,
        "locked",
        "tool",
        NODE,
        json!({}),
        json!({"ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet",
            "name": "tool", "uid": "ds-uid", "controller": true}]}),
        json!({"hostNetwork": true}),
    );
    // Another node's pod, with a cgroup here anyway: the field selector must keep it out.
    let elsewhere = pod(
        &api,
        "locked",
        "elsewhere",
        "other-node",
        json!({}),
        json!({}),
        json!({}),
    );

    let app_cg = container_cgroup(&app.0, &app.1);
    let gw_cg = container_cgroup(&gw.0, &gw.1);
    let locked_cg = container_cgroup(&locked.0, &locked.1);
    let elsewhere_cg = container_cgroup(&elsewhere.0, &elsewhere.1);
    let cg = TestCgroup::new(&[&app_cg, &gw_cg, &locked_cg, &elsewhere_cg, "host"]);

    let pin = PinDir::new();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    let token = dir.path().join("token");
    std::fs::write(&ca, api.ca_pem()).unwrap();
    std::fs::write(&token, ADMIN_TOKEN).unwrap();
    let journal = dir.path().join("journal");
    let agent = Agent::start(
        &journal,
        &pin.0,
        &[
            format!("--kube-api-url={}", api.url()),
            format!("--kube-ca-file={}", ca.display()),
            format!("--kube-token-file={}", token.display()),
            format!("--control-plane-port={}", cp_a.port()),
            "--namespace-mode=locked=enforce".into(),
            format!("--attach-cgroup={}", cg.root.display()),
            "--refresh-interval=200ms".into(),
            "--dedup-window=300ms".into(),
        ],
    );
    // service_vip + endpoint_ip + the control-plane node (not the worker).
    wait_metric(&agent, "gatehouse_agent_endpoint_entries", 3);
    wait_metric(&agent, "gatehouse_agent_kube_pods", 3);
    wait_metric(&agent, "gatehouse_agent_exempt_cgroups", 1);
    wait_metric(&agent, "gatehouse_agent_mode_cgroups", 1);

    let p_vip = connect_from(&cg.path(&app_cg), vip_a, 1);
    // Deleted right after its connect: the alert is written after the window closes, from
    // the agent's memory of deleted pods.
    api.delete_object("", "pods", "payments", "api-7c9d8b5f6d-2xk4p")
        .unwrap();
    let p_ep6 = connect_from(&cg.path(&app_cg), ep6_a, 1);
    let p_cp = connect_from(&cg.path(&app_cg), cp_a, 1);
    let gw_c = connect_from(&cg.path(&gw_cg), vip_a, 2);
    let blocked = connect_from(&cg.path(&locked_cg), vip_a, 1);
    let other = connect_from(&cg.path(&elsewhere_cg), vip_a, 1);
    let host = connect_from(&cg.path("host"), cp_a, 1);
    assert_eq!(
        (p_vip.ok, p_ep6.ok, p_cp.ok, gw_c.ok, other.ok, host.ok),
        (1, 1, 1, 2, 1, 1)
    );
    assert_eq!((blocked.eperm, blocked.ok), (1, 0), "{blocked:?}");

    let alerts = agent.wait_alerts(6, Duration::from_secs(10));
    assert_eq!(alerts.len(), 6, "{alerts:#?}");
    for (h, tag, dest) in [
        (&p_vip, "service_vip", vip_a),
        (&p_ep6, "endpoint_ip", ep6_a),
        (&p_cp, "node_ip", cp_a),
    ] {
        let a = by_tgid(&alerts, h.tgid);
        assert_eq!(a.matched_by, tag);
        assert_eq!(a.pod_namespace, "payments");
        assert_eq!(a.pod_name, "api-7c9d8b5f6d-2xk4p");
        assert_eq!(a.pod_uid, app.0);
        assert_eq!(a.container_id, app.1);
        assert_eq!(a.container, "main");
        assert_eq!(
            a.service_account,
            "system:serviceaccount:payments:api-7c9d8b5f6d-2xk4p-sa"
        );
        assert!(!a.host_process);
        // The ReplicaSet owner folded into its Deployment; an ordinary pod network.
        assert_eq!(a.workload, "Deployment/api");
        assert!(!a.host_network);
        let d = a.original_destination.as_ref().unwrap();
        assert_eq!(
            (d.ip.as_str(), d.port),
            (dest.ip().to_string().as_str(), u32::from(dest.port()))
        );
    }
    let b = by_tgid(&alerts, blocked.tgid);
    assert_eq!(b.verdict, Verdict::Blocked as i32);
    assert_eq!(
        (b.pod_namespace.as_str(), b.pod_name.as_str()),
        ("locked", "tool")
    );
    assert_eq!(
        (b.workload.as_str(), b.host_network),
        ("DaemonSet/tool", true)
    );
    // Not this node's pod: its uid is in the cgroup path but the watch never showed it.
    let o = by_tgid(&alerts, other.tgid);
    assert_eq!(o.verdict, Verdict::Allowed as i32);
    assert_eq!(o.pod_uid, elsewhere.0);
    assert_eq!(o.pod_name, "");
    assert_eq!((o.workload.as_str(), o.host_network), ("", false));
    let h = by_tgid(&alerts, host.tgid);
    assert!(h.host_process);
    assert_eq!((h.workload.as_str(), h.host_network), ("", false));
    assert_eq!(h.matched_by, "node_ip");
    assert!(alerts.iter().all(|(_, a)| a.tgid != gw_c.tgid));

    // The endpoint set follows the cluster: the slice goes, its address is no longer flagged.
    api.delete_object(
        "discovery.k8s.io",
        "endpointslices",
        "default",
        "kubernetes",
    )
    .unwrap();
    wait_metric(&agent, "gatehouse_agent_endpoint_entries", 2);
    let after = connect_from(&cg.path(&locked_cg), ep6_a, 1);
    assert_eq!((after.ok, after.eperm), (1, 0), "no longer an API endpoint");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(agent.metric("gatehouse_agent_exempt_matches_total"), 2);
    assert_eq!(support::read_alerts(&journal).len(), 6);
    agent.stop();
    drop(api);
}

#[test]
fn dry_run_lists_the_endpoints_the_cluster_advertises() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let api = rt
        .block_on(TestApiServer::start(ApiServerOptions {
            seed_defaults: true,
            objects: vec![json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "cp-1", "labels": {"node-role.kubernetes.io/control-plane": ""}}})],
            ..Default::default()
        }))
        .unwrap();
    api.set_status(
        "",
        "nodes",
        "",
        "cp-1",
        json!({"addresses": [{"type": "InternalIP", "address": "192.0.2.20"}]}),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    let token = dir.path().join("token");
    std::fs::write(&ca, api.ca_pem()).unwrap();
    std::fs::write(&token, ADMIN_TOKEN).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse-agent"))
        .args(["--dry-run", "--endpoint=external=203.0.113.0/24:443"])
        .arg(format!("--kube-api-url={}", api.url()))
        .arg(format!("--kube-ca-file={}", ca.display()))
        .arg(format!("--kube-token-file={}", token.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // The seeded `kubernetes` Service (10.96.0.1:443), the node, and the flag.
    for want in [
        "10.96.0.1/32:443 service_vip",
        "192.0.2.20/32:6443 node_ip",
        "203.0.113.0/24:443 external",
    ] {
        assert!(text.contains(want), "{want} missing from:\n{text}");
    }
    // A wrong token is a clear failure, not an empty set.
    std::fs::write(&token, "nope").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse-agent"))
        .args(["--dry-run"])
        .arg(format!("--kube-api-url={}", api.url()))
        .arg(format!("--kube-ca-file={}", ca.display()))
        .arg(format!("--kube-token-file={}", token.display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    drop(api);
}
