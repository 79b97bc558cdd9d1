//! A Kafka consumer in a group, as the topic sources use it: messages with
//! a timeout, the rebalances that happened meanwhile, and offset commits.

use std::collections::HashMap;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;

use crate::dead_letter::RawMessage;
use crate::flow::Partition;
use crate::io::kafka::{Assignment, GroupContext, KafkaIoError, KafkaSettings};
use crate::metrics::Metrics;

/// A message copied out of the consumer's buffer, with where it came from.
#[derive(Debug, Clone)]
pub struct Received {
    /// `topic/partition@offset`.
    pub origin: String,
    pub message: RawMessage,
}

impl Received {
    pub fn of(msg: &BorrowedMessage<'_>) -> Self {
        Self {
            origin: origin(msg),
            message: RawMessage {
                key: msg.key().map(<[u8]>::to_vec),
                value: msg.payload().unwrap_or_default().to_vec(),
            },
        }
    }
}

/// `topic/partition@offset` of a message, as dead letters name it.
pub fn origin(msg: &BorrowedMessage<'_>) -> String {
    format!("{}/{}@{}", msg.topic(), msg.partition(), msg.offset())
}

/// One group member subscribed to one topic.
pub struct GroupConsumer {
    consumer: StreamConsumer<GroupContext>,
    events: Receiver<Assignment>,
}

impl GroupConsumer {
    pub fn subscribe(
        kafka: &KafkaSettings,
        group: &str,
        topic: &str,
        metrics: &Metrics,
    ) -> Result<Self, KafkaIoError> {
        let (ctx, events) = GroupContext::new(metrics.clone());
        let consumer: StreamConsumer<GroupContext> = kafka.consumer(group, ctx)?;
        consumer
            .subscribe(&[topic])
            .map_err(|source| KafkaIoError::Topic {
                what: "subscribe",
                topic: topic.to_owned(),
                source,
            })?;
        Ok(Self { consumer, events })
    }

    /// The next message, or `None` when none arrives within `wait`. A
    /// consumer error is logged and counts as no message: librdkafka
    /// retries by itself. Cancel-safe.
    pub async fn recv(&self, wait: Duration) -> Option<BorrowedMessage<'_>> {
        match tokio::time::timeout(wait, self.consumer.recv()).await {
            Ok(Ok(m)) => Some(m),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "consumer error");
                None
            }
            Err(_) => None,
        }
    }

    /// Rebalances that ran inside [`GroupConsumer::recv`] since the last call,
    /// in order; apply them before the message that call returned.
    pub fn changes(&self) -> Vec<Assignment> {
        self.events.try_iter().collect()
    }

    /// Commits `offsets` (the next offset to read, per partition).
    pub fn commit(
        &self,
        offsets: &HashMap<Partition, i64>,
        sync: bool,
    ) -> Result<(), KafkaIoError> {
        if sync {
            crate::io::kafka::commit_sync(&self.consumer, offsets)
        } else {
            crate::io::kafka::commit_async(&self.consumer, offsets)
        }
    }

    /// Offsets that the rebalance callback may commit before partitions move.
    pub fn mark_ready(&self, offsets: &HashMap<Partition, i64>) {
        if let Ok(mut ready) = self.consumer.context().ready.lock() {
            ready.extend(offsets.iter().map(|(k, v)| (k.clone(), *v)));
        }
    }

    /// The offsets marked ready, for a last synchronous commit at exit.
    pub fn ready(&self) -> HashMap<Partition, i64> {
        self.consumer
            .context()
            .ready
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }
}
