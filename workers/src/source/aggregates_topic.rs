//! The aggregates topic as the `sink` stage reads it: messages in batches,
//! committed by offset once the sink holds them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::Message;

use crate::error::StageError;
use crate::flow::{BatchSource, Partition, Pull};
use crate::io::kafka::{Assignment, KafkaSettings};
use crate::metrics::Metrics;
use crate::source::consumer::{GroupConsumer, Received};

/// How long one wait for a message lasts before a partial batch goes out.
const POLL: Duration = Duration::from_millis(200);

pub struct AggregatesTopic {
    consumer: GroupConsumer,
    batch: usize,
    /// With `--exit-when-idle`: this long without a message ends the input.
    idle: Option<Duration>,
    last_message: Instant,
    metrics: Metrics,
    /// The batch being filled; kept here so a cancelled pull loses nothing.
    filling: Vec<Received>,
    filling_offsets: HashMap<Partition, i64>,
    /// Next offsets of everything pulled and not yet committed.
    pulled: HashMap<Partition, i64>,
}

impl AggregatesTopic {
    pub fn subscribe(
        kafka: &KafkaSettings,
        group: &str,
        topic: &str,
        batch: usize,
        idle: Option<Duration>,
        metrics: &Metrics,
    ) -> Result<Self, StageError> {
        Ok(Self {
            consumer: GroupConsumer::subscribe(kafka, group, topic, metrics)?,
            batch: batch.max(1),
            idle,
            last_message: Instant::now(),
            metrics: metrics.clone(),
            filling: Vec::new(),
            filling_offsets: HashMap::new(),
            pulled: HashMap::new(),
        })
    }
}

impl BatchSource for AggregatesTopic {
    type Batch = Vec<Received>;
    type State = ();
    type Error = StageError;

    /// Fills a batch until it is full or the topic pauses.
    async fn pull(&mut self) -> Result<Pull<Vec<Received>, ()>, StageError> {
        while self.filling.len() < self.batch {
            let msg = self.consumer.recv(POLL).await;
            for change in self.consumer.changes() {
                if let Assignment::Revoked(parts) = change {
                    // A revoked partition's next owner re-reads what is not
                    // committed; its results already written are upserted again,
                    // with the same values.
                    for p in &parts {
                        self.pulled.remove(p);
                        self.filling_offsets.remove(p);
                    }
                }
            }
            let Some(msg) = msg else { break };
            self.last_message = Instant::now();
            self.metrics.records_in(1);
            self.filling.push(Received::of(&msg));
            self.filling_offsets
                .insert((msg.topic().to_owned(), msg.partition()), msg.offset() + 1);
        }
        if self.filling.is_empty() {
            let drained = self
                .idle
                .is_some_and(|idle| self.last_message.elapsed() >= idle);
            return Ok(if drained { Pull::End } else { Pull::Idle });
        }
        self.pulled.extend(self.filling_offsets.drain());
        Ok(Pull::Batch {
            batch: std::mem::take(&mut self.filling),
            barrier: true,
        })
    }

    async fn commit(&mut self, (): ()) -> Result<(), StageError> {
        self.consumer.commit(&self.pulled, true)?;
        self.pulled.clear();
        Ok(())
    }
}
