//! The shipping files agree with each other: the Dockerfile's targets, the compose file, the Helm
//! chart's image values, the workspace version and what `cargo xtask dist` builds.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value;
use xtask::dist::{self, BINARIES};

const REGISTRY_OWNER: &str = "ghcr.io/gatehouse-dev";
/// The Dockerfile targets that the chart deploys, by image name.
const DEPLOYABLES: &[&str] = &["gateway", "agent", "collector"];

fn read(path: &str) -> String {
    let p = xtask::workspace_root().join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

fn yaml(path: &str) -> Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `version = "…"` of `[workspace.package]` in the root manifest.
fn workspace_version() -> String {
    let manifest = read("Cargo.toml");
    let section = manifest.split("[workspace.package]").nth(1).unwrap();
    let line = section
        .lines()
        .find(|l| l.trim_start().starts_with("version"))
        .unwrap();
    line.split('"').nth(1).unwrap().to_string()
}

fn app_version() -> String {
    yaml("charts/gatehouse/Chart.yaml")["appVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

#[derive(Debug, Default)]
struct Stage {
    from: String,
    args: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    copies: Vec<(Option<String>, Vec<String>)>,
    runs: Vec<String>,
    user: Option<String>,
    healthcheck: Option<String>,
    expose: Vec<String>,
    entrypoint: Option<String>,
}

/// A Dockerfile as stages by name: continuation lines joined, comments dropped.
fn dockerfile() -> BTreeMap<String, Stage> {
    let text = read("Dockerfile");
    let mut logical = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(head) => {
                cur.push_str(head);
                cur.push(' ');
            }
            None => {
                cur.push_str(t);
                logical.push(std::mem::take(&mut cur));
            }
        }
    }
    let mut stages = BTreeMap::new();
    let mut name = String::new();
    for line in logical {
        let (instr, rest) = line.split_once(' ').unwrap_or((&line, ""));
        let rest = rest.trim();
        if instr == "FROM" {
            let words: Vec<&str> = rest.split_whitespace().collect();
            assert!(
                words.len() == 3 && words[1].eq_ignore_ascii_case("AS"),
                "every stage is named: FROM {rest}"
            );
            name = words[2].to_string();
            let prev = stages.insert(
                name.clone(),
                Stage {
                    from: words[0].to_string(),
                    ..Stage::default()
                },
            );
            assert!(prev.is_none(), "stage {name} defined twice");
            continue;
        }
        let stage = stages
            .get_mut(&name)
            .unwrap_or_else(|| panic!("{instr} before the first FROM"));
        match instr {
            "ARG" => {
                let (k, v) = rest.split_once('=').unwrap_or((rest, ""));
                stage.args.insert(k.to_string(), v.to_string());
            }
            "LABEL" => {
                // k="v" pairs; values are quoted and may hold spaces.
                let mut s = rest;
                while let Some((k, after)) = s.split_once("=\"") {
                    let (v, tail) = after.split_once('"').unwrap();
                    stage.labels.insert(k.trim().to_string(), v.to_string());
                    s = tail;
                }
            }
            "COPY" => {
                let mut from = None;
                let mut paths = Vec::new();
                for w in rest.split_whitespace() {
                    if let Some(f) = w.strip_prefix("--from=") {
                        from = Some(f.to_string());
                    } else if !w.starts_with("--") {
                        paths.push(w.to_string());
                    }
                }
                stage.copies.push((from, paths));
            }
            "RUN" => stage.runs.push(rest.to_string()),
            "USER" => stage.user = Some(rest.to_string()),
            "HEALTHCHECK" => stage.healthcheck = Some(rest.to_string()),
            "EXPOSE" => stage
                .expose
                .extend(rest.split_whitespace().map(str::to_string)),
            "ENTRYPOINT" => stage.entrypoint = Some(rest.to_string()),
            _ => {}
        }
    }
    stages
}

/// Every `image:` mapping with a `repository` under the chart's values, as `registry/repository`
/// (the top-level `image.registry` applies unless the mapping has its own) with its tag.
fn chart_images() -> Vec<(String, String, String)> {
    let values = yaml("charts/gatehouse/values.yaml");
    let registry = values["image"]["registry"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let default_tag = values["image"]["tag"].as_str().unwrap_or("").to_string();
    let mut out = Vec::new();
    fn walk(v: &Value, path: &str, reg: &str, tag: &str, out: &mut Vec<(String, String, String)>) {
        let Value::Mapping(m) = v else { return };
        if let Some(repo) = m.get("repository").and_then(Value::as_str) {
            let r = m.get("registry").and_then(Value::as_str).unwrap_or(reg);
            let t = m.get("tag").and_then(Value::as_str).unwrap_or(tag);
            // A repository that starts with a host name (`docker.io/…`) is a full reference.
            let full = if r.is_empty() || repo.split('/').next().unwrap().contains('.') {
                repo.to_string()
            } else {
                format!("{r}/{repo}")
            };
            out.push((path.to_string(), full, t.to_string()));
        }
        for (k, child) in m {
            let k = k.as_str().unwrap_or("?");
            walk(child, &format!("{path}.{k}"), reg, tag, out);
        }
    }
    walk(&values, "", &registry, &default_tag, &mut out);
    out
}

fn compose() -> Value {
    yaml("deploy/compose/compose.yaml")
}

/// `ghcr.io/gatehouse-dev/x:${GATEHOUSE_TAG:-0.1.0}` → (`ghcr.io/gatehouse-dev/x`, `0.1.0`).
fn split_compose_image(image: &str) -> (String, String) {
    let (name, tag) = image
        .split_once(":${GATEHOUSE_TAG:-")
        .unwrap_or_else(|| panic!("{image}: tag is not ${{GATEHOUSE_TAG:-<version>}}"));
    (name.to_string(), tag.trim_end_matches('}').to_string())
}

#[test]
fn versions_agree_across_workspace_chart_and_dockerfile() {
    let v = workspace_version();
    assert_eq!(
        app_version(),
        v,
        "the chart's appVersion is the workspace version"
    );
    for (name, stage) in dockerfile() {
        if let Some(default) = stage.args.get("VERSION") {
            assert_eq!(default, &v, "Dockerfile stage {name}: ARG VERSION default");
        }
    }
}

#[test]
fn chart_names_exactly_the_images_the_dockerfile_and_compose_build() {
    let app = app_version();
    let ours: Vec<_> = chart_images()
        .into_iter()
        .filter(|(_, image, _)| image.starts_with(REGISTRY_OWNER))
        .collect();
    let names: BTreeSet<String> = ours.iter().map(|(_, i, _)| i.clone()).collect();
    let want: BTreeSet<String> = DEPLOYABLES
        .iter()
        .map(|d| format!("{REGISTRY_OWNER}/{d}"))
        .collect();
    assert_eq!(names, want, "chart images: {ours:?}");
    for (path, image, tag) in &ours {
        assert!(
            tag.is_empty() || *tag == app,
            "{path}: {image} tag {tag:?} is neither empty (appVersion) nor {app}"
        );
    }

    let stages = dockerfile();
    let services = compose()["services"].as_mapping().unwrap().clone();
    let mut built = BTreeSet::new();
    for (svc, def) in &services {
        let svc = svc.as_str().unwrap();
        let Some(target) = def["build"]["target"].as_str() else {
            continue;
        };
        assert!(
            stages.contains_key(target),
            "compose {svc}: no Dockerfile target {target}"
        );
        assert_eq!(
            def["build"]["context"].as_str(),
            Some("../.."),
            "compose {svc}: build context"
        );
        let (name, tag) = split_compose_image(def["image"].as_str().unwrap());
        assert_eq!(
            name,
            format!("{REGISTRY_OWNER}/{target}"),
            "compose {svc}: image name"
        );
        assert_eq!(
            tag, app,
            "compose {svc}: default tag is the chart's appVersion"
        );
        assert_eq!(
            def["build"]["args"]["VERSION"].as_str(),
            Some(app.as_str()),
            "compose {svc}: VERSION build arg"
        );
        built.insert(name);
    }
    assert_eq!(built, want, "compose builds every deployable image");
    for d in DEPLOYABLES {
        assert!(stages.contains_key(*d), "Dockerfile has no target {d}");
    }
}

#[test]
fn dockerfile_copies_only_what_xtask_dist_builds() {
    let stages = dockerfile();
    let build = &stages["build"];
    assert!(
        build
            .runs
            .iter()
            .any(|r| r.contains("cargo xtask dist --out /dist")),
        "the build stage builds through `cargo xtask dist`"
    );
    let dist_names: BTreeSet<&str> = BINARIES.iter().map(|b| b.name).collect();
    let mut copied = BTreeSet::new();
    for (name, stage) in &stages {
        for (from, paths) in &stage.copies {
            if from.as_deref() != Some("build") {
                continue;
            }
            let (dst, srcs) = paths.split_last().unwrap();
            for src in srcs {
                if let Some(bin) = src.strip_prefix("/dist/") {
                    assert!(
                        dist_names.contains(bin),
                        "stage {name} copies /dist/{bin}, which xtask dist does not build"
                    );
                    assert_eq!(dst, &format!("/usr/local/bin/{bin}"), "stage {name}");
                    copied.insert(bin);
                } else {
                    assert!(
                        src.starts_with("/state/"),
                        "stage {name} copies {src} from build"
                    );
                }
            }
        }
        if let Some(ep) = &stage.entrypoint {
            let bin = ep.split('"').nth(1).unwrap();
            let bin = bin.strip_prefix("/usr/local/bin/").unwrap();
            assert!(
                stage
                    .copies
                    .iter()
                    .any(|(_, p)| p.iter().any(|s| s == &format!("/dist/{bin}"))),
                "stage {name}: entrypoint {bin} is not copied from /dist"
            );
        }
    }
    assert_eq!(
        copied, dist_names,
        "every binary xtask dist builds ships in an image"
    );
    // The build context leaves out target/ (tens of GB here) and the quick start's keys.
    let ignore = read(".dockerignore");
    for entry in [
        "target/",
        "deploy/compose/tls/",
        "deploy/compose/secrets/",
        "deploy/compose/gatehouse.kubeconfig",
    ] {
        assert!(
            ignore.lines().any(|l| l.trim() == entry),
            ".dockerignore lacks {entry}"
        );
    }
}

#[test]
fn images_are_pinned_minimal_labelled_and_non_root() {
    let stages = dockerfile();
    let toolchain = read("rust-toolchain.toml");
    let channel = toolchain
        .lines()
        .find_map(|l| l.strip_prefix("channel = "))
        .unwrap()
        .trim_matches('"');
    let rust = &stages["build"].from;
    assert!(
        rust.starts_with(&format!("docker.io/library/rust:{channel}-")),
        "build image {rust} is the pinned toolchain {channel}"
    );
    // Every base image names its tag (or digest) explicitly. The build and probe images pin a
    // version; distroless publishes no version tags (only digests), so its tag names the Debian
    // release and the user variant.
    for (name, stage) in &stages {
        let (_, tag) = stage.from.rsplit_once(':').unwrap_or(("", ""));
        assert!(
            !tag.is_empty() && !tag.contains('/'),
            "stage {name}: base image {} has no explicit tag",
            stage.from
        );
        if !stage.from.starts_with("gcr.io/distroless/") {
            assert!(
                tag.starts_with(|c: char| c.is_ascii_digit()) && tag.contains('.'),
                "stage {name}: base image {} is not pinned to a version",
                stage.from
            );
        }
    }
    for target in ["gateway", "collector", "agent", "cli"] {
        let s = &stages[target];
        assert!(
            s.from.starts_with("gcr.io/distroless/"),
            "{target}: runtime {}",
            s.from
        );
        for key in ["source", "version", "revision", "licenses", "title"] {
            let k = format!("org.opencontainers.image.{key}");
            assert!(s.labels.contains_key(&k), "{target}: no {k} label");
        }
        assert_eq!(s.labels["org.opencontainers.image.version"], "${VERSION}");
        assert_eq!(s.labels["org.opencontainers.image.revision"], "${GIT_REV}");
        let user = s.user.as_deref().unwrap_or("0");
        let root = user.split(':').next() == Some("0") || user.starts_with("root");
        assert_eq!(root, target == "agent", "{target}: USER {user}");
    }
    // A health check on the ops port each long-running image exposes.
    for (target, port) in [
        ("gateway", "9090"),
        ("collector", "9091"),
        ("agent", "9465"),
    ] {
        let s = &stages[target];
        let hc = s
            .healthcheck
            .as_deref()
            .unwrap_or_else(|| panic!("{target}: no HEALTHCHECK"));
        assert!(
            hc.contains(&format!("http://127.0.0.1:{port}/healthz")),
            "{target}: {hc}"
        );
        assert!(
            s.expose.iter().any(|p| p == port),
            "{target}: {port} not exposed"
        );
        let hc_bin = hc.split('"').nth(1).unwrap();
        assert!(
            s.copies
                .iter()
                .any(|(_, p)| p.last().map(String::as_str) == Some(hc_bin)),
            "{target}: health-check program {hc_bin} is not in the image"
        );
    }
    // The agent image says which capabilities it needs.
    let desc = &stages["agent"].labels["org.opencontainers.image.description"];
    for cap in ["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"] {
        assert!(desc.contains(cap), "agent description does not name {cap}");
    }
}

#[test]
fn compose_wires_clickhouse_collector_gateway_and_an_opt_in_agent() {
    let c = compose();
    let s = &c["services"];
    // ClickHouse: the official image, the version the chart runs.
    let ch = s["clickhouse"]["image"].as_str().unwrap();
    assert!(
        ch.starts_with("docker.io/clickhouse/clickhouse-server:"),
        "{ch}"
    );
    let values = yaml("charts/gatehouse/values.yaml");
    if let (Some(repo), Some(tag)) = (
        values["clickhouse"]["image"]["repository"].as_str(),
        values["clickhouse"]["image"]["tag"].as_str(),
    ) {
        assert_eq!(
            ch,
            format!("{repo}:{tag}"),
            "compose and chart run the same ClickHouse"
        );
    }
    // Migrations run once, to completion, before the collector serves.
    assert_eq!(
        s["collector-migrate"]["command"][0].as_str(),
        Some("migrate")
    );
    assert_eq!(
        s["collector"]["depends_on"]["collector-migrate"]["condition"].as_str(),
        Some("service_completed_successfully")
    );
    assert_eq!(
        s["collector-migrate"]["depends_on"]["clickhouse"]["condition"].as_str(),
        Some("service_healthy")
    );
    // The user's kubeconfig is mounted read-only where GATEWAY_KUBECONFIG points.
    let gw = &s["gateway"];
    let kubeconfig = gw["environment"]["GATEWAY_KUBECONFIG"].as_str().unwrap();
    let mounts: Vec<&str> = gw["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        mounts
            .iter()
            .any(|m| m.ends_with(&format!(":{kubeconfig}:ro"))),
        "kubeconfig mount in {mounts:?}"
    );
    assert_eq!(
        gw["environment"]["GATEWAY_UPSTREAM_MODE"].as_str(),
        Some("kubeconfig")
    );
    // The agent only with `--profile agent`, never privileged.
    let agent = &s["agent"];
    assert_eq!(agent["profiles"][0].as_str(), Some("agent"));
    assert!(agent["privileged"].is_null() || agent["privileged"].as_bool() == Some(false));
    for (name, svc) in s.as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        if name != "agent" {
            assert!(svc["profiles"].is_null(), "{name} must start by default");
        }
    }
    // Every named volume and secret a service uses is declared.
    for (name, svc) in s.as_mapping().unwrap() {
        for secret in svc["secrets"].as_sequence().into_iter().flatten() {
            let secret = secret.as_str().unwrap();
            assert!(
                !c["secrets"][secret].is_null(),
                "{name:?}: secret {secret} undeclared"
            );
        }
        for v in svc["volumes"].as_sequence().into_iter().flatten() {
            let src = v.as_str().unwrap().split(':').next().unwrap();
            if !src.starts_with(['.', '/', '~', '$']) {
                assert!(
                    c["volumes"].get(src).is_some(),
                    "{name:?}: volume {src} undeclared"
                );
            }
        }
    }
}

/// A misspelt variable would be ignored silently: every `GATEWAY_*`, `COLLECTOR_*` and `AGENT_*`
/// the compose file sets must be a flag's `env = "…"` in that binary's sources.
#[test]
fn compose_sets_only_variables_the_binaries_read() {
    let root = xtask::workspace_root();
    let mut sources = String::new();
    fn collect(dir: &std::path::Path, out: &mut String) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                collect(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push_str(&std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    for dir in ["gateway/src", "shipper/src", "collector/src", "agent/src"] {
        collect(&root.join(dir), &mut sources);
    }
    let c = compose();
    let mut checked = 0;
    let mut check_env = |svc: &str, env: &Value| {
        for (k, _) in env.as_mapping().into_iter().flatten() {
            let k = k.as_str().unwrap();
            if ["GATEWAY_", "COLLECTOR_", "AGENT_"]
                .iter()
                .any(|p| k.starts_with(p))
            {
                assert!(
                    sources.contains(&format!("env = \"{k}\"")),
                    "compose {svc}: {k} is not read by any flag"
                );
                checked += 1;
            }
        }
    };
    for (svc, def) in c["services"].as_mapping().unwrap() {
        check_env(svc.as_str().unwrap(), &def["environment"]);
    }
    check_env("x-collector-env", &c["x-collector-env"]);
    assert!(checked > 10, "only {checked} variables checked");
}

#[test]
fn dist_plan_is_locked_and_builds_every_binary() {
    let args = dist::Args {
        profile: "release".into(),
        out: None,
        target: None,
        plan: true,
        sbom: false,
    };
    let a = dist::cargo_args(&args);
    assert!(a.iter().any(|x| x == "--locked"));
    assert!(
        a.windows(2)
            .any(|w| w[0] == "--profile" && w[1] == "release")
    );
    for b in BINARIES {
        assert!(
            a.windows(2)
                .any(|w| w[0] == "--package" && w[1] == b.package),
            "{} missing from {a:?}",
            b.package
        );
    }
    // The release profile: LTO, one codegen unit, stripped, except the eBPF object.
    let manifest = read("Cargo.toml");
    let release = manifest.split("[profile.release]").nth(1).unwrap();
    let release = release.split("\n[").next().unwrap();
    for want in ["lto = \"fat\"", "codegen-units = 1", "strip = \"symbols\""] {
        assert!(release.contains(want), "[profile.release] lacks {want}");
    }
    let ebpf = manifest
        .split("[profile.release.package.gatehouse-agent-ebpf]")
        .nth(1)
        .expect("the eBPF object opts out of stripping");
    let ebpf = ebpf.split("\n[").next().unwrap();
    assert!(
        ebpf.contains("strip = \"none\"") && ebpf.contains("debug = 2"),
        "{ebpf}"
    );
}

#[test]
fn version_lines_and_elf_checks() {
    dist::check_version_line("gateway 0.1.0 (rev 1a2b3c4d5e6f, built 2026-11-22)\n").unwrap();
    for bad in [
        "gateway 0.1.0",
        "gateway 0.1.0 (rev , built 2026-11-22)",
        "gateway 0.1.0 (rev 1a2b3c4d5e6f, built 22.11.2026)",
        "gateway 9.9.9 (rev 1a2b3c4d5e6f, built 2026-11-22)",
    ] {
        assert!(dist::check_version_line(bad).is_err(), "{bad:?} accepted");
    }
    // This test binary is an x86-64/aarch64 ELF: sections parse, but it is no eBPF object.
    let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    let sections = dist::elf_sections(&me).unwrap();
    assert!(sections.iter().any(|s| s == ".text"), "{sections:?}");
    let err = dist::check_ebpf_object(&me).unwrap_err().to_string();
    assert!(err.contains("EM_BPF"), "{err}");
    assert!(dist::check_ebpf_object(&[]).is_err());
    assert!(
        dist::elf_sections(b"not an elf file at all, but long enough to be read as a header....")
            .is_err()
    );
}
