//! Runs the gatehouse test Kubernetes API server and writes a kubeconfig for it (demo use).

use std::path::PathBuf;

use clap::Parser;
use gatehouse_tests::apiserver::{ApiServerOptions, TestApiServer};

#[derive(Parser, Debug)]
#[command(about = "A faithful test Kubernetes API server (never for production)")]
struct Args {
    /// Where to write a kubeconfig pointing at the server.
    #[arg(
        long,
        env = "TEST_APISERVER_KUBECONFIG",
        default_value = "test-apiserver.kubeconfig"
    )]
    kubeconfig: PathBuf,
    /// Token written into the kubeconfig (defaults to the admin token).
    #[arg(long, env = "TEST_APISERVER_TOKEN", default_value = gatehouse_tests::apiserver::ADMIN_TOKEN)]
    token: String,
    /// The token the gateway authenticates with (may impersonate and call TokenReview).
    #[arg(long, env = "TEST_APISERVER_GATEWAY_TOKEN", default_value = gatehouse_tests::apiserver::GATEWAY_TOKEN)]
    gateway_token: String,
    /// Write the CA certificate (PEM) here too.
    #[arg(long, env = "TEST_APISERVER_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Generated log size in bytes for `namespace/pod` (repeatable), e.g. `payments/big=1073741824`.
    #[arg(
        long = "log-bytes",
        env = "TEST_APISERVER_LOG_BYTES",
        value_delimiter = ','
    )]
    log_bytes: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("LOG"))
        .init();
    let args = Args::parse();
    let mut opts = ApiServerOptions {
        gateway_token: args.gateway_token,
        ..ApiServerOptions::default()
    };
    for spec in &args.log_bytes {
        let (pod, n) = spec
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--log-bytes wants namespace/pod=BYTES, got {spec}"))?;
        opts.logs
            .generated_bytes
            .insert(pod.to_string(), n.parse()?);
    }
    let server = TestApiServer::start(opts).await?;
    server.write_kubeconfig(&args.kubeconfig, &args.token)?;
    if let Some(ca) = &args.ca_file {
        std::fs::write(ca, server.ca_pem())?;
    }
    println!("{}", server.url());
    eprintln!(
        "test apiserver at {}; kubeconfig {}",
        server.url(),
        args.kubeconfig.display()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
