//! Start-up checks: the kernel features the agent needs, and the bpffs/tracefs mounts.
use std::path::{Path, PathBuf};

use nix::{
    mount::{MsFlags, mount},
    sys::statfs::{BPF_FS_MAGIC, TRACEFS_MAGIC, statfs},
};

use crate::{AgentError, cgroups};

/// What the agent found on this kernel.
#[derive(Debug, Clone)]
pub struct Probe {
    pub cgroup_root: PathBuf,
}

/// Checks BTF and cgroup v2, and mounts bpffs (for pins) and tracefs if absent.
pub fn probe(pin_dir: &Path) -> Result<Probe, AgentError> {
    let cgroup_root = cgroups::v2_root()?;
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        // The programs use no CO-RE relocations, so they load without BTF; say so once.
        tracing::warn!(
            "kernel BTF (/sys/kernel/btf/vmlinux) missing: kernel-side logging may be limited"
        );
    }
    ensure_mounted(Path::new("/sys/fs/bpf"), "bpf", BPF_FS_MAGIC)?;
    if !pin_dir.starts_with("/sys/fs/bpf") {
        let fs = statfs(pin_dir.parent().unwrap_or(pin_dir))
            .map_err(|e| AgentError::io("statfs", pin_dir, e.into()))?;
        if fs.filesystem_type() != BPF_FS_MAGIC {
            return Err(AgentError::Config(format!(
                "--pin-dir {} is not on a bpf filesystem",
                pin_dir.display()
            )));
        }
    }
    std::fs::create_dir_all(pin_dir).map_err(|e| AgentError::io("creating", pin_dir, e))?;
    // tracefs is where kernel-side diagnostics can be read by hand; failing to mount it is not fatal.
    if let Err(e) = ensure_mounted(Path::new("/sys/kernel/tracing"), "tracefs", TRACEFS_MAGIC) {
        tracing::warn!(error = %e, "tracefs not available");
    }
    Ok(Probe { cgroup_root })
}

fn ensure_mounted(
    dir: &Path,
    fstype: &'static str,
    magic: nix::sys::statfs::FsType,
) -> Result<(), AgentError> {
    if statfs(dir).is_ok_and(|fs| fs.filesystem_type() == magic) {
        return Ok(());
    }
    tracing::info!(dir = %dir.display(), fstype, "mounting");
    mount(
        Some(fstype),
        dir,
        Some(fstype),
        MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| {
        AgentError::Kernel(format!(
            "{fstype} is not mounted at {} and mounting it failed: {e}",
            dir.display()
        ))
    })
}
