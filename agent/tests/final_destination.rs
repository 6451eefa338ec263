//! A ClusterIP-style destination rewritten by an nftables DNAT rule (what kube-proxy does) to
//! the real listener: the alert carries the address the process dialled and the one its
//! packets really went to. Runs in its own network namespace so no host rule or route is
//! touched. Needs root, `ip` and `nft`; skips loudly without them (fails under CI).
#![allow(clippy::unwrap_used)]

mod support;

use std::{
    net::{SocketAddr, TcpListener},
    os::fd::AsFd as _,
    process::Command,
    time::Duration,
};

use support::{Agent, PinDir, TestCgroup, require};

/// Not a test: the body of helper processes.
#[test]
#[ignore = "helper process entry point, run by the other tests"]
fn helper() {
    support::helper_main();
}

const CLUSTER_IP: &str = "10.254.77.1";

/// A named network namespace with loopback up, deleted on drop.
struct NetNs(String);

impl NetNs {
    fn new() -> Self {
        let name = format!("gh-dnat-{}", std::process::id());
        run("ip", &["netns", "add", &name]);
        let ns = Self(name);
        ns.exec("ip", &["link", "set", "lo", "up"]);
        // The ClusterIP range has a route (as kube-proxy clusters do), so connect() gets as far
        // as the nat OUTPUT hook.
        ns.exec("ip", &["route", "add", "10.254.77.0/24", "dev", "lo"]);
        ns
    }

    fn exec(&self, cmd: &str, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.0, cmd];
        all.extend_from_slice(args);
        run("ip", &all);
    }

    /// Binds a listener inside the namespace (a socket keeps the namespace it was made in).
    fn listener(&self) -> TcpListener {
        let path = format!("/var/run/netns/{}", self.0);
        std::thread::scope(|s| {
            s.spawn(|| {
                let f = std::fs::File::open(&path).unwrap();
                nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                TcpListener::bind("127.0.0.1:0").unwrap()
            })
            .join()
            .unwrap()
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        || Command::new(tool)
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
}

/// `support::connect_from`, with the helper inside network namespace `ns`.
fn connect_in(ns: &NetNs, cg: &std::path::Path, target: SocketAddr) -> support::HelperResult {
    // Into the cgroup first: `ip netns exec` remounts /sys, hiding the cgroup2 mount.
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"echo $$ > "$1/cgroup.procs" && shift && exec "$@""#)
        .arg("sh")
        .arg(cg)
        .args(["ip", "netns", "exec", &ns.0])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("GH_HELPER_TARGET", target.to_string())
        .env("GH_HELPER_COUNT", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("GHRESULT ").map(|(_, r)| r.to_string()))
        .unwrap_or_else(|| {
            panic!(
                "helper printed no result: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let mut r = support::HelperResult::default();
    for kv in line.split(' ') {
        let (k, v) = kv.split_once('=').unwrap();
        match k {
            "tgid" => r.tgid = v.parse().unwrap(),
            "ok" => r.ok = v.parse().unwrap(),
            _ => {}
        }
    }
    r
}

#[test]
fn a_dnatted_cluster_ip_alert_carries_original_and_final_destination() {
    let Some(_serial) =
        require("a_dnatted_cluster_ip_alert_carries_original_and_final_destination")
    else {
        return;
    };
    if !(have("ip") && have("nft")) {
        let msg = "a_dnatted_cluster_ip_alert_carries_original_and_final_destination: needs `ip` \
                   and `nft` (scripts/install-tools.sh installs them)";
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("SKIPPED {msg}");
        return;
    }
    let ns = NetNs::new();
    let real = ns.listener();
    let real_addr = real.local_addr().unwrap();
    // kube-proxy's nftables mode in miniature: ClusterIP:443 → the endpoint.
    let rules = format!(
        "table ip gatehouse_test {{ chain out {{ type nat hook output priority -100; \
         ip daddr {CLUSTER_IP} tcp dport 443 dnat to {real_addr}; }}; }}"
    );
    ns.exec("nft", &[&rules]);

    let cg = TestCgroup::new(&["pod"]);
    let pin = PinDir::new();
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(
        dir.path(),
        &pin.0,
        &[
            format!("--endpoint=service_vip={CLUSTER_IP}:443"),
            format!("--attach-cgroup={}", cg.root.display()),
            "--dedup-window=200ms".into(),
            "--no-kube".into(),
        ],
    );
    let cluster_ip: SocketAddr = format!("{CLUSTER_IP}:443").parse().unwrap();
    let c = connect_in(&ns, &cg.path("pod"), cluster_ip);
    assert_eq!(c.ok, 1, "the DNAT rule must deliver the connect: {c:?}");

    let alerts = agent.wait_alerts(1, Duration::from_secs(10));
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0].1;
    assert_eq!(a.tgid, c.tgid);
    assert_eq!(a.matched_by, "service_vip");
    let orig = a.original_destination.as_ref().unwrap();
    assert_eq!((orig.ip.as_str(), orig.port), (CLUSTER_IP, 443));
    let fin = a.final_destination.as_ref().unwrap();
    assert_eq!(
        (fin.ip.as_str(), fin.port),
        ("127.0.0.1", u32::from(real_addr.port())),
        "the final destination is the DNAT target"
    );
    agent.stop();
}
