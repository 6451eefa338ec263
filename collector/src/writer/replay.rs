//! `collector dead-letter replay FILE`: re-inserts the events of a dead-letter file once the cause
//! is fixed. Events go in chunks, and a chunk ClickHouse still refuses is retried event by event,
//! so one bad row keeps no other out; those still refused are written to `FILE.refused`. The file
//! itself is never changed, and replaying twice stores nothing twice (event ids fold in the
//! ReplacingMergeTree, and reads use `LIMIT 1 BY event_id`).
use crate::clickhouse_client::is_data_error;
use crate::error::CollectorError;
use crate::rows::{self, AlertRow, EventRow, Row};
use base64::Engine;
use std::io::{BufRead, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const CHUNK: usize = 1_000;

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    pub replayed: u64,
    pub refused: u64,
    /// Where the refused events are, when there are any.
    pub refused_file: Option<PathBuf>,
}

struct Entry {
    line: String,
    row: Row,
}

/// Replays `file` into the database of `client`.
pub async fn replay(
    client: &clickhouse::Client,
    file: &Path,
) -> Result<ReplayReport, CollectorError> {
    let read_err = |source| CollectorError::ReadFile {
        path: file.display().to_string(),
        source,
    };
    let reader = std::io::BufReader::new(std::fs::File::open(file).map_err(read_err)?);
    let mut refused: Vec<String> = Vec::new();
    let mut chunk: Vec<Entry> = Vec::new();
    let mut replayed = 0u64;
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(read_err)?;
        if line.trim().is_empty() {
            continue;
        }
        match decode(i, &line) {
            Ok(row) => chunk.push(Entry { line, row }),
            Err(reason) => refused.push(annotate(&line, &reason)),
        }
        if chunk.len() == CHUNK {
            replayed += flush(client, std::mem::take(&mut chunk), &mut refused).await?;
        }
    }
    replayed += flush(client, chunk, &mut refused).await?;
    let refused_file = if refused.is_empty() {
        None
    } else {
        let mut path = file.as_os_str().to_owned();
        path.push(".refused");
        let path = PathBuf::from(path);
        let write_err = |source| CollectorError::DeadLetter {
            path: path.display().to_string(),
            source,
        };
        // The refused events are recorded data like the dead letters: owner-only.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(write_err)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(write_err)?;
        for l in &refused {
            writeln!(f, "{l}").map_err(write_err)?;
        }
        f.sync_data().map_err(write_err)?;
        Some(path)
    };
    Ok(ReplayReport {
        replayed,
        refused: refused.len() as u64,
        refused_file,
    })
}

/// The row of dead-letter line `i`, or why it cannot be one.
fn decode(i: usize, line: &str) -> Result<Row, String> {
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("line {}: not JSON: {e}", i + 1))?;
    let b64 = v["event"]
        .as_str()
        .ok_or_else(|| format!("line {}: no \"event\"", i + 1))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("line {}: event is not base64: {e}", i + 1))?;
    rows::convert(i, &bytes::Bytes::from(bytes)).map_err(|e| e.to_string())
}

/// The line with the latest refusal reason, keeping the event as it was.
fn annotate(line: &str, reason: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(line) {
        Ok(mut v) if v.is_object() => {
            v["replay_refused"] = serde_json::Value::String(reason.to_string());
            v.to_string()
        }
        _ => line.to_string(),
    }
}

/// Inserts `chunk`; on a data error, each entry alone. Returns the entries stored.
async fn flush(
    client: &clickhouse::Client,
    chunk: Vec<Entry>,
    refused: &mut Vec<String>,
) -> Result<u64, CollectorError> {
    if chunk.is_empty() {
        return Ok(0);
    }
    match insert(client, &chunk).await {
        Ok(()) => return Ok(chunk.len() as u64),
        Err(e) if !is_data_error(&e) => {
            return Err(CollectorError::ClickHouse {
                context: "replaying the dead-letter file".into(),
                source: e,
            });
        }
        Err(_) => {}
    }
    let mut stored = 0;
    for entry in chunk {
        match insert(client, std::slice::from_ref(&entry)).await {
            Ok(()) => stored += 1,
            Err(e) if is_data_error(&e) => refused.push(annotate(&entry.line, &e.to_string())),
            Err(e) => {
                return Err(CollectorError::ClickHouse {
                    context: "replaying the dead-letter file".into(),
                    source: e,
                });
            }
        }
    }
    Ok(stored)
}

async fn insert(
    client: &clickhouse::Client,
    entries: &[Entry],
) -> Result<(), clickhouse::error::Error> {
    let events: Vec<&EventRow> = entries
        .iter()
        .filter_map(|e| match &e.row {
            Row::Event(r) => Some(r),
            Row::Alert(_) => None,
        })
        .collect();
    let alerts: Vec<&AlertRow> = entries
        .iter()
        .filter_map(|e| match &e.row {
            Row::Alert(r) => Some(r),
            Row::Event(_) => None,
        })
        .collect();
    if !events.is_empty() {
        let mut insert = client.insert::<EventRow>("events").await?;
        for row in events {
            insert.write(row).await?;
        }
        insert.end().await?;
    }
    if !alerts.is_empty() {
        let mut insert = client.insert::<AlertRow>("alerts").await?;
        for row in alerts {
            insert.write(row).await?;
        }
        insert.end().await?;
    }
    Ok(())
}
