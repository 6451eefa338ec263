//! Interactive streams (exec, attach, port-forward): after the API server switches protocols,
//! the gateway relays both directions frame by frame and records every channel's bytes.
pub mod channel;
pub mod demux;
pub mod inspect;
pub mod outmask;
pub mod record;
pub mod relay;
pub mod rewrite;
pub mod spdy;
pub mod stdin;
pub mod ws;

use crate::body::{BoxBody, empty};
use crate::proxy::capture::Finish;
use crate::status::status_response;
use channel::Target;
use demux::Transport;
use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;

/// Limits and policy of stream relaying.
#[derive(Clone, Debug)]
pub struct StreamSettings {
    /// How often the gateway pings each side of a stream (load balancers idle out at ~60 s).
    pub keepalive: Duration,
    /// Largest frame (or reassembled WebSocket message) accepted; larger ones end the stream.
    pub max_frame: usize,
    /// How long the other side may take to finish after one side closed.
    pub grace: Duration,
    /// Record port-forward payloads (off by default: only sizes and timing are kept).
    pub capture_port_payload: bool,
    /// The policy's stdin line rules that apply to this stream (TTY exec/attach only).
    pub stdin_rules: Option<Arc<stdin::StdinRules>>,
    /// The deciding `mask` rule's spec: its detectors run over the command's output.
    pub mask: Option<Arc<gatehouse_policy::MaskSpec>>,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            keepalive: Duration::from_secs(30),
            // SPDY's 24-bit length bounds its frames at 16 MiB; WebSocket messages get the same.
            max_frame: 16 << 20,
            grace: Duration::from_secs(10),
            capture_port_payload: false,
            stdin_rules: None,
            mask: None,
        }
    }
}

/// An exec/attach/port-forward request asking to upgrade, with the caller's side of the
/// upgrade held until the API server answers.
pub struct Pending {
    client: OnUpgrade,
    target: Target,
    upgrade: HeaderValue,
}

impl Pending {
    /// Takes the caller's pending upgrade if this is a stream request asking for one.
    pub fn take(parts: &mut http::request::Parts) -> Option<Pending> {
        let upgrade = parts.headers.get(UPGRADE)?.clone();
        let target = Target::parse(parts.uri.path(), parts.uri.query())?;
        let client = parts.extensions.remove::<OnUpgrade>()?;
        Some(Pending {
            client,
            target,
            upgrade,
        })
    }

    /// Whether the stream is an interactive terminal with stdin (what stdin line rules watch).
    pub fn tty_stdin(&self) -> bool {
        self.target.tty && self.target.stdin
    }

    /// Puts back the upgrade headers that hop-by-hop stripping removed.
    pub fn restore_headers(&self, headers: &mut HeaderMap) {
        headers.insert(UPGRADE, self.upgrade.clone());
        headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    }

    /// The API server switched protocols: answer the caller with the same switch and relay the
    /// two upgraded connections in the background. `finish` writes `ResponseFinished` when the
    /// stream is over, so the exchange stays in flight (and its session alive) meanwhile.
    pub fn relay(
        self,
        mut rparts: http::response::Parts,
        mut finish: Finish,
        settings: StreamSettings,
    ) -> Response<BoxBody> {
        let Some(upstream) = rparts.extensions.remove::<OnUpgrade>() else {
            let message = "gatehouse: the API server switched protocols on a connection that cannot be upgraded";
            finish.outcome = Some(Err(message.to_string()));
            return status_response(StatusCode::BAD_GATEWAY, "InternalError", message);
        };
        let transport = transport_of(&self.upgrade, &rparts.headers);
        self.restore_headers(&mut rparts.headers);
        let Pending { client, target, .. } = self;
        tokio::spawn(async move {
            let rec = Arc::new(record::StreamRecorder::new(
                finish.recorder.clone(),
                finish.session_id.clone(),
                finish.template.clone(),
                finish.request_event_id.clone(),
                &target,
                settings.capture_port_payload,
            ));
            let (client, upstream) = match tokio::join!(client, upstream) {
                (Ok(c), Ok(u)) => (c, u),
                (c, u) => {
                    let error = format!(
                        "the upgrade did not complete (caller: {}, API server: {})",
                        c.err().map_or("ok".into(), |e| e.to_string()),
                        u.err().map_or("ok".into(), |e| e.to_string())
                    );
                    tracing::warn!(%error, "stream upgrade failed");
                    finish.outcome = Some(Err(error));
                    // Dropping `finish` writes ResponseFinished with the outcome.
                    drop(finish);
                    return;
                }
            };
            // Fail-closed: nothing is relayed unless the stream's start is on record.
            if let Err(e) = rec.opened(&target, &transport).await {
                let error = format!(
                    "the stream could not be recorded: {}",
                    crate::error_chain(&e)
                );
                tracing::error!(%error, "refusing to relay a stream");
                finish.outcome = Some(Err(error));
                drop(finish);
                return;
            }
            let outcome = relay::run(
                Box::new(TokioIo::new(client)),
                Box::new(TokioIo::new(upstream)),
                &target,
                transport,
                &settings,
                rec.clone(),
            )
            .await;
            if let Err(e) = rec.ended(outcome.aborted, outcome.error.clone()).await {
                tracing::error!(error = %crate::error_chain(&e), "could not record the end of a stream");
            }
            finish.outcome = Some(match outcome.error {
                Some(e) => Err(e),
                None => Ok(()),
            });
            drop(finish);
        });
        Response::from_parts(rparts, empty())
    }
}

fn transport_of(upgrade: &HeaderValue, response: &HeaderMap) -> Transport {
    let header = |n: &str| {
        response
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let up = upgrade.to_str().unwrap_or_default();
    if up.eq_ignore_ascii_case("websocket") {
        let protocol = header("sec-websocket-protocol");
        if protocol.starts_with("SPDY/3.1+portforward") {
            Transport::SpdyOverWebSocket
        } else {
            Transport::WebSocket {
                base64: protocol.contains("base64"),
                protocol,
            }
        }
    } else {
        Transport::Spdy {
            protocol: header("x-stream-protocol-version"),
        }
    }
}
