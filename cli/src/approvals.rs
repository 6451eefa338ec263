//! `gatehouse approvals list|approve|deny`: a reviewer's side of held requests, through the
//! gateway's reviewer API (`/gatehouse/v1/approvals`) with the reviewer's own token.
use crate::http::{BlockingClient, HttpError, Schemes};
use clap::Args;
use http_body_util::Full;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ApprovalsError {
    /// Missing or unreadable settings (exit 64).
    #[error("{0}")]
    Config(String),
    /// The gateway could not be reached or answered nonsense (exit 1).
    #[error("{0}")]
    Transport(String),
    /// The gateway refused: not a reviewer, own request, unknown id, bad reason (exit 2).
    #[error("{0}")]
    Refused(String),
}

impl ApprovalsError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ApprovalsError::Config(_) => 64,
            ApprovalsError::Refused(_) => 2,
            ApprovalsError::Transport(_) => 1,
        }
    }
}

/// How to reach the gateway's reviewer API.
#[derive(Debug, Clone, Args)]
pub struct GatewayApi {
    /// The gateway's URL (https://gatehouse.example:8443).
    #[arg(long, env = "GATEHOUSE_GATEWAY")]
    pub gateway: String,
    /// PEM CA bundle that signed the gateway's certificate (default: public roots).
    #[arg(long, env = "GATEHOUSE_GATEWAY_CA")]
    pub gateway_ca: Option<PathBuf>,
    /// The reviewer's bearer token (OIDC JWT), as kubectl would send it.
    #[arg(long, env = "GATEHOUSE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the token, instead of --token.
    #[arg(long, env = "GATEHOUSE_TOKEN_FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
}

/// `gatehouse approvals …`
#[derive(Debug, clap::Subcommand)]
pub enum ApprovalsCmd {
    /// List requests waiting for a reviewer.
    List {
        #[command(flatten)]
        api: GatewayApi,
        /// Print the JSON the gateway returned.
        #[arg(long, env = "GATEHOUSE_JSON")]
        json: bool,
    },
    /// Let a held request through.
    Approve {
        #[command(flatten)]
        api: GatewayApi,
        /// The approval id (from `gatehouse approvals list`).
        id: String,
        /// Why; recorded in the transcript.
        #[arg(long, env = "GATEHOUSE_REASON")]
        reason: String,
    },
    /// Refuse a held request; the caller gets a 403 naming you and the reason.
    Deny {
        #[command(flatten)]
        api: GatewayApi,
        id: String,
        #[arg(long, env = "GATEHOUSE_REASON")]
        reason: String,
    },
}

pub fn run(cmd: ApprovalsCmd, out: &mut dyn Write) -> Result<(), ApprovalsError> {
    let io = |e: std::io::Error| ApprovalsError::Transport(format!("cannot write output: {e}"));
    match cmd {
        ApprovalsCmd::List { api, json } => {
            let v = call(&api, http::Method::GET, "approvals", None)?;
            if json {
                return writeln!(out, "{v}").map_err(io);
            }
            let items = v.as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                return writeln!(out, "no pending approvals").map_err(io);
            }
            writeln!(out, "ID\tREQUESTER\tRULE\tEXPIRES\tCOMMAND").map_err(io)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            for a in items {
                let left = a["expires"].as_u64().unwrap_or(0).saturating_sub(now);
                writeln!(
                    out,
                    "{}\t{}\t{}\tin {left}s\t{}",
                    a["id"].as_str().unwrap_or(""),
                    a["requester"].as_str().unwrap_or(""),
                    a["rule"].as_str().unwrap_or(""),
                    a["command"].as_str().unwrap_or(""),
                )
                .map_err(io)?;
            }
            Ok(())
        }
        ApprovalsCmd::Approve { api, id, reason } => decide(&api, &id, "approve", &reason, out),
        ApprovalsCmd::Deny { api, id, reason } => decide(&api, &id, "deny", &reason, out),
    }
}

/// Approves (`approve`) or denies (`deny`) approval `id`.
pub fn decide(
    api: &GatewayApi,
    id: &str,
    action: &str,
    reason: &str,
    out: &mut dyn Write,
) -> Result<(), ApprovalsError> {
    let body = serde_json::json!({ "reason": reason });
    let v = call(
        api,
        http::Method::POST,
        &format!("approvals/{id}/{action}"),
        Some(body),
    )?;
    let verb = if action == "approve" {
        "approved"
    } else {
        "denied"
    };
    writeln!(
        out,
        "{verb} {id} ({} ran: {})",
        v["requester"].as_str().unwrap_or("?"),
        v["command"].as_str().unwrap_or("?")
    )
    .map_err(|e| ApprovalsError::Transport(format!("cannot write output: {e}")))
}

/// One call to the reviewer API; a refusal's `metav1.Status` message becomes the error.
pub fn call(
    api: &GatewayApi,
    method: http::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value, ApprovalsError> {
    let token = match (&api.token, &api.token_file) {
        (Some(t), _) => t.trim().to_string(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|e| {
                ApprovalsError::Config(format!("cannot read --token-file {}: {e}", f.display()))
            })?
            .trim()
            .to_string(),
        (None, None) => {
            return Err(ApprovalsError::Config(
                "no token: pass --token or --token-file (GATEHOUSE_TOKEN)".into(),
            ));
        }
    };
    let url = format!("{}/gatehouse/v1/{path}", api.gateway.trim_end_matches('/'));
    let uri: http::Uri = url
        .parse()
        .map_err(|e| ApprovalsError::Config(format!("invalid --gateway {}: {e}", api.gateway)))?;
    // The reviewer's bearer token goes with every call: never over clear text.
    if uri.scheme_str() != Some("https") {
        return Err(ApprovalsError::Config(format!(
            "invalid --gateway {}: use an https:// URL",
            api.gateway
        )));
    }
    let client = BlockingClient::new(
        api.gateway_ca.as_deref(),
        Schemes::HttpsOnly,
        Duration::from_secs(30),
    )
    .map_err(|e| match e {
        HttpError::Ca(why) => ApprovalsError::Config(format!("--gateway-ca {why}")),
        other => ApprovalsError::Transport(format!("gateway {}: {other}", api.gateway)),
    })?;
    let transport = |e: String| ApprovalsError::Transport(format!("gateway {}: {e}", api.gateway));
    let data = body.map(|b| b.to_string()).unwrap_or_default();
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(bytes::Bytes::from(data)))
        .map_err(|e| transport(e.to_string()))?;
    let (status, bytes) = client.send(req).map_err(|e| transport(e.to_string()))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|_| transport(format!("HTTP {status} with a body that is not JSON")))?;
    if status.is_success() {
        Ok(v)
    } else {
        Err(ApprovalsError::Refused(
            v["message"]
                .as_str()
                .map_or_else(|| format!("HTTP {status}"), str::to_string),
        ))
    }
}
