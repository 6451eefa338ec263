//! Session summaries: who, when, how long, what was touched; filtering and id resolution.
use crate::error::CliError;
use crate::time::{human_duration, rfc3339};
use gatehouse_proto::v1::{Event, event::Payload};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    pub id: String,
    pub actor: String,
    pub start_nanos: i64,
    pub end_nanos: i64,
    pub requests: u64,
    pub denied: u64,
    pub errors: u64,
    pub namespaces: BTreeSet<String>,
}

#[derive(Debug, Default)]
pub struct Filter {
    pub who: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub namespace: Option<String>,
}

/// The actor of an event: the username, or where an unauthenticated caller came from.
pub fn actor(e: &Event) -> String {
    match &e.identity {
        Some(id) if !id.username.is_empty() => id.username.clone(),
        _ => format!(
            "unauthenticated@{}",
            e.client
                .as_ref()
                .map(|c| c.source_ip.as_str())
                .unwrap_or("?")
        ),
    }
}

pub fn summarize(events: &[Event], filter: &Filter) -> Vec<SessionSummary> {
    let mut by_id: BTreeMap<&str, SessionSummary> = BTreeMap::new();
    for e in events {
        let s = by_id
            .entry(&e.session_id)
            .or_insert_with(|| SessionSummary {
                id: e.session_id.clone(),
                actor: actor(e),
                start_nanos: e.time_unix_nano,
                end_nanos: e.time_unix_nano,
                requests: 0,
                denied: 0,
                errors: 0,
                namespaces: BTreeSet::new(),
            });
        s.start_nanos = s.start_nanos.min(e.time_unix_nano);
        s.end_nanos = s.end_nanos.max(e.time_unix_nano);
        match &e.payload {
            Some(Payload::Request(r)) => {
                s.requests += 1;
                if let Some(k) = &r.request
                    && !k.namespace.is_empty()
                {
                    s.namespaces.insert(k.namespace.clone());
                }
            }
            Some(Payload::Denied(d)) => {
                s.denied += 1;
                if let Some(k) = &d.request
                    && !k.namespace.is_empty()
                {
                    s.namespaces.insert(k.namespace.clone());
                }
            }
            Some(Payload::Response(r)) if r.status_code >= 400 || !r.error.is_empty() => {
                s.errors += 1
            }
            _ => {}
        }
    }
    let mut out: Vec<_> = by_id
        .into_values()
        .filter(|s| filter.who.as_ref().is_none_or(|w| *w == s.actor))
        .filter(|s| filter.since.is_none_or(|t| s.end_nanos >= t))
        .filter(|s| filter.until.is_none_or(|t| s.start_nanos <= t))
        .filter(|s| {
            filter
                .namespace
                .as_ref()
                .is_none_or(|n| s.namespaces.contains(n))
        })
        .collect();
    out.sort_by_key(|s| (s.start_nanos, s.id.clone()));
    out
}

/// The full id of the one session whose id starts with `prefix`.
pub fn resolve(events: &[Event], prefix: &str) -> Result<String, CliError> {
    let ids: BTreeSet<&str> = events
        .iter()
        .map(|e| e.session_id.as_str())
        .filter(|id| id.starts_with(prefix))
        .collect();
    if ids.contains(prefix) {
        return Ok(prefix.to_string());
    }
    match ids.len() {
        0 => Err(CliError::NoSession(prefix.to_string())),
        1 => Ok(ids
            .into_iter()
            .next()
            .map(str::to_string)
            .unwrap_or_default()),
        count => Err(CliError::Ambiguous {
            prefix: prefix.to_string(),
            count,
        }),
    }
}

pub fn print(list: &[SessionSummary], json: bool, out: &mut dyn Write) -> Result<(), CliError> {
    if json {
        for s in list {
            let v = serde_json::json!({
                "session_id": s.id,
                "actor": s.actor,
                "start": rfc3339(s.start_nanos),
                "end": rfc3339(s.end_nanos),
                "duration_ms": (s.end_nanos - s.start_nanos) / 1_000_000,
                "requests": s.requests,
                "denied": s.denied,
                "errors": s.errors,
                "namespaces": s.namespaces,
            });
            writeln!(out, "{v}")?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "{:<36}  {:<24}  {:<24}  {:>9}  {:>8}  {:>6}  NAMESPACES",
        "SESSION", "ACTOR", "START", "DURATION", "REQUESTS", "DENIED"
    )?;
    for s in list {
        writeln!(
            out,
            "{:<36}  {:<24}  {:<24}  {:>9}  {:>8}  {:>6}  {}",
            s.id,
            s.actor,
            rfc3339(s.start_nanos),
            human_duration(s.end_nanos - s.start_nanos),
            s.requests,
            s.denied,
            s.namespaces.iter().cloned().collect::<Vec<_>>().join(",")
        )?;
    }
    Ok(())
}
