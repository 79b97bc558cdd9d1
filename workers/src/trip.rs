//! The one normalised trip record every reader produces and every stage consumes.
//!
//! TLC layouts differ by year and by format (Parquet, CSV, Socrata JSON): column
//! names change case, integers arrive as doubles or strings, fees appear and
//! disappear. Readers map all of them onto two shapes defined here:
//!
//! - [`TripBatch`]: columnar (struct of arrays), what readers emit and what the
//!   window engine consumes batch at a time without per-row allocation;
//! - [`Trip`]: one row, owned and serialisable, for row-oriented stages (the
//!   PostgreSQL landing table, Kafka messages, dead letters).
//!
//! Timestamps are naive New York local time (the TLC publishes no zone or
//! offset), stored as microseconds since `1970-01-01 00:00:00` of that naive
//! clock ([`Micros`]). Converting them to UTC would invent information the data
//! does not have and make DST hours ambiguous.
//!
//! Every row carries its source identity ([`SourceRef`]: the file, URL or API
//! dataset, plus the row number within it), which is what makes landing
//! idempotent and what dead letters point back to.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDateTime, Timelike};
use chrono_tz::America::New_York;
use serde::{Deserialize, Serialize};

pub use taxistream_crds::pipeline::Dataset;

/// Naive local timestamp: microseconds since `1970-01-01 00:00:00` (no zone).
pub type Micros = i64;

/// Microseconds in one second.
pub const MICROS_PER_SECOND: i64 = 1_000_000;

/// Converts a naive timestamp to [`Micros`].
pub fn micros_from_naive(ts: NaiveDateTime) -> Micros {
    ts.and_utc().timestamp_micros()
}

/// New York local time of a UTC instant (microseconds since the Unix
/// epoch), as [`Micros`]: files that store instants (Parquet timestamps with
/// a time zone, text with an offset) are brought onto the TLC's clock.
pub fn new_york_from_utc(utc: Micros) -> Micros {
    match DateTime::from_timestamp_micros(utc) {
        Some(instant) => micros_from_naive(instant.with_timezone(&New_York).naive_local()),
        // Out of chrono's range: no zone rule applies to such an instant.
        None => utc,
    }
}

/// Converts [`Micros`] back to a naive timestamp; `None` only for values
/// outside chrono's range (hundreds of thousands of years away).
pub fn naive_from_micros(us: Micros) -> Option<NaiveDateTime> {
    DateTime::from_timestamp_micros(us).map(|dt| dt.naive_utc())
}

/// Formats [`Micros`] as `YYYY-MM-DD HH:MM:SS` (with fractional seconds only when present).
pub fn format_micros(us: Micros) -> String {
    let mut out = String::with_capacity(26);
    // Writing to a String cannot fail.
    let _ = write_micros(&mut out, us);
    out
}

/// Writes `us` as [`format_micros`] does, into `out`: the result writers
/// format two timestamps per row and would otherwise allocate both.
pub fn write_micros(out: &mut impl fmt::Write, us: Micros) -> fmt::Result {
    let fraction = us.rem_euclid(MICROS_PER_SECOND);
    match naive_from_micros(us) {
        // Four-digit years by hand: chrono's `format` parses its pattern on
        // every call.
        Some(ts) if (0..=9999).contains(&ts.year()) => {
            write!(
                out,
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                ts.year(),
                ts.month(),
                ts.day(),
                ts.hour(),
                ts.minute(),
                ts.second()
            )?;
            if fraction != 0 {
                write!(out, ".{fraction:06}")?;
            }
            Ok(())
        }
        Some(ts) if fraction == 0 => write!(out, "{}", ts.format("%Y-%m-%d %H:%M:%S")),
        Some(ts) => write!(out, "{}", ts.format("%Y-%m-%d %H:%M:%S%.6f")),
        None => write!(out, "{us}us"),
    }
}

/// Where a record came from: a file path, an `http(s)` URL, or an Open Data
/// dataset (`opendata:<domain>/<dataset-id>`), plus its 0-based data row number
/// within that source (header lines not counted; for the API, the position in
/// the `:id`-ordered result set).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceRef {
    pub source: String,
    pub row: u64,
}

impl fmt::Display for SourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} row {}", self.source, self.row)
    }
}

/// One normalised trip record.
///
/// Fields that the TLC allows to be null are `Option`s. Amounts are kept as
/// published, including negative ones (refunds and voids, usually paired with
/// a positive row); `refund` flags them so nothing downstream has to guess.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trip {
    pub source: SourceRef,
    pub dataset: Dataset,
    /// 1 CMT, 2 Curb, 6 Myle, 7 Helix; null in "unknown vendor" rows.
    pub vendor_id: Option<i32>,
    /// Pickup, the event time.
    pub pickup: Micros,
    pub dropoff: Micros,
    pub passenger_count: Option<i32>,
    /// Miles.
    pub trip_distance: f64,
    pub ratecode_id: Option<i32>,
    /// `Y` → true, `N` → false.
    pub store_and_fwd: Option<bool>,
    /// TLC zone 1..=265.
    pub pu_location_id: i32,
    pub do_location_id: i32,
    pub payment_type: Option<i32>,
    pub fare_amount: f64,
    pub extra: f64,
    pub mta_tax: f64,
    pub tip_amount: f64,
    pub tolls_amount: f64,
    pub improvement_surcharge: f64,
    pub total_amount: f64,
    pub congestion_surcharge: Option<f64>,
    /// Yellow only (`Airport_fee` / `airport_fee`).
    pub airport_fee: Option<f64>,
    /// From 2025-01-05 on.
    pub cbd_congestion_fee: Option<f64>,
    /// Green only; always null in practice.
    pub ehail_fee: Option<f64>,
    /// Green only: 1 street-hail, 2 dispatch.
    pub trip_type: Option<i32>,
    /// Some amount is negative: a refund or void.
    pub refund: bool,
}

impl Trip {
    /// Trip duration in seconds (negative if the dropoff precedes the pickup).
    pub fn duration_seconds(&self) -> f64 {
        (self.dropoff - self.pickup) as f64 / MICROS_PER_SECOND as f64
    }
}

/// A batch of trips in columnar form. All columns have the same length.
///
/// Nullable integer columns use [`NULL_I32`] and nullable floats `NaN`, so
/// the window engine can scan plain slices. Use [`TripBatch::row`] to get an
/// owned [`Trip`] with real `Option`s.
#[derive(Debug, Clone, Default)]
pub struct TripBatch {
    /// Shared by every row of the batch.
    pub source: Arc<str>,
    pub dataset: Dataset,
    /// Row number of each record within `source` (rows that failed to parse are absent).
    pub row: Vec<u64>,
    pub vendor_id: Vec<i32>,
    pub pickup: Vec<Micros>,
    pub dropoff: Vec<Micros>,
    pub passenger_count: Vec<i32>,
    pub trip_distance: Vec<f64>,
    pub ratecode_id: Vec<i32>,
    /// 1 = Y, 0 = N, -1 = null.
    pub store_and_fwd: Vec<i8>,
    pub pu_location_id: Vec<i32>,
    pub do_location_id: Vec<i32>,
    pub payment_type: Vec<i32>,
    pub fare_amount: Vec<f64>,
    pub extra: Vec<f64>,
    pub mta_tax: Vec<f64>,
    pub tip_amount: Vec<f64>,
    pub tolls_amount: Vec<f64>,
    pub improvement_surcharge: Vec<f64>,
    pub total_amount: Vec<f64>,
    pub congestion_surcharge: Vec<f64>,
    pub airport_fee: Vec<f64>,
    pub cbd_congestion_fee: Vec<f64>,
    pub ehail_fee: Vec<f64>,
    pub trip_type: Vec<i32>,
}

/// Null marker in the `i32` columns of a [`TripBatch`].
pub const NULL_I32: i32 = i32::MIN;

fn opt_i32(v: i32) -> Option<i32> {
    (v != NULL_I32).then_some(v)
}

fn opt_f64(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v)
}

impl TripBatch {
    /// An empty batch for `source` with room for `capacity` rows.
    pub fn with_capacity(source: Arc<str>, dataset: Dataset, capacity: usize) -> Self {
        Self {
            source,
            dataset,
            row: Vec::with_capacity(capacity),
            vendor_id: Vec::with_capacity(capacity),
            pickup: Vec::with_capacity(capacity),
            dropoff: Vec::with_capacity(capacity),
            passenger_count: Vec::with_capacity(capacity),
            trip_distance: Vec::with_capacity(capacity),
            ratecode_id: Vec::with_capacity(capacity),
            store_and_fwd: Vec::with_capacity(capacity),
            pu_location_id: Vec::with_capacity(capacity),
            do_location_id: Vec::with_capacity(capacity),
            payment_type: Vec::with_capacity(capacity),
            fare_amount: Vec::with_capacity(capacity),
            extra: Vec::with_capacity(capacity),
            mta_tax: Vec::with_capacity(capacity),
            tip_amount: Vec::with_capacity(capacity),
            tolls_amount: Vec::with_capacity(capacity),
            improvement_surcharge: Vec::with_capacity(capacity),
            total_amount: Vec::with_capacity(capacity),
            congestion_surcharge: Vec::with_capacity(capacity),
            airport_fee: Vec::with_capacity(capacity),
            cbd_congestion_fee: Vec::with_capacity(capacity),
            ehail_fee: Vec::with_capacity(capacity),
            trip_type: Vec::with_capacity(capacity),
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.pickup.len()
    }

    /// True when the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.pickup.is_empty()
    }

    /// Identity of row `i`.
    pub fn source_ref(&self, i: usize) -> SourceRef {
        SourceRef {
            source: self.source.to_string(),
            row: self.row[i],
        }
    }

    /// Whether any amount of row `i` is negative.
    pub fn is_refund(&self, i: usize) -> bool {
        let neg = |v: f64| v < 0.0;
        neg(self.fare_amount[i])
            || neg(self.extra[i])
            || neg(self.mta_tax[i])
            || neg(self.tip_amount[i])
            || neg(self.tolls_amount[i])
            || neg(self.improvement_surcharge[i])
            || neg(self.total_amount[i])
            || neg(self.congestion_surcharge[i])
            || neg(self.airport_fee[i])
            || neg(self.cbd_congestion_fee[i])
    }

    /// Row `i` as an owned [`Trip`]. Panics if `i >= len()`, like slice indexing.
    pub fn row(&self, i: usize) -> Trip {
        let sf = self.store_and_fwd[i];
        Trip {
            source: self.source_ref(i),
            dataset: self.dataset,
            vendor_id: opt_i32(self.vendor_id[i]),
            pickup: self.pickup[i],
            dropoff: self.dropoff[i],
            passenger_count: opt_i32(self.passenger_count[i]),
            trip_distance: self.trip_distance[i],
            ratecode_id: opt_i32(self.ratecode_id[i]),
            store_and_fwd: (sf >= 0).then_some(sf == 1),
            pu_location_id: self.pu_location_id[i],
            do_location_id: self.do_location_id[i],
            payment_type: opt_i32(self.payment_type[i]),
            fare_amount: self.fare_amount[i],
            extra: self.extra[i],
            mta_tax: self.mta_tax[i],
            tip_amount: self.tip_amount[i],
            tolls_amount: self.tolls_amount[i],
            improvement_surcharge: self.improvement_surcharge[i],
            total_amount: self.total_amount[i],
            congestion_surcharge: opt_f64(self.congestion_surcharge[i]),
            airport_fee: opt_f64(self.airport_fee[i]),
            cbd_congestion_fee: opt_f64(self.cbd_congestion_fee[i]),
            ehail_fee: opt_f64(self.ehail_fee[i]),
            trip_type: opt_i32(self.trip_type[i]),
            refund: self.is_refund(i),
        }
    }

    /// Appends an owned [`Trip`] (its `source` must match the batch's; only
    /// its row number is kept). Row-oriented stages use this to feed the
    /// window engine.
    pub fn push(&mut self, t: &Trip) {
        let i32n = |v: Option<i32>| v.unwrap_or(NULL_I32);
        let f64n = |v: Option<f64>| v.unwrap_or(f64::NAN);
        self.row.push(t.source.row);
        self.vendor_id.push(i32n(t.vendor_id));
        self.pickup.push(t.pickup);
        self.dropoff.push(t.dropoff);
        self.passenger_count.push(i32n(t.passenger_count));
        self.trip_distance.push(t.trip_distance);
        self.ratecode_id.push(i32n(t.ratecode_id));
        self.store_and_fwd.push(match t.store_and_fwd {
            Some(true) => 1,
            Some(false) => 0,
            None => -1,
        });
        self.pu_location_id.push(t.pu_location_id);
        self.do_location_id.push(t.do_location_id);
        self.payment_type.push(i32n(t.payment_type));
        self.fare_amount.push(t.fare_amount);
        self.extra.push(t.extra);
        self.mta_tax.push(t.mta_tax);
        self.tip_amount.push(t.tip_amount);
        self.tolls_amount.push(t.tolls_amount);
        self.improvement_surcharge.push(t.improvement_surcharge);
        self.total_amount.push(t.total_amount);
        self.congestion_surcharge.push(f64n(t.congestion_surcharge));
        self.airport_fee.push(f64n(t.airport_fee));
        self.cbd_congestion_fee.push(f64n(t.cbd_congestion_fee));
        self.ehail_fee.push(f64n(t.ehail_fee));
        self.trip_type.push(i32n(t.trip_type));
    }

    /// Appends row `i` of `other`, column by column (its row number comes
    /// along; its source and dataset do not, like [`TripBatch::push`]).
    pub fn push_from(&mut self, other: &TripBatch, i: usize) {
        self.row.push(other.row[i]);
        self.vendor_id.push(other.vendor_id[i]);
        self.pickup.push(other.pickup[i]);
        self.dropoff.push(other.dropoff[i]);
        self.passenger_count.push(other.passenger_count[i]);
        self.trip_distance.push(other.trip_distance[i]);
        self.ratecode_id.push(other.ratecode_id[i]);
        self.store_and_fwd.push(other.store_and_fwd[i]);
        self.pu_location_id.push(other.pu_location_id[i]);
        self.do_location_id.push(other.do_location_id[i]);
        self.payment_type.push(other.payment_type[i]);
        self.fare_amount.push(other.fare_amount[i]);
        self.extra.push(other.extra[i]);
        self.mta_tax.push(other.mta_tax[i]);
        self.tip_amount.push(other.tip_amount[i]);
        self.tolls_amount.push(other.tolls_amount[i]);
        self.improvement_surcharge
            .push(other.improvement_surcharge[i]);
        self.total_amount.push(other.total_amount[i]);
        self.congestion_surcharge
            .push(other.congestion_surcharge[i]);
        self.airport_fee.push(other.airport_fee[i]);
        self.cbd_congestion_fee.push(other.cbd_congestion_fee[i]);
        self.ehail_fee.push(other.ehail_fee[i]);
        self.trip_type.push(other.trip_type[i]);
    }

    /// Builds a batch from owned trips that share one source.
    pub fn from_trips(source: Arc<str>, dataset: Dataset, trips: &[Trip]) -> Self {
        let mut batch = Self::with_capacity(source, dataset, trips.len());
        for t in trips {
            batch.push(t);
        }
        batch
    }

    /// Keeps the rows where `keep[i]` is true, in order.
    pub fn retain(&mut self, keep: &[bool]) {
        fn r<T: Copy>(v: &mut Vec<T>, keep: &[bool]) {
            let mut i = 0;
            v.retain(|_| {
                i += 1;
                keep[i - 1]
            });
        }
        r(&mut self.row, keep);
        r(&mut self.vendor_id, keep);
        r(&mut self.pickup, keep);
        r(&mut self.dropoff, keep);
        r(&mut self.passenger_count, keep);
        r(&mut self.trip_distance, keep);
        r(&mut self.ratecode_id, keep);
        r(&mut self.store_and_fwd, keep);
        r(&mut self.pu_location_id, keep);
        r(&mut self.do_location_id, keep);
        r(&mut self.payment_type, keep);
        r(&mut self.fare_amount, keep);
        r(&mut self.extra, keep);
        r(&mut self.mta_tax, keep);
        r(&mut self.tip_amount, keep);
        r(&mut self.tolls_amount, keep);
        r(&mut self.improvement_surcharge, keep);
        r(&mut self.total_amount, keep);
        r(&mut self.congestion_surcharge, keep);
        r(&mut self.airport_fee, keep);
        r(&mut self.cbd_congestion_fee, keep);
        r(&mut self.ehail_fee, keep);
        r(&mut self.trip_type, keep);
    }

    /// Drops every row, keeping the allocations for reuse.
    pub fn clear(&mut self) {
        self.row.clear();
        self.vendor_id.clear();
        self.pickup.clear();
        self.dropoff.clear();
        self.passenger_count.clear();
        self.trip_distance.clear();
        self.ratecode_id.clear();
        self.store_and_fwd.clear();
        self.pu_location_id.clear();
        self.do_location_id.clear();
        self.payment_type.clear();
        self.fare_amount.clear();
        self.extra.clear();
        self.mta_tax.clear();
        self.tip_amount.clear();
        self.tolls_amount.clear();
        self.improvement_surcharge.clear();
        self.total_amount.clear();
        self.congestion_surcharge.clear();
        self.airport_fee.clear();
        self.cbd_congestion_fee.clear();
        self.ehail_fee.clear();
        self.trip_type.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Trip {
        Trip {
            source: SourceRef {
                source: "f.parquet".into(),
                row: 7,
            },
            dataset: Dataset::Yellow,
            vendor_id: Some(2),
            pickup: 1_700_000_000_000_000,
            dropoff: 1_700_000_600_000_000,
            passenger_count: None,
            trip_distance: 1.5,
            ratecode_id: Some(1),
            store_and_fwd: Some(false),
            pu_location_id: 132,
            do_location_id: 236,
            payment_type: Some(1),
            fare_amount: -10.0,
            extra: 0.0,
            mta_tax: 0.5,
            tip_amount: 0.0,
            tolls_amount: 0.0,
            improvement_surcharge: 1.0,
            total_amount: -8.5,
            congestion_surcharge: Some(2.5),
            airport_fee: None,
            cbd_congestion_fee: Some(0.75),
            ehail_fee: None,
            trip_type: None,
            refund: true,
        }
    }

    #[test]
    fn row_round_trips_through_batch() {
        let t = sample();
        let b = TripBatch::from_trips(
            "f.parquet".into(),
            Dataset::Yellow,
            std::slice::from_ref(&t),
        );
        assert_eq!(b.len(), 1);
        assert_eq!(b.row(0), t);
        assert_eq!(t.duration_seconds(), 600.0);
    }

    #[test]
    fn utc_instants_become_new_york_local_time_across_dst() {
        let at = |s: &str| {
            micros_from_naive(NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap())
        };
        for (utc, local) in [
            ("2024-01-15 15:00:00", "2024-01-15 10:00:00"),
            ("2024-07-04 16:00:00", "2024-07-04 12:00:00"),
            // 2024-03-10: clocks jump from 2:00 EST to 3:00 EDT (7:00 UTC).
            ("2024-03-10 06:59:59", "2024-03-10 01:59:59"),
            ("2024-03-10 07:00:00", "2024-03-10 03:00:00"),
            // 2024-11-03: 2:00 EDT (6:00 UTC) falls back to 1:00 EST.
            ("2024-11-03 05:59:59", "2024-11-03 01:59:59"),
            ("2024-11-03 06:00:00", "2024-11-03 01:00:00"),
            // Before 2007: first Sunday of April to last Sunday of October.
            ("2006-04-02 07:00:00", "2006-04-02 03:00:00"),
            ("2006-10-29 06:00:00", "2006-10-29 01:00:00"),
            ("2006-03-20 12:00:00", "2006-03-20 07:00:00"),
        ] {
            assert_eq!(
                format_micros(new_york_from_utc(at(utc))),
                local,
                "{utc} UTC"
            );
        }
    }

    #[test]
    fn formats_naive_time() {
        let ts = NaiveDateTime::parse_from_str("2025-02-01 00:05:00", "%Y-%m-%d %H:%M:%S").unwrap();
        let us = micros_from_naive(ts);
        assert_eq!(format_micros(us), "2025-02-01 00:05:00");
        assert_eq!(naive_from_micros(us), Some(ts));
    }

    /// The hand-written path writes what chrono's patterns write.
    #[test]
    fn timestamps_are_written_as_chrono_writes_them() {
        let chrono = |us: Micros| {
            let ts = naive_from_micros(us).unwrap();
            if us.rem_euclid(MICROS_PER_SECOND) == 0 {
                ts.format("%Y-%m-%d %H:%M:%S").to_string()
            } else {
                ts.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
            }
        };
        for us in [
            0,
            1,
            -1,
            -1_500_000,
            1_738_368_300_000_000,
            1_738_368_300_000_042,
            -62_135_596_800_000_000,
            253_402_300_799_999_999,
            253_402_300_800_000_000,
            -62_135_596_800_000_001,
        ] {
            assert_eq!(format_micros(us), chrono(us), "{us}");
        }
    }
}
