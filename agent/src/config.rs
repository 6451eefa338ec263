//! Command line and environment (`AGENT_…`), validated before anything touches the kernel.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};

use crate::{
    AgentError,
    endpoints::EndpointSpec,
    kube::{KubeConfig, pods::Selector},
};

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

    /// Kubernetes API server URL for the watches. Default: in-cluster
    /// (`KUBERNETES_SERVICE_HOST`); outside a cluster and without this, no watches run.
    #[arg(long, env = "AGENT_KUBE_API_URL")]
    pub kube_api_url: Option<String>,

    /// CA bundle of the API server's serving certificate.
    #[arg(
        long,
        env = "AGENT_KUBE_CA_FILE",
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
    )]
    pub kube_ca_file: PathBuf,

    /// Bearer token file for the API server (re-read on every request; empty: none).
    #[arg(
        long,
        env = "AGENT_KUBE_TOKEN_FILE",
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )]
    pub kube_token_file: PathBuf,

    /// Do not attach the node-wide optional-reason tracepoints (`sys_enter_openat` on token
    /// paths, `sched_process_exec` of kubectl/curl) that enrich alerts.
    #[arg(long, env = "AGENT_NO_REASONS")]
    pub no_reasons: bool,

    /// Do not talk to Kubernetes: the endpoint set and cgroup modes come from flags only.
    #[arg(long, env = "AGENT_NO_KUBE")]
    pub no_kube: bool,

    /// Label selector of the control-plane Nodes whose IPs are API-server endpoints.
    #[arg(
        long,
        env = "AGENT_CONTROL_PLANE_SELECTOR",
        default_value = "node-role.kubernetes.io/control-plane"
    )]
    pub control_plane_selector: String,

    /// The port the API server listens on at control-plane Node IPs.
    #[arg(long, env = "AGENT_CONTROL_PLANE_PORT", default_value = "6443")]
    pub control_plane_port: u16,

    /// Label selector (`KEY=VALUE,...`) of the gateway's pods: their cgroups on this node are
    /// never flagged.
    #[arg(
        long,
        env = "AGENT_GATEWAY_SELECTOR",
        default_value = "app.kubernetes.io/name=gatehouse,app.kubernetes.io/component=gateway"
    )]
    pub gateway_selector: Selector,

    /// Per-namespace mode for the pods of this node: `NAMESPACE=audit|enforce`. Repeat or
    /// comma-separate.
    #[arg(
        long = "namespace-mode",
        env = "AGENT_NAMESPACE_MODES",
        value_delimiter = ',',
        value_parser = parse_namespace_mode
    )]
    pub namespace_modes: Vec<(String, ModeArg)>,
}

fn parse_namespace_mode(s: &str) -> Result<(String, ModeArg), String> {
    let (ns, mode) = s
        .split_once('=')
        .ok_or_else(|| format!("namespace mode {s:?} must be NAMESPACE=audit|enforce"))?;
    let mode = match mode.trim() {
        "audit" => ModeArg::Audit,
        "enforce" => ModeArg::Enforce,
        other => return Err(format!("namespace mode {other:?} is not audit or enforce")),
    };
    if ns.trim().is_empty() {
        return Err(format!("namespace mode {s:?} names no namespace"));
    }
    Ok((ns.trim().to_string(), mode))
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
        if self.endpoints.is_empty() && self.endpoints_file.is_none() && self.kube().is_none() {
            return Err(AgentError::Config(
                "no API-server endpoints: pass --endpoint KIND=ADDR:PORT or --endpoints-file, \
                 or run in a cluster (--kube-api-url)"
                    .into(),
            ));
        }
        if let Some(url) = &self.kube_api_url
            && !url.starts_with("https://")
        {
            return Err(AgentError::Config(format!(
                "--kube-api-url {url:?} must be https://HOST[:PORT]"
            )));
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

    /// Where the Kubernetes API is, if the agent should watch it.
    pub fn kube(&self) -> Option<KubeConfig> {
        if self.no_kube {
            return None;
        }
        let url = match &self.kube_api_url {
            Some(u) => u.clone(),
            None => {
                // Every pod sees KUBERNETES_SERVICE_HOST; without a mounted ServiceAccount
                // (the chart's default, no RBAC) the agent runs on flags alone.
                if !self.kube_ca_file.exists() {
                    return None;
                }
                let host = std::env::var("KUBERNETES_SERVICE_HOST").ok()?;
                let port =
                    std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
                if host.contains(':') {
                    format!("https://[{host}]:{port}")
                } else {
                    format!("https://{host}:{port}")
                }
            }
        };
        Some(KubeConfig {
            url,
            ca_file: self.kube_ca_file.clone(),
            token_file: (!self.kube_token_file.as_os_str().is_empty())
                .then(|| self.kube_token_file.clone()),
        })
    }
}
