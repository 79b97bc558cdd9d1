//! The `sink` stage: the aggregates topic, consumed in a group → decoded
//! window results → upserts into Cassandra; messages that do not decode go
//! to the dead-letter topic. Offsets are committed after each batch is
//! upserted and its dead letters acknowledged ([`crate::flow`]), so a crash
//! re-writes at most one batch, with the same values (upserts are
//! idempotent by primary key).

use std::time::Duration;

use crate::error::StageError;
use crate::flow::{self, DriveOptions};
use crate::io::cassandra::ResultStore;
use crate::sink::dead_letter_topic::DeadLetterTopic;
use crate::sink::results_table::ResultsTable;
use crate::source::aggregates_topic::AggregatesTopic;
use crate::stage::runtime::{CommonArgs, StageRuntime};
use crate::transform::decode_windows::DecodeWindows;

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

/// Entry point of `taxistream-worker sink`.
pub async fn main(args: SinkArgs) -> Result<(), StageError> {
    let rt = StageRuntime::start(STAGE, &args.common).await?;
    let w = &rt.config.worker;
    let store = ResultStore::connect(&w.cassandra, args.max_in_flight).await?;
    rt.ready.require("cassandra", store.check());
    let kafka = rt.kafka()?;
    rt.backends_answer(args.common.exit_when_idle).await?;
    rt.ready.set(true);
    let idle = (args.common.exit_when_idle).then(|| Duration::from_millis(args.idle_ms));
    let group = rt.config.group_id(STAGE);
    let mut source = AggregatesTopic::subscribe(
        &kafka,
        &group,
        &w.topics.aggregates,
        args.batch,
        idle,
        &rt.metrics,
    )?;
    let mut results = ResultsTable::new(store, &rt.metrics);
    let mut dead = DeadLetterTopic::new(
        kafka.producer()?,
        &w.topics.dead_letters,
        STAGE,
        &rt.metrics,
    );
    let options = DriveOptions {
        commit_interval: Duration::ZERO,
    };
    let stopped = flow::drive::<_, _, _, _, StageError>(
        &mut source,
        &mut DecodeWindows,
        &mut results,
        &mut dead,
        options,
        &rt.shutdown,
    )
    .await?;
    tracing::info!(
        written = results.written,
        dead_letters = dead.sent,
        ?stopped,
        "sink stopped"
    );
    Ok(())
}
