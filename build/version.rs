//! Shared by the build scripts of the binary crates (`#[path]`-included): sets `GATEHOUSE_VERSION`
//! — `<crate version> (rev <git revision>, built <date>)` — which every `--version` prints.
//!
//! The revision comes from `GATEHOUSE_GIT_REV` (the Docker build passes it: the build context has
//! no `.git`) or `git rev-parse`; the date from `SOURCE_DATE_EPOCH` (reproducible builds; `cargo
//! xtask dist` sets it to the commit time) or the clock.
use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
    time::{SystemTime, UNIX_EPOCH},
};

pub fn emit() {
    println!("cargo:rerun-if-env-changed=GATEHOUSE_GIT_REV");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let dir = env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from);

    let rev = env::var("GATEHOUSE_GIT_REV")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(|| git(&dir, &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    // Rebuild when HEAD moves: HEAD itself, the branch it points at, and packed refs.
    if let Some(git_dir) = git(&dir, &["rev-parse", "--absolute-git-dir"]) {
        let git_dir = PathBuf::from(git_dir);
        rerun_if_exists(&git_dir.join("HEAD"));
        rerun_if_exists(&git_dir.join("packed-refs"));
        if let Some(branch) = git(&dir, &["symbolic-ref", "-q", "HEAD"]) {
            rerun_if_exists(&git_dir.join(branch));
        }
    }

    let secs = env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs())
        })
        .unwrap_or(0);
    let (y, m, d) = civil_from_days(secs / 86_400);
    let pkg = env::var("CARGO_PKG_VERSION").unwrap_or_default();
    println!("cargo:rustc-env=GATEHOUSE_VERSION={pkg} (rev {rev}, built {y:04}-{m:02}-{d:02})");
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

fn rerun_if_exists(p: &Path) {
    // A missing path would make cargo rerun the script on every build.
    if p.exists() {
        println!("cargo:rerun-if-changed={}", p.display());
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}
