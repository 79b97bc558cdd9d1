//! The one skeleton every stage is wired from, as in Vector and Arroyo: a
//! [`BatchSource`] yields batches, a [`Transform`] turns each into output
//! and dead letters, a [`BatchSink`] writes the output and a
//! [`DeadLetterSink`] the dead letters, and [`drive`] runs them.
//!
//! # Acknowledgements
//!
//! A source never moves its committed position on its own. The driver
//! commits only after the sink and the dead-letter sink have acknowledged
//! everything written so far ([`BatchSink::flush`]), handing the source the
//! transform's state as of that point ([`Transform::checkpoint`]), so a
//! crash replays from the last commit and never skips a record: what a
//! source commits is always backed by what its sinks hold. Sinks keep their
//! writes in the order they were given, so "everything so far" is one
//! position per source, not a per-record ledger.
//!
//! # Where each stage's pieces live
//!
//! | stage | source | transform | sink |
//! |---|---|---|---|
//! | `run` | files, Open Data ([`crate::source`]) | validate, merge by pickup, window | local results file |
//! | `ingest` | files, Open Data | validate | PostgreSQL landing table |
//! | `relay` | PostgreSQL outbox | event-time stamps | trips topic |
//! | `aggregate` | trips topic | copies, validate, window | aggregates topic |
//! | `sink` | aggregates topic | decode | Cassandra |

use std::time::{Duration, Instant};

use crate::dead_letter::DeadLetter;
use crate::shutdown::Shutdown;

/// A Kafka partition, the unit a consumer group hands out.
pub type Partition = (String, i32);

/// What a source has next.
pub enum Pull<B, S> {
    /// A batch. With `barrier`, the driver commits right after it (the
    /// source's unit of atomicity ends there, as a relay round does).
    Batch { batch: B, barrier: bool },
    /// The consumer group moved partitions: the transform's state for the
    /// ones gained, or the ones lost.
    Rebalance(Rebalance<S>),
    /// Nothing arrived within the source's poll interval.
    Idle,
    /// The input is drained (a file read to its end, or idle for long
    /// enough with `--exit-when-idle`).
    End,
}

/// A change of the partitions a source reads.
pub enum Rebalance<S> {
    /// Partitions gained, with the transform state last committed for them.
    Assigned(S),
    /// Partitions lost: their state is dropped uncommitted; the next owner
    /// resumes from the last commit.
    Revoked(Vec<Partition>),
}

/// Where batches come from.
// Stages are driven on the task that starts them, never spawned, so the
// futures need no `Send` bound.
#[allow(async_fn_in_trait)]
pub trait BatchSource {
    type Batch;
    /// What a commit stores beside the position: the transform's state
    /// (open windows), or `()` for a stateless stage.
    type State;
    type Error;

    /// The next batch. The driver drops this future on shutdown, so it must
    /// lose nothing when cancelled.
    async fn pull(&mut self) -> Result<Pull<Self::Batch, Self::State>, Self::Error>;

    /// Everything pulled so far has been acknowledged by the sinks: make
    /// that position durable, together with `state`.
    async fn commit(&mut self, state: Self::State) -> Result<(), Self::Error>;
}

/// A step between source and sink.
pub trait Transform {
    type In;
    type Out: Default;
    /// Carried in the source's commits (see [`BatchSource::State`]).
    type State;
    type Error;

    /// Turns one batch into output; records it rejects go to `dead`.
    fn apply(
        &mut self,
        input: Self::In,
        out: &mut Self::Out,
        dead: &mut Vec<DeadLetter>,
    ) -> Result<(), Self::Error>;

    /// End of input: whatever is still held (open windows) goes to `out`.
    fn finish(&mut self, out: &mut Self::Out) -> Result<(), Self::Error>;

    /// End of input, a part at a time, for a transform that holds more
    /// than fits in one output (`run` windows every row only once all its
    /// inputs are read): puts the next part in `out` and says whether
    /// another follows. The driver writes each part before asking for the
    /// next. By default all of [`Transform::finish`] at once.
    fn finish_part(&mut self, out: &mut Self::Out) -> Result<bool, Self::Error> {
        self.finish(out)?;
        Ok(false)
    }

    /// The state to commit with the position of everything applied so far.
    fn checkpoint(&mut self) -> Result<Self::State, Self::Error>;

    /// Partitions gained or lost (only partitioned sources rebalance).
    fn rebalance(&mut self, change: Rebalance<Self::State>) -> Result<(), Self::Error>;
}

/// Where a transform's output goes.
#[allow(async_fn_in_trait)]
pub trait BatchSink {
    type Batch;
    type Error;

    /// Starts writing `batch` and leaves it empty for reuse. It may return
    /// before the write is acknowledged.
    async fn write(&mut self, batch: &mut Self::Batch) -> Result<(), Self::Error>;

    /// Waits until every write so far is acknowledged (durable).
    async fn flush(&mut self) -> Result<(), Self::Error>;
}

/// Where rejected records go: a JSON-lines file, the PostgreSQL dead-letter
/// table, or the dead-letter topic. Every one gets the same
/// [`DeadLetter`], with its [`crate::dead_letter::Reason`].
#[allow(async_fn_in_trait)]
pub trait DeadLetterSink {
    type Error;

    /// Starts writing `letters` and leaves the vector empty.
    async fn send(&mut self, letters: &mut Vec<DeadLetter>) -> Result<(), Self::Error>;

    /// Waits until every letter so far is acknowledged.
    async fn flush(&mut self) -> Result<(), Self::Error>;
}

/// How often the driver commits without a barrier.
#[derive(Debug, Clone, Copy)]
pub struct DriveOptions {
    pub commit_interval: Duration,
}

/// Why [`drive`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The source ran out; the transform was finished and everything committed.
    Drained,
    /// Shutdown was requested; what was pulled is committed, open state
    /// stays in the last commit for the next run.
    Shutdown,
}

/// Runs `source` → `transform` → `sink` (rejects to `dead`) until the
/// source ends or shutdown is requested, committing as described in the
/// module documentation.
pub async fn drive<S, T, K, D, E>(
    source: &mut S,
    transform: &mut T,
    sink: &mut K,
    dead: &mut D,
    options: DriveOptions,
    shutdown: &Shutdown,
) -> Result<Stopped, E>
where
    S: BatchSource,
    T: Transform<In = S::Batch, State = S::State>,
    K: BatchSink<Batch = T::Out>,
    D: DeadLetterSink,
    E: From<S::Error> + From<T::Error> + From<K::Error> + From<D::Error>,
{
    let mut out = T::Out::default();
    let mut letters = Vec::new();
    let mut uncommitted = false;
    let mut last_commit = Instant::now();
    let stopped = loop {
        let pulled = tokio::select! {
            biased;
            () = shutdown.wait() => break Stopped::Shutdown,
            pulled = source.pull() => pulled?,
        };
        let barrier = match pulled {
            Pull::Batch { batch, barrier } => {
                transform.apply(batch, &mut out, &mut letters)?;
                if !letters.is_empty() {
                    dead.send(&mut letters).await?;
                }
                sink.write(&mut out).await?;
                uncommitted = true;
                barrier
            }
            Pull::Rebalance(change) => {
                transform.rebalance(change)?;
                false
            }
            Pull::Idle => false,
            Pull::End => {
                while transform.finish_part(&mut out)? {
                    sink.write(&mut out).await?;
                }
                sink.write(&mut out).await?;
                commit::<S, T, K, D, E>(source, transform, sink, dead).await?;
                return Ok(Stopped::Drained);
            }
        };
        if uncommitted && (barrier || last_commit.elapsed() >= options.commit_interval) {
            commit::<S, T, K, D, E>(source, transform, sink, dead).await?;
            uncommitted = false;
            last_commit = Instant::now();
        }
    };
    if uncommitted {
        commit::<S, T, K, D, E>(source, transform, sink, dead).await?;
    }
    Ok(stopped)
}

/// Acknowledgement first, then the commit that relies on it.
async fn commit<S, T, K, D, E>(
    source: &mut S,
    transform: &mut T,
    sink: &mut K,
    dead: &mut D,
) -> Result<(), E>
where
    S: BatchSource,
    T: Transform<In = S::Batch, State = S::State>,
    K: BatchSink<Batch = T::Out>,
    D: DeadLetterSink,
    E: From<S::Error> + From<T::Error> + From<K::Error> + From<D::Error>,
{
    sink.flush().await?;
    dead.flush().await?;
    let state = transform.checkpoint()?;
    source.commit(state).await?;
    Ok(())
}
