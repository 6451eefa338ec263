//! The gatehouse gateway: authenticates the caller, records the exchange in the journal before
//! forwarding it with the gateway's own credential plus `Impersonate-*`, and streams the answer back.
pub mod approvals;
pub mod auth;
pub mod body;
pub mod config;
pub mod memcpy;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod server;
pub mod shipping;
pub mod status;
pub mod streams;
pub mod telemetry;
pub mod transcript;
pub mod upstream;

/// Version string printed by `--version`: crate version, git revision and build date.
/// Set by `build.rs` (`build/version.rs`).
pub const VERSION: &str = env!("GATEHOUSE_VERSION");

/// An error and its sources on one line: `outer: inner: innermost`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
