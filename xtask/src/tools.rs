//! Shared helpers: the cached tool directory (kubectl v1.35, helm v4) and cargo invocations.
use anyhow::Context;
use std::path::PathBuf;
use std::process::Command;

/// The directory holding kubectl and helm, installing them first if needed.
pub fn tools_bin() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("GATEHOUSE_TOOLS_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let script = crate::workspace_root().join("scripts/install-tools.sh");
    let out = Command::new(&script)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout)?;
    let dir = stdout
        .lines()
        .last()
        .context("install-tools printed nothing")?;
    Ok(PathBuf::from(dir.trim()))
}

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
