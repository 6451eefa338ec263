//! Time parsing and formatting for the CLI.
use crate::error::CliError;
use chrono::{DateTime, Utc};

/// Parses RFC 3339, or a duration meaning that long before now.
pub fn parse_instant(s: &str) -> Result<i64, CliError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return t
            .timestamp_nanos_opt()
            .ok_or_else(|| CliError::Time(s.to_string()));
    }
    let ago = humantime::parse_duration(s).map_err(|_| CliError::Time(s.to_string()))?;
    let now = Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    Ok(now.saturating_sub(i64::try_from(ago.as_nanos()).unwrap_or(i64::MAX)))
}

pub use gatehouse_proto::json::rfc3339;

/// `2m14s`, `3h0m5s`, `850ms`.
pub fn human_duration(nanos: i64) -> String {
    let nanos = nanos.max(0);
    let ms = nanos / 1_000_000;
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 {
        format!("{h}h{m}m{sec}s")
    } else if m > 0 {
        format!("{m}m{sec}s")
    } else {
        format!("{sec}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        assert_eq!(human_duration(134_000_000_000), "2m14s");
        assert_eq!(human_duration(850_000_000), "850ms");
        assert_eq!(human_duration(3_605_000_000_000), "1h0m5s");
        assert!(parse_instant("2026-11-21T10:00:00Z").is_ok());
        assert!(parse_instant("24h").is_ok());
        assert!(matches!(parse_instant("yesterday"), Err(CliError::Time(_))));
    }
}
