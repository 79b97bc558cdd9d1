//! Record checks: which rows of a batch may enter the windows, and why the
//! others may not.
//!
//! Nulls the TLC allows (passenger count, rate code, fees…) pass. Negative
//! amounts are refunds and voids: they pass and are counted. A record fails
//! when its dropoff precedes its pickup, a zone id is outside `1..=265`, its
//! pickup is far from the month the file covers, or a value is outside what
//! a trip can have ([`MAX_PASSENGERS`], [`MAX_MAGNITUDE`], [`MIN_FARE`]);
//! each failure becomes a [`DeadLetter`] naming the field. The value bounds
//! also keep every window sum finite: no sum of at most 2^64 values of at
//! most 1e7 can overflow, and no tip ratio can divide by a near-zero fare.

use chrono::{Datelike, NaiveDate};

use crate::dead_letter::{DeadLetter, Reason};
use crate::trip::{
    MICROS_PER_SECOND, Micros, NULL_I32, TripBatch, format_micros, micros_from_naive,
};
use crate::zones::MAX_ZONE;

/// How far outside its file's month a pickup may be and still count. TLC
/// files carry a few pickups from the neighbouring days (a 2020-01 file has
/// pickups of 2019-12-18), while broken meters produce dates years away.
pub const DEFAULT_MONTH_TOLERANCE_DAYS: i64 = 31;

/// An Open Data dataset covers a year, not a month: its month is learnt from
/// the first page and the year around it accepted, which still catches
/// timestamps years away.
pub const OPEN_DATA_TOLERANCE_DAYS: i64 = 366;

/// The most passengers a trip can carry. The TLC data dictionary calls the
/// count "driver-entered"; taxis seat at most five (six with a child on a
/// lap) and the published files reach 9. `0` is common (not entered) and is
/// kept.
pub const MAX_PASSENGERS: i32 = 9;

/// The largest amount (dollars) or distance (miles) a record may carry.
/// Meter errors in real files are large but far below this; beyond it a
/// value is corruption, and enough of them could overflow a window sum.
pub const MAX_MAGNITUDE: f64 = 1e7;

/// The smallest non-zero fare: half a cent. A smaller one is no amount and
/// would turn the tip ratio (tip / fare) into an astronomic number.
pub const MIN_FARE: f64 = 0.005;

/// A calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month {
    pub year: i32,
    pub month: u32,
}

impl Month {
    pub fn new(year: i32, month: u32) -> Option<Self> {
        NaiveDate::from_ymd_opt(year, month, 1).map(|_| Self { year, month })
    }

    /// Finds a `YYYY-MM` in a file name or URL (the TLC names files
    /// `yellow_tripdata_2025-02.parquet`).
    pub fn from_name(name: &str) -> Option<Self> {
        let base = name.rsplit(['/', '\\']).next().unwrap_or(name).as_bytes();
        base.windows(7).find_map(|w| {
            let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
            if !(digits(&w[..4]) && w[4] == b'-' && digits(&w[5..7])) {
                return None;
            }
            let text = std::str::from_utf8(w).ok()?;
            let year = text[..4].parse().ok()?;
            let month = text[5..].parse().ok()?;
            Month::new(year, month)
        })
    }

    /// The month containing `t`.
    pub fn containing(t: Micros) -> Option<Self> {
        let ts = crate::trip::naive_from_micros(t)?;
        Month::new(ts.year(), ts.month())
    }

    /// The following month.
    pub fn next(self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// First instant of the month.
    pub fn start(self) -> Micros {
        NaiveDate::from_ymd_opt(self.year, self.month, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map_or(0, micros_from_naive)
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl std::str::FromStr for Month {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (y, m) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?} is not YYYY-MM"))?;
        let year = y.parse().map_err(|_| format!("{s:?} is not YYYY-MM"))?;
        let month = m.parse().map_err(|_| format!("{s:?} is not YYYY-MM"))?;
        Month::new(year, month).ok_or_else(|| format!("{s:?} is not a valid month"))
    }
}

/// Counts from checking one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchCheck {
    pub valid: u64,
    pub rejected: u64,
    /// Valid rows with a negative amount.
    pub refunds: u64,
}

/// Checks the batches of one source.
#[derive(Debug, Clone)]
pub struct Validator {
    month: Option<Month>,
    tolerance: Micros,
    /// Accepted pickup range `[lo, hi)`, set once the month is known.
    bounds: Option<(Micros, Micros)>,
}

impl Validator {
    /// For a file or URL: its month from its name (the TLC names files
    /// `yellow_tripdata_2025-02.parquet`), else learnt from its first batch.
    /// `run` and `ingest` both check their files with this.
    pub fn for_file(name: &str, tolerance_days: i64) -> Self {
        Self::new(Month::from_name(name), tolerance_days)
    }

    /// For an Open Data dataset: see [`OPEN_DATA_TOLERANCE_DAYS`].
    pub fn for_open_data(tolerance_days: i64) -> Self {
        Self::new(None, tolerance_days.max(OPEN_DATA_TOLERANCE_DAYS))
    }

    /// For a source whose month is known (from its name) or, when `None`,
    /// learnt from the median pickup of its first batch.
    pub fn new(month: Option<Month>, tolerance_days: i64) -> Self {
        let mut v = Self {
            month: None,
            tolerance: tolerance_days.saturating_mul(86_400 * MICROS_PER_SECOND),
            bounds: None,
        };
        if let Some(m) = month {
            v.set_month(m);
        }
        v
    }

    fn set_month(&mut self, m: Month) {
        self.month = Some(m);
        self.bounds = Some((
            m.start().saturating_sub(self.tolerance),
            m.next().start().saturating_add(self.tolerance),
        ));
    }

    /// The month this source is checked against, once known.
    pub fn month(&self) -> Option<Month> {
        self.month
    }

    /// Checks every row of `batch`: `valid[i]` is set to whether row `i` may
    /// be windowed, and each rejected row is passed to `reject`.
    pub fn check(
        &mut self,
        batch: &TripBatch,
        valid: &mut Vec<bool>,
        mut reject: impl FnMut(DeadLetter),
    ) -> BatchCheck {
        if self.bounds.is_none() && !batch.is_empty() {
            let mut pickups = batch.pickup.clone();
            let mid = pickups.len() / 2;
            let (_, median, _) = pickups.select_nth_unstable(mid);
            if let Some(m) = Month::containing(*median) {
                self.set_month(m);
            }
        }
        let (lo, hi) = self.bounds.unwrap_or((Micros::MIN, Micros::MAX));
        valid.clear();
        valid.reserve(batch.len());
        let mut out = BatchCheck::default();
        for i in 0..batch.len() {
            let pickup = batch.pickup[i];
            let dropoff = batch.dropoff[i];
            let pu = batch.pu_location_id[i];
            let du = batch.do_location_id[i];
            let ok = dropoff >= pickup
                && (1..=MAX_ZONE).contains(&pu)
                && (1..=MAX_ZONE).contains(&du)
                && pickup >= lo
                && pickup < hi;
            let out_of_range = if ok {
                value_out_of_range(batch, i)
            } else {
                None
            };
            if ok && out_of_range.is_none() {
                valid.push(true);
                out.valid += 1;
                if batch.is_refund(i) {
                    out.refunds += 1;
                }
                continue;
            }
            valid.push(false);
            out.rejected += 1;
            let (reason, field, detail) = if let Some((field, detail)) = out_of_range {
                (Reason::ValueOutOfRange, field, detail)
            } else if !(lo..hi).contains(&pickup) {
                (
                    Reason::TimestampOutOfRange,
                    "pickup",
                    format!(
                        "pickup {} is more than {} days outside {}",
                        format_micros(pickup),
                        self.tolerance / (86_400 * MICROS_PER_SECOND),
                        self.month
                            .map_or_else(|| "the file's month".to_string(), |m| m.to_string())
                    ),
                )
            } else if dropoff < pickup {
                (
                    Reason::DropoffBeforePickup,
                    "dropoff",
                    format!(
                        "dropoff {} is before pickup {}",
                        format_micros(dropoff),
                        format_micros(pickup)
                    ),
                )
            } else if !(1..=MAX_ZONE).contains(&pu) {
                (
                    Reason::ZoneOutOfRange,
                    "PULocationID",
                    format!("pickup zone {pu} outside 1..={MAX_ZONE}"),
                )
            } else {
                (
                    Reason::ZoneOutOfRange,
                    "DOLocationID",
                    format!("dropoff zone {du} outside 1..={MAX_ZONE}"),
                )
            };
            reject(DeadLetter::invalid(
                batch.row(i),
                reason,
                Some(field),
                detail,
            ));
        }
        out
    }
}

/// The first value of row `i` outside what a trip can have, with its field.
fn value_out_of_range(batch: &TripBatch, i: usize) -> Option<(&'static str, String)> {
    let passengers = batch.passenger_count[i];
    if passengers != NULL_I32 && !(0..=MAX_PASSENGERS).contains(&passengers) {
        return Some((
            "passenger_count",
            format!("passenger_count {passengers} outside 0..={MAX_PASSENGERS}"),
        ));
    }
    // Nullable fees are NaN when null; every other amount must be finite.
    let amounts: [(&'static str, f64, bool); 11] = [
        ("trip_distance", batch.trip_distance[i], false),
        ("fare_amount", batch.fare_amount[i], false),
        ("extra", batch.extra[i], false),
        ("mta_tax", batch.mta_tax[i], false),
        ("tip_amount", batch.tip_amount[i], false),
        ("tolls_amount", batch.tolls_amount[i], false),
        (
            "improvement_surcharge",
            batch.improvement_surcharge[i],
            false,
        ),
        ("total_amount", batch.total_amount[i], false),
        ("congestion_surcharge", batch.congestion_surcharge[i], true),
        ("airport_fee", batch.airport_fee[i], true),
        ("cbd_congestion_fee", batch.cbd_congestion_fee[i], true),
    ];
    for (field, v, nullable) in amounts {
        if nullable && v.is_nan() {
            continue;
        }
        if v.is_nan() || v.abs() > MAX_MAGNITUDE {
            return Some((field, format!("{field} {v} outside ±{MAX_MAGNITUDE}")));
        }
    }
    let fare = batch.fare_amount[i];
    if fare != 0.0 && fare.abs() < MIN_FARE {
        return Some((
            "fare_amount",
            format!("fare_amount {fare} is less than half a cent"),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trip::{Dataset, SourceRef, Trip};

    fn trip(pickup: &str, dropoff: &str, pu: i32, fare: f64) -> Trip {
        let p = |s: &str| {
            micros_from_naive(
                chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap(),
            )
        };
        Trip {
            source: SourceRef {
                source: "t".into(),
                row: 0,
            },
            dataset: Dataset::Yellow,
            vendor_id: None,
            pickup: p(pickup),
            dropoff: p(dropoff),
            passenger_count: None,
            trip_distance: 1.0,
            ratecode_id: None,
            store_and_fwd: None,
            pu_location_id: pu,
            do_location_id: 1,
            payment_type: None,
            fare_amount: fare,
            extra: 0.0,
            mta_tax: 0.0,
            tip_amount: 0.0,
            tolls_amount: 0.0,
            improvement_surcharge: 0.0,
            total_amount: fare,
            congestion_surcharge: None,
            airport_fee: None,
            cbd_congestion_fee: None,
            ehail_fee: None,
            trip_type: None,
            refund: fare < 0.0,
        }
    }

    #[test]
    fn month_from_names() {
        assert_eq!(
            Month::from_name("https://x/trip-data/yellow_tripdata_2025-02.parquet"),
            Month::new(2025, 2)
        );
        assert_eq!(
            Month::from_name("yellow_tripdata_2019-01_sample_ge.csv"),
            Month::new(2019, 1)
        );
        assert_eq!(Month::from_name("2019-13/data.csv"), None);
        assert_eq!(
            "2024-12".parse::<Month>().unwrap().next(),
            Month::new(2025, 1).unwrap()
        );
    }

    #[test]
    fn rejects_with_reasons_and_keeps_refunds() {
        let trips = vec![
            trip("2020-01-05 10:00:00", "2020-01-05 10:10:00", 10, 5.0),
            trip("2020-01-05 10:00:00", "2020-01-05 09:59:00", 10, 5.0),
            trip("2020-01-05 10:00:00", "2020-01-05 10:10:00", 266, 5.0),
            trip("2009-01-05 10:00:00", "2009-01-05 10:10:00", 10, 5.0),
            trip("2019-12-18 10:00:00", "2019-12-18 10:10:00", 10, -5.0),
        ];
        let batch = TripBatch::from_trips("t".into(), Dataset::Yellow, &trips);
        assert_eq!(batch.passenger_count[0], NULL_I32);
        let mut v = Validator::new(Month::new(2020, 1), DEFAULT_MONTH_TOLERANCE_DAYS);
        let mut valid = Vec::new();
        let mut dead = Vec::new();
        let c = v.check(&batch, &mut valid, |d| dead.push(d));
        assert_eq!(valid, vec![true, false, false, false, true]);
        assert_eq!(c.refunds, 1);
        let reasons: Vec<_> = dead.iter().map(|d| d.reason).collect();
        assert_eq!(
            reasons,
            vec![
                Reason::DropoffBeforePickup,
                Reason::ZoneOutOfRange,
                Reason::TimestampOutOfRange
            ]
        );
        assert_eq!(dead[1].field.as_deref(), Some("PULocationID"));
    }

    #[test]
    fn values_no_trip_can_have_are_rejected_and_sums_stay_finite() {
        let ok = trip("2020-01-05 10:00:00", "2020-01-05 10:10:00", 10, 5.0);
        let with = |f: &dyn Fn(&mut Trip)| {
            let mut t = ok.clone();
            f(&mut t);
            t
        };
        let trips = vec![
            with(&|t| t.passenger_count = Some(0)),
            with(&|t| t.passenger_count = Some(9)),
            with(&|t| t.passenger_count = Some(255)),
            with(&|t| t.passenger_count = Some(-3)),
            with(&|t| t.fare_amount = 1e308),
            with(&|t| t.total_amount = f64::INFINITY),
            with(&|t| t.tip_amount = f64::NAN),
            with(&|t| t.fare_amount = 1e-300),
            with(&|t| t.trip_distance = -1e9),
            with(&|t| t.airport_fee = Some(f64::NEG_INFINITY)),
            with(&|t| t.fare_amount = -9_999_999.0),
        ];
        let batch = TripBatch::from_trips("t".into(), Dataset::Yellow, &trips);
        let mut v =
            Validator::for_file("yellow_tripdata_2020-01.csv", DEFAULT_MONTH_TOLERANCE_DAYS);
        let mut valid = Vec::new();
        let mut dead = Vec::new();
        v.check(&batch, &mut valid, |d| dead.push(d));
        assert_eq!(
            valid,
            vec![
                true, true, false, false, false, false, false, false, false, false, true
            ]
        );
        assert!(dead.iter().all(|d| d.reason == Reason::ValueOutOfRange));
        let fields: Vec<_> = dead.iter().map(|d| d.field.clone().unwrap()).collect();
        assert_eq!(
            fields,
            [
                "passenger_count",
                "passenger_count",
                "fare_amount",
                "total_amount",
                "tip_amount",
                "fare_amount",
                "trip_distance",
                "airport_fee"
            ]
        );
        assert!(
            dead[1].detail.contains("-3 outside 0..=9"),
            "{}",
            dead[1].detail
        );
    }

    #[test]
    fn open_data_accepts_the_year_around_its_month_in_every_stage() {
        let v = Validator::for_open_data(DEFAULT_MONTH_TOLERANCE_DAYS);
        assert_eq!(
            v.tolerance,
            OPEN_DATA_TOLERANCE_DAYS * 86_400 * MICROS_PER_SECOND
        );
        let f = Validator::for_file("green_tripdata_2024-02.parquet", 31);
        assert_eq!(f.month(), Month::new(2024, 2));
    }

    #[test]
    fn learns_month_from_median() {
        let trips = vec![
            trip("2024-12-31 23:00:00", "2024-12-31 23:10:00", 10, 5.0),
            trip("2025-01-01 00:10:00", "2025-01-01 00:20:00", 10, 5.0),
            trip("2025-01-01 00:20:00", "2025-01-01 00:30:00", 10, 5.0),
        ];
        let batch = TripBatch::from_trips("t".into(), Dataset::Yellow, &trips);
        let mut v = Validator::new(None, DEFAULT_MONTH_TOLERANCE_DAYS);
        let mut valid = Vec::new();
        v.check(&batch, &mut valid, |_| {});
        assert_eq!(v.month(), Month::new(2025, 1));
        assert!(valid.iter().all(|&b| b));
    }
}
