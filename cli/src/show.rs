//! The ordered command transcript of one session: one `> kubectl …` line per command, with
//! discovery noise folded away and failures marked.
use crate::error::CliError;
use crate::sessions::{Filter, actor, summarize};
use crate::time::{human_duration, rfc3339};
use gatehouse_proto::v1::{Event, ResponseFinished, event::Payload};
use std::collections::HashMap;
use std::io::Write;

const READ_VERBS: &[&str] = &["get", "list", "watch"];

/// How much a request says about what the user asked for: a command prints only the lines of
/// its highest class (apply's GET before its PATCH, logs' GET of the pod, discovery: folded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    NonResource,
    Read,
    SubresourceRead,
    Mutation,
}

struct Line<'a> {
    event: &'a Event,
    command: String,
    class: Class,
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
                let class = if k.non_resource {
                    Class::NonResource
                } else if !READ_VERBS.contains(&k.verb.as_str()) {
                    Class::Mutation
                } else if !k.subresource.is_empty() {
                    Class::SubresourceRead
                } else {
                    Class::Read
                };
                Line {
                    event: e,
                    command: r.command.clone(),
                    class,
                    denied: None,
                }
            }
            Some(Payload::Denied(d)) => Line {
                event: e,
                command: d.command.clone(),
                class: Class::Mutation,
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
        let top = group.iter().map(|l| l.class).max();
        let mut printed: Vec<String> = Vec::new();
        for l in &group {
            if !verbose && Some(l.class) != top {
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
