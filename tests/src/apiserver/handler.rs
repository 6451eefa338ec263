//! Request handling: recording, authentication, routing of discovery, OpenAPI and resource
//! paths, and the verbs (list, get, create, update, patch, delete, deletecollection).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::auth::{self, Caller};
use super::media::{self, Wanted};
use super::resources::{self, ResourceDef};
use super::status::{ApiError, ApiResult, success_status};
use super::store::{Write, now_rfc3339};
use super::table::{self, IncludeObject};
use super::{
    Body, RecordedRequest, State, defaults, discovery, ephemeral, full, logs, openapi, patch,
    reviews, schema, watch,
};

/// Request bodies larger than this are refused (the apiserver's limit is 3 MiB for most).
const MAX_BODY: usize = 16 << 20;

/// Parsed query string (last value wins, like Go's `Query().Get`).
pub(crate) struct Query(BTreeMap<String, String>);

impl Query {
    fn parse(q: Option<&str>) -> Query {
        Query(
            url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }
    pub(crate) fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }
    pub(crate) fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("1" | "true" | "True" | "yes"))
    }
}

/// Everything a verb handler needs about the request.
pub(crate) struct Ctx {
    pub state: Arc<State>,
    pub method: Method,
    pub headers: http::HeaderMap,
    pub query: Query,
    pub body: Bytes,
    pub caller: Caller,
    pub warnings: Vec<String>,
    /// The connection's pending protocol upgrade (exec, attach, port-forward).
    pub upgrade: Option<hyper::upgrade::OnUpgrade>,
    /// The query as sent (repeated keys such as exec's `command` need it).
    pub raw_query: String,
}

pub(crate) fn json_response(code: StatusCode, v: &Value, wanted: &Wanted) -> Response<Body> {
    let (ct, bytes) = match wanted {
        Wanted::Yaml => (
            "application/yaml".to_string(),
            serde_yaml::to_string(v).unwrap_or_default().into_bytes(),
        ),
        w => {
            let mut b = serde_json::to_vec(v).unwrap_or_default();
            b.push(b'\n');
            (media::content_type(w), b)
        }
    };
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = code;
    if let Ok(v) = HeaderValue::from_str(&ct) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

pub(crate) fn error_response(e: &ApiError) -> Response<Body> {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = json_response(code, &e.to_status(), &Wanted::Json);
    if e.code == 401 {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"kubernetes-master\""),
        );
    }
    resp
}

fn text_response(code: StatusCode, text: &str) -> Response<Body> {
    let mut resp = Response::new(full(text.to_string()));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn authenticate(
    state: &State,
    headers: &http::HeaderMap,
    peer_cert: Option<&[u8]>,
) -> ApiResult<Caller> {
    let authenticated = if let Some(token) = auth::bearer(headers) {
        if token == state.opts.gateway_token {
            Some((state.opts.gateway_user.clone(), true))
        } else {
            match state.opts.users.get(token) {
                Some(u) => Some((u.clone(), false)),
                // A presented but unknown token is 401 even if a client cert is valid.
                None => return Err(ApiError::unauthorized()),
            }
        }
    } else {
        peer_cert.and_then(|der| {
            state
                .client_certs
                .lock()
                .get(der)
                .cloned()
                .map(|u| (u, false))
        })
    };
    let Some((user, _gateway)) = authenticated else {
        return Err(ApiError::unauthorized());
    };
    let user = user.with_authenticated_group();
    let may = state.may_impersonate(&user);
    let imp = auth::impersonate(headers, &user, may)?;
    Ok(Caller {
        effective: imp.clone().unwrap_or_else(|| user.clone()),
        authenticated: user,
    })
}

pub(crate) async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
    peer_cert: Option<Vec<u8>>,
) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error_response(&ApiError::new(
                413,
                "RequestEntityTooLarge",
                "the request body is too large or could not be read",
            ));
        }
    };
    let path = parts.uri.path().to_string();
    let query_str = parts.uri.query().map(str::to_string);
    let auth = authenticate(&state, &parts.headers, peer_cert.as_deref());
    state.recorded.lock().push(RecordedRequest {
        method: parts.method.to_string(),
        path: path.clone(),
        query: query_str.clone(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.clone(),
        version: format!("{:?}", parts.version),
        authenticated_user: auth.as_ref().ok().map(|c| c.authenticated.username.clone()),
        effective_user: auth.as_ref().ok().map(|c| c.effective.clone()),
    });
    if matches!(path.as_str(), "/healthz" | "/livez" | "/readyz") {
        return text_response(StatusCode::OK, "ok");
    }
    let caller = match auth {
        Ok(c) => c,
        Err(e) => return error_response(&e),
    };
    let mut ctx = Ctx {
        state,
        method: parts.method,
        headers: parts.headers,
        query: Query::parse(query_str.as_deref()),
        body,
        caller,
        warnings: Vec::new(),
        upgrade,
        raw_query: query_str.clone().unwrap_or_default(),
    };
    let mut resp = match route(&mut ctx, &path).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    for w in &ctx.warnings {
        let v = format!("299 - {}", serde_json::to_string(w).unwrap_or_default());
        if let Ok(v) = HeaderValue::from_str(&v) {
            resp.headers_mut().append("warning", v);
        }
    }
    resp.headers_mut().insert(
        "audit-id",
        HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
            .unwrap_or(HeaderValue::from_static("0")),
    );
    resp
}

fn accept(ctx: &Ctx) -> Option<&str> {
    ctx.headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
}

async fn route(ctx: &mut Ctx, path: &str) -> ApiResult<Response<Body>> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let get_only = |ctx: &Ctx| -> ApiResult<()> {
        if ctx.method == Method::GET || ctx.method == Method::HEAD {
            Ok(())
        } else {
            Err(ApiError::method_not_allowed(ctx.method.as_str()))
        }
    };
    match segs.as_slice() {
        ["version"] => {
            get_only(ctx)?;
            Ok(json_response(
                StatusCode::OK,
                &discovery::version(),
                &Wanted::Json,
            ))
        }
        ["api"] => {
            get_only(ctx)?;
            let w = media::negotiate(accept(ctx), true)?;
            let v = if w == Wanted::AggregatedDiscovery {
                discovery::aggregated(true)
            } else {
                discovery::api_versions(&ctx.state.address)
            };
            Ok(with_discovery_headers(json_response(
                StatusCode::OK,
                &v,
                &w,
            )))
        }
        ["apis"] => {
            get_only(ctx)?;
            let w = media::negotiate(accept(ctx), true)?;
            let v = if w == Wanted::AggregatedDiscovery {
                discovery::aggregated(false)
            } else {
                discovery::api_group_list()
            };
            Ok(with_discovery_headers(json_response(
                StatusCode::OK,
                &v,
                &w,
            )))
        }
        ["api", "v1"] => {
            get_only(ctx)?;
            let v = discovery::api_resource_list("", "v1").ok_or_else(ApiError::no_route)?;
            Ok(json_response(StatusCode::OK, &v, &Wanted::Json))
        }
        ["apis", g] => {
            get_only(ctx)?;
            let v = discovery::api_group(g).ok_or_else(ApiError::no_route)?;
            Ok(json_response(StatusCode::OK, &v, &Wanted::Json))
        }
        ["apis", g, v] => {
            get_only(ctx)?;
            let v = discovery::api_resource_list(g, v).ok_or_else(ApiError::no_route)?;
            Ok(json_response(StatusCode::OK, &v, &Wanted::Json))
        }
        ["openapi", "v2"] => {
            get_only(ctx)?;
            // The v2 document is served as JSON only; protobuf-only requests get 406,
            // which clients treat as "no v2 schema" and fall back from.
            match media::negotiate(accept(ctx), false) {
                Ok(Wanted::Json) => Ok(json_response(
                    StatusCode::OK,
                    &openapi::v2_document(),
                    &Wanted::Json,
                )),
                _ => Err(ApiError::not_acceptable(accept(ctx).unwrap_or(""))),
            }
        }
        ["openapi", "v3"] => {
            get_only(ctx)?;
            Ok(json_response(
                StatusCode::OK,
                &openapi::v3_root(),
                &Wanted::Json,
            ))
        }
        ["openapi", "v3", rest @ ..] => {
            get_only(ctx)?;
            let key = rest.join("/");
            let (bytes, hash) = openapi::v3_document(&key).ok_or_else(ApiError::no_route)?;
            let mut resp = Response::new(full(bytes.clone()));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            if let Ok(etag) = HeaderValue::from_str(&format!("\"{hash}\"")) {
                resp.headers_mut().insert(header::ETAG, etag);
            }
            let cache = if ctx.query.get("hash") == Some(hash.as_str()) {
                "public, immutable"
            } else {
                "no-cache, private"
            };
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
            Ok(resp)
        }
        ["api", "v1", rest @ ..] => resource_request(ctx, "", "v1", rest).await,
        ["apis", g, v, rest @ ..] => {
            let (g, v) = (g.to_string(), v.to_string());
            resource_request(ctx, &g, &v, rest).await
        }
        _ => Err(ApiError::no_route()),
    }
}

fn with_discovery_headers(mut resp: Response<Body>) -> Response<Body> {
    resp.headers_mut().insert(
        "x-varied-accept",
        HeaderValue::from_static(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
        ),
    );
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    resp
}

/// A resolved resource path.
pub(crate) struct Target {
    pub r: &'static ResourceDef,
    pub ns: String,
    pub name: Option<String>,
    pub sub: Option<String>,
}

fn parse_target(group: &str, version: &str, rest: &[&str]) -> ApiResult<Target> {
    let (ns, rest) = match rest {
        ["namespaces", ns, res, tail @ ..]
            if resources::find(group, version, res).is_some_and(|r| r.namespaced) =>
        {
            (ns.to_string(), {
                let mut v = vec![*res];
                v.extend_from_slice(tail);
                v
            })
        }
        other => (String::new(), other.to_vec()),
    };
    let (res, name, sub) = match rest.as_slice() {
        [res] => (*res, None, None),
        [res, name] => (*res, Some(name.to_string()), None),
        [res, name, sub] => (*res, Some(name.to_string()), Some(sub.to_string())),
        _ => return Err(ApiError::no_route()),
    };
    let r = resources::find(group, version, res).ok_or_else(ApiError::no_route)?;
    if let Some(s) = &sub
        && !r.subresources.iter().any(|x| x.name == s)
    {
        return Err(ApiError::no_route());
    }
    Ok(Target { r, ns, name, sub })
}

fn verb_of(method: &Method, t: &Target, q: &Query) -> &'static str {
    match (method.as_str(), t.name.is_some()) {
        ("GET" | "HEAD", false) if q.flag("watch") => "watch",
        ("GET" | "HEAD", false) => "list",
        ("GET" | "HEAD", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", false) => "deletecollection",
        ("DELETE", true) => "delete",
        _ => "unknown",
    }
}

async fn resource_request(
    ctx: &mut Ctx,
    group: &str,
    version: &str,
    rest: &[&str],
) -> ApiResult<Response<Body>> {
    let t = parse_target(group, version, rest)?;
    let verb = verb_of(&ctx.method, &t, &ctx.query);
    if verb == "unknown" {
        return Err(ApiError::method_not_allowed(ctx.method.as_str()));
    }
    let user = ctx.caller.effective.username.clone();
    let rname = match &t.sub {
        Some(s) => format!("{}/{s}", t.r.plural),
        None => t.r.plural.to_string(),
    };
    if !ctx.state.allowed(&user, verb, t.r.plural, &t.ns)
        || (t.sub.is_some() && !ctx.state.allowed(&user, verb, &rname, &t.ns))
    {
        return Err(ApiError::forbidden(
            &user,
            verb,
            t.r.group,
            &rname,
            t.name.as_deref().unwrap_or(""),
            &t.ns,
        ));
    }
    if t.r.virtual_create_only {
        if verb != "create" || t.name.is_some() {
            return Err(ApiError::method_not_allowed(ctx.method.as_str()));
        }
        return reviews::create(ctx, t.r);
    }
    if !t.r.has_verb(verb) {
        return Err(ApiError::method_not_allowed(ctx.method.as_str()));
    }
    match t.sub.as_deref() {
        Some("log") if verb == "get" => return logs::serve(ctx, &t).await,
        Some("exec" | "attach" | "portforward") => return super::streams::serve(ctx, &t),
        Some("status" | "ephemeralcontainers" | "scale" | "finalize") | None => {}
        Some(other) => {
            return Err(ApiError::method_not_allowed(&format!(
                "{} {other}",
                ctx.method
            )));
        }
    }
    match verb {
        "list" => list(ctx, &t),
        "watch" => watch::serve(ctx, &t).await,
        "get" => get(ctx, &t),
        "create" => create(ctx, &t),
        "update" => update(ctx, &t),
        "patch" => patch_object(ctx, &t),
        "delete" => delete(ctx, &t),
        "deletecollection" => delete_collection(ctx, &t),
        _ => Err(ApiError::method_not_allowed(ctx.method.as_str())),
    }
}

// ---------------------------------------------------------------- selectors

/// A parsed label selector requirement.
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

fn parse_label_selector(s: &str) -> ApiResult<Vec<LabelReq>> {
    let mut reqs = Vec::new();
    for term in split_top(s) {
        let term = term.trim();
        let set = |rest: &str| -> Vec<String> {
            rest.trim()
                .trim_start_matches('(')
                .trim_end_matches(')')
                .split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect()
        };
        if let Some((k, v)) = term.split_once("!=") {
            reqs.push(LabelReq::NotEq(k.trim().into(), v.trim().into()));
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            reqs.push(LabelReq::Eq(k.trim().into(), v.trim().into()));
        } else if let Some((k, rest)) = term.split_once(" notin ") {
            reqs.push(LabelReq::NotIn(k.trim().into(), set(rest)));
        } else if let Some((k, rest)) = term.split_once(" in ") {
            reqs.push(LabelReq::In(k.trim().into(), set(rest)));
        } else if let Some(k) = term.strip_prefix('!') {
            reqs.push(LabelReq::NotExists(k.trim().into()));
        } else if !term.is_empty()
            && term
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            reqs.push(LabelReq::Exists(term.into()));
        } else {
            return Err(ApiError::bad_request(format!(
                "unable to parse requirement: found '{term}', expected: '=', '!=', '==', 'in', notin'"
            )));
        }
    }
    Ok(reqs)
}

fn labels_match(reqs: &[LabelReq], obj: &Value) -> bool {
    let labels = obj.pointer("/metadata/labels");
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    reqs.iter().all(|r| match r {
        LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
        LabelReq::NotEq(k, v) => get(k) != Some(v.as_str()),
        LabelReq::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
        LabelReq::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
        LabelReq::Exists(k) => get(k).is_some(),
        LabelReq::NotExists(k) => get(k).is_none(),
    })
}

fn field_value(obj: &Value, path: &str) -> String {
    let ptr = format!("/{}", path.replace('.', "/"));
    match obj.pointer(&ptr) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

fn fields_match(sel: &str, obj: &Value) -> ApiResult<bool> {
    for term in sel.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (k, v, neg) = if let Some((k, v)) = term.split_once("!=") {
            (k, v, true)
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            (k, v, false)
        } else {
            return Err(ApiError::bad_request(format!(
                "invalid selector: '{sel}'; can't understand '{term}'"
            )));
        };
        if (field_value(obj, k.trim()) == v.trim()) == neg {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A filter for list and watch from `labelSelector` and `fieldSelector`.
pub(crate) struct Filter {
    labels: Vec<LabelReq>,
    fields: Option<String>,
}

impl Filter {
    pub(crate) fn from_query(q: &Query) -> ApiResult<Filter> {
        let f = Filter {
            labels: parse_label_selector(q.get("labelSelector").unwrap_or(""))?,
            fields: q
                .get("fieldSelector")
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        };
        if let Some(fs) = &f.fields {
            fields_match(fs, &json!({}))?;
        }
        Ok(f)
    }
    pub(crate) fn matches(&self, obj: &Value) -> bool {
        labels_match(&self.labels, obj)
            && self
                .fields
                .as_deref()
                .is_none_or(|f| fields_match(f, obj).unwrap_or(false))
    }
}

// ---------------------------------------------------------------- read verbs

/// Drops `kind`/`apiVersion` from list items, as the apiserver's typed lists encode them.
fn list_item(mut o: Value) -> Value {
    if let Some(m) = o.as_object_mut() {
        m.remove("kind");
        m.remove("apiVersion");
    }
    o
}

fn list(ctx: &Ctx, t: &Target) -> ApiResult<Response<Body>> {
    let wanted = media::negotiate(accept(ctx), false)?;
    let filter = Filter::from_query(&ctx.query)?;
    let ns = (!t.ns.is_empty()).then_some(t.ns.as_str());
    let (items, rv) = ctx.state.store.list(t.r, ns);
    let items: Vec<Value> = items.into_iter().filter(|o| filter.matches(o)).collect();
    let body = match &wanted {
        Wanted::Table(v) => table::table(
            t.r,
            &items,
            v,
            IncludeObject::parse(ctx.query.get("includeObject")),
            Some(rv.to_string()),
            true,
        ),
        Wanted::PartialMetadata(v) => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": format!("meta.k8s.io/{v}"),
            "metadata": {"resourceVersion": rv.to_string()},
            "items": items.iter().map(|o| table::partial(o, v)).collect::<Vec<_>>(),
        }),
        _ => json!({
            "kind": format!("{}List", t.r.kind),
            "apiVersion": t.r.api_version(),
            "metadata": {"resourceVersion": rv.to_string()},
            "items": items.into_iter().map(list_item).collect::<Vec<_>>(),
        }),
    };
    Ok(json_response(StatusCode::OK, &body, &wanted))
}

pub(crate) fn load(ctx: &Ctx, t: &Target, name: &str) -> ApiResult<Value> {
    ctx.state
        .store
        .get(t.r, &t.ns, name)
        .ok_or_else(|| ApiError::not_found(t.r.group, t.r.plural, name))
}

fn render_object(
    ctx: &Ctx,
    t: &Target,
    code: StatusCode,
    obj: &Value,
) -> ApiResult<Response<Body>> {
    let wanted = media::negotiate(accept(ctx), false)?;
    let body = match &wanted {
        Wanted::Table(v) => table::table(
            t.r,
            std::slice::from_ref(obj),
            v,
            IncludeObject::parse(ctx.query.get("includeObject")),
            obj.pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string),
            true,
        ),
        Wanted::PartialMetadata(v) => table::partial(obj, v),
        _ => obj.clone(),
    };
    Ok(json_response(code, &body, &wanted))
}

fn get(ctx: &Ctx, t: &Target) -> ApiResult<Response<Body>> {
    let name = t.name.as_deref().unwrap_or("");
    let obj = load(ctx, t, name)?;
    render_object(ctx, t, StatusCode::OK, &obj)
}

// ---------------------------------------------------------------- write verbs

fn dry_run(q: &Query) -> ApiResult<bool> {
    match q.get("dryRun") {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "Invalid dryRun: \"{other}\": supported values: \"All\""
        ))),
    }
}

/// The field manager: the `fieldManager` parameter or, as the apiserver does, the first
/// token of the User-Agent.
fn manager(ctx: &Ctx) -> ApiResult<String> {
    let m = match ctx.query.get("fieldManager") {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => ctx
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|ua| ua.split('/').next())
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown")
            .to_string(),
    };
    patch::check_manager(&m)?;
    Ok(m)
}

/// Decodes a JSON or YAML request body.
fn decode_body(ctx: &Ctx) -> ApiResult<Value> {
    let ct = media::essence(
        ctx.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    );
    match ct.as_str() {
        "" | "application/json" | "*/*" => serde_json::from_slice(&ctx.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding JSON request body: {e}"))),
        "application/yaml" => patch::parse_yaml(&ctx.body),
        "application/vnd.kubernetes.protobuf" => super::protobuf::decode_object(&ctx.body),
        other => Err(ApiError::unsupported_media(other)),
    }
}

/// `fieldValidation`: Strict rejects unknown fields, Warn (the default) drops them with a
/// warning header, Ignore drops them silently.
fn field_validation(
    ctx: &mut Ctx,
    r: &ResourceDef,
    obj: &mut Value,
    patching: bool,
) -> ApiResult<()> {
    let mode = ctx
        .query
        .get("fieldValidation")
        .unwrap_or("Warn")
        .to_string();
    if !matches!(mode.as_str(), "Strict" | "Warn" | "Ignore") {
        return Err(ApiError::bad_request(format!(
            "Invalid fieldValidation: \"{mode}\": supported values: \"Ignore\", \"Strict\", \"Warn\""
        )));
    }
    let Some(schema) = schema::definition(r.definition) else {
        return Ok(());
    };
    let unknown = schema::prune_unknown(schema, obj);
    if unknown.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = unknown
        .iter()
        .map(|u| format!("unknown field \"{u}\""))
        .collect();
    match mode.as_str() {
        "Strict" => {
            let msg = if patching {
                format!("strict decoding error: {}", list.join(", "))
            } else {
                format!(
                    "{kind} in version \"{v}\" cannot be handled as a {kind}: strict decoding error: {}",
                    list.join(", "),
                    kind = r.kind,
                    v = r.version
                )
            };
            Err(ApiError::bad_request(msg))
        }
        "Warn" => {
            ctx.warnings.extend(list);
            Ok(())
        }
        _ => Ok(()),
    }
}

fn check_type_meta(r: &ResourceDef, obj: &Value) -> ApiResult<()> {
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str)
        && av != r.api_version()
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            r.api_version()
        )));
    }
    if let Some(k) = obj.get("kind").and_then(Value::as_str)
        && k != r.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            r.kind
        )));
    }
    Ok(())
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// Fields the client may not set on the main resource: `status` comes from the current
/// object (it has its own subresource), server metadata is the store's.
fn keep_status(r: &ResourceDef, current: Option<&Value>, obj: &mut Value) {
    let has_status = r.subresources.iter().any(|s| s.name == "status");
    if !has_status {
        return;
    }
    if let Some(m) = obj.as_object_mut() {
        match current.and_then(|c| c.get("status")) {
            Some(s) => {
                m.insert("status".into(), s.clone());
            }
            None => {
                m.remove("status");
            }
        }
    }
}

fn finish_write(
    state: &State,
    r: &'static ResourceDef,
    current: Option<&Value>,
    obj: &mut Value,
    manager: Option<&str>,
) -> ApiResult<()> {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    defaults::apply_defaults(r, obj, &state.store, current.is_none());
    defaults::validate(r, &name, obj)?;
    if let (Some(m), Some(schema)) = (manager, schema::definition(r.definition)) {
        patch::track_update(schema, current, obj, m, &r.api_version(), &now_rfc3339());
    }
    Ok(())
}

/// Creates an object with server-side processing but no request (used for seeding).
pub(crate) fn create_internal(state: &State, mut obj: Value) -> ApiResult<Value> {
    let av = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("v1");
    let (group, _) = av.rsplit_once('/').unwrap_or(("", av));
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let r = resources::find_kind(group, kind)
        .ok_or_else(|| ApiError::bad_request(format!("no served kind {av} {kind}")))?;
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if r.namespaced {
        super::store::meta_mut(&mut obj).insert("namespace".into(), json!(ns));
    }
    finish_write(state, r, None, &mut obj, Some("kubectl-create"))?;
    let (_, o) = state
        .store
        .write(r, &ns, &name, false, |_| Ok(Write::Create(obj)))?;
    Ok(o)
}

fn create(ctx: &mut Ctx, t: &Target) -> ApiResult<Response<Body>> {
    if t.name.is_some() {
        return Err(ApiError::method_not_allowed("POST"));
    }
    let mut obj = decode_body(ctx)?;
    check_type_meta(t.r, &obj)?;
    field_validation(ctx, t.r, &mut obj, false)?;
    let meta = super::store::meta_mut(&mut obj);
    if let Some(ns) = meta.get("namespace").and_then(Value::as_str)
        && t.r.namespaced
        && !ns.is_empty()
        && ns != t.ns
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let mut name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if name.is_empty()
        && let Some(g) = meta.get("generateName").and_then(Value::as_str)
    {
        name = format!("{g}{}", random_suffix());
        meta.insert("name".into(), json!(name));
    }
    if t.r.namespaced {
        meta.insert("namespace".into(), json!(t.ns));
    }
    for f in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "generation",
        "deletionTimestamp",
    ] {
        meta.remove(f);
    }
    let dry = dry_run(&ctx.query)?;
    let mgr = manager(ctx)?;
    finish_write(&ctx.state, t.r, None, &mut obj, Some(&mgr))?;
    let (_, o) = ctx
        .state
        .store
        .write(t.r, &t.ns, &name, dry, |_| Ok(Write::Create(obj)))?;
    render_object(ctx, t, StatusCode::CREATED, &o)
}

fn check_rv(t: &Target, name: &str, sent: &Value, current: &Value) -> ApiResult<()> {
    let want = sent
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let have = current
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !want.is_empty() && want != have {
        return Err(ApiError::conflict(t.r.group, t.r.plural, name));
    }
    Ok(())
}

fn update(ctx: &mut Ctx, t: &Target) -> ApiResult<Response<Body>> {
    let name = t.name.clone().unwrap_or_default();
    let mut obj = decode_body(ctx)?;
    check_type_meta(t.r, &obj)?;
    field_validation(ctx, t.r, &mut obj, false)?;
    let body_name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let dry = dry_run(&ctx.query)?;
    let mgr = manager(ctx)?;
    let state = ctx.state.clone();
    let sub = t.sub.clone();
    let mut added = Vec::new();
    let (_, o) = state.store.write(t.r, &t.ns, &name, dry, |cur| {
        let cur = cur.ok_or_else(|| ApiError::not_found(t.r.group, t.r.plural, &name))?;
        check_rv(t, &name, &obj, cur)?;
        let mut next = if sub.as_deref() == Some("ephemeralcontainers") {
            let mut next = obj;
            added = ephemeral::update(t.r, &name, cur, &mut next)?;
            next
        } else if sub.as_deref() == Some("status") {
            let mut c = cur.clone();
            if let (Some(m), Some(s)) = (c.as_object_mut(), obj.get("status")) {
                m.insert("status".into(), s.clone());
            }
            c
        } else {
            keep_status(t.r, Some(cur), &mut obj);
            obj
        };
        finish_write(&state, t.r, Some(cur), &mut next, Some(&mgr))?;
        Ok(Write::Update(next))
    })?;
    if !dry {
        ephemeral::start(state.clone(), t.r, t.ns.clone(), name.clone(), added);
    }
    render_object(ctx, t, StatusCode::OK, &o)
}

fn patch_object(ctx: &mut Ctx, t: &Target) -> ApiResult<Response<Body>> {
    let name = t.name.clone().unwrap_or_default();
    let ct = media::essence(
        ctx.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    );
    let dry = dry_run(&ctx.query)?;
    let mgr_param = ctx.query.get("fieldManager").map(str::to_string);
    let force = ctx.query.flag("force");
    let kind_schema = schema::definition(t.r.definition)
        .cloned()
        .unwrap_or(Value::Null);
    let is_apply = ct == "application/apply-patch+yaml";
    let mut patch_doc = match ct.as_str() {
        "application/apply-patch+yaml" => patch::parse_yaml(&ctx.body)?,
        "application/merge-patch+json"
        | "application/strategic-merge-patch+json"
        | "application/json-patch+json" => serde_json::from_slice(&ctx.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?,
        other => return Err(ApiError::unsupported_media(other)),
    };
    if is_apply {
        let Some(m) = mgr_param.as_deref().filter(|m| !m.is_empty()) else {
            return Err(ApiError::bad_request(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        };
        patch::check_manager(m)?;
        check_type_meta(t.r, &patch_doc)?;
        if patch_doc.get("apiVersion").is_none() || patch_doc.get("kind").is_none() {
            return Err(ApiError::bad_request("invalid object type: /, Kind="));
        }
        field_validation(ctx, t.r, &mut patch_doc, true)?;
    } else if ct == "application/json-patch+json" && !patch_doc.is_array() {
        return Err(ApiError::bad_request(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch",
        ));
    }
    let mgr = if is_apply {
        mgr_param.clone().unwrap_or_default()
    } else {
        manager(ctx)?
    };
    let strict = ctx
        .query
        .get("fieldValidation")
        .unwrap_or("Warn")
        .to_string();
    let state = ctx.state.clone();
    let sub = t.sub.clone();
    let mut warnings = Vec::new();
    let mut added = Vec::new();
    let result = state.store.write(t.r, &t.ns, &name, dry, |cur| {
        let now = now_rfc3339();
        if is_apply {
            let mut applied = patch_doc.clone();
            super::store::meta_mut(&mut applied).insert("name".into(), json!(name));
            let next = patch::server_side_apply(
                &kind_schema,
                cur,
                &applied,
                &mgr,
                force,
                &t.r.api_version(),
                &now,
                (t.r.group, t.r.plural, &name),
            )?;
            let mut next = next;
            if t.r.namespaced {
                super::store::meta_mut(&mut next).insert("namespace".into(), json!(t.ns));
            }
            keep_status(t.r, cur, &mut next);
            finish_write(&state, t.r, cur, &mut next, None)?;
            return Ok(match cur {
                Some(_) => Write::Update(next),
                None => Write::Create(next),
            });
        }
        let cur = cur.ok_or_else(|| ApiError::not_found(t.r.group, t.r.plural, &name))?;
        let mut next = cur.clone();
        match ct.as_str() {
            "application/merge-patch+json" => patch::merge_patch(&mut next, &patch_doc),
            "application/strategic-merge-patch+json" => {
                patch::strategic_merge(&kind_schema, &mut next, &patch_doc)?
            }
            _ => patch::json_patch(&mut next, &patch_doc)?,
        }
        check_rv(t, &name, &next, cur)?;
        // Unknown fields introduced by the patch.
        let unknown = schema::prune_unknown(&kind_schema, &mut next);
        if !unknown.is_empty() {
            let list: Vec<String> = unknown
                .iter()
                .map(|u| format!("unknown field \"{u}\""))
                .collect();
            match strict.as_str() {
                "Strict" => {
                    return Err(ApiError::bad_request(format!(
                        "strict decoding error: {}",
                        list.join(", ")
                    )));
                }
                "Warn" => warnings.extend(list),
                _ => {}
            }
        }
        if sub.as_deref() == Some("ephemeralcontainers") {
            added = ephemeral::update(t.r, &name, cur, &mut next)?;
        } else if sub.as_deref() != Some("status") {
            keep_status(t.r, Some(cur), &mut next);
        }
        if next.pointer("/metadata/name").and_then(Value::as_str) != Some(name.as_str()) {
            return Err(ApiError::invalid(
                t.r.group,
                t.r.kind,
                &name,
                &[(
                    "metadata.name".into(),
                    "Invalid value: field is immutable".into(),
                )],
            ));
        }
        finish_write(&state, t.r, Some(cur), &mut next, Some(&mgr))?;
        Ok(Write::Update(next))
    });
    ctx.warnings.extend(warnings);
    let (kind, o) = result?;
    if !dry {
        ephemeral::start(state.clone(), t.r, t.ns.clone(), name.clone(), added);
    }
    let code = if kind == Some(super::store::EventType::Added) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    render_object(ctx, t, code, &o)
}

/// Kinds whose DELETE answers with the object rather than a `Status`.
fn delete_returns_object(r: &ResourceDef) -> bool {
    matches!(r.kind, "Pod" | "Namespace" | "Deployment" | "Service")
}

fn delete(ctx: &mut Ctx, t: &Target) -> ApiResult<Response<Body>> {
    let name = t.name.clone().unwrap_or_default();
    let opts: Value = if ctx.body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&ctx.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?
    };
    let dry = dry_run(&ctx.query)?
        || opts
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x == "All"));
    let (_, o) = ctx.state.store.write(t.r, &t.ns, &name, dry, |cur| {
        let cur = cur.ok_or_else(|| ApiError::not_found(t.r.group, t.r.plural, &name))?;
        if let Some(rv) = opts
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            && cur
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                != Some(rv)
        {
            return Err(ApiError::conflict(t.r.group, t.r.plural, &name));
        }
        if let Some(uid) = opts.pointer("/preconditions/uid").and_then(Value::as_str)
            && cur.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid)
        {
            return Err(ApiError::conflict(t.r.group, t.r.plural, &name));
        }
        Ok(Write::Delete)
    })?;
    if delete_returns_object(t.r) {
        let mut o = o;
        let meta = super::store::meta_mut(&mut o);
        meta.insert("deletionTimestamp".into(), json!(now_rfc3339()));
        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        if t.r.kind == "Namespace"
            && let Some(s) = o.get_mut("status").and_then(Value::as_object_mut)
        {
            s.insert("phase".into(), json!("Terminating"));
        }
        render_object(ctx, t, StatusCode::OK, &o)
    } else {
        let uid = o
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("");
        Ok(json_response(
            StatusCode::OK,
            &success_status(t.r.group, t.r.plural, &name, uid),
            &Wanted::Json,
        ))
    }
}

fn delete_collection(ctx: &mut Ctx, t: &Target) -> ApiResult<Response<Body>> {
    let filter = Filter::from_query(&ctx.query)?;
    let dry = dry_run(&ctx.query)?;
    let ns = (!t.ns.is_empty()).then_some(t.ns.as_str());
    let (items, _) = ctx.state.store.list(t.r, ns);
    let mut deleted = Vec::new();
    for o in items.into_iter().filter(|o| filter.matches(o)) {
        let name = o
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let ons = o
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if let Ok((_, d)) = ctx
            .state
            .store
            .write(t.r, &ons, &name, dry, |_| Ok(Write::Delete))
        {
            deleted.push(list_item(d));
        }
    }
    let body = json!({
        "kind": format!("{}List", t.r.kind),
        "apiVersion": t.r.api_version(),
        "metadata": {"resourceVersion": ctx.state.store.current_rv().to_string()},
        "items": deleted,
    });
    Ok(json_response(StatusCode::OK, &body, &Wanted::Json))
}
