//! Stamps events (id, session, sequence, time, hash chain) and appends them to the journal.
//! Stamping and appending happen under one lock, so each session's events reach the journal in
//! sequence order and the chain never forks.
use super::session::Sessions;
use crate::metrics::Metrics;
use bytes::Bytes;
use gatehouse_journal::{Journal, JournalError};
use gatehouse_proto::v1::{Event, Producer, StreamFrame};
use parking_lot::Mutex;
use prost::Message;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("the journal refused the event")]
    Journal(#[from] JournalError),
    #[error("session {0} is unknown")]
    UnknownSession(String),
}

/// Where a recorded event landed.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub event_id: String,
    pub session_id: String,
    pub seq: u64,
}

pub struct Recorder {
    journal: Arc<Journal>,
    sessions: Mutex<Sessions>,
    producer: Producer,
    metrics: Arc<Metrics>,
}

impl Recorder {
    pub fn new(
        journal: Arc<Journal>,
        idle_gap: Duration,
        producer: Producer,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            journal,
            sessions: Mutex::new(Sessions::new(idle_gap)),
            producer,
            metrics,
        }
    }

    /// Keeps idle sessions until a `Digester` has written their closing digest.
    pub fn with_digests(mut self) -> Self {
        self.sessions.get_mut().set_sealing(true);
        self
    }

    /// The digests owed now (see `Sessions::digests_due`).
    pub fn digests_due(&self, shutting_down: bool) -> Vec<super::session::DigestDue> {
        self.sessions
            .lock()
            .digests_due(Instant::now(), shutting_down)
    }

    /// Appends a signed digest event to its session and makes it durable. Called by the
    /// digester's task, never on a request path.
    pub fn record_digest(
        &self,
        due: &super::session::DigestDue,
        event: Event,
    ) -> Result<Recorded, RecordError> {
        let id = due.session_id.as_str();
        let (recorded, appended) =
            self.stamp_and_append(event, |sessions, _| sessions.get(id), None, false)?;
        self.journal.make_durable(appended)?;
        self.sessions
            .lock()
            .digest_written(id, due.last_seq, recorded.seq, due.closing);
        Ok(recorded)
    }

    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// Records the first event of an exchange by `who`, opening or continuing their session.
    pub async fn begin(&self, who: &str, event: Event) -> Result<Recorded, RecordError> {
        self.write(
            event,
            |sessions, now| Some(sessions.begin(who, now)),
            None,
            true,
            None,
        )
        .await
    }

    /// Records a later event of an exchange in `session_id`; `last` ends the exchange.
    pub async fn follow(
        &self,
        session_id: &str,
        event: Event,
        last: bool,
    ) -> Result<Recorded, RecordError> {
        let end = last.then_some(session_id);
        self.write(
            event,
            |sessions, _| sessions.get(session_id),
            end,
            false,
            None,
        )
        .await
        .map_err(named(session_id))
    }

    /// Records a `StreamFrame` in `session_id`: `event` has no payload yet and `frame` no data;
    /// `data` is the frame's data in pieces, written to the journal where they lie (see
    /// `frame_encoding`).
    pub async fn follow_frame(
        &self,
        session_id: &str,
        event: Event,
        frame: StreamFrame,
        data: &[Bytes],
    ) -> Result<Recorded, RecordError> {
        self.write(
            event,
            |sessions, _| sessions.get(session_id),
            None,
            false,
            Some((frame, data)),
        )
        .await
        .map_err(named(session_id))
    }

    /// Like `follow`, for contexts that cannot await (a body dropped mid-stream).
    pub fn follow_now(
        &self,
        session_id: &str,
        event: Event,
        last: bool,
    ) -> Result<Recorded, RecordError> {
        let end = last.then_some(session_id);
        let appended =
            self.stamp_and_append(event, |sessions, _| sessions.get(session_id), end, false)?;
        self.journal.make_durable(appended.1)?;
        Ok(appended.0)
    }

    async fn write(
        &self,
        event: Event,
        pick: impl FnOnce(&mut Sessions, Instant) -> Option<&mut super::session::SessionState>,
        end: Option<&str>,
        begins: bool,
        frame: Option<(StreamFrame, &[Bytes])>,
    ) -> Result<Recorded, RecordError> {
        let (recorded, appended) = self.stamp_and_append_as(event, pick, end, begins, frame)?;
        if self.journal.syncs_on_append() {
            // fdatasync can take milliseconds: keep it off the reactor.
            let journal = self.journal.clone();
            tokio::task::block_in_place(move || journal.make_durable(appended))?;
        }
        Ok(recorded)
    }

    fn stamp_and_append(
        &self,
        event: Event,
        pick: impl FnOnce(&mut Sessions, Instant) -> Option<&mut super::session::SessionState>,
        end: Option<&str>,
        begins: bool,
    ) -> Result<(Recorded, gatehouse_journal::Appended), RecordError> {
        self.stamp_and_append_as(event, pick, end, begins, None)
    }

    /// Stamps `event` and appends its encoding; with `frame`, the event is that stream frame
    /// around its data pieces.
    fn stamp_and_append_as(
        &self,
        mut event: Event,
        pick: impl FnOnce(&mut Sessions, Instant) -> Option<&mut super::session::SessionState>,
        end: Option<&str>,
        begins: bool,
        frame: Option<(StreamFrame, &[Bytes])>,
    ) -> Result<(Recorded, gatehouse_journal::Appended), RecordError> {
        let now = Instant::now();
        let mut sessions = self.sessions.lock();
        let state =
            pick(&mut sessions, now).ok_or_else(|| RecordError::UnknownSession(String::new()))?;
        if event.event_id.is_empty() {
            event.event_id = uuid::Uuid::now_v7().to_string();
        }
        if event.time_unix_nano == 0 {
            event.time_unix_nano = unix_nanos();
        }
        event.session_id = state.id.clone();
        event.seq = state.next_seq;
        event.prev_hash = state.prev_hash.clone().into();
        event.producer = Some(self.producer.clone());
        let (whole, split);
        let mut parts: Vec<&[u8]> = Vec::new();
        match frame {
            None => {
                whole = event.encode_to_vec();
                parts.push(&whole);
            }
            Some((frame, data)) => {
                split = super::frame_encoding::split(&event, frame, data);
                parts.reserve(data.len() + 2);
                parts.push(&split.head);
                parts.extend(data.iter().map(|d| &d[..]));
                parts.push(&split.tail);
            }
        }
        let result = self.journal.append_parts_unsynced(&parts);
        let appended = match result {
            Ok(a) => a,
            Err(e) => {
                self.metrics.journal_errors.inc();
                // An exchange that could not begin, or whose last event failed, is over.
                if begins || end.is_some() {
                    let id = event.session_id.clone();
                    sessions.end(&id, now);
                }
                return Err(e.into());
            }
        };
        state.next_seq += 1;
        let mut chain = Sha256::new();
        for part in &parts {
            chain.update(part);
        }
        state.prev_hash = chain.finalize().to_vec();
        if state.next_seq == 2 {
            // Once per session: who it is, for its digest events.
            state.identity = event.identity.clone();
            state.client = event.client.clone();
        }
        let recorded = Recorded {
            event_id: event.event_id,
            session_id: event.session_id,
            seq: event.seq,
        };
        if let Some(id) = end {
            sessions.end(id, now);
        }
        drop(sessions);
        self.metrics
            .journal_appended_bytes
            .inc_by(appended.end - appended.offset);
        self.metrics.journal_appended_events.inc();
        self.metrics
            .journal_unacked_bytes
            .set(self.journal.unacked_bytes() as i64);
        Ok((recorded, appended))
    }

    /// Ends an exchange whose closing event could not be written.
    pub fn abandon(&self, session_id: &str) {
        self.sessions.lock().end(session_id, Instant::now());
    }
}

/// Names the session an `UnknownSession` error is about.
fn named(session_id: &str) -> impl Fn(RecordError) -> RecordError + '_ {
    move |e| match e {
        RecordError::UnknownSession(_) => RecordError::UnknownSession(session_id.to_string()),
        other => other,
    }
}

pub fn unix_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
