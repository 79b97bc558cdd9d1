//! `run`'s transform: the batches of every input → validated → windowed →
//! window results; rows that fail a check, and in file order late rows, are
//! dead letters.
//!
//! Files are history, not a live feed, so by default every input is read
//! first and the valid rows of all of them are windowed in one event-time
//! order: by pickup, equal pickups in input order, then in file order
//! ([`super::event_time_merge`]). That is the order in which the relay
//! publishes completed sources, so `run` and the pipeline compute the same
//! windows whatever order the files are given in, and nothing trails the
//! watermark: the windows are computed when the input ends, a merged batch
//! at a time ([`Transform::finish_part`]). In file order, rows are windowed
//! as read and the watermark follows the newest pickup seen.

use std::time::{Duration, Instant};

use crate::dead_letter::{DeadLetter, DeadLetterCounts, Reason};
use crate::flow::{Rebalance, Transform};
use crate::source::inputs::{InputBatch, Origin};
use crate::transform::event_time_merge::{EventTimeMerge, MergeDrain, RUN_ROWS, SpillError};
use crate::validate::Validator;
use crate::window::{KeyMapper, WindowConfig, WindowEngine, WindowInput, WindowResult, WindowRows};
use crate::zones::ZoneLookup;

#[derive(Debug, thiserror::Error)]
pub enum LocalWindowsError {
    #[error(transparent)]
    Spill(#[from] SpillError),
    /// Merged by pickup, no row can trail the watermark (it follows the
    /// newest pickup, minus a lateness of zero or more); one that does is a
    /// bug in the merge, not a late trip.
    #[error("internal error: {0} rows came late in event-time order")]
    LateInEventTime(usize),
}

/// What the transform counted.
#[derive(Debug, Clone, Default)]
pub struct LocalWindowsStats {
    /// Rows read, parsed or not.
    pub rows_read: u64,
    /// Rows that passed validation and were offered to the windows.
    pub rows_valid: u64,
    /// Rows counted in windows.
    pub rows_windowed: u64,
    /// Valid rows with a negative amount (kept).
    pub refunds: u64,
    pub dead_letters: DeadLetterCounts,
    /// Hopping windows: (record, window) pairs skipped because that window
    /// had closed while the record still counted in its newer windows.
    pub late_window_assignments: u64,
    /// Time spent sorting runs and in the window engine.
    pub window_elapsed: Duration,
}

/// Rows waiting for the event-time merge.
struct Merging {
    /// Keys the rows kept, as the engine would.
    keys: KeyMapper,
    key_buf: Vec<u16>,
    /// Valid rows of the run being read (part of one input).
    buffered: WindowRows,
    /// Sorted runs of the rows read; taken when the input ends.
    merge: EventTimeMerge,
    drain: Option<MergeDrain>,
}

pub struct LocalWindows {
    engine: WindowEngine,
    tolerance_days: i64,
    /// The input being read and its validator: one per input, as each file
    /// is checked against its own month.
    validating: Option<(usize, Validator)>,
    /// `None` in file order.
    merging: Option<Box<Merging>>,
    mask: Vec<bool>,
    late: Vec<usize>,
    stats: LocalWindowsStats,
}

impl LocalWindows {
    /// Windows by `window`; pickups more than `tolerance_days` outside a
    /// file's month are dead letters. `event_time_order`: merge every input
    /// by pickup before windowing, rather than window in file order.
    pub fn new(
        window: WindowConfig,
        zones: &ZoneLookup,
        tolerance_days: i64,
        event_time_order: bool,
    ) -> Self {
        let merging = event_time_order.then(|| {
            Box::new(Merging {
                keys: KeyMapper::new(window.group_by, zones),
                key_buf: Vec::new(),
                buffered: WindowRows::default(),
                merge: EventTimeMerge::default(),
                drain: None,
            })
        });
        Self {
            engine: WindowEngine::new(window, zones),
            tolerance_days,
            validating: None,
            merging,
            mask: Vec::new(),
            late: Vec::new(),
            stats: LocalWindowsStats::default(),
        }
    }

    pub fn event_time_order(&self) -> bool {
        self.merging.is_some()
    }

    pub fn stats(&self) -> LocalWindowsStats {
        LocalWindowsStats {
            late_window_assignments: self.engine.stats().late_window_assignments,
            ..self.stats.clone()
        }
    }

    /// The end of a run (its size reached, or its input done): its valid
    /// rows join the merge.
    fn end_run(&mut self) -> Result<(), SpillError> {
        if let Some(m) = &mut self.merging {
            let t0 = Instant::now();
            m.merge.add_run(std::mem::take(&mut m.buffered))?;
            self.stats.window_elapsed += t0.elapsed();
        }
        Ok(())
    }
}

/// Offers rows to the engine, timed; those late for all their windows are
/// left in `late`.
fn push(
    engine: &mut WindowEngine,
    rows: &impl WindowInput,
    mask: Option<&[bool]>,
    out: &mut Vec<WindowResult>,
    late: &mut Vec<usize>,
    elapsed: &mut Duration,
) {
    let t0 = Instant::now();
    late.clear();
    engine.push_batch(rows, mask, out, late);
    *elapsed += t0.elapsed();
}

impl Transform for LocalWindows {
    type In = InputBatch;
    type Out = Vec<WindowResult>;
    type State = ();
    type Error = LocalWindowsError;

    /// Validates one batch and windows it, or keeps its valid rows for the
    /// event-time merge.
    fn apply(
        &mut self,
        input: InputBatch,
        out: &mut Vec<WindowResult>,
        dead: &mut Vec<DeadLetter>,
    ) -> Result<(), LocalWindowsError> {
        let InputBatch {
            input,
            origin,
            batch,
        } = input;
        if self.validating.as_ref().is_some_and(|(i, _)| *i != input) {
            // The previous input is done: its last rows make a run.
            self.end_run()?;
            self.validating = None;
        }
        let tolerance = self.tolerance_days;
        let (_, validator) = self.validating.get_or_insert_with(|| {
            let validator = match origin {
                Origin::File { month } => Validator::new(month, tolerance),
                Origin::OpenData => Validator::for_open_data(tolerance),
            };
            (input, validator)
        });
        self.stats.rows_read += (batch.trips.len() + batch.rejects.len()) as u64;
        let counts = &mut self.stats.dead_letters;
        for d in batch.rejects {
            counts.add(d.reason, 1);
            dead.push(d);
        }
        let trips = batch.trips;
        let mut mask = std::mem::take(&mut self.mask);
        let check = validator.check(&trips, &mut mask, |d| {
            counts.add(d.reason, 1);
            dead.push(d);
        });
        self.stats.rows_valid += check.valid;
        self.stats.refunds += check.refunds;
        match &mut self.merging {
            Some(m) => {
                if check.valid > 0 {
                    if m.buffered.is_empty() {
                        // Memory holds the run being read and at most one sorted run.
                        m.merge.spill_last()?;
                    }
                    m.buffered
                        .extend_selected(&trips, &mask, &m.keys, &mut m.key_buf);
                    if m.buffered.len() >= RUN_ROWS {
                        self.end_run()?;
                    }
                }
            }
            None => {
                push(
                    &mut self.engine,
                    &trips,
                    Some(&mask),
                    out,
                    &mut self.late,
                    &mut self.stats.window_elapsed,
                );
                let offered = mask.iter().filter(|&&v| v).count();
                self.stats.rows_windowed += (offered - self.late.len()) as u64;
                let watermark = self.engine.watermark();
                for &i in &self.late {
                    self.stats.dead_letters.add(Reason::Late, 1);
                    dead.push(DeadLetter::late(trips.row(i), watermark));
                }
            }
        }
        self.mask = mask;
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<WindowResult>) -> Result<(), LocalWindowsError> {
        while self.finish_part(out)? {}
        Ok(())
    }

    /// One merged batch windowed at a time, then the windows still open.
    fn finish_part(&mut self, out: &mut Vec<WindowResult>) -> Result<bool, LocalWindowsError> {
        if self.merging.as_ref().is_some_and(|m| m.drain.is_none()) {
            // The last input is done: its last rows make a run.
            self.end_run()?;
        }
        if let Some(m) = &mut self.merging {
            let drain = match &mut m.drain {
                Some(drain) => drain,
                None => m.drain.insert(std::mem::take(&mut m.merge).into_drain()?),
            };
            if let Some(rows) = drain.next_batch()? {
                push(
                    &mut self.engine,
                    rows,
                    None,
                    out,
                    &mut self.late,
                    &mut self.stats.window_elapsed,
                );
                if !self.late.is_empty() {
                    return Err(LocalWindowsError::LateInEventTime(self.late.len()));
                }
                self.stats.rows_windowed += rows.len() as u64;
                return Ok(true);
            }
        }
        let t0 = Instant::now();
        self.engine.flush(out);
        self.stats.window_elapsed += t0.elapsed();
        Ok(false)
    }

    fn checkpoint(&mut self) -> Result<(), LocalWindowsError> {
        Ok(())
    }

    /// Files are not partitioned: nothing rebalances.
    fn rebalance(&mut self, _change: Rebalance<()>) -> Result<(), LocalWindowsError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::ReadBatch;
    use crate::trip::{Dataset, SourceRef, Trip, TripBatch};
    use crate::validate::Month;
    use crate::window::GroupBy;

    const MIN: i64 = 60_000_000;

    fn trip(row: u64, pickup: i64) -> Trip {
        Trip {
            source: SourceRef {
                source: "test".into(),
                row,
            },
            dataset: Dataset::Yellow,
            vendor_id: Some(2),
            pickup,
            dropoff: pickup + 12 * MIN,
            passenger_count: Some((row % 5) as i32 + 1),
            trip_distance: 1.0 + (row % 7) as f64,
            ratecode_id: Some(1),
            store_and_fwd: Some(false),
            pu_location_id: (row % 263) as i32 + 1,
            do_location_id: 236,
            payment_type: Some(1),
            fare_amount: 10.0 + (row % 11) as f64,
            extra: 0.0,
            mta_tax: 0.5,
            tip_amount: 2.0,
            tolls_amount: 0.0,
            improvement_surcharge: 1.0,
            total_amount: 14.0 + (row % 11) as f64,
            congestion_surcharge: None,
            airport_fee: None,
            cbd_congestion_fee: None,
            ehail_fee: None,
            trip_type: None,
            refund: false,
        }
    }

    fn sorted(mut results: Vec<WindowResult>) -> Vec<(i64, i32, u64, u64)> {
        results.sort_by_key(|r| (r.window_start, r.key));
        results
            .iter()
            .map(|r| (r.window_start, r.key, r.count, r.sum_fare.to_bits()))
            .collect()
    }

    /// Inputs given latest first, with more valid rows than one merged
    /// batch: the windows come out in several parts and equal the windows
    /// of every row in pickup order.
    #[test]
    fn the_merge_is_windowed_a_part_at_a_time_in_pickup_order() {
        let jan = Month::new(2023, 1).unwrap().start();
        let late: Vec<Trip> = (0..60_000)
            .map(|i| trip(i, jan + 20 * 86_400 * 1_000_000 + (i as i64 % 997) * MIN))
            .collect();
        let early: Vec<Trip> = (0..60_000)
            .map(|i| trip(i, jan + 2 * 86_400 * 1_000_000 + (i as i64 % 1_009) * MIN))
            .collect();
        let config = WindowConfig::tumbling(300, 600, GroupBy::PickupZone).unwrap();
        let zones = ZoneLookup::embedded();
        let mut windows = LocalWindows::new(config, zones, 31, true);
        let mut out = Vec::new();
        let mut dead = Vec::new();
        for (input, trips) in [&late, &early].into_iter().enumerate() {
            for part in trips.chunks(25_000) {
                let batch = InputBatch {
                    input,
                    origin: Origin::File {
                        month: Month::new(2023, 1),
                    },
                    batch: ReadBatch {
                        trips: TripBatch::from_trips("test".into(), Dataset::Yellow, part),
                        rejects: Vec::new(),
                    },
                };
                windows.apply(batch, &mut out, &mut dead).unwrap();
            }
        }
        assert!(out.is_empty(), "nothing is windowed before the input ends");
        assert!(dead.is_empty());
        let mut results = Vec::new();
        let mut parts = 1;
        while windows.finish_part(&mut out).unwrap() {
            results.append(&mut out);
            parts += 1;
        }
        results.append(&mut out);
        assert!(parts >= 3, "{parts} parts for two merged batches");
        let stats = windows.stats();
        assert_eq!(
            (stats.rows_read, stats.rows_valid, stats.rows_windowed),
            (120_000, 120_000, 120_000)
        );

        let mut all: Vec<Trip> = late.iter().chain(&early).cloned().collect();
        all.sort_by_key(|t| t.pickup);
        let mut engine = WindowEngine::new(config, zones);
        let mut want = Vec::new();
        let mut none_late = Vec::new();
        let batch = TripBatch::from_trips("test".into(), Dataset::Yellow, &all);
        engine.push_batch(&batch, None, &mut want, &mut none_late);
        engine.flush(&mut want);
        assert!(none_late.is_empty());
        assert_eq!(sorted(results), sorted(want));
    }
}
