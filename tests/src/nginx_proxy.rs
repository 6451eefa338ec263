//! A reference HTTP reverse proxy for benchmarks: Debian's nginx terminating TLS and proxying
//! over kept-alive, verified TLS to the upstream, recording nothing. It shows what a mature L7
//! proxy costs on this machine, next to the gateway. Never shipped; benches only.
use crate::apiserver::tls::TestCa;
use anyhow::Context as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nginx (master and workers); stopped on drop.
pub struct NginxProxy {
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// The CA that signed nginx's serving certificate.
    pub ca_pem: String,
    child: Child,
    dir: tempfile::TempDir,
}

/// nginx as `scripts/install-tools.sh` unpacks it into the tools dir.
pub fn binary() -> anyhow::Result<PathBuf> {
    let bin = crate::kubectl::tools_bin()?.join("nginx");
    anyhow::ensure!(
        bin.exists(),
        "nginx not found at {}: run scripts/install-tools.sh",
        bin.display()
    );
    Ok(bin)
}

/// nginx's configuration: `workers` worker processes, a TLS listener on `port`, and every
/// request proxied over HTTP/1.1 with a keep-alive pool to `upstream`, whose certificate (for
/// `localhost`) is verified against the CA in `dir`.
pub fn config(dir: &Path, port: u16, upstream: SocketAddr, workers: usize, root: bool) -> String {
    let d = dir.display();
    // As root the master would hand workers to `nobody`, who cannot read this temp dir.
    let user = if root { "user root root;\n" } else { "" };
    format!(
        "{user}daemon off;
master_process on;
worker_processes {workers};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream api {{
        server {upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {d}/serving.pem;
        ssl_certificate_key {d}/serving-key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            proxy_pass https://api;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {d}/upstream-ca.pem;
            proxy_ssl_name localhost;
            proxy_ssl_server_name on;
            proxy_ssl_session_reuse on;
        }}
    }}
}}
"
    )
}

impl NginxProxy {
    /// Proxies to `upstream`, whose serving certificate `upstream_ca_pem` signed, with
    /// `workers` worker processes.
    pub fn start(
        upstream: SocketAddr,
        upstream_ca_pem: &str,
        workers: usize,
    ) -> anyhow::Result<NginxProxy> {
        let bin = binary()?;
        let dir = tempfile::tempdir()?;
        let ca = TestCa::generate()?;
        let serving = ca.issue_server()?;
        std::fs::write(dir.path().join("serving.pem"), &serving.cert_pem)?;
        std::fs::write(dir.path().join("serving-key.pem"), &serving.key_pem)?;
        std::fs::write(dir.path().join("upstream-ca.pem"), upstream_ca_pem)?;
        let root = nix::unistd::geteuid().is_root();
        // nginx binds its own listener: take a free port, and take another if it was gone by
        // the time nginx bound it.
        let mut last = anyhow::anyhow!("nginx did not start");
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let conf = dir.path().join("nginx.conf");
            std::fs::write(&conf, config(dir.path(), port, upstream, workers, root))?;
            let mut child = Command::new(&bin)
                .arg("-p")
                .arg(dir.path())
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            match wait_listening(&mut child, port, dir.path()) {
                Ok(()) => {
                    let proxy = NginxProxy {
                        url: format!("https://127.0.0.1:{port}"),
                        ca_pem: ca.pem.clone(),
                        child,
                        dir,
                    };
                    // The master listens before it forks its workers: wait for them, so that
                    // `pids` names every process that serves.
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while proxy.pids().len() <= workers && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    return Ok(proxy);
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// The master's and its workers' process ids.
    pub fn pids(&self) -> Vec<u32> {
        let master = self.child.id();
        let children = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
            .unwrap_or_default();
        std::iter::once(master)
            .chain(children.split_whitespace().filter_map(|p| p.parse().ok()))
            .collect()
    }

    /// A kubeconfig for this proxy with `token` (which the upstream checks).
    pub fn kubeconfig(&self, token: &str) -> String {
        crate::kubectl::kubeconfig_yaml(&self.url, &self.ca_pem, token)
    }

    /// What nginx logged (startup errors name the directive at fault).
    pub fn error_log(&self) -> String {
        error_log(self.dir.path())
    }
}

impl Drop for NginxProxy {
    fn drop(&mut self) {
        // SIGTERM is nginx's fast shutdown: the master stops its workers before it exits.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until nginx accepts connections on `port`, or says why it could not.
fn wait_listening(child: &mut Child, port: u16, dir: &Path) -> anyhow::Result<()> {
    let log = || error_log(dir);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("nginx exited with {status}: {}", log());
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    anyhow::bail!("nginx did not listen within 10 s: {}", log())
}

/// The error log of the nginx configured in `dir` (see `config`).
fn error_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
}
