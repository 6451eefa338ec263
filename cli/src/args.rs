//! Command-line arguments.
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "gatehouse",
    // Crate version, git revision and build date (build.rs).
    version = env!("GATEHOUSE_VERSION"),
    about = "Query and replay gatehouse session transcripts"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Where the events come from.
#[derive(Debug, Clone, Args)]
pub struct Source {
    /// The gateway's journal directory.
    #[arg(
        long,
        env = "GATEHOUSE_JOURNAL",
        default_value = "/var/lib/gatehouse/journal"
    )]
    pub journal: PathBuf,
    /// Read from a collector's Query API instead of the journal (https://collector:7443).
    #[arg(long, env = "GATEHOUSE_COLLECTOR")]
    pub collector: Option<String>,
    /// PEM CA bundle that signed the collector's certificate (needed for https).
    #[arg(long, env = "GATEHOUSE_COLLECTOR_CA", requires = "collector")]
    pub collector_ca: Option<PathBuf>,
    /// Name to verify in the collector's certificate, when it differs from the URL's host.
    #[arg(long, env = "GATEHOUSE_COLLECTOR_SERVER_NAME", requires = "collector")]
    pub collector_server_name: Option<String>,
    /// OIDC token (JWT) presented to the collector; the caller must be in a reader group.
    #[arg(long, env = "GATEHOUSE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the OIDC token, instead of --token.
    #[arg(long, env = "GATEHOUSE_TOKEN_FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// List sessions, newest last.
    Sessions {
        #[command(flatten)]
        source: Source,
        /// Only sessions of this user (exact username).
        #[arg(long, env = "GATEHOUSE_WHO")]
        who: Option<String>,
        /// Only sessions active at or after this time: RFC 3339, or a duration ago such as 24h or 7d.
        #[arg(long, env = "GATEHOUSE_SINCE")]
        since: Option<String>,
        /// Only sessions that began at or before this time: RFC 3339, or a duration ago.
        #[arg(long, env = "GATEHOUSE_UNTIL")]
        until: Option<String>,
        /// Only sessions that touched this namespace.
        #[arg(long, short = 'n', env = "GATEHOUSE_NAMESPACE")]
        namespace: Option<String>,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the node agents' API-server bypass alerts, newest first, from a collector.
    Alerts {
        #[command(flatten)]
        source: Source,
        /// Only alerts from this node.
        #[arg(long, env = "GATEHOUSE_NODE")]
        node: Option<String>,
        /// Only alerts from pods in this namespace.
        #[arg(long, short = 'n', env = "GATEHOUSE_NAMESPACE")]
        namespace: Option<String>,
        /// Only alerts from this pod.
        #[arg(long, env = "GATEHOUSE_POD")]
        pod: Option<String>,
        /// Only connects the agent let through, or only those it blocked.
        #[arg(long, value_enum, env = "GATEHOUSE_ACTION")]
        action: Option<AlertAction>,
        /// Only alerts at or after this time: RFC 3339, or a duration ago such as 24h or 7d.
        #[arg(long, env = "GATEHOUSE_SINCE")]
        since: Option<String>,
        /// Only alerts at or before this time: RFC 3339, or a duration ago.
        #[arg(long, env = "GATEHOUSE_UNTIL")]
        until: Option<String>,
        /// Most alerts printed (the collector caps it at 10000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a session's ordered command transcript.
    Show {
        #[command(flatten)]
        source: Source,
        /// Session id, or a unique prefix of it.
        session: String,
        /// Also print each request with time, status, latency and bytes.
        #[arg(long, short = 'v')]
        verbose: bool,
    },
    /// Export a session's events.
    Export {
        #[command(flatten)]
        source: Source,
        /// Session id, or a unique prefix of it.
        session: String,
        #[arg(long, value_enum, default_value = "json", env = "GATEHOUSE_FORMAT")]
        format: ExportFormat,
        /// Write to this file (created owner-only, mode 0600) instead of stdout.
        #[arg(long, short = 'o', env = "GATEHOUSE_OUTPUT")]
        output: Option<PathBuf>,
    },
    /// Replay a session's recorded exec/attach output in this terminal, read-only, with its
    /// original timing. Space pauses, Enter steps (with --step), q quits. Never contacts the
    /// cluster.
    Replay {
        #[command(flatten)]
        source: Source,
        /// Session id, or a unique prefix of it.
        session: String,
        /// Playback speed factor: 2 plays twice as fast, 0.5 half as fast.
        #[arg(long, default_value_t = 1.0, env = "GATEHOUSE_REPLAY_SPEED")]
        speed: f64,
        /// Play one output frame per Enter (or per line of a piped stdin).
        #[arg(long, env = "GATEHOUSE_REPLAY_STEP")]
        step: bool,
        /// Shorten recorded idle gaps longer than this many seconds.
        #[arg(long, env = "GATEHOUSE_REPLAY_IDLE_LIMIT")]
        idle_limit: Option<f64>,
    },
    /// Verify a session: its hash chain, its signed digests and that no event is missing.
    /// Exit 0: intact; 1: broken (the message names the first broken event); 2: bad input.
    Verify {
        #[command(flatten)]
        source: Source,
        /// Session id, or a unique prefix of it.
        session: String,
        /// Verify an exported file (`gatehouse export`, json or ndjson) instead of the source.
        #[arg(long, env = "GATEHOUSE_VERIFY_FILE")]
        file: Option<PathBuf>,
        /// The gateway's digest public key: SPKI PEM or a JWKS file (repeat for rotated keys).
        #[arg(long = "key", env = "GATEHOUSE_VERIFY_KEY", value_delimiter = ',')]
        keys: Vec<PathBuf>,
        /// Fetch the keys from the gateway's JWKS, e.g. http://gateway:9090/keys.
        #[arg(long, env = "GATEHOUSE_KEYS_URL")]
        keys_url: Option<String>,
        /// PEM CA bundle for an https --keys-url (default: public roots).
        #[arg(long, env = "GATEHOUSE_KEYS_CA", requires = "keys_url")]
        keys_ca: Option<PathBuf>,
    },
    /// Write a kubeconfig context for the gateway whose user signs in with `gatehouse token`.
    Kubeconfig(Box<crate::kubeconfig::KubeconfigArgs>),
    /// Print a client.authentication.k8s.io/v1 ExecCredential (kubectl calls this).
    Token(Box<crate::token::TokenArgs>),
    /// Check policy files.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
    /// Review requests held by a `require_approval` rule (reviewers only).
    Approvals {
        #[command(subcommand)]
        cmd: crate::approvals::ApprovalsCmd,
    },
    /// Give a user a policy role for a limited time (reviewers only).
    Grant(crate::grant::GrantArgs),
}

/// `gatehouse policy …`
#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Evaluate a kubectl command against a policy file and explain which rule decides.
    Test {
        /// The policy file (YAML).
        file: PathBuf,
        /// The caller's username.
        #[arg(long = "as", env = "GATEHOUSE_AS")]
        user: String,
        /// A group of the caller (repeat for several).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// The caller's IP address.
        #[arg(long, default_value = "127.0.0.1")]
        source: String,
        /// When the request happens: RFC 3339 or a duration ago (default: now).
        #[arg(long)]
        at: Option<String>,
        /// The kubectl command, e.g. "kubectl delete ns payments".
        #[arg(long)]
        request: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AlertAction {
    Allowed,
    Blocked,
}

impl AlertAction {
    /// The collector's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertAction::Allowed => "allowed",
            AlertAction::Blocked => "blocked",
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// One JSON document: the session summary and its events.
    Json,
    /// One event per line.
    Ndjson,
    /// asciicast v2 of the exec/attach terminal streams, for the asciinema player.
    Asciicast,
}
