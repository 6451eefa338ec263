//! Library side of `cargo xtask`, so tests can drive the same code paths.
pub mod bench;
// The agent bench sits beside the gateway's in bench/ without touching its module file.
#[path = "bench/agent.rs"]
pub mod bench_agent;
#[path = "bench/policy.rs"]
pub mod bench_policy;
pub mod codegen;
pub mod demo;
pub mod dist;
pub mod tools;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "xtask", about = "gatehouse project automation")]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Regenerate the committed prost code from proto/.
    Codegen,
    /// Benchmarks: `bench gateway` measures direct against through-gateway; `bench agent`
    /// the node agent's connect() overhead, matching throughput and alert latency (root);
    /// `bench streams` exec and port-forward throughput and RSS through the gateway;
    /// `bench collector` ingest rate, queryable lag, listing and replay start (ClickHouse);
    /// `bench soak` a long mixed load (GATEHOUSE_SOAK_SECS, default 600): RSS, fds, p50/p99.
    Bench {
        #[arg(value_parser = ["gateway", "agent", "streams", "collector", "policy", "soak"])]
        target: String,
    },
    /// Run the demo: real kubectl through the real gateway, then the transcript.
    Demo(demo::Args),
    /// Build the shipped binaries (release: LTO, stripped), check them, print their sizes.
    Dist(dist::Args),
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Codegen => codegen::generate(&workspace_root().join("proto/src/gen")),
        Cmd::Demo(args) => demo::run(&args),
        Cmd::Dist(args) => dist::run(&args),
        Cmd::Bench { target } if target == "agent" => bench_agent::agent(),
        Cmd::Bench { target } if target == "policy" => bench_policy::policy(),
        Cmd::Bench { target } if target == "streams" => bench::streams::streams(),
        Cmd::Bench { target } if target == "collector" => bench::collector::collector(),
        Cmd::Bench { target } if target == "soak" => bench::soak::soak(),
        Cmd::Bench { .. } => bench::gateway(),
    }
}
