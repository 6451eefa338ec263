//! The reviewer API on the gateway's own listener (`/gatehouse/v1/approvals`, `/gatehouse/v1/grants`),
//! authenticated like any request; the hold of a `require_approval` request; and the recording
//! of every approval and grant action as a gateway-API exchange in the transcript.
use super::{Approval, Approvals, Grant, ReviewError, Verdict, after};
use crate::auth::Identity;
use crate::body::{BoxBody, full};
use crate::status::status_response;
use crate::transcript::recorder::Recorder;
use gatehouse_policy::{Decision, Policy};
use gatehouse_proto::v1::{self as pb, Event, event::Payload};
use http::{Method, Response, StatusCode, header};
use serde::Deserialize;
use std::sync::Arc;
use std::time::SystemTime;

/// Paths under this prefix are the gateway's own API, never forwarded.
pub const PREFIX: &str = "/gatehouse/v1/";

/// Records one approval or grant action as a request/response pair by `who` on `path`.
pub async fn record_action(
    recorder: &Recorder,
    who: &str,
    mut base: Event,
    path: &str,
    request: &serde_json::Value,
    status: u16,
    response: &serde_json::Value,
) {
    let kube = pb::KubeRequest {
        method: "POST".into(),
        path: path.into(),
        verb: "create".into(),
        non_resource: true,
        ..Default::default()
    };
    let body = |v: &serde_json::Value| pb::Body {
        data: v.to_string().into(),
        total_bytes: v.to_string().len() as u64,
        content_type: "application/json".into(),
        ..Default::default()
    };
    base.payload = Some(Payload::Request(pb::RequestStarted {
        request: Some(kube),
        body: Some(body(request)),
        command: format!(
            "gatehouse {}",
            path.trim_start_matches(PREFIX).replace('/', " ")
        ),
        upstream_as: None,
    }));
    let template = base.clone();
    match recorder.begin(who, base).await {
        Ok(r) => {
            let mut ev = template;
            ev.payload = Some(Payload::Response(pb::ResponseFinished {
                request_event_id: r.event_id.clone(),
                status_code: u32::from(status),
                body: Some(body(response)),
                ..Default::default()
            }));
            if let Err(e) = recorder.follow_now(&r.session_id, ev, true) {
                tracing::error!(error = %e, path, "could not record an approval action's outcome");
            }
            recorder.abandon(&r.session_id);
        }
        Err(e) => tracing::error!(error = %e, path, "could not record an approval action"),
    }
}

/// Holds a `require_approval` request until a reviewer answers or the timeout passes.
/// `Ok` lets it through; `Err` is the message of the 403 the caller gets.
#[allow(clippy::too_many_arguments)]
pub async fn hold(
    approvals: &Approvals,
    recorder: &Recorder,
    policy: &Policy,
    identity: &Identity,
    base: &Event,
    kube: &pb::KubeRequest,
    command: &str,
    decision: &Decision,
) -> Result<(), String> {
    let timeout = policy.approvals.timeout;
    let approval = Approval {
        id: uuid::Uuid::now_v7().to_string(),
        requester: identity.username.clone(),
        groups: identity.groups.clone(),
        command: command.to_string(),
        verb: kube.verb.clone(),
        resource: kube.resource.clone(),
        namespace: kube.namespace.clone(),
        name: kube.name.clone(),
        rule: decision
            .rule
            .as_ref()
            .map(|r| r.1.clone())
            .unwrap_or_default(),
        message: decision.message.clone(),
        created: SystemTime::now(),
        expires: after(timeout),
    };
    let id = approval.id.clone();
    let answer = approvals.hold(approval.clone());
    let json = serde_json::to_value(&approval).unwrap_or_default();
    record_action(
        recorder,
        &identity.username,
        base.clone(),
        &format!("{PREFIX}approvals/{id}"),
        &json,
        202,
        &serde_json::json!({"status": "pending"}),
    )
    .await;
    if let Some(hook) = &policy.approvals.webhook {
        super::webhook::notify(hook, &approval);
    }
    tracing::info!(id, requester = %identity.username, command, "request held for approval");
    // Dropping `answer` (the caller went away) makes the approval vanish from the list.
    let verdict = match tokio::time::timeout(timeout, answer).await {
        Ok(Ok(v)) => v,
        Ok(Err(_)) | Err(_) => Verdict::TimedOut,
    };
    approvals.release(&id);
    match verdict {
        Verdict::Approved { by, reason } => {
            tracing::info!(id, by, reason, "held request approved");
            Ok(())
        }
        Verdict::Denied { by, reason } => Err(format!(
            "gatehouse: approval {id} was denied by {by}: {reason}"
        )),
        Verdict::TimedOut => Err(format!(
            "gatehouse: approval {id} timed out after {}: no reviewer approved it ({})",
            humantime::format_duration(timeout),
            decision.message
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    who: String,
    role: String,
    /// `30m`, `2h`.
    #[serde(rename = "for")]
    duration: String,
    #[serde(default)]
    reason: String,
}

fn json_response(code: StatusCode, v: &impl serde::Serialize) -> Response<BoxBody> {
    let mut r = Response::new(full(serde_json::to_vec(v).unwrap_or_default()));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn bad(message: &str) -> Response<BoxBody> {
    status_response(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        &format!("gatehouse: {message}"),
    )
}

/// Serves one reviewer API request from an authenticated caller.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    approvals: &Approvals,
    recorder: &Recorder,
    policy: Option<Arc<Policy>>,
    identity: &Identity,
    base: Event,
    method: &Method,
    path: &str,
    body: &[u8],
) -> Response<BoxBody> {
    let Some(policy) = policy else {
        return status_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            "gatehouse: approvals need a policy file (--policy-file)",
        );
    };
    let reviewer = identity
        .groups
        .iter()
        .any(|g| policy.approvals.reviewers.iter().any(|p| p.matches(g)));
    if !reviewer {
        return status_response(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!(
                "gatehouse: {} is not a reviewer (the policy's approvals.reviewers lists the groups)",
                identity.username
            ),
        );
    }
    let rest = path.trim_start_matches(PREFIX);
    let parts: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match (method, parts.as_slice()) {
        (&Method::GET, ["approvals"]) => json_response(StatusCode::OK, &approvals.list()),
        (&Method::GET, ["grants"]) => json_response(StatusCode::OK, &approvals.grants()),
        (&Method::POST, ["approvals", id, action @ ("approve" | "deny")]) => {
            let reason = match serde_json::from_slice::<ReasonBody>(body) {
                Ok(b) if !b.reason.trim().is_empty() => b.reason,
                Ok(_) => return bad("a reason is required"),
                Err(e) => return bad(&format!("invalid request body: {e}")),
            };
            let by = identity.username.clone();
            let verdict = if *action == "approve" {
                Verdict::Approved {
                    by: by.clone(),
                    reason: reason.clone(),
                }
            } else {
                Verdict::Denied {
                    by: by.clone(),
                    reason: reason.clone(),
                }
            };
            let (code, out) = match approvals.decide(id, verdict) {
                Ok(a) => (
                    StatusCode::OK,
                    serde_json::json!({"id": a.id, "decision": action, "by": by, "reason": reason, "requester": a.requester, "command": a.command}),
                ),
                Err(e @ ReviewError::NotFound(_)) => {
                    return status_response(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        &format!("gatehouse: {e}"),
                    );
                }
                Err(e @ ReviewError::SelfApproval(_)) => {
                    return status_response(
                        StatusCode::FORBIDDEN,
                        "Forbidden",
                        &format!("gatehouse: {e}"),
                    );
                }
            };
            record_action(
                recorder,
                &by,
                base,
                path,
                &serde_json::json!({"reason": reason}),
                code.as_u16(),
                &out,
            )
            .await;
            json_response(code, &out)
        }
        (&Method::POST, ["grants"]) => {
            let g = match serde_json::from_slice::<GrantBody>(body) {
                Ok(g) => g,
                Err(e) => return bad(&format!("invalid request body: {e}")),
            };
            if g.reason.trim().is_empty() {
                return bad("a reason is required");
            }
            if !policy.has_role(&g.role) {
                return bad(&format!("no role {:?} in the policy's roles", g.role));
            }
            let d = match humantime::parse_duration(&g.duration) {
                Ok(d) if !d.is_zero() && d <= policy.approvals.max_grant => d,
                Ok(_) => {
                    return bad(&format!(
                        "the grant must last more than zero and at most {}",
                        humantime::format_duration(policy.approvals.max_grant)
                    ));
                }
                Err(e) => return bad(&format!("invalid duration {:?}: {e}", g.duration)),
            };
            if g.who == identity.username {
                return status_response(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    &format!("gatehouse: {} cannot grant themselves a role", g.who),
                );
            }
            let grant = Grant {
                id: uuid::Uuid::now_v7().to_string(),
                who: g.who,
                role: g.role,
                reason: g.reason,
                granted_by: identity.username.clone(),
                created: SystemTime::now(),
                expires: after(d),
            };
            if let Err(e) = approvals.grant(grant.clone()) {
                tracing::error!(error = %crate::error_chain(&e), "refusing a grant that could not be saved");
                return status_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "gatehouse: the grant could not be saved, so it was not created; retry later",
                );
            }
            let out = serde_json::to_value(&grant).unwrap_or_default();
            record_action(
                recorder,
                &identity.username,
                base,
                path,
                &serde_json::from_slice(body).unwrap_or_default(),
                201,
                &out,
            )
            .await;
            tracing::info!(
                id = grant.id,
                who = grant.who,
                role = grant.role,
                "grant created"
            );
            json_response(StatusCode::CREATED, &out)
        }
        _ => status_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("gatehouse: no API {method} {path}"),
        ),
    }
}

/// Records each grant as it expires, every second, until the process ends.
pub fn expire_grants(
    approvals: Arc<Approvals>,
    recorder: Arc<Recorder>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            for g in approvals.take_expired() {
                tracing::info!(id = g.id, who = g.who, role = g.role, "grant expired");
                let v = serde_json::to_value(&g).unwrap_or_default();
                record_action(
                    &recorder,
                    &g.who,
                    // The grantee's session: the expiry is part of what they could do.
                    Event {
                        identity: Some(pb::Identity {
                            username: g.who.clone(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    &format!("{PREFIX}grants/{}/expired", g.id),
                    &v,
                    200,
                    &serde_json::json!({"status": "expired"}),
                )
                .await;
            }
        }
    })
}
