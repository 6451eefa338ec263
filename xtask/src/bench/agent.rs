//! `cargo xtask bench agent` (root): the node agent's cost and capacity, measured on loopback in
//! one run: `connect()` to a non-matching destination without and with the programs attached,
//! matching connects per second with every one accounted for, and connect-to-alert latency.
use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};

const CGROUP2: &str = "/sys/fs/cgroup/unified";
/// Connects per timed round of the overhead comparison.
const ROUND: u32 = 20_000;
const ROUNDS: usize = 5;
/// Matching connects in the throughput run.
const MATCHING: u32 = 200_000;
const LATENCY_SAMPLES: usize = 20;
/// Matching UDP connect() calls in the hook-capacity run.
const UDP_MATCHING: u32 = 1_000_000;

pub fn agent() -> anyhow::Result<()> {
    crate::bench::run_release("agent", &["gatehouse-agent"], in_release)
}

/// The bench itself, run by the release xtask only.
fn in_release() -> anyhow::Result<()> {
    ensure!(
        std::fs::read_to_string("/proc/self/status")?
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")),
        "bench agent needs root (it loads BPF programs and creates a cgroup)"
    );
    let bin = crate::workspace_root().join("target/release/gatehouse-agent");
    let cg = BenchCgroup::new()?;
    // This process joins the cgroup, so its connects are the ones the programs see.
    std::fs::write(cg.0.join("cgroup.procs"), std::process::id().to_string())?;
    let result = run(&bin, &cg.0);
    let _ = std::fs::write(
        Path::new(CGROUP2).join("cgroup.procs"),
        std::process::id().to_string(),
    );
    result
}

fn run(bin: &Path, cg: &Path) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pin = PathBuf::from(format!(
        "/sys/fs/bpf/gatehouse-bench-{}",
        std::process::id()
    ));
    let _pin_guard = RemoveOnDrop(pin.clone());
    let api = closed_port()?;
    let other = closed_port()?;

    // 1. Overhead on non-matching connects: rounds alternate without and with the agent.
    let mut without = Vec::new();
    let mut with = Vec::new();
    warm(other);
    for _ in 0..ROUNDS {
        without.push(connect_loop(other, ROUND));
        let agent = AgentProc::start(bin, dir.path(), &pin, cg, api, "1s")?;
        with.push(connect_loop(other, ROUND));
        agent.stop();
    }
    let (wo, wi) = (median(&mut without), median(&mut with));
    println!(
        "non-matching connect(): {wo:.0} ns without, {wi:.0} ns with the programs attached: {:.3}x (target <= 1.05x; median of {ROUNDS} rounds x {ROUND})",
        wi / wo
    );

    // 2. Matching connects per second, two threads, with short windows so many alerts roll.
    let agent = AgentProc::start(bin, dir.path(), &pin, cg, api, "200ms")?;
    let base_alerted = agent.metric("gatehouse_agent_alerted_connects_total")?;
    let base_matches = agent.metric("gatehouse_agent_matches_total")?;
    let started = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || connect_loop(api, MATCHING / 2)))
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let secs = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut alerted, mut matches);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        alerted = agent.metric("gatehouse_agent_alerted_connects_total")? - base_alerted;
        matches = agent.metric("gatehouse_agent_matches_total")? - base_matches;
        if alerted >= u64::from(MATCHING) || Instant::now() > deadline {
            break;
        }
    }
    let lost = agent.metric("gatehouse_agent_lost_events_total")?;
    let alerts = agent.metric("gatehouse_agent_alerts_total")?;
    println!(
        "matching connects: {:.0}/s over {MATCHING} (target >= 50k/s); kernel matched {matches}, alerts cover {alerted} in {alerts} alerts, lost ring events {lost}",
        f64::from(MATCHING) / secs
    );
    ensure!(
        alerted == u64::from(MATCHING) && lost == 0,
        "connects went unaccounted"
    );

    // 2b. The same, with the TCP handshake taken out: connect() on a UDP socket runs the same
    // cgroup hook and dedup path but sends nothing, so this is the agent's own capacity rather
    // than the loopback TCP stack's (which bounds 2 on a 2-vCPU machine).
    let base_alerted = agent.metric("gatehouse_agent_alerted_connects_total")?;
    let base_events = agent.metric("gatehouse_agent_ring_events_total")?;
    let started = Instant::now();
    let threads: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || udp_connect_loop(api, UDP_MATCHING / 2)))
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let secs = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut alerted;
    loop {
        std::thread::sleep(Duration::from_millis(300));
        alerted = agent.metric("gatehouse_agent_alerted_connects_total")? - base_alerted;
        if alerted >= u64::from(UDP_MATCHING) || Instant::now() > deadline {
            break;
        }
    }
    let lost = agent.metric("gatehouse_agent_lost_events_total")?;
    let events = agent.metric("gatehouse_agent_ring_events_total")? - base_events;
    println!(
        "matching connects, hook path only (UDP connect()): {:.0}/s over {UDP_MATCHING}; alerts cover {alerted}, {events} ring events, lost ring events {lost}",
        f64::from(UDP_MATCHING) / secs
    );
    ensure!(
        alerted == u64::from(UDP_MATCHING) && lost == 0,
        "UDP connects went unaccounted"
    );
    agent.stop();

    // 3. Connect-to-alert latency with the default 1 s window (the alert is written when the
    // window closes), measured as the alert becoming visible on /metrics.
    let agent = AgentProc::start(bin, dir.path(), &pin, cg, api, "1s")?;
    let mut lat = Vec::new();
    for _ in 0..LATENCY_SAMPLES {
        let before = agent.metric("gatehouse_agent_alerts_total")?;
        let t0 = Instant::now();
        let _ = TcpStream::connect(api);
        while agent.metric("gatehouse_agent_alerts_total")? == before {
            ensure!(
                t0.elapsed() < Duration::from_secs(10),
                "no alert within 10s"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);
    let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "connect -> alert in the journal (window 1s): p50 {:.0} ms, p99 {:.0} ms over {LATENCY_SAMPLES} (target <= 2000 ms p99; collector leg not measured)",
        p(0.5),
        p(0.99)
    );
    agent.stop();
    Ok(())
}

fn warm(target: SocketAddr) {
    connect_loop(target, 2000);
}

/// Mean ns per refused connect() over `n`.
fn connect_loop(target: SocketAddr, n: u32) -> f64 {
    let t0 = Instant::now();
    for _ in 0..n {
        let _ = TcpStream::connect(target);
    }
    t0.elapsed().as_nanos() as f64 / f64::from(n)
}

/// `n` connect() calls on fresh UDP sockets (a new tgid-local socket each time, as a client
/// library would make), each one running the cgroup connect4 hook.
fn udp_connect_loop(target: SocketAddr, n: u32) {
    for _ in 0..n {
        if let Ok(s) = std::net::UdpSocket::bind("127.0.0.1:0") {
            let _ = s.connect(target);
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn closed_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

struct AgentProc {
    child: Child,
    ops: SocketAddr,
}

impl AgentProc {
    fn start(
        bin: &Path,
        dir: &Path,
        pin: &Path,
        cg: &Path,
        api: SocketAddr,
        window: &str,
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(bin)
            .arg(format!("--endpoint=external={api}"))
            .arg(format!("--attach-cgroup={}", cg.display()))
            .arg(format!("--pin-dir={}", pin.display()))
            .arg(format!("--journal-dir={}", dir.join("journal").display()))
            .arg(format!("--dedup-window={window}"))
            .args(["--ops-addr=127.0.0.1:0", "--node-name=bench"])
            .env("LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .context("starting gatehouse-agent")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let Some(ops) = line.trim().strip_prefix("gatehouse-agent ready ops=") else {
            let _ = child.kill();
            bail!("agent did not start: {line:?}");
        };
        Ok(Self {
            ops: ops.parse()?,
            child,
        })
    }

    fn metric(&self, name: &str) -> anyhow::Result<u64> {
        let mut s = TcpStream::connect(self.ops)?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .with_context(|| format!("metric {name} missing"))
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct BenchCgroup(PathBuf);

impl BenchCgroup {
    fn new() -> anyhow::Result<Self> {
        let p = PathBuf::from(CGROUP2).join(format!("gatehouse-bench-{}", std::process::id()));
        std::fs::create_dir(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(Self(p))
    }
}

impl Drop for BenchCgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(
            Path::new(CGROUP2).join("cgroup.procs"),
            std::process::id().to_string(),
        );
        let _ = std::fs::remove_dir(&self.0);
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
