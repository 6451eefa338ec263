//! Fails when the committed generated code differs from what the protos generate today.
use std::fs;

#[test]
fn committed_prost_code_is_current() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    xtask::codegen::generate(tmp.path())?;
    let committed = xtask::workspace_root().join("proto/src/gen");
    let mut compared = 0;
    for entry in fs::read_dir(tmp.path())? {
        let entry = entry?;
        let fresh = fs::read_to_string(entry.path())?;
        let name = entry.file_name();
        let old = fs::read_to_string(committed.join(&name)).unwrap_or_default();
        assert!(
            fresh == old,
            "proto/src/gen/{} is stale: run `cargo xtask codegen` and commit the result",
            name.to_string_lossy()
        );
        compared += 1;
    }
    assert!(compared > 0, "codegen produced no files");
    Ok(())
}
