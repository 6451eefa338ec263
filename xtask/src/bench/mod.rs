//! `cargo xtask bench gateway`: direct-to-test-server against through-gateway in one run, with
//! wrk on loopback, plus the gateway's RSS growth while streaming a 1 GiB `logs -f`.
mod rss;
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
const SECONDS: u32 = 10;

pub fn gateway() -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        // Measure optimised code only: re-run this command from a release build.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args([
                "run",
                "--release",
                "--quiet",
                "-p",
                "xtask",
                "--",
                "bench",
                "gateway",
            ])
            .current_dir(crate::workspace_root())
            .status()?;
        anyhow::ensure!(status.success(), "release bench failed");
        return Ok(());
    }
    wrk::ensure_installed()?;
    let tools = crate::tools::tools_bin()?;
    crate::tools::cargo_build(&["--release", "-p", "gatehouse-gateway", "--bins"])?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(&tools))
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
    opts.logs
        .generated_bytes
        .insert("bench/big-logger".into(), LOG_BYTES);
    opts.objects.push(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "big-logger", "namespace": "bench"},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]}
    }));
    let api = TestApiServer::start(opts).await?;
    let upstream = dir.path().join("upstream.kubeconfig");
    api.write_kubeconfig(&upstream, GATEWAY_TOKEN)?;
    let issuer = TestIssuer::start().await?;
    let issuer_ca = dir.path().join("issuer-ca.pem");
    std::fs::write(&issuer_ca, &issuer.ca_pem)?;
    let mut args = vec![
        "--upstream-mode=kubeconfig".into(),
        format!("--kubeconfig={}", upstream.display()),
        format!("--oidc-issuer-url={}", issuer.url),
        "--oidc-audience=gatehouse".into(),
        format!("--oidc-ca-file={}", issuer_ca.display()),
        "--oidc-username-prefix=-".into(),
    ];
    // Extra gateway flags for comparing settings, e.g. GATEHOUSE_BENCH_GATEWAY_ARGS=--upstream-http2=false
    if let Ok(extra) = std::env::var("GATEHOUSE_BENCH_GATEWAY_ARGS") {
        args.extend(extra.split_whitespace().map(str::to_string));
    }
    println!("gateway flags: {}", args[2..].join(" "));
    let gw = GatewayProc::start(dir.path(), &dir.path().join("journal"), &args).await?;
    let token = issuer.token("bench", &["bench"], "gatehouse")?;
    let path = "/api/v1/namespaces/bench/configmaps/one-kib";
    let direct_url = format!("{}{path}", api.url());
    let gw_url = format!("{}{path}", gw.url);

    // The wrk runs are blocking: keep them off the runtime that serves the test API server.
    let (d1, g1, d32, g32) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        // Warm both paths (connection pools, JWKS, discovery of nothing).
        wrk::run(&direct_url, ADMIN_TOKEN, 1, 1, 2)?;
        wrk::run(&gw_url, &token, 1, 1, 2)?;
        let d1 = wrk::run(&direct_url, ADMIN_TOKEN, 1, 1, SECONDS)?;
        let g1 = wrk::run(&gw_url, &token, 1, 1, SECONDS)?;
        let d32 = wrk::run(&direct_url, ADMIN_TOKEN, 32, 2, SECONDS)?;
        let g32 = wrk::run(&gw_url, &token, 32, 2, SECONDS)?;
        Ok((d1, g1, d32, g32))
    })
    .await??;
    for (name, r) in [
        ("direct c1", d1),
        ("gateway c1", g1),
        ("direct c32", d32),
        ("gateway c32", g32),
    ] {
        anyhow::ensure!(r.non_2xx == 0, "{name}: {} non-2xx responses", r.non_2xx);
    }

    let growth = rss::stream_logs_and_watch_rss(&gw, tools, dir.path(), &issuer, LOG_BYTES)
        .await
        .context("measuring RSS while streaming logs")?;

    println!("gatehouse gateway benchmark (loopback, wrk, 1 KiB GET, {SECONDS}s per run)");
    println!(
        "  direct   1 conn : p50 {:>8.1} µs  p99 {:>8.1} µs  {:>9.0} req/s",
        d1.p50_us, d1.p99_us, d1.requests_per_sec
    );
    println!(
        "  gateway  1 conn : p50 {:>8.1} µs  p99 {:>8.1} µs  {:>9.0} req/s",
        g1.p50_us, g1.p99_us, g1.requests_per_sec
    );
    println!(
        "  added latency   : p50 {:>8.1} µs (target ≤ 150)   p99 {:>8.1} µs (target ≤ 1000)",
        g1.p50_us - d1.p50_us,
        g1.p99_us - d1.p99_us
    );
    println!("  direct  32 conn : {:>9.0} req/s", d32.requests_per_sec);
    println!("  gateway 32 conn : {:>9.0} req/s", g32.requests_per_sec);
    println!(
        "  throughput ratio: {:.2}× direct (target ≥ 0.6×)",
        g32.requests_per_sec / d32.requests_per_sec
    );
    println!(
        "  RSS while streaming {} MiB logs -f: start {} KiB, peak {} KiB, growth {:.1} MiB (target ≤ 32 MiB)",
        LOG_BYTES >> 20,
        growth.start_kib,
        growth.peak_kib,
        (growth.peak_kib.saturating_sub(growth.start_kib)) as f64 / 1024.0
    );
    gw.stop().await?;
    Ok(())
}
