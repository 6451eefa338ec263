//! `/openapi/v3` (root with `?hash=` URLs, per group-version documents) and a JSON
//! `/openapi/v2`. kubectl reads the v3 documents to learn that the server validates fields
//! (`fieldValidation` on PATCH) and to build strategic-merge patches for `apply`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use super::resources::{self, GROUPS, ResourceDef};
use super::schema::{self, SCHEMAS};

/// The v3 document keys: `api/v1`, `apis/apps/v1`, ...
fn gv_keys() -> Vec<(String, &'static str, &'static str)> {
    let mut v = vec![("api/v1".to_string(), "", "v1")];
    for (g, ver) in GROUPS {
        v.push((format!("apis/{g}/{ver}"), g, ver));
    }
    v
}

fn op_id(verb: &str, r: &ResourceDef, namespaced_path: bool, suffix: &str) -> String {
    let group = if r.group.is_empty() {
        "Core".to_string()
    } else {
        r.group
            .split('.')
            .next()
            .map(|g| {
                let mut c = g.chars();
                c.next()
                    .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    };
    let version = {
        let mut c = r.version.chars();
        c.next()
            .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
            .unwrap_or_default()
    };
    let ns = if namespaced_path { "Namespaced" } else { "" };
    format!("{verb}{group}{version}{ns}{}{suffix}", r.kind)
}

fn query(name: &str, desc: &str, ty: &str) -> Value {
    json!({"name": name, "in": "query", "description": desc, "schema": {"type": ty, "uniqueItems": true}})
}

fn write_params() -> Vec<Value> {
    vec![
        query(
            "dryRun",
            "When present, indicates that modifications should not be persisted.",
            "string",
        ),
        query(
            "fieldManager",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
            "string",
        ),
        query(
            "fieldValidation",
            "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict.",
            "string",
        ),
    ]
}

fn list_params() -> Vec<Value> {
    vec![
        query(
            "allowWatchBookmarks",
            "allowWatchBookmarks requests watch events with type \"BOOKMARK\".",
            "boolean",
        ),
        query(
            "continue",
            "The continue option should be set when retrieving more results from the server.",
            "string",
        ),
        query(
            "fieldSelector",
            "A selector to restrict the list of returned objects by their fields.",
            "string",
        ),
        query(
            "labelSelector",
            "A selector to restrict the list of returned objects by their labels.",
            "string",
        ),
        query(
            "limit",
            "limit is a maximum number of responses to return for a list call.",
            "integer",
        ),
        query(
            "resourceVersion",
            "resourceVersion sets a constraint on what resource versions a request may be served from.",
            "string",
        ),
        query(
            "timeoutSeconds",
            "Timeout for the list/watch call.",
            "integer",
        ),
        query(
            "watch",
            "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.",
            "boolean",
        ),
    ]
}

fn body_schema(def: &str) -> Value {
    json!({"schema": {"$ref": format!("#/components/schemas/{def}")}})
}

fn responses(def: &str, codes: &[(&str, &str)]) -> Value {
    let mut m = Map::new();
    for (code, desc) in codes {
        m.insert(
            code.to_string(),
            json!({"description": desc, "content": {
                "application/json": body_schema(def),
                "application/vnd.kubernetes.protobuf": body_schema(def),
                "application/yaml": body_schema(def)
            }}),
        );
    }
    m.insert("401".into(), json!({"description": "Unauthorized"}));
    Value::Object(m)
}

fn operation(r: &ResourceDef, verb: &str, action: &str, def: &str, namespaced_path: bool) -> Value {
    let suffix = if action == "list" && !namespaced_path && r.namespaced {
        "ForAllNamespaces"
    } else {
        ""
    };
    json!({
        "tags": [format!("{}_{}", if r.group.is_empty() { "core" } else { r.group.split('.').next().unwrap_or("") }, r.version)],
        "description": format!("{action} {}", r.kind),
        "operationId": op_id(verb, r, namespaced_path && r.namespaced, suffix),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
        "parameters": [],
        "responses": responses(def, &[("200", "OK")]),
    })
}

fn paths_for(r: &ResourceDef) -> Vec<(String, Value)> {
    let list_def = format!("{}List", r.definition);
    let gv = r.gv_path();
    let ns_prefix = if r.namespaced {
        format!("{gv}/namespaces/{{namespace}}")
    } else {
        gv.clone()
    };
    let path_params = |with_name: bool| -> Vec<Value> {
        let mut p = Vec::new();
        if with_name {
            p.push(json!({"name": "name", "in": "path", "description": format!("name of the {}", r.kind), "required": true, "schema": {"type": "string", "uniqueItems": true}}));
        }
        if r.namespaced {
            p.push(json!({"name": "namespace", "in": "path", "description": "object name and auth scope, such as for teams and projects", "required": true, "schema": {"type": "string", "uniqueItems": true}}));
        }
        p.push(json!({"name": "pretty", "in": "query", "description": "If 'true', then the output is pretty printed.", "schema": {"type": "string", "uniqueItems": true}}));
        p
    };
    let mut out = Vec::new();
    if r.virtual_create_only {
        let mut post = operation(r, "create", "post", r.definition, false);
        post["parameters"] = json!(write_params());
        post["requestBody"] =
            json!({"content": {"*/*": body_schema(r.definition)}, "required": true});
        post["responses"] = responses(
            r.definition,
            &[("200", "OK"), ("201", "Created"), ("202", "Accepted")],
        );
        out.push((
            format!("{gv}/{}", r.plural),
            json!({"post": post, "parameters": path_params(false)}),
        ));
        return out;
    }
    // Collection.
    let mut list = operation(r, "list", "list", &list_def, true);
    list["parameters"] = json!(list_params());
    let mut create = operation(r, "create", "post", r.definition, true);
    create["parameters"] = json!(write_params());
    create["requestBody"] =
        json!({"content": {"*/*": body_schema(r.definition)}, "required": true});
    create["responses"] = responses(
        r.definition,
        &[("200", "OK"), ("201", "Created"), ("202", "Accepted")],
    );
    let mut coll = json!({"get": list, "post": create, "parameters": path_params(false)});
    if r.has_verb("deletecollection") {
        let mut dc = operation(
            r,
            "deletecollection",
            "deletecollection",
            "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
            true,
        );
        dc["parameters"] = json!(list_params());
        coll["delete"] = dc;
    }
    out.push((format!("{ns_prefix}/{}", r.plural), coll));
    // Item.
    let mut read = operation(r, "read", "get", r.definition, true);
    read["parameters"] = json!([]);
    let mut replace = operation(r, "replace", "put", r.definition, true);
    replace["parameters"] = json!(write_params());
    replace["requestBody"] =
        json!({"content": {"*/*": body_schema(r.definition)}, "required": true});
    replace["responses"] = responses(r.definition, &[("200", "OK"), ("201", "Created")]);
    let mut patch = operation(r, "patch", "patch", r.definition, true);
    let mut pp = write_params();
    pp.push(query(
        "force",
        "Force is going to \"force\" Apply requests.",
        "boolean",
    ));
    patch["parameters"] = json!(pp);
    let p = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
    patch["requestBody"] = json!({"content": {
        "application/apply-patch+yaml": body_schema(p),
        "application/json-patch+json": body_schema(p),
        "application/merge-patch+json": body_schema(p),
        "application/strategic-merge-patch+json": body_schema(p)
    }, "required": true});
    patch["responses"] = responses(r.definition, &[("200", "OK"), ("201", "Created")]);
    let mut delete = operation(
        r,
        "delete",
        "delete",
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
        true,
    );
    delete["parameters"] = json!([
        query(
            "dryRun",
            "When present, indicates that modifications should not be persisted.",
            "string"
        ),
        query(
            "gracePeriodSeconds",
            "The duration in seconds before the object should be deleted.",
            "integer"
        ),
        query(
            "propagationPolicy",
            "Whether and how garbage collection will be performed.",
            "string"
        ),
    ]);
    delete["requestBody"] = json!({"content": {"*/*": body_schema("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions")}});
    out.push((
        format!("{ns_prefix}/{}/{{name}}", r.plural),
        json!({"get": read, "put": replace, "patch": patch, "delete": delete, "parameters": path_params(true)}),
    ));
    if r.namespaced {
        let mut all = operation(r, "list", "list", &list_def, false);
        all["parameters"] = json!(list_params());
        out.push((format!("{gv}/{}", r.plural), json!({"get": all})));
    }
    out
}

fn gv_document(group: &str, version: &str) -> Value {
    let mut paths = Map::new();
    let mut roots = vec![
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch".to_string(),
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status".to_string(),
        "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions".to_string(),
    ];
    for r in resources::in_group_version(group, version) {
        roots.push(r.definition.to_string());
        if !r.virtual_create_only {
            roots.push(format!("{}List", r.definition));
        }
        for (p, item) in paths_for(r) {
            paths.insert(p, item);
        }
    }
    let names = schema::closure(&roots);
    let schemas: Map<String, Value> = names
        .into_iter()
        .filter_map(|n| SCHEMAS.get(&n).map(|s| (n, s.clone())))
        .collect();
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.35.2"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"}}
        },
        "security": [{"BearerToken": []}]
    })
}

/// The serialized v3 documents by key, with their content hashes (computed once).
static V3: LazyLock<BTreeMap<String, (Vec<u8>, String)>> = LazyLock::new(|| {
    let mut m = BTreeMap::new();
    for (key, g, v) in gv_keys() {
        let bytes = serde_json::to_vec(&gv_document(g, v)).unwrap_or_default();
        // The apiserver's hash is an upper-case hex SHA-512 of the document.
        let hash = hex::encode_upper(Sha512::digest(&bytes));
        m.insert(key, (bytes, hash));
    }
    m
});

/// `/openapi/v3`: the discovery root listing each document's hashed URL.
pub fn v3_root() -> Value {
    let mut paths = Map::new();
    for (key, (_, hash)) in V3.iter() {
        paths.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}")}),
        );
    }
    json!({"paths": paths})
}

/// The v3 document for `api/v1`, `apis/apps/v1`, ... with its hash.
pub fn v3_document(key: &str) -> Option<&'static (Vec<u8>, String)> {
    V3.get(key)
}

/// `/openapi/v2` as JSON (Swagger 2.0): definitions under `#/definitions/`.
pub fn v2_document() -> Value {
    fn rewrite(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| {
                        if k == "$ref" {
                            let s = x
                                .as_str()
                                .unwrap_or_default()
                                .replace("#/components/schemas/", "#/definitions/");
                            (k.clone(), Value::String(s))
                        } else {
                            (k.clone(), rewrite(x))
                        }
                    })
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(rewrite).collect()),
            other => other.clone(),
        }
    }
    let defs: Map<String, Value> = SCHEMAS
        .iter()
        .map(|(k, v)| (k.clone(), rewrite(v)))
        .collect();
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.35.2"},
        "paths": {},
        "definitions": defs,
    })
}
