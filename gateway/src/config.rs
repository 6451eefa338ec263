//! Command-line and environment configuration of the gateway. Everything is validated by
//! `Gateway::build` before any socket is bound.
use crate::auth::AuthArgs;
use crate::upstream::UpstreamArgs;
use clap::Parser;
use gatehouse_journal::FsyncPolicy;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Parser)]
#[command(name = "gateway", version = crate::VERSION, about = "gatehouse: the recording gateway for the Kubernetes API")]
pub struct GatewayArgs {
    /// Address of the TLS listener kubectl connects to.
    #[arg(long, env = "GATEWAY_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Address of the plain-HTTP operations listener (/healthz, /readyz, /metrics).
    #[arg(long, env = "GATEWAY_OPS_LISTEN", default_value = "0.0.0.0:9090")]
    pub ops_listen: SocketAddr,
    /// PEM certificate chain the gateway serves.
    #[arg(long, env = "GATEWAY_TLS_CERT")]
    pub tls_cert: PathBuf,
    /// PEM private key of the serving certificate.
    #[arg(long, env = "GATEWAY_TLS_KEY")]
    pub tls_key: PathBuf,
    /// Directory of the durable journal.
    #[arg(
        long,
        env = "GATEWAY_JOURNAL_DIR",
        default_value = "/var/lib/gatehouse/journal"
    )]
    pub journal_dir: PathBuf,
    /// When journal writes are fsynced: `always`, `never`, or `interval:<duration>` (a process
    /// crash loses nothing in any mode; a power loss at most one interval).
    #[arg(long, env = "GATEWAY_JOURNAL_FSYNC", default_value = "interval:200ms", value_parser = parse_fsync)]
    pub journal_fsync: FsyncPolicy,
    /// Unshipped journal bytes at which the gateway stops forwarding (fail-closed).
    #[arg(long, env = "GATEWAY_JOURNAL_MAX_BYTES", default_value = "10GiB", value_parser = parse_bytes)]
    pub journal_max_bytes: u64,
    /// Size at which journal segments rotate.
    #[arg(long, env = "GATEWAY_JOURNAL_SEGMENT_BYTES", default_value = "64MiB", value_parser = parse_bytes)]
    pub journal_segment_bytes: u64,
    /// Most body bytes captured in the transcript per request and per response.
    #[arg(long, env = "GATEWAY_CAPTURE_BYTES", default_value = "256KiB", value_parser = parse_bytes)]
    pub capture_bytes: u64,
    /// Idle time after which a caller's next command starts a new session.
    #[arg(long, env = "GATEWAY_SESSION_IDLE_GAP", default_value = "10m", value_parser = humantime::parse_duration)]
    pub session_idle_gap: Duration,
    /// YAML file mapping gateway identities to kube users and groups.
    #[arg(long, env = "GATEWAY_IDENTITY_MAP")]
    pub identity_map: Option<PathBuf>,
    /// CALLER=TARGET pairs a caller may request with `kubectl --as`; all else is refused.
    #[arg(long, env = "GATEWAY_ALLOW_IMPERSONATION", value_delimiter = ',')]
    pub allow_impersonation: Vec<String>,
    /// YAML policy file (schema: policy/policy.schema.json), re-read every second; without it
    /// every authenticated request is allowed.
    #[arg(long, env = "GATEWAY_POLICY_FILE")]
    pub policy_file: Option<PathBuf>,
    /// Name of this gateway instance in transcripts (defaults to the hostname).
    #[arg(long, env = "GATEWAY_INSTANCE")]
    pub instance: Option<String>,
    /// Runtime worker threads; 0 means one per CPU. Fewer threads mean fewer cross-thread
    /// wake-ups per request (lower latency) on small nodes shared with other work.
    #[arg(long, env = "GATEWAY_WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: usize,
    /// Ed25519 private key (PKCS#8 PEM, `openssl genpkey -algorithm ed25519`) that signs session
    /// digests. Without it the gateway generates a key for this process only and warns: its
    /// digests then verify only against this process's `/keys`.
    #[arg(long, env = "GATEWAY_SIGNING_KEY")]
    pub signing_key: Option<PathBuf>,
    /// How often each open session with new events gets a signed digest (ended sessions get
    /// their final digest at the next tick).
    #[arg(long, env = "GATEWAY_DIGEST_INTERVAL", default_value = "60s", value_parser = parse_interval)]
    pub digest_interval: Duration,
    /// How long in-flight requests may finish after SIGTERM.
    #[arg(long, env = "GATEWAY_SHUTDOWN_GRACE", default_value = "25s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    #[command(flatten)]
    pub collector: crate::shipping::CollectorArgs,
}

fn parse_fsync(s: &str) -> Result<FsyncPolicy, String> {
    match s {
        "always" => Ok(FsyncPolicy::Always),
        "never" => Ok(FsyncPolicy::Never),
        _ => s
            .strip_prefix("interval:")
            .and_then(|d| humantime::parse_duration(d).ok())
            .filter(|d| !d.is_zero())
            .map(FsyncPolicy::Interval)
            .ok_or_else(|| {
                format!(
                    "{s:?} is not `always`, `never` or `interval:<duration>` (e.g. interval:200ms)"
                )
            }),
    }
}

/// A non-zero duration such as 30s.
fn parse_interval(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?} is not a non-zero duration such as 30s or 1m"))
}

/// Parses `123`, `64KiB`, `10MiB`, `2GiB` (binary units; `KB`/`MB`/`GB` are decimal).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 4096, 64KiB or 10GiB"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "Ki" => 1 << 10,
        "MiB" | "Mi" => 1 << 20,
        "GiB" | "Gi" => 1 << 30,
        "KB" | "K" => 1_000,
        "MB" | "M" => 1_000_000,
        "GB" | "G" => 1_000_000_000,
        other => return Err(format!("unknown size unit {other:?} in {s:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_fsync() {
        assert_eq!(parse_bytes("64KiB"), Ok(65536));
        assert_eq!(parse_bytes("10GiB"), Ok(10 << 30));
        assert_eq!(parse_bytes("7"), Ok(7));
        assert!(parse_bytes("ten").is_err());
        assert!(parse_bytes("5XB").is_err());
        assert_eq!(parse_fsync("always"), Ok(FsyncPolicy::Always));
        assert_eq!(
            parse_fsync("interval:1s"),
            Ok(FsyncPolicy::Interval(Duration::from_secs(1)))
        );
        assert!(parse_fsync("interval:0s").is_err());
        assert!(parse_fsync("sometimes").is_err());
    }
}
