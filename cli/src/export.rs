//! Session export as JSON or NDJSON (bodies are UTF-8 text when they are text, else base64),
//! or as asciicast v2 (`asciicast.rs`).
use crate::args::ExportFormat;
use crate::error::CliError;
use crate::sessions::{Filter, summarize};
use crate::time::rfc3339;
use gatehouse_proto::json::event_json;
use gatehouse_proto::v1::Event;
use serde_json::json;
use std::io::Write;

pub fn write(
    events: &[Event],
    session: &str,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let mut evs: Vec<&Event> = events.iter().filter(|e| e.session_id == session).collect();
    evs.sort_by_key(|e| e.seq);
    match format {
        ExportFormat::Asciicast => return crate::asciicast::write(events, session, out),
        ExportFormat::Ndjson => {
            for e in evs {
                writeln!(out, "{}", event_json(e))?;
            }
        }
        ExportFormat::Json => {
            let s = summarize(events, &Filter::default())
                .into_iter()
                .find(|s| s.id == session)
                .ok_or_else(|| CliError::NoSession(session.to_string()))?;
            let doc = json!({
                "session_id": s.id,
                "actor": s.actor,
                "start": rfc3339(s.start_nanos),
                "end": rfc3339(s.end_nanos),
                "events": evs.iter().map(|e| event_json(e)).collect::<Vec<_>>(),
            });
            let text = serde_json::to_string_pretty(&doc).map_err(std::io::Error::other)?;
            writeln!(out, "{text}")?;
        }
    }
    Ok(())
}

/// Creates (or truncates) an export file readable by its owner only: transcripts hold request
/// bodies and terminal sessions.
pub fn create_private(
    path: &std::path::Path,
) -> Result<std::io::BufWriter<std::fs::File>, CliError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .mode(0o600)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    // An existing file keeps its mode on open: tighten it too.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(std::io::BufWriter::new(file))
}
