//! Keeps glibc's `rep movsb` memcpy off AMD CPUs, where it copies relayed stream bytes several
//! times slower than the vector loop: before glibc 2.39 that takes a tunable set at exec time,
//! so the gateway re-executes itself once with it.
//!
//! Why: on AMD Zen 3/4, `rep movsb` slows down badly for some source/destination alignments
//! (glibc BZ 30994; 2.39 stopped using it there). rustls copies every relayed byte into its
//! record buffer (mimalloc's) and that copy took ~20% of the gateway's CPU in port-forward
//! profiles; with the tunable the gateway spent 1.2–1.4 s of CPU per GiB instead of 1.8.
use std::ffi::{OsStr, OsString};

/// The glibc tunable, and the value that means "never": copies of any size take the vector
/// loop, or non-temporal stores above glibc's own (much larger) threshold.
pub const TUNABLE: &str = "glibc.cpu.x86_rep_movsb_threshold";
pub const NEVER: &str = "18446744073709551615";

/// The first glibc whose memcpy avoids `rep movsb` on AMD by itself.
const FIXED_IN: (u32, u32) = (2, 39);

/// What this process should do about its memcpy.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to do: not an affected CPU or glibc, or the tunable is already set (by us or by
    /// the operator, whose value is kept).
    Keep,
    /// Re-execute with `GLIBC_TUNABLES` set to this.
    Reexec(OsString),
}

/// The plan for a glibc version (`2.36`), the current `GLIBC_TUNABLES` and a CPU vendor
/// (`/proc/cpuinfo`'s `vendor_id`), read only when the first two leave the question open, so
/// the re-executed gateway (tunable set) does not read /proc/cpuinfo again.
pub fn plan(
    glibc: Option<&str>,
    tunables: Option<&OsStr>,
    vendor: impl FnOnce() -> Option<String>,
) -> Plan {
    let Some(version) = glibc.and_then(parse_version) else {
        return Plan::Keep;
    };
    if version >= FIXED_IN || tunables.is_some_and(|t| t.to_string_lossy().contains(TUNABLE)) {
        return Plan::Keep;
    }
    if vendor().as_deref() != Some("AuthenticAMD") {
        return Plan::Keep;
    }
    let setting = format!("{TUNABLE}={NEVER}");
    match tunables {
        Some(t) if !t.is_empty() => {
            let mut v = t.to_os_string();
            v.push(":");
            v.push(setting);
            Plan::Reexec(v)
        }
        _ => Plan::Reexec(setting.into()),
    }
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()?;
    Some((major, minor))
}

/// This machine's plan.
pub fn current() -> Plan {
    plan(
        glibc_version().as_deref(),
        std::env::var_os("GLIBC_TUNABLES").as_deref(),
        cpu_vendor,
    )
}

/// Whether this process runs with `rep movsb` off by our setting: what the startup log reports.
pub fn tuned() -> bool {
    std::env::var_os("GLIBC_TUNABLES")
        .is_some_and(|t| t.to_string_lossy().contains(&format!("{TUNABLE}={NEVER}")))
}

/// Carries out [`current`]'s plan: on success this never returns (the same process, pid and
/// open files run the new image). If the exec fails the gateway goes on untuned: slower, not
/// wrong.
pub fn reexec_if_needed() {
    let Plan::Reexec(tunables) = current() else {
        return;
    };
    use std::os::unix::process::CommandExt as _;
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    let err = std::process::Command::new(&exe)
        .arg0(arg0)
        .args(args)
        .env("GLIBC_TUNABLES", tunables)
        .exec();
    eprintln!(
        "gateway: could not re-execute {} with glibc's rep movsb memcpy off ({err}); going on without",
        exe.display()
    );
}

fn cpu_vendor() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("vendor_id"))
        .and_then(|rest| rest.split(':').nth(1))
        .map(|v| v.trim().to_string())
}

#[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
fn glibc_version() -> Option<String> {
    // SAFETY: gnu_get_libc_version returns a pointer to a static NUL-terminated string.
    #[allow(unsafe_code)]
    let v = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
    v.to_str().ok().map(str::to_string)
}

/// Not glibc on x86-64: nothing to tune.
#[cfg(not(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64")))]
fn glibc_version() -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> OsString {
        s.into()
    }

    fn amd() -> Option<String> {
        Some("AuthenticAMD".into())
    }

    fn vendor_unread() -> Option<String> {
        panic!("the CPU vendor was read although glibc or the tunables had decided")
    }

    #[test]
    fn amd_before_glibc_2_39_reexecs_with_the_tunable() {
        assert_eq!(
            plan(Some("2.36"), None, amd),
            Plan::Reexec(os("glibc.cpu.x86_rep_movsb_threshold=18446744073709551615"))
        );
        assert_eq!(
            plan(Some("2.38.1"), Some(os("")).as_deref(), amd),
            Plan::Reexec(os("glibc.cpu.x86_rep_movsb_threshold=18446744073709551615"))
        );
    }

    #[test]
    fn the_operators_other_tunables_are_kept() {
        assert_eq!(
            plan(
                Some("2.36"),
                Some(os("glibc.malloc.arena_max=2")).as_deref(),
                amd
            ),
            Plan::Reexec(os(
                "glibc.malloc.arena_max=2:glibc.cpu.x86_rep_movsb_threshold=18446744073709551615"
            ))
        );
    }

    #[test]
    fn nothing_to_do_when_set_fixed_or_not_amd() {
        // Already set, by us after the re-exec or by the operator: no loop, their value wins,
        // and /proc/cpuinfo is not read (nor where glibc decides).
        assert_eq!(
            plan(
                Some("2.36"),
                Some(os("glibc.cpu.x86_rep_movsb_threshold=4096")).as_deref(),
                vendor_unread
            ),
            Plan::Keep
        );
        assert_eq!(plan(Some("2.39"), None, vendor_unread), Plan::Keep);
        assert_eq!(plan(Some("3.0"), None, vendor_unread), Plan::Keep);
        assert_eq!(
            plan(Some("2.36"), None, || Some("GenuineIntel".into())),
            Plan::Keep
        );
        assert_eq!(plan(Some("2.36"), None, || None), Plan::Keep);
        assert_eq!(plan(None, None, vendor_unread), Plan::Keep);
        assert_eq!(plan(Some("garbage"), None, vendor_unread), Plan::Keep);
    }

    /// The value is one this glibc accepts: ld.so lists the tunable with it, where an
    /// out-of-range value would be dropped for the default.
    #[test]
    fn this_glibc_accepts_the_value() {
        let ld = std::path::Path::new("/lib64/ld-linux-x86-64.so.2");
        if !ld.exists() || glibc_version().is_none() {
            eprintln!("SKIPPED: no x86-64 glibc loader here to list tunables");
            return;
        }
        let out = std::process::Command::new(ld)
            .arg("--list-tunables")
            .env("GLIBC_TUNABLES", format!("{TUNABLE}={NEVER}"))
            .output()
            .expect("run ld.so --list-tunables");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.starts_with(TUNABLE))
            .expect("this glibc lists the tunable");
        assert!(
            line.contains(": 0xffffffffffffffff "),
            "the tunable did not take the value: {line}"
        );
    }
}
