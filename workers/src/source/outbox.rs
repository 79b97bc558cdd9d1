//! The PostgreSQL outbox as the `relay` stage reads it: rounds of landed
//! trips in event-time order, each round one transaction over the relay's
//! progress row.
//!
//! A round locks the progress row (a second replica waits there as a hot
//! standby), decides from the sources' state which rows come next
//! (`plan`) and how far the watermark moves, reads those rows, and yields
//! them; its last batch is a barrier, so the driver commits right after the
//! sinks acknowledge it, and [`BatchSource::commit`] stores each source's
//! new (pickup, id) position, the sources finished, the watermark sent and
//! the pinned key groups in that same transaction. A crash before the
//! commit re-publishes the round on restart; nothing is skipped. In each
//! partition the trips of one source arrive in strictly increasing
//! (pickup, landing id) order, so the aggregate drops copies at or before
//! the last one it counted.
//!
//! # Order and watermark
//!
//! A landed file is read in (pickup, id) order once its source is completed,
//! merging every completed source by pickup. Sources still landing hold
//! event time back at their earliest landed pickup (until they have landed
//! nothing for `source_idle`), so one month never makes another month's
//! trips late, and a finished source no longer holds anything back. The
//! *frontier* is the earliest pickup still to be published over the sources
//! in flight; a round whose frontier moves past the watermark sent carries
//! it as a marker ahead of its rows. When no source is in flight, the
//! watermark moves past the last published pickup by `close_after`: the
//! end-of-source watermark that closes every window of the finished sources.
//!
//! # Replay pacing
//!
//! Replay mode paces publication by pickup time: a trip goes out when
//! `(pickup − first pickup) / speedup` has elapsed since the first one. The
//! rows due so far are yielded before each wait, and a round spans at most
//! about a second of wall time (it ends at the next wait after that), so
//! the progress row never lags far behind what is published. A stretch
//! without pickups that would take more than a minute of wall time (a
//! month's stray early pickups come first in pickup order, days before the
//! rest) is shortened to a minute. A speed-up that is not a positive finite
//! number disables pacing, with a warning.

use std::ops::Range;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::time::sleep;

use crate::error::StageError;
use crate::flow::{BatchSource, Pull};
use crate::io::kafka::TopicPartitions;
use crate::io::postgres::{OutboxBatch, PgStore, RelayProgress, RelaySource, RelayTx};
use crate::metrics::Metrics;
use crate::trip::{MICROS_PER_SECOND, Micros};
use crate::window::WindowConfig;

/// How the outbox is read, independent of where the settings came from.
#[derive(Debug, Clone)]
pub struct OutboxOptions {
    /// Name of the progress row (one per pipeline).
    pub name: String,
    /// Rows per round.
    pub batch: i64,
    /// How long to wait before looking again when there is nothing to do.
    pub poll: Duration,
    pub replay_speedup: Option<f64>,
    /// End once every source is published and its end-of-source watermark
    /// sent, instead of polling on.
    pub exit_when_idle: bool,
    /// Window size plus allowed lateness: how far past the last published
    /// pickup the end-of-source watermark goes, to close its last windows.
    pub close_after: Micros,
    /// A source still landing that has landed nothing for this long stops
    /// holding event time back.
    pub source_idle: Duration,
}

impl OutboxOptions {
    /// `close_after` for `window`.
    pub fn close_after(window: &WindowConfig) -> Micros {
        window.size.saturating_add(window.allowed_lateness)
    }
}

/// Rows of one round, in publication order.
#[derive(Debug, Clone)]
pub struct OutboxRows {
    /// The round's rows, shared by its batches.
    pub outbox: Rc<OutboxBatch>,
    /// The rows of this batch.
    pub rows: Range<usize>,
    /// The watermark to send to every partition before these rows.
    pub marker: Option<Micros>,
    /// The watermark sent so far (the marker, when there is one): nothing
    /// published from here on is stamped earlier.
    pub floor: Option<Micros>,
    /// Key groups of the trips topic, pinned at its first publication.
    pub key_groups: i32,
}

/// In replay mode a round spans at most about this much wall time.
const ROUND_BUDGET: Duration = Duration::from_secs(1);

pub struct Outbox {
    store: PgStore,
    opts: OutboxOptions,
    /// Where the key groups come from at the first publication.
    partitions: TopicPartitions,
    pacer: Option<Pacer>,
    /// The rows of the round in progress (reused from round to round).
    outbox: Rc<OutboxBatch>,
    round: Option<Round>,
    metrics: Metrics,
    /// Rounds committed.
    pub rounds: u64,
}

/// A round between its first and its last batch.
struct Round {
    tx: RelayTx,
    started: Instant,
    /// The source whose rows are published, if any.
    source: Option<String>,
    finished: Vec<String>,
    key_groups: i32,
    floor: Option<Micros>,
    /// Not yet yielded.
    marker: Option<Micros>,
    /// Rows before it are yielded.
    next: usize,
    /// Row `next` is due after this wait (replay pacing).
    wait: Option<Duration>,
}

/// Whether there was anything to do.
enum Begun {
    /// A round is open.
    Round,
    Idle,
    End,
}

impl Outbox {
    pub fn new(
        store: PgStore,
        opts: OutboxOptions,
        partitions: TopicPartitions,
        metrics: &Metrics,
    ) -> Self {
        let pacer = opts.replay_speedup.and_then(|speedup| {
            let p = Pacer::new(speedup);
            if p.is_none() {
                tracing::warn!(
                    speedup,
                    "replay speed-up is not a positive number; publishing without pacing"
                );
            }
            p
        });
        Self {
            store,
            opts,
            partitions,
            pacer,
            outbox: Rc::default(),
            round: None,
            metrics: metrics.clone(),
            rounds: 0,
        }
    }

    /// Opens a round and reads its rows, unless there is nothing to do.
    async fn begin(&mut self) -> Result<Begun, StageError> {
        let mut tx = self.store.begin_relay(&self.opts.name).await?;
        let started = Instant::now();
        let sources = tx.sources(self.opts.source_idle).await?;
        let plan = plan(&sources);
        let target = match plan.frontier {
            Some(f) => Some(f),
            None => tx
                .published_high()
                .await?
                .map(|h| h.saturating_add(self.opts.close_after)),
        };
        let sent = tx.watermark;
        let advance = target.filter(|t| sent.is_none_or(|s| *t > s));
        // The sinks drop their share of the last round when they write it.
        if Rc::get_mut(&mut self.outbox).is_none() {
            self.outbox = Rc::default();
        }
        let outbox = Rc::make_mut(&mut self.outbox);
        match plan.next {
            Some((s, bound)) => {
                tx.fetch_ordered(&s.source, s.position, bound, self.opts.batch, outbox)
                    .await?
            }
            None => outbox.ids.clear(),
        }
        if outbox.ids.is_empty() && advance.is_none() && plan.finished.is_empty() {
            drop(tx);
            if self.opts.exit_when_idle && plan.frontier.is_none() {
                return Ok(Begun::End);
            }
            return Ok(Begun::Idle);
        }
        let key_groups = match tx.key_groups {
            Some(k) => k,
            None => self.partitions.count().await?,
        };
        self.round = Some(Round {
            tx,
            started,
            source: plan.next.map(|(s, _)| s.source.clone()),
            finished: plan.finished,
            key_groups,
            floor: sent.max(advance),
            marker: advance,
            next: 0,
            wait: None,
        });
        Ok(Begun::Round)
    }
}

impl BatchSource for Outbox {
    type Batch = OutboxRows;
    /// The watermark as of everything pulled.
    type State = Option<Micros>;
    type Error = StageError;

    /// The round's rows due now; the round's last batch is a barrier.
    async fn pull(&mut self) -> Result<Pull<OutboxRows, Option<Micros>>, StageError> {
        loop {
            let Some(round) = self.round.as_mut() else {
                match self.begin().await? {
                    Begun::Round => {}
                    Begun::Idle => {
                        sleep(self.opts.poll).await;
                        return Ok(Pull::Idle);
                    }
                    Begun::End => return Ok(Pull::End),
                }
                continue;
            };
            let n = self.outbox.ids.len();
            let from = round.next;
            let mut to = from;
            if let Some(wait) = round.wait {
                sleep(wait).await;
                round.wait = None;
                to += 1;
            }
            // The round ends early (budget spent) or at its last row.
            let mut last = true;
            if let Some(pacer) = self.pacer.as_mut() {
                while to < n {
                    let wait = pacer.delay(self.outbox.trips.pickup[to]);
                    if !wait.is_zero() {
                        last = round.started.elapsed() >= ROUND_BUDGET;
                        if !last {
                            round.wait = Some(wait);
                        }
                        break;
                    }
                    to += 1;
                }
            } else {
                to = n;
            }
            round.next = to;
            if to == from && !last && round.marker.is_none() {
                continue;
            }
            self.metrics.records_in((to - from) as u64);
            return Ok(Pull::Batch {
                batch: OutboxRows {
                    outbox: Rc::clone(&self.outbox),
                    rows: from..to,
                    marker: round.marker.take(),
                    floor: round.floor,
                    key_groups: round.key_groups,
                },
                barrier: last,
            });
        }
    }

    /// Commits the round with the rows pulled so far and `watermark`.
    async fn commit(&mut self, watermark: Option<Micros>) -> Result<(), StageError> {
        let Some(round) = self.round.take() else {
            return Ok(());
        };
        let mut progress = RelayProgress {
            finished: round.finished,
            watermark,
            key_groups: Some(round.key_groups),
            ..Default::default()
        };
        let last = round.next.checked_sub(1);
        if let Some((source, i)) = round.source.zip(last) {
            let o = &self.outbox;
            progress
                .positions
                .push((source, (o.trips.pickup[i], o.ids[i])));
        }
        round.tx.commit(&progress).await?;
        self.rounds += 1;
        Ok(())
    }
}

/// What one round publishes: the source chosen, and the bound on pickups
/// that keeps the merge over sources in pickup order.
#[derive(Debug, PartialEq)]
struct Plan<'a> {
    /// Earliest pickup still to publish over the sources in flight.
    frontier: Option<Micros>,
    next: Option<(&'a RelaySource, Option<Micros>)>,
    finished: Vec<String>,
}

/// Decides a round from the sources' state (pure, for tests).
fn plan(sources: &[RelaySource]) -> Plan<'_> {
    let finished = sources
        .iter()
        .filter(|s| s.completed && s.next.is_none())
        .map(|s| s.source.clone())
        .collect();
    let in_flight: Vec<&RelaySource> = sources.iter().filter(|s| s.next.is_some()).collect();
    let frontier = in_flight.iter().filter_map(|s| s.next.map(|n| n.0)).min();
    let chosen = in_flight
        .iter()
        .filter(|s| s.completed)
        .min_by_key(|s| s.next)
        .copied();
    let next = chosen.and_then(|c| {
        let bound = in_flight
            .iter()
            .filter(|s| s.source != c.source)
            .filter_map(|s| s.next.map(|n| n.0))
            .min();
        let first = c.next.map_or(Micros::MAX, |n| n.0);
        // Waiting for a source still landing whose earliest row is earlier.
        bound.is_none_or(|b| first <= b).then_some((c, bound))
    });
    Plan {
        frontier,
        next,
        finished,
    }
}

/// The longest wall-clock pause replay makes for a stretch with no pickups.
const MAX_GAP: Duration = Duration::from_secs(60);

/// Event-time pacing for replay mode.
struct Pacer {
    speedup: f64,
    origin: Option<(Micros, Instant)>,
    /// Pickup times jitter; never wait for an earlier time than already reached.
    high: Micros,
}

impl Pacer {
    /// `None` (no pacing) unless `speedup` is a positive finite number: a
    /// zero would wait forever and a negative or NaN one has no meaning.
    fn new(speedup: f64) -> Option<Self> {
        (speedup.is_finite() && speedup > 0.0).then_some(Self {
            speedup,
            origin: None,
            high: Micros::MIN,
        })
    }

    fn delay(&mut self, pickup: Micros) -> Duration {
        let now = Instant::now();
        let (mut first, mut started) = *self.origin.get_or_insert((pickup, now));
        if self.high != Micros::MIN && pickup > self.high {
            let gap_s = (pickup - self.high) as f64 / MICROS_PER_SECOND as f64 / self.speedup;
            // In pickup order a month's stray early pickups come first, days
            // before the rest: an empty stretch of event time is shortened
            // rather than waited out.
            if gap_s > MAX_GAP.as_secs_f64() {
                (first, started) = (pickup, now + MAX_GAP);
                self.origin = Some((first, started));
            }
        }
        self.high = self.high.max(pickup);
        let event_elapsed = (self.high - first).max(0) as f64 / MICROS_PER_SECOND as f64;
        let wait = event_elapsed / self.speedup;
        // Beyond a year of wall time is a configuration mistake, not a plan.
        let due = started + Duration::from_secs_f64(wait.min(365.0 * 86_400.0));
        due.saturating_duration_since(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_waits_for_event_time_over_speedup_and_never_backwards() {
        let mut p = Pacer::new(60.0).unwrap();
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

    #[test]
    fn replay_shortens_empty_stretches_of_event_time() {
        let mut p = Pacer::new(60.0).unwrap();
        let t0 = 1_738_368_000_000_000;
        assert!(p.delay(t0).is_zero());
        // Two weeks later would be five and a half hours at 60x.
        let two_weeks = 14 * 86_400 * MICROS_PER_SECOND;
        let d = p.delay(t0 + two_weeks);
        assert!(
            d <= MAX_GAP && d > MAX_GAP - Duration::from_millis(100),
            "{d:?}"
        );
        // Pacing resumes from there at the same speed.
        let e = p.delay(t0 + two_weeks + 60 * MICROS_PER_SECOND);
        assert!(
            e > MAX_GAP && e <= MAX_GAP + Duration::from_secs(1),
            "{e:?}"
        );
    }

    #[test]
    fn speedups_that_cannot_pace_disable_pacing() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(Pacer::new(bad).is_none(), "{bad}");
        }
        let mut tiny = Pacer::new(f64::MIN_POSITIVE).unwrap();
        tiny.delay(0);
        assert!(tiny.delay(3_600 * MICROS_PER_SECOND) <= Duration::from_secs(366 * 86_400));
    }

    fn src(name: &str, completed: bool, next: Option<i64>) -> RelaySource {
        RelaySource {
            source: name.into(),
            completed,
            position: None,
            next: next.map(|n| (n, 1)),
        }
    }

    #[test]
    fn plan_merges_completed_sources_and_waits_for_earlier_ones_still_landing() {
        let s = [
            src("a", true, Some(50)),
            src("b", true, Some(10)),
            src("c", true, None),
        ];
        let p = plan(&s);
        assert_eq!(p.frontier, Some(10));
        assert_eq!(
            p.next.map(|(s, b)| (s.source.as_str(), b)),
            Some(("b", Some(50)))
        );
        assert_eq!(p.finished, vec!["c".to_string()]);

        // A source still landing with an earlier row holds the others back.
        let s = [src("a", true, Some(50)), src("d", false, Some(20))];
        let p = plan(&s);
        assert_eq!((p.frontier, p.next), (Some(20), None));
        // Nothing in flight: the caller sends the end-of-source watermark.
        let s = [src("c", true, None)];
        assert_eq!(plan(&s).frontier, None);
    }
}
