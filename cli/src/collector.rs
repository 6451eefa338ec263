//! The collector as an event source: its Query gRPC API behind a blocking facade, called with
//! the reader's OIDC token, so `sessions`, `show`, `export` and `replay` print the same output
//! from ClickHouse as from the local journal.
use crate::args::Source;
use crate::sessions::{Filter, SessionSummary};
use gatehouse_proto::v1::query_client::QueryClient;
use gatehouse_proto::v1::{Event, GetSessionRequest, ListAlertsRequest, ListSessionsRequest};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// Most sessions one listing asks for: the server's own cap.
const LIST_LIMIT: u32 = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error("invalid --collector {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error(
        "--collector {0} is https: pass --collector-ca with the CA that signed its certificate"
    )]
    NeedsCa(String),
    #[error("cannot read {path}: {reason}")]
    ReadFile { path: String, reason: String },
    #[error("cannot start the client runtime: {0}")]
    Runtime(String),
    #[error("cannot reach the collector at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error(
        "the collector does not accept your token ({0}): pass --token or GATEHOUSE_TOKEN with a valid OIDC token"
    )]
    Unauthenticated(String),
    #[error("the collector denied the read ({0}): ask for membership of a reader group")]
    Denied(String),
    #[error("{0:?} matches several sessions: give more of the session id")]
    Ambiguous(String),
    #[error("the collector failed: {0}")]
    Failed(String),
}

impl CollectorError {
    /// 64 for bad settings, 2 for a refused or ambiguous read, 1 for an unavailable collector.
    pub fn exit_code(&self) -> u8 {
        match self {
            CollectorError::Url { .. }
            | CollectorError::NeedsCa(_)
            | CollectorError::ReadFile { .. } => 64,
            CollectorError::Unauthenticated(_)
            | CollectorError::Denied(_)
            | CollectorError::Ambiguous(_) => 2,
            CollectorError::Runtime(_)
            | CollectorError::Connect { .. }
            | CollectorError::Failed(_) => 1,
        }
    }
}

/// What a failed call means to the CLI.
enum Refusal {
    NoSession,
    Other(CollectorError),
}

/// A connected Query client.
pub struct Remote {
    rt: tokio::runtime::Runtime,
    client: QueryClient<Channel>,
    token: Option<String>,
}

impl Remote {
    /// Connects to `url` with the TLS and token settings of `source`.
    pub fn connect(url: &str, source: &Source) -> Result<Self, CollectorError> {
        let bad = |reason: String| CollectorError::Url {
            url: url.to_string(),
            reason,
        };
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| bad(e.to_string()))?
            .connect_timeout(Duration::from_secs(10));
        if url.starts_with("https://") {
            let ca = source
                .collector_ca
                .as_deref()
                .ok_or_else(|| CollectorError::NeedsCa(url.to_string()))?;
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
            if let Some(name) = &source.collector_server_name {
                tls = tls.domain_name(name.clone());
            }
            endpoint = endpoint.tls_config(tls).map_err(|e| bad(e.to_string()))?;
        } else if !url.starts_with("http://") {
            return Err(bad("use https://host:port (or http:// for h2c)".into()));
        }
        let token = match (&source.token, &source.token_file) {
            (Some(t), _) => Some(t.trim().to_string()),
            (None, Some(f)) => Some(String::from_utf8_lossy(&read(f)?).trim().to_string()),
            (None, None) => None,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CollectorError::Runtime(e.to_string()))?;
        let channel = rt
            .block_on(endpoint.connect())
            .map_err(|e| CollectorError::Connect {
                url: url.to_string(),
                reason: crate::error::chain(&e),
            })?;
        Ok(Self {
            rt,
            client: QueryClient::new(channel),
            token,
        })
    }

    fn request<T>(&self, msg: T) -> Result<tonic::Request<T>, CollectorError> {
        let mut req = tonic::Request::new(msg);
        if let Some(t) = &self.token {
            let value = format!("Bearer {t}").parse().map_err(|_| {
                CollectorError::Unauthenticated("the token is not valid ASCII".into())
            })?;
            req.metadata_mut().insert("authorization", value);
        }
        Ok(req)
    }

    /// Sessions matching `filter`, oldest first, as the collector summarizes them.
    pub fn list(&mut self, filter: &Filter) -> Result<Vec<SessionSummary>, CollectorError> {
        let req = self.request(ListSessionsRequest {
            username: filter.who.clone().unwrap_or_default(),
            namespace: filter.namespace.clone().unwrap_or_default(),
            since_unix_nano: filter.since.unwrap_or(0),
            until_unix_nano: filter.until.unwrap_or(0),
            limit: LIST_LIMIT,
            ..Default::default()
        })?;
        let resp = self
            .rt
            .block_on(self.client.list_sessions(req))
            .map_err(|s| match refusal(s, "") {
                Refusal::NoSession => CollectorError::Failed("no sessions".into()),
                Refusal::Other(e) => e,
            })?;
        Ok(resp
            .into_inner()
            .sessions
            .into_iter()
            .map(|s| SessionSummary {
                id: s.session_id,
                actor: s.actor,
                start_nanos: s.start_unix_nano,
                end_nanos: s.end_unix_nano,
                requests: s.requests,
                denied: s.denied,
                errors: s.errors,
                namespaces: s.namespaces.into_iter().collect(),
            })
            .collect())
    }

    /// Bypass alerts matching `filter`, newest first, each the agent's event as stored.
    pub fn alerts(&mut self, filter: ListAlertsRequest) -> Result<Vec<Event>, CollectorError> {
        let req = self.request(filter)?;
        let resp = self
            .rt
            .block_on(self.client.list_alerts(req))
            .map_err(|s| match refusal(s, "") {
                Refusal::NoSession => CollectorError::Failed("no alerts table".into()),
                Refusal::Other(e) => e,
            })?;
        Ok(resp.into_inner().alerts)
    }

    /// The session whose id is `prefix` or starts with it: its full id and its ordered events,
    /// or `Ok(None)` when no session matches. `progress` draws a bar on a terminal's stderr.
    pub fn session(
        &mut self,
        prefix: &str,
        progress: bool,
    ) -> Result<Option<(String, Vec<Event>)>, CollectorError> {
        let req = self.request(GetSessionRequest {
            session_id: prefix.to_string(),
            from_seq: 0,
        })?;
        let bar = if progress && std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {pos} events, {msg} [{elapsed}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        } else {
            ProgressBar::hidden()
        };
        let client = &mut self.client;
        let fetched = self.rt.block_on(async {
            let mut stream = match client.get_session(req).await {
                Ok(r) => r.into_inner(),
                Err(s) => return Err(s),
            };
            let mut events = Vec::new();
            let mut bytes = 0u64;
            while let Some(e) = stream.message().await? {
                bytes += prost::Message::encoded_len(&e) as u64;
                bar.inc(1);
                bar.set_message(indicatif::HumanBytes(bytes).to_string());
                events.push(e);
            }
            Ok(events)
        });
        bar.finish_and_clear();
        let events = match fetched {
            Ok(events) => events,
            Err(s) => {
                return match refusal(s, prefix) {
                    Refusal::NoSession => Ok(None),
                    Refusal::Other(e) => Err(e),
                };
            }
        };
        let Some(id) = events.first().map(|e| e.session_id.clone()) else {
            return Ok(None);
        };
        Ok(Some((id, events)))
    }
}

/// What a status means; `prefix` is the session asked for, if any.
fn refusal(s: tonic::Status, prefix: &str) -> Refusal {
    let msg = s.message().to_string();
    match s.code() {
        tonic::Code::NotFound => Refusal::NoSession,
        tonic::Code::Unauthenticated => Refusal::Other(CollectorError::Unauthenticated(msg)),
        tonic::Code::PermissionDenied => Refusal::Other(CollectorError::Denied(msg)),
        tonic::Code::FailedPrecondition if !prefix.is_empty() => {
            Refusal::Other(CollectorError::Ambiguous(prefix.to_string()))
        }
        code => Refusal::Other(CollectorError::Failed(format!("{code:?}: {msg}"))),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, CollectorError> {
    std::fs::read(path).map_err(|e| CollectorError::ReadFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}
