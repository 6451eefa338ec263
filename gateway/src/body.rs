//! Body and error types shared by the gateway's server and upstream sides.
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody as HttpBoxBody};

/// Any error a streamed body can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streamed body of any origin: the caller's request, the upstream's response, or our own.
pub type BoxBody = HttpBoxBody<Bytes, BoxError>;

/// A body holding `bytes` in full.
pub fn full(bytes: impl Into<Bytes>) -> BoxBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> BoxBody {
    Empty::new().map_err(|never| match never {}).boxed()
}
