//! The broker's raw produce rate: trip-sized messages, one per trip, with
//! the stages' producer settings and nothing else in the way. The relay and
//! the end-to-end figures are read against it, measured in the same run.

use std::time::{Duration, Instant};

use rdkafka::producer::FutureRecord;

use super::BenchError;
use crate::io::kafka::KafkaSettings;

/// About the size of one encoded trip (`trip/2`: fixed fields, the source
/// name and row); the payload is built like one, so it compresses like one.
const SOURCE: &[u8] = b"bench/yellow_tripdata_2023-01_synthetic_5000000_42_v3.parquet";

fn payload(i: u64, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&[2, 1, 0, 0xff, 0x0f]);
    out.extend_from_slice(&(i + 1).to_le_bytes());
    let pickup = 1_672_531_200_000_000i64 + (i as i64) * 535_680;
    for t in [pickup - 600_000_000, pickup, pickup + 900_000_000] {
        out.extend_from_slice(&t.to_le_bytes());
    }
    let zone = 1 + (i % 265) as i32;
    out.extend_from_slice(&zone.to_le_bytes());
    out.extend_from_slice(&(1 + ((i * 7) % 265) as i32).to_le_bytes());
    let fare = 5.0 + (i % 97) as f64 * 0.7;
    for v in [2.3, fare, 1.0, 0.5, fare * 0.2, 0.0, 1.0, fare * 1.4 + 4.0] {
        out.extend_from_slice(&f64::to_le_bytes(v));
    }
    out.extend_from_slice(&[2, 1, 1, 1]);
    out.extend_from_slice(&2.5f64.to_le_bytes());
    out.extend_from_slice(&(SOURCE.len() as u16).to_le_bytes());
    out.extend_from_slice(SOURCE);
    out.extend_from_slice(&i.to_le_bytes());
}

/// Produces `n` messages to `topic` (keyed by zone, like the relay) and
/// waits for every acknowledgement; the time it took.
pub async fn measure(kafka: &KafkaSettings, topic: &str, n: u64) -> Result<Duration, BenchError> {
    let producer = kafka.producer()?;
    let mut buf = Vec::with_capacity(256);
    let mut pending = Vec::with_capacity(100_000);
    let started = Instant::now();
    for i in 0..n {
        payload(i, &mut buf);
        let key = (1 + i % 265).to_string();
        let record = FutureRecord::to(topic)
            .key(key.as_bytes())
            .payload(buf.as_slice());
        let delivery = producer
            .send_result(record)
            .map_err(|(e, _)| BenchError::Kafka(format!("producing to {topic}: {e}")))?;
        pending.push(delivery);
        if pending.len() == pending.capacity() {
            acknowledged(&mut pending, topic).await?;
        }
    }
    acknowledged(&mut pending, topic).await?;
    Ok(started.elapsed())
}

async fn acknowledged(
    pending: &mut Vec<rdkafka::producer::DeliveryFuture>,
    topic: &str,
) -> Result<(), BenchError> {
    for d in pending.drain(..) {
        match d.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => {
                return Err(BenchError::Kafka(format!("producing to {topic}: {e}")));
            }
            Err(_) => {
                return Err(BenchError::Kafka(format!(
                    "producing to {topic}: producer dropped"
                )));
            }
        }
    }
    Ok(())
}
