//! Where events come from: the local journal (in journal order) or a collector's Query API
//! (`--collector`). Every command loads through here, so both sources print the same output.
use crate::args::Source;
use crate::collector::Remote;
use crate::error::{CliError, chain};
use crate::sessions::{self, Filter, SessionSummary};
use gatehouse_journal::Reader;
use gatehouse_proto::v1::Event;
use prost::Message;

/// The session whose id is `prefix` or starts with it: its full id and its events (at least
/// those of that session). `progress` draws a progress bar on a terminal while fetching.
pub fn session(
    source: &Source,
    prefix: &str,
    progress: bool,
) -> Result<(String, Vec<Event>), CliError> {
    let Some(url) = &source.collector else {
        let events = load_journal(source)?;
        let id = sessions::resolve(&events, prefix)?;
        let events = events.into_iter().filter(|e| e.session_id == id).collect();
        return Ok((id, events));
    };
    Remote::connect(url, source)?
        .session(prefix, progress)?
        .ok_or_else(|| CliError::NoSession(prefix.to_string()))
}

/// Session summaries matching `filter`, oldest first.
pub fn list(source: &Source, filter: &Filter) -> Result<Vec<SessionSummary>, CliError> {
    match &source.collector {
        Some(url) => Ok(Remote::connect(url, source)?.list(filter)?),
        None => Ok(sessions::summarize(&load_journal(source)?, filter)),
    }
}

fn load_journal(source: &Source) -> Result<Vec<Event>, CliError> {
    if !source.journal.is_dir() {
        return Err(CliError::NoJournal(source.journal.display().to_string()));
    }
    let records = Reader::read_all(&source.journal).map_err(|e| CliError::Journal(chain(&e)))?;
    records
        .into_iter()
        .map(|r| {
            Event::decode(r.payload.as_slice()).map_err(|e| CliError::Decode {
                offset: r.offset,
                reason: e.to_string(),
            })
        })
        .collect()
}
