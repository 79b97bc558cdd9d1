//! Reads the results as they arrive, for the concurrent run: how many trips
//! the emitted windows hold (so the run knows when the month is through),
//! and how long after its window closed each result reached the results
//! store. The aggregate stamps each `window/1` message with the time its
//! window closed; on the aggregates topic the latency is the time a reader
//! receives the message minus that stamp, in Cassandra the row's write time
//! minus it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use rdkafka::consumer::{Consumer, DefaultConsumerContext, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use scylla::client::session::Session;
use scylla::value::CqlTimestamp;

use super::BenchError;
use super::scratch::Topics;
use crate::io::cassandra::group_key;
use crate::io::codec;
use crate::io::kafka::KafkaSettings;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What the probe has seen so far.
#[derive(Debug, Default)]
pub struct Seen {
    pub windows: u64,
    /// Trips counted in the windows seen.
    pub trips: u64,
    /// Results that could not be decoded.
    pub undecodable: u64,
    /// Messages on the dead-letter topic.
    pub dead_letters: u64,
    /// When the last result arrived.
    pub last_at: Option<Instant>,
    /// Close-to-topic latencies, ms.
    pub topic_latency_ms: Vec<i64>,
    /// Close time (ms) per (group key, window start µs), for Cassandra.
    pub closed_ms: HashMap<(String, i64), i64>,
}

/// A reader of the aggregates and dead-letter topics, in a task of its own.
pub struct Probe {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<(), BenchError>>,
}

impl Probe {
    /// Starts reading the pipeline's results and dead letters from their
    /// beginning; `keep_closes` keeps the close time of every window for
    /// [`cassandra_latencies`].
    pub fn start(
        kafka: &KafkaSettings,
        topics: &Topics,
        keep_closes: bool,
    ) -> Result<Self, BenchError> {
        let results = reader(kafka, &topics.aggregates)?;
        let dead_letters = reader(kafka, &topics.dead_letters)?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(read(
            results,
            dead_letters,
            seen.clone(),
            stop.clone(),
            keep_closes,
        ));
        Ok(Self { seen, stop, task })
    }

    /// Trips in the windows seen so far, and dead letters.
    pub fn trips_and_dead_letters(&self) -> (u64, u64) {
        self.seen
            .lock()
            .map_or((0, 0), |s| (s.trips, s.dead_letters))
    }

    /// What has been seen so far, for an error message.
    pub fn summary(&self) -> String {
        self.seen.lock().map_or_else(
            |_| "nothing".into(),
            |s| {
                format!(
                    "{} windows holding {} trips, {} dead letters, {} results not readable as {}",
                    s.windows,
                    s.trips,
                    s.dead_letters,
                    s.undecodable,
                    codec::WINDOW_SCHEMA
                )
            },
        )
    }

    /// Stops reading; what was seen.
    pub async fn finish(self) -> Result<Seen, BenchError> {
        self.stop.store(true, Ordering::Relaxed);
        self.task
            .await
            .map_err(|e| BenchError::Other(format!("results probe: {e}")))??;
        let mut seen = self
            .seen
            .lock()
            .map_err(|_| BenchError::Other("results probe panicked".into()))?;
        Ok(std::mem::take(&mut *seen))
    }
}

/// A reader of partition 0 of `topic` from its beginning (`Pipeline::create`
/// makes the aggregates and dead-letter topics with one partition).
fn reader(
    kafka: &KafkaSettings,
    topic: &str,
) -> Result<StreamConsumer<DefaultConsumerContext>, BenchError> {
    // Not the stages' consumer settings: a fetch that waits long on an
    // idle partition would be counted as latency.
    let consumer: StreamConsumer<DefaultConsumerContext> = kafka
        .client_config()
        .set("group.id", format!("{topic}.probe"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .map_err(|e| BenchError::Kafka(format!("reading {topic}: {e}")))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .map_err(|e| BenchError::Kafka(format!("assigning {topic}: {e}")))?;
    consumer
        .assign(&tpl)
        .map_err(|e| BenchError::Kafka(format!("assigning {topic}: {e}")))?;
    Ok(consumer)
}

async fn read(
    results: StreamConsumer<DefaultConsumerContext>,
    dead_letters: StreamConsumer<DefaultConsumerContext>,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    keep_closes: bool,
) -> Result<(), BenchError> {
    let poisoned = || BenchError::Other("results probe state poisoned".into());
    while !stop.load(Ordering::Relaxed) {
        let msg = tokio::select! {
            m = results.recv() => m,
            d = dead_letters.recv() => {
                d.map_err(|e| BenchError::Kafka(format!("reading dead letters: {e}")))?;
                seen.lock().map_err(|_| poisoned())?.dead_letters += 1;
                continue;
            }
            () = tokio::time::sleep(Duration::from_millis(200)) => continue,
        };
        let msg = msg.map_err(|e| BenchError::Kafka(format!("reading results: {e}")))?;
        let arrived = now_ms();
        let closed = msg.timestamp().to_millis();
        let decoded = codec::decode_window(msg.payload().unwrap_or_default());
        let mut s = seen.lock().map_err(|_| poisoned())?;
        s.last_at = Some(Instant::now());
        match decoded {
            Ok(r) => {
                s.windows += 1;
                s.trips += r.count;
                if let Some(c) = closed {
                    s.topic_latency_ms.push(arrived - c);
                    if keep_closes {
                        s.closed_ms.insert((group_key(&r), r.window_start), c);
                    }
                }
            }
            Err(_) => s.undecodable += 1,
        }
    }
    Ok(())
}

/// Rows in the Cassandra results table.
pub async fn cassandra_rows(session: &Session, table: &str) -> Result<u64, BenchError> {
    let fail =
        |e: &dyn std::fmt::Display| BenchError::Cassandra(format!("counting rows of {table}: {e}"));
    let (n,): (i64,) = session
        .query_unpaged(format!("SELECT count(*) FROM {table}"), ())
        .await
        .map_err(|e| fail(&e))?
        .into_rows_result()
        .map_err(|e| fail(&e))?
        .single_row()
        .map_err(|e| fail(&e))?;
    Ok(n.max(0) as u64)
}

/// Close-to-row latencies (ms) of the rows in `table` whose close time the
/// probe saw, and the last write time (ms since the epoch).
pub async fn cassandra_latencies(
    session: &Session,
    table: &str,
    closed_ms: &HashMap<(String, i64), i64>,
) -> Result<(Vec<i64>, Option<i64>), BenchError> {
    let fail = |e: &dyn std::fmt::Display| BenchError::Cassandra(format!("reading {table}: {e}"));
    let mut rows = session
        .query_iter(
            format!("SELECT group_key, window_start, WRITETIME(trips) FROM {table}"),
            (),
        )
        .await
        .map_err(|e| fail(&e))?
        .rows_stream::<(String, CqlTimestamp, i64)>()
        .map_err(|e| fail(&e))?;
    let mut latencies = Vec::with_capacity(closed_ms.len());
    let mut last = None;
    while let Some((key, start, written_us)) = rows.try_next().await.map_err(|e| fail(&e))? {
        let written_ms = written_us / 1000;
        last = last.max(Some(written_ms));
        if let Some(c) = closed_ms.get(&(key, start.0 * 1000)) {
            latencies.push(written_ms - c);
        }
    }
    Ok((latencies, last))
}

/// The `q`-quantile (0..=1) of `values`, by nearest rank.
pub fn quantile(values: &mut [i64], q: f64) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_are_nearest_rank() {
        let mut v: Vec<i64> = (1..=100).rev().collect();
        assert_eq!(quantile(&mut v, 0.50), Some(50));
        assert_eq!(quantile(&mut v, 0.99), Some(99));
        assert_eq!(quantile(&mut v, 1.0), Some(100));
        assert_eq!(quantile(&mut [7], 0.99), Some(7));
        assert_eq!(quantile(&mut [], 0.5), None);
    }
}
