//! The ordered command transcript of one session: one `> kubectl …` line per command, with
//! discovery noise folded away and failures marked. Streams read as typed
//! (`kubectl exec -it checkout-7b9 -n payments -c app -- sh`), with their exit code, copy or
//! port-forward totals.
use crate::error::CliError;
use crate::kubectl_line::stream_command_with_copy;
use crate::sessions::{Filter, actor, summarize};
use crate::time::{human_duration, rfc3339};
use gatehouse_proto::v1::{Event, ResponseFinished, StreamEnded, StreamOpened, event::Payload};
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
    /// What an exec/attach/cp/port-forward stream came to.
    stream: Option<String>,
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
    let opened: HashMap<&str, &StreamOpened> = evs
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::StreamOpened(o)) => Some((o.request_event_id.as_str(), o)),
            _ => None,
        })
        .collect();
    let ended: HashMap<&str, &StreamEnded> = evs
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::StreamEnded(x)) => Some((x.request_event_id.as_str(), x)),
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
                let (command, stream) = match opened.get(e.event_id.as_str()) {
                    Some(o) => {
                        let end = ended.get(e.event_id.as_str()).copied();
                        (
                            stream_command_with_copy(o, end.and_then(|x| x.copy.as_ref())),
                            Some(stream_outcome(o, end)),
                        )
                    }
                    None => (r.command.clone(), None),
                };
                Line {
                    event: e,
                    command,
                    class,
                    denied: None,
                    stream,
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
                stream: None,
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
            } else if let Some(s) = &l.stream {
                if !s.is_empty() {
                    text.push_str(&format!("   # {s}"));
                }
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

/// The end of a stream in a few words: a failed exit code, an abort, a copy's size and hash,
/// port-forward totals. Empty for a command that exited 0.
fn stream_outcome(o: &StreamOpened, end: Option<&StreamEnded>) -> String {
    let Some(x) = end else {
        return "stream end not recorded".into();
    };
    let mut parts: Vec<String> = Vec::new();
    if let Some(c) = &x.copy {
        let hash: String = c.tar_sha256.iter().map(|b| format!("{b:02x}")).collect();
        let dir = c.direction.replace('_', " ");
        parts.push(format!("{dir}: {} B tar, sha256 {hash}", c.tar_bytes));
    }
    if o.kind == "portforward" {
        let (up, down) = x.connections.iter().fold((0, 0), |(u, d), c| {
            (u + c.bytes_to_container, d + c.bytes_from_container)
        });
        parts.push(format!(
            "{} connection(s), {up} B to pod, {down} B from pod",
            x.connections.len()
        ));
    }
    match x.exit_code {
        Some(0) | None => {}
        Some(c) => parts.push(format!("exit code {c}")),
    }
    if x.aborted {
        parts.push(if x.error.is_empty() {
            "aborted".to_string()
        } else {
            format!("aborted: {}", x.error)
        });
    }
    parts.join(", ")
}
