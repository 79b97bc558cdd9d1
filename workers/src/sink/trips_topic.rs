//! Stamped trips → the trips topic, as `trip/3` messages (see
//! [`codec`]): the trips bound for one key group, in publication order, a
//! few thousand per message, each trip with its own stamp, landing id and
//! origin. One message per trip would cap the relay at the broker's
//! per-message rate.
//!
//! A watermark marker goes to every partition before the trips it comes
//! with, so partitions that get no trips still close their windows.
//!
//! # Key groups
//!
//! Keys are routed to `murmur2(key) % key_groups` with an explicit
//! partition. `key_groups` is the topic's partition count at the first
//! publication, pinned in the relay's progress row and never changed (the
//! outbox hands it over with every batch), so growing the topic later does
//! not move a key (which would split its windows over two engines).
//! Partitions beyond the pinned count receive only watermark markers; a
//! warning says so.
//!
//! Writes only enqueue; [`BatchSink::flush`] waits for every
//! acknowledgement of the idempotent producer.

use std::time::{Duration, Instant};

use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::error::StageError;
use crate::flow::BatchSink;
use crate::io::codec;
use crate::io::kafka::{
    KafkaIoError, KafkaSettings, TopicPartitions, delivered, enqueue, schema_headers,
};
use crate::io::postgres::OutboxBatch;
use crate::metrics::Metrics;
use crate::transform::event_time_stamps::StampedRows;
use crate::trip::Micros;
use crate::window::{GroupBy, KeyMapper};
use crate::zones::ZoneLookup;

/// The relay's producer. A round enqueues all its messages and then waits
/// for every acknowledgement, so lingering for more messages would only
/// leave each round idle for the linger.
pub fn producer(kafka: &KafkaSettings) -> Result<FutureProducer, KafkaIoError> {
    kafka.producer_lingering(Duration::ZERO)
}

pub struct TripsTopic {
    producer: FutureProducer,
    topic: String,
    keys: KeyMapper,
    groups: Option<KeyGroups>,
    partitions: Partitions,
    /// Key index of every row of the batch being written, reused.
    key_idx: Vec<u16>,
    /// Row indices of the trips bound for each key group, reused.
    runs: Vec<Vec<usize>>,
    buf: Vec<u8>,
    deliveries: Vec<DeliveryFuture>,
    /// Markers to partitions beyond the key groups.
    extra: Vec<DeliveryFuture>,
    metrics: Metrics,
    /// Trips enqueued since the last flush, and since when.
    unacknowledged: u64,
    since: Option<Instant>,
    /// Trips acknowledged.
    pub published: u64,
    /// Markers sent, one per partition.
    pub markers: u64,
}

impl TripsTopic {
    pub fn new(
        producer: FutureProducer,
        partitions: TopicPartitions,
        group_by: GroupBy,
        metrics: &Metrics,
    ) -> Self {
        Self {
            producer,
            topic: partitions.topic().to_owned(),
            keys: KeyMapper::new(group_by, ZoneLookup::embedded()),
            groups: None,
            partitions: Partitions {
                topic: partitions,
                count: 0,
                checked: None,
                warned_for: 0,
            },
            key_idx: Vec::new(),
            runs: Vec::new(),
            buf: Vec::new(),
            deliveries: Vec::new(),
            extra: Vec::new(),
            metrics: metrics.clone(),
            unacknowledged: 0,
            since: None,
            published: 0,
            markers: 0,
        }
    }

    fn send(&mut self, key: Option<&[u8]>, partition: i32, schema: &str) -> Result<(), StageError> {
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic)
            .partition(partition)
            .payload(self.buf.as_slice())
            .headers(schema_headers(schema));
        if let Some(k) = key {
            record = record.key(k);
        }
        self.deliveries
            .push(enqueue(&self.producer, record, "enqueue")?);
        Ok(())
    }

    /// Sends `stamped`'s rows, one message per key group and at most
    /// [`codec::MAX_TRIPS_PER_MESSAGE`] trips, each key group's trips in
    /// publication order.
    fn trips(&mut self, stamped: &StampedRows, key_groups: i32) -> Result<(), StageError> {
        let outbox: &OutboxBatch = &stamped.rows.outbox;
        let groups = match self.groups.take() {
            Some(g) if g.key_groups == key_groups => g,
            _ => KeyGroups::new(&self.keys, key_groups),
        };
        self.keys.fill(&outbox.trips, &mut self.key_idx);
        self.runs.resize_with(key_groups.max(0) as usize, Vec::new);
        for run in &mut self.runs {
            run.clear();
        }
        for i in stamped.rows.rows.clone() {
            let g = groups.of_key[usize::from(self.key_idx[i])];
            self.runs[g as usize].push(i);
        }
        self.groups = Some(groups);
        let runs = std::mem::take(&mut self.runs);
        for (g, run) in runs.iter().enumerate() {
            let key = g.to_string();
            for chunk in run.chunks(codec::MAX_TRIPS_PER_MESSAGE) {
                codec::encode_trip_batch(
                    &outbox.trips,
                    &outbox.ids,
                    &stamped.stamps,
                    chunk,
                    &mut self.buf,
                );
                self.send(Some(key.as_bytes()), g as i32, codec::TRIP_BATCH_SCHEMA)?;
            }
        }
        self.runs = runs;
        Ok(())
    }

    /// Sends `watermark` to every partition. Partitions beyond the key
    /// groups hold no key, so a marker they miss (the producer may not know
    /// a partition added moments ago) costs nothing: best effort there.
    fn marker(
        &mut self,
        watermark: Micros,
        key_groups: i32,
        partitions: i32,
    ) -> Result<(), StageError> {
        codec::encode_watermark(watermark, &mut self.buf);
        for p in 0..key_groups {
            self.send(None, p, codec::WATERMARK_SCHEMA)?;
        }
        for p in key_groups..partitions {
            let record = FutureRecord::<[u8], [u8]>::to(&self.topic)
                .partition(p)
                .payload(self.buf.as_slice())
                .headers(schema_headers(codec::WATERMARK_SCHEMA));
            match self.producer.send_result(record) {
                Ok(d) => self.extra.push(d),
                Err((e, _)) => tracing::debug!(partition = p, error = %e, "marker not sent"),
            }
        }
        self.markers += partitions as u64;
        Ok(())
    }
}

impl BatchSink for TripsTopic {
    type Batch = Vec<StampedRows>;
    type Error = StageError;

    /// Enqueues each batch's marker, then its trips.
    async fn write(&mut self, batch: &mut Vec<StampedRows>) -> Result<(), StageError> {
        for stamped in batch.drain(..) {
            self.since.get_or_insert_with(Instant::now);
            let key_groups = stamped.rows.key_groups;
            let partitions = self.partitions.current(key_groups).await?;
            // The marker also bounds the rows that come with it, so it goes first.
            if let Some(w) = stamped.rows.marker {
                self.marker(w, key_groups, partitions)?;
            }
            if !stamped.rows.rows.is_empty() {
                self.trips(&stamped, key_groups)?;
                self.unacknowledged += stamped.rows.rows.len() as u64;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), StageError> {
        for d in self.extra.drain(..) {
            if let Ok(Err((e, _))) = d.await {
                tracing::debug!(error = %e, "marker to a partition beyond the key groups not delivered");
            }
        }
        for d in self.deliveries.drain(..) {
            delivered(d, &self.topic, "publish").await?;
        }
        if let Some(since) = self.since.take() {
            self.metrics.records_out(self.unacknowledged);
            self.metrics.batch("publish", since.elapsed());
            self.published += self.unacknowledged;
            self.unacknowledged = 0;
        }
        Ok(())
    }
}

/// The topic's partitions, looked up again now and then to notice growth.
struct Partitions {
    topic: TopicPartitions,
    count: i32,
    checked: Option<Instant>,
    warned_for: i32,
}

impl Partitions {
    /// The partition count, which must hold the pinned `key_groups`.
    async fn current(&mut self, key_groups: i32) -> Result<i32, StageError> {
        if self
            .checked
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            self.count = self.topic.count().await?;
            self.checked = Some(Instant::now());
        }
        let topic = self.topic.topic();
        if self.count < key_groups {
            return Err(StageError::Other {
                what: "trips topic",
                detail: format!(
                    "{topic} has {} partitions, fewer than the {key_groups} key groups pinned at its first publication",
                    self.count
                ),
            });
        }
        if self.count > key_groups && self.warned_for != self.count {
            tracing::warn!(
                %topic,
                partitions = self.count,
                key_groups,
                "the trips topic has more partitions than the key groups pinned at its first publication; \
                 keys stay on their partitions and the new ones only carry watermarks"
            );
            self.warned_for = self.count;
        }
        Ok(self.count)
    }
}

/// Kafka's murmur2 (the Java client's default partitioner hash).
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let chunks = data.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    if !rest.is_empty() {
        for (i, b) in rest.iter().enumerate().rev() {
            h ^= u32::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// The partition of `key` among `key_groups`.
fn key_group(key: &[u8], key_groups: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % key_groups.max(1) as u32) as i32
}

/// The key group of every key index: keys have a small domain, so each is
/// hashed once rather than once per trip.
struct KeyGroups {
    key_groups: i32,
    of_key: Vec<i32>,
}

impl KeyGroups {
    fn new(keys: &KeyMapper, key_groups: i32) -> Self {
        let of_key = (0..keys.key_count())
            .map(|k| {
                let key = keys.info(k as u16).key.to_string();
                key_group(key.as_bytes(), key_groups)
            })
            .collect();
        Self { key_groups, of_key }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_spreads_keys_and_is_stable() {
        // Values of Kafka's Utils.murmur2 for these keys.
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        let mut used = [false; 6];
        for zone in 1..=265 {
            used[key_group(zone.to_string().as_bytes(), 6) as usize] = true;
        }
        assert!(used.iter().all(|u| *u));
    }
}
