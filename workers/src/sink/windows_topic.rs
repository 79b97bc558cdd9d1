//! Window results → the aggregates topic, as `window/1` messages keyed by
//! their group (`aggregate`).
//!
//! Each message's timestamp is the instant its window closed, so a reader
//! downstream can tell how long a result took to reach it (`make bench`),
//! however long it waited here. A task of its own takes each broker
//! acknowledgement as it arrives, for the emit latency metric, rather than
//! at the next commit.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::error::StageError;
use crate::flow::BatchSink;
use crate::io::cassandra::group_key;
use crate::io::codec;
use crate::io::kafka::{delivered, enqueue, schema_headers};
use crate::metrics::Metrics;
use crate::transform::partitioned_windows::ClosedWindows;

/// Window results enqueued and not yet acknowledged, at most. Unbounded,
/// an aggregate that windows faster than the broker takes its results
/// filled librdkafka's queue towards its 100,000 messages: 160 MiB of heap
/// (the queued messages and their delivery futures) and a peak RSS of
/// 320–390 MiB on the 5M-row month (85–97 MiB when the broker kept up).
/// With this bound the stage peaks at 94–102 MiB and takes about 3% longer
/// on tansu (a bound of 50,000: 127 MiB, no faster). At a million trips a
/// second the month's results come at about 250,000 a second, so this is
/// 80 ms of them, four of the producer's 20 ms lingers.
const IN_FLIGHT: usize = 20_000;

pub struct WindowsTopic {
    producer: FutureProducer,
    topic: String,
    metrics: Metrics,
    acks: mpsc::UnboundedSender<Ack>,
    in_flight: Arc<Semaphore>,
    pub sent: u64,
}

/// What the acknowledgement task is told, in the order of the writes.
enum Ack {
    /// A result sent, when its window closed, and its place among those
    /// in flight, given back once it is acknowledged.
    Delivery(DeliveryFuture, Option<Instant>, OwnedSemaphorePermit),
    /// Answer once everything before is acknowledged.
    Flush(oneshot::Sender<Result<(), StageError>>),
}

impl WindowsTopic {
    /// Starts the acknowledgement task on the current runtime.
    pub fn new(producer: FutureProducer, topic: &str, metrics: &Metrics) -> Self {
        let (acks, pending) = mpsc::unbounded_channel();
        tokio::spawn(acknowledge(pending, topic.to_owned(), metrics.clone()));
        Self {
            producer,
            topic: topic.to_owned(),
            metrics: metrics.clone(),
            acks,
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
            sent: 0,
        }
    }

    fn stopped() -> StageError {
        StageError::Other {
            what: "produce window result",
            detail: "the acknowledgement task stopped".into(),
        }
    }
}

/// Awaits each delivery in order; the first failure is kept for the next
/// flush, which is where the driver learns of it before committing.
async fn acknowledge(mut pending: mpsc::UnboundedReceiver<Ack>, topic: String, metrics: Metrics) {
    let mut failed = None;
    while let Some(ack) = pending.recv().await {
        match ack {
            Ack::Delivery(d, closed_at, _in_flight) => {
                match delivered(d, &topic, "produce window result").await {
                    Ok(()) => {
                        if let Some(t) = closed_at {
                            metrics.window_emitted(t.elapsed());
                        }
                    }
                    Err(e) => {
                        failed.get_or_insert(StageError::from(e));
                    }
                }
            }
            Ack::Flush(done) => {
                // The flusher only goes away when the stage is failing anyway.
                let _ = done.send(failed.take().map_or(Ok(()), Err));
            }
        }
    }
}

impl BatchSink for WindowsTopic {
    type Batch = ClosedWindows;
    type Error = StageError;

    async fn write(&mut self, batch: &mut ClosedWindows) -> Result<(), StageError> {
        if batch.results.is_empty() {
            return Ok(());
        }
        let (now, wall) = (Instant::now(), SystemTime::now());
        for (r, &closed_at) in batch.results.iter().zip(&batch.closed_at) {
            let value = codec::encode_window(r).map_err(|e| StageError::Other {
                what: "encoding window result",
                detail: e.to_string(),
            })?;
            let key = group_key(r);
            // A window closed at the end of input closes now.
            let closed_ms = closed_at
                .map_or(Some(wall), |t| wall.checked_sub(now.duration_since(t)))
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as i64);
            let record = FutureRecord::to(&self.topic)
                .key(key.as_bytes())
                .payload(value.as_slice())
                .timestamp(closed_ms)
                .headers(schema_headers(codec::WINDOW_SCHEMA));
            let permit = Arc::clone(&self.in_flight)
                .acquire_owned()
                .await
                .map_err(|_| Self::stopped())?;
            let d = enqueue(&self.producer, record, "enqueue window result")?;
            self.acks
                .send(Ack::Delivery(d, closed_at, permit))
                .map_err(|_| Self::stopped())?;
        }
        let n = batch.results.len() as u64;
        self.metrics.records_out(n);
        self.sent += n;
        batch.clear();
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), StageError> {
        let (done, answer) = oneshot::channel();
        self.acks
            .send(Ack::Flush(done))
            .map_err(|_| Self::stopped())?;
        answer.await.map_err(|_| Self::stopped())?
    }
}
