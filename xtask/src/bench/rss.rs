//! Streams a large `kubectl logs -f` through the gateway and samples the gateway's RSS.
use super::procfs::rss_kib;
use gatehouse_tests::gateway_proc::GatewayProc;
use gatehouse_tests::oidc::TestIssuer;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::AsyncReadExt;

pub struct Growth {
    pub start_kib: u64,
    pub peak_kib: u64,
}

pub async fn stream_logs_and_watch_rss(
    gw: &GatewayProc,
    tools: &Path,
    dir: &Path,
    issuer: &TestIssuer,
    bytes: u64,
) -> anyhow::Result<Growth> {
    let pid = gw
        .pid()
        .ok_or_else(|| anyhow::anyhow!("gateway has no pid"))?;
    let kubeconfig = dir.join("rss.kubeconfig");
    gw.write_kubeconfig(
        &kubeconfig,
        &issuer.token("bench", &["bench"], "gatehouse")?,
    )?;
    let start_kib = rss_kib(pid).unwrap_or(0);
    let mut child = tokio::process::Command::new(tools.join("kubectl"))
        .args(["logs", "-f", "big-logger", "-n", "bench"])
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("kubectl stdout"))?;
    let peak = Arc::new(AtomicU64::new(start_kib));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(pid).unwrap_or(0), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut buf = vec![0u8; 1 << 16];
    let mut read = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while read < bytes {
        let n = tokio::time::timeout_at(deadline, stdout.read(&mut buf)).await??;
        if n == 0 {
            break;
        }
        read += n as u64;
    }
    peak.fetch_max(rss_kib(pid).unwrap_or(0), Ordering::Relaxed);
    sampler.abort();
    let _ = child.kill().await;
    anyhow::ensure!(
        read >= bytes,
        "kubectl logs -f ended after {read} of {bytes} bytes"
    );
    Ok(Growth {
        start_kib,
        peak_kib: peak.load(Ordering::Relaxed),
    })
}
