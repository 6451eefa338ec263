//! The ClickHouse writer: one task that gathers shipped batches into inserts of up to
//! `--batch-max-rows` rows / `--batch-max-bytes` bytes / `--batch-period`, whichever comes first,
//! and resolves each batch only once its rows are durable (or dead-lettered). An insert of at
//! least `--batch-min-rows` goes early when nothing more is queued and an insert slot is free:
//! shippers hold back until their batches are acknowledged, so their windows may together be
//! smaller than `--batch-max-rows`, and waiting out the period then only idles them.
//!
//! Connection and server errors are retried with backoff, holding the rows (the bounded queue
//! in front then pushes back on the shippers). ClickHouse refusing the data itself (codes 117,
//! 53, …) is never retried: the insert is split per shipped batch, and the batches that are still
//! refused go to the dead-letter file. We use `Insert` rather than `Inserter` because a failed
//! insert must be re-sent whole, and `Inserter` does not give back the rows of a failed commit;
//! the thresholds are the same ones `Inserter` offers.
mod dead_letter;
pub mod replay;

pub use dead_letter::DeadLetter;

use crate::clickhouse_client::is_data_error;
use crate::metrics::Metrics;
use crate::rows::{AlertRow, EventRow, Row};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Rows of one shipped batch, with the raw events for the dead-letter file.
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<EventRow>,
    pub alerts: Vec<AlertRow>,
    pub raw: Vec<bytes::Bytes>,
}

impl Batch {
    pub fn push(&mut self, row: Row, raw: bytes::Bytes) {
        match row {
            Row::Event(e) => self.events.push(e),
            Row::Alert(a) => self.alerts.push(a),
        }
        self.raw.push(raw);
    }

    fn rows(&self) -> usize {
        self.events.len() + self.alerts.len()
    }

    fn bytes(&self) -> usize {
        self.raw.iter().map(bytes::Bytes::len).sum()
    }
}

/// How a batch ended: stored, or partly or wholly dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub dead_lettered: u32,
}

#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub max_rows: usize,
    /// An insert with this many rows goes without waiting out `period` once nothing more is
    /// queued and an insert slot is free.
    pub min_rows: usize,
    pub max_bytes: usize,
    pub period: Duration,
    pub queue: usize,
    /// Inserts in flight at once: the next batch is gathered and sent while ClickHouse is still
    /// writing the previous one.
    pub concurrency: usize,
}

/// The queue is full: the caller answers RESOURCE_EXHAUSTED.
#[derive(Debug, thiserror::Error)]
#[error("the ClickHouse writer queue is full")]
pub struct QueueFull;

struct Job {
    batch: Batch,
    done: oneshot::Sender<Outcome>,
}

#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Job>,
    metrics: Metrics,
}

impl WriterHandle {
    /// Queues `batch`; the receiver resolves once it is durable. Never waits.
    pub fn submit(&self, batch: Batch) -> Result<oneshot::Receiver<Outcome>, QueueFull> {
        let (done, rx) = oneshot::channel();
        self.tx
            .try_send(Job { batch, done })
            .map_err(|_| QueueFull)?;
        self.metrics.queued_batches.inc();
        Ok(rx)
    }
}

/// Starts the writer task.
pub fn spawn(
    client: clickhouse::Client,
    opts: WriterOptions,
    dead_letter: Arc<DeadLetter>,
    metrics: Metrics,
) -> WriterHandle {
    let (tx, rx) = mpsc::channel(opts.queue);
    let writer = Writer {
        client,
        opts,
        dead_letter,
        metrics: metrics.clone(),
    };
    tokio::spawn(writer.run(rx));
    WriterHandle { tx, metrics }
}

struct Writer {
    client: clickhouse::Client,
    opts: WriterOptions,
    dead_letter: Arc<DeadLetter>,
    metrics: Metrics,
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Job>) {
        let this = Arc::new(self);
        let mut in_flight = tokio::task::JoinSet::new();
        while let Some(first) = rx.recv().await {
            let deadline = Instant::now() + this.opts.period;
            let mut rows = first.batch.rows();
            let mut bytes = first.batch.bytes();
            let mut jobs = vec![first];
            let concurrency = this.opts.concurrency.max(1);
            loop {
                // Take what is already queued before deciding, so an early insert is as large
                // as the shippers have made it.
                while rows < this.opts.max_rows && bytes < this.opts.max_bytes {
                    let Ok(job) = rx.try_recv() else { break };
                    rows += job.batch.rows();
                    bytes += job.batch.bytes();
                    jobs.push(job);
                }
                if rows >= this.opts.max_rows || bytes >= this.opts.max_bytes {
                    break;
                }
                while in_flight.try_join_next().is_some() {}
                // While every slot is busy the batch keeps growing, so slow inserts get larger.
                if rows >= this.opts.min_rows && in_flight.len() < concurrency {
                    break;
                }
                tokio::select! {
                    job = rx.recv() => match job {
                        Some(job) => {
                            rows += job.batch.rows();
                            bytes += job.batch.bytes();
                            jobs.push(job);
                        }
                        None => break,
                    },
                    Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
            // Each shipped batch is acknowledged by its own job, and each stream awaits its acks
            // in order, so inserts may finish in any order.
            while in_flight.len() >= concurrency {
                let _ = in_flight.join_next().await;
            }
            // Counted as queued until its insert starts, so slow inserts show as a queue.
            this.metrics.queued_batches.dec_by(jobs.len() as i64);
            this.metrics.inserts_in_flight.inc();
            let writer = this.clone();
            in_flight.spawn(async move {
                writer.flush(jobs).await;
                writer.metrics.inserts_in_flight.dec();
            });
        }
        while in_flight.join_next().await.is_some() {}
    }

    /// Inserts the jobs' rows together; on a data error, job by job.
    async fn flush(&self, jobs: Vec<Job>) {
        let events: Vec<&EventRow> = jobs.iter().flat_map(|j| &j.batch.events).collect();
        let alerts: Vec<&AlertRow> = jobs.iter().flat_map(|j| &j.batch.alerts).collect();
        match self.insert_retrying(&events, &alerts).await {
            Ok(()) => {
                for job in jobs {
                    let _ = job.done.send(Outcome { dead_lettered: 0 });
                }
            }
            Err(first) if jobs.len() == 1 => self.dead_letter_job(jobs, &first),
            Err(_) => {
                for job in jobs {
                    let events: Vec<&EventRow> = job.batch.events.iter().collect();
                    let alerts: Vec<&AlertRow> = job.batch.alerts.iter().collect();
                    match self.insert_retrying(&events, &alerts).await {
                        Ok(()) => {
                            let _ = job.done.send(Outcome { dead_lettered: 0 });
                        }
                        Err(e) => self.dead_letter_job(vec![job], &e),
                    }
                }
            }
        }
    }

    fn dead_letter_job(&self, jobs: Vec<Job>, error: &clickhouse::error::Error) {
        for job in jobs {
            let reason = error.to_string();
            // The file must hold the events before the batch is acknowledged; if it cannot,
            // drop the job unanswered so the shipper resends it (and we try again).
            if let Err(e) = self.dead_letter.write(&reason, &job.batch.raw) {
                tracing::error!(error = %e, path = %self.dead_letter.path().display(), "cannot write the dead-letter file");
                continue;
            }
            let n = job.batch.raw.len() as u32;
            self.metrics.dead_lettered.inc_by(u64::from(n));
            tracing::warn!(events = n, reason = %reason, "ClickHouse refused the rows: dead-lettered");
            let _ = job.done.send(Outcome { dead_lettered: n });
        }
    }

    /// Inserts until it succeeds or ClickHouse refuses the data (returned).
    async fn insert_retrying(
        &self,
        events: &[&EventRow],
        alerts: &[&AlertRow],
    ) -> Result<(), clickhouse::error::Error> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.insert(events, alerts).await {
                Ok(()) => {
                    self.metrics.events_stored.inc_by(events.len() as u64);
                    self.metrics.alerts_stored.inc_by(alerts.len() as u64);
                    return Ok(());
                }
                Err(e) if is_data_error(&e) => return Err(e),
                Err(e) => {
                    self.metrics.insert_retries.inc();
                    tracing::warn!(error = %e, retry_in = ?backoff, "ClickHouse insert failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn insert(
        &self,
        events: &[&EventRow],
        alerts: &[&AlertRow],
    ) -> Result<(), clickhouse::error::Error> {
        if !events.is_empty() {
            let mut insert = self.client.insert::<EventRow>("events").await?;
            for row in events {
                insert.write(row).await?;
            }
            insert.end().await?;
            self.metrics.inserts.inc();
        }
        if !alerts.is_empty() {
            let mut insert = self.client.insert::<AlertRow>("alerts").await?;
            for row in alerts {
                insert.write(row).await?;
            }
            insert.end().await?;
            self.metrics.inserts.inc();
        }
        Ok(())
    }
}
