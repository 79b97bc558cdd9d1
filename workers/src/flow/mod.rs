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
//! | stage | source | transform | sink | dead letters |
//! |---|---|---|---|---|
//! | [`run`](crate::run) | [`inputs`](crate::source::inputs) | [`local_windows`](crate::transform::local_windows) | [`results_file`](crate::sink::results_file) | [`dead_letter_file`](crate::sink::dead_letter_file) |
//! | [`ingest`](crate::stage::ingest) | [`feed`](crate::source::feed) | [`landing_checks`](crate::transform::landing_checks) | [`landing_table`](crate::sink::landing_table) | in the landing transaction |
//! | [`relay`](crate::stage::relay) | [`outbox`](crate::source::outbox) | [`event_time_stamps`](crate::transform::event_time_stamps) | [`trips_topic`](crate::sink::trips_topic) | [`dead_letter_topic`](crate::sink::dead_letter_topic) |
//! | [`aggregate`](crate::stage::aggregate) | [`trips_topic`](crate::source::trips_topic) | [`partitioned_windows`](crate::transform::partitioned_windows) | [`windows_topic`](crate::sink::windows_topic) | [`dead_letter_topic`](crate::sink::dead_letter_topic) |
//! | [`sink`](crate::stage::sink) | [`aggregates_topic`](crate::source::aggregates_topic) | [`decode_windows`](crate::transform::decode_windows) | [`results_table`](crate::sink::results_table) | [`dead_letter_topic`](crate::sink::dead_letter_topic) |

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

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::rc::Rc;

    use super::*;
    use crate::dead_letter::Reason;
    use crate::trip::SourceRef;

    type Log = Rc<RefCell<Vec<String>>>;

    struct Script {
        pulls: VecDeque<Pull<Vec<i64>, Vec<i64>>>,
        log: Log,
    }

    impl BatchSource for Script {
        type Batch = Vec<i64>;
        type State = Vec<i64>;
        type Error = Infallible;

        async fn pull(&mut self) -> Result<Pull<Vec<i64>, Vec<i64>>, Infallible> {
            match self.pulls.pop_front() {
                Some(p) => Ok(p),
                // Past the script: wait as a live source does until shutdown.
                None => std::future::pending().await,
            }
        }

        async fn commit(&mut self, state: Vec<i64>) -> Result<(), Infallible> {
            self.log.borrow_mut().push(format!("commit {state:?}"));
            Ok(())
        }
    }

    /// Keeps a running sum as its state; negative numbers are dead letters.
    #[derive(Default)]
    struct Sum {
        total: i64,
    }

    impl Transform for Sum {
        type In = Vec<i64>;
        type Out = Vec<i64>;
        type State = Vec<i64>;
        type Error = Infallible;

        fn apply(
            &mut self,
            input: Vec<i64>,
            out: &mut Vec<i64>,
            dead: &mut Vec<DeadLetter>,
        ) -> Result<(), Infallible> {
            for v in input {
                if v < 0 {
                    let source = SourceRef {
                        source: "script".into(),
                        row: 0,
                    };
                    dead.push(DeadLetter::unparsable(source, "v", v.to_string(), None));
                } else {
                    self.total += v;
                    out.push(v);
                }
            }
            Ok(())
        }

        fn finish(&mut self, out: &mut Vec<i64>) -> Result<(), Infallible> {
            out.push(self.total);
            Ok(())
        }

        fn checkpoint(&mut self) -> Result<Vec<i64>, Infallible> {
            Ok(vec![self.total])
        }

        fn rebalance(&mut self, change: Rebalance<Vec<i64>>) -> Result<(), Infallible> {
            match change {
                Rebalance::Assigned(s) => self.total = s.iter().sum(),
                // The one partition's state goes with it.
                Rebalance::Revoked(_) => self.total = 0,
            }
            Ok(())
        }
    }

    /// Acknowledges only on flush, and logs both.
    struct Recorder {
        log: Log,
        unacked: usize,
    }

    impl BatchSink for Recorder {
        type Batch = Vec<i64>;
        type Error = Infallible;

        async fn write(&mut self, batch: &mut Vec<i64>) -> Result<(), Infallible> {
            self.log.borrow_mut().push(format!("write {batch:?}"));
            self.unacked += batch.len();
            batch.clear();
            Ok(())
        }

        async fn flush(&mut self) -> Result<(), Infallible> {
            self.log.borrow_mut().push(format!("ack {}", self.unacked));
            self.unacked = 0;
            Ok(())
        }
    }

    impl DeadLetterSink for Recorder {
        type Error = Infallible;

        async fn send(&mut self, letters: &mut Vec<DeadLetter>) -> Result<(), Infallible> {
            for l in letters.drain(..) {
                assert_eq!(l.reason, Reason::Unparsable);
                self.log.borrow_mut().push(format!("dead {}", l.detail));
            }
            Ok(())
        }

        async fn flush(&mut self) -> Result<(), Infallible> {
            self.log.borrow_mut().push("dead ack".into());
            Ok(())
        }
    }

    #[derive(Debug)]
    enum Never {}

    impl From<Infallible> for Never {
        fn from(never: Infallible) -> Self {
            match never {}
        }
    }

    fn batch(values: &[i64], barrier: bool) -> Pull<Vec<i64>, Vec<i64>> {
        Pull::Batch {
            batch: values.to_vec(),
            barrier,
        }
    }

    async fn run(
        pulls: Vec<Pull<Vec<i64>, Vec<i64>>>,
        interval: Duration,
    ) -> (Stopped, Vec<String>) {
        let log = Log::default();
        let mut source = Script {
            pulls: pulls.into(),
            log: log.clone(),
        };
        let mut sink = Recorder {
            log: log.clone(),
            unacked: 0,
        };
        let mut dead = Recorder {
            log: log.clone(),
            unacked: 0,
        };
        let (trigger, shutdown) = Shutdown::manual();
        let stop_later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            trigger.fire();
        });
        let stopped = drive::<_, _, _, _, Never>(
            &mut source,
            &mut Sum::default(),
            &mut sink,
            &mut dead,
            DriveOptions {
                commit_interval: interval,
            },
            &shutdown,
        )
        .await;
        stop_later.abort();
        let log = log.borrow().clone();
        (stopped.unwrap_or_else(|e| match e {}), log)
    }

    #[tokio::test]
    async fn commits_only_after_both_sinks_acknowledge_and_finishes_at_the_end() {
        let (stopped, log) = run(
            vec![
                batch(&[1, -2, 3], false),
                batch(&[4], true),
                batch(&[5], false),
                Pull::End,
            ],
            Duration::from_secs(3600),
        )
        .await;
        assert_eq!(stopped, Stopped::Drained);
        assert_eq!(
            log,
            [
                "dead -2",
                "write [1, 3]",
                "write [4]",
                // The barrier: acknowledgements, then the commit with the state so far.
                "ack 3",
                "dead ack",
                "commit [8]",
                "write [5]",
                // End of input: the transform's held state goes out before the last commit.
                "write [13]",
                "ack 2",
                "dead ack",
                "commit [13]",
            ]
        );
    }

    #[tokio::test]
    async fn shutdown_commits_what_was_pulled_without_finishing() {
        let (stopped, log) = run(
            vec![batch(&[7], false), Pull::Idle],
            Duration::from_secs(3600),
        )
        .await;
        assert_eq!(stopped, Stopped::Shutdown);
        assert_eq!(log, ["write [7]", "ack 1", "dead ack", "commit [7]"]);
    }

    #[tokio::test]
    async fn interval_commits_and_rebalances_reach_the_transform() {
        let (stopped, log) = run(
            vec![
                Pull::Rebalance(Rebalance::Assigned(vec![10, 20])),
                batch(&[1], false),
                Pull::Rebalance(Rebalance::Revoked(vec![("t".into(), 0)])),
                Pull::End,
            ],
            Duration::ZERO,
        )
        .await;
        assert_eq!(stopped, Stopped::Drained);
        assert_eq!(
            log,
            [
                "write [1]",
                "ack 1",
                "dead ack",
                "commit [31]",
                "write [0]",
                "ack 1",
                "dead ack",
                "commit [0]",
            ]
        );
    }
}
