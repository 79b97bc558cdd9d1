//! Dead letters → the dead-letter topic. A letter that came from a Kafka
//! message carries it on byte for byte (a trip rejected out of a batch
//! message is re-encoded alone); any other is sent as its JSON. The
//! headers say why (`taxistream-reason`, `taxistream-detail`), which stage
//! rejected it and where it came from (`topic/partition@offset`, with
//! `#i` for the i-th trip of a batch message).

use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::dead_letter::DeadLetter;
use crate::error::StageError;
use crate::flow::DeadLetterSink;
use crate::io::kafka::{dead_letter_headers, delivered, enqueue};
use crate::metrics::Metrics;

pub struct DeadLetterTopic {
    producer: FutureProducer,
    topic: String,
    stage: &'static str,
    metrics: Metrics,
    deliveries: Vec<DeliveryFuture>,
    pub sent: u64,
}

impl DeadLetterTopic {
    pub fn new(
        producer: FutureProducer,
        topic: &str,
        stage: &'static str,
        metrics: &Metrics,
    ) -> Self {
        Self {
            producer,
            topic: topic.to_owned(),
            stage,
            metrics: metrics.clone(),
            deliveries: Vec::new(),
            sent: 0,
        }
    }

    fn enqueue(&mut self, letter: &DeadLetter) -> Result<(), StageError> {
        let origin = match letter.trip {
            Some(_) => format!("{}#{}", letter.source.source, letter.source.row),
            None => letter.source.source.clone(),
        };
        let json;
        let (key, value) = match &letter.message {
            Some(m) => (m.key.as_deref(), m.value.as_slice()),
            None => {
                json = serde_json::to_vec(letter).map_err(|e| StageError::Other {
                    what: "encoding dead letter",
                    detail: e.to_string(),
                })?;
                (None, json.as_slice())
            }
        };
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic)
            .payload(value)
            .headers(dead_letter_headers(
                letter.reason,
                &letter.detail,
                self.stage,
                &origin,
            ));
        if let Some(k) = key {
            record = record.key(k);
        }
        self.deliveries
            .push(enqueue(&self.producer, record, "enqueue dead letter")?);
        self.metrics.dead_letter(letter.reason);
        self.sent += 1;
        Ok(())
    }
}

impl DeadLetterSink for DeadLetterTopic {
    type Error = StageError;

    async fn send(&mut self, letters: &mut Vec<DeadLetter>) -> Result<(), StageError> {
        for letter in letters.drain(..) {
            tracing::warn!(origin = %letter.source.source, reason = %letter.reason, detail = %letter.detail, "dead letter");
            self.enqueue(&letter)?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), StageError> {
        for d in self.deliveries.drain(..) {
            delivered(d, &self.topic, "produce dead letter").await?;
        }
        Ok(())
    }
}
