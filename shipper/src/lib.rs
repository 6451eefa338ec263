//! The shipper: reads a journal from its acknowledged offset, sends batches to the collector's
//! gRPC `Ingest` stream, and acknowledges (deleting segments) only what the collector made durable.
//! Used by the gateway and the node agent alike.
mod config;
mod error;
mod metrics;
mod run;

pub use config::{ShipperConfig, TlsConfig};
pub use error::ShipperError;
pub use metrics::ShipperMetrics;
pub use run::Shipper;
