//! Test rig for the agent: real cgroups v2, the real agent binary, its journal and metrics, and
//! helper processes that connect from inside a given cgroup.
#![allow(dead_code, clippy::unwrap_used)]

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use gatehouse_proto::v1::{BypassAlert, Event, event::Payload};
use prost::Message as _;

pub const CGROUP2: &str = "/sys/fs/cgroup/unified";

/// Tests in one binary take turns: they count loaded programs and read kernel-wide state.
static SERIAL: Mutex<()> = Mutex::new(());

/// Returns the serialising guard, or None (after a loud SKIPPED line) when the test cannot run
/// here. A missing eBPF object fails under CI instead of skipping.
pub fn require(test: &str) -> Option<MutexGuard<'static, ()>> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED {test}: needs root to load BPF programs and create cgroups");
        return None;
    }
    let cg2 = nix::sys::statfs::statfs(CGROUP2)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
    if !cg2 {
        eprintln!("SKIPPED {test}: no cgroup v2 mounted at {CGROUP2}");
        return None;
    }
    if env!("GATEHOUSE_AGENT_EBPF_BUILT") != "1" {
        let msg = format!(
            "{test}: the agent was built without its eBPF object (no bpf-linker or nightly \
             rust-src); run scripts/install-ebpf-toolchain.sh and put its output dir on PATH"
        );
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("SKIPPED {msg}");
        return None;
    }
    Some(SERIAL.lock().unwrap_or_else(|p| p.into_inner()))
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A cgroup v2 subtree for one test, removed on drop (processes moved out first).
pub struct TestCgroup {
    pub root: PathBuf,
}

impl TestCgroup {
    pub fn new(children: &[&str]) -> Self {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let root =
            PathBuf::from(CGROUP2).join(format!("gatehouse-test-{}-{n}", std::process::id()));
        std::fs::create_dir(&root).unwrap();
        for c in children {
            std::fs::create_dir_all(root.join(c)).unwrap();
        }
        Self { root }
    }

    pub fn path(&self, child: &str) -> PathBuf {
        self.root.join(child)
    }

    pub fn id(&self, child: &str) -> u64 {
        std::fs::metadata(self.path(child)).unwrap().ino()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Deepest first; a cgroup can only be removed once it has no processes and no children.
        let mut dirs = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(d) = stack.pop() {
            if let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(e.path());
                    }
                }
            }
            dirs.push(d);
        }
        for d in dirs.iter().rev() {
            if let Ok(procs) = std::fs::read_to_string(d.join("cgroup.procs")) {
                for pid in procs.lines() {
                    let _ = std::fs::write(Path::new(CGROUP2).join("cgroup.procs"), pid);
                }
            }
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// A bpffs directory for one agent's pins, removed on drop.
pub struct PinDir(pub PathBuf);

impl PinDir {
    pub fn new() -> Self {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        Self(PathBuf::from(format!(
            "/sys/fs/bpf/gatehouse-test-{}-{n}",
            std::process::id()
        )))
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The real agent binary.
pub struct Agent {
    child: Child,
    pub ops: SocketAddr,
    pub journal: PathBuf,
}

impl Agent {
    pub fn start(journal: &Path, pin: &Path, args: &[String]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gatehouse-agent"))
            .arg("--pin-dir")
            .arg(pin)
            .arg("--journal-dir")
            .arg(journal)
            .args(["--ops-addr", "127.0.0.1:0", "--node-name", "test-node"])
            .args(args)
            .env("LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("gatehouse-agent ready ops=") {
                    let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
                }
            }
        });
        let ops = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let status = child.try_wait().unwrap();
                let _ = child.kill();
                panic!("agent did not become ready (exit status {status:?}); see its stderr above");
            }
        };
        Self {
            child,
            ops,
            journal: journal.to_path_buf(),
        }
    }

    /// SIGTERM and wait: the clean shutdown path.
    pub fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "agent exited with {status}");
    }

    /// SIGKILL: a crash.
    pub fn crash(mut self) {
        self.child.kill().unwrap();
        let _ = self.child.wait();
    }

    pub fn metrics(&self) -> String {
        let mut s = TcpStream::connect(self.ops).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    pub fn metric(&self, name: &str) -> u64 {
        let text = self.metrics();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing from:\n{text}"))
    }

    /// Waits until the journal holds at least `n` alerts, and returns them all.
    pub fn wait_alerts(&self, n: usize, timeout: Duration) -> Vec<(Event, BypassAlert)> {
        let deadline = Instant::now() + timeout;
        loop {
            let alerts = read_alerts(&self.journal);
            if alerts.len() >= n || Instant::now() > deadline {
                return alerts;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn read_alerts(dir: &Path) -> Vec<(Event, BypassAlert)> {
    let Ok(records) = gatehouse_journal::Reader::read_all(dir) else {
        return Vec::new();
    };
    records
        .into_iter()
        .map(|r| {
            let ev = Event::decode(r.payload.as_slice()).unwrap();
            let Some(Payload::Alert(a)) = ev.payload.clone() else {
                panic!("not an alert: {ev:?}")
            };
            (ev, a)
        })
        .collect()
}

/// A listening socket (never accepted from: the backlog completes the handshakes).
pub fn listener(addr: &str) -> TcpListener {
    TcpListener::bind(addr).unwrap()
}

/// A port with nothing listening: connects are refused at once (after the cgroup hook ran).
pub fn closed_port(addr: &str) -> SocketAddr {
    let l = TcpListener::bind(addr).unwrap();
    l.local_addr().unwrap()
}

/// What a helper process saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HelperResult {
    pub tgid: u32,
    pub tid: u32,
    pub comm: String,
    pub ok: u64,
    pub eperm: u64,
    pub refused: u64,
    pub other: u64,
}

/// Runs `count` connects to `target` from a fresh process placed in cgroup `cg` before it
/// starts (this test binary re-executed into its ignored `helper` test).
pub fn connect_from(cg: &Path, target: SocketAddr, count: u64) -> HelperResult {
    connect_from_as(cg, &std::env::current_exe().unwrap(), None, target, count)
}

/// [`connect_from`] with the helper started from `exe` (a symlink named `kubectl` gives the
/// process that comm) and, if `open` is set, opening that path first (a token read).
pub fn connect_from_as(
    cg: &Path,
    exe: &Path,
    open: Option<&str>,
    target: SocketAddr,
    count: u64,
) -> HelperResult {
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"echo $$ > "$1/cgroup.procs" && shift && exec "$@""#)
        .arg("sh")
        .arg(cg)
        .arg(exe)
        .args([
            "--exact",
            "helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("GH_HELPER_TARGET", target.to_string())
        .env("GH_HELPER_COUNT", count.to_string())
        .env("GH_HELPER_OPEN", open.unwrap_or(""))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("GHRESULT ").map(|(_, r)| r))
        .unwrap_or_else(|| {
            panic!(
                "helper printed no result: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let mut r = HelperResult::default();
    for kv in line.split(' ') {
        let (k, v) = kv.split_once('=').unwrap();
        match k {
            "tgid" => r.tgid = v.parse().unwrap(),
            "tid" => r.tid = v.parse().unwrap(),
            "comm" => r.comm = v.to_string(),
            "ok" => r.ok = v.parse().unwrap(),
            "eperm" => r.eperm = v.parse().unwrap(),
            "refused" => r.refused = v.parse().unwrap(),
            _ => r.other = v.parse().unwrap(),
        }
    }
    r
}

/// The body of the helper process (called from each test file's ignored `helper` test).
pub fn helper_main() {
    let Ok(target) = std::env::var("GH_HELPER_TARGET") else {
        return;
    };
    let target: SocketAddr = target.parse().unwrap();
    let count: u64 = std::env::var("GH_HELPER_COUNT").unwrap().parse().unwrap();
    let mut r = HelperResult {
        tgid: std::process::id(),
        tid: nix::unistd::gettid().as_raw() as u32,
        ..Default::default()
    };
    r.comm = std::fs::read_to_string("/proc/thread-self/comm")
        .unwrap()
        .trim()
        .to_string();
    if let Ok(path) = std::env::var("GH_HELPER_OPEN")
        && !path.is_empty()
    {
        // Whether it exists does not matter: the attempt is what is recorded.
        let _ = std::fs::File::open(&path);
    }
    for _ in 0..count {
        match TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
            Ok(_) => r.ok += 1,
            Err(e) if e.raw_os_error() == Some(libc_eperm()) => r.eperm += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => r.refused += 1,
            Err(_) => r.other += 1,
        }
    }
    println!(
        "GHRESULT tgid={} tid={} comm={} ok={} eperm={} refused={} other={}",
        r.tgid, r.tid, r.comm, r.ok, r.eperm, r.refused, r.other
    );
}

fn libc_eperm() -> i32 {
    nix::errno::Errno::EPERM as i32
}

/// Programs with this name loaded in the kernel right now.
pub fn loaded_named(name: &str) -> usize {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.name_as_str() == Some(name))
        .count()
}
