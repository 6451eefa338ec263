//! PATCH semantics: JSON merge patch (RFC 7386), strategic merge patch (lists merged by their
//! schema's merge key, `$patch`, `$retainKeys`, `$deleteFromPrimitiveList`), JSON patch
//! (RFC 6902), and server-side apply with `managedFields` ownership and conflicts.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::schema;
use super::status::{ApiError, ApiResult};

// ---------------------------------------------------------------- JSON merge patch

/// RFC 7386 merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

// ---------------------------------------------------------------- strategic merge patch

/// Strategic merge patch of `target` by `patch`, guided by `schema` (a resolved kind schema).
pub fn strategic_merge(schema: &Value, target: &mut Value, patch: &Value) -> ApiResult<()> {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = patch.clone();
        if let Some(m) = replaced.as_object_mut() {
            m.remove("$patch");
        }
        *target = replaced;
        return Ok(());
    }
    if p.get("$patch").and_then(Value::as_str) == Some("delete") {
        *target = Value::Null;
        return Ok(());
    }
    if !target.is_object() {
        *target = json!({});
    }
    let Value::Object(t) = target else {
        return Ok(());
    };
    for (k, v) in p {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            // Ordering directives only affect list order; we keep the merged order.
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(del)) = (t.get_mut(field), v) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        let sub = schema::property(schema, k)
            .or_else(|| schema::element(schema))
            .cloned()
            .unwrap_or(Value::Null);
        let cur = t.entry(k.clone()).or_insert(Value::Null);
        match v {
            Value::Object(_) => strategic_merge(&sub, cur, v)?,
            Value::Array(items) => merge_list(&sub, cur, items)?,
            _ => *cur = v.clone(),
        }
    }
    if let Some(Value::Array(keep)) = p.get("$retainKeys") {
        let keep: BTreeSet<&str> = keep.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(k.as_str()));
    }
    Ok(())
}

fn merge_list(list_schema: &Value, cur: &mut Value, items: &[Value]) -> ApiResult<()> {
    let key = schema::merge_key(list_schema).map(str::to_string);
    let strategy_merge = schema::resolve(list_schema)
        .get("x-kubernetes-patch-strategy")
        .and_then(Value::as_str)
        .is_some_and(|s| s.contains("merge"));
    let Some(key) = key else {
        if strategy_merge {
            // A merged primitive list (e.g. finalizers): union in order.
            let mut out = cur.as_array().cloned().unwrap_or_default();
            for i in items {
                if !out.contains(i) {
                    out.push(i.clone());
                }
            }
            *cur = Value::Array(out);
        } else {
            *cur = Value::Array(items.to_vec());
        }
        return Ok(());
    };
    let item_schema = schema::element(list_schema).cloned().unwrap_or(Value::Null);
    let mut out = cur.as_array().cloned().unwrap_or_default();
    for item in items {
        let Some(kv) = item.get(&key) else {
            if item.get("$patch").is_some() {
                continue;
            }
            return Err(ApiError::bad_request(format!(
                "map: {item} does not contain declared merge key: {key}"
            )));
        };
        let pos = out.iter().position(|o| o.get(&key) == Some(kv));
        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(i) = pos {
                out.remove(i);
            }
            continue;
        }
        match pos {
            Some(i) => strategic_merge(&item_schema, &mut out[i], item)?,
            None => {
                let mut fresh = Value::Null;
                strategic_merge(&item_schema, &mut fresh, item)?;
                out.push(fresh);
            }
        }
    }
    *cur = Value::Array(out);
    Ok(())
}

// ---------------------------------------------------------------- JSON patch

fn unescape(tok: &str) -> String {
    tok.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(path: &str) -> ApiResult<Vec<String>> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| ApiError::bad_request(format!("invalid JSON pointer {path:?}")))?;
    Ok(rest.split('/').map(unescape).collect())
}

fn parent_mut<'a>(doc: &'a mut Value, toks: &[String]) -> ApiResult<&'a mut Value> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get_mut(t).ok_or_else(|| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("doc is missing path: /{}", toks.join("/")),
                )
            })?,
            Value::Array(a) => {
                let i: usize = t.parse().map_err(|_| {
                    ApiError::new(422, "Invalid", format!("invalid array index {t}"))
                })?;
                a.get_mut(i).ok_or_else(|| {
                    ApiError::new(422, "Invalid", format!("index {i} out of bounds"))
                })?
            }
            _ => {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!("doc is missing path: /{}", toks.join("/")),
                ));
            }
        };
    }
    Ok(cur)
}

fn remove_at(doc: &mut Value, path: &str) -> ApiResult<Value> {
    let toks = split_pointer(path)?;
    let (last, parent) = toks
        .split_last()
        .ok_or_else(|| ApiError::bad_request("cannot remove the document root"))?;
    match parent_mut(doc, parent)? {
        Value::Object(m) => m.remove(last).ok_or_else(|| {
            ApiError::new(
                422,
                "Invalid",
                format!("Unable to remove nonexistent key: {last}: missing value"),
            )
        }),
        Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| ApiError::bad_request("bad index"))?;
            if i < a.len() {
                Ok(a.remove(i))
            } else {
                Err(ApiError::new(
                    422,
                    "Invalid",
                    format!("Unable to remove index {i}"),
                ))
            }
        }
        _ => Err(ApiError::new(
            422,
            "Invalid",
            format!("doc is missing path: {path}"),
        )),
    }
}

fn add_at(doc: &mut Value, path: &str, value: Value, replace: bool) -> ApiResult<()> {
    let toks = split_pointer(path)?;
    let Some((last, parent)) = toks.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, parent)? {
        Value::Object(m) => {
            if replace && !m.contains_key(last) {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!(
                        "replace operation does not apply: doc is missing key: {path}: missing value"
                    ),
                ));
            }
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
            } else {
                let i: usize = last
                    .parse()
                    .map_err(|_| ApiError::bad_request("bad index"))?;
                if replace {
                    *a.get_mut(i)
                        .ok_or_else(|| ApiError::new(422, "Invalid", "index out of bounds"))? =
                        value;
                } else if i <= a.len() {
                    a.insert(i, value);
                } else {
                    return Err(ApiError::new(422, "Invalid", "index out of bounds"));
                }
            }
        }
        _ => {
            return Err(ApiError::new(
                422,
                "Invalid",
                format!("doc is missing path: {path}"),
            ));
        }
    }
    Ok(())
}

/// RFC 6902 JSON patch.
pub fn json_patch(doc: &mut Value, ops: &Value) -> ApiResult<()> {
    let ops = ops
        .as_array()
        .ok_or_else(|| ApiError::bad_request("json patch must be an array of operations"))?;
    for op in ops {
        let kind = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = op.get("path").and_then(Value::as_str).unwrap_or("");
        let value = || {
            op.get("value").cloned().ok_or_else(|| {
                ApiError::bad_request(format!("json patch {kind} operation has no value"))
            })
        };
        let from = || {
            op.get("from").and_then(Value::as_str).ok_or_else(|| {
                ApiError::bad_request(format!("json patch {kind} operation has no from"))
            })
        };
        match kind {
            "add" => add_at(doc, path, value()?, false)?,
            "replace" => add_at(doc, path, value()?, true)?,
            "remove" => {
                remove_at(doc, path)?;
            }
            "move" => {
                let v = remove_at(doc, from()?)?;
                add_at(doc, path, v, false)?;
            }
            "copy" => {
                let v = doc
                    .pointer(from()?)
                    .cloned()
                    .ok_or_else(|| ApiError::new(422, "Invalid", "copy from a missing path"))?;
                add_at(doc, path, v, false)?;
            }
            "test" => {
                if doc.pointer(path) != Some(&value()?) {
                    return Err(ApiError::new(
                        422,
                        "Invalid",
                        format!("testing value {path} failed: test failed"),
                    ));
                }
            }
            other => return Err(ApiError::bad_request(format!("Unexpected kind: {other}"))),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- managed fields / apply

/// A field path in `fieldsV1` notation: `f:spec`, `k:{"name":"c"}`, `v:"x"`.
pub type FieldPath = Vec<String>;

/// Server-owned fields that no manager owns.
fn is_server_field(path: &[String]) -> bool {
    matches!(
        path,
        [a, ..] if a == "f:status" || a == "f:apiVersion" || a == "f:kind"
    ) || matches!(
        path,
        [m, f, ..] if m == "f:metadata" && matches!(f.as_str(),
            "f:uid" | "f:resourceVersion" | "f:generation" | "f:creationTimestamp"
            | "f:managedFields" | "f:name" | "f:namespace" | "f:selfLink")
    )
}

/// The leaf field paths `value` sets, walking `schema` for list keys.
pub fn field_set(schema: &Value, value: &Value) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    walk_fields(schema, value, &mut Vec::new(), &mut out);
    out.retain(|p| !is_server_field(p));
    out
}

fn walk_fields(schema: &Value, value: &Value, path: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let sub = schema::property(schema, k)
                    .or_else(|| schema::element(schema))
                    .cloned()
                    .unwrap_or(Value::Null);
                path.push(format!("f:{k}"));
                walk_fields(&sub, v, path, out);
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let keys: Vec<String> = schema::resolve(schema)
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let set = schema::resolve(schema)
                .get("x-kubernetes-list-type")
                .and_then(Value::as_str)
                == Some("set");
            let item_schema = schema::element(schema).cloned().unwrap_or(Value::Null);
            if !keys.is_empty() && items.iter().all(Value::is_object) {
                for it in items {
                    path.push(format!("k:{}", item_key(it, &keys)));
                    out.insert(path.clone());
                    walk_fields(&item_schema, it, path, out);
                    path.pop();
                }
            } else if set {
                for it in items {
                    path.push(format!("v:{it}"));
                    out.insert(path.clone());
                    path.pop();
                }
            } else {
                out.insert(path.clone());
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

fn item_key(item: &Value, keys: &[String]) -> String {
    let mut m = Map::new();
    for k in keys {
        if let Some(v) = item.get(k) {
            m.insert(k.clone(), v.clone());
        }
    }
    Value::Object(m).to_string()
}

/// The value at a field path (following `k:` keys and `v:` set members).
pub fn value_at<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = value;
    for el in path {
        if let Some(f) = el.strip_prefix("f:") {
            cur = cur.get(f)?;
        } else if let Some(k) = el.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).ok()?;
            cur = cur
                .as_array()?
                .iter()
                .find(|it| key.iter().all(|(kk, kv)| it.get(kk) == Some(kv)))?;
        } else if let Some(v) = el.strip_prefix("v:") {
            let want: Value = serde_json::from_str(v).ok()?;
            cur = cur.as_array()?.iter().find(|it| **it == want)?;
        } else {
            return None;
        }
    }
    Some(cur)
}

fn remove_path(value: &mut Value, path: &[String]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut cur = value;
    for el in parent {
        let next = if let Some(f) = el.strip_prefix("f:") {
            cur.get_mut(f)
        } else if let Some(k) = el.strip_prefix("k:") {
            let Ok(key) = serde_json::from_str::<Map<String, Value>>(k) else {
                return;
            };
            cur.as_array_mut().and_then(|a| {
                a.iter_mut()
                    .find(|it| key.iter().all(|(kk, kv)| it.get(kk) == Some(kv)))
            })
        } else {
            None
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(k) = last.strip_prefix("k:") {
        if let (Ok(key), Some(a)) = (
            serde_json::from_str::<Map<String, Value>>(k),
            cur.as_array_mut(),
        ) {
            a.retain(|it| !key.iter().all(|(kk, kv)| it.get(kk) == Some(kv)));
        }
    } else if let Some(v) = last.strip_prefix("v:")
        && let (Ok(want), Some(a)) = (serde_json::from_str::<Value>(v), cur.as_array_mut())
    {
        a.retain(|it| *it != want);
    }
}

/// The human notation kubectl shows for a conflicting field: `.spec.containers[name="c"].image`.
pub fn display_path(path: &[String]) -> String {
    let mut s = String::new();
    for el in path {
        if let Some(f) = el.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = el.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = key.iter().map(|(a, b)| format!("{a}={b}")).collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = el.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        }
    }
    s
}

/// `fieldsV1` JSON from a set of leaf paths.
pub fn to_fields_v1(set: &BTreeSet<FieldPath>) -> Value {
    let mut root = json!({});
    for p in set {
        let mut cur = &mut root;
        for (i, el) in p.iter().enumerate() {
            let Some(m) = cur.as_object_mut() else { break };
            let node = m.entry(el.clone()).or_insert_with(|| json!({}));
            // A keyed list item is itself a field ("."), as in real managedFields.
            if el.starts_with("k:")
                && i + 1 < p.len()
                && let Some(nm) = node.as_object_mut()
            {
                nm.entry(".").or_insert_with(|| json!({}));
            }
            cur = node;
        }
    }
    root
}

/// The leaf paths of a `fieldsV1` trie.
pub fn from_fields_v1(v: &Value) -> BTreeSet<FieldPath> {
    fn walk(v: &Value, path: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
        let Some(m) = v.as_object() else { return };
        let children: Vec<(&String, &Value)> = m.iter().filter(|(k, _)| *k != ".").collect();
        if (children.is_empty() || m.contains_key(".")) && !path.is_empty() {
            out.insert(path.clone());
        }
        for (k, c) in children {
            path.push(k.clone());
            walk(c, path, out);
            path.pop();
        }
    }
    let mut out = BTreeSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

/// One `managedFields` entry, parsed.
#[derive(Clone, Debug)]
struct Manager {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    subresource: String,
    fields: BTreeSet<FieldPath>,
}

fn read_managers(obj: &Value) -> Vec<Manager> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|e| Manager {
                    manager: e
                        .get("manager")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .into(),
                    operation: e
                        .get("operation")
                        .and_then(Value::as_str)
                        .unwrap_or("Update")
                        .into(),
                    api_version: e
                        .get("apiVersion")
                        .and_then(Value::as_str)
                        .unwrap_or("v1")
                        .into(),
                    time: e.get("time").and_then(Value::as_str).unwrap_or("").into(),
                    subresource: e
                        .get("subresource")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .into(),
                    fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn write_managers(obj: &mut Value, managers: &[Manager]) {
    let entries: Vec<Value> = managers
        .iter()
        .filter(|m| !m.fields.is_empty())
        .map(|m| {
            let mut e = json!({
                "manager": m.manager,
                "operation": m.operation,
                "apiVersion": m.api_version,
                "time": m.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&m.fields),
            });
            if !m.subresource.is_empty() {
                e["subresource"] = json!(m.subresource);
            }
            e
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(entries));
        }
    }
}

fn leaf_differs(a: &Value, b: &Value, path: &[String]) -> bool {
    match (value_at(a, path), value_at(b, path)) {
        (Some(x), Some(y)) => {
            // Keyed items and sub-objects are compared by their own leaves.
            !(x.is_object() && y.is_object()) && x != y
        }
        (None, None) => false,
        _ => true,
    }
}

/// Records an Update-operation write by `manager`: it takes the fields whose values changed
/// from `old` to `new` (all of `new`'s on create); earlier owners lose them.
pub fn track_update(
    kind_schema: &Value,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    now: &str,
) {
    let mut managers = old.map(read_managers).unwrap_or_default();
    let new_fields = field_set(kind_schema, new);
    let changed: BTreeSet<FieldPath> = match old {
        None => new_fields.clone(),
        Some(o) => new_fields
            .iter()
            .filter(|p| leaf_differs(o, new, p))
            .cloned()
            .collect(),
    };
    for m in managers.iter_mut() {
        m.fields
            .retain(|p| new_fields.contains(p) && !changed.contains(p));
    }
    if !changed.is_empty() {
        match managers
            .iter_mut()
            .find(|m| m.manager == manager && m.operation == "Update")
        {
            Some(m) => {
                m.fields.extend(changed);
                m.time = now.to_string();
            }
            None => managers.push(Manager {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: api_version.to_string(),
                time: now.to_string(),
                subresource: String::new(),
                fields: changed,
            }),
        }
    }
    write_managers(new, &managers);
}

/// Merges an applied configuration into an object the way apply does: maps merge, keyed
/// lists merge by key, other lists are replaced.
fn apply_merge(schema: &Value, target: &mut Value, applied: &Value) {
    match applied {
        Value::Object(a) => {
            if !target.is_object() {
                *target = json!({});
            }
            if let Value::Object(t) = target {
                for (k, v) in a {
                    let sub = schema::property(schema, k)
                        .or_else(|| schema::element(schema))
                        .cloned()
                        .unwrap_or(Value::Null);
                    apply_merge(&sub, t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        Value::Array(items) => {
            let keys: Vec<String> = schema::resolve(schema)
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if keys.is_empty() || !target.is_array() {
                *target = applied.clone();
                return;
            }
            let item_schema = schema::element(schema).cloned().unwrap_or(Value::Null);
            if let Value::Array(t) = target {
                for it in items {
                    let k = item_key(it, &keys);
                    match t.iter_mut().find(|x| item_key(x, &keys) == k) {
                        Some(x) => apply_merge(&item_schema, x, it),
                        None => t.push(it.clone()),
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Server-side apply of `applied` by `manager` onto `current` (None creates). Returns the
/// new object with updated `managedFields`, or a 409 listing conflicts unless `force`.
#[allow(clippy::too_many_arguments)]
pub fn server_side_apply(
    kind_schema: &Value,
    current: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    api_version: &str,
    now: &str,
    who: (&str, &str, &str),
) -> ApiResult<Value> {
    let (group, resource, name) = who;
    let applied_fields = field_set(kind_schema, applied);
    let mut managers = current.map(read_managers).unwrap_or_default();
    let base = current.cloned().unwrap_or_else(|| json!({}));
    let mut conflicts: Vec<(String, String, String)> = Vec::new();
    for m in managers.iter().filter(|m| m.manager != manager) {
        for p in m.fields.intersection(&applied_fields) {
            if leaf_differs(&base, applied, p) {
                conflicts.push((m.manager.clone(), m.api_version.clone(), display_path(p)));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(ApiError::apply_conflict(group, resource, name, &conflicts));
    }
    let mut obj = base;
    // Fields this manager applied before but no longer does, and nobody else owns, go away.
    let previous: BTreeSet<FieldPath> = managers
        .iter()
        .filter(|m| m.manager == manager && m.operation == "Apply")
        .flat_map(|m| m.fields.iter().cloned())
        .collect();
    let others: BTreeSet<FieldPath> = managers
        .iter()
        .filter(|m| !(m.manager == manager && m.operation == "Apply"))
        .flat_map(|m| m.fields.iter().cloned())
        .collect();
    let mut dropped: Vec<&FieldPath> = previous
        .iter()
        .filter(|p| !applied_fields.contains(*p) && !others.contains(*p))
        .collect();
    // Deepest first, so list items go after their fields.
    dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in dropped {
        remove_path(&mut obj, p);
    }
    apply_merge(kind_schema, &mut obj, applied);
    if force {
        let conflicted: BTreeSet<String> = conflicts.iter().map(|c| c.2.clone()).collect();
        for m in managers.iter_mut().filter(|m| m.manager != manager) {
            m.fields.retain(|p| !conflicted.contains(&display_path(p)));
        }
    }
    managers.retain(|m| !(m.manager == manager && m.operation == "Apply"));
    managers.push(Manager {
        manager: manager.to_string(),
        operation: "Apply".into(),
        api_version: api_version.to_string(),
        time: now.to_string(),
        subresource: String::new(),
        fields: applied_fields,
    });
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    write_managers(&mut obj, &managers);
    Ok(obj)
}

/// Parses an apply body (YAML or JSON) into JSON.
pub fn parse_yaml(body: &[u8]) -> ApiResult<Value> {
    let v: serde_yaml::Value = serde_yaml::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    serde_json::to_value(v).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
}

/// Manager-name sanity, like the apiserver's (at most 128 characters).
pub fn check_manager(m: &str) -> ApiResult<()> {
    if m.len() > 128 {
        return Err(ApiError::bad_request(format!(
            "fieldManager: Too long: may not be more than 128 bytes (got {})",
            m.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_schema() -> &'static Value {
        schema::definition("io.k8s.api.core.v1.Pod").expect("pod schema")
    }

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        let mut pod = json!({"spec": {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}]}});
        let patch = json!({"spec": {"containers": [{"name": "b", "image": "y:2"}, {"name": "c", "image": "z:1"}]}});
        strategic_merge(pod_schema(), &mut pod, &patch).expect("patch");
        assert_eq!(
            pod["spec"]["containers"],
            json!([{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:2"}, {"name": "c", "image": "z:1"}])
        );
        let del = json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}});
        strategic_merge(pod_schema(), &mut pod, &del).expect("patch");
        assert_eq!(pod["spec"]["containers"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn json_patch_ops() {
        let mut d = json!({"a": {"b": [1, 2]}});
        json_patch(
            &mut d,
            &json!([
                {"op": "add", "path": "/a/b/-", "value": 3},
                {"op": "replace", "path": "/a/b/0", "value": 0},
                {"op": "remove", "path": "/a/b/1"},
                {"op": "add", "path": "/a/c~1d", "value": "x"}
            ]),
        )
        .expect("patch");
        assert_eq!(d, json!({"a": {"b": [0, 3], "c/d": "x"}}));
    }

    #[test]
    fn fields_v1_round_trips() {
        let cm = json!({"metadata": {"labels": {"a": "1"}}, "data": {"k": "v"}});
        let schema = schema::definition("io.k8s.api.core.v1.ConfigMap").expect("cm");
        let set = field_set(schema, &cm);
        let v1 = to_fields_v1(&set);
        assert_eq!(
            v1,
            json!({"f:data": {"f:k": {}}, "f:metadata": {"f:labels": {"f:a": {}}}})
        );
        assert_eq!(from_fields_v1(&v1), set);
    }

    #[test]
    fn apply_removes_dropped_fields_and_detects_conflicts() {
        let schema = schema::definition("io.k8s.api.core.v1.ConfigMap").expect("cm");
        let who = ("", "configmaps", "c");
        let a1 = json!({"metadata": {"name": "c"}, "data": {"x": "1", "y": "2"}});
        let o1 = server_side_apply(schema, None, &a1, "m1", false, "v1", "t", who).expect("apply");
        let a2 = json!({"metadata": {"name": "c"}, "data": {"x": "1"}});
        let o2 =
            server_side_apply(schema, Some(&o1), &a2, "m1", false, "v1", "t", who).expect("apply");
        assert_eq!(o2["data"], json!({"x": "1"}));
        let a3 = json!({"metadata": {"name": "c"}, "data": {"x": "other"}});
        let err = server_side_apply(schema, Some(&o2), &a3, "m2", false, "v1", "t", who)
            .expect_err("conflict");
        assert_eq!(err.code, 409);
        assert!(
            err.message
                .contains("conflict with \"m1\" using v1: .data.x"),
            "{}",
            err.message
        );
        let forced =
            server_side_apply(schema, Some(&o2), &a3, "m2", true, "v1", "t", who).expect("force");
        assert_eq!(forced["data"]["x"], json!("other"));
    }
}
