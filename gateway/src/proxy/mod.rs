//! The request path: authenticate, record, forward with the gateway's credential and
//! `Impersonate-*`, and stream the response back while capturing it for the transcript.
pub mod capture;
pub mod impersonation;
mod request_body;

use crate::auth::{AuthMethod, Authenticator, Identity};
use crate::body::{BoxBody, BoxError};
use crate::metrics::{Metrics, RequestLabels};
use crate::status::status_response;
use crate::transcript::recorder::Recorder;
use crate::transcript::{command, request_info};
use crate::upstream::Upstream;
use capture::{CaptureBody, CountingBody, Finish};
use gatehouse_proto::v1::{self as pb, Event, event::Payload};
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use impersonation::Impersonator;
use rustls_pki_types::CertificateDer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// What the connection knows about the caller.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The verified client certificate chain, leaf first, if one was presented.
    pub client_certs: Option<Arc<Vec<CertificateDer<'static>>>>,
}

/// Settings of the request path.
#[derive(Clone, Debug)]
pub struct ProxySettings {
    /// Most body bytes captured per event, each way.
    pub capture_bytes: usize,
}

pub struct Proxy {
    pub settings: ProxySettings,
    pub auth: Authenticator,
    pub upstream: Arc<Upstream>,
    pub recorder: Arc<Recorder>,
    pub metrics: Arc<Metrics>,
    pub impersonator: Impersonator,
    /// `--policy-file`; `None` allows every authenticated request.
    pub policy: Option<Arc<crate::policy::LivePolicy>>,
    /// Held requests and just-in-time grants.
    pub approvals: Arc<crate::approvals::Approvals>,
}

/// Hop-by-hop headers, never forwarded (RFC 9110 §7.6.1), plus the caller's Host.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

fn header_str(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn client_of(headers: &HeaderMap, conn: &ConnInfo) -> pb::Client {
    pb::Client {
        source_ip: conn.peer.ip().to_string(),
        source_port: u32::from(conn.peer.port()),
        user_agent: header_str(headers, "user-agent"),
        kubectl_command: header_str(headers, "kubectl-command"),
        kubectl_session: header_str(headers, "kubectl-session"),
    }
}

fn identity_pb(id: &Identity) -> pb::Identity {
    pb::Identity {
        username: id.username.clone(),
        groups: id.groups.clone(),
        uid: id.uid.clone(),
        method: match id.method {
            AuthMethod::Oidc => pb::AuthMethod::Oidc,
            AuthMethod::ServiceAccountToken => pb::AuthMethod::ServiceAccountToken,
            AuthMethod::ClientCert => pb::AuthMethod::ClientCert,
        } as i32,
        issuer: id.issuer.clone(),
        extra: id
            .extra
            .iter()
            .map(|(k, v)| (k.clone(), v.join(",")))
            .collect(),
    }
}

impl Proxy {
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: ConnInfo,
    ) -> Response<BoxBody> {
        let started = Instant::now();
        let (mut parts, body) = req.into_parts();
        let kube = request_info::parse(&parts.method, parts.uri.path(), parts.uri.query());
        // exec/attach/port-forward upgrades: authenticated and recorded like any request below.
        let upgrade = crate::streams::Pending::take(&mut parts);
        let client = client_of(&parts.headers, &conn);
        let command_id = if client.kubectl_session.is_empty() {
            uuid::Uuid::now_v7().to_string()
        } else {
            client.kubectl_session.clone()
        };
        let content_type = header_str(&parts.headers, "content-type");
        let base = Event {
            client: Some(client.clone()),
            command_id,
            ..Default::default()
        };

        // 1. Authenticate before anything else.
        let certs = conn.client_certs.as_deref().map(Vec::as_slice);
        let identity = match self.auth.authenticate(&parts.headers, certs).await {
            Ok(id) => id,
            Err(e) => {
                let message = format!("gatehouse: {}", e.message());
                let who = format!("unauthenticated@{}", client.source_ip);
                let cmd = command::reconstruct(&kube, &content_type, &[]);
                return self
                    .deny(&who, base, kube, cmd, e.status_code(), e.reason(), &message)
                    .await;
            }
        };
        let mut base = base;
        base.identity = Some(identity_pb(&identity));

        // 2. Read the request body up to the capture cap: it is recorded before forwarding.
        let prefix = match request_body::read_prefix(body, self.settings.capture_bytes).await {
            Ok(p) => p,
            Err(e) => {
                let msg = format!("gatehouse: reading the request body failed: {e}");
                return status_response(StatusCode::BAD_REQUEST, "BadRequest", &msg);
            }
        };
        let cmd = command::reconstruct(&kube, &content_type, prefix.captured());
        if parts.uri.path().starts_with(crate::approvals::api::PREFIX) {
            let policy = self.policy.as_ref().map(|p| p.current());
            let (path, body) = (parts.uri.path(), prefix.captured());
            return crate::approvals::api::serve(
                &self.approvals,
                &self.recorder,
                policy,
                &identity,
                base,
                &parts.method,
                path,
                body,
            )
            .await;
        }

        // Policy: the first matching rule decides. A refusal is recorded and answered 403 before
        // anything goes upstream.
        let mut record_payload = true;
        let mut mask_spec = None;
        let mut stream_settings = crate::streams::StreamSettings::default();
        if let Some(policy) = &self.policy {
            let mut req =
                crate::policy::request_of(&kube, &identity, &client.source_ip, prefix.captured());
            req.roles = self.approvals.roles_of(&identity.username);
            let current = policy.current();
            let decision = current.evaluate(&req);
            if decision.action == gatehouse_policy::Action::RequireApproval {
                let held = crate::approvals::api::hold(
                    &self.approvals,
                    &self.recorder,
                    &current,
                    &identity,
                    &base,
                    &kube,
                    &cmd,
                    &decision,
                );
                if let Err(message) = held.await {
                    return self
                        .forbid(&identity.username, base, kube, cmd, &message)
                        .await;
                }
            } else if !decision.allowed() {
                let message = format!("gatehouse: {}", decision.message);
                return self
                    .forbid(&identity.username, base, kube, cmd, &message)
                    .await;
            }
            record_payload = decision.record_payload;
            mask_spec = decision.mask;
            // A terminal session some stdin rule could refuse a line of: watch its lines.
            if upgrade.as_ref().is_some_and(|u| u.tty_stdin()) && current.watches_stdin(&req) {
                stream_settings.stdin_rules = Some(Arc::new(crate::streams::stdin::StdinRules {
                    policy: policy.clone(),
                    request: req,
                }));
            }
        }
        stream_settings.mask = mask_spec.clone();
        let mask_plan = crate::transcript::mask::MaskPlan::new(&kube, mask_spec);

        // 3. Decide who to impersonate; refuse caller-sent impersonation unless allowed.
        let requested = Impersonator::requested(&parts.headers);
        let target = match self.impersonator.target(&identity, requested.as_ref()) {
            Ok(t) => t,
            Err(message) => {
                return self
                    .forbid(&identity.username, base, kube, cmd, &message)
                    .await;
            }
        };

        // 4. Record the request, fail-closed.
        let mut event = base.clone();
        event.payload = Some(Payload::Request(pb::RequestStarted {
            request: Some(kube.clone()),
            body: Some({
                let mut body = prefix.record(
                    &content_type,
                    &header_str(&parts.headers, "content-encoding"),
                );
                // `record_payload: false`: the exchange is recorded, its bodies are not.
                if !record_payload {
                    body.truncated |= !body.data.is_empty();
                    body.data = bytes::Bytes::new();
                }
                // Secret values never reach the journal (the API server still gets them).
                if mask_plan.active() {
                    crate::transcript::mask::record(body, &mask_plan)
                } else {
                    body
                }
            }),
            command: cmd,
            upstream_as: Some(target.clone()),
        }));
        let recorded = match self.recorder.begin(&identity.username, event).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "refusing a request that could not be recorded");
                self.metrics.deny("journal");
                return status_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "gatehouse: the request could not be recorded, so it was not forwarded; retry later",
                );
            }
        };

        // 5. Forward.
        let mut headers = parts.headers;
        for h in HOP_BY_HOP {
            headers.remove(*h);
        }
        if let Some(u) = &upgrade {
            u.restore_headers(&mut headers);
        }
        headers.remove(header::AUTHORIZATION);
        if mask_plan.active() {
            // Masking reads JSON and text only: negotiate JSON, uncompressed (ARCHITECTURE.md).
            crate::transcript::mask::prefer_json(&mut headers);
        }
        impersonation::apply(&mut headers, &target, &recorded.session_id);
        let request_bytes = Arc::new(AtomicU64::new(0));
        let upstream_body = CountingBody::new(prefix.into_body(), request_bytes.clone()).boxed();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let mut up = Request::new(upstream_body);
        *up.method_mut() = parts.method;
        *up.uri_mut() = match path_and_query.parse() {
            Ok(u) => u,
            Err(_) => {
                self.recorder.abandon(&recorded.session_id);
                return status_response(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "gatehouse: invalid request path",
                );
            }
        };
        *up.headers_mut() = headers;

        let mut finish = Finish {
            recorder: self.recorder.clone(),
            metrics: self.metrics.clone(),
            template: base,
            session_id: recorded.session_id.clone(),
            request_event_id: recorded.event_id.clone(),
            status: 0,
            started,
            latency: Duration::ZERO,
            cap: self.settings.capture_bytes,
            captured: bytes::BytesMut::new(),
            total: 0,
            request_bytes,
            content_type: String::new(),
            content_encoding: String::new(),
            outcome: None,
            masker: None,
            consumed: 0,
        };
        if !record_payload {
            finish.cap = 0;
        }
        let resp = match self.upstream.send(up).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "upstream request failed");
                let message = format!("gatehouse: the API server could not be reached: {e}");
                finish.status = 502;
                finish.latency = started.elapsed();
                finish.outcome = Some(Err(message.clone()));
                drop(finish);
                self.count(&kube.verb, 502, started);
                return status_response(StatusCode::BAD_GATEWAY, "ServiceUnavailable", &message);
            }
        };
        let (mut rparts, rbody) = resp.into_parts();
        for h in HOP_BY_HOP {
            rparts.headers.remove(*h);
        }
        finish.status = rparts.status.as_u16();
        finish.latency = started.elapsed();
        finish.content_type = header_str(&rparts.headers, "content-type");
        finish.content_encoding = header_str(&rparts.headers, "content-encoding");
        self.count(&kube.verb, finish.status, started);
        if let Some(u) = upgrade
            && rparts.status == StatusCode::SWITCHING_PROTOCOLS
        {
            return u.relay(rparts, finish, stream_settings);
        }
        let mut rbody = rbody.map_err(BoxError::from).boxed();
        if mask_plan.active() {
            match crate::policy::dlp::mask_response(
                &mask_plan,
                &mut rparts.headers,
                rbody,
                &mut finish,
            ) {
                Ok(b) => rbody = b,
                Err(message) => {
                    finish.outcome = Some(Err(message.clone()));
                    drop(finish);
                    return status_response(StatusCode::BAD_GATEWAY, "InternalError", &message);
                }
            }
        }
        let body = CaptureBody::new(rbody, finish)
            .map_err(BoxError::from)
            .boxed();
        Response::from_parts(rparts, body)
    }

    fn count(&self, verb: &str, code: u16, started: Instant) {
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                verb: verb.to_string(),
                code: code.to_string(),
            })
            .inc();
        self.metrics
            .request_duration
            .observe(started.elapsed().as_secs_f64());
    }

    /// A 403 refusal (policy, forbidden impersonation), recorded like every refusal.
    async fn forbid(
        &self,
        who: &str,
        event: Event,
        kube: pb::KubeRequest,
        command: String,
        message: &str,
    ) -> Response<BoxBody> {
        self.deny(
            who,
            event,
            kube,
            command,
            StatusCode::FORBIDDEN,
            "Forbidden",
            message,
        )
        .await
    }

    /// Records a refusal (best effort: the caller is refused either way) and answers it.
    #[allow(clippy::too_many_arguments)]
    async fn deny(
        &self,
        who: &str,
        mut event: Event,
        kube: pb::KubeRequest,
        command: String,
        code: StatusCode,
        reason: &str,
        message: &str,
    ) -> Response<BoxBody> {
        self.metrics.deny(&reason.to_ascii_lowercase());
        event.payload = Some(Payload::Denied(pb::AuthDenied {
            status_code: u32::from(code.as_u16()),
            reason: reason.to_string(),
            message: message.to_string(),
            request: Some(kube),
            command,
        }));
        match self.recorder.begin(who, event).await {
            Ok(r) => self.recorder.abandon(&r.session_id),
            Err(e) => tracing::error!(error = %e, "could not record a refused request"),
        }
        status_response(code, reason, message)
    }
}
