//! The terminal timeline of a session: every exec/attach stream's output, input and resizes
//! on one clock, shared by `replay` and the asciicast export.
use crate::kubectl_line;
use gatehouse_proto::v1::{Event, StreamChannel, StreamDirection, StreamOpened, event::Payload};
use std::collections::HashMap;

/// What happens at one instant of the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// A stream began; the kubectl command line that opened it.
    Start { command: String, tty: bool },
    /// Bytes the container wrote (stdout or stderr, as the terminal showed them).
    Output(Vec<u8>),
    /// Bytes the caller typed or piped (stdin).
    Input(Vec<u8>),
    /// The caller's terminal changed size.
    Resize { width: u32, height: u32 },
    /// The stream ended: the exit code when the error channel carried one.
    End {
        exit_code: Option<i32>,
        aborted: bool,
    },
}

/// One instant: `at` is nanoseconds since the first stream of the session opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cue {
    pub at: u64,
    pub what: What,
}

/// The timeline plus what a player needs before the first cue.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    pub cues: Vec<Cue>,
    /// Wall-clock time of the first stream's start (Unix nanoseconds).
    pub start_unix_nanos: i64,
    /// The first recorded terminal size, if any stream recorded one.
    pub first_size: Option<(u32, u32)>,
}

/// Builds the timeline of `session`'s exec and attach streams (port-forward carries no
/// terminal). Streams that overlap interleave on the shared clock. `None` when the session
/// has no such stream.
pub fn build(events: &[Event], session: &str) -> Option<Timeline> {
    let mut evs: Vec<&Event> = events.iter().filter(|e| e.session_id == session).collect();
    evs.sort_by_key(|e| e.seq);
    // Each stream's wall-clock start; frame offsets are relative to it (monotonic clock).
    let mut starts: HashMap<&str, i64> = HashMap::new();
    let mut opened: Vec<(&Event, &StreamOpened)> = Vec::new();
    for e in &evs {
        if let Some(Payload::StreamOpened(o)) = &e.payload
            && (o.kind == "exec" || o.kind == "attach")
        {
            starts.insert(o.request_event_id.as_str(), e.time_unix_nano);
            opened.push((e, o));
        }
    }
    let origin = opened.iter().map(|(e, _)| e.time_unix_nano).min()?;
    let at = |request: &str, offset: u64| -> Option<u64> {
        let start = *starts.get(request)?;
        let base = u64::try_from(start.saturating_sub(origin)).unwrap_or(0);
        Some(base.saturating_add(offset))
    };
    let mut cues = Vec::new();
    for (e, o) in &opened {
        cues.push(Cue {
            at: u64::try_from(e.time_unix_nano.saturating_sub(origin)).unwrap_or(0),
            what: What::Start {
                command: kubectl_line::stream_command(o),
                tty: o.tty,
            },
        });
    }
    for e in &evs {
        match &e.payload {
            Some(Payload::StreamFrame(f)) => {
                let Some(t) = at(&f.request_event_id, f.offset_nanos) else {
                    continue;
                };
                let from = f.direction == StreamDirection::FromContainer as i32;
                let what = match StreamChannel::try_from(f.channel) {
                    Ok(StreamChannel::Stdout | StreamChannel::Stderr) if from => {
                        What::Output(f.data.to_vec())
                    }
                    Ok(StreamChannel::Stdin) if !from => What::Input(f.data.to_vec()),
                    Ok(StreamChannel::Resize) => match f.resize {
                        Some(r) => What::Resize {
                            width: r.width,
                            height: r.height,
                        },
                        None => continue,
                    },
                    _ => continue,
                };
                cues.push(Cue { at: t, what });
            }
            Some(Payload::StreamEnded(x)) => {
                let Some(t) = at(&x.request_event_id, x.offset_nanos) else {
                    continue;
                };
                cues.push(Cue {
                    at: t,
                    what: What::End {
                        exit_code: x.exit_code,
                        aborted: x.aborted,
                    },
                });
            }
            _ => {}
        }
    }
    // Stable: frames recorded at the same offset keep their journal order.
    cues.sort_by_key(|c| c.at);
    let first_size = cues.iter().find_map(|c| match c.what {
        What::Resize { width, height } => Some((width, height)),
        _ => None,
    });
    Some(Timeline {
        cues,
        start_unix_nanos: origin,
        first_size,
    })
}
