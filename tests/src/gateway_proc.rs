//! Runs the real `gateway` binary for integration tests: its own serving CA, a temp journal,
//! loopback ports learnt from its JSON log, and helpers to point kubectl at it.
use crate::apiserver::tls::TestCa;
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

pub struct GatewayProc {
    child: Child,
    /// https://127.0.0.1:PORT
    pub url: String,
    /// http://127.0.0.1:PORT (healthz, readyz, metrics)
    pub ops_url: String,
    pub journal_dir: PathBuf,
    /// CA that signed the gateway's serving certificate.
    pub ca_pem: String,
    /// Lines the gateway logged (JSON), collected in the background.
    pub log: crate::proc_log::Log,
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Files the gateway needs, written into `dir`: serving cert/key and the CA.
pub struct GatewayTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca_pem: String,
}

pub fn write_tls(dir: &Path) -> anyhow::Result<GatewayTls> {
    let ca = TestCa::generate()?;
    let serving = ca.issue_server()?;
    let cert = dir.join("gateway.crt");
    let key = dir.join("gateway.key");
    std::fs::write(&cert, &serving.cert_pem)?;
    std::fs::write(&key, &serving.key_pem)?;
    Ok(GatewayTls {
        cert,
        key,
        ca_pem: ca.pem.clone(),
    })
}

impl GatewayProc {
    /// Starts the gateway with `args` (upstream and auth flags) plus listeners on loopback
    /// port 0, TLS in `dir`, and the journal at `journal_dir`; waits until it listens.
    pub async fn start(dir: &Path, journal_dir: &Path, args: &[String]) -> anyhow::Result<Self> {
        Self::start_logging(dir, journal_dir, args, "info").await
    }

    /// [`GatewayProc::start`] with `LOG=<filter>`; stdout is collected into `log` too.
    pub async fn start_logging(
        dir: &Path,
        journal_dir: &Path,
        args: &[String],
        filter: &str,
    ) -> anyhow::Result<Self> {
        let tls = write_tls(dir)?;
        let bin = crate::binaries::path("gateway")?;
        let mut cmd = Command::new(bin);
        cmd.arg("--listen=127.0.0.1:0")
            .arg("--ops-listen=127.0.0.1:0")
            .arg(format!("--tls-cert={}", tls.cert.display()))
            .arg(format!("--tls-key={}", tls.key.display()))
            .arg(format!("--journal-dir={}", journal_dir.display()))
            .args(args)
            .env("LOG_FORMAT", "json")
            .env("LOG", filter)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("starting the gateway binary")?;
        let (log, fields) =
            crate::proc_log::wait_ready(&mut child, "gateway", "gateway listening", 30).await?;
        let (listen, ops) = (
            crate::proc_log::field(&fields, "listen"),
            crate::proc_log::field(&fields, "ops"),
        );
        Ok(Self {
            child,
            url: format!("https://{listen}"),
            ops_url: format!("http://{ops}"),
            journal_dir: journal_dir.to_path_buf(),
            ca_pem: tls.ca_pem,
            log,
        })
    }

    /// The gateway's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// A kubeconfig that points kubectl at the gateway with `token`.
    pub fn write_kubeconfig(&self, path: &Path, token: &str) -> anyhow::Result<()> {
        std::fs::write(
            path,
            crate::kubectl::kubeconfig_yaml(&self.url, &self.ca_pem, token),
        )?;
        Ok(())
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub async fn stop(mut self) -> anyhow::Result<std::process::ExitStatus> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        Ok(tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await??)
    }

    /// A GET on the ops listener: (status, body).
    pub async fn ops_get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let addr = self.ops_url.trim_start_matches("http://").to_string();
        let stream = tokio::net::TcpStream::connect(&addr).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = http::Request::get(path)
            .header("host", addr)
            .body(http_body_util::Empty::<bytes::Bytes>::new())?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}
