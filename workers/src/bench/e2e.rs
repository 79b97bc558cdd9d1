//! `taxistream-worker bench-e2e`: the end-to-end figure of `make bench`.
//!
//! One file goes through the real backends, stage after stage, in one
//! process: ingest (file → PostgreSQL), relay (PostgreSQL → trips topic) and
//! aggregate (trips topic → windows on the aggregates topic). Each stage is
//! timed separately, and the end-to-end rate is rows over the sum of the
//! three. The broker's raw produce rate is measured in the same run with the
//! relay's producer settings and message size, so the relay's figure reads
//! as a fraction of what the broker takes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rdkafka::producer::FutureRecord;

use crate::error::StageError;
use crate::io::codec::{self, TripMessage};
use crate::io::kafka::{KafkaIoError, KafkaSettings, schema_headers};
use crate::stage::aggregate::{AggregateOptions, aggregate};
use crate::stage::ingest::ingest;
use crate::stage::relay::{RelayOptions, relay};
use crate::stage::runtime::{CommonArgs, StageRuntime};
use crate::trip::{Dataset, SourceRef, Trip};
use crate::window::WindowConfig;

/// `taxistream-worker bench-e2e`
#[derive(Debug, Clone, clap::Args)]
pub struct BenchE2eArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The file to push through (the synthetic month of `bench`).
    #[arg(long)]
    pub input: PathBuf,
    /// Partitions of the trips topic.
    #[arg(long, default_value_t = 2)]
    pub partitions: i32,
    /// Messages for the raw produce measurement.
    #[arg(long, default_value_t = 1_000_000)]
    pub raw_messages: u64,
}

fn line(stage: &str, rows: u64, took: Duration) {
    let secs = took.as_secs_f64();
    println!(
        "  {stage:<28} {rows:>10} rows  {secs:>8.1} s  {:>10.0} rows/s",
        rows as f64 / secs.max(1e-9)
    );
}

/// The broker's acknowledged produce rate for `n` trip-sized messages.
async fn raw_produce_rate(
    kafka: &KafkaSettings,
    topic: &str,
    n: u64,
) -> Result<Duration, StageError> {
    let producer = kafka.producer()?;
    let trip = Trip {
        source: SourceRef {
            source: "bench/yellow_tripdata_2023-01_synthetic.parquet".into(),
            row: 0,
        },
        dataset: Dataset::Yellow,
        vendor_id: Some(2),
        pickup: 1_672_531_200_000_000,
        dropoff: 1_672_532_100_000_000,
        passenger_count: Some(1),
        trip_distance: 2.3,
        ratecode_id: Some(1),
        store_and_fwd: Some(false),
        pu_location_id: 132,
        do_location_id: 236,
        payment_type: Some(1),
        fare_amount: 14.2,
        extra: 1.0,
        mta_tax: 0.5,
        tip_amount: 3.0,
        tolls_amount: 0.0,
        improvement_surcharge: 1.0,
        total_amount: 22.2,
        congestion_surcharge: Some(2.5),
        airport_fee: Some(0.0),
        cbd_congestion_fee: None,
        ehail_fee: None,
        trip_type: None,
        refund: false,
    };
    let mut buf = Vec::new();
    let started = Instant::now();
    let mut pending = Vec::with_capacity(100_000);
    for i in 0..n {
        let mut msg = TripMessage {
            landing_id: i + 1,
            watermark: trip.pickup,
            trip: trip.clone(),
        };
        msg.trip.source.row = i;
        msg.trip.pu_location_id = 1 + (i % 265) as i32;
        codec::encode_trip(&msg, &mut buf);
        let key = msg.trip.pu_location_id.to_string();
        let record = FutureRecord::to(topic)
            .key(key.as_bytes())
            .payload(buf.as_slice())
            .headers(schema_headers(codec::TRIP_SCHEMA));
        let d = producer
            .send_result(record)
            .map_err(|(source, _)| KafkaIoError::Topic {
                what: "enqueue",
                topic: topic.to_owned(),
                source,
            })?;
        pending.push(d);
        if pending.len() == pending.capacity() {
            for d in pending.drain(..) {
                let _ = d.await;
            }
        }
    }
    for d in pending.drain(..) {
        let _ = d.await;
    }
    Ok(started.elapsed())
}

/// Entry point of `taxistream-worker bench-e2e`.
pub async fn main(args: BenchE2eArgs) -> Result<(), StageError> {
    let rt = StageRuntime::start("bench", &args.common).await?;
    let w = &rt.config.worker;
    let store = rt.landing_store(4).await?;
    let kafka = rt.kafka()?;
    let raw_topic = format!("{}.raw", w.topics.trips);
    kafka
        .ensure_topics(&[&w.topics.trips, &raw_topic], args.partitions, 1)
        .await?;
    kafka
        .ensure_topics(&[&w.topics.aggregates, &w.topics.dead_letters], 1, 1)
        .await?;

    println!(
        "end to end through PostgreSQL and Kafka ({})",
        args.input.display()
    );
    let raw = raw_produce_rate(&kafka, &raw_topic, args.raw_messages).await?;
    line("broker raw produce", args.raw_messages, raw);

    let input = args.input.display().to_string();
    let t = Instant::now();
    let ingested = ingest(
        &store,
        std::slice::from_ref(&input),
        None,
        Dataset::Yellow,
        &std::env::temp_dir(),
        Default::default(),
        &rt.metrics,
        &rt.shutdown,
    )
    .await?;
    let t_ingest = t.elapsed();
    let rows = ingested.inserted;
    line("ingest (file → PostgreSQL)", rows, t_ingest);

    let t = Instant::now();
    let relayed = relay(
        &store,
        &crate::stage::relay::producer(&kafka)?,
        &RelayOptions {
            name: rt.config.group_id("relay"),
            topic: w.topics.trips.clone(),
            group_by: w.aggregation.group_by,
            batch: 20_000,
            poll: Duration::from_millis(100),
            replay_speedup: None,
            exit_when_idle: true,
            close_after: RelayOptions::close_after(&WindowConfig::from_aggregation(
                &w.aggregation,
            )?),
            source_idle: Duration::from_secs(600),
        },
        &rt.metrics,
        &rt.shutdown,
    )
    .await?;
    let t_relay = t.elapsed();
    line("relay (PostgreSQL → Kafka)", relayed.published, t_relay);

    let idle = Duration::from_secs(3);
    let t = Instant::now();
    let aggregated = aggregate(
        &store,
        &kafka,
        &AggregateOptions {
            group: rt.config.group_id("aggregate"),
            trips_topic: w.topics.trips.clone(),
            aggregates_topic: w.topics.aggregates.clone(),
            dead_letter_topic: w.topics.dead_letters.clone(),
            window: WindowConfig::from_aggregation(&w.aggregation)?,
            commit_interval: Duration::from_secs(1),
            exit_when_idle: Some(idle),
        },
        &rt.metrics,
        &rt.shutdown,
        &rt.ready,
    )
    .await?;
    // The idle wait that ends the run is not work.
    let t_aggregate = t.elapsed().saturating_sub(idle);
    line(
        "aggregate (Kafka → windows)",
        aggregated.records,
        t_aggregate,
    );

    let total = t_ingest + t_relay + t_aggregate;
    line("end to end", rows, total);
    println!(
        "  windows emitted {}, dead letters {} (late), rejected at ingest {}",
        aggregated.windows, aggregated.dead_letters, ingested.dead_letters
    );
    let raw_rate = args.raw_messages as f64 / raw.as_secs_f64().max(1e-9);
    let relay_rate = relayed.published as f64 / t_relay.as_secs_f64().max(1e-9);
    let e2e_rate = rows as f64 / total.as_secs_f64().max(1e-9);
    println!(
        "  relay / raw produce = {:.2}; end to end / raw produce = {:.2}",
        relay_rate / raw_rate,
        e2e_rate / raw_rate
    );
    Ok(())
}
