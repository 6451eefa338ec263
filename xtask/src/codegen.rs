//! Protobuf code generation with protox (a pure-Rust protoc) and prost-build, so neither CI
//! nor developers need a protoc binary. The output is committed; a test checks it is current.
use anyhow::Context;
use std::path::Path;

/// The proto files, relative to `proto/proto`.
pub const PROTOS: &[&str] = &["gatehouse/v1/transcript.proto"];

/// Generates the Rust code for every proto into `out_dir`.
pub fn generate(out_dir: &Path) -> anyhow::Result<()> {
    let root = crate::workspace_root().join("proto/proto");
    let files: Vec<_> = PROTOS.iter().map(|p| root.join(p)).collect();
    let fds = protox::compile(&files, [&root]).context("compiling protos")?;
    std::fs::create_dir_all(out_dir)?;
    prost_build::Config::new()
        .out_dir(out_dir)
        .bytes(["."])
        .compile_fds(fds)
        .context("generating prost code")?;
    Ok(())
}
