//! Command-line and environment configuration (`COLLECTOR_*`). Everything is validated before a
//! socket is bound or ClickHouse is contacted.
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "collector",
    // Crate version, git revision and build date (build.rs).
    version = env!("GATEHOUSE_VERSION"),
    about = "gatehouse collector: ingest into ClickHouse, query, replay"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the Ingest and Query gRPC services.
    Serve(Box<ServeArgs>),
    /// Apply the schema migrations that are not applied yet, then exit.
    Migrate(MigrateArgs),
    /// Dead-letter file tools.
    #[command(subcommand)]
    DeadLetter(DeadLetterCmd),
}

#[derive(Debug, Subcommand)]
pub enum DeadLetterCmd {
    /// Re-insert a dead-letter file's events once the cause is fixed; events still refused are
    /// written to FILE.refused (exit 1). The file is not changed; replaying twice is harmless.
    Replay(DeadLetterReplayArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DeadLetterReplayArgs {
    /// The dead-letter file (while the collector runs, replay a rotated copy of it).
    #[arg(env = "COLLECTOR_DEAD_LETTER_FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    /// ClickHouse's LZ4 block compression (the default; what a real server expects).
    Lz4,
    /// No compression (for servers or proxies that do not speak ClickHouse's block format).
    None,
}

#[derive(Debug, Clone, Args)]
pub struct ClickHouseArgs {
    /// ClickHouse HTTP(S) endpoint.
    #[arg(
        long,
        env = "COLLECTOR_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123"
    )]
    pub clickhouse_url: String,
    /// Database holding the gatehouse tables (created by the migrations).
    #[arg(
        long,
        env = "COLLECTOR_CLICKHOUSE_DATABASE",
        default_value = "gatehouse"
    )]
    pub clickhouse_database: String,
    #[arg(long, env = "COLLECTOR_CLICKHOUSE_USER")]
    pub clickhouse_user: Option<String>,
    #[arg(long, env = "COLLECTOR_CLICKHOUSE_PASSWORD", hide_env_values = true)]
    pub clickhouse_password: Option<String>,
    /// Transfer compression of inserts and results.
    #[arg(
        long,
        env = "COLLECTOR_CLICKHOUSE_COMPRESSION",
        value_enum,
        default_value = "lz4"
    )]
    pub clickhouse_compression: Compression,
}

#[derive(Debug, Clone, Args)]
pub struct SchemaArgs {
    /// Days recordings (events, sessions) are kept.
    #[arg(long, env = "COLLECTOR_RECORDINGS_TTL_DAYS", default_value_t = 365)]
    pub recordings_ttl_days: u32,
    /// Days interactive stream bytes (exec/attach/port-forward frames) are kept; the rest of a
    /// recording stays for --recordings-ttl-days.
    #[arg(long, env = "COLLECTOR_FRAMES_TTL_DAYS", default_value_t = 90)]
    pub frames_ttl_days: u32,
    /// Days bypass alerts are kept.
    #[arg(long, env = "COLLECTOR_ALERTS_TTL_DAYS", default_value_t = 180)]
    pub alerts_ttl_days: u32,
    /// Days the dashboard rollup is kept.
    #[arg(long, env = "COLLECTOR_ROLLUP_TTL_DAYS", default_value_t = 90)]
    pub rollup_ttl_days: u32,
    /// Days the access audit is kept.
    #[arg(long, env = "COLLECTOR_AUDIT_TTL_DAYS", default_value_t = 400)]
    pub audit_ttl_days: u32,
    /// ClickHouse cluster name: tables become Replicated* and DDL runs `ON CLUSTER`.
    #[arg(long, env = "COLLECTOR_CLICKHOUSE_CLUSTER")]
    pub clickhouse_cluster: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    #[command(flatten)]
    pub schema: SchemaArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// gRPC listener (Ingest and Query).
    #[arg(long, env = "COLLECTOR_LISTEN", default_value = "0.0.0.0:7443")]
    pub listen: SocketAddr,
    /// Plain-HTTP operations listener (/healthz, /metrics).
    #[arg(long, env = "COLLECTOR_OPS_LISTEN", default_value = "0.0.0.0:9091")]
    pub ops_listen: SocketAddr,
    /// PEM certificate chain served by the gRPC listener (TLS). Required unless
    /// --insecure-plaintext.
    #[arg(long, env = "COLLECTOR_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, env = "COLLECTOR_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle for client certificates (mTLS); requires --tls-cert.
    #[arg(long, env = "COLLECTOR_CLIENT_CA_FILE", requires = "tls_cert")]
    pub client_ca_file: Option<PathBuf>,
    /// Serve gRPC as plaintext h2c, without --tls-cert: only behind a mesh that provides mTLS or
    /// for a loopback sidecar. Recorded sessions and ingest tokens cross this listener, so
    /// plaintext is never the silent result of a missing certificate.
    #[arg(
        long,
        env = "COLLECTOR_INSECURE_PLAINTEXT",
        conflicts_with_all = ["tls_cert", "tls_key", "client_ca_file"]
    )]
    pub insecure_plaintext: bool,
    /// Client-certificate identities (CN or DNS SAN) allowed to ingest: the gateways and agents.
    #[arg(long, env = "COLLECTOR_INGEST_CLIENTS", value_delimiter = ',')]
    pub ingest_clients: Vec<String>,
    /// File of `NAME TOKEN` lines: bearer tokens allowed to ingest.
    #[arg(long, env = "COLLECTOR_INGEST_TOKEN_FILE")]
    pub ingest_token_file: Option<PathBuf>,
    /// Groups whose members may list and read recordings (OIDC).
    #[arg(long, env = "COLLECTOR_READER_GROUPS", value_delimiter = ',')]
    pub reader_groups: Vec<String>,
    /// OIDC issuer of readers' tokens (https); the same issuer the gateway trusts.
    #[arg(long, env = "COLLECTOR_OIDC_ISSUER_URL")]
    pub oidc_issuer_url: Option<String>,
    #[arg(long, env = "COLLECTOR_OIDC_AUDIENCE", value_delimiter = ',')]
    pub oidc_audience: Vec<String>,
    #[arg(long, env = "COLLECTOR_OIDC_JWKS_URL")]
    pub oidc_jwks_url: Option<String>,
    #[arg(long, env = "COLLECTOR_OIDC_CA_FILE")]
    pub oidc_ca_file: Option<PathBuf>,
    #[arg(long, env = "COLLECTOR_OIDC_USERNAME_CLAIM", default_value = "sub")]
    pub oidc_username_claim: String,
    #[arg(long, env = "COLLECTOR_OIDC_USERNAME_PREFIX")]
    pub oidc_username_prefix: Option<String>,
    #[arg(long, env = "COLLECTOR_OIDC_GROUPS_CLAIM", default_value = "groups")]
    pub oidc_groups_claim: String,
    /// A batch is inserted once it holds this many rows ...
    #[arg(long, env = "COLLECTOR_BATCH_MAX_ROWS", default_value_t = 50_000)]
    pub batch_max_rows: usize,
    /// A batch of at least this many rows is inserted at once when no more are queued and an
    /// insert slot is free (the shippers are waiting for acknowledgements).
    #[arg(long, env = "COLLECTOR_BATCH_MIN_ROWS", default_value_t = 10_000)]
    pub batch_min_rows: usize,
    /// ... or this many bytes of encoded events ...
    #[arg(long, env = "COLLECTOR_BATCH_MAX_BYTES", default_value_t = 64 << 20)]
    pub batch_max_bytes: usize,
    /// ... or this long after its first row arrived.
    #[arg(long, env = "COLLECTOR_BATCH_PERIOD", value_parser = humantime::parse_duration, default_value = "1s")]
    pub batch_period: Duration,
    /// INSERTs in flight at once (the next batch is sent while ClickHouse writes the last).
    #[arg(long, env = "COLLECTOR_INSERT_CONCURRENCY", default_value_t = 2)]
    pub insert_concurrency: usize,
    /// Shipped batches queued for the writer; past it ingest answers RESOURCE_EXHAUSTED.
    #[arg(long, env = "COLLECTOR_QUEUE_BATCHES", default_value_t = 512)]
    pub queue_batches: usize,
    /// Largest shipped batch (one gRPC message) the collector decodes. It must exceed the
    /// largest journal record a gateway writes (64 MiB), which a shipper sends alone.
    #[arg(long, env = "COLLECTOR_MAX_MESSAGE_BYTES", default_value_t = 72 << 20)]
    pub max_message_bytes: usize,
    /// Where rows ClickHouse refuses as bad data are written (NDJSON).
    #[arg(
        long,
        env = "COLLECTOR_DEAD_LETTER_FILE",
        default_value = "/var/lib/gatehouse/collector/dead-letter.ndjson"
    )]
    pub dead_letter_file: PathBuf,
    /// Do not apply schema migrations at start-up.
    #[arg(long, env = "COLLECTOR_NO_MIGRATE")]
    pub no_migrate: bool,
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    #[command(flatten)]
    pub schema: SchemaArgs,
    #[command(flatten)]
    pub alerts: crate::alerts::AlertArgs,
}

/// The largest journal record a gateway writes (gatehouse-journal's `MAX_RECORD_LEN`).
const MAX_JOURNAL_RECORD: usize = 64 << 20;

impl ServeArgs {
    /// Checks what can be checked without I/O.
    pub fn validate(&self) -> Result<(), crate::CollectorError> {
        let cfg = |m: &str| Err(crate::CollectorError::Config(m.to_string()));
        if self.tls_cert.is_none() && !self.insecure_plaintext {
            return cfg(
                "the gRPC listener needs --tls-cert and --tls-key (or --insecure-plaintext behind a mesh that provides mTLS)",
            );
        }
        if self.ingest_token_file.is_none() && self.client_ca_file.is_none() {
            return cfg(
                "ingest needs --ingest-token-file and/or --client-ca-file with --ingest-clients",
            );
        }
        if self.client_ca_file.is_some() && self.ingest_clients.is_empty() {
            return cfg(
                "--client-ca-file needs --ingest-clients (the gateways' and agents' certificate names)",
            );
        }
        if self.oidc_issuer_url.is_some() && self.reader_groups.is_empty() {
            return cfg("--oidc-issuer-url needs --reader-groups: nobody could read otherwise");
        }
        if self.batch_max_rows == 0 || self.batch_max_bytes == 0 || self.batch_period.is_zero() {
            return cfg("--batch-max-rows, --batch-max-bytes and --batch-period must be positive");
        }
        if self.batch_min_rows > self.batch_max_rows {
            return cfg("--batch-min-rows must not exceed --batch-max-rows");
        }
        if self.max_message_bytes <= MAX_JOURNAL_RECORD {
            return cfg(
                "--max-message-bytes must exceed 67108864 (a gateway ships a journal record of up to 64 MiB alone)",
            );
        }
        if self.queue_batches == 0 {
            return cfg("--queue-batches must be positive");
        }
        if self.insert_concurrency == 0 {
            return cfg("--insert-concurrency must be positive");
        }
        self.alerts.validate()
    }
}
