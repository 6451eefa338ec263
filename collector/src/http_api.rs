//! The read API as JSON over HTTP, served on the gRPC listener (same TLS, same port): the same
//! query layer, reader-group check and access-audit row as the `Query` gRPC service.
//!
//! - `GET /v1/sessions?identity=&group=&namespace=&resource=&verb=&from=&to=&q=&limit=`
//! - `GET /v1/sessions/{id}` (a unique prefix of the id is enough)
//! - `GET /v1/sessions/{id}/events?from_seq=` as NDJSON, one event per line, streamed
//! - `GET /v1/alerts?node=&namespace=&pod=&workload=&matched_by=&action=&from=&to=&limit=`,
//!   bypass alerts newest first
//!
//! Errors are JSON: `{"error": {"code": 403, "status": "PERMISSION_DENIED", "message": "…"}}`.
use crate::query::{Caller, QueryService};
use bytes::Bytes;
use gatehouse_proto::v1::{ListAlertsRequest, ListSessionsRequest, SessionSummary};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{Full, StreamBody};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, UNIX_EPOCH};
use tokio_stream::StreamExt as _;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service};
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Code, Status};

/// The `/v1/…` routes; tonic's router hands every `/v1/*` request here.
#[derive(Clone)]
pub struct JsonApi {
    query: Arc<QueryService>,
}

impl JsonApi {
    pub fn new(query: Arc<QueryService>) -> Self {
        Self { query }
    }
}

impl NamedService for JsonApi {
    const NAME: &'static str = "v1";
}

impl Service<Request<Body>> for JsonApi {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let query = self.query.clone();
        // The body is not read (GET only), and the parts alone are Sync, as the future must be.
        let (parts, _) = req.into_parts();
        Box::pin(async move {
            Ok(match handle(&query, &parts).await {
                Ok(resp) => resp,
                Err(status) => error_response(&status),
            })
        })
    }
}

/// Which read a path asks for.
enum Route<'a> {
    List,
    Session(&'a str),
    Events(&'a str),
    Alerts,
}

fn route(path: &str) -> Option<Route<'_>> {
    if path == "/v1/alerts" || path == "/v1/alerts/" {
        return Some(Route::Alerts);
    }
    let rest = path.strip_prefix("/v1/sessions")?;
    if rest.is_empty() || rest == "/" {
        return Some(Route::List);
    }
    let rest = rest.strip_prefix('/')?;
    match rest.split_once('/') {
        None => Some(Route::Session(rest)),
        Some((id, "events")) => Some(Route::Events(id)),
        Some(_) => None,
    }
}

async fn handle(query: &QueryService, req: &Parts) -> Result<Response<Body>, Status> {
    let Some(route) = route(req.uri.path()) else {
        return Err(Status::not_found(format!(
            "no such resource {}: the API serves /v1/sessions, /v1/sessions/{{id}}, /v1/sessions/{{id}}/events and /v1/alerts",
            req.uri.path()
        )));
    };
    if req.method != Method::GET {
        // Reads only: nothing is audited for a request that cannot read.
        let mut resp = error_response(&Status::unimplemented(format!(
            "{} is not allowed: the read API answers GET only",
            req.method
        )));
        *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return Ok(resp);
    }
    let caller = Caller {
        token: bearer(req),
        peer: peer(req),
    };
    // The audit target is what was asked for, parameters included, before they are validated:
    // a refused or malformed read is on record as it was sent.
    let target = req
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let params = params(req.uri.query());
    match route {
        Route::List => {
            query.admit(&caller, "GET /v1/sessions", target).await?;
            let filter = list_filter(&params)?;
            let sessions = query.list(&filter, None).await?;
            let body = json!({ "sessions": sessions.iter().map(summary_json).collect::<Vec<_>>() });
            Ok(json_response(StatusCode::OK, &body))
        }
        Route::Alerts => {
            query.admit(&caller, "GET /v1/alerts", target).await?;
            let filter = alert_filter(&params)?;
            let alerts = query.alerts(&filter).await?;
            let body = json!({ "alerts": alerts.iter().map(gatehouse_proto::json::alert_json).collect::<Vec<_>>() });
            Ok(json_response(StatusCode::OK, &body))
        }
        Route::Session(id) => {
            let id = decode(id)?;
            query
                .admit(&caller, "GET /v1/sessions/{id}", target)
                .await?;
            only_params(&params, &[])?;
            let s = query.summary(&id).await?;
            Ok(json_response(StatusCode::OK, &summary_json(&s)))
        }
        Route::Events(id) => {
            let id = decode(id)?;
            query
                .admit(&caller, "GET /v1/sessions/{id}/events", target)
                .await?;
            only_params(&params, &["from_seq"])?;
            let from_seq = match param(&params, "from_seq") {
                Some(v) => v.parse::<u64>().map_err(|_| {
                    Status::invalid_argument(format!(
                        "from_seq: {v:?} is not a non-negative integer"
                    ))
                })?,
                None => 0,
            };
            let rx = query.transcript(&id, from_seq).await?;
            // One line per event, as `gatehouse export --format ndjson` writes it. A failure
            // half-way resets the stream instead of ending it cleanly, so a truncated transcript
            // cannot pass for a whole one.
            let lines = tokio_stream::wrappers::ReceiverStream::new(rx).map(|item| match item {
                Ok(e) => {
                    let mut line = gatehouse_proto::json::event_json(&e).to_string();
                    line.push('\n');
                    Ok(http_body::Frame::data(Bytes::from(line)))
                }
                Err(status) => {
                    tracing::error!(error = %status.message(), "transcript stream failed");
                    Err(Status::new(status.code(), status.message().to_string()))
                }
            });
            let mut resp = Response::new(Body::new(StreamBody::new(lines)));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
            Ok(resp)
        }
    }
}

/// The bearer token of an `Authorization` header.
fn bearer(req: &Parts) -> Option<&str> {
    req.headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The peer address tonic's server put in the request (TLS or plaintext listener).
fn peer(req: &Parts) -> String {
    let ext = &req.extensions;
    ext.get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|i| i.get_ref().remote_addr())
        .or_else(|| ext.get::<TcpConnectInfo>().and_then(|i| i.remote_addr()))
        .map(|a| a.to_string())
        .unwrap_or_default()
}

fn params(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Refuses parameters the route does not know, so a misspelt filter is not silently ignored.
fn only_params(params: &[(String, String)], known: &[&str]) -> Result<(), Status> {
    match params.iter().find(|(k, _)| !known.contains(&k.as_str())) {
        Some((k, _)) if known.is_empty() => Err(Status::invalid_argument(format!(
            "unknown parameter {k:?}: this resource takes none"
        ))),
        Some((k, _)) => Err(Status::invalid_argument(format!(
            "unknown parameter {k:?}; known: {}",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

const LIST_PARAMS: &[&str] = &[
    "identity",
    "group",
    "namespace",
    "resource",
    "verb",
    "from",
    "to",
    "q",
    "limit",
];

const ALERT_PARAMS: &[&str] = &[
    "node",
    "namespace",
    "pod",
    "workload",
    "matched_by",
    "action",
    "from",
    "to",
    "limit",
];

/// Time parameter `name` as Unix nanoseconds (0: absent).
fn time_param(params: &[(String, String)], name: &str) -> Result<i64, Status> {
    match param(params, name) {
        None | Some("") => Ok(0),
        Some(v) => parse_time(v).map_err(|why| Status::invalid_argument(format!("{name}: {why}"))),
    }
}

/// The `limit` parameter (0: absent, the server's default).
fn limit_param(params: &[(String, String)]) -> Result<u32, Status> {
    match param(params, "limit") {
        None | Some("") => Ok(0),
        Some(v) => v.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
            Status::invalid_argument(format!("limit: {v:?} is not a positive integer"))
        }),
    }
}

fn alert_filter(params: &[(String, String)]) -> Result<ListAlertsRequest, Status> {
    only_params(params, ALERT_PARAMS)?;
    let text = |name| param(params, name).unwrap_or("").to_string();
    Ok(ListAlertsRequest {
        node: text("node"),
        namespace: text("namespace"),
        pod: text("pod"),
        workload: text("workload"),
        matched_by: text("matched_by"),
        action: text("action"),
        since_unix_nano: time_param(params, "from")?,
        until_unix_nano: time_param(params, "to")?,
        limit: limit_param(params)?,
    })
}

fn list_filter(params: &[(String, String)]) -> Result<ListSessionsRequest, Status> {
    only_params(params, LIST_PARAMS)?;
    let text = |name| param(params, name).unwrap_or("").to_string();
    let time = |name| time_param(params, name);
    let limit = limit_param(params)?;
    Ok(ListSessionsRequest {
        username: text("identity"),
        group: text("group"),
        namespace: text("namespace"),
        resource: text("resource"),
        verb: text("verb"),
        since_unix_nano: time("from")?,
        until_unix_nano: time("to")?,
        text: text("q"),
        limit,
    })
}

/// An RFC 3339 time as Unix nanoseconds.
fn parse_time(v: &str) -> Result<i64, String> {
    let t = humantime::parse_rfc3339_weak(v)
        .map_err(|e| format!("{v:?} is not an RFC 3339 time ({e}), e.g. 2026-12-02T10:00:00Z"))?;
    t.duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{v:?} is out of range"))
}

fn rfc3339(nanos: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0));
    humantime::format_rfc3339_nanos(t).to_string()
}

fn decode(segment: &str) -> Result<String, Status> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| Status::invalid_argument("session id: not valid percent-encoded UTF-8"))
}

fn summary_json(s: &SessionSummary) -> Value {
    json!({
        "session_id": s.session_id,
        "actor": s.actor,
        "start": rfc3339(s.start_unix_nano),
        "end": rfc3339(s.end_unix_nano),
        "start_unix_nano": s.start_unix_nano,
        "end_unix_nano": s.end_unix_nano,
        "requests": s.requests,
        "denied": s.denied,
        "errors": s.errors,
        "namespaces": s.namespaces,
        "groups": s.groups,
    })
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut text = body.to_string();
    text.push('\n');
    let mut resp = Response::new(Body::new(Full::new(Bytes::from(text))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The HTTP status a query-layer status means.
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn status_name(code: Code) -> &'static str {
    match code {
        Code::Unauthenticated => "UNAUTHENTICATED",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::NotFound => "NOT_FOUND",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Unavailable => "UNAVAILABLE",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::DataLoss => "DATA_LOSS",
        _ => "INTERNAL",
    }
}

fn error_response(status: &Status) -> Response<Body> {
    let code = http_status(status.code());
    let body = json!({ "error": {
        "code": code.as_u16(),
        "status": status_name(status.code()),
        "message": status.message(),
    }});
    let mut resp = json_response(code, &body);
    if code == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert!(matches!(route("/v1/sessions"), Some(Route::List)));
        assert!(matches!(
            route("/v1/sessions/abc"),
            Some(Route::Session("abc"))
        ));
        assert!(matches!(
            route("/v1/sessions/abc/events"),
            Some(Route::Events("abc"))
        ));
        assert!(route("/v1/sessions/abc/other").is_none());
        assert!(route("/v1/sessionsx").is_none());
        assert!(matches!(route("/v1/alerts"), Some(Route::Alerts)));
        assert!(route("/v1/alerts/x").is_none());
    }

    #[test]
    fn list_parameters_map_to_the_grpc_filter() {
        let p = params(Some(
            "identity=alice&namespace=team-a&verb=get&q=cm%203&from=2026-12-01T00:00:00Z&limit=5",
        ));
        let f = list_filter(&p).unwrap();
        assert_eq!(f.username, "alice");
        assert_eq!(f.namespace, "team-a");
        assert_eq!(f.verb, "get");
        assert_eq!(f.text, "cm 3");
        assert_eq!(f.since_unix_nano, 1_796_083_200_000_000_000);
        assert_eq!(f.until_unix_nano, 0);
        assert_eq!(f.limit, 5);
    }

    #[test]
    fn bad_parameters_name_themselves() {
        let err = list_filter(&params(Some("user=alice"))).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("\"user\""), "{}", err.message());
        let err = list_filter(&params(Some("from=yesterday"))).unwrap_err();
        assert!(err.message().starts_with("from: "), "{}", err.message());
        let err = list_filter(&params(Some("limit=0"))).unwrap_err();
        assert!(err.message().starts_with("limit: "), "{}", err.message());
    }

    #[test]
    fn alert_parameters_map_to_the_grpc_filter() {
        let p = params(Some(
            "node=n1&namespace=payments&workload=Deployment%2Fweb&action=blocked&to=2026-12-01T00:00:00Z&limit=7",
        ));
        let f = alert_filter(&p).unwrap();
        assert_eq!(f.node, "n1");
        assert_eq!(f.namespace, "payments");
        assert_eq!(f.workload, "Deployment/web");
        assert_eq!(f.action, "blocked");
        assert_eq!(f.since_unix_nano, 0);
        assert_eq!(f.until_unix_nano, 1_796_083_200_000_000_000);
        assert_eq!(f.limit, 7);
        let err = alert_filter(&params(Some("identity=alice"))).unwrap_err();
        assert!(err.message().contains("\"identity\""), "{}", err.message());
    }

    #[test]
    fn statuses_map_to_http() {
        let r = error_response(&Status::permission_denied("no"));
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let r = error_response(&Status::unauthenticated("no token"));
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
}
