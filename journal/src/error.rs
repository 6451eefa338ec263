//! Journal errors.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal i/o on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("journal is full: {unacked} unacknowledged bytes reach the bound of {bound}")]
    Full { unacked: u64, bound: u64 },
    #[error("record of {len} bytes exceeds the maximum of {max}")]
    RecordTooLarge { len: usize, max: usize },
    #[error("journal is failed after an unrecoverable write error; restart to recover")]
    Poisoned,
    #[error("corrupt record at offset {offset} in sealed segment {path}")]
    Corrupt { path: PathBuf, offset: u64 },
    #[error("acknowledged offset {ack} is beyond the journal end {end}")]
    AckBeyondEnd { ack: u64, end: u64 },
}

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> JournalError {
    let path = path.into();
    move |source| JournalError::Io { path, source }
}
