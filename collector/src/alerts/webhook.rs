//! The generic JSON webhook body: one versioned object per alert, with the dedup key the
//! receiver can use to drop our retries (also sent as `Idempotency-Key`).
use super::Notice;
use serde_json::{Value, json};

pub fn body(n: &Notice) -> Value {
    json!({
        "version": "gatehouse.dev/v1",
        "kind": "BypassAlert",
        "id": n.event_id,
        "fingerprint": n.fingerprint,
        "status": "firing",
        "startsAt": n.starts_at,
        "endsAt": n.ends_at,
        "url": n.generator_url,
        "labels": n.labels,
        "annotations": n.annotations,
        "alert": n.detail,
    })
}
