//! The demo's bypass step, as root: the real node agent (eBPF, audit mode) watching a demo pod's
//! cgroup, real kubectl connecting from inside it straight to the API server, and the alert read
//! back with `gatehouse alerts` from the collector and from its webhook routing. Everything it
//! starts (agent, cgroups, pinned maps) is removed on drop, so failures and ctrl-c clean up too.
use super::webhook;
use anyhow::Context;
use gatehouse_tests::apiserver::{ADMIN_TOKEN, TestApiServer};
use gatehouse_tests::clickhouse::TestClickHouse;
use std::ffi::OsString;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The node name the agent reports; the demo pod is scheduled on it.
const NODE: &str = "demo-node";
const POD_NAMESPACE: &str = "agents";
const POD: &str = "ops-runner-0";
const CONTAINER: &str = "runner";
/// The agent's name in the collector's ingest token file.
pub const INGEST_NAME: &str = "demo-node-agent";

/// What the bypass step needs, found before the build so the agent is built with its eBPF.
pub struct Ready {
    /// Where cgroup v2 is mounted (`/sys/fs/cgroup` or, on hybrid hosts, `.../unified`).
    cgroup2: PathBuf,
    /// The directory holding bpf-linker.
    pub linker_dir: PathBuf,
    /// PATH for `cargo build` when bpf-linker had to be installed (it was not on PATH).
    pub path_env: Option<OsString>,
}

/// Whether the bypass step can run here (root, cgroup v2, the eBPF toolchain); Err says why not.
pub fn prepare() -> Result<Ready, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "not running as root: the eBPF node agent loads BPF programs and the demo \
                    creates a cgroup for its pod"
                .into(),
        );
    }
    let cgroup2 = cgroup2_mount().ok_or_else(|| {
        "no cgroup v2 hierarchy is mounted (the agent's programs attach to cgroup v2)".to_string()
    })?;
    let (linker_dir, path_env) = ebpf_toolchain()?;
    Ok(Ready {
        cgroup2,
        linker_dir,
        path_env,
    })
}

/// The cgroup2 mount point from /proc/self/mounts.
fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
    })
}

/// bpf-linker from PATH, or installed and located as scripts/test.sh does (cached; builds it
/// against the nightly's LLVM on a fresh machine).
fn ebpf_toolchain() -> Result<(PathBuf, Option<OsString>), String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(dir) = std::env::split_paths(&path).find(|d| d.join("bpf-linker").is_file()) {
        return Ok((dir, None));
    }
    println!("bpf-linker is not on PATH: running scripts/install-ebpf-toolchain.sh");
    let script = crate::workspace_root().join("scripts/install-ebpf-toolchain.sh");
    let out = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "the eBPF toolchain is not available ({} exited with {}; see its output above)",
            script.display(),
            out.status
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    if !dir.join("bpf-linker").is_file() {
        return Err(format!(
            "{} printed {:?}, which holds no bpf-linker",
            script.display(),
            dir.display()
        ));
    }
    let mut dirs = vec![dir.clone()];
    dirs.extend(std::env::split_paths(&path));
    let joined = std::env::join_paths(dirs).map_err(|e| format!("building PATH: {e}"))?;
    Ok((dir, Some(joined)))
}

/// What the bypass step uses from the rest of the demo.
pub struct Ctx<'a> {
    pub dir: &'a Path,
    pub kubectl: PathBuf,
    pub home: &'a Path,
    pub api: &'a TestApiServer,
    pub ch: &'a TestClickHouse,
    /// `127.0.0.1:PORT` of the collector's gRPC listener.
    pub collector_addr: &'a str,
    pub collector_ca: &'a Path,
    /// An ingest token the collector accepts (its `--ingest-token-file` lists it).
    pub ingest_token: &'a str,
    /// An OIDC token of a reader group, for `gatehouse alerts`.
    pub reader_token: &'a str,
    pub webhook: &'a mut webhook::Receiver,
    /// A kubeconfig straight to the API server.
    pub direct_kubeconfig: &'a Path,
}

/// A cgroup v2 subtree, removed on drop (processes moved to the root first).
struct DemoCgroup {
    cgroup2: PathBuf,
    root: PathBuf,
}

impl DemoCgroup {
    fn create(cgroup2: &Path, leaf: &str) -> anyhow::Result<Self> {
        let root = cgroup2.join(format!("gatehouse-demo-{}", std::process::id()));
        std::fs::create_dir(&root).with_context(|| format!("creating {}", root.display()))?;
        let cg = Self {
            cgroup2: cgroup2.to_path_buf(),
            root,
        };
        let path = cg.root.join(leaf);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(cg)
    }
}

impl Drop for DemoCgroup {
    fn drop(&mut self) {
        // Deepest first: a cgroup can only go once it has no processes and no children.
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
                    let _ = std::fs::write(self.cgroup2.join("cgroup.procs"), pid);
                }
            }
            if let Err(e) = std::fs::remove_dir(d) {
                eprintln!("could not remove cgroup {}: {e}", d.display());
            }
        }
    }
}

/// The agent's bpffs pin directory, removed on drop (the agent keeps pins across restarts).
struct PinDir(PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        if self.0.exists()
            && let Err(e) = std::fs::remove_dir_all(&self.0)
        {
            eprintln!("could not remove pinned maps {}: {e}", self.0.display());
        }
    }
}

/// The real `gatehouse-agent`; SIGTERM (then SIGKILL after 5 s) on drop.
struct AgentProc {
    child: Child,
    ops: SocketAddr,
}

impl AgentProc {
    /// Starts the agent and waits for its `gatehouse-agent ready ops=ADDR` line.
    async fn start(args: &[String], log: &Path) -> anyhow::Result<Self> {
        let bin = gatehouse_tests::binaries::path("gatehouse-agent")?;
        let log_file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = Command::new(bin)
            .args(args)
            .env("LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .context("starting gatehouse-agent")?;
        let stdout = child.stdout.take().context("agent stdout")?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("gatehouse-agent ready ops=")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        let mut agent = Self {
            child,
            ops: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let ready = tokio::time::timeout(Duration::from_secs(30), rx).await;
        match ready {
            Ok(Ok(addr)) => {
                agent.ops = addr
                    .parse()
                    .with_context(|| format!("agent printed ops address {addr:?}"))?;
                Ok(agent)
            }
            _ => {
                let status = agent.child.try_wait().ok().flatten();
                anyhow::bail!(
                    "gatehouse-agent did not become ready (exit status {status:?}); its log:\n{}",
                    tail(log, 15)
                )
            }
        }
    }

    /// One value of the agent's Prometheus metrics.
    async fn metric(&self, name: &str) -> anyhow::Result<u64> {
        let mut s = tokio::net::TcpStream::connect(self.ops).await?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n")
            .await?;
        let mut text = String::new();
        s.read_to_string(&mut text).await?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .with_context(|| format!("metric {name} missing from the agent's /metrics"))
    }

    /// SIGTERM and wait: the clean shutdown, which flushes the journal and the shipper.
    fn stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        self.terminate()
    }

    fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id())?);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill()?;
        let status = self.child.wait()?;
        anyhow::bail!("gatehouse-agent ignored SIGTERM for 5 s and was killed ({status})")
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        if let Err(e) = self.terminate() {
            eprintln!("stopping gatehouse-agent: {e:#}");
        }
    }
}

/// The last `n` lines of a log file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs the bypass step. Drop order cleans up: the agent first (its programs detach), then the
/// demo cgroup, then the pinned maps.
pub async fn run(ready: &Ready, cx: Ctx<'_>) -> anyhow::Result<()> {
    // The pod the AI agent's runner lives in, as kubelet would have registered it.
    cx.api.create_object(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": POD_NAMESPACE}
    }))?;
    let pod = cx.api.create_object(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": POD, "namespace": POD_NAMESPACE, "labels": {"app": "ops-runner"}},
        "spec": {"nodeName": NODE, "serviceAccountName": "ops-runner",
            "containers": [{"name": CONTAINER, "image": "ghcr.io/example/ops-runner:0.9"}]}
    }))?;
    let uid = pod["metadata"]["uid"]
        .as_str()
        .context("the test API server gave the pod no uid")?
        .to_string();
    // A container id in containerd's form, derived from the uid (there is no container runtime).
    let cid = format!("{:0>64}", uid.replace('-', ""));
    cx.api.set_status(
        "",
        "pods",
        POD_NAMESPACE,
        POD,
        serde_json::json!({"phase": "Running", "containerStatuses": [{"name": CONTAINER,
            "containerID": format!("containerd://{cid}"), "image": "ghcr.io/example/ops-runner:0.9",
            "imageID": "", "ready": true, "restartCount": 0}]}),
    )?;
    // The systemd-driver path kubelet and containerd give a pod's container.
    let leaf = format!(
        "kubepods.slice/kubepods-pod{}.slice/cri-containerd-{cid}.scope",
        uid.replace('-', "_")
    );

    let pins = PinDir(PathBuf::from(format!(
        "/sys/fs/bpf/gatehouse-demo-{}",
        std::process::id()
    )));
    let cgroup = DemoCgroup::create(&ready.cgroup2, &leaf)?;
    let pod_cg = cgroup.root.join(&leaf);
    println!(
        "simulated: node {NODE:?} is this machine; pod {POD_NAMESPACE}/{POD} (container {CONTAINER:?}) \
         is registered in the test API server, with a made-up containerd id, and is a cgroup v2 \
         directory named as kubelet and containerd name a pod's container:\n  {}",
        pod_cg.display()
    );

    let kube_ca = cx.dir.join("agent-kube-ca.crt");
    let kube_token = cx.dir.join("agent-kube-token");
    let ingest_token = cx.dir.join("agent-ingest-token");
    std::fs::write(&kube_ca, cx.api.ca_pem())?;
    // The admin token stands in for the agent's ServiceAccount (list/watch pods, nodes,
    // services and endpointslices).
    std::fs::write(&kube_token, ADMIN_TOKEN)?;
    std::fs::write(&ingest_token, cx.ingest_token)?;
    let journal = cx.dir.join("agent-journal");
    let log = cx.dir.join("agent.log");
    let api_addr = cx.api.addr();
    let args = vec![
        format!("--pin-dir={}", pins.0.display()),
        format!("--journal-dir={}", journal.display()),
        "--ops-addr=127.0.0.1:0".into(),
        format!("--node-name={NODE}"),
        "--default-mode=audit".into(),
        // There is no cluster network: the API server's address is given statically, as an
        // EndpointSlice address would be.
        format!("--endpoint=endpoint_ip={api_addr}"),
        // Only the demo's subtree: this machine's other processes (the gateway among them)
        // are not the demo's business. In a cluster: the cgroup root, the gateway exempted.
        format!("--attach-cgroup={}", cgroup.root.display()),
        format!("--kube-api-url={}", cx.api.url()),
        format!("--kube-ca-file={}", kube_ca.display()),
        format!("--kube-token-file={}", kube_token.display()),
        format!("--collector-url=https://{}", cx.collector_addr),
        format!("--collector-ca={}", cx.collector_ca.display()),
        format!("--collector-token-file={}", ingest_token.display()),
        "--dedup-window=1s".into(),
    ];
    println!(
        "$ gatehouse-agent --node-name={NODE} --default-mode=audit --endpoint=endpoint_ip={api_addr} \\\n    \
         --attach-cgroup={} --kube-api-url={} \\\n    --collector-url=https://{} ...   (log: {})",
        cgroup.root.display(),
        cx.api.url(),
        cx.collector_addr,
        log.display()
    );
    let agent = AgentProc::start(&args, &log).await?;
    // The pod watch must have delivered the pod before the connect, or the alert could not
    // name it (the agent also remembers pods deleted before their alert is written).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pods = agent.metric("gatehouse_agent_kube_pods").await?;
        if pods >= 1 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the agent's pod watch did not see {POD_NAMESPACE}/{POD} within 20 s; its log:\n{}",
            tail(&log, 15)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "agent ready: audit mode, {} API-server endpoint(s) (the static one, and the test API server's `kubernetes` Service VIP 10.96.0.1:443), {} pod on {NODE}",
        agent.metric("gatehouse_agent_endpoint_entries").await?,
        agent.metric("gatehouse_agent_kube_pods").await?,
    );

    println!(
        "$ kubectl get pods -n payments   (in pod {POD_NAMESPACE}/{POD}'s cgroup, straight to the API server {api_addr}, not via the gateway)"
    );
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(r#"echo $$ > "$1/cgroup.procs" && shift && exec "$@""#)
        .arg("sh")
        .arg(&pod_cg)
        .arg(&cx.kubectl)
        .args(["get", "pods", "-n", "payments", "-o", "name"])
        .env("KUBECONFIG", cx.direct_kubeconfig)
        .env("HOME", cx.home)
        .output()
        .await?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    print!("{}", String::from_utf8_lossy(&out.stderr));
    anyhow::ensure!(
        out.status.success(),
        "the direct kubectl failed ({}): audit mode must not interfere",
        out.status
    );

    println!(
        "waiting for the alert: agent journal -> shipper -> collector -> ClickHouse (the agent writes it when its 1 s dedup window closes)"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = cx
            .ch
            .query_text("SELECT count() FROM alerts")
            .await
            .unwrap_or_default();
        if n.trim().parse::<u64>().unwrap_or(0) >= 1 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no bypass alert reached ClickHouse within 30 s; the agent's log:\n{}",
            tail(&log, 15)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Read back as an operator would: the CLI over the collector's Query API (reader group,
    // access audit), not ClickHouse directly.
    let source = [
        format!("--collector=https://{}", cx.collector_addr),
        format!("--collector-ca={}", cx.collector_ca.display()),
        "--collector-server-name=localhost".to_string(),
    ];
    for extra in [&[][..], &["--json"][..]] {
        println!(
            "$ gatehouse alerts --collector https://{} --namespace {POD_NAMESPACE}{}",
            cx.collector_addr,
            extra.iter().map(|a| format!(" {a}")).collect::<String>()
        );
        let out = tokio::process::Command::new(gatehouse_tests::binaries::path("gatehouse")?)
            .arg("alerts")
            .args(&source)
            .args(["--namespace", POD_NAMESPACE])
            .args(extra)
            .env("GATEHOUSE_TOKEN", cx.reader_token)
            .output()
            .await
            .context("running gatehouse alerts")?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        anyhow::ensure!(
            out.status.success(),
            "gatehouse alerts failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }

    println!(
        "the collector routed it to the demo's webhook receiver ({}):",
        cx.webhook.url
    );
    let got = cx
        .webhook
        .next(Duration::from_secs(20))
        .await
        .context("the collector sent no webhook within 20 s of storing the alert")?;
    println!(
        "POST {}   Idempotency-Key: {}",
        got.path, got.idempotency_key
    );
    println!("{}", serde_json::to_string_pretty(&got.body)?);

    let status = agent.stop()?;
    anyhow::ensure!(status.success(), "gatehouse-agent exited with {status}");
    drop(cgroup);
    drop(pins);
    Ok(())
}
