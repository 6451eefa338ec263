//! Optional reasons on alerts: a process that opened a ServiceAccount token path, and one
//! that is `kubectl` (seen at exec), each get the reason on their alert; a plain process gets
//! none. Real tracepoints, real BPF; needs root, skips loudly without it.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::{Agent, PinDir, TestCgroup, connect_from, connect_from_as, listener, require};

/// Not a test: the body of helper processes.
#[test]
#[ignore = "helper process entry point, run by the other tests"]
fn helper() {
    support::helper_main();
}

const TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

#[test]
fn token_opens_and_kubectl_execs_are_reasons_on_the_alert() {
    let Some(_serial) = require("token_opens_and_kubectl_execs_are_reasons_on_the_alert") else {
        return;
    };
    let cg = TestCgroup::new(&["pod"]);
    let pin = PinDir::new();
    let dir = tempfile::tempdir().unwrap();
    let api = listener("127.0.0.1:0");
    let target = api.local_addr().unwrap();
    let kubectl = dir.path().join("kubectl");
    std::os::unix::fs::symlink(std::env::current_exe().unwrap(), &kubectl).unwrap();
    let journal = dir.path().join("journal");
    let agent = Agent::start(
        &journal,
        &pin.0,
        &[
            format!("--endpoint=service_vip={target}"),
            format!("--attach-cgroup={}", cg.root.display()),
            "--dedup-window=200ms".into(),
            "--no-kube".into(),
        ],
    );
    let reader = connect_from_as(
        &cg.path("pod"),
        &std::env::current_exe().unwrap(),
        Some(TOKEN),
        target,
        1,
    );
    let tool = connect_from_as(&cg.path("pod"), &kubectl, None, target, 1);
    let plain = connect_from(&cg.path("pod"), target, 1);
    assert_eq!((reader.ok, tool.ok, plain.ok), (1, 1, 1));

    let alerts = agent.wait_alerts(3, Duration::from_secs(10));
    assert_eq!(alerts.len(), 3, "{alerts:#?}");
    let of = |tgid: u32| {
        &alerts
            .iter()
            .find(|(_, a)| a.tgid == tgid)
            .unwrap_or_else(|| panic!("no alert for {tgid}: {alerts:#?}"))
            .1
    };
    assert_eq!(
        of(reader.tgid).reasons,
        [format!("opened token path {TOKEN}")]
    );
    assert_eq!(of(tool.tgid).reasons, ["exec kubectl"]);
    assert!(of(plain.tgid).reasons.is_empty(), "{:?}", of(plain.tgid));
    agent.stop();
}
