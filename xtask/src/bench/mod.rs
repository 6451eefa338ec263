//! `cargo xtask bench gateway`: direct-to-test-server against through-gateway in one run, with
//! wrk on loopback, plus the gateway's RSS growth while streaming a 1 GiB `logs -f`.
// `bench collector`: ingest rate, queryable lag, listing and replay start against ClickHouse.
pub mod collector;
mod compare;
pub(crate) mod procfs;
mod rss;
// `bench soak`: 200 get/list clients, 20 exec sessions, 5 watches through gateway, collector and
// ClickHouse; verdicts on errors, p99 drift, RSS, journal and ClickHouse rows.
pub mod soak;
// `bench streams`: exec and port-forward throughput, RSS under 1 GiB of exec stdout.
pub mod streams;
mod wrk;

use anyhow::Context;
use gatehouse_tests::apiserver::{ADMIN_TOKEN, ApiServerOptions, GATEWAY_TOKEN, TestApiServer};
use gatehouse_tests::gateway_proc::GatewayProc;
use gatehouse_tests::oidc::TestIssuer;
use serde_json::json;

/// Bytes of the streamed log for the memory measurement.
const LOG_BYTES: u64 = 1 << 30;
/// Seconds per wrk run (`compare::ROUNDS` interleaved rounds, each path at 1 and 32 connections).
const SECONDS: u32 = 5;

pub fn gateway() -> anyhow::Result<()> {
    run_release("gateway", || {
        wrk::ensure_installed()?;
        let tools = crate::tools::tools_bin()?;
        block_on(run(&tools))
    })
}

/// The entry of every bench: benchmarks measure optimised code only, so this builds `packages`
/// and the release xtask, and a debug xtask hands `bench <name>` over to the release one; only
/// the release xtask runs `body`.
pub(crate) fn run_release(
    name: &str,
    body: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if rerun_in_release(&release_build(), name)? {
        return Ok(());
    }
    body()
}

/// Extra gateway flags for every gateway a bench measures, e.g.
/// `GATEHOUSE_BENCH_GATEWAY_ARGS=--upstream-http2=true` (`bench gateway` and `bench streams`).
pub(crate) fn extra_gateway_args() -> Vec<String> {
    std::env::var("GATEHOUSE_BENCH_GATEWAY_ARGS")
        .map(|extra| extra.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The parts of a bench that `var` names (comma-separated, each one of `known`); all of them
/// when `var` is unset.
pub(crate) fn parts_from_env(
    var: &str,
    known: &[&'static str],
) -> anyhow::Result<Vec<&'static str>> {
    let Ok(v) = std::env::var(var) else {
        return Ok(known.to_vec());
    };
    v.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            known
                .iter()
                .find(|k| **k == p)
                .copied()
                .with_context(|| format!("{var}: unknown part {p:?} ({})", known.join(", ")))
        })
        .collect()
}

/// Runs an async bench body on a multi-thread runtime (the servers it starts need one).
pub(crate) fn block_on(body: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(body)
}

/// Every benchmarked binary: each bench builds them all, so that they share one feature
/// resolution.
const BENCHED: [&str; 4] = [
    "gatehouse-gateway",
    "gatehouse-collector",
    "gatehouse-agent",
    "xtask",
];

/// The one cargo command that builds the benchmarked packages and the release xtask together:
/// a different set of `-p` resolves features differently (fat LTO makes that a 6-minute
/// rebuild), so one bench after another would rebuild each other's binaries.
fn release_build() -> Vec<&'static str> {
    let mut v = vec!["--release"];
    for p in BENCHED {
        v.extend(["-p", p]);
    }
    v.push("--bins");
    v
}

/// Benchmarks measure optimised code only. Builds `build`; from a debug xtask, re-runs
/// `bench <name>` from the release xtask and returns `true` (the caller is done).
fn rerun_in_release(build: &[&str], name: &str) -> anyhow::Result<bool> {
    crate::tools::cargo_build(build)?;
    if !cfg!(debug_assertions) {
        return Ok(false);
    }
    let exe = std::env::current_exe()?;
    let release = exe
        .parent()
        .and_then(std::path::Path::parent)
        .map(|target| target.join("release").join("xtask"))
        .context("locating the release xtask")?;
    let status = std::process::Command::new(release)
        .args(["bench", name])
        .current_dir(crate::workspace_root())
        .status()?;
    anyhow::ensure!(status.success(), "release bench {name} failed");
    Ok(true)
}

async fn run(tools: &std::path::Path) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut opts = ApiServerOptions::default();
    opts.objects.push(json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}
    }));
    opts.objects.push(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "one-kib", "namespace": "bench"},
        "data": {"payload": "x".repeat(900)}
    }));
    push_logger(&mut opts, LOG_BYTES);
    let Upstream {
        api,
        issuer,
        mut args,
        token,
    } = Upstream::start(opts, dir.path()).await?;
    args.extend(extra_gateway_args());
    // Further settings to compare with the defaults, `;`-separated flag sets, e.g.
    // GATEHOUSE_BENCH_COMPARE="--worker-threads=1;--upstream-http2=true". Each gets its own
    // gateway and its own direct runs.
    let variants: Vec<String> = std::env::var("GATEHOUSE_BENCH_COMPARE")
        .unwrap_or_default()
        .split(';')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect();
    println!("gateway flags: {}", args[2..].join(" "));
    // What terminating and re-encrypting TLS alone costs, next to the gateway.
    let relay = gatehouse_tests::tls_relay::TlsRelay::start(api.addr(), api.ca_pem())?;
    // What a mature HTTP reverse proxy costs here: nginx with as many workers as the gateway has
    // threads, TLS both ways, nothing recorded.
    let nginx = match gatehouse_tests::nginx_proxy::binary() {
        Ok(_) => {
            // GATEHOUSE_BENCH_NGINX_WORKERS overrides the count, to check that another does not
            // do better here.
            let workers = std::env::var("GATEHOUSE_BENCH_NGINX_WORKERS")
                .ok()
                .and_then(|w| w.parse().ok())
                .filter(|&w| w > 0)
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
            println!("nginx workers: {workers}");
            Some(gatehouse_tests::nginx_proxy::NginxProxy::start(
                api.addr(),
                api.ca_pem(),
                workers,
            )?)
        }
        Err(e) => {
            println!("WARNING: no nginx reference path ({e:#})");
            None
        }
    };
    let path = "/api/v1/namespaces/bench/configmaps/one-kib";

    let mut results = Vec::new();
    for (i, variant) in std::iter::once(String::new()).chain(variants).enumerate() {
        let mut flags = args.clone();
        flags.extend(variant.split_whitespace().map(str::to_string));
        let gw = GatewayProc::start(dir.path(), &dir.path().join(format!("journal-{i}")), &flags)
            .await?;
        let mut paths = vec![compare::Path {
            name: "direct",
            url: format!("{}{path}", api.url()),
            token: ADMIN_TOKEN.to_string(),
            pids: Vec::new(),
        }];
        paths.push(compare::Path {
            name: "relay",
            url: format!("{}{path}", relay.url),
            token: ADMIN_TOKEN.to_string(),
            pids: Vec::new(),
        });
        if let Some(nginx) = &nginx {
            paths.push(compare::Path {
                name: "nginx",
                url: format!("{}{path}", nginx.url),
                token: ADMIN_TOKEN.to_string(),
                pids: nginx.pids(),
            });
        }
        paths.push(compare::Path {
            name: "gateway",
            url: format!("{}{path}", gw.url),
            token: token.clone(),
            pids: gw.pid().into_iter().collect(),
        });
        // The wrk runs are blocking: keep them off the runtime that serves the test API server.
        let cmp = tokio::task::spawn_blocking(move || compare::measure(&paths, SECONDS)).await??;
        // Memory is measured on the shipped defaults.
        let growth = if i == 0 && std::env::var_os("GATEHOUSE_BENCH_SKIP_RSS").is_none() {
            let g = rss::stream_logs_and_watch_rss(&gw, tools, dir.path(), &issuer, LOG_BYTES)
                .await
                .context("measuring RSS while streaming logs")?;
            Some(g)
        } else {
            None
        };
        gw.stop().await?;
        let label = if variant.is_empty() {
            "defaults".to_string()
        } else {
            variant
        };
        results.push((label, cmp, growth));
    }

    println!(
        "gatehouse gateway benchmark (loopback, wrk, 1 KiB GET, median of {} rounds of {SECONDS}s runs)",
        compare::ROUNDS
    );
    for (label, cmp, growth) in results {
        cmp.print(&label);
        if let Some(growth) = growth {
            println!(
                "  RSS while streaming {} MiB logs -f: start {} KiB, peak {} KiB, growth {:.1} MiB (target ≤ 32 MiB)",
                LOG_BYTES >> 20,
                growth.start_kib,
                growth.peak_kib,
                (growth.peak_kib.saturating_sub(growth.start_kib)) as f64 / 1024.0
            );
        }
    }
    Ok(())
}

/// The test API server and OIDC issuer a benchmarked gateway fronts, the gateway flags that
/// point at them, and a caller's token (what `gatehouse_tests::fixture::GatewayEnv` sets up,
/// without starting the gateway: benches start several with their own flags).
pub(crate) struct Upstream {
    pub api: TestApiServer,
    pub issuer: TestIssuer,
    pub args: Vec<String>,
    pub token: String,
}

impl Upstream {
    /// Starts both; the kubeconfig and issuer CA are written into `dir`.
    pub(crate) async fn start(
        opts: ApiServerOptions,
        dir: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let api = TestApiServer::start(opts).await?;
        let upstream = dir.join("upstream.kubeconfig");
        api.write_kubeconfig(&upstream, GATEWAY_TOKEN)?;
        let issuer = TestIssuer::start().await?;
        let issuer_ca = dir.join("issuer-ca.pem");
        std::fs::write(&issuer_ca, &issuer.ca_pem)?;
        let token = issuer.token("bench", &["bench"], "gatehouse")?;
        let args = vec![
            "--upstream-mode=kubeconfig".to_string(),
            format!("--kubeconfig={}", upstream.display()),
            format!("--oidc-issuer-url={}", issuer.url),
            "--oidc-audience=gatehouse".into(),
            format!("--oidc-ca-file={}", issuer_ca.display()),
            "--oidc-username-prefix=-".into(),
        ];
        Ok(Self {
            api,
            issuer,
            args,
            token,
        })
    }
}

/// The pod `bench/big-logger`, whose log is `bytes` of generated lines.
pub(crate) fn push_logger(opts: &mut ApiServerOptions, bytes: u64) {
    opts.logs
        .generated_bytes
        .insert("bench/big-logger".into(), bytes);
    opts.objects.push(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "big-logger", "namespace": "bench"},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]}
    }));
}
