//! Reads a request body up to the capture cap before forwarding, so what is recorded is what
//! goes upstream; anything past the cap streams on without being held.
use crate::body::{BoxBody, BoxError};
use bytes::{Bytes, BytesMut};
use gatehouse_proto::v1::Body as BodyRecord;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};

pub struct Prefix {
    /// Bytes read so far (at most cap plus one frame).
    head: Bytes,
    cap: usize,
    /// The unread rest, if the body did not end within the cap.
    rest: Option<Incoming>,
}

pub async fn read_prefix(mut body: Incoming, cap: usize) -> Result<Prefix, hyper::Error> {
    let mut head = BytesMut::new();
    while head.len() <= cap {
        match body.frame().await {
            Some(frame) => {
                if let Ok(data) = frame?.into_data() {
                    head.extend_from_slice(&data);
                }
            }
            None => {
                return Ok(Prefix {
                    head: head.freeze(),
                    cap,
                    rest: None,
                });
            }
        }
    }
    Ok(Prefix {
        head: head.freeze(),
        cap,
        rest: Some(body),
    })
}

impl Prefix {
    /// The captured part (at most `cap` bytes).
    pub fn captured(&self) -> &[u8] {
        &self.head[..self.head.len().min(self.cap)]
    }

    /// The body record for the request event. `total_bytes` counts what was read before
    /// forwarding; the final count is in the response event's `request_bytes`.
    pub fn record(&self, content_type: &str, content_encoding: &str) -> BodyRecord {
        BodyRecord {
            data: self.head.slice(..self.head.len().min(self.cap)),
            total_bytes: self.head.len() as u64,
            truncated: self.rest.is_some() || self.head.len() > self.cap,
            content_type: content_type.to_string(),
            content_encoding: content_encoding.to_string(),
            masked_values: 0,
        }
    }

    /// The whole body again: the bytes already read, then the rest as it streams.
    pub fn into_body(self) -> BoxBody {
        let head = self.head;
        match self.rest {
            None if head.is_empty() => crate::body::empty(),
            None => crate::body::full(head),
            Some(rest) => {
                let first =
                    futures_util::stream::once(async move { Ok::<_, BoxError>(Frame::data(head)) });
                let rest = rest.map_err(BoxError::from).into_data_stream();
                let rest = futures_util::StreamExt::map(rest, |r| r.map(Frame::data));
                BodyExt::boxed(StreamBody::new(futures_util::StreamExt::chain(first, rest)))
            }
        }
    }
}
