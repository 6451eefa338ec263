#![allow(clippy::unwrap_used)]
//! The Helm chart (`charts/gatehouse`) with the real helm v4: `helm lint --strict`, renders of
//! the values files in `charts/gatehouse/ci/` checked object by object against the Kubernetes
//! v1.35 types (k8s-openapi), cross-checked (selectors, references, images, env names, the
//! agent's privileges), diffed against the committed golden renders, and bad values refused by
//! `values.schema.json` with a message naming the value.
//!
//! After an intended chart change, regenerate the golden files and review the diff:
//! `GATEHOUSE_UPDATE_GOLDEN=1 cargo test -p gatehouse-tests --test helm_chart`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PodTemplateSpec, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde_json::Value;

/// The values files rendered by the tests (`charts/gatehouse/ci/<name>-values.yaml`).
const SCENARIOS: [&str; 3] = ["default", "eks", "enforce"];
const RELEASE: &str = "gatehouse";
const NAMESPACE: &str = "gatehouse";

fn chart_dir() -> PathBuf {
    gatehouse_tests::kubectl::workspace_root().join("charts/gatehouse")
}

fn helm() -> PathBuf {
    let p = gatehouse_tests::kubectl::tools_bin().unwrap().join("helm");
    assert!(
        p.exists(),
        "helm not found at {} (run scripts/install-tools.sh)",
        p.display()
    );
    p
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn helm_run(args: &[&str]) -> Run {
    // Own cache/config dirs: nothing from the user's helm setup leaks in.
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(helm())
        .args(args)
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn values_file(scenario: &str) -> PathBuf {
    chart_dir().join(format!("ci/{scenario}-values.yaml"))
}

fn template(extra: &[&str]) -> Run {
    let chart = chart_dir();
    let mut args = vec![
        "template",
        RELEASE,
        chart.to_str().unwrap(),
        "--namespace",
        NAMESPACE,
    ];
    args.extend_from_slice(extra);
    helm_run(&args)
}

fn render(scenario: &str) -> String {
    let values = values_file(scenario);
    let r = template(&["-f", values.to_str().unwrap()]);
    assert!(r.ok, "helm template ({scenario}) failed:\n{}", r.stderr);
    r.stdout
}

/// The rendered objects as JSON, in order, empty documents dropped.
fn objects(manifest: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(manifest)
        .map(|doc| serde_yaml::from_value::<Value>(serde::Deserialize::deserialize(doc).unwrap()))
        .map(Result::unwrap)
        .filter(|v| !v.is_null())
        .collect()
}

fn kind(o: &Value) -> (&str, &str) {
    (
        o["apiVersion"].as_str().unwrap_or_default(),
        o["kind"].as_str().unwrap_or_default(),
    )
}

fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}

#[test]
fn lint_strict_passes_for_every_values_file() {
    let chart = chart_dir();
    let r = helm_run(&["lint", "--strict", chart.to_str().unwrap()]);
    assert!(r.ok, "helm lint --strict failed:\n{}{}", r.stdout, r.stderr);
    for s in SCENARIOS {
        let v = values_file(s);
        let r = helm_run(&[
            "lint",
            "--strict",
            chart.to_str().unwrap(),
            "-f",
            v.to_str().unwrap(),
        ]);
        assert!(
            r.ok,
            "helm lint --strict -f {s}: \n{}{}",
            r.stdout, r.stderr
        );
        assert!(r.stdout.contains("0 chart(s) failed"), "{}", r.stdout);
    }
}

#[test]
fn renders_match_golden_files() {
    let update = std::env::var("GATEHOUSE_UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let mut drift = Vec::new();
    for s in SCENARIOS {
        let got = render(s);
        let path = chart_dir().join(format!("ci/golden/{s}.yaml"));
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if got != want {
            let line = got
                .lines()
                .zip(want.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| got.lines().count().min(want.lines().count()));
            drift.push(format!(
                "{}: first difference at line {}\n  rendered: {:?}\n  golden:   {:?}",
                path.display(),
                line + 1,
                got.lines().nth(line).unwrap_or("<end>"),
                want.lines().nth(line).unwrap_or("<end>"),
            ));
        }
    }
    assert!(
        drift.is_empty(),
        "rendered chart differs from the golden files; if intended, run \
         `GATEHOUSE_UPDATE_GOLDEN=1 cargo test -p gatehouse-tests --test helm_chart` and review \
         the diff:\n{}",
        drift.join("\n")
    );
}

/// Removes nulls (an empty `annotations:` is absent to the API server too).
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Paths where `orig` has something the typed round trip lost or changed: unknown fields,
/// misplaced fields, wrong types.
fn diff(path: &str, orig: &Value, typed: &Value, out: &mut Vec<String>) {
    match (orig, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                match b.get(k) {
                    Some(vb) => diff(&format!("{path}.{k}"), va, vb, out),
                    None => out.push(format!("{path}.{k}: unknown field")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                diff(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        _ if orig == typed => {}
        _ => out.push(format!("{path}: {orig} read back as {typed}")),
    }
}

fn require(o: &Value, pointers: &[&str]) -> Vec<String> {
    pointers
        .iter()
        .filter(|p| o.pointer(p).is_none_or(|v| v.is_null()))
        .map(|p| format!("{p} missing"))
        .collect()
}

fn roundtrip<T: serde::de::DeserializeOwned + serde::Serialize>(
    o: &Value,
) -> Result<Value, String> {
    let t: T = serde_json::from_value(o.clone()).map_err(|e| e.to_string())?;
    Ok(serde_json::to_value(t).unwrap())
}

/// Checks one object against its Kubernetes type: it must deserialize, and reading it back must
/// give the same document (so no field is unknown, misplaced or of the wrong type).
fn check_object(o: &Value) -> Vec<String> {
    let mut o = o.clone();
    strip_nulls(&mut o);
    let typed = match kind(&o) {
        ("apps/v1", "Deployment") => roundtrip::<Deployment>(&o),
        ("apps/v1", "DaemonSet") => roundtrip::<DaemonSet>(&o),
        ("apps/v1", "StatefulSet") => roundtrip::<StatefulSet>(&o),
        ("v1", "Service") => roundtrip::<Service>(&o),
        ("v1", "ServiceAccount") => roundtrip::<ServiceAccount>(&o),
        ("v1", "ConfigMap") => roundtrip::<ConfigMap>(&o),
        ("v1", "Secret") => roundtrip::<Secret>(&o),
        ("batch/v1", "Job") => roundtrip::<Job>(&o),
        ("policy/v1", "PodDisruptionBudget") => roundtrip::<PodDisruptionBudget>(&o),
        ("autoscaling/v2", "HorizontalPodAutoscaler") => roundtrip::<HorizontalPodAutoscaler>(&o),
        ("networking.k8s.io/v1", "NetworkPolicy") => roundtrip::<NetworkPolicy>(&o),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => roundtrip::<ClusterRole>(&o),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            roundtrip::<ClusterRoleBinding>(&o)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => roundtrip::<Role>(&o),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => roundtrip::<RoleBinding>(&o),
        // cert-manager's CRD is not in k8s-openapi: check the fields cert-manager requires.
        ("cert-manager.io/v1", "Certificate") => {
            return require(
                &o,
                &[
                    "/spec/secretName",
                    "/spec/issuerRef/name",
                    "/spec/dnsNames/0",
                ],
            );
        }
        // Prometheus Operator CRDs: the fields the operator needs to act on them.
        ("monitoring.coreos.com/v1", "ServiceMonitor") => {
            return require(
                &o,
                &["/spec/selector/matchLabels", "/spec/endpoints/0/port"],
            );
        }
        ("monitoring.coreos.com/v1", "PodMonitor") => {
            return require(
                &o,
                &[
                    "/spec/selector/matchLabels",
                    "/spec/podMetricsEndpoints/0/port",
                ],
            );
        }
        ("monitoring.coreos.com/v1", "PrometheusRule") => {
            let mut errs = require(&o, &["/spec/groups/0/name", "/spec/groups/0/rules/0/alert"]);
            for r in o["spec"]["groups"][0]["rules"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if !r["expr"].is_string() || r["alert"].as_str().is_none_or(str::is_empty) {
                    errs.push(format!("rule without alert or expr: {r}"));
                }
            }
            return errs;
        }
        (av, k) => return vec![format!("{av} {k} is not a kind this test knows: add it")],
    };
    let typed = match typed {
        Ok(t) => t,
        Err(e) => return vec![format!("does not deserialize: {e}")],
    };
    let mut errs = Vec::new();
    diff("", &o, &typed, &mut errs);
    let n = name(&o);
    if n.is_empty() || n.len() > 63 {
        errs.push(format!("metadata.name {n:?} is empty or longer than 63"));
    }
    errs
}

#[test]
fn rendered_objects_are_valid_kubernetes_objects() {
    for s in SCENARIOS {
        let objs = objects(&render(s));
        assert!(objs.len() > 10, "{s}: only {} objects rendered", objs.len());
        let mut errs = Vec::new();
        for o in &objs {
            for e in check_object(o) {
                errs.push(format!("{s}: {} {}: {e}", kind(o).1, name(o)));
            }
        }
        assert!(errs.is_empty(), "{}", errs.join("\n"));
    }
}

#[test]
fn the_check_catches_unknown_and_mistyped_fields() {
    // The validator itself: a misspelt field and a wrong type must be reported.
    let objs = objects(&render("default"));
    let mut dep = objs
        .iter()
        .find(|o| kind(o).1 == "Deployment")
        .unwrap()
        .clone();
    dep["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always".into();
    let errs = check_object(&dep);
    assert!(
        errs.iter()
            .any(|e| e.contains("imagePullPolcy: unknown field")),
        "{errs:?}"
    );
    let mut svc = objs
        .iter()
        .find(|o| kind(o).1 == "Service")
        .unwrap()
        .clone();
    svc["spec"]["ports"][0]["port"] = "https".into();
    assert!(!check_object(&svc).is_empty());
}

/// The pod templates of the rendered workloads, by kind and name.
fn pod_templates(objs: &[Value]) -> Vec<(String, String, PodTemplateSpec)> {
    let mut v = Vec::new();
    for o in objs {
        let t = match kind(o).1 {
            "Deployment" | "DaemonSet" | "StatefulSet" | "Job" => {
                serde_json::from_value::<PodTemplateSpec>(o["spec"]["template"].clone()).unwrap()
            }
            _ => continue,
        };
        v.push((kind(o).1.to_string(), name(o).to_string(), t));
    }
    v
}

fn labels_match(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let Some(sel) = selector.as_object() else {
        return false;
    };
    !sel.is_empty()
        && sel
            .iter()
            .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
}

/// `env = "NAME"` of every clap flag in the binaries' sources, plus `LOG`/`LOG_FORMAT`.
fn env_names(dirs: &[&str]) -> BTreeSet<String> {
    let root = gatehouse_tests::kubectl::workspace_root();
    let mut names: BTreeSet<String> = ["LOG", "LOG_FORMAT"].map(String::from).into();
    fn walk(p: &Path, names: &mut BTreeSet<String>) {
        if p.is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                walk(&e.unwrap().path(), names);
            }
        } else if p.extension().is_some_and(|e| e == "rs") {
            let src = std::fs::read_to_string(p).unwrap();
            for part in src.split("env = \"").skip(1) {
                if let Some(n) = part.split('"').next()
                    && n.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                {
                    names.insert(n.to_string());
                }
            }
        }
    }
    for d in dirs {
        walk(&root.join(d), &mut names);
    }
    names
}

#[test]
fn rendered_objects_fit_together() {
    let app_version = {
        let chart: Value =
            serde_yaml::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap())
                .unwrap();
        chart["appVersion"].as_str().unwrap().to_string()
    };
    let env_by_image = [
        ("gateway", env_names(&["gateway/src"])),
        ("agent", env_names(&["agent/src"])),
        ("collector", env_names(&["collector/src"])),
    ];
    for s in SCENARIOS {
        let objs = objects(&render(s));
        let pods = pod_templates(&objs);
        let names_of = |k: &str| -> BTreeSet<&str> {
            objs.iter().filter(|o| kind(o).1 == k).map(name).collect()
        };
        let (sas, cms) = (names_of("ServiceAccount"), names_of("ConfigMap"));
        let pod_labels: Vec<BTreeMap<String, String>> = pods
            .iter()
            .map(|(_, _, t)| t.metadata.clone().unwrap().labels.unwrap_or_default())
            .collect();

        // Every selector selects some rendered pod template.
        for o in &objs {
            let sel = match kind(o).1 {
                "Service" => o["spec"]["selector"].clone(),
                "PodDisruptionBudget" => o["spec"]["selector"]["matchLabels"].clone(),
                "Deployment" | "DaemonSet" | "StatefulSet" => {
                    o["spec"]["selector"]["matchLabels"].clone()
                }
                // A namespace-wide policy (`podSelector: {}`) selects pods of other releases.
                "NetworkPolicy" if o["metadata"]["namespace"].is_null() => {
                    o["spec"]["podSelector"]["matchLabels"].clone()
                }
                _ => continue,
            };
            assert!(
                pod_labels.iter().any(|l| labels_match(&sel, l)),
                "{s}: {} {} selects no rendered pods: {sel}",
                kind(o).1,
                name(o)
            );
        }
        for o in objs
            .iter()
            .filter(|o| kind(o).1 == "HorizontalPodAutoscaler")
        {
            let t = &o["spec"]["scaleTargetRef"];
            assert!(
                objs.iter()
                    .any(|w| kind(w).1 == t["kind"].as_str().unwrap() && name(w) == t["name"]),
                "{s}: HPA targets a missing {t}"
            );
        }

        for (k, n, t) in &pods {
            let spec = t.spec.as_ref().unwrap();
            if let Some(sa) = &spec.service_account_name {
                assert!(
                    sas.contains(sa.as_str()),
                    "{s}: {k} {n} uses missing SA {sa}"
                );
            }
            for v in spec.volumes.iter().flatten() {
                if let Some(cm) = &v.config_map {
                    assert!(
                        cms.contains(cm.name.as_str()),
                        "{s}: {k} {n}: no ConfigMap {}",
                        cm.name
                    );
                }
            }
            for c in &spec.containers {
                let image = c.image.as_deref().unwrap();
                let Some((component, env)) = env_by_image.iter().find(|(comp, _)| {
                    image == format!("ghcr.io/gatehouse-dev/{comp}:{app_version}")
                }) else {
                    assert!(
                        image.starts_with("docker.io/clickhouse/clickhouse-server:"),
                        "{s}: {k} {n}: unexpected image {image}"
                    );
                    continue;
                };
                // Every variable the chart sets is a flag of that binary.
                for e in c.env.iter().flatten() {
                    assert!(
                        env.contains(&e.name),
                        "{s}: {k} {n}: {} is not an env var of the {component} binary",
                        e.name
                    );
                }
                // Every mounted volume exists in the pod (or in the StatefulSet's claims).
                for m in c.volume_mounts.iter().flatten() {
                    let in_pod = spec.volumes.iter().flatten().any(|v| v.name == m.name);
                    let claimed = objs.iter().any(|o| {
                        name(o) == n
                            && o["spec"]["volumeClaimTemplates"]
                                .as_array()
                                .is_some_and(|a| {
                                    a.iter().any(|c| c["metadata"]["name"] == m.name.as_str())
                                })
                    });
                    assert!(
                        in_pod || claimed,
                        "{s}: {k} {n}: mount {} has no volume",
                        m.name
                    );
                }
            }
        }
    }
}

#[test]
fn agent_daemonset_has_exactly_the_documented_privileges() {
    let objs = objects(&render("default"));
    let ds: DaemonSet = serde_json::from_value(
        objs.iter()
            .find(|o| kind(o).1 == "DaemonSet")
            .unwrap()
            .clone(),
    )
    .unwrap();
    let pod = ds.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.host_pid, Some(true));
    assert!(
        pod.host_network.is_none(),
        "the agent does not need the host network"
    );
    assert!(
        pod.tolerations
            .unwrap()
            .iter()
            .any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none()),
        "the agent must tolerate every taint"
    );
    let c = &pod.containers[0];
    let sc = c.security_context.clone().unwrap();
    assert_eq!(sc.privileged, Some(false));
    let caps = sc.capabilities.unwrap();
    assert_eq!(caps.drop.unwrap(), vec!["ALL"]);
    let mut add = caps.add.unwrap();
    add.sort();
    assert_eq!(
        add,
        [
            "BPF",
            "NET_ADMIN",
            "PERFMON",
            "SYS_ADMIN",
            "SYS_PTRACE",
            "SYS_RESOURCE"
        ]
    );
    let mounts: BTreeSet<String> = c
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.clone())
        .collect();
    for p in [
        "/sys/fs/bpf",
        "/sys/fs/cgroup",
        "/sys/kernel/tracing",
        "/host/proc",
    ] {
        assert!(mounts.contains(p), "agent lacks mount {p}: {mounts:?}");
    }
    let res = c.resources.clone().unwrap();
    assert!(res.requests.is_some() && res.limits.is_some());

    // The watches read exactly what the agent lists: pods (its node's) and control-plane nodes
    // cluster-wide, the `kubernetes` Service and its EndpointSlices only in `default`; never a
    // write.
    // (kind, namespace or "*", resource) of every rule of the agent's roles.
    let agent_rbac = |objs: &[Value]| -> Vec<String> {
        let mut out = Vec::new();
        for o in objs
            .iter()
            .filter(|o| matches!(kind(o).1, "ClusterRole" | "Role") && name(o).ends_with("-agent"))
        {
            for r in o["rules"].as_array().unwrap() {
                assert_eq!(
                    r["verbs"],
                    serde_json::json!(["get", "list", "watch"]),
                    "{o}"
                );
                for res in r["resources"].as_array().unwrap() {
                    let ns = o["metadata"]["namespace"].as_str().unwrap_or("*");
                    out.push(format!("{} {ns} {}", kind(o).1, res.as_str().unwrap()));
                }
            }
        }
        out.sort();
        out
    };
    assert_eq!(
        agent_rbac(&objs),
        [
            "ClusterRole * nodes",
            "ClusterRole * pods",
            "Role default endpointslices",
            "Role default services",
        ]
    );
    let sa_automount = |objs: &[Value]| {
        objs.iter()
            .find(|o| kind(o).1 == "ServiceAccount" && name(o).ends_with("-agent"))
            .unwrap()["automountServiceAccountToken"]
            .clone()
    };
    assert_eq!(sa_automount(&objs), true);
    let env = &pod.containers[0].env.clone().unwrap();
    assert!(env.iter().all(|e| e.name != "AGENT_NO_KUBE"));

    // Without the watches: no roles, no token, and the agent told so.
    let r = template(&["--set", "agent.kube.enabled=false"]);
    assert!(r.ok, "{}", r.stderr);
    let objs = objects(&r.stdout);
    assert!(agent_rbac(&objs).is_empty());
    assert_eq!(sa_automount(&objs), false);
    let ds = objs.iter().find(|o| kind(o).1 == "DaemonSet").unwrap();
    let env = ds["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    assert!(
        env.iter()
            .any(|e| e["name"] == "AGENT_NO_KUBE" && e["value"] == "true")
    );
    assert!(env.iter().all(|e| e["name"] != "AGENT_GATEWAY_SELECTOR"));
}

#[test]
fn scenario_specifics_render() {
    let find = |objs: &[Value], k: &str, suffix: &str| -> Value {
        objs.iter()
            .find(|o| kind(o).1 == k && name(o).ends_with(suffix))
            .unwrap_or_else(|| panic!("no {k} *{suffix}"))
            .clone()
    };
    // Default: external ClickHouse, so migrate runs before install and upgrade.
    let d = objects(&render("default"));
    let job = find(&d, "Job", "-collector-migrate");
    assert_eq!(
        job["metadata"]["annotations"]["helm.sh/hook"],
        "pre-install,pre-upgrade"
    );
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["args"][0],
        "migrate"
    );
    assert!(
        d.iter().all(|o| kind(o).1 != "StatefulSet"),
        "emptyDir journal: no StatefulSet"
    );
    // The dashboards ship as ConfigMaps the Grafana sidecar picks up, byte for byte.
    let cm = find(&d, "ConfigMap", "-dashboard-gatehouse-overview");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let file =
        std::fs::read_to_string(chart_dir().join("dashboards/gatehouse-overview.json")).unwrap();
    assert_eq!(
        cm["data"]["gatehouse-overview.json"]
            .as_str()
            .unwrap()
            .trim_end(),
        file.trim_end()
    );

    // EKS: IRSA annotation, impersonation granted to the access-entry group, HPA over the
    // gateway StatefulSet with per-replica journal claims, cert-manager certificate.
    let e = objects(&render("eks"));
    let sa = find(&e, "ServiceAccount", "-gateway");
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/gatehouse-gateway"
    );
    let crb = find(&e, "ClusterRoleBinding", "-gateway");
    assert_eq!(crb["subjects"][0]["kind"], "Group");
    assert_eq!(crb["subjects"][0]["name"], "gatehouse:gateway");
    let hpa = find(&e, "HorizontalPodAutoscaler", "-gateway");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "StatefulSet");
    let sts = find(&e, "StatefulSet", "-gateway");
    assert!(sts["spec"]["replicas"].is_null(), "the HPA owns replicas");
    assert_eq!(
        sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"],
        "gp3"
    );
    let svc = find(&e, "Service", "-gateway");
    assert_eq!(svc["spec"]["type"], "LoadBalancer");
    // Alert routing: the receivers and limits as the collector's flags, the webhook token
    // mounted from its Secret (never an env value).
    let col = find(&e, "Deployment", "-collector");
    let pod = &col["spec"]["template"]["spec"];
    let env: BTreeMap<&str, &str> = pod["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?)))
        .collect();
    for (k, v) in [
        (
            "COLLECTOR_ALERTMANAGER_URL",
            "http://alertmanager-operated.monitoring.svc:9093",
        ),
        (
            "COLLECTOR_ALERT_WEBHOOK_URL",
            "https://hooks.example.com/gatehouse",
        ),
        (
            "COLLECTOR_ALERT_WEBHOOK_TOKEN_FILE",
            "/etc/gatehouse/alert-webhook/token",
        ),
        ("COLLECTOR_ALERT_DEDUP_WINDOW", "30m"),
        ("COLLECTOR_ALERT_RATE_LIMIT", "20"),
        ("COLLECTOR_ALERT_RETRIES", "8"),
        ("COLLECTOR_ALERT_RETRY_BACKOFF", "2s"),
    ] {
        assert_eq!(env.get(k).copied(), Some(v), "{k} in {env:?}");
    }
    let hook = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "alert-webhook")
        .unwrap();
    assert_eq!(hook["secret"]["secretName"], "gatehouse-alert-webhook");
    assert_eq!(
        hook["secret"]["items"],
        serde_json::json!([{"key": "token", "path": "token"}])
    );
    assert!(
        pod["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "alert-webhook"
                && m["mountPath"] == "/etc/gatehouse/alert-webhook")
    );
    // No receiver (the default): no routing flags at all.
    let dcol = find(&d, "Deployment", "-collector");
    assert!(
        dcol["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| {
                let n = e["name"].as_str().unwrap();
                !n.starts_with("COLLECTOR_ALERT_") && n != "COLLECTOR_ALERTMANAGER_URL"
            })
    );
    let cert = find(&e, "Certificate", "-gateway");
    let tls_volume = sts["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "tls")
        .unwrap()
        .clone();
    assert_eq!(
        tls_volume["secret"]["secretName"],
        cert["spec"]["secretName"]
    );

    // Enforce: enforce mode, NetworkPolicies keeping app namespaces off the API server, bundled
    // ClickHouse with the migrate hook after install.
    let n = objects(&render("enforce"));
    let ds = find(&n, "DaemonSet", "-agent");
    let env = ds["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    assert!(
        env.iter()
            .any(|e| e["name"] == "AGENT_DEFAULT_MODE" && e["value"] == "enforce")
    );
    let agent_env = |n: &str| {
        env.iter()
            .find(|e| e["name"] == n)
            .unwrap_or_else(|| panic!("no {n}"))["value"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(agent_env("AGENT_NAMESPACE_MODES"), "apps=enforce,ci=audit");
    assert_eq!(agent_env("AGENT_CONTROL_PLANE_PORT"), "8443");
    // The default gateway selector picks this release's gateway pods, and nothing else.
    let selector: serde_json::Map<String, Value> = agent_env("AGENT_GATEWAY_SELECTOR")
        .split(',')
        .map(|t| {
            let (k, v) = t.split_once('=').unwrap();
            (k.to_string(), Value::from(v))
        })
        .collect();
    let selected: Vec<String> = pod_templates(&n)
        .into_iter()
        .filter(|(_, _, t)| {
            labels_match(
                &Value::Object(selector.clone()),
                &t.metadata.clone().unwrap().labels.unwrap_or_default(),
            )
        })
        .map(|(k, name, _)| format!("{k}/{name}"))
        .collect();
    assert_eq!(selected, ["Deployment/gatehouse-gateway"], "{selector:?}");
    let deny: Vec<&Value> = n
        .iter()
        .filter(|o| kind(o).1 == "NetworkPolicy" && !o["metadata"]["namespace"].is_null())
        .collect();
    assert_eq!(deny.len(), 2, "one policy per restricted namespace");
    assert_eq!(
        deny[0]["spec"]["egress"][0]["to"][0]["ipBlock"]["except"],
        serde_json::json!(["10.96.0.1/32", "192.168.49.2/32"])
    );
    let job = find(&n, "Job", "-collector-migrate");
    assert_eq!(
        job["metadata"]["annotations"]["helm.sh/hook"],
        "post-install,pre-upgrade"
    );
    find(&n, "StatefulSet", "-clickhouse");
}

#[test]
fn bad_values_fail_with_a_clear_message() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--set", "gateway.upstreamMode=foo"],
            "at '/gateway/upstreamMode': value must be one of 'in-cluster', 'eks', 'kubeconfig'",
        ),
        (
            &["--set", "gateway.replica=3"],
            "additional properties 'replica' not allowed",
        ),
        (
            &["--set", "gateway.replicas=0"],
            "at '/gateway/replicas': minimum",
        ),
        (
            &["--set", "gateway.journal.maxBytes=lots"],
            "at '/gateway/journal/maxBytes'",
        ),
        (
            &["--set", "gateway.journal.fsync=sometimes"],
            "at '/gateway/journal/fsync'",
        ),
        (
            &["--set", "gateway.sessionIdleGap=ten minutes"],
            "at '/gateway/sessionIdleGap'",
        ),
        (
            &["--set", "gateway.service.type=NodePort"],
            "at '/gateway/service/type'",
        ),
        (&["--set", "gateway.upstreamMode=eks"], "at '/gateway/eks"),
        (
            &["--set", "gateway.upstreamMode=kubeconfig"],
            "at '/gateway/kubeconfig",
        ),
        (
            &["--set", "gateway.tls.secretName="],
            "at '/gateway/tls/secretName'",
        ),
        (
            &["--set", "gateway.eks.roleArn=gatehouse"],
            "at '/gateway/eks/roleArn'",
        ),
        (
            &["--set", "agent.defaultMode=enforce"],
            "at '/agent/exemptCgroups': minItems",
        ),
        (
            &["--set", "agent.defaultMode=block"],
            "at '/agent/defaultMode'",
        ),
        (
            &["--set", "agent.endpoints={10.0.0.1:443}"],
            "at '/agent/endpoints/0'",
        ),
        (
            &["--set", "agent.endpoints={external=kube.example.com:443}"],
            "at '/agent/endpoints/0'",
        ),
        (
            &["--set", "agent.exemptCgroups={kubepods}"],
            "at '/agent/exemptCgroups/0'",
        ),
        (
            &["--set", "agent.namespaceModes.payments=block"],
            "at '/agent/namespaceModes/payments': value must be one of 'audit', 'enforce'",
        ),
        (
            &["--set", "agent.namespaceModes.Payments_1=audit"],
            "invalid propertyName 'Payments_1'",
        ),
        (
            &["--set", "agent.gatewaySelector=app!=gateway"],
            "at '/agent/gatewaySelector'",
        ),
        (
            &["--set", "agent.kube.apiUrl=http://10.0.0.1:6443"],
            "at '/agent/kube/apiUrl'",
        ),
        (
            &["--set", "agent.kube.controlPlanePort=70000"],
            "at '/agent/kube/controlPlanePort': maximum",
        ),
        (
            &[
                "--set",
                "collector.alerts.alertmanagerUrl=alertmanager:9093",
            ],
            "at '/collector/alerts/alertmanagerUrl'",
        ),
        (
            &[
                "--set",
                "collector.alerts.webhook.url=ftp://hooks.example.com",
            ],
            "at '/collector/alerts/webhook/url'",
        ),
        (
            &[
                "--set",
                "collector.alerts.webhook.tokenSecretName=hook-token",
            ],
            "at '/collector/alerts/webhook/url': minLength",
        ),
        (
            &[
                "--set",
                "collector.alerts.webhook.tokenSecretName=Hook_Token",
            ],
            "at '/collector/alerts/webhook/tokenSecretName'",
        ),
        (
            &["--set", "collector.alerts.dedupWindow=ten minutes"],
            "at '/collector/alerts/dedupWindow'",
        ),
        (
            &["--set", "collector.alerts.rateLimit=0"],
            "at '/collector/alerts/rateLimit': minimum",
        ),
        (
            &["--set", "collector.alerts.retries=-1"],
            "at '/collector/alerts/retries': minimum",
        ),
        (
            &["--set", "clickhouse.enabled=true"],
            "at '/clickhouse/password'",
        ),
        (
            &["--set", "collector.clickhouse.url=clickhouse:8123"],
            "at '/collector/clickhouse/url'",
        ),
        (
            &["--set", "collector.clickhouse.compression=zstd"],
            "at '/collector/clickhouse/compression'",
        ),
        (
            &["--set", "networkPolicy.enabled=true"],
            "at '/networkPolicy/apiServer/cidrs': minItems",
        ),
        (
            &["--set", "networkPolicy.apiServer.cidrs={10.0.0.1}"],
            "at '/networkPolicy/apiServer/cidrs/0'",
        ),
        (
            &["--set", "image.pullPolicy=Sometimes"],
            "at '/image/pullPolicy'",
        ),
        (
            &["--set", "monitoring.prometheusRule.journalBacklogRatio=2"],
            "at '/monitoring/prometheusRule/journalBacklogRatio'",
        ),
        (
            &["--set", "collector.ingestTokenSecretName="],
            "at '/collector/ingestTokenSecretName'",
        ),
        (
            &[
                "--set",
                "collector.oidc.issuerUrl=https://login.example.com",
            ],
            "at '/collector/readerGroups': minItems",
        ),
        (
            &["--set", "gateway.oidc.issuerUrl=https://login.example.com"],
            "at '/gateway/oidc/audience': minItems",
        ),
        // Caught by the templates where the schema cannot express it.
        (
            &["--set", "gateway.podDisruptionBudget.minAvailable=2"],
            "minAvailable (2) must be below the gateway's replicas (2)",
        ),
        (
            &["--set", "collector.clickhouse.url="],
            "the collector needs ClickHouse",
        ),
        (
            &[
                "--set",
                "agent.kube.enabled=false",
                "--set",
                "agent.namespaceModes.apps=enforce",
            ],
            "agent.namespaceModes and agent.gatewaySelector apply to the pods the agent watches: they need agent.kube.enabled=true",
        ),
    ];
    for (args, want) in cases {
        let r = template(args);
        assert!(!r.ok, "{args:?} was accepted");
        assert!(
            r.stderr.contains(want),
            "{args:?}: expected {want:?} in:\n{}",
            r.stderr
        );
    }
}

#[test]
fn prometheus_rules_use_metrics_the_binaries_export() {
    // Each component registers its metrics by bare name under a `gatehouse_<component>` prefix;
    // prometheus-client adds `_total` to counters.
    let root = gatehouse_tests::kubectl::workspace_root();
    let registered = |component: &str, metric: &str| -> bool {
        let src =
            std::fs::read_to_string(root.join(format!("{component}/src/metrics.rs"))).unwrap();
        let bare = metric.strip_suffix("_total").unwrap_or(metric);
        src.contains(&format!("\"{bare}\""))
    };
    let objs = objects(&render("eks"));
    let rule = objs.iter().find(|o| kind(o).1 == "PrometheusRule").unwrap();
    let mut seen = 0;
    for r in rule["spec"]["groups"][0]["rules"].as_array().unwrap() {
        let expr = r["expr"].as_str().unwrap();
        for (i, _) in expr.match_indices("gatehouse_") {
            let name: String = expr[i..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            let (component, metric) = name["gatehouse_".len()..].split_once('_').unwrap();
            assert!(
                registered(component, metric),
                "{}: {name} is not a metric of the {component}",
                r["alert"]
            );
            seen += 1;
        }
    }
    assert!(seen >= 4, "only {seen} metric references checked");
    // journalBacklogRatio 0.25 of the default 10GiB.
    assert!(
        rule.to_string()
            .contains("gatehouse_gateway_journal_unacked_bytes) > 2684354560"),
        "{rule}"
    );
}

#[test]
fn the_agent_accepts_its_rendered_configuration() {
    // The real agent binary, with the DaemonSet's env and the endpoints ConfigMap as a file, in
    // `AGENT_DRY_RUN` mode: it validates everything and prints the endpoint set, loading no BPF.
    let agent = gatehouse_tests::binaries::path("gatehouse-agent").unwrap();
    for s in SCENARIOS {
        let objs = objects(&render(s));
        let ds = objs.iter().find(|o| kind(o).1 == "DaemonSet").unwrap();
        let cm = objs
            .iter()
            .find(|o| kind(o).1 == "ConfigMap" && name(o).ends_with("-agent-endpoints"))
            .unwrap();
        let endpoints = cm["data"]["endpoints"].as_str().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("endpoints");
        std::fs::write(&file, endpoints).unwrap();

        let mut cmd = Command::new(&agent);
        cmd.env_clear().env("AGENT_DRY_RUN", "true");
        for e in ds["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
        {
            let n = e["name"].as_str().unwrap();
            match (n, e["value"].as_str()) {
                ("AGENT_ENDPOINTS_FILE", _) => cmd.env(n, &file),
                (_, Some(v)) => cmd.env(n, v),
                // valueFrom: the downward API.
                (_, None) => cmd.env(n, "test-node"),
            };
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{s}: the agent refused its rendered config:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // `dns=` names are resolved in the background (and do not resolve offline), so only
        // the address entries are expected in the printed set.
        let configured: Vec<&str> = endpoints
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("dns="))
            .collect();
        assert_eq!(
            stdout.lines().count(),
            configured.len(),
            "{s}: endpoint set {stdout:?} for {configured:?}"
        );
        for c in configured {
            let (kind, _) = c.split_once('=').unwrap();
            assert!(stdout.contains(kind), "{s}: {c} missing from {stdout:?}");
        }
    }
}

#[tokio::test]
async fn the_migrate_hook_job_migrates_with_its_rendered_configuration() {
    // The hook Job's args and env, run with the real collector binary against the real
    // ClickHouse engine (only the address, database and transfer compression are the test's).
    let dir = tempfile::tempdir().unwrap();
    let ch = gatehouse_tests::clickhouse::TestClickHouse::start(dir.path())
        .await
        .unwrap();
    let r = template(&["--set", "collector.ttlDays.recordings=30"]);
    assert!(r.ok, "{}", r.stderr);
    let objs = objects(&r.stdout);
    let job = objs
        .iter()
        .find(|o| kind(o).1 == "Job" && name(o).ends_with("-collector-migrate"))
        .unwrap();
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    let mut cmd = Command::new(gatehouse_tests::binaries::path("collector").unwrap());
    cmd.env_clear();
    for a in c["args"].as_array().unwrap() {
        cmd.arg(a.as_str().unwrap());
    }
    for e in c["env"].as_array().unwrap() {
        let n = e["name"].as_str().unwrap();
        let v = match n {
            "COLLECTOR_CLICKHOUSE_URL" => ch.url.clone(),
            "COLLECTOR_CLICKHOUSE_DATABASE" => ch.database.clone(),
            "COLLECTOR_CLICKHOUSE_COMPRESSION" if !ch.compression => "none".into(),
            _ => e["value"]
                .as_str()
                .unwrap_or_else(|| panic!("{n}: only literal values in the default render"))
                .into(),
        };
        cmd.env(n, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "collector {:?} failed:\n{}",
        c["args"],
        String::from_utf8_lossy(&out.stderr)
    );
    let tables = ch
        .query_text(
            "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name",
        )
        .await
        .unwrap();
    for t in [
        "alerts",
        "events",
        "events_hourly",
        "schema_migrations",
        "sessions",
    ] {
        assert!(tables.lines().any(|l| l == t), "{t} missing: {tables}");
    }
    // The rendered TTLs reached the schema (recordings: 30 days, the binary's default is 365).
    let ddl = ch
        .query_text("SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = 'events'")
        .await
        .unwrap();
    assert!(ddl.contains("toIntervalDay(30)"), "{ddl}");
}

#[tokio::test]
async fn the_gateway_starts_with_its_rendered_configuration() {
    // The real gateway binary with the Deployment's env (in-cluster mode), its mounted files
    // recreated in a temp dir, against the test API server: it must validate its config,
    // listen, and answer /healthz. Only the listeners and the API-server address are the test's.
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let api = gatehouse_tests::apiserver::TestApiServer::start(Default::default())
        .await
        .unwrap();
    for s in ["default", "enforce"] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let tls = gatehouse_tests::gateway_proc::write_tls(d).unwrap();
        std::fs::write(
            d.join("sa-token"),
            gatehouse_tests::apiserver::GATEWAY_TOKEN,
        )
        .unwrap();
        std::fs::write(d.join("cluster-ca.crt"), api.ca_pem()).unwrap();
        std::fs::write(d.join("collector-token"), "t0k3n").unwrap();
        let objs = objects(&render(s));
        let dep = objs
            .iter()
            .find(|o| kind(o).1 == "Deployment" && name(o).ends_with("-gateway"))
            .unwrap();
        if let Some(cm) = objs
            .iter()
            .find(|o| kind(o).1 == "ConfigMap" && name(o).ends_with("-identity-map"))
        {
            std::fs::write(
                d.join("identity-map.yaml"),
                cm["data"]["identity-map.yaml"].as_str().unwrap(),
            )
            .unwrap();
        }
        if let Some(cm) = objs
            .iter()
            .find(|o| kind(o).1 == "ConfigMap" && name(o).ends_with("-policy"))
        {
            std::fs::write(
                d.join("policy.yaml"),
                cm["data"]["policy.yaml"].as_str().unwrap(),
            )
            .unwrap();
        }
        let mut cmd =
            tokio::process::Command::new(gatehouse_tests::binaries::path("gateway").unwrap());
        cmd.env_clear()
            .env("GATEWAY_LISTEN", "127.0.0.1:0")
            .env("GATEWAY_OPS_LISTEN", "127.0.0.1:0")
            .env("GATEWAY_IN_CLUSTER_SERVER", api.url())
            .env("GATEWAY_IN_CLUSTER_TOKEN_FILE", d.join("sa-token"))
            .env("GATEWAY_IN_CLUSTER_CA_FILE", d.join("cluster-ca.crt"));
        for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
        {
            let n = e["name"].as_str().unwrap();
            let v: std::ffi::OsString = match (n, e["value"].as_str()) {
                ("GATEWAY_TLS_CERT", _) => tls.cert.clone().into(),
                ("GATEWAY_TLS_KEY", _) => tls.key.clone().into(),
                ("GATEWAY_JOURNAL_DIR", _) => d.join("journal").into(),
                ("GATEWAY_IDENTITY_MAP", _) => d.join("identity-map.yaml").into(),
                ("GATEWAY_POLICY_FILE", _) => d.join("policy.yaml").into(),
                ("GATEWAY_CLIENT_CA_FILE", _) => d.join("cluster-ca.crt").into(),
                ("GATEWAY_COLLECTOR_TOKEN_FILE", _) => d.join("collector-token").into(),
                (_, Some(v)) => {
                    assert!(
                        !v.starts_with('/'),
                        "{s}: {n}={v}: a mounted file this test does not recreate"
                    );
                    v.into()
                }
                (_, None) => "gateway-0".into(),
            };
            cmd.env(n, v);
        }
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap();
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut log = Vec::new();
        let ops = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                log.push(line.clone());
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["fields"]["message"] == "gateway listening"
                {
                    return Some(v["fields"]["ops"].as_str().unwrap().to_string());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("{s}: the gateway did not start:\n{}", log.join("\n")));
        let mut conn = tokio::net::TcpStream::connect(&ops).await.unwrap();
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut resp = String::new();
        conn.read_to_string(&mut resp).await.unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{s}: /healthz: {resp}");
        child.kill().await.unwrap();
    }
}
