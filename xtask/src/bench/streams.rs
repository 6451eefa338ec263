//! `cargo xtask bench streams`: real kubectl exec stdout and port-forward throughput direct to
//! the test API server, through a bare TLS relay and through the gateway, in one run; and the
//! gateway's RSS growth while 1 GiB of exec stdout crosses it (and is recorded).
use super::procfs::{self, rss_kib};
use anyhow::Context;
use gatehouse_tests::apiserver::{ADMIN_TOKEN, ApiServerOptions};
use gatehouse_tests::fixture::GatewayEnv;
use gatehouse_tests::kubectl::Kubectl;
use gatehouse_tests::tls_relay::{Keep, TLS_RELAY_THREADS, TlsRelay};
use serde_json::json;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes per throughput run; rounds alternate direct and gateway runs (so both see the same
/// machine load), and the median of each is compared.
const RUN_BYTES: u64 = 256 << 20;
const ROUNDS: usize = 5;
/// Bytes of exec stdout for the memory measurement.
const RSS_BYTES: u64 = 1 << 30;

pub fn streams() -> anyhow::Result<()> {
    super::run_release("streams", || super::block_on(run()))
}

async fn run() -> anyhow::Result<()> {
    // Which measurements to run (comma-separated; all by default), so one can be profiled
    // without waiting for the others. Checked before anything starts.
    let parts = super::parts_from_env(
        "GATEHOUSE_BENCH_STREAMS_PARTS",
        &["exec", "port-forward", "rss"],
    )?;
    let opts = ApiServerOptions {
        objects: vec![
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}),
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "bench", "namespace": "bench"},
                "spec": {"containers": [{"name": "app", "image": "busybox"}]}
            }),
        ],
        ..Default::default()
    };
    let e = GatewayEnv::start(opts, &super::extra_gateway_args()).await?;
    let pid = e.gw.pid().context("the gateway has no pid")?;
    // The floor for anything that terminates TLS: the same kubectl, as admin, through a relay
    // that only decrypts and re-encrypts (tests/src/tls_relay.rs).
    let relay = TlsRelay::start(e.api.addr(), e.api.ca_pem())?;
    let relayed = Kubectl::new(&e.dir.path().join("relay"), &relay.kubeconfig(ADMIN_TOKEN))?;
    // And the floors under recording exec: the same relay writing every byte to a file before
    // forwarding it, then also chaining SHA-256 over it as the gateway's journal does.
    let keeping = |name: &str, keep: fn(std::path::PathBuf) -> Keep| -> anyhow::Result<_> {
        let files = e.dir.path().join(format!("{name}-files"));
        std::fs::create_dir_all(&files)?;
        let relay = TlsRelay::start_keeping(e.api.addr(), e.api.ca_pem(), keep(files))?;
        let k = Kubectl::new(&e.dir.path().join(name), &relay.kubeconfig(ADMIN_TOKEN))?;
        Ok((relay, k))
    };
    let (_writing, written) = keeping("write", Keep::Write)?;
    let (_hashing, hashed) = keeping("write-sha256", Keep::WriteSha256)?;
    let mib = |rate: f64| rate / f64::from(1 << 20);
    // Each phase prints as soon as it ends: a later phase failing keeps the earlier figures.
    println!(
        "gatehouse streams benchmark (loopback, TLS on every hop, real kubectl v1.35, median of {ROUNDS} interleaved rounds × {} MiB)",
        RUN_BYTES >> 20
    );

    // Exec stdout: kubectl reads `head -c N /dev/zero` from the "container", over WebSocket
    // (kubectl's default) and over SPDY; direct and gateway use the same protocol each time.
    for proto in [Proto::WebSocket, Proto::Spdy]
        .into_iter()
        .filter(|_| parts.contains(&"exec"))
    {
        exec_rate(&e.direct, 16 << 20, proto).await?; // warm-up: discovery cache, connections
        exec_rate(&e.agent, 16 << 20, proto).await?;
        exec_rate(&relayed, 16 << 20, proto).await?;
        exec_rate(&written, 16 << 20, proto).await?;
        exec_rate(&hashed, 16 << 20, proto).await?;
        let mut runs = Runs::default();
        for _ in 0..ROUNDS {
            runs.direct
                .push(exec_rate(&e.direct, RUN_BYTES, proto).await?);
            runs.relay
                .push(exec_rate(&relayed, RUN_BYTES, proto).await?);
            runs.write
                .push(exec_rate(&written, RUN_BYTES, proto).await?);
            runs.write_sha256
                .push(exec_rate(&hashed, RUN_BYTES, proto).await?);
            runs.gateway
                .push(exec_rate(&e.agent, RUN_BYTES, proto).await?);
        }
        report(&format!("exec stdout ({})", proto.name()), runs);
    }

    // Port-forward: a TCP source behind the pod writes N bytes per connection.
    let source = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let source_port = source.local_addr()?.port();
    tokio::spawn(async move {
        let chunk = vec![0x5au8; 1 << 16];
        while let Ok((mut s, _)) = source.accept().await {
            let chunk = chunk.clone();
            tokio::spawn(async move {
                let mut left = RUN_BYTES;
                while left > 0 {
                    let n = left.min(chunk.len() as u64) as usize;
                    if s.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    left -= n as u64;
                }
                let _ = s.shutdown().await;
            });
        }
    });
    // Port-forward: SPDY tunnelled over WebSocket (kubectl's default) and plain SPDY.
    for proto in [Proto::WebSocket, Proto::Spdy]
        .into_iter()
        .filter(|_| parts.contains(&"port-forward"))
    {
        let mut direct_pf = PortForward::start(&e.direct, source_port, proto).await?;
        let mut relay_pf = PortForward::start(&relayed, source_port, proto).await?;
        let mut gw_pf = PortForward::start(&e.agent, source_port, proto).await?;
        let mut runs = Runs::default();
        // CPU seconds per GiB of the one process between kubectl and the API server: the
        // relay's threads (in this process) and the gateway's, each over its own runs.
        let per_gib = |secs: f64| secs / (RUN_BYTES as f64 / f64::from(1 << 30));
        for _ in 0..ROUNDS {
            runs.direct.push(direct_pf.pull().await?);
            let before = procfs::own_threads_cpu(TLS_RELAY_THREADS);
            runs.relay.push(relay_pf.pull().await?);
            runs.relay_cpu
                .push(per_gib(procfs::own_threads_cpu(TLS_RELAY_THREADS) - before));
            let before = procfs::process_cpu(pid);
            runs.gateway.push(gw_pf.pull().await?);
            runs.gateway_cpu
                .push(per_gib(procfs::process_cpu(pid) - before));
        }
        direct_pf.child.kill().await?;
        relay_pf.child.kill().await?;
        gw_pf.child.kill().await?;
        let name = match proto {
            Proto::WebSocket => "port-forward (SPDY over WebSocket)",
            Proto::Spdy => "port-forward (SPDY)",
        };
        report(name, runs);
    }

    // Memory: the gateway's RSS while 1 GiB of exec stdout crosses it and is journaled.
    if !parts.contains(&"rss") {
        e.gw.stop().await?;
        return Ok(());
    }
    let start_kib = rss_kib(pid).unwrap_or(0);
    let peak = Arc::new(AtomicU64::new(start_kib));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(pid).unwrap_or(0), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let rss_rate = exec_rate(&e.agent, RSS_BYTES, Proto::WebSocket).await?;
    peak.fetch_max(rss_kib(pid).unwrap_or(0), Ordering::Relaxed);
    sampler.abort();
    let peak_kib = peak.load(Ordering::Relaxed);

    println!(
        "  RSS while 1 GiB of exec stdout crosses ({:.1} MiB/s): start {start_kib} KiB, peak {peak_kib} KiB, growth {:.1} MiB (target ≤ 32 MiB)",
        mib(rss_rate),
        peak_kib.saturating_sub(start_kib) as f64 / 1024.0
    );
    e.gw.stop().await?;
    Ok(())
}

/// Which of kubectl's stream protocols a run uses.
#[derive(Clone, Copy)]
enum Proto {
    /// WebSocket for exec; SPDY tunnelled over WebSocket for port-forward.
    WebSocket,
    Spdy,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::WebSocket => "WebSocket",
            Proto::Spdy => "SPDY",
        }
    }

    /// kubectl's switches: both default to WebSocket in v1.35.
    fn env(self) -> [(&'static str, &'static str); 2] {
        let on = match self {
            Proto::WebSocket => "true",
            Proto::Spdy => "false",
        };
        [
            ("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", on),
            ("KUBECTL_PORT_FORWARD_WEBSOCKETS", on),
        ]
    }
}

/// Bytes per second of each interleaved round, per path.
#[derive(Default)]
struct Runs {
    direct: Vec<f64>,
    relay: Vec<f64>,
    /// The relay writing every byte to a file first (exec only).
    write: Vec<f64>,
    /// The relay writing and SHA-256-chaining every byte first (exec only).
    write_sha256: Vec<f64>,
    gateway: Vec<f64>,
    /// CPU seconds per GiB of the relay's threads and of the gateway (port-forward only).
    relay_cpu: Vec<f64>,
    gateway_cpu: Vec<f64>,
}

/// Prints the medians of the interleaved runs, their spread, and the ratios to direct.
fn report(name: &str, mut runs: Runs) {
    let mib = |rate: f64| rate / f64::from(1 << 20);
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let spread = |v: &[f64]| format!("{:.0}–{:.0}", mib(v[0]), mib(v[v.len() - 1]));
    let d = median(&mut runs.direct);
    let r = median(&mut runs.relay);
    let g = median(&mut runs.gateway);
    let mut floors = String::new();
    for (label, v) in [
        ("relay writing every byte", &mut runs.write),
        (
            "relay writing and SHA-256-chaining every byte",
            &mut runs.write_sha256,
        ),
    ] {
        if !v.is_empty() {
            let m = median(v);
            floors += &format!(
                "; {label} {:.1} MiB/s ({}), {:.2}×",
                mib(m),
                spread(v),
                m / d
            );
        }
    }
    let cpu = if runs.relay_cpu.is_empty() || runs.gateway_cpu.is_empty() {
        String::new()
    } else {
        format!(
            "; CPU per GiB: relay {:.2} s, gateway {:.2} s",
            median(&mut runs.relay_cpu),
            median(&mut runs.gateway_cpu)
        )
    };
    println!(
        "  {name}: direct {:.1} MiB/s ({}); bare TLS relay {:.1} MiB/s ({}), {:.2}×{floors}; gateway {:.1} MiB/s ({}), ratio {:.2}× (target ≥ 0.8×){cpu}",
        mib(d),
        spread(&runs.direct),
        mib(r),
        spread(&runs.relay),
        r / d,
        mib(g),
        spread(&runs.gateway),
        g / d
    );
}

/// Bytes per second of `kubectl exec … -- head -c <bytes> /dev/zero`, reading all of it.
async fn exec_rate(k: &Kubectl, bytes: u64, proto: Proto) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut child = tokio::process::Command::new(&k.bin)
        .args(["exec", "bench", "-n", "bench", "--", "head", "-c"])
        .arg(bytes.to_string())
        .arg("/dev/zero")
        .envs(proto.env())
        .env("KUBECONFIG", &k.kubeconfig)
        .env("HOME", &k.home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut out = child.stdout.take().context("kubectl stdout")?;
    let mut buf = vec![0u8; 1 << 16];
    let mut read = 0u64;
    loop {
        let n = tokio::time::timeout(Duration::from_secs(120), out.read(&mut buf)).await??;
        if n == 0 {
            break;
        }
        read += n as u64;
    }
    let status = child.wait().await?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        status.success() && read == bytes,
        "kubectl exec read {read} of {bytes} bytes and exited {status}"
    );
    Ok(bytes as f64 / secs)
}

struct PortForward {
    child: tokio::process::Child,
    local: u16,
}

impl PortForward {
    async fn start(k: &Kubectl, remote: u16, proto: Proto) -> anyhow::Result<PortForward> {
        let local = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut child = tokio::process::Command::new(&k.bin)
            .args([
                "port-forward",
                "pod/bench",
                "-n",
                "bench",
                "--address=127.0.0.1",
                &format!("{local}:{remote}"),
            ])
            .envs(proto.env())
            .env("KUBECONFIG", &k.kubeconfig)
            .env("HOME", &k.home)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let mut out = tokio::io::BufReader::new(child.stdout.take().context("stdout")?);
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(30),
            tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line),
        )
        .await??;
        anyhow::ensure!(
            line.contains("Forwarding from"),
            "port-forward said {line:?}"
        );
        // kubectl writes "Handling connection for …" to stdout on every connection; Go dies of
        // SIGPIPE writing to a closed stdout, so the pipe is drained for kubectl's lifetime.
        tokio::spawn(async move {
            let mut sink = tokio::io::sink();
            let _ = tokio::io::copy(&mut out, &mut sink).await;
        });
        Ok(PortForward { child, local })
    }

    /// Bytes per second of one connection through the forward: the source's `RUN_BYTES`.
    async fn pull(&mut self) -> anyhow::Result<f64> {
        let started = Instant::now();
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.local)).await?;
        let mut buf = vec![0u8; 1 << 16];
        let mut read = 0u64;
        while read < RUN_BYTES {
            let n = tokio::time::timeout(Duration::from_secs(120), s.read(&mut buf)).await??;
            if n == 0 {
                let kubectl = match self.child.try_wait()? {
                    Some(status) => format!("kubectl port-forward exited {status}"),
                    None => "kubectl port-forward still runs".to_string(),
                };
                anyhow::bail!("port-forward ended after {read} of {RUN_BYTES} bytes ({kubectl})");
            }
            read += n as u64;
        }
        Ok(read as f64 / started.elapsed().as_secs_f64())
    }
}
