//! Helpers to drive the real kubectl v1.35 in tests: find it (via `scripts/install-tools.sh`
//! or `GATEHOUSE_TOOLS_BIN`), write kubeconfigs, and run it with a timeout or as a stream.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn find_tools_bin() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("GATEHOUSE_TOOLS_BIN")
        && !dir.is_empty()
    {
        return Ok(PathBuf::from(dir));
    }
    let script = workspace_root().join("scripts/install-tools.sh");
    let mut last_err = String::new();
    // The script's version check can fail spuriously (a pipe closed early under
    // `pipefail`), so a failure is retried before giving up.
    for _ in 0..3 {
        let out = std::process::Command::new("bash")
            .arg(&script)
            .current_dir(workspace_root())
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.status.success()
            && let Some(line) = stdout.lines().rev().find(|l| !l.trim().is_empty())
        {
            return Ok(PathBuf::from(line.trim()));
        }
        last_err = String::from_utf8_lossy(&out.stderr).into_owned();
    }
    bail!(
        "scripts/install-tools.sh did not print the tools dir (set GATEHOUSE_TOOLS_BIN to override): {last_err}"
    )
}

/// The directory holding kubectl v1.35 and helm v4 (memoized).
pub fn tools_bin() -> anyhow::Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| find_tools_bin().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// The real kubectl v1.35 binary.
pub fn kubectl_path() -> anyhow::Result<PathBuf> {
    let p = tools_bin()?.join("kubectl");
    if !p.exists() {
        bail!("kubectl not found at {}", p.display());
    }
    Ok(p)
}

/// The real kubectl v1.29 (SPDY only), for the stream tests' version matrix:
/// `GATEHOUSE_KUBECTL_V129`, else `kubectl-v1.29` next to kubectl v1.35.
pub fn kubectl_v129_path() -> anyhow::Result<PathBuf> {
    let p = match std::env::var("GATEHOUSE_KUBECTL_V129") {
        Ok(p) if !p.is_empty() => PathBuf::from(p),
        _ => tools_bin()?.join("kubectl-v1.29"),
    };
    if !p.exists() {
        bail!(
            "kubectl v1.29 not found at {} (scripts/install-tools.sh installs it)",
            p.display()
        );
    }
    Ok(p)
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A kubeconfig (cluster, user and context all named `test`) with CA data and a bearer token.
pub fn kubeconfig_yaml(server: &str, ca_pem: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: test\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\ncurrent-context: test\n",
        ca = b64(ca_pem)
    )
}

/// A kubeconfig that authenticates with a client certificate instead of a token.
pub fn kubeconfig_yaml_client_cert(
    server: &str,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: test\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\ncurrent-context: test\n",
        ca = b64(ca_pem),
        cert = b64(cert_pem),
        key = b64(key_pem)
    )
}

/// The result of one kubectl run.
#[derive(Debug, Clone)]
pub struct KubectlOutput {
    pub args: Vec<String>,
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl KubectlOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Fails with the command, exit code, stdout and stderr unless it exited 0.
    pub fn ok(self) -> anyhow::Result<KubectlOutput> {
        if !self.success() {
            bail!("{self}");
        }
        Ok(self)
    }
}

impl std::fmt::Display for KubectlOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kubectl {} exited {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }
}

/// kubectl bound to one kubeconfig and a private `HOME` (so the discovery cache is per test).
#[derive(Debug, Clone)]
pub struct Kubectl {
    pub bin: PathBuf,
    pub kubeconfig: PathBuf,
    pub home: PathBuf,
    pub timeout: Duration,
    /// Extra environment for every run, e.g. `DISABLE_HTTP2=1` (client-go then speaks HTTP/1.1).
    pub env: Vec<(String, String)>,
}

impl Kubectl {
    /// Uses `dir` for `HOME` and writes `kubeconfig` to `dir/kubeconfig`.
    pub fn new(dir: &Path, kubeconfig: &str) -> anyhow::Result<Kubectl> {
        let home = dir.join("home");
        std::fs::create_dir_all(&home)?;
        let path = dir.join("kubeconfig");
        std::fs::write(&path, kubeconfig)?;
        Ok(Kubectl {
            bin: kubectl_path()?,
            kubeconfig: path,
            home,
            timeout: Duration::from_secs(60),
            env: Vec::new(),
        })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.home)
            .env_remove("KUBECTL_COMMAND_HEADERS")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// Runs kubectl to completion (killed after `self.timeout`).
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<KubectlOutput> {
        self.run_with_stdin(args, None).await
    }

    /// Runs `args` every half second until kubectl fails (a grant expiring), and checks that its
    /// error says `message`; an error when it still succeeds after `within`.
    pub async fn until_refused(
        &self,
        args: &[&str],
        message: &str,
        within: std::time::Duration,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let out = self.run(args).await?;
            if !out.success() {
                anyhow::ensure!(out.stderr.contains(message), "{out}");
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "kubectl {} still succeeds after {within:?}",
                args.join(" ")
            );
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }

    /// Runs kubectl with `stdin` fed to it (for `apply -f -`).
    pub async fn run_with_stdin(
        &self,
        args: &[&str],
        stdin: Option<&str>,
    ) -> anyhow::Result<KubectlOutput> {
        let mut cmd = self.command(args);
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes()).await?;
            drop(pipe);
        }
        let out = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(o) => o?,
            Err(_) => bail!(
                "kubectl {} timed out after {:?}",
                args.join(" "),
                self.timeout
            ),
        };
        Ok(KubectlOutput {
            args: args.iter().map(|s| s.to_string()).collect(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Starts a long-running kubectl (`logs -f`, `get -w`) whose stdout is read line by line.
    pub fn spawn(&self, args: &[&str]) -> anyhow::Result<KubectlStream> {
        let mut child = self
            .command(args)
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        let stdout = child.stdout.take().context("kubectl stdout")?;
        Ok(KubectlStream {
            args: args.iter().map(|s| s.to_string()).collect(),
            child,
            lines: BufReader::new(stdout),
            seen: Vec::new(),
        })
    }
}

/// A running kubectl; killed on drop.
pub struct KubectlStream {
    args: Vec<String>,
    child: Child,
    lines: BufReader<ChildStdout>,
    /// Every stdout line read so far.
    pub seen: Vec<String>,
}

impl KubectlStream {
    /// Reads lines until one satisfies `pred`, failing after `timeout` with what was seen
    /// (and stderr, if kubectl exited).
    pub async fn wait_for_line(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut line = String::new();
            match tokio::time::timeout_at(deadline, self.lines.read_line(&mut line)).await {
                Err(_) => bail!(
                    "kubectl {}: no matching line within {timeout:?}; saw:\n{}",
                    self.args.join(" "),
                    self.seen.join("\n")
                ),
                Ok(Err(e)) => return Err(e.into()),
                Ok(Ok(0)) => {
                    let mut err = String::new();
                    if let Some(mut s) = self.child.stderr.take() {
                        let _ = tokio::io::AsyncReadExt::read_to_string(&mut s, &mut err).await;
                    }
                    bail!(
                        "kubectl {} ended before a matching line; saw:\n{}\nstderr:\n{err}",
                        self.args.join(" "),
                        self.seen.join("\n")
                    );
                }
                Ok(Ok(_)) => {
                    let l = line.trim_end_matches('\n').to_string();
                    self.seen.push(l.clone());
                    if pred(&l) {
                        return Ok(l);
                    }
                }
            }
        }
    }

    /// Kills kubectl and waits for it.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}
