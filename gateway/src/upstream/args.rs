//! Command-line flags of the upstream side.
use std::path::PathBuf;
use std::time::Duration;

/// How the gateway finds and authenticates to the real API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UpstreamMode {
    /// A kubeconfig file (token, tokenFile or client certificate users).
    Kubeconfig,
    /// The pod's ServiceAccount (`KUBERNETES_SERVICE_HOST`/`PORT` and the projected token).
    InCluster,
    /// An EKS cluster, through an AWS IAM role assumed with STS.
    Eks,
}

/// Flags for the connection to the real API server.
#[derive(Debug, Clone, clap::Args)]
pub struct UpstreamArgs {
    /// How to reach and authenticate to the API server.
    #[arg(long = "upstream-mode", env = "GATEWAY_UPSTREAM_MODE", value_enum, default_value_t = UpstreamMode::Kubeconfig)]
    pub mode: UpstreamMode,

    /// Kubeconfig file for `--upstream-mode kubeconfig` (default: the first path in $KUBECONFIG,
    /// else ~/.kube/config).
    #[arg(long, env = "GATEWAY_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Kubeconfig context to use instead of its current-context.
    #[arg(long, env = "GATEWAY_KUBE_CONTEXT")]
    pub kube_context: Option<String>,

    /// ServiceAccount token file for `--upstream-mode in-cluster`.
    #[arg(
        long,
        env = "GATEWAY_IN_CLUSTER_TOKEN_FILE",
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    )]
    pub in_cluster_token_file: PathBuf,

    /// Cluster CA file for `--upstream-mode in-cluster`.
    #[arg(
        long,
        env = "GATEWAY_IN_CLUSTER_CA_FILE",
        default_value = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
    )]
    pub in_cluster_ca_file: PathBuf,

    /// API server URL for `--upstream-mode in-cluster`, instead of
    /// https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT.
    #[arg(long, env = "GATEWAY_IN_CLUSTER_SERVER")]
    pub in_cluster_server: Option<String>,

    /// How often a token file (in-cluster, or a kubeconfig `tokenFile`) is re-read, since the
    /// kubelet rotates projected tokens.
    #[arg(long, env = "GATEWAY_UPSTREAM_TOKEN_RELOAD_INTERVAL", value_parser = humantime::parse_duration, default_value = "60s")]
    pub upstream_token_reload_interval: Duration,

    /// EKS cluster name (signed into the token as `x-k8s-aws-id`).
    #[arg(long, env = "GATEWAY_EKS_CLUSTER_NAME")]
    pub eks_cluster_name: Option<String>,

    /// IAM role the gateway assumes to talk to the EKS cluster.
    #[arg(long, env = "GATEWAY_EKS_ROLE_ARN")]
    pub eks_role_arn: Option<String>,

    /// AWS region of the EKS cluster and of the STS endpoint the token is presigned for.
    #[arg(long, env = "GATEWAY_EKS_REGION")]
    pub eks_region: Option<String>,

    /// EKS API server URL (https://….eks.amazonaws.com).
    #[arg(long, env = "GATEWAY_EKS_ENDPOINT")]
    pub eks_endpoint: Option<String>,

    /// PEM file with the EKS cluster CA.
    #[arg(long, env = "GATEWAY_EKS_CA_FILE")]
    pub eks_ca_file: Option<PathBuf>,

    /// Session name used for AssumeRole (shows in CloudTrail).
    #[arg(
        long,
        env = "GATEWAY_EKS_ROLE_SESSION_NAME",
        default_value = "gatehouse-gateway"
    )]
    pub eks_role_session_name: String,

    /// STS endpoint for AssumeRole, overriding the regional default (for tests and VPC endpoints).
    #[arg(long, env = "GATEWAY_STS_ENDPOINT")]
    pub sts_endpoint: Option<String>,

    /// PEM CA bundle that is the only trust root for the STS endpoint (default: the public web
    /// PKI roots).
    #[arg(long, env = "GATEWAY_STS_CA_FILE")]
    pub sts_ca_file: Option<PathBuf>,

    /// Offer HTTP/2 to the API server for ordinary requests (upgrades always use HTTP/1.1).
    /// By default concurrent requests spread over pooled HTTP/1.1 connections, as nginx's
    /// upstreams do: that adds 16–57 µs less at p50 than multiplexing on one h2 connection
    /// (`bench gateway`, ARCHITECTURE.md). With `true`, they share h2 connections, which holds
    /// fewer connections open when many watches run at once.
    #[arg(long, env = "GATEWAY_UPSTREAM_HTTP2", default_value_t = false, action = clap::ArgAction::Set)]
    pub upstream_http2: bool,

    /// Timeout for establishing a TCP connection to the API server.
    #[arg(long, env = "GATEWAY_UPSTREAM_TIMEOUT_CONNECT", value_parser = humantime::parse_duration, default_value = "10s")]
    pub upstream_timeout_connect: Duration,

    /// Timeout for the gateway's own small buffered requests (TokenReview and the like); proxied
    /// requests have none, since watches last long.
    #[arg(long, env = "GATEWAY_UPSTREAM_TIMEOUT_REQUEST", value_parser = humantime::parse_duration, default_value = "15s")]
    pub upstream_timeout_request: Duration,

    /// How long an idle pooled connection to the API server is kept.
    #[arg(long, env = "GATEWAY_UPSTREAM_POOL_IDLE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "90s")]
    pub upstream_pool_idle_timeout: Duration,
}
