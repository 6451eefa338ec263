//! exec, attach and port-forward like the kubelet behind a real API server: WebSocket
//! (`v5`/`v4.channel.k8s.io`, `SPDY/3.1+portforward.k8s.io`, legacy WebSocket port-forward) and SPDY/3.1 upgrades, with a real
//! local process per exec in the pod's own temp dir, and real TCP behind port-forward.
mod attach;
mod portforward;
mod process;
mod spdy_conn;
mod ws_conn;
mod ws_portforward;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use http::{HeaderValue, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::mpsc;

use super::ephemeral;
use super::handler::{Ctx, Target};
use super::status::{ApiError, ApiResult};
use super::{Body, full};
use gatehouse_gateway::streams::ws;

pub use process::{In, Out, Spec};

/// Per-server state: the pods' directories and their attachable main processes.
pub struct Containers {
    root: tempfile::TempDir,
    mains: Mutex<HashMap<String, Arc<attach::Main>>>,
}

impl Containers {
    pub fn new() -> std::io::Result<Containers> {
        Ok(Containers {
            root: tempfile::Builder::new()
                .prefix("gatehouse-pods-")
                .tempdir()?,
            mains: Mutex::new(HashMap::new()),
        })
    }

    pub fn pod_dir(&self, namespace: &str, pod: &str) -> PathBuf {
        self.root.path().join(namespace).join(pod)
    }
}

/// The upgrade the client asked for, as negotiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    /// WebSocket remote command; `true` for v5 (has the close channel).
    WsChannel(bool),
    /// SPDY/3.1 remote command, v4.
    SpdyExec,
    /// SPDY/3.1 port-forward.
    SpdyPortForward,
    /// SPDY/3.1 port-forward tunnelled in WebSocket binary messages.
    WsTunnelPortForward,
    /// Legacy WebSocket port-forward: channels 2i/2i+1 for the i-th port.
    WsLegacyPortForward,
}

fn offered(headers: &http::HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

pub(crate) fn serve(ctx: &mut Ctx, t: &Target) -> ApiResult<Response<Body>> {
    let sub = t.sub.as_deref().unwrap_or_default().to_string();
    let name = t.name.clone().unwrap_or_default();
    let pod = ctx
        .state
        .store
        .get(t.r, &t.ns, &name)
        .ok_or_else(|| ApiError::not_found("", "pods", &name))?;
    let upgrade = ctx
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if upgrade.is_empty() {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let Some(on_upgrade) = ctx.upgrade.take() else {
        return Err(ApiError::bad_request(
            "Upgrade request required (the connection cannot be upgraded; use HTTP/1.1)",
        ));
    };
    let port_forward = sub == "portforward";
    let mut resp = Response::new(full(Vec::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    let proto = if upgrade.eq_ignore_ascii_case("websocket") {
        let key = ctx
            .headers
            .get("sec-websocket-key")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::bad_request("missing Sec-WebSocket-Key"))?;
        let protocols = offered(&ctx.headers, "sec-websocket-protocol");
        let supported: &[&str] = if port_forward {
            &["SPDY/3.1+portforward.k8s.io", "v4.channel.k8s.io"]
        } else {
            &["v5.channel.k8s.io", "v4.channel.k8s.io"]
        };
        let chosen = protocols
            .iter()
            .find(|p| supported.contains(&p.as_str()))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "websocket subprotocols {protocols:?} not supported; supported: {supported:?}"
                ))
            })?
            .clone();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            "sec-websocket-accept",
            HeaderValue::from_str(&ws::accept_key(key))
                .map_err(|e| ApiError::internal(e.to_string()))?,
        );
        h.insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(&chosen).map_err(|e| ApiError::internal(e.to_string()))?,
        );
        match chosen.as_str() {
            "SPDY/3.1+portforward.k8s.io" => Proto::WsTunnelPortForward,
            _ if port_forward => Proto::WsLegacyPortForward,
            "v5.channel.k8s.io" => Proto::WsChannel(true),
            _ => Proto::WsChannel(false),
        }
    } else if upgrade.eq_ignore_ascii_case("SPDY/3.1") {
        let versions = offered(&ctx.headers, "x-stream-protocol-version");
        let want = if port_forward {
            "portforward.k8s.io"
        } else {
            "v4.channel.k8s.io"
        };
        if !versions.iter().any(|v| v == want) {
            return Err(ApiError::new(
                403,
                "Forbidden",
                format!("no supported stream protocol in {versions:?}; this server speaks {want}"),
            ));
        }
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        h.insert("x-stream-protocol-version", HeaderValue::from_static(want));
        if port_forward {
            Proto::SpdyPortForward
        } else {
            Proto::SpdyExec
        }
    } else {
        return Err(ApiError::bad_request(format!(
            "unsupported upgrade {upgrade:?}"
        )));
    };

    let q = url::form_urlencoded::parse(ctx.raw_query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect::<Vec<_>>();
    let flag = |k: &str| {
        q.iter()
            .rev()
            .find(|(n, _)| n == k)
            .is_some_and(|(_, v)| matches!(v.as_str(), "1" | "true" | "True"))
    };
    let command: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    let container = q
        .iter()
        .find(|(k, _)| k == "container")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    // Legacy WebSocket port-forward names its ports in the query (repeated or comma-joined).
    let mut ports = Vec::new();
    for (_, v) in q.iter().filter(|(k, _)| k == "ports") {
        for p in v.split(',') {
            ports.push(
                p.trim()
                    .parse::<u16>()
                    .map_err(|_| ApiError::bad_request(format!("invalid port {p:?}")))?,
            );
        }
    }
    if proto == Proto::WsLegacyPortForward && ports.is_empty() {
        return Err(ApiError::bad_request(
            "query parameter \"ports\" is required",
        ));
    }
    let dir = ctx.state.streams.pod_dir(&t.ns, &name);
    std::fs::create_dir_all(&dir).map_err(|e| ApiError::internal(e.to_string()))?;
    let flags = Flags {
        stdin: flag("stdin"),
        stdout: flag("stdout"),
        stderr: flag("stderr"),
        tty: flag("tty"),
    };
    let state = ctx.state.clone();
    let key = format!("{}/{}/{}", t.ns, name, container);
    let main_spec = attach::main_spec(&pod, &container, dir.clone());
    let ephemeral_container = (sub == "attach" && ephemeral::is_ephemeral(&pod, &container))
        .then(|| (t.ns.clone(), name.clone(), container.clone()));
    if ephemeral_container.is_some() && ephemeral::terminated(&pod, &container) {
        return Err(ApiError::bad_request(format!(
            "container {container} in pod {name} has terminated; ephemeral containers are not restarted"
        )));
    }
    if sub == "exec" && command.is_empty() {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    tokio::spawn(async move {
        let io = match on_upgrade.await {
            Ok(io) => TokioIo::new(io),
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        // The session's endpoint: a fresh process (exec) or the pod's main one (attach).
        let start = move || -> (mpsc::Sender<In>, mpsc::Receiver<Out>) {
            if sub == "attach" {
                let main = attach::main(&state, &key, main_spec, ephemeral_container);
                main.attach()
            } else {
                let (in_tx, in_rx) = mpsc::channel(64);
                let (out_tx, out_rx) = mpsc::channel(64);
                tokio::spawn(process::run(
                    Spec {
                        command,
                        dir,
                        tty: flags.tty,
                        stdin: flags.stdin,
                    },
                    in_rx,
                    out_tx,
                ));
                (in_tx, out_rx)
            }
        };
        match proto {
            Proto::WsChannel(v5) => {
                let (tx, rx) = start();
                ws_conn::serve(io, tx, rx, v5).await
            }
            Proto::SpdyExec => spdy_conn::serve(io, flags, start).await,
            Proto::SpdyPortForward => portforward::serve(Box::new(io), false).await,
            Proto::WsTunnelPortForward => portforward::serve(Box::new(io), true).await,
            Proto::WsLegacyPortForward => ws_portforward::serve(io, ports).await,
        }
    });
    Ok(resp)
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Flags {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// The named container's spec (an ephemeral one too: `kubectl debug` attaches to it), or the
/// pod's first container's when no name is given, for attach.
pub(crate) fn container_spec<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    let cs = pod.pointer("/spec/containers")?.as_array()?;
    if name.is_empty() {
        return cs.first();
    }
    let ephemeral = pod
        .pointer("/spec/ephemeralContainers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    cs.iter()
        .chain(ephemeral)
        .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
}
