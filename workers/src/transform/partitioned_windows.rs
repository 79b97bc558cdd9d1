//! Trips-topic messages → window results, one window engine per partition
//! (`aggregate`).
//!
//! Windows close on the watermark the relay carries (stamped on every trip
//! and sent as markers to every partition), not on the pickups a partition
//! happens to see, so which zones share a partition changes nothing: every
//! engine closes the same windows at the same event time, and the
//! end-of-source watermark closes the last windows of a finished source
//! without any idle timeout. The engine is deterministic, so replaying a
//! partition from its checkpoint reproduces the same windows bit for bit.
//!
//! The relay may publish a trip twice after a crash of its own. It publishes
//! each source in (pickup, landing id) order, so in a partition the trips of
//! one source arrive in increasing order of that pair; a copy is at or before
//! the last pair counted for its source and is dropped here (counted in
//! the records in, never in a window).
//!
//! Copies and trips the validator rejects are masked out of a message's
//! batch, and the rest go through the engine in one call with their carried
//! stamps. A rejected or late trip is dead-lettered on its own, as a
//! one-trip `trip/3` message whose origin names the message it came in and
//! its index there (`topic/partition@offset#i`).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use crate::dead_letter::{DeadLetter, RawMessage};
use crate::error::StageError;
use crate::flow::{Partition, Rebalance, Transform};
use crate::io::codec::{self, TripBatchMessage};
use crate::source::trips_topic::{Content, Origin, PartitionCheckpoint, TripsMessage};
use crate::trip::{Micros, SourceRef};
use crate::validate::Validator;
use crate::window::{WindowConfig, WindowEngine, WindowResult};
use crate::zones::ZoneLookup;

/// Window results, each with the instant its window closed (`None`: at the
/// end of input), from which the sink stamps and times it.
#[derive(Debug, Default)]
pub struct ClosedWindows {
    pub results: Vec<WindowResult>,
    pub closed_at: Vec<Option<Instant>>,
}

impl ClosedWindows {
    /// Stamps the results appended since `from` with `at`.
    fn closed(&mut self, from: usize, at: Option<Instant>) {
        self.closed_at
            .extend(std::iter::repeat_n(at, self.results.len() - from));
    }

    pub fn clear(&mut self) {
        self.results.clear();
        self.closed_at.clear();
    }
}

struct PartitionWindows {
    engine: WindowEngine,
    next_offset: i64,
    /// Per source, the last (pickup, landing id) counted.
    positions: BTreeMap<String, (Micros, i64)>,
    /// Progress since the last checkpoint.
    dirty: bool,
}

pub struct PartitionedWindows {
    config: WindowConfig,
    zones: &'static ZoneLookup,
    validator: Validator,
    partitions: HashMap<Partition, PartitionWindows>,
    pub duplicates: u64,
    /// Per row of the message at hand: whether it goes into the windows.
    include: Vec<bool>,
    valid: Vec<bool>,
    rejected: Vec<DeadLetter>,
    late: Vec<usize>,
}

impl PartitionedWindows {
    pub fn new(config: WindowConfig, zones: &'static ZoneLookup) -> Self {
        Self {
            config,
            zones,
            // Kafka carries every month; only the record-level checks apply here.
            validator: Validator::new(None, 365 * 1000),
            partitions: HashMap::new(),
            duplicates: 0,
            include: Vec::new(),
            valid: Vec::new(),
            rejected: Vec::new(),
            late: Vec::new(),
        }
    }

    /// Logs each partition's position and engine counters.
    pub fn log_partitions(&self) {
        for ((topic, partition), p) in &self.partitions {
            let e = p.engine.stats();
            tracing::info!(
                %topic,
                partition,
                next_offset = p.next_offset,
                records = e.records,
                late = e.late,
                windows = e.windows_emitted,
                "partition at exit"
            );
        }
    }

    /// The trips of one message: drops re-published copies, validates and
    /// windows the rest as one batch.
    fn trips(
        &mut self,
        from: &Origin,
        decoded: &TripBatchMessage,
        out: &mut ClosedWindows,
        dead: &mut Vec<DeadLetter>,
    ) {
        let Some(state) = self.partitions.get_mut(&from.partition) else {
            return;
        };
        let trips = &decoded.trips;
        // A partition sees each source's trips in increasing (pickup,
        // landing id) order: one at or before the last counted is a copy.
        let counted_before = state.positions.get(&*trips.source).copied();
        let mut last = counted_before;
        self.include.clear();
        for (&pickup, &id) in trips.pickup.iter().zip(&decoded.landing_id) {
            let fresh = last.is_none_or(|l| (pickup, id) > l);
            if fresh {
                last = Some((pickup, id));
            } else {
                self.duplicates += 1;
            }
            self.include.push(fresh);
        }
        // Field checks: the message may not have come from our relay.
        let rejected = &mut self.rejected;
        rejected.clear();
        self.validator
            .check(trips, &mut self.valid, |dl| rejected.push(dl));
        let origin = from.to_string();
        let letter = |mut dl: DeadLetter, i: usize| {
            let mut value = Vec::new();
            codec::encode_trip_batch(
                trips,
                &decoded.landing_id,
                &decoded.watermark,
                &[i],
                &mut value,
            );
            dl.source = SourceRef {
                source: origin.clone(),
                row: i as u64,
            };
            dl.message = Some(RawMessage {
                key: from.key.clone(),
                value,
            });
            dl
        };
        let invalid = self.valid.iter().enumerate().filter(|(_, v)| !**v);
        for ((i, _), dl) in invalid.zip(self.rejected.drain(..)) {
            // A copy is dropped whatever it holds: its first copy was judged.
            if self.include[i] {
                self.include[i] = false;
                dead.push(letter(dl, i));
            }
        }
        let start = out.results.len();
        self.late.clear();
        state.engine.push_carried(
            trips,
            Some(&self.include),
            &decoded.watermark,
            &mut out.results,
            &mut self.late,
        );
        out.closed(start, Some(Instant::now()));
        let watermark = state.engine.watermark();
        for &i in &self.late {
            dead.push(letter(DeadLetter::late(trips.row(i), watermark), i));
        }
        if let Some(l) = last.filter(|_| last != counted_before) {
            match state.positions.get_mut(&*trips.source) {
                Some(p) => *p = l,
                None => {
                    state.positions.insert(trips.source.to_string(), l);
                }
            }
        }
    }
}

impl Transform for PartitionedWindows {
    type In = TripsMessage;
    type Out = ClosedWindows;
    type State = Vec<PartitionCheckpoint>;
    type Error = StageError;

    fn apply(
        &mut self,
        message: TripsMessage,
        out: &mut ClosedWindows,
        dead: &mut Vec<DeadLetter>,
    ) -> Result<(), StageError> {
        let TripsMessage { from, content } = message;
        match content {
            Content::Trips(decoded) => self.trips(&from, &decoded, out, dead),
            Content::Watermark(w) => {
                if let Some(state) = self.partitions.get_mut(&from.partition) {
                    let start = out.results.len();
                    state.engine.advance(w, &mut out.results);
                    out.closed(start, Some(Instant::now()));
                }
            }
            Content::Malformed(letter) => dead.push(*letter),
        }
        if let Some(state) = self.partitions.get_mut(&from.partition) {
            state.next_offset = from.offset + 1;
            state.dirty = true;
        }
        Ok(())
    }

    /// Closes every open window of every partition.
    fn finish(&mut self, out: &mut ClosedWindows) -> Result<(), StageError> {
        for state in self.partitions.values_mut() {
            let start = out.results.len();
            state.engine.flush(&mut out.results);
            out.closed(start, None);
            state.dirty = true;
        }
        Ok(())
    }

    fn checkpoint(&mut self) -> Result<Vec<PartitionCheckpoint>, StageError> {
        let mut checkpoints = Vec::new();
        for (partition, state) in self.partitions.iter_mut().filter(|(_, s)| s.dirty) {
            checkpoints.push(PartitionCheckpoint {
                partition: partition.clone(),
                next_offset: state.next_offset,
                positions: state.positions.clone(),
                snapshot: Some(state.engine.snapshot()),
            });
            state.dirty = false;
        }
        Ok(checkpoints)
    }

    fn rebalance(&mut self, change: Rebalance<Vec<PartitionCheckpoint>>) -> Result<(), StageError> {
        match change {
            Rebalance::Assigned(gained) => {
                for cp in gained {
                    let engine = match cp.snapshot {
                        Some(s) => WindowEngine::restore(s, self.zones)?,
                        None => WindowEngine::new(self.config, self.zones),
                    };
                    let (topic, partition) = &cp.partition;
                    tracing::info!(%topic, partition, next_offset = cp.next_offset, open_windows = engine.open_windows(), "partition assigned");
                    self.partitions.insert(
                        cp.partition,
                        PartitionWindows {
                            engine,
                            next_offset: cp.next_offset,
                            positions: cp.positions,
                            dirty: false,
                        },
                    );
                }
            }
            Rebalance::Revoked(lost) => {
                for key in lost {
                    if let Some(state) = self.partitions.remove(&key) {
                        tracing::info!(
                            topic = %key.0,
                            partition = key.1,
                            dropped_open_windows = state.engine.open_windows(),
                            "partition revoked; its next owner resumes from the last checkpoint"
                        );
                    }
                }
            }
        }
        Ok(())
    }
}
