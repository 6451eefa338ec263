//! The shipping loop. One stream at a time: read from the acknowledged offset, keep up to
//! `window` batches in flight, acknowledge the journal as the collector's acks arrive. Any
//! error restarts the stream from the acknowledged offset after a jittered backoff, so what
//! was in flight is sent again: delivery is at least once and the collector deduplicates by
//! event id. Meanwhile the journal grows up to its own bound, past which the producer fails
//! closed.
use crate::{ShipperConfig, ShipperError, ShipperMetrics};
use futures_util::FutureExt;
use gatehouse_journal::{Journal, Reader};
use gatehouse_proto::v1::ingest_client::IngestClient;
use gatehouse_proto::v1::{JournalRecord, ShipAck, ShipBatch};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

pub struct Shipper {
    journal: Arc<Journal>,
    cfg: ShipperConfig,
    endpoint: Endpoint,
    metrics: ShipperMetrics,
}

struct InFlight {
    seq: u64,
    records: u64,
}

impl Shipper {
    /// Validates the configuration; no I/O.
    pub fn new(journal: Arc<Journal>, cfg: ShipperConfig) -> Result<Self, ShipperError> {
        if cfg.window == 0 || cfg.max_batch_records == 0 || cfg.max_batch_bytes == 0 {
            return Err(ShipperError::Config(
                "window and batch limits must be positive".into(),
            ));
        }
        let mut endpoint = Endpoint::from_shared(cfg.url.clone())
            .map_err(|e| ShipperError::Config(format!("collector URL {:?}: {e}", cfg.url)))?
            .connect_timeout(cfg.timeout)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        let https = cfg.url.starts_with("https://");
        match (&cfg.tls, https) {
            (Some(tls), true) => {
                let mut t =
                    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
                if let Some((cert, key)) = &tls.identity {
                    t = t.identity(Identity::from_pem(cert, key));
                }
                if let Some(d) = &tls.domain_name {
                    t = t.domain_name(d.clone());
                }
                endpoint = endpoint
                    .tls_config(t)
                    .map_err(|e| ShipperError::Config(format!("collector TLS: {e}")))?;
            }
            (None, true) => {
                return Err(ShipperError::Config(
                    "an https collector URL needs the collector's CA".into(),
                ));
            }
            (Some(_), false) => {
                return Err(ShipperError::Config(
                    "TLS settings given but the collector URL is not https".into(),
                ));
            }
            (None, false) => {}
        }
        if let Some(t) = &cfg.token
            && http::HeaderValue::from_str(&format!("Bearer {t}")).is_err()
        {
            return Err(ShipperError::Config(
                "the ingest token is not a valid header value".into(),
            ));
        }
        Ok(Self {
            journal,
            cfg,
            endpoint,
            metrics: ShipperMetrics::default(),
        })
    }

    pub fn metrics(&self) -> &ShipperMetrics {
        &self.metrics
    }

    /// Ships until `shutdown` resolves.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = self.cfg.backoff_min;
        loop {
            let result = tokio::select! {
                r = self.stream(&mut backoff) => r,
                () = &mut shutdown => return,
            };
            self.metrics.connected.set(0);
            let Err(e) = result else { continue };
            self.metrics.retries.inc();
            // Acks refresh the gauges; while the collector is away each retry does, so the
            // backlog shows on /metrics as it grows.
            self.update_gauges();
            let delay = jitter(backoff);
            let level_error = matches!(&e, ShipperError::Status(s) if matches!(s.code(), tonic::Code::Unauthenticated | tonic::Code::InvalidArgument | tonic::Code::PermissionDenied));
            if level_error {
                tracing::error!(error = %chain(&e), retry_in = ?delay, "shipping refused by the collector");
            } else {
                tracing::warn!(error = %chain(&e), retry_in = ?delay, "shipping interrupted");
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = &mut shutdown => return,
            }
            backoff = (backoff * 2).min(self.cfg.backoff_max);
        }
    }

    /// One stream, from the acknowledged offset, until an error.
    async fn stream(&self, backoff: &mut Duration) -> Result<(), ShipperError> {
        let channel: Channel = self
            .endpoint
            .connect()
            .await
            .map_err(ShipperError::Connect)?;
        let mut client = IngestClient::new(channel).max_decoding_message_size(16 << 20);
        let (tx, rx) = mpsc::channel::<ShipBatch>(self.cfg.window);
        let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        if let Some(t) = &self.cfg.token
            && let Ok(v) = format!("Bearer {t}").parse()
        {
            request.metadata_mut().insert("authorization", v);
        }
        let from = self.journal.acked_offset();
        let dir = self.journal.dir().to_path_buf();
        let mut reader = Some(BatchReader {
            reader: Reader::open(&dir, from)?,
            carry: None,
        });
        let response = tokio::time::timeout(self.cfg.timeout, client.ship(request))
            .await
            .map_err(|_| {
                ShipperError::Status(tonic::Status::deadline_exceeded(
                    "no answer from the collector",
                ))
            })?
            .map_err(ShipperError::Status)?;
        let mut acks = response.into_inner();
        self.metrics.connected.set(1);
        tracing::info!(url = %self.cfg.url, from, "shipping to the collector");
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let mut seq = 0u64;
        let mut sent_end = from;
        let mut idle = false;
        loop {
            self.update_gauges();
            if in_flight.len() < self.cfg.window && !idle {
                let (r, records) = read_batch(
                    reader.take(),
                    self.cfg.max_batch_records,
                    self.cfg.max_batch_bytes,
                )
                .await?;
                reader = Some(r);
                if records.is_empty() {
                    idle = true;
                } else {
                    seq += 1;
                    let end = records.last().map_or(sent_end, |r| r.end);
                    let count = records.len() as u64;
                    tx.send(ShipBatch {
                        batch_seq: seq,
                        records,
                    })
                    .await
                    .map_err(|_| ShipperError::Closed)?;
                    self.metrics.batches_sent.inc();
                    in_flight.push_back(InFlight {
                        seq,
                        records: count,
                    });
                    sent_end = end;
                }
                // Take acknowledgements that already arrived without waiting for one.
                if let Some(ack) = acks.message().now_or_never() {
                    self.on_ack(ack, &mut in_flight, sent_end).await?;
                    *backoff = self.cfg.backoff_min;
                }
                continue;
            }
            tokio::select! {
                ack = tokio::time::timeout(self.cfg.timeout, acks.message()), if !in_flight.is_empty() => {
                    let ack = ack.map_err(|_| {
                        ShipperError::Status(tonic::Status::deadline_exceeded("no acknowledgement in time"))
                    })?;
                    self.on_ack(ack, &mut in_flight, sent_end).await?;
                    *backoff = self.cfg.backoff_min;
                }
                () = tokio::time::sleep(self.cfg.poll_interval), if idle => {
                    idle = false;
                }
            }
        }
    }

    async fn on_ack(
        &self,
        ack: Result<Option<ShipAck>, tonic::Status>,
        in_flight: &mut VecDeque<InFlight>,
        sent_end: u64,
    ) -> Result<(), ShipperError> {
        let ack = ack
            .map_err(ShipperError::Status)?
            .ok_or(ShipperError::Closed)?;
        if ack.durable_offset > sent_end {
            return Err(ShipperError::BadAck {
                ack: ack.durable_offset,
                sent: sent_end,
            });
        }
        while in_flight.front().is_some_and(|f| f.seq <= ack.batch_seq) {
            if let Some(f) = in_flight.pop_front() {
                self.metrics.events_acked.inc_by(f.records);
            }
        }
        self.metrics
            .dead_lettered
            .inc_by(u64::from(ack.dead_lettered));
        let journal = self.journal.clone();
        let offset = ack.durable_offset;
        // Segments are deleted here, and only here: after the collector said they are durable.
        tokio::task::spawn_blocking(move || journal.ack(offset))
            .await
            .map_err(|_| ShipperError::Closed)??;
        Ok(())
    }

    fn update_gauges(&self) {
        let acked = i64::try_from(self.journal.acked_offset()).unwrap_or(i64::MAX);
        let unacked = i64::try_from(self.journal.unacked_bytes()).unwrap_or(i64::MAX);
        self.metrics.acked_offset.set(acked);
        self.metrics.unacked_bytes.set(unacked);
    }
}

/// A journal reader and the record it read that did not fit in the last batch.
struct BatchReader {
    reader: Reader,
    carry: Option<JournalRecord>,
}

/// Reads up to the limits from `reader` off the async runtime. A batch stays within
/// `max_bytes` of event bytes unless its first record alone is larger: the collector bounds
/// the message it decodes, so a batch that grew past the bound would be refused whole.
async fn read_batch(
    reader: Option<BatchReader>,
    max_records: usize,
    max_bytes: usize,
) -> Result<(BatchReader, Vec<JournalRecord>), ShipperError> {
    let Some(mut reader) = reader else {
        return Err(ShipperError::Closed);
    };
    let out = tokio::task::spawn_blocking(move || {
        let records = fill_batch(&mut reader, max_records, max_bytes)?;
        Ok::<_, ShipperError>((reader, records))
    })
    .await
    .map_err(|_| ShipperError::Closed)??;
    Ok(out)
}

fn fill_batch(
    from: &mut BatchReader,
    max_records: usize,
    max_bytes: usize,
) -> Result<Vec<JournalRecord>, ShipperError> {
    let mut records = Vec::new();
    let mut bytes = 0usize;
    while records.len() < max_records {
        let next = match from.carry.take() {
            Some(r) => r,
            None => match from.reader.next_record()? {
                Some(r) => JournalRecord {
                    end: r.end,
                    event: r.payload.into(),
                },
                None => break,
            },
        };
        if !records.is_empty() && bytes + next.event.len() > max_bytes {
            from.carry = Some(next);
            break;
        }
        bytes += next.event.len();
        records.push(next);
    }
    Ok(records)
}

/// `d` scaled by a factor in [0.5, 1.5), so many shippers do not retry in lockstep.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let factor = 0.5 + f64::from(nanos % 1000) / 1000.0;
    d.mul_f64(factor)
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use gatehouse_journal::{FsyncPolicy, JournalOptions};

    /// Batches stay within the byte bound (the record that would cross it opens the next
    /// batch), a record larger than the bound travels alone, and nothing is skipped.
    #[test]
    fn batches_never_grow_past_the_byte_bound() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = JournalOptions {
            max_segment_bytes: 1 << 20,
            max_unacked_bytes: 64 << 20,
            fsync: FsyncPolicy::Never,
        };
        let (j, _) = Journal::open(tmp.path(), opts).unwrap();
        let sizes = [300usize, 300, 300, 2500, 100, 700, 10, 10, 990];
        for (i, n) in sizes.iter().enumerate() {
            j.append(&vec![i as u8; *n]).unwrap();
        }
        j.sync().unwrap();
        let mut from = BatchReader {
            reader: Reader::open(tmp.path(), 0).unwrap(),
            carry: None,
        };
        let mut batches = Vec::new();
        loop {
            let b = fill_batch(&mut from, 100, 1000).unwrap();
            if b.is_empty() {
                break;
            }
            batches.push(b.iter().map(|r| r.event.len()).collect::<Vec<_>>());
        }
        assert_eq!(
            batches,
            vec![
                vec![300, 300, 300],
                vec![2500],
                vec![100, 700, 10, 10],
                vec![990]
            ]
        );
        // The record count bound still holds.
        let mut from = BatchReader {
            reader: Reader::open(tmp.path(), 0).unwrap(),
            carry: None,
        };
        assert_eq!(fill_batch(&mut from, 2, 1 << 20).unwrap().len(), 2);
    }
}
