//! Finds the workspace's own binaries (gateway, gatehouse) next to the running test, so
//! integration tests drive the real executables. `scripts/test.sh` builds them first.
use anyhow::Context as _;
use std::path::PathBuf;

/// The path of workspace binary `name` in the same target profile directory as this test.
pub fn path(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test executable")?;
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("unexpected test executable location")?;
    let bin = dir.join(name);
    anyhow::ensure!(
        bin.is_file(),
        "{} is missing: build the binaries first with `cargo build --workspace --bins` (scripts/test.sh does)",
        bin.display()
    );
    Ok(bin)
}
