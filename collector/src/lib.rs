//! The collector: a tonic gRPC service that ingests transcripts and alerts, stores them in
//! ClickHouse, answers queries, replays and exports sessions, and routes alerts.
