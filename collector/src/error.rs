//! Collector errors.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot read {path}")]
    ReadFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("clickhouse: {context}")]
    ClickHouse {
        context: String,
        #[source]
        source: clickhouse::error::Error,
    },
    #[error("cannot bind {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("grpc server")]
    Serve(#[source] tonic::transport::Error),
    #[error("dead-letter file {path}")]
    DeadLetter {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl CollectorError {
    pub(crate) fn clickhouse(
        context: impl Into<String>,
    ) -> impl FnOnce(clickhouse::error::Error) -> Self {
        let context = context.into();
        move |source| Self::ClickHouse { context, source }
    }
}
