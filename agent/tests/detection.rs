//! The real agent binary with real BPF on real cgroups v2: detection, attribution, exemption,
//! enforce mode, runtime endpoint updates, the dedup window and restarts with pinned maps.
//! Needs root; skips loudly without it.
#![allow(clippy::unwrap_used)]

mod support;

use std::{net::SocketAddr, time::Duration};

use gatehouse_proto::v1::Verdict;
use support::{
    Agent, PinDir, TestCgroup, closed_port, connect_from, listener, loaded_named, require,
};

/// Not a test: the body of helper processes that `support::connect_from` re-executes.
#[test]
#[ignore = "helper process entry point, run by the other tests"]
fn helper() {
    support::helper_main();
}

const POD: &str =
    "kubepods.slice/kubepods-besteffort-pod1b4e28ba_2fa1_11d2_883f_0016d3cca427.slice";
const POD_UID: &str = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";

fn endpoint_arg(kind: &str, addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("--endpoint={kind}={}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("--endpoint={kind}=[{}]:{}", a.ip(), a.port()),
    }
}

#[test]
fn pod_and_host_connects_are_flagged_with_attribution_and_the_gateway_is_not() {
    let Some(_serial) =
        require("pod_and_host_connects_are_flagged_with_attribution_and_the_gateway_is_not")
    else {
        return;
    };
    let cg = TestCgroup::new(&[POD, "host", "gateway"]);
    let pin = PinDir::new();
    let dir = tempfile::tempdir().unwrap();
    let l4 = listener("127.0.0.1:0");
    let l6 = listener("[::1]:0");
    let (a4, a6) = (l4.local_addr().unwrap(), l6.local_addr().unwrap());
    let agent = Agent::start(
        dir.path(),
        &pin.0,
        &[
            endpoint_arg("service_vip", a4),
            endpoint_arg("endpoint_ip", a6),
            format!("--attach-cgroup={}", cg.root.display()),
            format!("--exempt-cgroup={}", cg.path("gateway").display()),
            "--dedup-window=300ms".into(),
        ],
    );

    let p4 = connect_from(&cg.path(POD), a4, 1);
    let p6 = connect_from(&cg.path(POD), a6, 1);
    let h4 = connect_from(&cg.path("host"), a4, 1);
    let gw = connect_from(&cg.path("gateway"), a4, 3);
    assert_eq!(
        (p4.ok, p6.ok, h4.ok, gw.ok),
        (1, 1, 1, 3),
        "audit mode must not interfere"
    );

    let alerts = agent.wait_alerts(3, Duration::from_secs(10));
    assert_eq!(alerts.len(), 3, "{alerts:#?}");
    let find = |tgid: u32| {
        alerts
            .iter()
            .find(|(_, a)| a.tgid == tgid)
            .unwrap_or_else(|| panic!("no alert for {tgid}: {alerts:#?}"))
    };

    for (helper, addr, tag) in [(&p4, a4, "service_vip"), (&p6, a6, "endpoint_ip")] {
        let (ev, a) = find(helper.tgid);
        assert_eq!(ev.producer.as_ref().unwrap().component, "agent");
        assert_eq!(
            uuid::Uuid::parse_str(&ev.event_id)
                .unwrap()
                .get_version_num(),
            7
        );
        assert_eq!(a.node, "test-node");
        assert_eq!(a.pid, helper.tid);
        assert_eq!(a.comm, helper.comm);
        assert_eq!(a.cgroup_id, cg.id(POD));
        assert!(a.cgroup_path.ends_with(POD), "{}", a.cgroup_path);
        assert_eq!(a.pod_uid, POD_UID);
        assert!(!a.host_process);
        assert_eq!(a.matched_by, tag);
        assert_eq!(a.verdict, Verdict::Allowed as i32);
        assert_eq!(a.count, 1);
        let orig = a.original_destination.as_ref().unwrap();
        assert_eq!(
            (orig.ip.as_str(), orig.port),
            (addr.ip().to_string().as_str(), u32::from(addr.port()))
        );
        // egress saw the SYN leave; nothing rewrote it here, so final == original.
        assert_eq!(a.final_destination.as_ref(), Some(orig));
        assert!(
            a.netns_inode != 0 || a.exe.is_empty(),
            "netns read while the process lived"
        );
    }
    let (_, h) = find(h4.tgid);
    assert!(
        h.host_process,
        "a process outside kubepods is a host process: {h:?}"
    );
    assert_eq!(h.cgroup_id, cg.id("host"));
    assert!(alerts.iter().all(|(_, a)| a.cgroup_id != cg.id("gateway")));
    // Counters come from the kernel once a second.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(agent.metric("gatehouse_agent_exempt_matches_total"), 3);
    assert_eq!(agent.metric("gatehouse_agent_matches_total"), 3);
    assert_eq!(agent.metric("gatehouse_agent_lost_events_total"), 0);
    agent.stop();
}

#[test]
fn enforce_mode_refuses_with_eperm_and_other_destinations_work() {
    let Some(_serial) = require("enforce_mode_refuses_with_eperm_and_other_destinations_work")
    else {
        return;
    };
    let cg = TestCgroup::new(&["pod"]);
    let pin = PinDir::new();
    let dir = tempfile::tempdir().unwrap();
    let api = listener("127.0.0.1:0");
    let other = listener("127.0.0.1:0");
    let api6 = listener("[::1]:0");
    let agent = Agent::start(
        dir.path(),
        &pin.0,
        &[
            endpoint_arg("external", api.local_addr().unwrap()),
            endpoint_arg("external", api6.local_addr().unwrap()),
            format!("--attach-cgroup={}", cg.root.display()),
            format!("--enforce-cgroup={}", cg.path("pod").display()),
            "--dedup-window=200ms".into(),
        ],
    );
    let blocked = connect_from(&cg.path("pod"), api.local_addr().unwrap(), 2);
    assert_eq!((blocked.eperm, blocked.ok), (2, 0), "{blocked:?}");
    let blocked6 = connect_from(&cg.path("pod"), api6.local_addr().unwrap(), 1);
    assert_eq!((blocked6.eperm, blocked6.ok), (1, 0), "{blocked6:?}");
    let fine = connect_from(&cg.path("pod"), other.local_addr().unwrap(), 3);
    assert_eq!((fine.ok, fine.eperm), (3, 0), "{fine:?}");
    // Outside the enforcing cgroup the same destination is allowed (default audit).
    let outside = connect_from(&cg.root, api.local_addr().unwrap(), 1);
    assert_eq!(outside.ok, 1);

    let alerts = agent.wait_alerts(3, Duration::from_secs(10));
    let b = alerts.iter().find(|(_, a)| a.tgid == blocked.tgid).unwrap();
    assert_eq!(b.1.verdict, Verdict::Blocked as i32);
    assert_eq!(b.1.count, 2);
    let b6 = alerts
        .iter()
        .find(|(_, a)| a.tgid == blocked6.tgid)
        .unwrap();
    assert_eq!(b6.1.verdict, Verdict::Blocked as i32);
    let o = alerts.iter().find(|(_, a)| a.tgid == outside.tgid).unwrap();
    assert_eq!(o.1.verdict, Verdict::Allowed as i32);
    assert!(alerts.iter().all(|(_, a)| a.tgid != fine.tgid));
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(agent.metric("gatehouse_agent_blocks_total"), 3);
    agent.stop();
}

#[test]
fn endpoint_set_updates_at_runtime_from_the_endpoints_file() {
    let Some(_serial) = require("endpoint_set_updates_at_runtime_from_the_endpoints_file") else {
        return;
    };
    let cg = TestCgroup::new(&["pod"]);
    let pin = PinDir::new();
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    let file = dir.path().join("endpoints");
    let first = listener("127.0.0.1:0").local_addr().unwrap();
    let later = closed_port("127.0.0.1:0");
    std::fs::write(
        &file,
        format!("# control plane\nnode_ip=127.0.0.1:{}\n", first.port()),
    )
    .unwrap();
    let agent = Agent::start(
        &journal,
        &pin.0,
        &[
            format!("--endpoints-file={}", file.display()),
            "--refresh-interval=200ms".into(),
            format!("--attach-cgroup={}", cg.root.display()),
            "--dedup-window=200ms".into(),
        ],
    );
    let before = connect_from(&cg.path("pod"), later, 1);
    assert_eq!(before.refused, 1);
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        support::read_alerts(&journal).is_empty(),
        "not yet an API endpoint"
    );

    std::fs::write(
        &file,
        format!(
            "node_ip=127.0.0.1:{}\nnode_ip=127.0.0.1:{}\n",
            first.port(),
            later.port()
        ),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while agent.metric("gatehouse_agent_endpoint_entries") != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "endpoint file change not applied"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = connect_from(&cg.path("pod"), later, 1);
    let alerts = agent.wait_alerts(1, Duration::from_secs(10));
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0].1.tgid, after.tgid);
    assert_eq!(
        alerts[0].1.original_destination.as_ref().unwrap().port,
        u32::from(later.port())
    );
    assert_eq!(alerts[0].1.matched_by, "node_ip");
    agent.stop();
}

#[test]
fn ten_thousand_connects_in_a_window_are_one_alert_with_their_count() {
    let Some(_serial) = require("ten_thousand_connects_in_a_window_are_one_alert_with_their_count")
    else {
        return;
    };
    let cg = TestCgroup::new(&["pod"]);
    let pin = PinDir::new();
    let dir = tempfile::tempdir().unwrap();
    let target = closed_port("127.0.0.1:0");
    let agent = Agent::start(
        dir.path(),
        &pin.0,
        &[
            endpoint_arg("external", target),
            format!("--attach-cgroup={}", cg.root.display()),
            // Long enough that 10,000 refused loopback connects fit in one window.
            "--dedup-window=8s".into(),
        ],
    );
    let burst = connect_from(&cg.path("pod"), target, 10_000);
    assert_eq!(burst.refused, 10_000, "{burst:?}");
    let alerts = agent.wait_alerts(1, Duration::from_secs(20));
    // Give a duplicate the chance to appear before asserting there is none.
    std::thread::sleep(Duration::from_millis(300));
    let alerts = if alerts.is_empty() {
        alerts
    } else {
        support::read_alerts(&agent.journal)
    };
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0].1.count, 10_000);
    assert_eq!(alerts[0].1.tgid, burst.tgid);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(agent.metric("gatehouse_agent_matches_total"), 10_000);
    assert_eq!(agent.metric("gatehouse_agent_ring_events_total"), 1);
    agent.stop();
}

#[test]
fn a_restarted_agent_reuses_pinned_maps_without_duplicate_attachments() {
    let Some(_serial) =
        require("a_restarted_agent_reuses_pinned_maps_without_duplicate_attachments")
    else {
        return;
    };
    let cg = TestCgroup::new(&["pod"]);
    let pin = PinDir::new();
    let dir = tempfile::tempdir().unwrap();
    let target = listener("127.0.0.1:0").local_addr().unwrap();
    let args = [
        endpoint_arg("external", target),
        format!("--attach-cgroup={}", cg.root.display()),
        "--dedup-window=200ms".into(),
    ];
    let before = loaded_named("gh_connect4");
    let first = Agent::start(dir.path(), &pin.0, &args);
    assert_eq!(loaded_named("gh_connect4"), before + 1);
    let one = connect_from(&cg.path("pod"), target, 1);
    assert_eq!(first.wait_alerts(1, Duration::from_secs(10)).len(), 1);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(first.metric("gatehouse_agent_matches_total"), 1);
    first.crash();
    // The links died with the process: nothing of it stays attached or loaded.
    assert_eq!(loaded_named("gh_connect4"), before);
    assert!(pin.0.join("GH_ENDPOINTS4").exists(), "maps stay pinned");

    let second = Agent::start(dir.path(), &pin.0, &args);
    assert_eq!(
        loaded_named("gh_connect4"),
        before + 1,
        "exactly one attachment after restart"
    );
    std::thread::sleep(Duration::from_millis(1100));
    // The kernel counters were kept in the pinned map.
    assert_eq!(second.metric("gatehouse_agent_matches_total"), 1);
    let two = connect_from(&cg.path("pod"), target, 1);
    let alerts = second.wait_alerts(2, Duration::from_secs(10));
    assert_eq!(alerts.len(), 2);
    assert_eq!((alerts[0].1.tgid, alerts[1].1.tgid), (one.tgid, two.tgid));
    assert!(
        alerts.iter().all(|(_, a)| a.count == 1),
        "one connect each, no double counting"
    );
    second.stop();
    assert_eq!(
        loaded_named("gh_connect4"),
        before,
        "clean shutdown detaches"
    );
}

#[test]
fn dry_run_prints_the_endpoint_set_without_loading_anything() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse-agent"))
        .args([
            "--dry-run",
            "--endpoint=service_vip=10.96.0.1:443,dns=localhost:6443",
            "--endpoint=external=[fd00::/64]:443",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("10.96.0.1/32:443 service_vip"), "{text}");
    assert!(text.contains("127.0.0.1/32:6443 dns"), "{text}");
    assert!(text.contains("[fd00::/64]:443 external"), "{text}");
}

#[test]
fn bad_config_is_one_line_and_exit_64() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse-agent"))
        .args(["--endpoint=vip=10.0.0.1:443"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "clap rejects an unparsable flag with 2"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse-agent"))
        .env_remove("AGENT_ENDPOINTS")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--endpoint"), "{err}");
}

#[test]
fn an_https_collector_without_its_ca_is_a_config_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse-agent"))
        .args([
            "--endpoint=service_vip=10.96.0.1:443",
            "--collector-url=https://collector:7443",
        ])
        .arg("--journal-dir")
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(64),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("CA"));
}
