//! Shared helpers: cargo invocations from xtask commands.
use anyhow::Context;
use std::process::Command;

pub use gatehouse_tests::kubectl::tools_bin;

/// Runs `cargo build` with `args` in the workspace.
pub fn cargo_build(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .arg("build")
        .args(args)
        .current_dir(crate::workspace_root())
        .status()
        .context("running cargo build")?;
    anyhow::ensure!(status.success(), "cargo build {} failed", args.join(" "));
    Ok(())
}
