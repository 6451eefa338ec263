//! A ClickHouse for tests: the real engine (PyPI `chdb-core`) behind `tests/support/chdb_http.py`,
//! which speaks ClickHouse's HTTP interface, or a real server when `CLICKHOUSE_URL` is set (each
//! test then gets its own database). `scripts/install-chdb.sh` installs the engine (cached).
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct TestClickHouse {
    /// http://127.0.0.1:PORT (fixture) or `CLICKHOUSE_URL`.
    pub url: String,
    /// A database name unique to this test.
    pub database: String,
    /// Whether the server speaks ClickHouse's LZ4 block compression (a real server does; the
    /// fixture does not, so clients in tests pass `--clickhouse-compression=none`).
    pub compression: bool,
    fixture: Option<Fixture>,
}

struct Fixture {
    child: Option<Child>,
    data_dir: PathBuf,
    port: u16,
}

impl TestClickHouse {
    /// Starts the fixture with its data in `dir` (or uses `CLICKHOUSE_URL`).
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        let database = format!("gatehouse_test_{}", uuid::Uuid::new_v4().simple());
        if let Ok(url) = std::env::var("CLICKHOUSE_URL")
            && !url.is_empty()
        {
            return Ok(Self {
                url,
                database,
                compression: true,
                fixture: None,
            });
        }
        let data_dir = dir.join("chdb");
        std::fs::create_dir_all(&data_dir)?;
        let (child, port) = spawn_fixture(&data_dir, 0).await?;
        Ok(Self {
            url: format!("http://127.0.0.1:{port}"),
            database,
            compression: false,
            fixture: Some(Fixture {
                child: Some(child),
                data_dir,
                port,
            }),
        })
    }

    /// `--clickhouse-*` flags for the collector binary.
    pub fn collector_args(&self) -> Vec<String> {
        vec![
            format!("--clickhouse-url={}", self.url),
            format!("--clickhouse-database={}", self.database),
            format!(
                "--clickhouse-compression={}",
                if self.compression { "lz4" } else { "none" }
            ),
        ]
    }

    /// The fixture's process id, while it runs (for CPU and memory figures in benchmarks).
    pub fn fixture_pid(&self) -> Option<u32> {
        self.fixture.as_ref()?.child.as_ref()?.id()
    }

    /// Whether this is the fixture (which can be stopped and started again).
    pub fn is_fixture(&self) -> bool {
        self.fixture.is_some()
    }

    /// Takes the server down (fixture only): connections are refused until `resume`.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let fx = self
            .fixture
            .as_mut()
            .context("only the chdb fixture can be stopped")?;
        if let Some(mut child) = fx.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// Brings the fixture back on the same port and data directory.
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        let fx = self
            .fixture
            .as_mut()
            .context("only the chdb fixture can be resumed")?;
        let (child, _) = spawn_fixture(&fx.data_dir, fx.port).await?;
        fx.child = Some(child);
        Ok(())
    }

    /// Runs one statement and returns its output as TabSeparated text.
    pub async fn query_text(&self, sql: &str) -> anyhow::Result<String> {
        let url = format!(
            "{}/?database={}&default_format=TabSeparated",
            self.url.trim_end_matches('/'),
            self.database
        );
        let out = post(&url, bytes::Bytes::from(sql.to_string())).await?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Runs `sql` in `database` with `data` as its body (the rows of an `INSERT … FORMAT X`)
    /// and returns the raw output (e.g. `SELECT … FORMAT RowBinary`).
    pub async fn query_bytes(
        &self,
        database: &str,
        sql: &str,
        data: bytes::Bytes,
    ) -> anyhow::Result<bytes::Bytes> {
        let url = format!(
            "{}/?database={}&query={}",
            self.url.trim_end_matches('/'),
            url_encode(database),
            url_encode(sql)
        );
        post(&url, data).await
    }
}

impl Drop for TestClickHouse {
    fn drop(&mut self) {
        if let Some(fx) = self.fixture.as_mut()
            && let Some(child) = fx.child.as_mut()
        {
            let _ = child.start_kill();
        }
    }
}

/// The python of the chdb venv: `GATEHOUSE_CHDB_PYTHON`, else the install script's default.
pub fn chdb_python() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("GATEHOUSE_CHDB_PYTHON")
        && !p.is_empty()
    {
        return Ok(PathBuf::from(p));
    }
    let cache = std::env::var("GATEHOUSE_TOOLS_CACHE")
        .map(PathBuf::from)
        .or_else(|_| {
            std::env::var("XDG_CACHE_HOME").map(|c| PathBuf::from(c).join("gatehouse-tools"))
        })
        .or_else(|_| std::env::var("HOME").map(|h| PathBuf::from(h).join(".cache/gatehouse-tools")))
        .context("HOME is not set")?;
    let py = cache.join("chdb-venv/bin/python");
    anyhow::ensure!(
        py.is_file(),
        "{} is missing: run scripts/install-chdb.sh (scripts/test.sh does), or set CLICKHOUSE_URL",
        py.display()
    );
    Ok(py)
}

async fn spawn_fixture(data_dir: &Path, port: u16) -> anyhow::Result<(Child, u16)> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("support/chdb_http.py");
    let mut child = Command::new(chdb_python()?)
        .arg(&script)
        .arg("--path")
        .arg(data_dir)
        .arg("--port")
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting tests/support/chdb_http.py")?;
    let stdout = child.stdout.take().context("fixture stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .context("the chdb fixture did not start within 60 s")??
        .context("the chdb fixture exited before listening")?;
    let port: u16 = line
        .strip_prefix("LISTENING ")
        .and_then(|p| p.trim().parse().ok())
        .with_context(|| format!("unexpected fixture output {line:?}"))?;
    Ok((child, port))
}

/// `s` percent-encoded for a URL query parameter.
fn url_encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A minimal HTTP/1.1 POST over a fresh connection, for assertions from tests.
async fn post(url: &str, body: bytes::Bytes) -> anyhow::Result<bytes::Bytes> {
    use http_body_util::{BodyExt, Full};
    let uri: http::Uri = url.parse()?;
    let host = uri.host().context("no host")?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = http::Request::post(uri.clone())
        .header("host", format!("{host}:{port}"))
        .body(Full::new(body))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let out = resp.into_body().collect().await?.to_bytes();
    anyhow::ensure!(
        status.is_success(),
        "ClickHouse answered {status}: {}",
        String::from_utf8_lossy(&out)
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn url_encode_keeps_alphanumerics_and_escapes_the_rest() {
        assert_eq!(
            super::url_encode("SELECT a-b FROM t WHERE x % 2 = 1&y"),
            "SELECT%20a%2Db%20FROM%20t%20WHERE%20x%20%25%202%20%3D%201%26y"
        );
        assert_eq!(super::url_encode("é"), "%C3%A9");
    }
}
