//! The `relay` stage: the outbox relay from the PostgreSQL landing table to
//! the trips topic, in event-time order, carrying the watermark. Wiring of
//! [`Outbox`] → [`EventTimeStamps`] → [`TripsTopic`]:
//!
//! - order and watermark: each completed source is read in (pickup, id)
//!   order, merged over the completed sources by pickup; sources still
//!   landing hold event time back at their earliest landed pickup; the
//!   watermark follows the frontier, goes to every partition as a marker
//!   when it moves, and past the last pickup by a window and the allowed
//!   lateness once no source is in flight ([`crate::source::outbox`]);
//! - every trip is stamped with the watermark as of its publication
//!   ([`crate::transform::event_time_stamps`]);
//! - trips go out as `trip/3` messages per key group, keys routed by
//!   murmur2 to the key groups pinned at the first publication, partitions
//!   beyond them getting only markers ([`crate::sink::trips_topic`]);
//! - exactly once: a round is one PostgreSQL transaction over the relay's
//!   progress row; its last batch is a barrier, so [`flow::drive`] commits
//!   the new positions and watermark only after the trips topic
//!   acknowledged the round. A crash before the commit re-publishes the
//!   round, and the aggregate drops the copies by (pickup, landing id).
//!   The other replicas wait on the row lock, as hot standbys;
//! - replay mode paces publication by pickup time, a round spanning about a
//!   second of wall time at most.

use std::time::Duration;

use crate::error::StageError;
use crate::flow::{self, DriveOptions};
use crate::io::kafka::TopicPartitions;
use crate::sink::dead_letter_topic::DeadLetterTopic;
use crate::sink::trips_topic::{self, TripsTopic};
use crate::source::outbox::{Outbox, OutboxOptions};
use crate::stage::runtime::{CommonArgs, StageRuntime};
use crate::transform::event_time_stamps::EventTimeStamps;
use crate::window::WindowConfig;

const STAGE: &str = "relay";

/// `taxistream-worker relay`
#[derive(Debug, Clone, clap::Args)]
pub struct RelayArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Rows per transaction. Each round costs a few round trips to
    /// PostgreSQL and waits for the broker's acknowledgements, so larger
    /// rounds relay faster: 20,000 rows per round relay 1M rows in 2.4 s
    /// against 3.0 s at 5,000.
    #[arg(long, default_value_t = 20_000)]
    pub batch: i64,
    /// How long to wait before looking again when the outbox is empty.
    #[arg(long, default_value_t = 500)]
    pub poll_ms: u64,
    /// A source still landing that has landed nothing for this long stops
    /// holding event time back.
    #[arg(long, default_value_t = 600)]
    pub source_idle_s: u64,
}

/// Entry point of `taxistream-worker relay`: runs until shutdown (or, with
/// `--exit-when-idle`, until every source is published and its
/// end-of-source watermark sent).
pub async fn main(args: RelayArgs) -> Result<(), StageError> {
    let rt = StageRuntime::start(STAGE, &args.common).await?;
    let w = &rt.config.worker;
    let store = rt.landing_store(2).await?;
    let kafka = rt.kafka()?;
    rt.backends_answer(args.common.exit_when_idle).await?;
    let producer = trips_topic::producer(&kafka)?;
    rt.ready.set(true);
    let partitions = TopicPartitions::new(&producer, &w.topics.trips);
    let opts = OutboxOptions {
        name: rt.config.group_id(STAGE),
        batch: args.batch,
        poll: Duration::from_millis(args.poll_ms),
        replay_speedup: w.source.replay_speedup,
        exit_when_idle: args.common.exit_when_idle,
        close_after: OutboxOptions::close_after(&WindowConfig::from_aggregation(&w.aggregation)?),
        source_idle: Duration::from_secs(args.source_idle_s),
    };
    let mut source = Outbox::new(store, opts, partitions.clone(), &rt.metrics);
    let mut trips = TripsTopic::new(
        producer.clone(),
        partitions,
        w.aggregation.group_by,
        &rt.metrics,
    );
    // The relay rejects nothing; the dead-letter sink is wired as in every stage.
    let mut dead = DeadLetterTopic::new(producer, &w.topics.dead_letters, STAGE, &rt.metrics);
    // A round commits at its last batch (a barrier), never in between.
    let options = DriveOptions {
        commit_interval: Duration::MAX,
    };
    let stopped = flow::drive::<_, _, _, _, StageError>(
        &mut source,
        &mut EventTimeStamps::default(),
        &mut trips,
        &mut dead,
        options,
        &rt.shutdown,
    )
    .await?;
    tracing::info!(
        published = trips.published,
        markers = trips.markers,
        rounds = source.rounds,
        ?stopped,
        "relay stopped"
    );
    Ok(())
}
