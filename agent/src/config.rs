//! Command line and environment (`AGENT_…`), validated before anything touches the kernel.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};

use crate::{AgentError, endpoints::EndpointSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Audit,
    Enforce,
}

/// Flags API-server connections that bypass the gateway; optionally refuses them.
#[derive(Debug, Clone, Parser)]
// `version`: crate version, git revision and build date (build.rs).
#[command(name = "gatehouse-agent", version = env!("GATEHOUSE_VERSION"))]
pub struct Args {
    /// API-server endpoints: `KIND=ADDR:PORT`, KIND one of service_vip, endpoint_ip, node_ip,
    /// external (ADDR may be a CIDR: `10.0.0.0/24:6443`, `[fd00::/64]:443`) or dns (a host name,
    /// re-resolved with backoff). Repeat or comma-separate.
    #[arg(long = "endpoint", env = "AGENT_ENDPOINTS", value_delimiter = ',')]
    pub endpoints: Vec<EndpointSpec>,

    /// A file of further endpoints, one per line in the same form (`#` comments); re-read when
    /// it changes, so a mounted ConfigMap updates the set without a restart.
    #[arg(long, env = "AGENT_ENDPOINTS_FILE")]
    pub endpoints_file: Option<PathBuf>,

    /// How often the endpoints file is checked and DNS names are re-resolved.
    #[arg(long, env = "AGENT_REFRESH_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub refresh_interval: Duration,

    /// cgroup v2 directories the programs attach to (with AllowMultiple, so a CNI's own
    /// programs keep working). Default: the cgroup v2 root.
    #[arg(
        long = "attach-cgroup",
        env = "AGENT_ATTACH_CGROUPS",
        value_delimiter = ','
    )]
    pub attach_cgroups: Vec<PathBuf>,

    /// cgroup v2 directories whose processes (and descendants) are the gateway: never flagged.
    #[arg(
        long = "exempt-cgroup",
        env = "AGENT_EXEMPT_CGROUPS",
        value_delimiter = ','
    )]
    pub exempt_cgroups: Vec<PathBuf>,

    /// cgroup v2 directories (pods, namespaces) in enforce mode: connect() gets EPERM.
    #[arg(
        long = "enforce-cgroup",
        env = "AGENT_ENFORCE_CGROUPS",
        value_delimiter = ','
    )]
    pub enforce_cgroups: Vec<PathBuf>,

    /// cgroup v2 directories in audit mode, overriding an enforcing ancestor or default.
    #[arg(
        long = "audit-cgroup",
        env = "AGENT_AUDIT_CGROUPS",
        value_delimiter = ','
    )]
    pub audit_cgroups: Vec<PathBuf>,

    /// Mode for cgroups with no mode of their own.
    #[arg(long, env = "AGENT_DEFAULT_MODE", value_enum, default_value = "audit")]
    pub default_mode: ModeArg,

    /// Connects of one (cgroup, process, destination, verdict) within this window fold into one
    /// alert with a count. The alert is written when the window closes.
    #[arg(long, env = "AGENT_DEDUP_WINDOW", default_value = "1s", value_parser = humantime::parse_duration)]
    pub dedup_window: Duration,

    /// bpffs directory the maps are pinned in (kept across restarts).
    #[arg(long, env = "AGENT_PIN_DIR", default_value = "/sys/fs/bpf/gatehouse")]
    pub pin_dir: PathBuf,

    /// Journal directory alerts are appended to (the shipper's hand-off).
    #[arg(
        long,
        env = "AGENT_JOURNAL_DIR",
        default_value = "/var/lib/gatehouse/agent-journal"
    )]
    pub journal_dir: PathBuf,

    /// Name of this node in alerts. Default: the host name.
    #[arg(long, env = "AGENT_NODE_NAME")]
    pub node_name: Option<String>,

    /// Address for `/metrics` and `/healthz`.
    #[arg(long, env = "AGENT_OPS_ADDR", default_value = "0.0.0.0:9465")]
    pub ops_addr: SocketAddr,

    /// Collector ingest URL (`https://collector:7443`, or `http://` for plaintext h2c). Without
    /// it the journal is the hand-off and something else ships it.
    #[arg(long, env = "AGENT_COLLECTOR_URL")]
    pub collector_url: Option<String>,

    /// PEM CA bundle that signed the collector's certificate (required for https).
    #[arg(long, env = "AGENT_COLLECTOR_CA")]
    pub collector_ca: Option<PathBuf>,

    /// File holding the bearer token for the collector's ingest API.
    #[arg(long, env = "AGENT_COLLECTOR_TOKEN_FILE")]
    pub collector_token_file: Option<PathBuf>,

    /// Print the endpoint set that would be loaded, then exit (no BPF is loaded).
    #[arg(long, env = "AGENT_DRY_RUN")]
    pub dry_run: bool,

    /// Start even if enforce mode cannot be honoured (detection only), with a loud warning.
    #[arg(long, env = "AGENT_ALLOW_DEGRADED")]
    pub allow_degraded: bool,
}

impl Args {
    /// Checks what can be checked without the kernel.
    pub fn validate(&self) -> Result<(), AgentError> {
        if self.dedup_window.is_zero() || self.dedup_window > Duration::from_secs(3600) {
            return Err(AgentError::Config(
                "--dedup-window must be between 1ns and 1h".into(),
            ));
        }
        if self.refresh_interval < Duration::from_millis(100) {
            return Err(AgentError::Config(
                "--refresh-interval must be at least 100ms".into(),
            ));
        }
        if self.endpoints.is_empty() && self.endpoints_file.is_none() {
            return Err(AgentError::Config(
                "no API-server endpoints: pass --endpoint KIND=ADDR:PORT or --endpoints-file"
                    .into(),
            ));
        }
        for p in self
            .attach_cgroups
            .iter()
            .chain(&self.exempt_cgroups)
            .chain(&self.enforce_cgroups)
            .chain(&self.audit_cgroups)
        {
            if !p.is_absolute() {
                return Err(AgentError::Config(format!(
                    "cgroup path {} must be absolute",
                    p.display()
                )));
            }
        }
        Ok(())
    }
}
