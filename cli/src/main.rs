//! The `gatehouse` binary: thin wrapper over the CLI library; prints one-line errors.
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = gatehouse_cli::Cli::parse();
    let mut out = std::io::stdout().lock();
    match gatehouse_cli::run(cli, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
