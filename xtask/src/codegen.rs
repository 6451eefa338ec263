//! Protobuf code generation with protox (a pure-Rust protoc) and prost-build, so neither CI
//! nor developers need a protoc binary. The output is committed; a test checks it is current.
use anyhow::Context;
use std::path::Path;

/// The proto files, relative to `proto/proto`.
pub const PROTOS: &[&str] = &[
    "gatehouse/v1/transcript.proto",
    "gatehouse/v1/collector.proto",
];

/// Generates the Rust code for every proto into `out_dir`.
pub fn generate(out_dir: &Path) -> anyhow::Result<()> {
    let root = crate::workspace_root().join("proto/proto");
    let files: Vec<_> = PROTOS.iter().map(|p| root.join(p)).collect();
    let fds = protox::compile(&files, [&root]).context("compiling protos")?;
    std::fs::create_dir_all(out_dir)?;
    // tonic-prost-build adds the gRPC client and server of the collector's services to the
    // same file as the messages.
    let mut config = prost_build::Config::new();
    config.bytes(["."]);
    // Maps encode in key order, so re-encoding a decoded event reproduces its bytes: the hash
    // chain is over this canonical encoding.
    config.btree_map(["."]);
    tonic_prost_build::configure()
        .out_dir(out_dir)
        .compile_fds_with_config(fds, config)
        .context("generating prost and tonic code")?;
    Ok(())
}
