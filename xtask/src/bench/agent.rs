//! `cargo xtask bench agent` (root): the node agent's cost and capacity, measured on loopback in
//! one run: `connect()` to a non-matching destination without and with the programs attached,
//! matching connects per second, and connect-to-alert latency to the row in ClickHouse.
use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};

const CGROUP2: &str = "/sys/fs/cgroup/unified";
/// Connects per timed round of the overhead comparison: ~25 ms, short enough that a neighbour's
/// burst spoils few rounds, long enough that the cgroup move between rounds is noise.
const ROUND: u32 = 4_000;
/// Pairs of rounds (one in each cgroup) in the overhead comparison.
const PAIRS: usize = 60;
/// Connects measured with `kernel.bpf_stats_enabled` for the programs' own run time.
const STATS_CONNECTS: u32 = 20_000;
/// Matching connects in the throughput run.
const MATCHING: u32 = 200_000;
const LATENCY_SAMPLES: usize = 20;
/// Matching UDP connect() calls in the hook-capacity run.
const UDP_MATCHING: u32 = 1_000_000;

pub fn agent() -> anyhow::Result<()> {
    crate::bench::run_release("agent", in_release)
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
    // The agent attaches to `on` only; `off` is its twin without programs, for the baseline.
    let on = BenchCgroup::new("on")?;
    let off = BenchCgroup::new("off")?;
    // This process joins the cgroup, so its connects are the ones the programs see.
    join(&on.0)?;
    let result = run(&bin, &on.0, &off.0);
    let _ = join(Path::new(CGROUP2));
    result
}

/// Moves this whole process (every thread) into `cg`; sockets created afterwards belong to it.
fn join(cg: &Path) -> anyhow::Result<()> {
    std::fs::write(cg.join("cgroup.procs"), std::process::id().to_string())
        .with_context(|| format!("joining {}", cg.display()))
}

fn run(bin: &Path, cg: &Path, off: &Path) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pin = PathBuf::from(format!(
        "/sys/fs/bpf/gatehouse-bench-{}",
        std::process::id()
    ));
    let _pin_guard = RemoveOnDrop(pin.clone());
    let api = closed_port()?;
    let other = closed_port()?;

    // 1. Overhead on non-matching connects. One agent stays up throughout with its programs on
    // `cg` only, and this process alternates between `off` and `cg` in ABBA order, so a slow
    // drift in the machine's load cancels within a pair and both sides carry the agent's own
    // background work. Each pair gives one ratio; the median ratio is the figure.
    let agent = AgentProc::start(bin, dir.path(), &pin, cg, api, "1s", &[])?;
    for c in [off, cg] {
        join(c)?;
        warm(other);
    }
    let (mut without, mut with, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..PAIRS {
        let off_first = i % 2 == 0;
        let (a, b) = if off_first { (off, cg) } else { (cg, off) };
        join(a)?;
        let ta = connect_loop(other, ROUND);
        join(b)?;
        let tb = connect_loop(other, ROUND);
        let (wo, wi) = if off_first { (ta, tb) } else { (tb, ta) };
        without.push(wo);
        with.push(wi);
        ratios.push(wi / wo);
    }
    join(cg)?;
    let (wo, wi) = (quantile(&mut without, 0.5), quantile(&mut with, 0.5));
    println!(
        "non-matching connect(): {wo:.0} ns without, {wi:.0} ns with the programs attached (medians, +{:.0} ns); per-pair ratio {:.3}x median, p10 {:.3}x, p90 {:.3}x (target <= 1.05x; {PAIRS} ABBA pairs x {ROUND} connects, agent up in both)",
        wi - wo,
        quantile(&mut ratios, 0.5),
        quantile(&mut ratios, 0.1),
        quantile(&mut ratios, 0.9),
    );
    print_program_cost(&agent, other)?;
    agent.stop();

    // 2. Matching connects per second, two threads, with short windows so many alerts roll.
    let agent = AgentProc::start(bin, dir.path(), &pin, cg, api, "200ms", &[])?;
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

    // 3. Connect-to-alert latency at the collector, with the default 1 s window (the alert is
    // written when the window closes): the agent ships its journal to the release collector,
    // which inserts into ClickHouse (the chdb fixture); a sample ends when the alert's row is
    // there. The journal leg alone (the agent's own counter) is printed beside it.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (ch, col, pki) = rt.block_on(async {
        let ch = gatehouse_tests::clickhouse::TestClickHouse::start(dir.path()).await?;
        let pki = gatehouse_tests::collector_proc::CollectorPki::write(dir.path())?;
        let mut args = ch.collector_args();
        args.extend(pki.args());
        let col =
            gatehouse_tests::collector_proc::CollectorProc::start(dir.path(), 0, &args).await?;
        anyhow::Ok((ch, col, pki))
    })?;
    let (ca, token) = (
        dir.path().join("collector-ca.crt"),
        dir.path().join("ingest-token"),
    );
    std::fs::write(&ca, &pki.server_ca.pem)?;
    std::fs::write(&token, &pki.token)?;
    let shipping = [
        format!("--collector-url=https://{}", col.addr),
        format!("--collector-ca={}", ca.display()),
        format!("--collector-token-file={}", token.display()),
    ];
    let stored = || -> anyhow::Result<u64> {
        let n = rt.block_on(ch.query_text("SELECT count() FROM alerts"))?;
        n.trim().parse().context("alert count")
    };
    let agent = AgentProc::start(bin, dir.path(), &pin, cg, api, "1s", &shipping)?;
    let (mut journal, mut lat) = (Vec::new(), Vec::new());
    for _ in 0..LATENCY_SAMPLES {
        let (before, rows) = (agent.metric("gatehouse_agent_alerts_total")?, stored()?);
        let t0 = Instant::now();
        let _ = TcpStream::connect(api);
        while agent.metric("gatehouse_agent_alerts_total")? == before {
            ensure!(
                t0.elapsed() < Duration::from_secs(10),
                "no alert within 10s"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        journal.push(t0.elapsed().as_secs_f64() * 1000.0);
        while stored()? == rows {
            ensure!(
                t0.elapsed() < Duration::from_secs(30),
                "the alert did not reach ClickHouse within 30s; collector log:\n{}",
                col.log.lock().join("\n")
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "connect -> alert row in ClickHouse via the collector (window 1s): p50 {:.0} ms, p99 {:.0} ms over {LATENCY_SAMPLES} (target <= 2000 ms p99); in the agent's journal: p50 {:.0} ms, p99 {:.0} ms",
        quantile(&mut lat, 0.5),
        quantile(&mut lat, 0.99),
        quantile(&mut journal, 0.5),
        quantile(&mut journal, 0.99)
    );
    agent.stop();
    drop(col);
    drop(ch);
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

/// The `q` quantile (nearest rank) of a non-empty sample.
fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * q).round() as usize]
}

/// The programs' own run time per non-matching connect, from the kernel's per-program
/// statistics (`kernel.bpf_stats_enabled`, on only for this short run because it adds two clock
/// reads to every program run): which program the overhead above is spent in.
fn print_program_cost(agent: &AgentProc, target: SocketAddr) -> anyhow::Result<()> {
    const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";
    struct Restore(String);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = std::fs::write(SYSCTL, &self.0);
        }
    }
    let _restore = Restore(std::fs::read_to_string(SYSCTL)?.trim().to_owned());
    std::fs::write(SYSCTL, "1")?;
    let before = agent.program_stats()?;
    connect_loop(target, STATS_CONNECTS);
    let after = agent.program_stats()?;
    let mut by_type: std::collections::BTreeMap<u32, (u64, u64)> = Default::default();
    for (id, (ty, ns, cnt)) in &after {
        let (_, ns0, cnt0) = before.get(id).copied().unwrap_or((*ty, 0, 0));
        let e = by_type.entry(*ty).or_default();
        e.0 += ns.saturating_sub(ns0);
        e.1 += cnt.saturating_sub(cnt0);
    }
    let per = |x: u64| x as f64 / f64::from(STATS_CONNECTS);
    let parts: Vec<String> = by_type
        .iter()
        .filter(|(_, (_, cnt))| *cnt > 0)
        .map(|(ty, (ns, cnt))| {
            let name = match ty {
                5 => "tracepoint".to_owned(),
                8 => "cgroup_skb".to_owned(),
                13 => "sock_ops".to_owned(),
                18 => "cgroup_sock_addr".to_owned(),
                t => format!("type {t}"),
            };
            format!("{name} {:.0} ns in {:.2} runs", per(*ns), per(*cnt))
        })
        .collect();
    let total: u64 = by_type.values().map(|(ns, _)| ns).sum();
    println!(
        "programs' own run time per non-matching connect (bpf_stats, {STATS_CONNECTS} connects): {}; total {:.0} ns",
        parts.join(", "),
        per(total)
    );
    Ok(())
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
        extra: &[String],
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(bin)
            .arg(format!("--endpoint=external={api}"))
            .arg(format!("--attach-cgroup={}", cg.display()))
            .arg(format!("--pin-dir={}", pin.display()))
            .arg(format!("--journal-dir={}", dir.join("journal").display()))
            .arg(format!("--dedup-window={window}"))
            .args(["--ops-addr=127.0.0.1:0", "--node-name=bench"])
            .args(extra)
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

    /// prog id → (type, run_time_ns, run_cnt) for every program the agent holds, from
    /// `/proc/<pid>/fdinfo` (link fds name a prog_id too but carry no run counts).
    fn program_stats(&self) -> anyhow::Result<std::collections::BTreeMap<u32, (u32, u64, u64)>> {
        let mut out = std::collections::BTreeMap::new();
        for entry in std::fs::read_dir(format!("/proc/{}/fdinfo", self.child.id()))? {
            let Ok(text) = std::fs::read_to_string(entry?.path()) else {
                continue;
            };
            let field = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
            };
            if let (Some(ty), Some(id), Some(ns), Some(cnt)) = (
                field("prog_type:"),
                field("prog_id:"),
                field("run_time_ns:"),
                field("run_cnt:"),
            ) {
                out.insert(u32::try_from(id)?, (u32::try_from(ty)?, ns, cnt));
            }
        }
        ensure!(!out.is_empty(), "no BPF programs in the agent's fdinfo");
        Ok(out)
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
    fn new(suffix: &str) -> anyhow::Result<Self> {
        let p =
            PathBuf::from(CGROUP2).join(format!("gatehouse-bench-{}-{suffix}", std::process::id()));
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
