//! The `Ingest` gRPC service: validates shipped batches, queues them for the writer, and
//! acknowledges each batch, in order, once it is durable.
use crate::alerts::AlertRouter;
use crate::auth::IngestAuth;
use crate::metrics::Metrics;
use crate::rows;
use crate::rows::AlertRow;
use crate::writer::{Batch, Outcome, WriterHandle};
use gatehouse_proto::v1::ingest_server::Ingest;
use gatehouse_proto::v1::{ShipAck, ShipBatch};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Batches one stream may have queued but not yet acknowledged.
const STREAM_WINDOW: usize = 64;

pub struct IngestService {
    pub auth: Arc<IngestAuth>,
    pub writer: WriterHandle,
    pub metrics: Metrics,
    /// Routes bypass alerts once they are stored; `None` without a configured sink.
    pub alerts: Option<AlertRouter>,
}

enum Pending {
    Batch {
        seq: u64,
        end: u64,
        done: oneshot::Receiver<Outcome>,
        alerts: Vec<AlertRow>,
    },
    Fail(Status),
}

#[tonic::async_trait]
impl Ingest for IngestService {
    type ShipStream = ReceiverStream<Result<ShipAck, Status>>;

    async fn ship(
        &self,
        req: Request<Streaming<ShipBatch>>,
    ) -> Result<Response<Self::ShipStream>, Status> {
        let client = self.auth.check(&req)?;
        let mut inbound = req.into_inner();
        let (out_tx, out_rx) = mpsc::channel(STREAM_WINDOW);
        let (pending_tx, mut pending_rx) = mpsc::channel::<Pending>(STREAM_WINDOW);
        let writer = self.writer.clone();
        let metrics = self.metrics.clone();
        let urgent = out_tx.clone();
        let router = self.alerts.clone();
        let routing = router.is_some();
        tokio::spawn(async move {
            let mut last_seq = None;
            let mut last_end = 0u64;
            loop {
                let batch = match inbound.message().await {
                    Ok(Some(b)) => b,
                    Ok(None) => break,
                    Err(status) => {
                        // A message that could not be decoded (too large, malformed): the
                        // shipper is told why, ahead of the acks still pending, and resends.
                        tracing::warn!(client, %status, "ingest stream failed");
                        let _ = urgent.send(Err(status)).await;
                        break;
                    }
                };
                let item = match accept(&batch, last_seq, last_end) {
                    Ok(rows) => {
                        let alerts = if routing {
                            rows.alerts.clone()
                        } else {
                            Vec::new()
                        };
                        match writer.submit(rows) {
                            Ok(done) => {
                                last_seq = Some(batch.batch_seq);
                                last_end = batch.records.last().map_or(last_end, |r| r.end);
                                Pending::Batch {
                                    seq: batch.batch_seq,
                                    end: last_end,
                                    done,
                                    alerts,
                                }
                            }
                            Err(_) => {
                                // Told at once, ahead of the acks still pending: the shipper backs
                                // off now and later resends whatever this stream had in flight.
                                metrics.backpressure.inc();
                                let _ = urgent
                                .send(Err(Status::resource_exhausted(
                                    "the collector's ClickHouse write queue is full: back off and resend",
                                )))
                                .await;
                                break;
                            }
                        }
                    }
                    Err(status) => {
                        metrics.batches_rejected.inc();
                        tracing::warn!(client, %status, "rejected a shipped batch");
                        Pending::Fail(status)
                    }
                };
                let fail = matches!(item, Pending::Fail(_));
                if pending_tx.send(item).await.is_err() || fail {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            while let Some(item) = pending_rx.recv().await {
                let reply = match item {
                    Pending::Batch {
                        seq,
                        end,
                        done,
                        alerts,
                    } => match done.await {
                        Ok(o) => {
                            // Routed only once stored, so the link in the alert finds it.
                            if let Some(router) = &router {
                                router.notify(alerts);
                            }
                            Ok(ShipAck {
                                batch_seq: seq,
                                durable_offset: end,
                                dead_lettered: o.dead_lettered,
                            })
                        }
                        Err(_) => Err(Status::unavailable(
                            "the collector could not store the batch; resend",
                        )),
                    },
                    Pending::Fail(status) => Err(status),
                };
                let stop = reply.is_err();
                if out_tx.send(reply).await.is_err() || stop {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(out_rx)))
    }
}

/// Validates one batch and converts its records, or names the bad field.
fn accept(batch: &ShipBatch, last_seq: Option<u64>, last_end: u64) -> Result<Batch, Status> {
    if last_seq.is_some_and(|s| batch.batch_seq <= s) {
        return Err(Status::invalid_argument(format!(
            "batch_seq: {} does not follow {}",
            batch.batch_seq,
            last_seq.unwrap_or_default()
        )));
    }
    if batch.records.is_empty() {
        return Err(Status::invalid_argument("records: empty batch"));
    }
    let mut out = Batch::default();
    let mut end = last_end;
    for (i, rec) in batch.records.iter().enumerate() {
        if rec.end <= end {
            return Err(Status::invalid_argument(format!(
                "records[{i}].end: {} does not follow {end}",
                rec.end
            )));
        }
        end = rec.end;
        let row =
            rows::convert(i, &rec.event).map_err(|e| Status::invalid_argument(e.to_string()))?;
        out.push(row, rec.event.clone());
    }
    Ok(out)
}
