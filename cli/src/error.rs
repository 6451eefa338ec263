//! CLI errors, each a one-line message that says how to fix it, with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(
        "journal directory {0} does not exist: pass --journal with the gateway's --journal-dir"
    )]
    NoJournal(String),
    #[error("cannot read the journal: {0}")]
    Journal(String),
    #[error("event at journal offset {offset} is not a gatehouse.v1.Event: {reason}")]
    Decode { offset: u64, reason: String },
    #[error("no session matches {0:?}: list them with `gatehouse sessions`")]
    NoSession(String),
    #[error("{prefix:?} matches {count} sessions: give more of the session id")]
    Ambiguous { prefix: String, count: usize },
    #[error("invalid time {0:?}: use RFC 3339 (2026-11-21T10:00:00Z) or a duration ago (24h, 7d)")]
    Time(String),
    #[error(
        "alerts are journaled by the agent on each node and gathered by the collector: pass --collector https://collector:7443"
    )]
    AlertsNeedCollector,
    #[error("{0}")]
    Policy(String),
    #[error("invalid --request: {0}")]
    Request(String),
    #[error("invalid replay option: {0}")]
    Replay(String),
    #[error(
        "session {0} recorded no exec or attach stream: nothing to replay (`gatehouse show` lists its commands)"
    )]
    NothingToReplay(String),
    #[error(transparent)]
    Collector(#[from] crate::collector::CollectorError),
    #[error(transparent)]
    Approvals(#[from] crate::approvals::ApprovalsError),
    /// `gatehouse verify` found the session broken; the message names the event.
    #[error("{0}")]
    Broken(String),
    /// `gatehouse verify` could not start: no key, an unreadable key or file.
    #[error("{0}")]
    VerifyInput(String),
    #[error(transparent)]
    Token(#[from] crate::token::TokenError),
    #[error(transparent)]
    Kubeconfig(#[from] crate::kubeconfig::KubeconfigError),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// 64 for configuration problems (EX_USAGE-like for config), 2 for bad input, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::NoJournal(_) | CliError::Policy(_) | CliError::AlertsNeedCollector => 64,
            CliError::NoSession(_)
            | CliError::Ambiguous { .. }
            | CliError::Time(_)
            | CliError::Request(_)
            | CliError::VerifyInput(_)
            | CliError::Replay(_)
            | CliError::NothingToReplay(_) => 2,
            CliError::Collector(e) => e.exit_code(),
            CliError::Token(e) => e.exit_code(),
            CliError::Kubeconfig(e) => e.exit_code(),
            CliError::Approvals(e) => e.exit_code(),
            CliError::Journal(_)
            | CliError::Decode { .. }
            | CliError::Output(_)
            | CliError::Broken(_) => 1,
        }
    }
}

/// An error and its sources on one line (`outer: inner: innermost`), for one-line messages.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
