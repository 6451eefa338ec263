//! The object store: JSON objects keyed by resource, namespace and name, a global
//! `resourceVersion` counter, and a bounded event history that watches replay and follow.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::resources::{self, ResourceDef};
use super::status::{ApiError, ApiResult};

/// A watch event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as watches see it.
#[derive(Clone, Debug)]
pub struct Event {
    pub rv: u64,
    pub resource: &'static ResourceDef,
    pub namespace: String,
    pub kind: EventType,
    pub object: Value,
}

/// What a write closure decides to do with the current object.
pub enum Write {
    Create(Value),
    Update(Value),
    Delete,
}

type Key = (&'static str, &'static str, String, String);

struct Inner {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Arc<Event>>,
}

/// How many past events watches can resume from.
const HISTORY: usize = 8192;

/// Shared, cloneable object store.
pub struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Event>>,
    /// Counter for allocating service cluster IPs.
    next_ip: Mutex<u32>,
}

fn key(r: &'static ResourceDef, ns: &str, name: &str) -> Key {
    (
        r.group,
        r.plural,
        if r.namespaced {
            ns.to_string()
        } else {
            String::new()
        },
        name.to_string(),
    )
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Kinds whose spec changes bump `metadata.generation`.
fn has_generation(r: &ResourceDef) -> bool {
    matches!(r.kind, "Deployment" | "Pod")
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    pub fn new() -> Store {
        let (tx, _) = broadcast::channel(4096);
        Store {
            inner: Mutex::new(Inner {
                rv: 1000,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
            }),
            tx,
            next_ip: Mutex::new(10),
        }
    }

    /// The latest resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.inner.lock().rv
    }

    /// The next free 10.96.0.x cluster IP.
    pub fn allocate_cluster_ip(&self) -> String {
        let mut n = self.next_ip.lock();
        *n += 1;
        format!("10.96.{}.{}", *n / 250, *n % 250)
    }

    pub fn get(&self, r: &'static ResourceDef, ns: &str, name: &str) -> Option<Value> {
        self.inner.lock().objects.get(&key(r, ns, name)).cloned()
    }

    /// Objects of a resource in a namespace (or all namespaces for `None`), by name order,
    /// and the list's resourceVersion.
    pub fn list(&self, r: &'static ResourceDef, ns: Option<&str>) -> (Vec<Value>, u64) {
        let inner = self.inner.lock();
        let items = inner
            .objects
            .iter()
            .filter(|((g, p, n, _), _)| {
                *g == r.group && *p == r.plural && ns.is_none_or(|want| !r.namespaced || n == want)
            })
            .map(|(_, v)| v.clone())
            .collect();
        (items, inner.rv)
    }

    /// Atomically reads the current object, lets `f` decide, and applies the decision,
    /// stamping uid, timestamps, generation and resourceVersion. With `dry_run` nothing is
    /// stored and no event is sent. Returns the resulting object (the deleted one for deletes).
    pub fn write(
        &self,
        r: &'static ResourceDef,
        ns: &str,
        name: &str,
        dry_run: bool,
        f: impl FnOnce(Option<&Value>) -> ApiResult<Write>,
    ) -> ApiResult<(EventTypeOrNone, Value)> {
        let mut inner = self.inner.lock();
        let k = key(r, ns, name);
        if r.namespaced {
            let nsr = resources::find("", "v1", "namespaces")
                .ok_or_else(|| ApiError::internal("namespaces resource missing"))?;
            if !inner.objects.contains_key(&key(nsr, "", ns)) {
                return Err(ApiError::not_found("", "namespaces", ns));
            }
        }
        let current = inner.objects.get(&k);
        let decision = f(current)?;
        let next_rv = inner.rv + 1;
        let (kind, obj) = match decision {
            Write::Create(mut obj) => {
                if current.is_some() {
                    return Err(ApiError::already_exists(r.group, r.plural, name));
                }
                let meta = meta_mut(&mut obj);
                meta.insert("name".into(), json!(name));
                if r.namespaced {
                    meta.insert("namespace".into(), json!(ns));
                } else {
                    meta.remove("namespace");
                }
                meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
                meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
                meta.insert("resourceVersion".into(), json!(next_rv.to_string()));
                if has_generation(r) {
                    meta.insert("generation".into(), json!(1));
                } else {
                    meta.remove("generation");
                }
                (EventType::Added, obj)
            }
            Write::Update(mut obj) => {
                let Some(cur) = current else {
                    return Err(ApiError::not_found(r.group, r.plural, name));
                };
                // Identity fields are the server's, whatever the client sent.
                let cur_meta = cur.get("metadata").cloned().unwrap_or_else(|| json!({}));
                let spec_changed = cur.get("spec") != obj.get("spec");
                let meta = meta_mut(&mut obj);
                meta.insert("name".into(), json!(name));
                if r.namespaced {
                    meta.insert("namespace".into(), json!(ns));
                }
                for f in ["uid", "creationTimestamp"] {
                    if let Some(v) = cur_meta.get(f) {
                        meta.insert(f.into(), v.clone());
                    }
                }
                if has_generation(r) {
                    let g = cur_meta
                        .get("generation")
                        .and_then(Value::as_i64)
                        .unwrap_or(1);
                    meta.insert(
                        "generation".into(),
                        json!(if spec_changed { g + 1 } else { g }),
                    );
                }
                meta.insert(
                    "resourceVersion".into(),
                    cur_meta
                        .get("resourceVersion")
                        .cloned()
                        .unwrap_or(json!("")),
                );
                // A no-op write keeps the resourceVersion and sends no event, as the
                // apiserver does.
                if &obj == cur {
                    return Ok((None, obj));
                }
                meta_mut(&mut obj).insert("resourceVersion".into(), json!(next_rv.to_string()));
                (EventType::Modified, obj)
            }
            Write::Delete => {
                let Some(cur) = current else {
                    return Err(ApiError::not_found(r.group, r.plural, name));
                };
                let mut obj = cur.clone();
                meta_mut(&mut obj).insert("resourceVersion".into(), json!(next_rv.to_string()));
                (EventType::Deleted, obj)
            }
        };
        if dry_run {
            return Ok((Some(kind), obj));
        }
        inner.rv = next_rv;
        match kind {
            EventType::Deleted => {
                inner.objects.remove(&k);
            }
            _ => {
                inner.objects.insert(k, obj.clone());
            }
        }
        self.emit(&mut inner, r, ns, kind, obj.clone());
        // Deleting a namespace deletes what is in it (the real one terminates first).
        if kind == EventType::Deleted && r.plural == "namespaces" && r.group.is_empty() {
            let children: Vec<Key> = inner
                .objects
                .keys()
                .filter(|(_, _, n, _)| n == name)
                .cloned()
                .collect();
            for ck in children {
                if let Some(mut child) = inner.objects.remove(&ck) {
                    inner.rv += 1;
                    let rv = inner.rv;
                    meta_mut(&mut child).insert("resourceVersion".into(), json!(rv.to_string()));
                    if let Some(cr) = resources::find(ck.0, "v1", ck.1) {
                        self.emit(&mut inner, cr, &ck.2, EventType::Deleted, child);
                    }
                }
            }
        }
        Ok((Some(kind), obj))
    }

    fn emit(
        &self,
        inner: &mut Inner,
        r: &'static ResourceDef,
        ns: &str,
        kind: EventType,
        object: Value,
    ) {
        let ev = Arc::new(Event {
            rv: inner.rv,
            resource: r,
            namespace: if r.namespaced {
                ns.to_string()
            } else {
                String::new()
            },
            kind,
            object,
        });
        inner.history.push_back(ev.clone());
        while inner.history.len() > HISTORY {
            inner.history.pop_front();
        }
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(ev);
    }

    /// Starts following changes after `since`: the replayed backlog and a live receiver,
    /// taken under one lock so no event falls between them. `Err` means `since` is older
    /// than the history (410 Gone).
    pub fn subscribe(&self, since: u64) -> ApiResult<Subscription> {
        let inner = self.inner.lock();
        if let Some(oldest) = inner.history.front()
            && since + 1 < oldest.rv
            && inner.history.len() >= HISTORY
        {
            return Err(ApiError::new(
                410,
                "Expired",
                format!("too old resource version: {since} ({})", oldest.rv - 1),
            ));
        }
        let backlog = inner
            .history
            .iter()
            .filter(|e| e.rv > since)
            .cloned()
            .collect();
        Ok((backlog, self.tx.subscribe()))
    }
}

/// A watch's replayed backlog and its live receiver.
pub type Subscription = (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>);

/// `None` when a write changed nothing.
pub type EventTypeOrNone = Option<EventType>;

/// `metadata` as a mutable map, created if missing.
pub fn meta_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    let Value::Object(map) = obj else {
        unreachable!("just made an object")
    };
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    match meta {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}
