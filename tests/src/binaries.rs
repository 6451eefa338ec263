//! Finds the workspace's own binaries (gateway, gatehouse) next to the running test, so
//! integration tests drive the real executables. `scripts/test.sh` builds them first.
use anyhow::Context as _;
use std::path::PathBuf;

/// The path of workspace binary `name` in the same target profile directory as this test, or
/// in `GATEHOUSE_BIN_DIR` when set (a bench run against `--profile profiling` builds for perf).
pub fn path(name: &str) -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("GATEHOUSE_BIN_DIR") {
        let bin = PathBuf::from(dir).join(name);
        anyhow::ensure!(bin.is_file(), "GATEHOUSE_BIN_DIR has no {}", bin.display());
        return Ok(bin);
    }
    let exe = std::env::current_exe().context("locating the test executable")?;
    // Tests run from target/<profile>/deps/, xtask from target/<profile>/.
    let here = exe.parent().context("unexpected executable location")?;
    let candidates = [Some(here), here.parent()];
    let bin = candidates
        .iter()
        .flatten()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| here.join(name));
    anyhow::ensure!(
        bin.is_file(),
        "{} is missing: build the binaries first with `cargo build --workspace --bins` (scripts/test.sh does)",
        bin.display()
    );
    Ok(bin)
}
