//! The `sink` stage: window results from the aggregates topic, consumed in a
//! group, upserted into Cassandra. Offsets are committed only after every
//! write of the batch before them was acknowledged, so a crash re-writes at
//! most one batch, with the same values (upserts are idempotent by primary
//! key).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;

use crate::error::StageError;
use crate::io::cassandra::ResultStore;
use crate::io::codec;
use crate::io::kafka::{
    Assignment, GroupContext, KafkaIoError, KafkaSettings, commit_sync, dead_letter_headers,
    send_acked,
};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::stage::runtime::{CommonArgs, StageRuntime};
use crate::window::WindowResult;

const STAGE: &str = "sink";

/// `taxistream-worker sink`
#[derive(Debug, Clone, clap::Args)]
pub struct SinkArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Results per batch.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Concurrent Cassandra writes.
    #[arg(long, default_value_t = 32)]
    pub max_in_flight: usize,
    /// With `--exit-when-idle`: how long without a message counts as idle.
    #[arg(long, default_value_t = 5000)]
    pub idle_ms: u64,
}

/// What a sink run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    pub written: u64,
    pub dead_letters: u64,
    pub batches: u64,
}

/// Sink settings independent of where they came from.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    pub group: String,
    pub topic: String,
    pub dead_letter_topic: String,
    pub batch: usize,
    /// Exit after this long without input; `None` runs until shutdown.
    pub exit_when_idle: Option<Duration>,
}

/// Consumes until shutdown (or idle), writing each batch before committing it.
pub async fn sink(
    store: &ResultStore,
    kafka: &KafkaSettings,
    opts: &SinkOptions,
    metrics: &Metrics,
    shutdown: &Shutdown,
) -> Result<SinkStats, StageError> {
    let (group, topic, dead_letter_topic) = (
        opts.group.as_str(),
        opts.topic.as_str(),
        opts.dead_letter_topic.as_str(),
    );
    let (batch_size, exit_when_idle) = (opts.batch.max(1), opts.exit_when_idle);
    let (ctx, events) = GroupContext::new(metrics.clone());
    let consumer: StreamConsumer<GroupContext> = kafka.consumer(group, ctx)?;
    consumer
        .subscribe(&[topic])
        .map_err(|source| KafkaIoError::Topic {
            what: "subscribe",
            topic: topic.to_owned(),
            source,
        })?;
    let producer: FutureProducer = kafka.producer()?;
    let mut stats = SinkStats::default();
    let mut results: Vec<WindowResult> = Vec::with_capacity(batch_size);
    let mut offsets: HashMap<(String, i32), i64> = HashMap::new();
    let mut last_message = Instant::now();
    let poll = Duration::from_millis(200);
    loop {
        let mut stop = false;
        // Fill a batch: until it is full or the topic pauses.
        while results.len() < batch_size {
            let next = tokio::select! {
                m = tokio::time::timeout(poll, consumer.recv()) => m,
                () = shutdown.wait() => { stop = true; break }
            };
            while let Ok(ev) = events.try_recv() {
                if let Assignment::Revoked(parts) = ev {
                    // Unwritten results of a revoked partition are re-read by its next owner.
                    for p in &parts {
                        offsets.remove(p);
                    }
                }
            }
            let msg = match next {
                Ok(Ok(m)) => m,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error");
                    continue;
                }
                Err(_) => break,
            };
            last_message = Instant::now();
            metrics.records_in(1);
            let origin = format!("{}/{}@{}", msg.topic(), msg.partition(), msg.offset());
            let payload = msg.payload().unwrap_or_default();
            match codec::decode_window(payload) {
                Ok(r) => results.push(r),
                Err(e) => {
                    send_acked(
                        &producer,
                        dead_letter_topic,
                        msg.key(),
                        payload,
                        dead_letter_headers(e.reason(), &e.to_string(), STAGE, &origin),
                    )
                    .await?;
                    metrics.dead_letter(e.reason());
                    stats.dead_letters += 1;
                }
            }
            offsets.insert((msg.topic().to_owned(), msg.partition()), msg.offset() + 1);
        }
        if !results.is_empty() {
            let took = store.upsert_all(&results).await?;
            metrics.batch("upsert", took);
            metrics.records_out(results.len() as u64);
            stats.written += results.len() as u64;
            stats.batches += 1;
            results.clear();
        }
        if !offsets.is_empty() {
            commit_sync(&consumer, &offsets)?;
            offsets.clear();
        }
        if stop || shutdown.requested() {
            break;
        }
        if let Some(idle) = exit_when_idle
            && last_message.elapsed() >= idle
        {
            break;
        }
    }
    Ok(stats)
}

/// Entry point of `taxistream-worker sink`.
pub async fn main(args: SinkArgs) -> Result<(), StageError> {
    let rt = StageRuntime::start(STAGE, &args.common).await?;
    let w = &rt.config.worker;
    let store = ResultStore::connect(&w.cassandra, args.max_in_flight).await?;
    rt.ready.require("cassandra", store.check());
    let kafka = rt.kafka()?;
    rt.backends_answer(args.common.exit_when_idle).await?;
    rt.ready.set(true);
    let opts = SinkOptions {
        group: rt.config.group_id(STAGE),
        topic: w.topics.aggregates.clone(),
        dead_letter_topic: w.topics.dead_letters.clone(),
        batch: args.batch,
        exit_when_idle: args
            .common
            .exit_when_idle
            .then(|| Duration::from_millis(args.idle_ms)),
    };
    let stats = sink(&store, &kafka, &opts, &rt.metrics, &rt.shutdown).await?;
    tracing::info!(
        written = stats.written,
        dead_letters = stats.dead_letters,
        "sink stopped"
    );
    Ok(())
}
