//! What the benches read of a process from /proc: resident memory and CPU time.

/// Resident set size of `pid` (`self` for this process) in KiB.
pub fn rss_kib(pid: impl std::fmt::Display) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The parent and the user and system CPU time (clock ticks) of a `/proc` entry: `<pid>`,
/// `self`, or `self/task/<tid>` for one thread; with that of its reaped children.
pub struct Stat {
    pub ppid: u32,
    pub utime: u64,
    pub stime: u64,
    pub cutime: u64,
    pub cstime: u64,
    /// The command (or thread) name, at most 15 bytes.
    pub comm: String,
}

impl Stat {
    pub fn read(entry: impl std::fmt::Display) -> Option<Stat> {
        let stat = std::fs::read_to_string(format!("/proc/{entry}/stat")).ok()?;
        // The name (field 2) is parenthesised and may hold spaces; the fields after are numbers.
        let (head, rest) = stat.rsplit_once(')')?;
        let comm = head.split_once('(')?.1.to_string();
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some(Stat {
            ppid: f.get(1)?.parse().ok()?,
            utime: f.get(11)?.parse().ok()?,
            stime: f.get(12)?.parse().ok()?,
            cutime: f.get(13)?.parse().ok()?,
            cstime: f.get(14)?.parse().ok()?,
            comm,
        })
    }

    /// User plus system time in clock ticks.
    pub fn ticks(&self) -> u64 {
        self.utime + self.stime
    }

    /// [`Stat::ticks`] plus the reaped children's.
    pub fn ticks_with_children(&self) -> u64 {
        self.ticks() + self.cutime + self.cstime
    }
}

/// Clock ticks per second of `/proc/<pid>/stat` times: USER_HZ, which Linux fixes at 100 for
/// user space whatever the kernel's HZ.
pub const CLK_TCK: f64 = 100.0;

/// CPU seconds of this process's threads whose name starts with `prefix`.
pub fn own_threads_cpu(prefix: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    dir.flatten()
        .filter_map(|t| Stat::read(format!("self/task/{}", t.file_name().to_string_lossy())))
        .filter(|s| s.comm.starts_with(prefix))
        .map(|s| s.ticks() as f64 / CLK_TCK)
        .sum()
}

/// CPU seconds of process `pid`, all its threads.
pub fn process_cpu(pid: u32) -> f64 {
    Stat::read(pid).map_or(0.0, |s| s.ticks() as f64 / CLK_TCK)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// This test process parsed from its own /proc entries: its name, its parent, some resident
    /// memory, and CPU time that grows with work.
    #[test]
    fn reads_this_process() {
        let me = Stat::read("self").unwrap();
        assert_eq!(me.ppid, std::os::unix::process::parent_id());
        assert!(rss_kib("self").unwrap() > 0);
        let before = Stat::read("self").unwrap().ticks();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(Stat::read("self").unwrap().ticks() > before, "{x}");
        assert!(Stat::read(u32::MAX).is_none());
    }
}
