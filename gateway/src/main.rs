//! The `gateway` binary: parses configuration, validates it, and serves until SIGTERM.
use clap::Parser;
use gatehouse_gateway::config::GatewayArgs;
use gatehouse_gateway::server::Gateway;
use std::process::ExitCode;

// A proxy allocates and frees many small buffers per request; glibc malloc showed up as ~17%
// of the gateway's CPU in profiles, mimalloc handles this pattern much better.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // First, before any thread or socket exists: may replace this process image (same pid).
    gatehouse_gateway::memcpy::reexec_if_needed();
    let args = GatewayArgs::parse();
    gatehouse_gateway::telemetry::init();
    if gatehouse_gateway::memcpy::tuned() {
        tracing::info!(
            tunable = gatehouse_gateway::memcpy::TUNABLE,
            "glibc's rep movsb memcpy is off (slow on AMD Zen before glibc 2.39)"
        );
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if args.worker_threads > 0 {
        builder.worker_threads(args.worker_threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gateway: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(args))
}

async fn run(args: GatewayArgs) -> ExitCode {
    let gateway = match Gateway::build(args).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("gateway: {}", gatehouse_gateway::error_chain(&e));
            return ExitCode::from(64);
        }
    };
    let (_bound, serve) = match gateway.bind(shutdown_signal()).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("gateway: {}", gatehouse_gateway::error_chain(&e));
            return ExitCode::from(1);
        }
    };
    serve.await;
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutting down");
}
