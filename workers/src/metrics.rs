//! Prometheus metrics of the worker stages, served on `/metrics` by [`crate::health`].
//!
//! Every series carries a `stage` label (`ingest`, `relay`, `aggregate`,
//! `sink`) so one dashboard covers all Deployments of a pipeline.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::dead_letter::Reason;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub stage: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub stage: String,
    pub op: String,
}

/// All metrics of one worker process.
#[derive(Clone)]
pub struct Metrics {
    stage: String,
    registry: Arc<Registry>,
    records_in: Family<StageLabels, Counter>,
    records_out: Family<StageLabels, Counter>,
    dead_letters: Family<ReasonLabels, Counter>,
    consumer_lag: Family<PartitionLabels, Gauge>,
    window_emit_latency: Histogram,
    batch_duration: Family<OpLabels, Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("stage", &self.stage)
            .finish()
    }
}

fn duration_histogram() -> Histogram {
    // 1 ms .. ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Metrics {
    /// Registers the metrics of `stage`.
    pub fn new(stage: &str) -> Self {
        let mut registry = Registry::with_prefix("taxistream");
        let records_in = Family::<StageLabels, Counter>::default();
        let records_out = Family::<StageLabels, Counter>::default();
        let dead_letters = Family::<ReasonLabels, Counter>::default();
        let consumer_lag = Family::<PartitionLabels, Gauge>::default();
        let window_emit_latency = duration_histogram();
        let batch_duration =
            Family::<OpLabels, Histogram>::new_with_constructor(duration_histogram as fn() -> _);
        registry.register(
            "records_in",
            "Records read by the stage (trips, or window results for the sink)",
            records_in.clone(),
        );
        registry.register(
            "records_out",
            "Records written by the stage (landed rows, published trips, emitted windows, stored rows)",
            records_out.clone(),
        );
        registry.register(
            "dead_letters",
            "Records sent to the dead-letter destination, by reason",
            dead_letters.clone(),
        );
        registry.register(
            "consumer_lag",
            "Messages between the consumer position and the end of the partition",
            consumer_lag.clone(),
        );
        registry.register(
            "window_emit_latency_seconds",
            "Wall time from the message that closed a window to the broker's acknowledgement of its result",
            window_emit_latency.clone(),
        );
        registry.register(
            "batch_duration_seconds",
            "Duration of one batch operation (COPY, publish, commit, upsert)",
            batch_duration.clone(),
        );
        Self {
            stage: stage.to_owned(),
            registry: Arc::new(registry),
            records_in,
            records_out,
            dead_letters,
            consumer_lag,
            window_emit_latency,
            batch_duration,
        }
    }

    fn labels(&self) -> StageLabels {
        StageLabels {
            stage: self.stage.clone(),
        }
    }

    pub fn records_in(&self, n: u64) {
        self.records_in.get_or_create(&self.labels()).inc_by(n);
    }

    pub fn records_out(&self, n: u64) {
        self.records_out.get_or_create(&self.labels()).inc_by(n);
    }

    pub fn dead_letter(&self, reason: Reason) {
        self.dead_letters
            .get_or_create(&ReasonLabels {
                stage: self.stage.clone(),
                reason: reason.as_str().to_owned(),
            })
            .inc();
    }

    pub fn consumer_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.consumer_lag
            .get_or_create(&PartitionLabels {
                topic: topic.to_owned(),
                partition: partition.to_string(),
            })
            .set(lag);
    }

    pub fn window_emitted(&self, latency: std::time::Duration) {
        self.window_emit_latency.observe(latency.as_secs_f64());
    }

    pub fn batch(&self, op: &str, took: std::time::Duration) {
        self.batch_duration
            .get_or_create(&OpLabels {
                stage: self.stage.clone(),
                op: op.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_series() {
        let m = Metrics::new("aggregate");
        m.records_in(3);
        m.dead_letter(Reason::Late);
        m.consumer_lag("trips", 2, 17);
        m.batch("commit", std::time::Duration::from_millis(3));
        m.window_emitted(std::time::Duration::from_millis(40));
        let text = m.encode().unwrap();
        assert!(
            text.contains(r#"taxistream_records_in_total{stage="aggregate"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"taxistream_dead_letters_total{stage="aggregate",reason="late"} 1"#)
        );
        assert!(text.contains(r#"taxistream_consumer_lag{topic="trips",partition="2"} 17"#));
        assert!(text.contains("taxistream_window_emit_latency_seconds_count 1"));
        assert!(text.contains("taxistream_batch_duration_seconds_bucket"));
    }
}
