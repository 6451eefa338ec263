//! asciicast v2 export of a session's terminal streams (exec/attach): a header line, then one
//! `[seconds, code, data]` line per output ("o"), input ("i") and resize ("r") event.
use crate::error::CliError;
use crate::replay::timeline::{self, What};
use serde_json::{Value, json};
use std::io::Write;

/// Writes `session` as asciicast v2. Stream starts and ends are not asciicast events; the
/// kubectl command lines go into the title.
pub fn write(
    events: &[gatehouse_proto::v1::Event],
    session: &str,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let t = timeline::build(events, session)
        .ok_or_else(|| CliError::NothingToReplay(session.to_string()))?;
    // Without a recorded size (no terminal, or kubectl never sent one) 80x24 is what a
    // terminal defaults to.
    let (width, height) = t.first_size.unwrap_or((80, 24));
    let commands: Vec<&str> = t
        .cues
        .iter()
        .filter_map(|c| match &c.what {
            What::Start { command, .. } => Some(command.as_str()),
            _ => None,
        })
        .collect();
    let header = json!({
        "version": 2,
        "width": width,
        "height": height,
        "timestamp": t.start_unix_nanos.div_euclid(1_000_000_000),
        "title": commands.join("; "),
        // Container runtimes set TERM=xterm for a tty; the recording carries no shell name.
        "env": {"TERM": "xterm"},
    });
    writeln!(out, "{header}")?;
    let mut output = Utf8Stream::default();
    let mut input = Utf8Stream::default();
    for cue in &t.cues {
        let secs = Value::from(cue.at as f64 / 1e9);
        let line = match &cue.what {
            What::Output(data) => json!([secs, "o", output.push(data)]),
            What::Input(data) => json!([secs, "i", input.push(data)]),
            What::Resize { width, height } => json!([secs, "r", format!("{width}x{height}")]),
            What::Start { .. } | What::End { .. } => continue,
        };
        // A frame that ends mid-character gives its bytes to the next one.
        if line[2].as_str().is_some_and(str::is_empty) {
            continue;
        }
        writeln!(out, "{line}")?;
    }
    for (code, rest) in [("o", output.finish()), ("i", input.finish())] {
        if !rest.is_empty() {
            let secs = t.cues.last().map_or(0.0, |c| c.at as f64 / 1e9);
            writeln!(out, "{}", json!([secs, code, rest]))?;
        }
    }
    Ok(())
}

/// Decodes a byte stream split at arbitrary points into UTF-8 text: a character cut across
/// frames is joined, and invalid bytes become U+FFFD (asciicast data is JSON text).
#[derive(Default)]
struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    fn push(&mut self, data: &[u8]) -> String {
        self.pending.extend_from_slice(data);
        let mut text = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    text.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    text.push_str(&String::from_utf8_lossy(valid));
                    match e.error_len() {
                        Some(n) => {
                            text.push('\u{FFFD}');
                            rest = &after[n..];
                        }
                        // Incomplete at the end: wait for the next frame.
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        text
    }

    fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        String::from_utf8_lossy(&rest).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_split_across_frames_are_joined() {
        let mut s = Utf8Stream::default();
        let euro = "€".as_bytes();
        assert_eq!(s.push(&[b'a', euro[0]]), "a");
        assert_eq!(s.push(&euro[1..2]), "");
        assert_eq!(s.push(&[euro[2], b'b']), "€b");
        assert_eq!(s.push(&[0xff, b'c']), "\u{FFFD}c");
        assert_eq!(s.push(&[0xe2]), "");
        assert_eq!(s.finish(), "\u{FFFD}");
    }
}
