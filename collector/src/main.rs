//! The `collector` binary: `serve` or `migrate`; thin wrapper over the library.
use clap::Parser;
use gatehouse_collector::config::DeadLetterCmd;
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
                .map(|r| {
                    println!(
                        "schema version {}; applied now: {:?}; TTL changed: {:?}",
                        r.version, r.applied, r.ttl_changed
                    )
                })
        }
        Command::DeadLetter(DeadLetterCmd::Replay(args)) => {
            let client = gatehouse_collector::clickhouse_client::client(&args.clickhouse, true);
            match gatehouse_collector::writer::replay::replay(&client, &args.file).await {
                Ok(r) => {
                    println!(
                        "replayed {} events; still refused {}",
                        r.replayed, r.refused
                    );
                    if let Some(path) = r.refused_file {
                        eprintln!(
                            "collector: {} events are still refused: see {}",
                            r.refused,
                            path.display()
                        );
                        return ExitCode::from(1);
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            }
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
