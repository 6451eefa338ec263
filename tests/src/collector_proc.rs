//! Runs the real `collector` binary for integration tests: its own TLS and client CAs, a token
//! file, a dead-letter file in a temp dir, loopback ports learnt from its JSON log.
use crate::apiserver::tls::{Issued, TestCa};
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::process::{Child, Command};

/// The PKI and token a collector and its clients share, written once per test into a dir.
pub struct CollectorPki {
    pub server_ca: TestCa,
    pub client_ca: TestCa,
    pub server: Issued,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca_file: PathBuf,
    pub token_file: PathBuf,
    /// The ingest token accepted for `gateway-test`.
    pub token: String,
}

impl CollectorPki {
    pub fn write(dir: &Path) -> anyhow::Result<Self> {
        let server_ca = TestCa::generate()?;
        let client_ca = TestCa::generate()?;
        let server = server_ca.issue_server()?;
        let cert = dir.join("collector.crt");
        let key = dir.join("collector.key");
        let client_ca_file = dir.join("client-ca.crt");
        let token_file = dir.join("ingest-tokens");
        std::fs::write(&cert, &server.cert_pem)?;
        std::fs::write(&key, &server.key_pem)?;
        std::fs::write(&client_ca_file, &client_ca.pem)?;
        let token = format!("tok-{}", uuid::Uuid::new_v4().simple());
        std::fs::write(&token_file, format!("# name token\ngateway-test {token}\n"))?;
        Ok(Self {
            server_ca,
            client_ca,
            server,
            cert,
            key,
            client_ca_file,
            token_file,
            token,
        })
    }

    /// A gateway's flags to ship to the collector at `addr` (`127.0.0.1:PORT`) as client
    /// `gateway-test`, with its client certificate and the ingest token; the files are written
    /// into `dir`.
    pub fn gateway_shipping(&self, dir: &Path, addr: &str) -> anyhow::Result<GatewayShipping> {
        let client = self.client_ca.issue_client("gateway-test", &[])?;
        let (cert, key, ca_file, token) = (
            dir.join("gw-client.crt"),
            dir.join("gw-client.key"),
            dir.join("collector-ca.crt"),
            dir.join("gw-ingest-token"),
        );
        std::fs::write(&cert, &client.cert_pem)?;
        std::fs::write(&key, &client.key_pem)?;
        std::fs::write(&ca_file, &self.server_ca.pem)?;
        std::fs::write(&token, &self.token)?;
        let args = vec![
            format!("--collector-url=https://{addr}"),
            format!("--collector-ca-file={}", ca_file.display()),
            format!("--collector-client-cert={}", cert.display()),
            format!("--collector-client-key={}", key.display()),
            format!("--collector-token-file={}", token.display()),
            "--collector-server-name=localhost".into(),
        ];
        Ok(GatewayShipping { ca_file, args })
    }

    /// Flags for TLS, mTLS (client `gateway-test` allowed) and the token file.
    pub fn args(&self) -> Vec<String> {
        vec![
            format!("--tls-cert={}", self.cert.display()),
            format!("--tls-key={}", self.key.display()),
            format!("--client-ca-file={}", self.client_ca_file.display()),
            "--ingest-clients=gateway-test,agent-test".to_string(),
            format!("--ingest-token-file={}", self.token_file.display()),
        ]
    }
}

/// See [`CollectorPki::gateway_shipping`].
pub struct GatewayShipping {
    /// The CA that signed the collector's certificate (the CLI's `--collector-ca` too).
    pub ca_file: PathBuf,
    /// The gateway's `--collector-*` flags.
    pub args: Vec<String>,
}

pub struct CollectorProc {
    child: Child,
    /// 127.0.0.1:PORT of the gRPC listener.
    pub addr: String,
    pub dead_letter: PathBuf,
    pub log: crate::proc_log::Log,
}

impl Drop for CollectorProc {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl CollectorProc {
    /// Starts `collector serve` on loopback port 0 (or `port`) with `args`; waits until it listens.
    pub async fn start(dir: &Path, port: u16, args: &[String]) -> anyhow::Result<Self> {
        Self::start_logging(dir, port, args, "info").await
    }

    /// [`CollectorProc::start`] with `LOG=<filter>`; stdout is collected into `log` too.
    pub async fn start_logging(
        dir: &Path,
        port: u16,
        args: &[String],
        filter: &str,
    ) -> anyhow::Result<Self> {
        let bin = crate::binaries::path("collector")?;
        let dead_letter = dir.join("dead-letter.ndjson");
        let mut child = Command::new(bin)
            .arg("serve")
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg("--ops-listen=127.0.0.1:0")
            .arg(format!("--dead-letter-file={}", dead_letter.display()))
            .args(args)
            .env("LOG_FORMAT", "json")
            .env("LOG", filter)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting the collector binary")?;
        let (log, fields) =
            crate::proc_log::wait_ready(&mut child, "collector", "collector listening", 60).await?;
        let addr = crate::proc_log::field(&fields, "listen");
        Ok(Self {
            child,
            addr,
            dead_letter,
            log,
        })
    }

    /// The collector's process id (for CPU and memory figures in benchmarks).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn port(&self) -> u16 {
        self.addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// SIGKILL: the collector dies wherever it is.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}
