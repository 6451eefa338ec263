//! cgroup v2: where it is mounted, the id of a directory (its inode, which is what
//! `bpf_get_current_cgroup_id` returns), the path of an id, and what a path says about a pod.
use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use crate::AgentError;

/// The cgroup v2 mount point: `/sys/fs/cgroup/unified` on hybrid hosts, else `/sys/fs/cgroup`.
pub fn v2_root() -> Result<PathBuf, AgentError> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| AgentError::io("reading", "/proc/self/mountinfo", e))?;
    // Field 5 is the mount point; the fs type follows the " - " separator.
    let mut found: Vec<PathBuf> = mounts
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup2")
                .then(|| PathBuf::from(left.split_whitespace().nth(4).unwrap_or_default()))
        })
        .collect();
    found.sort_by_key(|p| p.as_os_str().len());
    found.into_iter().next().ok_or_else(|| {
        AgentError::Kernel(
            "no cgroup v2 mount (mount -t cgroup2 none /sys/fs/cgroup/unified)".into(),
        )
    })
}

/// The cgroup id of a cgroup v2 directory.
pub fn id_of(dir: &Path) -> Result<u64, AgentError> {
    std::fs::metadata(dir)
        .map(|m| m.ino())
        .map_err(|e| AgentError::io("reading cgroup", dir, e))
}

/// Finds cgroup paths by id, walking the hierarchy on a miss (and caching what it saw).
#[derive(Debug)]
pub struct CgroupIndex {
    root: PathBuf,
    by_id: HashMap<u64, String>,
}

impl CgroupIndex {
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            by_id: HashMap::new(),
        }
    }

    /// The path relative to the cgroup v2 root (`/` for the root), or None if it is gone.
    pub fn path_of(&mut self, id: u64) -> Option<String> {
        if let Some(p) = self.by_id.get(&id) {
            return Some(p.clone());
        }
        self.rescan();
        self.by_id.get(&id).cloned()
    }

    /// Rewalks the hierarchy and returns each pod's own cgroup id by pod uid: the directory
    /// kubelet names after the pod, whose subtree holds all of its containers.
    pub fn pod_cgroups(&mut self) -> HashMap<String, u64> {
        self.rescan();
        let mut best: HashMap<String, (usize, u64)> = HashMap::new();
        for (id, path) in &self.by_id {
            let Some(r) = pod_ref(path) else { continue };
            if !r.container_id.is_empty() {
                continue;
            }
            let e = best.entry(r.pod_uid).or_insert((usize::MAX, *id));
            if path.len() < e.0 {
                *e = (path.len(), *id);
            }
        }
        best.into_iter().map(|(uid, (_, id))| (uid, id)).collect()
    }

    fn rescan(&mut self) {
        self.by_id.clear();
        let mut stack = vec![self.root.clone()];
        // A node has a few thousand cgroups at most; a bound keeps a hostile tree cheap.
        let mut budget = 100_000usize;
        while let Some(dir) = stack.pop() {
            if let Ok(meta) = std::fs::metadata(&dir) {
                let rel = dir
                    .strip_prefix(&self.root)
                    .map_or_else(|_| "/".to_string(), |r| format!("/{}", r.display()));
                self.by_id.insert(meta.ino(), rel);
            }
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in rd.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    budget = budget.saturating_sub(1);
                    if budget == 0 {
                        return;
                    }
                    stack.push(entry.path());
                }
            }
        }
    }
}

/// What a cgroup path tells about Kubernetes: kubelet names pod cgroups `…pod<uid>…` and
/// container cgroups after the 64-hex container id (`cri-containerd-<id>.scope`, `docker-<id>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRef {
    pub pod_uid: String,
    pub container_id: String,
}

pub fn pod_ref(path: &str) -> Option<PodRef> {
    let mut r = PodRef::default();
    for seg in path.split('/') {
        // "kubepods" itself contains "pod": try every occurrence.
        for (i, _) in seg.match_indices("pod") {
            let uid: String = seg[i + 3..]
                .chars()
                .take_while(|c| c.is_ascii_hexdigit() || *c == '_' || *c == '-')
                .map(|c| if c == '_' { '-' } else { c })
                .collect();
            if uid.len() == 36 {
                r.pod_uid = uid;
            }
        }
        if let Some(id) = hex64(seg) {
            r.container_id = id;
        }
    }
    (!r.pod_uid.is_empty()).then_some(r)
}

fn hex64(seg: &str) -> Option<String> {
    let b = seg.as_bytes();
    (0..b.len().saturating_sub(63)).find_map(|i| {
        let w = &b[i..i + 64];
        let edge_ok = |j: usize| b.get(j).is_none_or(|c| !c.is_ascii_hexdigit());
        (w.iter().all(u8::is_ascii_hexdigit) && (i == 0 || edge_ok(i - 1)) && edge_ok(i + 64))
            .then(|| seg[i..i + 64].to_string())
    })
}

/// This process's own cgroup v2 path (relative to the mount), from `/proc/self/cgroup`.
pub fn own_path() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// exe and cmdline of a live process; empty when it has already exited.
pub fn process_details(tgid: u32) -> (String, String) {
    let exe = std::fs::read_link(format!("/proc/{tgid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let cmdline = std::fs::read(format!("/proc/{tgid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .trim_end_matches('\0')
                .replace('\0', " ")
        })
        .unwrap_or_default();
    (exe, cmdline)
}

/// The inode of the process's network namespace, if it is still alive.
pub fn netns_inode(tgid: u32) -> u64 {
    std::fs::metadata(format!("/proc/{tgid}/ns/net")).map_or(0, |m| m.ino())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_pod_and_container_from_kubelet_paths() {
        let systemd = "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1b4e28ba_2fa1_11d2_883f_0016d3cca427.slice/cri-containerd-4f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f.scope";
        let r = pod_ref(systemd).unwrap();
        assert_eq!(r.pod_uid, "1b4e28ba-2fa1-11d2-883f-0016d3cca427");
        assert_eq!(
            r.container_id,
            "4f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f"
        );
        let cgroupfs = "/kubepods/burstable/pod1b4e28ba-2fa1-11d2-883f-0016d3cca427/4f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f";
        assert_eq!(
            pod_ref(cgroupfs).unwrap().pod_uid,
            "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
        );
        assert_eq!(pod_ref("/system.slice/sshd.service"), None);
        assert_eq!(pod_ref("/user.slice/user-0.slice/session-3.scope"), None);
    }

    #[test]
    fn finds_ids_of_real_cgroups() {
        let Ok(root) = v2_root() else {
            eprintln!("SKIPPED finds_ids_of_real_cgroups: no cgroup v2 mount");
            return;
        };
        let mut idx = CgroupIndex::new(root.clone());
        assert_eq!(idx.path_of(id_of(&root).unwrap()).as_deref(), Some("/"));
    }
}
