//! Discovery documents: `/version`, `/api`, `/apis`, per-group-version resource lists and
//! aggregated discovery (`apidiscovery.k8s.io/v2`), all derived from [`super::resources`].

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::resources::{self, GROUPS, ResourceDef};

/// `/version`, shaped like a v1.35 apiserver's.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "35",
        "emulationMajor": "1",
        "emulationMinor": "35",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "34",
        "gitVersion": "v1.35.2",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-02-10T00:00:00Z",
        "goVersion": "go1.25.7",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

/// `/api` (legacy core group versions).
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]
    })
}

/// `/apis` (non-core groups).
pub fn api_group_list() -> Value {
    let groups: Vec<Value> = GROUPS
        .iter()
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}` for one group.
pub fn api_group(group: &str) -> Option<Value> {
    let (g, v) = GROUPS.iter().find(|(g, _)| *g == group)?;
    let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
    Some(
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": [gv.clone()], "preferredVersion": gv}),
    )
}

/// The storage version hash: the apiserver's is a base64 of the first 8 bytes of a sha256 over
/// the storage group/version/kind; clients only compare it for equality.
fn storage_version_hash(r: &ResourceDef) -> String {
    let digest = Sha256::digest(format!("{}/{}/{}", r.group, r.version, r.kind).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(&digest[..8])
}

/// `/api/v1` or `/apis/{group}/{version}` (an `APIResourceList`), or `None` for unknown.
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let mut list = Vec::new();
    for r in resources::in_group_version(group, version) {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        if !r.virtual_create_only {
            entry["storageVersionHash"] = json!(storage_version_hash(r));
        }
        list.push(entry);
        for s in r.subresources {
            let mut sub = json!({
                "name": format!("{}/{}", r.plural, s.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": s.response.2,
                "verbs": s.verbs,
            });
            if (s.response.0, s.response.1) != (r.group, r.version) {
                sub["group"] = json!(s.response.0);
                sub["version"] = json!(s.response.1);
            }
            list.push(sub);
        }
    }
    if list.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let mut doc = json!({"kind": "APIResourceList", "groupVersion": gv, "resources": list});
    if group.is_empty() {
        // The legacy group's list carries no apiVersion; the others carry "v1".
    } else {
        doc["apiVersion"] = json!("v1");
    }
    Some(doc)
}

fn aggregated_resource(r: &ResourceDef) -> Value {
    let mut e = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        e["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        e["categories"] = json!(r.categories);
    }
    if !r.subresources.is_empty() {
        e["subresources"] = r
            .subresources
            .iter()
            .map(|s| {
                json!({
                    "subresource": s.name,
                    "responseKind": {"group": s.response.0, "version": s.response.1, "kind": s.response.2},
                    "verbs": s.verbs,
                })
            })
            .collect();
    }
    e
}

fn aggregated_group(group: &str, version: &str) -> Value {
    let resources: Vec<Value> = resources::in_group_version(group, version)
        .map(aggregated_resource)
        .collect();
    let mut metadata = json!({"creationTimestamp": null});
    if !group.is_empty() {
        metadata["name"] = json!(group);
    }
    json!({
        "metadata": metadata,
        "versions": [{"version": version, "resources": resources, "freshness": "Current"}]
    })
}

/// Aggregated discovery for `/api` (`legacy = true`) or `/apis`.
pub fn aggregated(legacy: bool) -> Value {
    let items: Vec<Value> = if legacy {
        vec![aggregated_group("", "v1")]
    } else {
        GROUPS.iter().map(|(g, v)| aggregated_group(g, v)).collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items
    })
}
