//! The `aggregate` stage: the trips topic, consumed in a group, through one
//! window engine per assigned partition, to the aggregates topic. Wiring
//! only: [`TripsTopic`] reads the messages and keeps the checkpoints,
//! [`PartitionedWindows`] windows them, [`WindowsTopic`] publishes the
//! results and [`DeadLetterTopic`] the rejects, and [`flow::drive`] orders
//! the acknowledgements and commits described here.
//!
//! # Effectively-once without Kafka transactions
//!
//! Each partition's progress is a *checkpoint*: the engine's snapshot (its
//! open windows and the carried watermark), the next offset it covers, and
//! per source the last (pickup, landing id) counted. A checkpoint is written
//! to PostgreSQL only after every window result and dead letter produced by
//! the records before that offset has been acknowledged by the broker; the
//! offset is committed to Kafka right after. So an offset is committed only
//! once every window that contains records at or before it has been emitted,
//! or is held in the snapshot that goes with it.
//!
//! When a partition is assigned (at start, after a crash, after a
//! rebalance), its checkpoint is restored and the records before its offset
//! are skipped. Replaying the rest through the restored engine reproduces
//! the same windows bit for bit (the engine is deterministic), so results
//! emitted after the checkpoint and before the crash come out again with the
//! same values, and the sink's idempotent upserts absorb them.
//!
//! # Event time
//!
//! Windows close on the watermark the relay carries (stamped on every trip
//! and sent as markers to every partition), not on the pickups a partition
//! happens to see, so which zones share a partition changes nothing: every
//! engine closes the same windows at the same event time, and the
//! end-of-source watermark closes the last windows of a finished source
//! without any idle timeout.
//!
//! The relay may publish a trip twice after a crash of its own. It publishes
//! each source in (pickup, landing id) order, so in a partition the trips of
//! one source arrive in increasing order of that pair; a copy is at or before
//! the last pair counted for its source and is dropped here (counted in
//! `records_in`, never in a window).
//!
//! # Batches
//!
//! A `trip/3` message is decoded straight into a columnar batch; copies
//! and trips the validator rejects are masked out, and the rest go through
//! the engine in one call with their carried stamps. A rejected or late trip
//! is dead-lettered on its own, as a one-trip `trip/3` message whose origin
//! names the message it came in and its index there
//! (`topic/partition@offset#i`). A `trip/2` message (a relay not upgraded
//! yet) is a batch of one; see [`crate::io::codec`] for why both are read.
//! A message whose schema header names none of these, or that does not
//! decode, is dead-lettered whole, with its bytes.
//!
//! # Exit
//!
//! With `--exit-when-idle`, once no message has come for `--idle-ms` with
//! partitions assigned, every open window is closed (end of input) and
//! checkpointed. On shutdown what was processed is checkpointed and open
//! windows stay in the checkpoint. Either way the checkpointed offsets get
//! a last synchronous commit before the consumer leaves the group.
//!
//! On revocation the partition's open state is dropped without a checkpoint:
//! the next owner resumes from the last one.

use std::time::Duration;

use crate::error::StageError;
use crate::flow::{self, DriveOptions};
use crate::sink::dead_letter_topic::DeadLetterTopic;
use crate::sink::windows_topic::WindowsTopic;
use crate::source::trips_topic::TripsTopic;
use crate::stage::runtime::{CommonArgs, StageRuntime};
use crate::transform::partitioned_windows::PartitionedWindows;
use crate::window::WindowConfig;
use crate::zones::ZoneLookup;

const STAGE: &str = "aggregate";

/// `taxistream-worker aggregate`
#[derive(Debug, Clone, clap::Args)]
pub struct AggregateArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// How often progress is checkpointed and committed.
    #[arg(long, default_value_t = 1000)]
    pub commit_interval_ms: u64,
    /// With `--exit-when-idle`: how long without a message counts as idle.
    #[arg(long, default_value_t = 5000)]
    pub idle_ms: u64,
}

/// Entry point of `taxistream-worker aggregate`.
pub async fn main(args: AggregateArgs) -> Result<(), StageError> {
    let rt = StageRuntime::start(STAGE, &args.common).await?;
    let w = &rt.config.worker;
    let store = rt.landing_store(2).await?;
    let kafka = rt.kafka()?;
    rt.backends_answer(args.common.exit_when_idle).await?;
    // Exit after this long without input, closing every open window first
    // (end of input); otherwise run until shutdown.
    let idle = (args.common.exit_when_idle).then(|| Duration::from_millis(args.idle_ms));
    let mut source = TripsTopic::subscribe(
        &kafka,
        store,
        &rt.config.group_id(STAGE),
        &w.topics.trips,
        idle,
        &rt.metrics,
    )?;
    let mut windows = PartitionedWindows::new(
        WindowConfig::from_aggregation(&w.aggregation)?,
        ZoneLookup::embedded(),
    );
    let producer = kafka.producer()?;
    let mut results = WindowsTopic::new(producer.clone(), &w.topics.aggregates, &rt.metrics);
    let mut dead = DeadLetterTopic::new(producer, &w.topics.dead_letters, STAGE, &rt.metrics);
    let options = DriveOptions {
        commit_interval: Duration::from_millis(args.commit_interval_ms),
    };
    rt.ready.set(true);
    let stopped = flow::drive::<_, _, _, _, StageError>(
        &mut source,
        &mut windows,
        &mut results,
        &mut dead,
        options,
        &rt.shutdown,
    )
    .await;
    rt.ready.set(false);
    let stopped = stopped?;
    // What was processed is checkpointed; its offsets are committed before
    // leaving the group.
    windows.log_partitions();
    source.close();
    tracing::info!(
        records = source.records,
        windows = results.sent,
        dead_letters = dead.sent,
        duplicates = windows.duplicates,
        checkpoints = source.checkpoints,
        ?stopped,
        "aggregate stopped"
    );
    Ok(())
}
