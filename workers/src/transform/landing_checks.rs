//! A source's read batches → the rows to land (`ingest`): each batch is
//! validated, and only what lies at or after the source's recorded progress
//! goes on, so a restart lands (and dead-letters) nothing twice. Rows that
//! do not parse or fail a check become dead letters.

use std::convert::Infallible;

use crate::dead_letter::DeadLetter;
use crate::flow::{Rebalance, Transform};
use crate::source::ReadBatch;
use crate::trip::TripBatch;
use crate::validate::Validator;

/// What one read batch adds to the landing table.
#[derive(Debug, Default)]
pub struct LandingBatch {
    /// The valid rows at or after the source's progress.
    pub trips: TripBatch,
    /// Rows read, parsed or not, landed before or not: what the batch
    /// counts as input.
    pub read: u64,
    /// The source's progress once the batch is in: past every row read so
    /// far, so a restart does not read them again.
    pub next_row: u64,
}

pub struct LandingChecks {
    validator: Validator,
    /// The source's progress when this run started.
    from_row: u64,
    next_row: u64,
    valid: Vec<bool>,
}

impl LandingChecks {
    /// Checks a source whose rows before `from_row` were landed (or
    /// dead-lettered) by an earlier run.
    pub fn new(validator: Validator, from_row: u64) -> Self {
        Self {
            validator,
            from_row,
            next_row: from_row,
            valid: Vec::new(),
        }
    }

    /// Past every row applied so far (at least the progress it started from).
    pub fn next_row(&self) -> u64 {
        self.next_row
    }
}

impl Transform for LandingChecks {
    type In = ReadBatch;
    type Out = LandingBatch;
    type State = ();
    type Error = Infallible;

    fn apply(
        &mut self,
        input: ReadBatch,
        out: &mut LandingBatch,
        dead: &mut Vec<DeadLetter>,
    ) -> Result<(), Infallible> {
        let ReadBatch { mut trips, rejects } = input;
        let from_row = self.from_row;
        out.read += (trips.len() + rejects.len()) as u64;
        // Parse rejects have no row in `trips`, yet are read: the progress
        // must pass them too.
        let batch_end = trips
            .row
            .iter()
            .chain(rejects.iter().map(|d| &d.source.row))
            .max()
            .map_or(self.next_row, |r| r + 1);
        self.next_row = self.next_row.max(batch_end);
        out.next_row = self.next_row;
        dead.extend(rejects.into_iter().filter(|d| d.source.row >= from_row));
        self.validator.check(&trips, &mut self.valid, |d| {
            if d.source.row >= from_row {
                dead.push(d);
            }
        });
        for (keep, row) in self.valid.iter_mut().zip(&trips.row) {
            *keep &= *row >= from_row;
        }
        trips.retain(&self.valid);
        if out.trips.is_empty() {
            out.trips = trips;
        } else {
            for i in 0..trips.len() {
                out.trips.push_from(&trips, i);
            }
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut LandingBatch) -> Result<(), Infallible> {
        Ok(())
    }

    fn checkpoint(&mut self) -> Result<(), Infallible> {
        Ok(())
    }

    fn rebalance(&mut self, _change: Rebalance<()>) -> Result<(), Infallible> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::dead_letter::Reason;
    use crate::trip::{Dataset, SourceRef, Trip};
    use crate::validate::{DEFAULT_MONTH_TOLERANCE_DAYS, Month};

    const NAME: &str = "yellow_tripdata_2024-03.csv";

    fn trip(row: u64, zone: i32) -> Trip {
        let pickup = Month::new(2024, 3).map_or(0, Month::start) + 3_600_000_000;
        let mut batch = TripBatch::with_capacity(Arc::from(NAME), Dataset::Yellow, 1);
        batch.row.push(row);
        batch.vendor_id.push(1);
        batch.pickup.push(pickup);
        batch.dropoff.push(pickup + 600_000_000);
        batch.passenger_count.push(1);
        batch.trip_distance.push(1.5);
        batch.ratecode_id.push(1);
        batch.store_and_fwd.push(0);
        batch.pu_location_id.push(zone);
        batch.do_location_id.push(236);
        batch.payment_type.push(1);
        for column in [
            &mut batch.fare_amount,
            &mut batch.extra,
            &mut batch.mta_tax,
            &mut batch.tip_amount,
            &mut batch.tolls_amount,
            &mut batch.improvement_surcharge,
            &mut batch.total_amount,
        ] {
            column.push(1.0);
        }
        for column in [
            &mut batch.congestion_surcharge,
            &mut batch.airport_fee,
            &mut batch.cbd_congestion_fee,
            &mut batch.ehail_fee,
        ] {
            column.push(f64::NAN);
        }
        batch.trip_type.push(crate::trip::NULL_I32);
        batch.row(0)
    }

    /// Rows `rows` (zone 999 fails validation), with a parse reject at `unparsable`.
    fn read(rows: &[(u64, i32)], unparsable: u64) -> ReadBatch {
        let trips: Vec<Trip> = rows.iter().map(|&(r, z)| trip(r, z)).collect();
        ReadBatch {
            trips: TripBatch::from_trips(Arc::from(NAME), Dataset::Yellow, &trips),
            rejects: vec![DeadLetter::unparsable(
                SourceRef {
                    source: NAME.into(),
                    row: unparsable,
                },
                "fare_amount",
                "not a number".into(),
                None,
            )],
        }
    }

    #[test]
    fn keeps_what_lies_past_the_progress_and_counts_everything_read() {
        let validator = Validator::for_file(NAME, DEFAULT_MONTH_TOLERANCE_DAYS);
        let mut checks = LandingChecks::new(validator, 3);
        let (mut out, mut dead) = (LandingBatch::default(), Vec::new());
        let batch = read(&[(0, 132), (1, 999), (3, 132), (4, 999)], 2);
        checks.apply(batch, &mut out, &mut dead).unwrap();
        assert_eq!(out.trips.row, vec![3]);
        assert_eq!(out.read, 5);
        assert_eq!(
            dead.iter()
                .map(|d| (d.source.row, d.reason))
                .collect::<Vec<_>>(),
            vec![(4, Reason::ZoneOutOfRange)],
            "rejects before the progress were dead-lettered already"
        );
        // A batch ending in a parse reject still moves the progress past it.
        checks
            .apply(read(&[(5, 132)], 6), &mut out, &mut dead)
            .unwrap();
        assert_eq!(out.trips.row, vec![3, 5], "a second batch is appended");
        assert_eq!((out.read, out.next_row, checks.next_row()), (7, 7, 7));
        assert_eq!(dead.last().map(|d| d.source.row), Some(6));
    }
}
