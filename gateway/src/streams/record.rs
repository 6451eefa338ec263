//! Turns channel pieces into journal events (`StreamOpened`, `StreamFrame`, `StreamEnded`) in
//! the exchange's session, and keeps the per-stream totals: exit code, bytes each way,
//! port-forward connections, and the `kubectl cp` tar digest.
use super::channel::{self, Target};
use super::demux::{Piece, Transport};
use crate::transcript::recorder::{RecordError, Recorder};
use gatehouse_proto::v1::{self as pb, Event, StreamChannel, StreamDirection, event::Payload};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

/// Largest payload of one `StreamFrame` event: bigger frames are split, never cut.
pub const MAX_EVENT_DATA: usize = 1 << 20;

#[derive(Default)]
struct Totals {
    to_container: u64,
    from_container: u64,
    frames: u64,
    exit_code: Option<i32>,
    status_message: String,
    connections: BTreeMap<String, pb::PortForwardConnection>,
    copy: Option<(pb::FileCopy, Sha256)>,
}

pub struct StreamRecorder {
    recorder: Arc<Recorder>,
    session_id: String,
    template: Event,
    request_event_id: String,
    started: Instant,
    capture_port_payload: bool,
    totals: Mutex<Totals>,
    /// Output values masked so far, kept by the output inspector (see `masked_counter`).
    masked: Arc<AtomicU32>,
}

impl StreamRecorder {
    pub fn new(
        recorder: Arc<Recorder>,
        session_id: String,
        template: Event,
        request_event_id: String,
        target: &Target,
        capture_port_payload: bool,
    ) -> Self {
        let copy = target.file_copy().map(|(direction, path)| {
            (
                pb::FileCopy {
                    direction: direction.to_string(),
                    path,
                    ..Default::default()
                },
                Sha256::new(),
            )
        });
        StreamRecorder {
            recorder,
            session_id,
            template,
            request_event_id,
            started: Instant::now(),
            capture_port_payload,
            totals: Mutex::new(Totals {
                copy,
                ..Default::default()
            }),
            masked: Arc::default(),
        }
    }

    /// Where the output inspector keeps its count of masked values, for `StreamEnded`.
    pub fn masked_counter(&self) -> Arc<AtomicU32> {
        self.masked.clone()
    }

    fn offset(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    fn event(&self, payload: Payload) -> Event {
        let mut e = self.template.clone();
        e.event_id = String::new();
        e.time_unix_nano = 0;
        e.payload = Some(payload);
        e
    }

    pub async fn opened(&self, target: &Target, transport: &Transport) -> Result<(), RecordError> {
        let e = self.event(Payload::StreamOpened(pb::StreamOpened {
            request_event_id: self.request_event_id.clone(),
            kind: target.kind.as_str().to_string(),
            transport: transport.name().to_string(),
            protocol: transport.protocol(),
            command: target.command.clone(),
            container: target.container.clone(),
            tty: target.tty,
            stdin: target.stdin,
            namespace: target.namespace.clone(),
            pod: target.pod.clone(),
            ports: target.ports.clone(),
            port_payload_capture: self.capture_port_payload,
        }));
        self.recorder.follow(&self.session_id, e, false).await?;
        Ok(())
    }

    /// Records a line typed on stdin that a policy rule refused (it never reached the
    /// container), as a refusal in the stream's session naming the rule.
    pub async fn refused_line(
        &self,
        line: &str,
        rule: &str,
        message: &str,
    ) -> Result<(), RecordError> {
        let e = self.event(Payload::Denied(pb::AuthDenied {
            status_code: 403,
            reason: "Forbidden".into(),
            message: format!("stdin line refused by policy rule {rule:?}: {message}"),
            request: None,
            command: line.to_string(),
        }));
        self.recorder.follow(&self.session_id, e, false).await?;
        Ok(())
    }

    /// Records pieces, merging neighbours of the same channel read together. A merged event's
    /// data stays in the pieces' buffers: the journal writes them where they lie.
    pub async fn pieces(&self, pieces: Vec<Piece>) -> Result<(), RecordError> {
        if pieces.is_empty() {
            return Ok(());
        }
        let offset = self.offset();
        // Each event (its `data` left empty), its data in pieces, and their total length.
        let mut events: Vec<(pb::StreamFrame, Vec<bytes::Bytes>, usize)> = Vec::new();
        {
            let mut t = self.totals.lock();
            for p in pieces {
                self.account(&mut t, &p, offset);
                let omit =
                    matches!(p.channel, StreamChannel::PortData) && !self.capture_port_payload;
                if let Some((last, data, len)) = events.last_mut()
                    && last.channel == p.channel as i32
                    && last.direction == p.direction as i32
                    && last.port == p.port
                    && last.connection_id == p.connection
                    && p.resize.is_none()
                    && last.resize.is_none()
                    && p.channel != StreamChannel::Close
                    && *len + p.data.len() <= MAX_EVENT_DATA
                {
                    last.size += p.data.len() as u64;
                    if !omit {
                        *len += p.data.len();
                        data.push(p.data);
                    }
                    continue;
                }
                for chunk in chunks(&p.data) {
                    let size = chunk.len();
                    let (data, len) = if omit {
                        (Vec::new(), 0)
                    } else {
                        (vec![chunk], size)
                    };
                    let frame = pb::StreamFrame {
                        request_event_id: self.request_event_id.clone(),
                        offset_nanos: offset,
                        direction: p.direction as i32,
                        channel: p.channel as i32,
                        data: bytes::Bytes::new(),
                        size: size as u64,
                        data_omitted: omit,
                        resize: p.resize,
                        port: p.port,
                        connection_id: p.connection.clone(),
                    };
                    events.push((frame, data, len));
                }
            }
            t.frames += events.len() as u64;
        }
        for (frame, data, _) in events {
            let mut e = self.template.clone();
            e.event_id = String::new();
            e.time_unix_nano = 0;
            e.payload = None;
            self.recorder
                .follow_frame(&self.session_id, e, frame, &data)
                .await?;
        }
        Ok(())
    }

    fn account(&self, t: &mut Totals, p: &Piece, offset: u64) {
        let n = p.data.len() as u64;
        let to = p.direction == StreamDirection::ToContainer;
        if p.channel != StreamChannel::Close {
            if to {
                t.to_container += n;
            } else {
                t.from_container += n;
            }
        }
        match p.channel {
            StreamChannel::Error if !to => {
                let (code, message) = channel::parse_status(&p.data);
                if code.is_some() {
                    t.exit_code = code;
                }
                t.status_message = message;
            }
            StreamChannel::Stdin | StreamChannel::Stdout => {
                if let Some((copy, hash)) = t.copy.as_mut() {
                    let wanted = if copy.direction == "to_container" {
                        StreamChannel::Stdin
                    } else {
                        StreamChannel::Stdout
                    };
                    if p.channel == wanted {
                        hash.update(&p.data);
                        copy.tar_bytes += n;
                    }
                }
            }
            StreamChannel::PortData | StreamChannel::PortError => {
                let c = t
                    .connections
                    .entry(p.connection.clone())
                    .or_insert_with(|| pb::PortForwardConnection {
                        connection_id: p.connection.clone(),
                        port: p.port,
                        start_offset_nanos: offset,
                        ..Default::default()
                    });
                c.end_offset_nanos = offset;
                if p.channel == StreamChannel::PortError {
                    c.error.push_str(&String::from_utf8_lossy(&p.data));
                } else if to {
                    c.bytes_to_container += n;
                } else {
                    c.bytes_from_container += n;
                }
            }
            _ => {}
        }
    }

    /// Writes `StreamEnded`; `error` is why the gateway ended it, if it did.
    pub async fn ended(&self, aborted: bool, error: Option<String>) -> Result<(), RecordError> {
        let offset = self.offset();
        let ended = {
            let mut t = self.totals.lock();
            let copy = t.copy.take().map(|(mut copy, hash)| {
                copy.tar_sha256 = hash.finalize().to_vec().into();
                copy
            });
            pb::StreamEnded {
                request_event_id: self.request_event_id.clone(),
                offset_nanos: offset,
                exit_code: t.exit_code,
                status_message: std::mem::take(&mut t.status_message),
                aborted,
                error: error.unwrap_or_default(),
                bytes_to_container: t.to_container,
                bytes_from_container: t.from_container,
                frames: t.frames,
                connections: std::mem::take(&mut t.connections).into_values().collect(),
                copy,
                masked_values: self.masked.load(Ordering::Relaxed),
            }
        };
        self.recorder
            .follow(
                &self.session_id,
                self.event(Payload::StreamEnded(ended)),
                false,
            )
            .await?;
        Ok(())
    }

    /// Whether the error channel brought a status (the command's end).
    pub fn saw_status(&self) -> bool {
        let t = self.totals.lock();
        t.exit_code.is_some() || !t.status_message.is_empty()
    }
}

fn chunks(data: &bytes::Bytes) -> Vec<bytes::Bytes> {
    if data.len() <= MAX_EVENT_DATA {
        return vec![data.clone()];
    }
    (0..data.len())
        .step_by(MAX_EVENT_DATA)
        .map(|at| data.slice(at..(at + MAX_EVENT_DATA).min(data.len())))
        .collect()
}
