//! `tracing` setup honouring `LOG` and `LOG_FORMAT=json`; `log` records (aya-log's kernel
//! messages among them) are bridged into `tracing`.
use tracing_subscriber::{EnvFilter, fmt};

pub fn init() {
    let _ = tracing_log::LogTracer::init();
    let filter = EnvFilter::try_from_env("LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
