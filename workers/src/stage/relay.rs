//! The `relay` stage: the outbox relay from the PostgreSQL landing table to
//! the trips topic, in event-time order, carrying the watermark. Wiring of
//! [`Outbox`] (rounds of landed trips in (pickup, id) order, merged over
//! the completed sources) → [`EventTimeStamps`] → [`TripsTopic`]; see each
//! module for the details.
//!
//! # Order and watermark
//!
//! A landed TLC file is history: once its source is completed, the relay
//! reads it in (pickup, id) order, merging every completed source by pickup.
//! Sources still landing hold event time back at their earliest landed
//! pickup (until they have landed nothing for `source_idle`), so one month
//! never makes another month's trips late, and a finished source no longer
//! holds anything back. The *frontier* is the earliest pickup still to be
//! published over the sources in flight; no later trip of those sources is
//! earlier. Every trip is stamped with the frontier as of its publication,
//! and a marker with the frontier goes to every partition of the trips topic
//! whenever it moves, so partitions that get no trips still close their
//! windows. When no source is in flight, the frontier moves past the last
//! published pickup by a window and the allowed lateness: the end-of-source
//! watermark that closes every window of the finished sources.
//!
//! # Batches
//!
//! A round's trips go out as `trip/3` messages: the trips bound for one key
//! group, in publication order, a few thousand per message, each trip with
//! its own stamp, landing id and origin. One message per trip would cap the
//! relay at the broker's per-message rate.
//!
//! # Exactly once and crash recovery
//!
//! Each round is one PostgreSQL transaction: lock the relay's progress row,
//! read the next rows, publish them with the idempotent producer, wait for
//! every acknowledgement, then store each source's new (pickup, id) position
//! and the watermark sent, and commit. The round's last batch is a barrier,
//! so [`flow::drive`] commits it only after the trips topic acknowledged
//! everything. A crash before the commit re-publishes that round's rows on
//! restart (nothing is skipped); in each partition the trips of one source
//! arrive in strictly increasing (pickup, landing id) order, so the
//! aggregate drops copies at or before the last one it counted.
//!
//! Only one replica relays at a time: the others wait on the row lock, as
//! hot standbys.
//!
//! # Key groups
//!
//! Keys are routed to `murmur2(key) % key_groups` with an explicit partition.
//! `key_groups` is the trips topic's partition count at the first
//! publication, stored in PostgreSQL and never changed, so growing the topic
//! later does not move a key (which would split its windows over two
//! engines). Partitions beyond the pinned count receive only watermark
//! markers; a warning says so.
//!
//! Replay mode paces publication by pickup time: a trip is published when
//! `(pickup − first pickup) / speedup` has elapsed since the first one. A
//! stretch without pickups that would take more than a minute of wall time
//! (a month's stray early pickups come first in pickup order, days before
//! the rest) is shortened to a minute. A speed-up that is not a positive
//! finite number disables pacing, with a warning.

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
    /// Rows per transaction.
    #[arg(long, default_value_t = 5000)]
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
