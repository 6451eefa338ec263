//! A durable, append-only journal of length-prefixed, CRC-32C-checksummed records in segment
//! files, with a persisted acknowledged offset so a shipper can resume and delete what it shipped.
//! Crash recovery truncates a torn tail and keeps every whole record before it.
mod ack;
mod error;
mod reader;
mod record;
mod segment;
mod writer;

pub use error::JournalError;
pub use reader::{Reader, Record};
pub use record::{HEADER_LEN, MAX_RECORD_LEN};
pub use writer::{Appended, FsyncPolicy, Journal, JournalOptions, Recovery};
