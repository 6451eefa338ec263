//! The review APIs: `TokenReview` (answers from the configured token table, callable only by
//! token reviewers such as the gateway), `SelfSubjectReview` (`kubectl auth whoami`, the
//! effective user) and `SelfSubjectAccessReview` (`kubectl auth can-i`, from the deny rules).

use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::handler::{Ctx, json_response};
use super::media::{self, Wanted};
use super::protobuf;
use super::resources::ResourceDef;
use super::status::{ApiError, ApiResult};
use super::{Body, UserInfo};

fn body(ctx: &Ctx, r: &ResourceDef) -> ApiResult<Value> {
    let ct = media::essence(
        ctx.headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    );
    let v: Value = if ctx.body.is_empty() {
        json!({})
    } else if ct == "application/vnd.kubernetes.protobuf" {
        protobuf::decode_review(&ctx.body)?
    } else {
        serde_json::from_slice(&ctx.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding JSON request body: {e}")))?
    };
    if let Some(k) = v.get("kind").and_then(Value::as_str)
        && k != r.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            r.kind
        )));
    }
    Ok(v)
}

fn user_json(u: &UserInfo) -> Value {
    let mut v = json!({"username": u.username});
    if !u.uid.is_empty() {
        v["uid"] = json!(u.uid);
    }
    if !u.groups.is_empty() {
        v["groups"] = json!(u.groups);
    }
    if !u.extra.is_empty() {
        v["extra"] = json!(u.extra);
    }
    v
}

pub(crate) fn create(ctx: &Ctx, r: &'static ResourceDef) -> ApiResult<Response<Body>> {
    let input = body(ctx, r)?;
    let user = &ctx.caller.effective;
    let out = match r.kind {
        "TokenReview" => {
            if !ctx.state.may_review_tokens(user) {
                return Err(ApiError::forbidden(
                    &user.username,
                    "create",
                    r.group,
                    r.plural,
                    "",
                    "",
                ));
            }
            let token = input
                .pointer("/spec/token")
                .and_then(Value::as_str)
                .unwrap_or("");
            let audiences = input
                .pointer("/spec/audiences")
                .cloned()
                .filter(|a| a.as_array().is_some_and(|a| !a.is_empty()))
                .unwrap_or_else(|| json!(["https://kubernetes.default.svc.cluster.local"]));
            let opts = &ctx.state.opts;
            let found = if token == opts.gateway_token {
                Some(opts.gateway_user.clone())
            } else {
                opts.users.get(token).cloned()
            };
            let status = match found {
                Some(u) => json!({
                    "authenticated": true,
                    "user": user_json(&u.with_authenticated_group()),
                    "audiences": audiences,
                }),
                None => json!({"user": {}, "error": "[invalid bearer token, token lookup failed]"}),
            };
            let mut spec = input.get("spec").cloned().unwrap_or_else(|| json!({}));
            if spec.get("token").is_none() {
                spec["token"] = json!("");
            }
            json!({
                "kind": "TokenReview",
                "apiVersion": r.api_version(),
                "metadata": {"creationTimestamp": null},
                "spec": spec,
                "status": status,
            })
        }
        "SelfSubjectReview" => json!({
            "kind": "SelfSubjectReview",
            "apiVersion": r.api_version(),
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": user_json(user)},
        }),
        "SelfSubjectAccessReview" => {
            let ra = input.pointer("/spec/resourceAttributes");
            let allowed = match ra {
                Some(ra) => {
                    let s = |k: &str| ra.get(k).and_then(Value::as_str).unwrap_or("");
                    let resource = if s("subresource").is_empty() {
                        s("resource").to_string()
                    } else {
                        format!("{}/{}", s("resource"), s("subresource"))
                    };
                    ctx.state
                        .allowed(&user.username, s("verb"), s("resource"), s("namespace"))
                        && ctx
                            .state
                            .allowed(&user.username, s("verb"), &resource, s("namespace"))
                }
                None => true,
            };
            let mut status = json!({"allowed": allowed});
            if allowed {
                status["reason"] = json!("allowed by the gatehouse test apiserver");
            }
            json!({
                "kind": "SelfSubjectAccessReview",
                "apiVersion": r.api_version(),
                "metadata": {"creationTimestamp": null},
                "spec": input.get("spec").cloned().unwrap_or_else(|| json!({})),
                "status": status,
            })
        }
        _ => return Err(ApiError::method_not_allowed("POST")),
    };
    Ok(json_response(StatusCode::CREATED, &out, &Wanted::Json))
}
