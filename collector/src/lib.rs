//! The collector: a tonic gRPC service that ingests transcripts and alerts, stores them in
//! ClickHouse, answers queries, replays and exports sessions, and audits every read.
pub mod alerts;
pub mod auth;
pub mod clickhouse_client;
pub mod config;
pub mod error;
pub mod http_api;
pub mod ingest;
pub mod metrics;
pub mod ops;
pub mod query;
pub mod rows;
pub mod schema;
pub mod server;
pub mod writer;

pub use config::{Cli, Command, MigrateArgs, ServeArgs};
pub use error::CollectorError;
