//! Project automation (`cargo xtask <cmd>`): regenerates committed code, and hosts the
//! benchmark and demo drivers. Thin: the work lives in `lib.rs`.
use clap::Parser;

fn main() -> anyhow::Result<()> {
    xtask::run(xtask::Cli::parse())
}
