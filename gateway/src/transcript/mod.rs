//! The transcript model: parsing requests, reconstructing kubectl commands, grouping requests
//! into sessions, recording events into the journal, and signing session digests.
pub mod command;
pub mod digest;
pub mod frame_encoding;
pub mod mask;
pub mod recorder;
pub mod request_info;
pub mod session;
pub mod signing;
