//! The transcript model: parsing requests, reconstructing kubectl commands, grouping requests
//! into sessions, and recording events into the journal.
pub mod command;
pub mod mask;
pub mod recorder;
pub mod request_info;
pub mod session;
