//! `?watch=1`: a chunked stream of `{"type":…,"object":…}` lines, one flush per event,
//! resuming from `resourceVersion`, with `timeoutSeconds`, `allowWatchBookmarks`,
//! `sendInitialEvents` and Table events for `kubectl get -w`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::handler::{Ctx, Filter, Target};
use super::media::{self, Wanted};
use super::resources::ResourceDef;
use super::status::{ApiError, ApiResult};
use super::store::Event;
use super::table::{self, IncludeObject};
use super::{Body, ChannelBody};

/// How often bookmarks go out when the client allows them.
const BOOKMARK_EVERY: Duration = Duration::from_secs(5);
/// Server-chosen watch lifetime when the client sets no `timeoutSeconds`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

struct Encoder {
    r: &'static ResourceDef,
    wanted: Wanted,
    include: IncludeObject,
    headers_sent: bool,
}

impl Encoder {
    fn line(&mut self, kind: &str, obj: &Value) -> Bytes {
        let object = match &self.wanted {
            Wanted::Table(v) => {
                // Column definitions go with the first event only, as the apiserver does to
                // save bandwidth; kubectl reuses the last ones it saw.
                let t = table::table(
                    self.r,
                    std::slice::from_ref(obj),
                    v,
                    self.include,
                    obj.pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    !self.headers_sent,
                );
                self.headers_sent = true;
                t
            }
            Wanted::PartialMetadata(v) => table::partial(obj, v),
            _ => obj.clone(),
        };
        let mut b =
            serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        b.push(b'\n');
        Bytes::from(b)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Option<Bytes> {
        if matches!(self.wanted, Wanted::Table(_)) {
            return None;
        }
        let mut meta = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj =
            json!({"kind": self.r.kind, "apiVersion": self.r.api_version(), "metadata": meta});
        let mut b =
            serde_json::to_vec(&json!({"type": "BOOKMARK", "object": obj})).unwrap_or_default();
        b.push(b'\n');
        Some(Bytes::from(b))
    }
}

fn relevant(t_r: &ResourceDef, ns: &str, filter: &Filter, e: &Event) -> bool {
    std::ptr::eq(e.resource, t_r)
        && (ns.is_empty() || e.namespace == ns)
        && filter.matches(&e.object)
}

pub(crate) async fn serve(ctx: &Ctx, t: &Target) -> ApiResult<Response<Body>> {
    let wanted = media::negotiate(
        ctx.headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
        false,
    )?;
    if wanted == Wanted::Yaml {
        return Err(ApiError::not_acceptable("application/yaml"));
    }
    let filter = Filter::from_query(&ctx.query)?;
    let rv_param = ctx.query.get("resourceVersion").unwrap_or("").to_string();
    let send_initial = ctx.query.get("sendInitialEvents") == Some("true");
    let bookmarks = ctx.query.flag("allowWatchBookmarks");
    let timeout = ctx
        .query
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let store = &ctx.state.store;
    // Initial state: "" and "0" (and sendInitialEvents) start with synthetic ADDED events.
    let (since, initial) = if rv_param.is_empty() || rv_param == "0" || send_initial {
        let ns = (!t.ns.is_empty()).then_some(t.ns.as_str());
        let (items, rv) = store.list(t.r, ns);
        (
            rv,
            items
                .into_iter()
                .filter(|o| filter.matches(o))
                .collect::<Vec<_>>(),
        )
    } else {
        let rv = rv_param
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv_param}")))?;
        (rv, Vec::new())
    };
    let (backlog, mut rx) = store.subscribe(since)?;
    let mut enc = Encoder {
        r: t.r,
        wanted: wanted.clone(),
        include: IncludeObject::parse(ctx.query.get("includeObject")),
        headers_sent: false,
    };
    let (tx, body) = ChannelBody::channel(16);
    let r = t.r;
    let ns = t.ns.clone();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last_rv = since;
        for o in &initial {
            if tx.send(enc.line("ADDED", o)).await.is_err() {
                return;
            }
        }
        if send_initial
            && let Some(b) = enc.bookmark(since, true)
            && tx.send(b).await.is_err()
        {
            return;
        }
        for e in backlog.iter().filter(|e| relevant(r, &ns, &filter, e)) {
            last_rv = e.rv;
            if tx.send(enc.line(e.kind.as_str(), &e.object)).await.is_err() {
                return;
            }
        }
        let mut tick = tokio::time::interval(BOOKMARK_EVERY);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tick.tick(), if bookmarks => {
                    if let Some(b) = enc.bookmark(last_rv, false)
                        && tx.send(b).await.is_err()
                    {
                        return;
                    }
                }
                ev = rx.recv() => {
                    let e: Arc<Event> = match ev {
                        Ok(e) => e,
                        // A watcher that fell too far behind is closed; clients re-list.
                        Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return,
                    };
                    if e.rv <= last_rv {
                        continue;
                    }
                    last_rv = e.rv;
                    if relevant(r, &ns, &filter, &e)
                        && tx.send(enc.line(e.kind.as_str(), &e.object)).await.is_err()
                    {
                        return;
                    }
                }
                _ = tx.closed() => return,
            }
        }
    });
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    if let Ok(v) = HeaderValue::from_str(&media::content_type(&wanted)) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}
