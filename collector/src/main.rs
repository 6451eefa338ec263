//! The `collector` binary: `serve` or `migrate`; thin wrapper over the library.
use clap::Parser;
use gatehouse_collector::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    gatehouse_gateway::telemetry::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("collector: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let result = match cli.cmd {
        Command::Migrate(args) => {
            gatehouse_collector::schema::migrate(&args.clickhouse, &args.schema)
                .await
                .map(|r| println!("schema version {}; applied now: {:?}", r.version, r.applied))
        }
        Command::Serve(args) => {
            match gatehouse_collector::server::start(*args, shutdown_signal()).await {
                Ok((_bound, serve)) => serve.await,
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("collector: {}", gatehouse_gateway::error_chain(&e));
            ExitCode::from(match e {
                gatehouse_collector::CollectorError::Config(_)
                | gatehouse_collector::CollectorError::ReadFile { .. } => 64,
                _ => 1,
            })
        }
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
