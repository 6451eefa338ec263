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
/// `self`, or `self/task/<tid>` for one thread.
pub struct Stat {
    pub ppid: u32,
    pub utime: u64,
    pub stime: u64,
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
            comm,
        })
    }

    /// User plus system time in clock ticks.
    pub fn ticks(&self) -> u64 {
        self.utime + self.stime
    }
}

/// Clock ticks per second: USER_HZ, which Linux fixes at 100 for /proc whatever the kernel's HZ.
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
