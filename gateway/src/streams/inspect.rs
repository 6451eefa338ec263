//! Frame-by-frame inspection of one direction of an exec/attach stream, for the checks that can
//! change what is forwarded: stdin line rules (towards the container) and output masking (from
//! it). Both need each frame's own bytes, so the direction's frames are split off one at a time.
use super::demux::{Demux, DemuxError, Fed, Piece, Shared, Transport};
use super::outmask::OutputMasker;
use super::rewrite;
use super::stdin::{LineAssembler, StdinRules, cancel_lines};
use bytes::{BufMut, Bytes, BytesMut};
use gatehouse_policy::MaskSpec;
use gatehouse_proto::v1::{StreamChannel, StreamDirection};
use parking_lot::Mutex;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// A typed line a stdin rule refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub line: String,
    pub rule: String,
    pub message: String,
}

/// What one read's worth of frames turned into.
#[derive(Default)]
pub struct Inspected {
    pub fed: Fed,
    /// Frames forwarded as other bytes, by their range in the input (ascending).
    pub replace: Vec<(Range<usize>, BytesMut)>,
    pub refused: Vec<Refusal>,
    /// Frames for the caller (the notice of a refused line).
    pub notices: Vec<BytesMut>,
    /// The stream must end with this message: a frame could not be rewritten in place.
    pub end: Option<String>,
}

struct Output {
    dlp: bool,
    stdout: OutputMasker,
    stderr: OutputMasker,
    /// The stream recorder's count, updated after each read so `StreamEnded` carries it
    /// however the stream ends.
    count: Arc<AtomicU32>,
}

pub struct Inspector {
    transport: Transport,
    shared: Arc<Mutex<Shared>>,
    stdin: Option<(Arc<StdinRules>, LineAssembler)>,
    output: Option<Output>,
}

impl Inspector {
    /// The inspector towards the container: stdin rules, if any.
    pub fn to_container(
        transport: &Transport,
        shared: &Arc<Mutex<Shared>>,
        rules: Option<Arc<StdinRules>>,
    ) -> Option<Self> {
        Some(Inspector {
            transport: transport.clone(),
            shared: shared.clone(),
            stdin: Some((rules?, LineAssembler::default())),
            output: None,
        })
    }

    /// The inspector from the container: output masking with `spec`'s detectors, if any, its
    /// count of masked values kept in `count`.
    pub fn from_container(
        transport: &Transport,
        shared: &Arc<Mutex<Shared>>,
        spec: Option<Arc<MaskSpec>>,
        count: Arc<AtomicU32>,
    ) -> Option<Self> {
        let spec = spec.filter(|s| s.scanner().is_some())?;
        Some(Inspector {
            transport: transport.clone(),
            shared: shared.clone(),
            stdin: None,
            output: Some(Output {
                dlp: spec.dlp,
                stdout: OutputMasker::new(spec.clone()),
                stderr: OutputMasker::new(spec),
                count,
            }),
        })
    }

    /// Values masked so far.
    pub fn masked(&self) -> u32 {
        self.output
            .as_ref()
            .map_or(0, |o| o.stdout.masked + o.stderr.masked)
    }

    fn publish_count(&self) {
        if let Some(o) = &self.output {
            o.count.store(self.masked(), Ordering::Relaxed);
        }
    }

    /// Splits `buf` into frames like [`Demux::feed`], inspecting each.
    pub fn feed(&mut self, demux: &mut Demux, buf: &[u8]) -> Result<Inspected, DemuxError> {
        let mut r = Inspected::default();
        loop {
            let at = r.fed.used;
            let one = demux.feed_one(&buf[at..])?;
            r.fed.orderly_close |= one.orderly_close;
            if one.used == 0 {
                break;
            }
            let frame = at..at + one.used;
            r.fed.used += one.used;
            r.fed
                .skip
                .extend(one.skip.iter().map(|s| s.start + at..s.end + at));
            let raw = &buf[frame.clone()];
            for mut p in one.pieces {
                match p.channel {
                    StreamChannel::Stdin => self.stdin_piece(&mut p, raw, &frame, &mut r),
                    StreamChannel::Stdout | StreamChannel::Stderr => {
                        self.output_piece(&mut p, raw, &frame, &mut r)
                    }
                    StreamChannel::Error => self.before_status(raw, &frame, &mut r),
                    _ => {}
                }
                // Output held back whole is recorded with what completes it.
                let held = self.output.is_some()
                    && matches!(p.channel, StreamChannel::Stdout | StreamChannel::Stderr)
                    && p.data.is_empty();
                if !held {
                    r.fed.pieces.push(p);
                }
            }
            if r.end.is_some() {
                break;
            }
        }
        self.publish_count();
        Ok(r)
    }

    fn stdin_piece(&mut self, p: &mut Piece, raw: &[u8], frame: &Range<usize>, r: &mut Inspected) {
        let Some((rules, lines)) = self.stdin.as_mut() else {
            return;
        };
        let mut enters = Vec::new();
        for (i, line) in lines.feed(&p.data) {
            if let Some(d) = rules.check(&line) {
                enters.push(i);
                let rule = d.rule.map(|(_, name)| name).unwrap_or_default();
                let notice = format!("\r\ngatehouse: {} (line not run)\r\n", d.message);
                if let Some(n) = rewrite::message(
                    &self.transport,
                    &self.shared,
                    StreamChannel::Stdout,
                    true,
                    notice.as_bytes(),
                ) {
                    r.notices.push(n);
                }
                r.refused.push(Refusal {
                    line,
                    rule,
                    message: d.message,
                });
            }
        }
        if enters.is_empty() {
            return;
        }
        let data = cancel_lines(&p.data, &enters);
        match rewrite::replace(&self.transport, raw, StreamChannel::Stdin, false, &data) {
            Some(b) => {
                r.replace.push((frame.clone(), b));
                p.data = Bytes::from(data);
            }
            None => {
                let m = r.refused.last().map(|x| x.message.clone());
                r.end = Some(format!(
                    "gatehouse: {}; the line could not be cancelled in place, so the stream was ended",
                    m.unwrap_or_default()
                ));
            }
        }
    }

    fn output_piece(&mut self, p: &mut Piece, raw: &[u8], frame: &Range<usize>, r: &mut Inspected) {
        let Some(o) = self.output.as_mut() else {
            return;
        };
        let last = rewrite::ends_stream(&self.transport, raw);
        let m = if p.channel == StreamChannel::Stdout {
            &mut o.stdout
        } else {
            &mut o.stderr
        };
        let data = m.feed(&p.data, last);
        if o.dlp {
            match rewrite::replace(&self.transport, raw, p.channel, true, &data) {
                Some(b) => r.replace.push((frame.clone(), b)),
                None => {
                    r.end = Some(
                        "gatehouse: the command's output could not be masked in place, so the stream was ended"
                            .into(),
                    );
                }
            }
        }
        p.data = Bytes::from(data);
    }

    /// The command's status is coming: what output was held back goes first.
    fn before_status(&mut self, raw: &[u8], frame: &Range<usize>, r: &mut Inspected) {
        let Some(o) = self.output.as_mut() else {
            return;
        };
        let mut live = BytesMut::new();
        for (ch, m) in [
            (StreamChannel::Stdout, &mut o.stdout),
            (StreamChannel::Stderr, &mut o.stderr),
        ] {
            if !m.holding() {
                continue;
            }
            let data = m.feed(b"", true);
            if o.dlp
                && let Some(b) = rewrite::message(&self.transport, &self.shared, ch, true, &data)
            {
                live.put_slice(&b);
            }
            r.fed.pieces.push(output_piece(ch, data));
        }
        if !live.is_empty() {
            live.put_slice(raw);
            r.replace.push((frame.clone(), live));
        }
    }

    /// The connection ended: what output was still held back, for the recording.
    pub fn finish(&mut self) -> Vec<Piece> {
        let Some(o) = self.output.as_mut() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (ch, m) in [
            (StreamChannel::Stdout, &mut o.stdout),
            (StreamChannel::Stderr, &mut o.stderr),
        ] {
            if m.holding() {
                out.push(output_piece(ch, m.feed(b"", true)));
            }
        }
        self.publish_count();
        out
    }
}

fn output_piece(channel: StreamChannel, data: Vec<u8>) -> Piece {
    Piece {
        direction: StreamDirection::FromContainer,
        channel,
        data: Bytes::from(data),
        resize: None,
        port: 0,
        connection: String::new(),
    }
}
