//! `gatehouse-agent`: see the library for what it does.
use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = gatehouse_agent::Args::parse();
    gatehouse_agent::telemetry::init();
    match gatehouse_agent::run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let mut line = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                line.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("gatehouse-agent: {line}");
            std::process::ExitCode::from(e.exit_code())
        }
    }
}
