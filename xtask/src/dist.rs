//! `cargo xtask dist`: builds the binaries the container images copy (the Docker build stage and
//! CI run this same path), checks that the agent's embedded eBPF object kept its BTF, runs every
//! binary with `--version` and `--help`, and prints the sizes.
use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, anyhow, bail, ensure};

/// One shipped binary: the package that builds it and the file name in the dist directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binary {
    pub package: &'static str,
    pub name: &'static str,
}

/// Everything `dist` produces. The Dockerfile copies these names from its build stage
/// (`xtask/tests/dist_files.rs` checks that it copies nothing else).
pub const BINARIES: &[Binary] = &[
    Binary {
        package: "gatehouse-gateway",
        name: "gateway",
    },
    Binary {
        package: "gatehouse-agent",
        name: "gatehouse-agent",
    },
    Binary {
        package: "gatehouse-collector",
        name: "collector",
    },
    Binary {
        package: "gatehouse-cli",
        name: "gatehouse",
    },
];

/// The binary that embeds the eBPF object (built by its build.rs into `OUT_DIR/<EBPF_OBJECT>`).
const AGENT_PACKAGE: &str = "gatehouse-agent";
const EBPF_OBJECT: &str = "gatehouse-agent-ebpf";

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Cargo profile: `release` (LTO, one codegen unit, stripped) for images; `dev` is the same
    /// path with debug binaries, which CI uses because a full LTO build is slow on 2 cores.
    #[arg(long, default_value = "release", value_parser = ["release", "dev"])]
    pub profile: String,
    /// Where the binaries are copied (default `target/dist/<profile>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Target triple (default: the host).
    #[arg(long)]
    pub target: Option<String>,
    /// Print the cargo command and the binaries, build nothing.
    #[arg(long)]
    pub plan: bool,
    /// Also write a CycloneDX SBOM per binary (installs cargo-cyclonedx into the tools cache the
    /// first time; that compiles it, a few minutes).
    #[arg(long)]
    pub sbom: bool,
}

/// The cargo invocation that builds every binary in [`BINARIES`]: `--locked`, so the lock file
/// is what gets built, and JSON messages, so artifact paths come from cargo rather than guesses.
/// A release builds exactly the shipped packages; `dev` builds the workspace's binaries like
/// `scripts/test.sh` does, because a narrower selection unifies dependency features differently
/// and would rebuild what the tests use.
pub fn cargo_args(args: &Args) -> Vec<String> {
    let mut v: Vec<String> = ["build", "--locked", "--profile", &args.profile, "--bins"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if args.profile == "dev" {
        v.push("--workspace".into());
    } else {
        for b in BINARIES {
            v.extend(["--package".into(), b.package.into()]);
        }
    }
    if let Some(t) = &args.target {
        v.extend(["--target".into(), t.clone()]);
    }
    v.push("--message-format=json-render-diagnostics".into());
    v
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let root = crate::workspace_root();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| root.join("target/dist").join(&args.profile));
    let cargo_args = cargo_args(args);
    if args.plan {
        println!("cargo {}", cargo_args.join(" "));
        for b in BINARIES {
            println!("{} -> {}", b.package, out.join(b.name).display());
        }
        return Ok(());
    }

    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // No GATEHOUSE_REQUIRE_EBPF here: build scripts rerun when it changes, which would rebuild
    // the agent between this and `cargo test`. An agent without its object fails the check below.
    cmd.current_dir(&root)
        .args(&cargo_args)
        .stdout(Stdio::piped());
    // Reproducible releases: the build date is the commit's, unless the caller pinned one. Not
    // for `dev`, whose binaries are shared with `cargo test` (a changed date rebuilds them).
    if args.profile == "release"
        && std::env::var_os("SOURCE_DATE_EPOCH").is_none()
        && let Some(t) = git(&root, &["log", "-1", "--format=%ct"])
    {
        cmd.env("SOURCE_DATE_EPOCH", t);
    }
    eprintln!("dist: cargo {}", cargo_args.join(" "));
    let started = std::time::Instant::now();
    let mut child = cmd.spawn().context("running cargo build")?;
    let stdout = child.stdout.take().context("cargo stdout")?;
    let mut executables = Vec::new();
    let mut agent_out_dir = None;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let package = msg["package_id"].as_str().unwrap_or_default();
        match msg["reason"].as_str() {
            Some("compiler-artifact") => {
                if let Some(exe) = msg["executable"].as_str() {
                    executables.push(PathBuf::from(exe));
                }
            }
            Some("build-script-executed") if package_is(package, AGENT_PACKAGE) => {
                agent_out_dir = msg["out_dir"].as_str().map(PathBuf::from);
            }
            _ => {}
        }
    }
    let status = child.wait()?;
    ensure!(status.success(), "cargo build failed ({status})");
    let elapsed = started.elapsed();

    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut rows = Vec::new();
    for b in BINARIES {
        let src = executables
            .iter()
            .find(|p| p.file_name().is_some_and(|n| n == b.name))
            .ok_or_else(|| anyhow!("cargo reported no executable named {}", b.name))?;
        let dst = out.join(b.name);
        // Remove first: copying over a running binary fails with ETXTBSY.
        let _ = fs::remove_file(&dst);
        fs::copy(src, &dst).with_context(|| format!("copying {}", src.display()))?;
        smoke(&dst, b.name)?;
        rows.push((b.name, fs::metadata(&dst)?.len()));
    }

    let object = agent_out_dir
        .ok_or_else(|| anyhow!("cargo did not run {AGENT_PACKAGE}'s build script"))?
        .join(EBPF_OBJECT);
    let object = fs::read(&object).with_context(|| format!("reading {}", object.display()))?;
    check_ebpf_object(&object)?;
    let agent = fs::read(out.join("gatehouse-agent"))?;
    ensure!(
        contains(&agent, &object),
        "the agent binary does not carry its eBPF object byte for byte (stripped?)"
    );

    if args.sbom {
        sbom(&root, &out)?;
    }

    println!(
        "dist ({} profile, built in {:.0?}) in {}:",
        args.profile,
        elapsed,
        out.display()
    );
    for (name, size) in rows {
        println!(
            "  {name:<16} {size:>11} bytes  {:>6.1} MiB",
            size as f64 / 1_048_576.0
        );
    }
    println!(
        "  eBPF object      {:>11} bytes  (embedded in gatehouse-agent, with .BTF and .BTF.ext)",
        object.len()
    );
    Ok(())
}

/// cargo's package ids: `path+file:///…/agent#gatehouse-agent@0.1.0` (or `…/gatehouse-agent#0.1.0`).
fn package_is(id: &str, name: &str) -> bool {
    id.contains(&format!("#{name}@")) || id.contains(&format!("/{name}#"))
}

/// Runs `bin --version` and `bin --help`; the version line must carry revision and date.
fn smoke(bin: &Path, name: &str) -> anyhow::Result<()> {
    for flag in ["--version", "--help"] {
        let out = Command::new(bin)
            .arg(flag)
            .output()
            .with_context(|| format!("running {name} {flag}"))?;
        ensure!(
            out.status.success(),
            "{name} {flag} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        if flag == "--version" {
            check_version_line(&text)?;
            print!("  {text}");
        } else {
            ensure!(text.contains("Usage:"), "{name} --help printed no usage");
        }
    }
    Ok(())
}

/// `<name> <semver> (rev <git rev>, built <YYYY-MM-DD>)`.
pub fn check_version_line(line: &str) -> anyhow::Result<()> {
    let line = line.trim();
    let bad =
        || anyhow!("version line {line:?} is not `<name> <version> (rev <rev>, built <date>)`");
    let (_, rest) = line.split_once(' ').ok_or_else(bad)?;
    let (version, rest) = rest.split_once(" (rev ").ok_or_else(bad)?;
    ensure!(
        version == env!("CARGO_PKG_VERSION"),
        "{line:?}: wrong version"
    );
    let (rev, date) = rest
        .strip_suffix(')')
        .and_then(|r| r.split_once(", built "))
        .ok_or_else(bad)?;
    ensure!(
        rev.len() >= 7 && rev.bytes().all(|b| b.is_ascii_hexdigit()) || rev == "unknown",
        "{line:?}: revision {rev:?} is not a git revision"
    );
    let d: Vec<&str> = date.split('-').collect();
    ensure!(
        d.len() == 3
            && [4, 2, 2]
                .iter()
                .zip(&d)
                .all(|(n, p)| p.len() == *n && p.bytes().all(|b| b.is_ascii_digit())),
        "{line:?}: build date {date:?} is not YYYY-MM-DD"
    );
    Ok(())
}

/// The object must be a BPF ELF with BTF: stripping it (`strip` in its profile) would leave the
/// loader without type information for the maps and CO-RE relocations.
pub fn check_ebpf_object(obj: &[u8]) -> anyhow::Result<()> {
    ensure!(
        !obj.is_empty(),
        "the eBPF object is empty (no eBPF toolchain: scripts/install-ebpf-toolchain.sh)"
    );
    let sections = elf_sections(obj)?;
    let machine = u16_at(obj, 0x12)?;
    ensure!(
        machine == 247,
        "eBPF object has e_machine {machine}, not EM_BPF"
    );
    for want in [".BTF", ".BTF.ext"] {
        ensure!(
            sections.iter().any(|s| s == want),
            "eBPF object has no {want} section (stripped?); sections: {sections:?}"
        );
    }
    Ok(())
}

/// Section names of a little-endian ELF64 file.
pub fn elf_sections(elf: &[u8]) -> anyhow::Result<Vec<String>> {
    ensure!(
        elf.len() > 0x40 && elf.starts_with(b"\x7fELF") && elf[4] == 2 && elf[5] == 1,
        "not a little-endian ELF64 file"
    );
    let shoff = usize::try_from(u64_at(elf, 0x28)?)?;
    let shentsize = usize::from(u16_at(elf, 0x3a)?);
    let shnum = usize::from(u16_at(elf, 0x3c)?);
    let shstrndx = usize::from(u16_at(elf, 0x3e)?);
    let header = |i: usize| -> anyhow::Result<(u32, usize, usize)> {
        let h = shoff + i * shentsize;
        Ok((
            u32_at(elf, h)?,
            usize::try_from(u64_at(elf, h + 0x18)?)?,
            usize::try_from(u64_at(elf, h + 0x20)?)?,
        ))
    };
    let (_, str_off, str_len) = header(shstrndx)?;
    let strtab = elf
        .get(str_off..str_off + str_len)
        .context("section name table out of bounds")?;
    (0..shnum)
        .map(|i| {
            let (name, _, _) = header(i)?;
            let name = strtab
                .get(name as usize..)
                .context("section name out of bounds")?;
            let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
            Ok(String::from_utf8_lossy(&name[..end]).into_owned())
        })
        .collect()
}

fn bytes<const N: usize>(b: &[u8], at: usize) -> anyhow::Result<[u8; N]> {
    b.get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| anyhow!("ELF truncated at {at:#x}"))
}
fn u16_at(b: &[u8], at: usize) -> anyhow::Result<u16> {
    Ok(u16::from_le_bytes(bytes(b, at)?))
}
fn u32_at(b: &[u8], at: usize) -> anyhow::Result<u32> {
    Ok(u32::from_le_bytes(bytes(b, at)?))
}
fn u64_at(b: &[u8], at: usize) -> anyhow::Result<u64> {
    Ok(u64::from_le_bytes(bytes(b, at)?))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
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

/// A CycloneDX SBOM per shipped package, from the lock file. cargo-cyclonedx is installed into
/// the tools cache once (pinned version), never in the test path.
fn sbom(root: &Path, out: &Path) -> anyhow::Result<()> {
    const VERSION: &str = "0.5.9";
    let cache = std::env::var_os("GATEHOUSE_TOOLS_CACHE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("gatehouse-tools"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/gatehouse-tools"))
        })
        .context("no cache directory (set GATEHOUSE_TOOLS_CACHE)")?
        .join(format!("cargo-cyclonedx-{VERSION}"));
    let bin = cache.join("bin/cargo-cyclonedx");
    if !bin.is_file() {
        eprintln!(
            "dist: installing cargo-cyclonedx {VERSION} into {}",
            cache.display()
        );
        let st = Command::new("cargo")
            .args([
                "install",
                "cargo-cyclonedx",
                "--locked",
                "--version",
                VERSION,
                "--root",
            ])
            .arg(&cache)
            .status()?;
        ensure!(st.success(), "cargo install cargo-cyclonedx failed");
    }
    for b in BINARIES {
        let manifest = package_manifest(root, b.package)?;
        let st = Command::new(&bin)
            .arg("cyclonedx")
            .args([
                "--format",
                "json",
                "--spec-version",
                "1.5",
                "--manifest-path",
            ])
            .arg(&manifest)
            .args(["--override-filename", &format!("{}.cdx", b.name)])
            .current_dir(root)
            .status()?;
        ensure!(st.success(), "cargo cyclonedx failed for {}", b.package);
        let produced = manifest
            .parent()
            .context("manifest has no directory")?
            .join(format!("{}.cdx.json", b.name));
        fs::rename(&produced, out.join(format!("{}.cdx.json", b.name)))
            .with_context(|| format!("moving {}", produced.display()))?;
        // Some versions describe every workspace member, each next to its manifest; those
        // files carry our unique override name, so they are ours to remove.
        for entry in fs::read_dir(root)?.flatten() {
            let stray = entry.path().join(format!("{}.cdx.json", b.name));
            if stray.is_file() {
                fs::remove_file(&stray)?;
            }
        }
    }
    Ok(())
}

fn package_manifest(root: &Path, package: &str) -> anyhow::Result<PathBuf> {
    let dir = match package {
        "gatehouse-gateway" => "gateway",
        "gatehouse-agent" => "agent",
        "gatehouse-collector" => "collector",
        "gatehouse-cli" => "cli",
        other => bail!("no manifest known for {other}"),
    };
    Ok(root.join(dir).join("Cargo.toml"))
}
