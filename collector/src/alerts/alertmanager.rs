//! The Alertmanager API v2 body: `POST /api/v2/alerts` takes an array of postable alerts.
use super::Notice;
use serde_json::{Value, json};

pub fn body(n: &Notice) -> Value {
    let mut alert = json!({
        "labels": n.labels,
        "annotations": n.annotations,
        "startsAt": n.starts_at,
        "endsAt": n.ends_at,
    });
    if let Some(url) = &n.generator_url {
        alert["generatorURL"] = json!(url);
    }
    json!([alert])
}
