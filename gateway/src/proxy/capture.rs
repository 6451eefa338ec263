//! A response body that relays frames untouched while counting bytes and capturing a capped
//! prefix; when the body ends, fails or is dropped, it records the `ResponseFinished` event.
use crate::body::BoxError;
use crate::metrics::Metrics;
use crate::transcript::mask::{self, Masker};
use crate::transcript::recorder::Recorder;
use bytes::{Bytes, BytesMut};
use gatehouse_proto::v1::{Body as BodyRecord, Event, ResponseFinished, event::Payload};
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Everything needed to write the closing event of one exchange.
pub struct Finish {
    pub recorder: Arc<Recorder>,
    pub metrics: Arc<Metrics>,
    /// Event with identity and client filled; the payload is set on finish.
    pub template: Event,
    pub session_id: String,
    pub request_event_id: String,
    pub status: u16,
    pub started: Instant,
    pub latency: Duration,
    pub cap: usize,
    pub captured: BytesMut,
    pub total: u64,
    pub request_bytes: Arc<AtomicU64>,
    pub content_type: String,
    pub content_encoding: String,
    /// Set when the body ended; `None` at drop means the caller went away first.
    pub outcome: Option<Result<(), String>>,
    /// Masks Secret values in what is captured, as it is captured (see `mask`).
    pub masker: Option<Masker>,
    /// Body bytes taken into the capture (before masking).
    pub consumed: usize,
}

impl Finish {
    fn observe(&mut self, data: &Bytes) {
        self.total += data.len() as u64;
        let room = self.cap.saturating_sub(self.consumed);
        let take = &data[..room.min(data.len())];
        self.consumed += take.len();
        match &mut self.masker {
            Some(m) => m.feed(take, &mut self.captured),
            None => self.captured.extend_from_slice(take),
        }
    }

    /// The response is masked in the capture as it is captured. A body the plan cannot read
    /// (protobuf, compressed) is not captured at all.
    pub fn mask(&mut self, plan: &mask::MaskPlan) {
        match plan.masker(&self.content_type, &self.content_encoding) {
            Some(m) => self.masker = Some(m),
            None => self.cap = 0,
        }
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        let error = match self.outcome.take() {
            Some(Ok(())) => String::new(),
            Some(Err(e)) => e,
            None => "the caller closed the connection before the response ended".to_string(),
        };
        self.metrics.response_bytes.inc_by(self.total);
        if let Some(m) = &mut self.masker {
            // Whatever the masker held back (an unfinished line) belongs to the capture too.
            m.finish(&mut self.captured);
        }
        let request_bytes = self.request_bytes.load(Ordering::Relaxed);
        self.metrics.request_bytes.inc_by(request_bytes);
        let mut event = std::mem::take(&mut self.template);
        event.event_id = String::new();
        event.time_unix_nano = 0;
        event.payload = Some(Payload::Response(ResponseFinished {
            request_event_id: std::mem::take(&mut self.request_event_id),
            status_code: u32::from(self.status),
            latency_nanos: self.latency.as_nanos() as u64,
            duration_nanos: self.started.elapsed().as_nanos() as u64,
            request_bytes,
            body: Some(BodyRecord {
                truncated: self.total > self.consumed as u64,
                masked_values: self.masker.as_ref().map_or(0, Masker::masked),
                data: std::mem::take(&mut self.captured).freeze(),
                total_bytes: self.total,
                content_type: std::mem::take(&mut self.content_type),
                content_encoding: std::mem::take(&mut self.content_encoding),
            }),
            error,
        }));
        if let Err(e) = self.recorder.follow_now(&self.session_id, event, true) {
            self.recorder.abandon(&self.session_id);
            tracing::error!(session = %self.session_id, error = %e, "could not record a response");
        }
    }
}

pin_project_lite::pin_project! {
    pub struct CaptureBody<B> {
        #[pin]
        inner: B,
        finish: Option<Finish>,
    }
}

impl<B: Body> CaptureBody<B> {
    pub fn new(inner: B, mut finish: Finish) -> Self {
        // hyper never polls a body that is already at its end (an empty 200, a 204): the
        // exchange is complete now.
        if inner.is_end_stream() {
            finish.outcome = Some(Ok(()));
            drop(finish);
            return Self {
                inner,
                finish: None,
            };
        }
        Self {
            inner,
            finish: Some(finish),
        }
    }
}

impl<B> Body for CaptureBody<B>
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
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(f)) = (frame.data_ref(), this.finish.as_mut()) {
                    f.observe(data);
                }
                // With a known length hyper stops polling once `is_end_stream` says so, so the
                // last frame is where a sized body completes.
                if this.inner.is_end_stream()
                    && let Some(mut f) = this.finish.take()
                {
                    f.outcome = Some(Ok(()));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e: BoxError = e.into();
                if let Some(mut f) = this.finish.take() {
                    f.outcome = Some(Err(format!("upstream body failed: {e}")));
                }
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                if let Some(mut f) = this.finish.take() {
                    f.outcome = Some(Ok(()));
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// Counts the bytes of a request body as they go upstream.
    pub struct CountingBody<B> {
        #[pin]
        inner: B,
        count: Arc<AtomicU64>,
    }
}

impl<B> CountingBody<B> {
    pub fn new(inner: B, count: Arc<AtomicU64>) -> Self {
        Self { inner, count }
    }
}

impl<B> Body for CountingBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.count.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
