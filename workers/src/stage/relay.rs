//! The `relay` stage: the outbox relay from the PostgreSQL landing table to
//! the trips topic.
//!
//! Each round is one PostgreSQL transaction: lock the relay's progress row,
//! read the next rows in landing order, publish them with the idempotent
//! producer keyed by the group key, wait for every acknowledgement, then
//! advance the progress row and commit. A crash before the commit re-publishes
//! that round's rows on restart (nothing is skipped); the copies carry the
//! same landing ids, which the aggregate stage uses to drop them, because in
//! each partition landing ids only ever increase.
//!
//! Only one replica relays at a time: the others wait on the row lock, as
//! hot standbys.
//!
//! Replay mode paces publication by pickup time: a trip is published when
//! `(pickup − first pickup) / speedup` has elapsed since the first one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::time::sleep;

use crate::error::StageError;
use crate::io::codec::{self, TripMessage};
use crate::io::kafka::{KafkaIoError, schema_headers};
use crate::io::postgres::{OutboxRow, PgStore};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::stage::runtime::{CommonArgs, StageRuntime};
use crate::trip::{MICROS_PER_SECOND, Micros, TripBatch};
use crate::window::{GroupBy, KeyMapper};
use crate::zones::ZoneLookup;

/// `taxistream-worker relay`
#[derive(Debug, Clone, clap::Args)]
pub struct RelayArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Rows per transaction.
    #[arg(long, default_value_t = 5000)]
    pub batch: i64,
    /// How long to wait before looking again when the outbox is empty.
    #[arg(long, default_value_t = 500)]
    pub poll_ms: u64,
}

/// Relay settings independent of where they came from.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Name of the progress row (one per pipeline).
    pub name: String,
    pub topic: String,
    pub group_by: GroupBy,
    pub batch: i64,
    pub poll: Duration,
    pub replay_speedup: Option<f64>,
    pub exit_when_idle: bool,
}

/// What a relay run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    pub published: u64,
    pub rounds: u64,
    pub last_id: i64,
}

/// Event-time pacing for replay mode.
struct Pacer {
    speedup: f64,
    origin: Option<(Micros, Instant)>,
    /// Pickup times jitter; never wait for an earlier time than already reached.
    high: Micros,
}

impl Pacer {
    fn delay(&mut self, pickup: Micros) -> Duration {
        let (first, started) = *self.origin.get_or_insert((pickup, Instant::now()));
        self.high = self.high.max(pickup);
        let event_elapsed = (self.high - first).max(0) as f64 / MICROS_PER_SECOND as f64;
        let due = started + Duration::from_secs_f64(event_elapsed / self.speedup);
        due.saturating_duration_since(Instant::now())
    }
}

/// Runs the relay until shutdown (or until the outbox is drained, with
/// `exit_when_idle`).
pub async fn relay(
    store: &PgStore,
    producer: &FutureProducer,
    opts: &RelayOptions,
    metrics: &Metrics,
    shutdown: &Shutdown,
) -> Result<RelayStats, StageError> {
    let keys = KeyMapper::new(opts.group_by, ZoneLookup::embedded());
    let mut key_idx = Vec::new();
    let mut batch = TripBatch::with_capacity(Arc::from(""), Default::default(), 0);
    let mut buf = Vec::with_capacity(256);
    let mut pacer = opts.replay_speedup.map(|speedup| Pacer {
        speedup,
        origin: None,
        high: Micros::MIN,
    });
    // In replay mode a round spans at most about a second of wall time, so
    // the progress row never lags far behind what is published.
    let round_budget = Duration::from_secs(1);
    let mut stats = RelayStats::default();
    while !shutdown.requested() {
        let round_start = Instant::now();
        let mut tx = tokio::select! {
            tx = store.begin_relay(&opts.name) => tx?,
            () = shutdown.wait() => break,
        };
        let rows: Vec<OutboxRow> = tx.fetch(opts.batch).await?;
        if rows.is_empty() {
            drop(tx);
            if opts.exit_when_idle {
                break;
            }
            tokio::select! {
                () = sleep(opts.poll) => continue,
                () = shutdown.wait() => break,
            }
        }
        batch.clear();
        for r in &rows {
            batch.push(&r.trip);
        }
        keys.fill(&batch, &mut key_idx);

        let mut deliveries = Vec::with_capacity(rows.len());
        let mut last_id = tx.last_id;
        for (r, k) in rows.iter().zip(&key_idx) {
            if let Some(p) = pacer.as_mut() {
                let wait = p.delay(r.trip.pickup);
                if !wait.is_zero() {
                    if round_start.elapsed() >= round_budget || shutdown.requested() {
                        break;
                    }
                    sleep(wait).await;
                }
            }
            codec::encode_trip(
                &TripMessage {
                    landing_id: r.id as u64,
                    trip: r.trip.clone(),
                },
                &mut buf,
            );
            let key = keys.info(*k).key.to_string();
            let record = FutureRecord::to(&opts.topic)
                .key(key.as_bytes())
                .payload(buf.as_slice())
                .headers(schema_headers(codec::TRIP_SCHEMA));
            let delivery =
                producer
                    .send_result(record)
                    .map_err(|(source, _)| KafkaIoError::Topic {
                        what: "enqueue",
                        topic: opts.topic.clone(),
                        source,
                    })?;
            deliveries.push(delivery);
            last_id = r.id;
        }
        let published = deliveries.len() as u64;
        for d in deliveries {
            match d.await {
                Ok(Ok(_)) => {}
                Ok(Err((source, _))) => {
                    return Err(KafkaIoError::Topic {
                        what: "publish",
                        topic: opts.topic.clone(),
                        source,
                    }
                    .into());
                }
                Err(_) => {
                    return Err(StageError::Other {
                        what: "publish",
                        detail: "producer dropped before delivery".into(),
                    });
                }
            }
        }
        tx.commit(last_id).await?;
        metrics.records_in(published);
        metrics.records_out(published);
        metrics.batch("publish", round_start.elapsed());
        stats.published += published;
        stats.rounds += 1;
        stats.last_id = last_id;
    }
    Ok(stats)
}

/// Entry point of `taxistream-worker relay`.
pub async fn main(args: RelayArgs) -> Result<(), StageError> {
    let rt = StageRuntime::start("relay", &args.common).await?;
    let w = &rt.config.worker;
    let store = rt.landing_store(2).await?;
    let kafka = rt.kafka()?;
    rt.backends_answer(args.common.exit_when_idle).await?;
    let producer = kafka.producer()?;
    rt.ready.set(true);
    let opts = RelayOptions {
        name: rt.config.group_id("relay"),
        topic: w.topics.trips.clone(),
        group_by: w.aggregation.group_by,
        batch: args.batch,
        poll: Duration::from_millis(args.poll_ms),
        replay_speedup: w.source.replay_speedup,
        exit_when_idle: args.common.exit_when_idle,
    };
    let stats = relay(&store, &producer, &opts, &rt.metrics, &rt.shutdown).await?;
    tracing::info!(
        published = stats.published,
        last_id = stats.last_id,
        "relay stopped"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_waits_for_event_time_over_speedup_and_never_backwards() {
        let mut p = Pacer {
            speedup: 60.0,
            origin: None,
            high: Micros::MIN,
        };
        let t0 = 1_738_368_000_000_000;
        assert!(p.delay(t0).is_zero());
        // Ten event minutes later is ten wall seconds later at 60x.
        let d = p.delay(t0 + 600 * MICROS_PER_SECOND);
        assert!(
            d > Duration::from_millis(9_900) && d <= Duration::from_secs(10),
            "{d:?}"
        );
        // A record a minute behind the newest does not pull the schedule back.
        let e = p.delay(t0 + 540 * MICROS_PER_SECOND);
        assert!(e > Duration::from_millis(9_800), "{e:?}");
    }
}
