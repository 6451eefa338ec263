//! Builds `agent-ebpf` for `bpfel-unknown-none` with the installed nightly (aya-build) and
//! leaves the object in `OUT_DIR/gatehouse-agent-ebpf`, which `src/ebpf.rs` embeds.
//!
//! Without the eBPF toolchain (nightly rust-src and bpf-linker, installed by
//! `scripts/install-ebpf-toolchain.sh`) it writes an empty object and warns, so the rest of the
//! workspace still builds; the agent then refuses to start with a line saying how to fix it.
//! Under CI (`CI` set) or `GATEHOUSE_REQUIRE_EBPF=1` a missing toolchain is an error instead.
use std::{env, path::PathBuf, process::Command};

use anyhow::{Context as _, anyhow};

// `--version`: git revision and build date, shared with the other binaries.
#[path = "../build/version.rs"]
mod version;

const OBJECT: &str = "gatehouse-agent-ebpf";

fn main() -> anyhow::Result<()> {
    version::emit();
    println!("cargo:rerun-if-env-changed=CI");
    println!("cargo:rerun-if-env-changed=GATEHOUSE_REQUIRE_EBPF");
    println!("cargo:rerun-if-env-changed=PATH");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let required = env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
        || env::var_os("GATEHOUSE_REQUIRE_EBPF").is_some_and(|v| v == "1");

    if let Err(missing) = toolchain_present() {
        if required {
            return Err(anyhow!(
                "{missing}; run scripts/install-ebpf-toolchain.sh and put its output dir on PATH"
            ));
        }
        println!(
            "cargo:warning=eBPF object not built ({missing}); the agent will refuse to load. \
             Run scripts/install-ebpf-toolchain.sh and put its output dir on PATH"
        );
        std::fs::write(out_dir.join(OBJECT), [])?;
        println!("cargo:rustc-env=GATEHOUSE_AGENT_EBPF_BUILT=0");
        return Ok(());
    }

    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").context("no manifest dir")?);
    let ebpf_dir = manifest_dir
        .parent()
        .context("agent/ has no parent")?
        .join("agent-ebpf");
    let root_dir = ebpf_dir.to_str().context("non-UTF-8 path")?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: OBJECT,
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )?;
    // Lets the tests tell "no toolchain here" (skip loudly) from a real failure.
    println!("cargo:rustc-env=GATEHOUSE_AGENT_EBPF_BUILT=1");
    Ok(())
}

/// The pieces aya-build needs and cannot install: bpf-linker on PATH and nightly's rust-src.
fn toolchain_present() -> Result<(), String> {
    let linker = Command::new("bpf-linker").arg("--version").output();
    if !linker.is_ok_and(|o| o.status.success()) {
        return Err("bpf-linker is not on PATH".into());
    }
    let sysroot = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run rustup: {e}"))?;
    if !sysroot.status.success() {
        return Err("the nightly toolchain is not installed".into());
    }
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    let core = PathBuf::from(sysroot).join("lib/rustlib/src/rust/library/core");
    if !core.is_dir() {
        return Err("nightly has no rust-src component".into());
    }
    Ok(())
}
