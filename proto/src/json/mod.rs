//! The JSON forms of events and alerts shared by the CLI and the collector's HTTP API, so an
//! export and an API answer are the same objects.
mod alert;
mod event;

pub use alert::{action, alert_json, endpoint};
pub use event::event_json;

/// RFC 3339 UTC with milliseconds, as every JSON time is written.
pub fn rfc3339(nanos: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(nanos)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
