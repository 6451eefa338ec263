//! `gatehouse grant`: a reviewer gives a user one of the policy's roles for a while, through the
//! gateway's reviewer API; the grant expires by itself.
use crate::approvals::{ApprovalsError, GatewayApi, call};
use clap::Args;
use std::io::Write;

#[derive(Debug, Args)]
pub struct GrantArgs {
    #[command(flatten)]
    pub api: GatewayApi,
    /// The user who gets the role (as the gateway authenticates them).
    #[arg(long, env = "GATEHOUSE_GRANT_WHO")]
    pub who: String,
    /// A rule set under the policy's `roles`.
    #[arg(long, env = "GATEHOUSE_GRANT_ROLE")]
    pub role: String,
    /// How long: 30m, 2h (at most the policy's approvals.max_grant).
    #[arg(long = "for", env = "GATEHOUSE_GRANT_FOR")]
    pub duration: String,
    /// Why; recorded in the transcript.
    #[arg(long, env = "GATEHOUSE_REASON")]
    pub reason: String,
}

pub fn run(args: &GrantArgs, out: &mut dyn Write) -> Result<(), ApprovalsError> {
    let body = serde_json::json!({
        "who": args.who, "role": args.role, "for": args.duration, "reason": args.reason,
    });
    let v = call(&args.api, http::Method::POST, "grants", Some(body))?;
    writeln!(
        out,
        "granted {} to {} until {} (grant {})",
        args.role,
        args.who,
        v["expires"].as_u64().map_or_else(
            || "?".to_string(),
            |s| chrono::DateTime::from_timestamp(s as i64, 0)
                .map_or_else(|| s.to_string(), |t| t.to_rfc3339())
        ),
        v["id"].as_str().unwrap_or("?")
    )
    .map_err(|e| ApprovalsError::Transport(format!("cannot write output: {e}")))
}
