//! DLP mode: the response the caller sees is masked too, frame by frame, by the same masker the
//! transcript uses; the transcript then stores the already-masked bytes and this count.
use crate::body::{BoxBody, BoxError};
use crate::proxy::capture::Finish;
use crate::transcript::mask::{MaskPlan, Masker};
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};

/// Sets up masking of one response: the capture's masker, and in DLP mode the live body's.
/// `Err` is the message for a DLP response that cannot be masked (it is not passed on).
pub fn mask_response(
    plan: &MaskPlan,
    headers: &mut http::HeaderMap,
    body: BoxBody,
    finish: &mut Finish,
) -> Result<BoxBody, String> {
    if !plan.dlp() {
        finish.mask(plan);
        return Ok(body);
    }
    match plan.masker(&finish.content_type, &finish.content_encoding) {
        Some(m) => {
            let count = Arc::new(AtomicU32::new(0));
            finish.masker = Some(Masker::premasked(count.clone()));
            headers.remove(http::header::CONTENT_LENGTH);
            Ok(DlpBody::new(body, m, count).boxed())
        }
        None => Err(format!(
            "gatehouse: this response must be masked (DLP) but its type {:?}{} cannot be read",
            finish.content_type,
            if finish.content_encoding.is_empty() {
                String::new()
            } else {
                format!(" ({})", finish.content_encoding)
            }
        )),
    }
}

pin_project_lite::pin_project! {
    pub struct DlpBody<B> {
        #[pin]
        inner: B,
        masker: Masker,
        // Values masked so far, shared with the transcript's capture.
        count: Arc<AtomicU32>,
        done: bool,
    }
}

impl<B> DlpBody<B> {
    pub fn new(inner: B, masker: Masker, count: Arc<AtomicU32>) -> Self {
        Self {
            inner,
            masker,
            count,
            done: false,
        }
    }
}

impl<B> Body for DlpBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            if *this.done {
                return Poll::Ready(None);
            }
            match this.inner.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        let mut out = BytesMut::with_capacity(data.len() + 64);
                        this.masker.feed(&data, &mut out);
                        this.count.store(this.masker.masked(), Ordering::Relaxed);
                        // A held-back partial line yields nothing yet: poll on.
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
                        }
                    }
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => {
                    *this.done = true;
                    let mut out = BytesMut::new();
                    this.masker.finish(&mut out);
                    this.count.store(this.masker.masked(), Ordering::Relaxed);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
                    }
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        // Masking changes the length.
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn masks_the_live_stream_and_counts() -> anyhow::Result<()> {
        let spec: gatehouse_policy::MaskSpec = serde_yaml::from_str("{dlp: true}")?;
        let chunks: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = [
            "first AKIAIOSF",
            "ODNN7EXAMPLE line\nsecond\nlast AKIAIOSFODNN7EXAMPLE",
        ]
        .into_iter()
        .map(|c| Ok(Frame::data(Bytes::from(c))))
        .collect();
        let inner = http_body_util::StreamBody::new(futures_util::stream::iter(chunks));
        let count = Arc::new(AtomicU32::new(0));
        let body = DlpBody::new(inner, Masker::text(Arc::new(spec)), count.clone());
        let out = body
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!(e))?
            .to_bytes();
        let out = String::from_utf8_lossy(&out);
        assert!(!out.contains("AKIA"), "{out}");
        assert_eq!(out.lines().count(), 3, "{out}");
        assert!(out.starts_with("first ***") && out.contains("\nsecond\nlast ***"));
        assert_eq!(count.load(Ordering::Relaxed), 2);
        Ok(())
    }
}
