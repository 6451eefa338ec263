//! Loads events from the local journal, in journal order.
use crate::args::Source;
use crate::error::{CliError, chain};
use gatehouse_journal::Reader;
use gatehouse_proto::v1::Event;
use prost::Message;

pub fn load(source: &Source) -> Result<Vec<Event>, CliError> {
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
