//! The ordered command transcript of one session: one `> kubectl …` line per command, with
//! discovery noise folded away and failures marked.
use crate::error::CliError;
use crate::sessions::{Filter, actor, summarize};
use crate::time::{human_duration, rfc3339};
use gatehouse_proto::v1::{Event, ResponseFinished, event::Payload};
use std::collections::HashMap;
use std::io::Write;

const READ_VERBS: &[&str] = &["get", "list", "watch"];

struct Line<'a> {
    event: &'a Event,
    command: String,
    mutating: bool,
    resource: bool,
    denied: Option<String>,
}

pub fn print(
    events: &[Event],
    session: &str,
    verbose: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let mut evs: Vec<&Event> = events.iter().filter(|e| e.session_id == session).collect();
    evs.sort_by_key(|e| e.seq);
    let Some(first) = evs.first() else {
        return Err(CliError::NoSession(session.to_string()));
    };
    let summary = summarize(events, &Filter::default())
        .into_iter()
        .find(|s| s.id == session);
    let duration = summary.as_ref().map_or(0, |s| s.end_nanos - s.start_nanos);
    writeln!(
        out,
        "session {session}  actor {}  duration {}",
        actor(first),
        human_duration(duration)
    )?;
    let responses: HashMap<&str, &ResponseFinished> = evs
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::Response(r)) => Some((r.request_event_id.as_str(), r)),
            _ => None,
        })
        .collect();

    // Group consecutive lines by kubectl invocation.
    let mut groups: Vec<Vec<Line<'_>>> = Vec::new();
    let mut last_cmd_id: Option<&str> = None;
    for e in &evs {
        let line = match &e.payload {
            Some(Payload::Request(r)) => {
                let k = r.request.clone().unwrap_or_default();
                Line {
                    event: e,
                    command: r.command.clone(),
                    mutating: !k.non_resource && !READ_VERBS.contains(&k.verb.as_str()),
                    resource: !k.non_resource,
                    denied: None,
                }
            }
            Some(Payload::Denied(d)) => Line {
                event: e,
                command: d.command.clone(),
                mutating: true,
                resource: true,
                denied: Some(format!(
                    "denied {} {}: {}",
                    d.status_code, d.reason, d.message
                )),
            },
            _ => continue,
        };
        if last_cmd_id != Some(e.command_id.as_str()) {
            groups.push(Vec::new());
            last_cmd_id = Some(e.command_id.as_str());
        }
        if let Some(g) = groups.last_mut() {
            g.push(line);
        }
    }

    for group in groups {
        let any_mut = group.iter().any(|l| l.mutating);
        let any_res = group.iter().any(|l| l.resource);
        let mut printed: Vec<String> = Vec::new();
        for l in &group {
            let shown = verbose
                || if any_mut {
                    l.mutating
                } else if any_res {
                    l.resource
                } else {
                    true
                };
            if !shown {
                continue;
            }
            let resp = responses.get(l.event.event_id.as_str());
            let mut text = format!("> {}", l.command);
            if let Some(d) = &l.denied {
                text.push_str(&format!("   # {d}"));
            } else if let Some(r) = resp {
                if r.status_code >= 400 {
                    text.push_str(&format!("   # {}", r.status_code));
                } else if !r.error.is_empty() {
                    text.push_str(&format!("   # {}", r.error));
                }
            }
            if verbose {
                let detail = resp.map_or_else(
                    || "no response recorded".to_string(),
                    |r| {
                        format!(
                            "status {} latency {}µs in {}B out {}B{}",
                            r.status_code,
                            r.latency_nanos / 1000,
                            r.request_bytes,
                            r.body.as_ref().map_or(0, |b| b.total_bytes),
                            if r.body.as_ref().is_some_and(|b| b.truncated) {
                                " (capture truncated)"
                            } else {
                                ""
                            }
                        )
                    },
                );
                writeln!(
                    out,
                    "{text}\n    {} #{} {detail}",
                    rfc3339(l.event.time_unix_nano),
                    l.event.seq
                )?;
                continue;
            }
            // kubectl repeats requests (retries, apply's get-then-patch): print each line once per command.
            if printed.last() != Some(&text) {
                writeln!(out, "{text}")?;
                printed.push(text);
            }
        }
    }
    Ok(())
}
