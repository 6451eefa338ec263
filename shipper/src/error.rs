//! Shipper errors.
#[derive(Debug, thiserror::Error)]
pub enum ShipperError {
    #[error("invalid shipper configuration: {0}")]
    Config(String),
    #[error("cannot connect to the collector")]
    Connect(#[source] tonic::transport::Error),
    #[error("the collector answered {}: {}", .0.code(), .0.message())]
    Status(tonic::Status),
    #[error("the collector closed the stream")]
    Closed,
    #[error("journal")]
    Journal(#[from] gatehouse_journal::JournalError),
    #[error("the collector acknowledged offset {ack}, beyond what was sent ({sent})")]
    BadAck { ack: u64, sent: u64 },
}
