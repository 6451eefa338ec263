//! The JSON log of a spawned product binary: every stdout and stderr line collected for the
//! test to read, and the wait for the line that says it is ready (which names its addresses).
use anyhow::Context as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

/// Lines a process has logged so far, stdout and stderr interleaved as they came.
pub type Log = Arc<parking_lot::Mutex<Vec<String>>>;

/// Collects `child`'s stdout and stderr into a new [`Log`] and waits up to `secs` for a
/// `LOG_FORMAT=json` line whose message is `ready`; returns the log and that line's fields.
/// `what` names the process in errors, which carry its log (and exit status).
pub async fn wait_ready(
    child: &mut Child,
    what: &str,
    ready: &str,
    secs: u64,
) -> anyhow::Result<(Log, serde_json::Value)> {
    let stderr = child
        .stderr
        .take()
        .with_context(|| format!("{what} stderr"))?;
    let log: Log = Arc::default();
    drain_into(
        child
            .stdout
            .take()
            .with_context(|| format!("{what} stdout"))?,
        log.clone(),
    );
    let mut lines = BufReader::new(stderr).lines();
    let wait = async {
        while let Some(line) = lines.next_line().await? {
            log.lock().push(line.clone());
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["fields"]["message"] == ready
            {
                return Ok::<_, anyhow::Error>(v["fields"].clone());
            }
        }
        anyhow::bail!("the {what} exited before it said {ready:?}")
    };
    let fields = match tokio::time::timeout(Duration::from_secs(secs), wait).await {
        Ok(Ok(fields)) => fields,
        Ok(Err(e)) => {
            let status = child.wait().await.ok();
            anyhow::bail!("{e} (status {status:?}); log:\n{}", log.lock().join("\n"))
        }
        Err(_) => anyhow::bail!(
            "the {what} did not say {ready:?} within {secs}s; log:\n{}",
            log.lock().join("\n")
        ),
    };
    let sink = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            sink.lock().push(line);
        }
    });
    Ok((log, fields))
}

/// Appends each line of `out` to `log` until it ends.
pub(crate) fn drain_into(out: impl tokio::io::AsyncRead + Unpin + Send + 'static, log: Log) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(out).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            log.lock().push(line);
        }
    });
}

/// A string field of a ready line (`listen`, `ops`).
pub fn field(fields: &serde_json::Value, name: &str) -> String {
    fields[name].as_str().unwrap_or_default().to_string()
}
