//! `trip/3`: many trips of one source per message, column by column.
//!
//! The layout is documented in the [codec module](super); this module
//! writes a selection of a [`TripBatch`]'s rows and reads a message straight
//! back into one, so neither side builds a row per trip.

use std::sync::Arc;

use super::{DecodeError, Reader, dataset_code, dataset_from};
use crate::trip::{Micros, NULL_I32, TripBatch};

/// Schema of trip batch messages written by this version.
pub const TRIP_BATCH_SCHEMA: &str = "trip/3";

pub(super) const TRIPS_V3: u8 = 3;
const KIND_BATCH: u8 = 0;

/// Optional column tags: which rows have a value.
const NONE_PRESENT: u8 = 0;
const ALL_PRESENT: u8 = 1;
const SOME_PRESENT: u8 = 2;

/// The most trips one message carries: about 170 bytes each, so a message
/// stays well under the broker's default 1 MB limit before compression.
pub const MAX_TRIPS_PER_MESSAGE: usize = 4096;

/// The trips of one `trip/3` message: the columns, and per row the landing
/// id and the watermark stamped at its publication.
#[derive(Debug, Clone, Default)]
pub struct TripBatchMessage {
    pub trips: TripBatch,
    pub landing_id: Vec<i64>,
    pub watermark: Vec<Micros>,
}

impl TripBatchMessage {
    /// Number of trips.
    pub fn len(&self) -> usize {
        self.trips.len()
    }

    /// True when the message holds no trip.
    pub fn is_empty(&self) -> bool {
        self.trips.is_empty()
    }

    /// Empties every column, keeping their allocations.
    pub fn clear(&mut self) {
        self.trips.clear();
        self.landing_id.clear();
        self.watermark.clear();
    }
}

/// Writes rows `rows` of `trips` (with their landing ids and watermarks,
/// indexed like the batch) as one `trip/3` message into `out` (cleared
/// first). At most [`MAX_TRIPS_PER_MESSAGE`] rows: the caller splits runs.
pub fn encode_trip_batch(
    trips: &TripBatch,
    landing_id: &[i64],
    watermark: &[Micros],
    rows: &[usize],
    out: &mut Vec<u8>,
) {
    out.clear();
    let n = rows.len();
    out.reserve(32 + trips.source.len() + n * 180);
    out.push(TRIPS_V3);
    out.push(KIND_BATCH);
    out.push(dataset_code(trips.dataset));
    out.extend_from_slice(&(n as u32).to_le_bytes());
    let source = super::bounded_source(&trips.source);
    out.extend_from_slice(&(source.len() as u16).to_le_bytes());
    out.extend_from_slice(source.as_bytes());

    fn col<T: Copy, const N: usize>(
        out: &mut Vec<u8>,
        rows: &[usize],
        v: &[T],
        bytes: impl Fn(T) -> [u8; N],
    ) {
        for &i in rows {
            out.extend_from_slice(&bytes(v[i]));
        }
    }
    col(out, rows, landing_id, i64::to_le_bytes);
    col(out, rows, watermark, i64::to_le_bytes);
    col(out, rows, &trips.row, u64::to_le_bytes);
    col(out, rows, &trips.pickup, i64::to_le_bytes);
    col(out, rows, &trips.dropoff, i64::to_le_bytes);
    col(out, rows, &trips.pu_location_id, i32::to_le_bytes);
    col(out, rows, &trips.do_location_id, i32::to_le_bytes);
    col(out, rows, &trips.store_and_fwd, i8::to_le_bytes);
    for c in [
        &trips.trip_distance,
        &trips.fare_amount,
        &trips.extra,
        &trips.mta_tax,
        &trips.tip_amount,
        &trips.tolls_amount,
        &trips.improvement_surcharge,
        &trips.total_amount,
    ] {
        col(out, rows, c, f64::to_le_bytes);
    }
    for c in [
        &trips.vendor_id,
        &trips.passenger_count,
        &trips.ratecode_id,
        &trips.payment_type,
        &trips.trip_type,
    ] {
        optional(out, rows, c, |v| v != NULL_I32, i32::to_le_bytes);
    }
    for c in [
        &trips.congestion_surcharge,
        &trips.airport_fee,
        &trips.cbd_congestion_fee,
        &trips.ehail_fee,
    ] {
        optional(out, rows, c, |v| !v.is_nan(), f64::to_le_bytes);
    }
}

/// A nullable column: its tag, then for [`SOME_PRESENT`] a bitmap (bit `i`
/// of byte `i / 8` set when row `i` has a value), then a value for every row
/// (absent ones written as zero and ignored) unless none is present.
fn optional<T: Copy + Default, const N: usize>(
    out: &mut Vec<u8>,
    rows: &[usize],
    v: &[T],
    present: impl Fn(T) -> bool,
    bytes: impl Fn(T) -> [u8; N],
) {
    let count = rows.iter().filter(|&&i| present(v[i])).count();
    if count == 0 {
        out.push(NONE_PRESENT);
        return;
    }
    if count == rows.len() {
        out.push(ALL_PRESENT);
    } else {
        out.push(SOME_PRESENT);
        for chunk in rows.chunks(8) {
            let mut bits = 0u8;
            for (b, &i) in chunk.iter().enumerate() {
                if present(v[i]) {
                    bits |= 1 << b;
                }
            }
            out.push(bits);
        }
    }
    for &i in rows {
        let x = v[i];
        out.extend_from_slice(&bytes(if present(x) { x } else { T::default() }));
    }
}

/// Reads `n` fixed-width values into `out`.
fn read_col<T, const N: usize>(
    r: &mut Reader<'_>,
    n: usize,
    out: &mut Vec<T>,
    from: impl Fn([u8; N]) -> T,
) -> Result<(), DecodeError> {
    let bytes = r.take(n.saturating_mul(N))?;
    out.extend(bytes.chunks_exact(N).map(|c| {
        let mut a = [0u8; N];
        a.copy_from_slice(c);
        from(a)
    }));
    Ok(())
}

/// Reads a nullable column written by [`optional`], with `null` for the
/// rows without a value.
fn read_optional<T: Copy, const N: usize>(
    r: &mut Reader<'_>,
    field: &'static str,
    n: usize,
    out: &mut Vec<T>,
    null: T,
    from: impl Fn([u8; N]) -> T,
) -> Result<(), DecodeError> {
    match r.u8()? {
        NONE_PRESENT => {
            out.resize(out.len() + n, null);
            Ok(())
        }
        ALL_PRESENT => read_col(r, n, out, from),
        SOME_PRESENT => {
            let bitmap = r.take(n.div_ceil(8))?;
            let first = out.len();
            read_col(r, n, out, from)?;
            for (i, v) in out[first..].iter_mut().enumerate() {
                if bitmap[i / 8] & (1 << (i % 8)) == 0 {
                    *v = null;
                }
            }
            Ok(())
        }
        other => Err(DecodeError::Invalid {
            field,
            detail: format!("presence tag {other}"),
        }),
    }
}

/// Decodes a `trip/3` message into `out` (cleared first, allocations kept).
/// Structural checks only, as for `trip/2`: field values are the
/// validator's job.
pub fn decode_trip_batch(value: &[u8], out: &mut TripBatchMessage) -> Result<(), DecodeError> {
    out.clear();
    let mut r = Reader { buf: value, at: 0 };
    match value.first() {
        None => return Err(DecodeError::Empty),
        Some(&TRIPS_V3) => {}
        Some(&v) => return Err(DecodeError::UnknownVersion(v)),
    }
    r.u8()?;
    let kind = r.u8()?;
    if kind != KIND_BATCH {
        return Err(DecodeError::Invalid {
            field: "kind",
            detail: format!("code {kind}"),
        });
    }
    let dataset = dataset_from(r.u8()?)?;
    let n = r.u32()? as usize;
    if n == 0 || n > MAX_TRIPS_PER_MESSAGE {
        return Err(DecodeError::Invalid {
            field: "rows",
            detail: format!("{n} trips, not 1..={MAX_TRIPS_PER_MESSAGE}"),
        });
    }
    let len = r.u16()? as usize;
    let source = std::str::from_utf8(r.take(len)?).map_err(|e| DecodeError::Invalid {
        field: "source",
        detail: e.to_string(),
    })?;
    let t = &mut out.trips;
    // Consecutive messages mostly come from one source: keep its name.
    if *t.source != *source {
        t.source = Arc::from(source);
    }
    t.dataset = dataset;
    read_col(&mut r, n, &mut out.landing_id, i64::from_le_bytes)?;
    read_col(&mut r, n, &mut out.watermark, i64::from_le_bytes)?;
    read_col(&mut r, n, &mut t.row, u64::from_le_bytes)?;
    read_col(&mut r, n, &mut t.pickup, i64::from_le_bytes)?;
    read_col(&mut r, n, &mut t.dropoff, i64::from_le_bytes)?;
    read_col(&mut r, n, &mut t.pu_location_id, i32::from_le_bytes)?;
    read_col(&mut r, n, &mut t.do_location_id, i32::from_le_bytes)?;
    read_col(&mut r, n, &mut t.store_and_fwd, i8::from_le_bytes)?;
    if let Some(bad) = t.store_and_fwd.iter().find(|v| !(-1..=1).contains(*v)) {
        return Err(DecodeError::Invalid {
            field: "store_and_fwd",
            detail: format!("code {bad}"),
        });
    }
    for c in [
        &mut t.trip_distance,
        &mut t.fare_amount,
        &mut t.extra,
        &mut t.mta_tax,
        &mut t.tip_amount,
        &mut t.tolls_amount,
        &mut t.improvement_surcharge,
        &mut t.total_amount,
    ] {
        read_col(&mut r, n, c, f64::from_le_bytes)?;
    }
    for (field, c) in [
        ("vendor_id", &mut t.vendor_id),
        ("passenger_count", &mut t.passenger_count),
        ("ratecode_id", &mut t.ratecode_id),
        ("payment_type", &mut t.payment_type),
        ("trip_type", &mut t.trip_type),
    ] {
        read_optional(&mut r, field, n, c, NULL_I32, i32::from_le_bytes)?;
    }
    for (field, c) in [
        ("congestion_surcharge", &mut t.congestion_surcharge),
        ("airport_fee", &mut t.airport_fee),
        ("cbd_congestion_fee", &mut t.cbd_congestion_fee),
        ("ehail_fee", &mut t.ehail_fee),
    ] {
        read_optional(&mut r, field, n, c, f64::NAN, f64::from_le_bytes)?;
    }
    if r.at != value.len() {
        return Err(DecodeError::Trailing(value.len() - r.at));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::codec::tests::trip;
    use crate::trip::{Dataset, Trip};

    fn batch() -> (TripBatch, Vec<i64>, Vec<Micros>) {
        let first = trip().trip;
        let mut second = first.clone();
        second.source.row = 1235;
        second.pickup += 60_000_000;
        second.vendor_id = None;
        second.passenger_count = Some(1);
        second.store_and_fwd = None;
        second.cbd_congestion_fee = None;
        second.fare_amount = 12.5;
        second.total_amount = 15.0;
        second.refund = false;
        let trips = TripBatch::from_trips(
            Arc::from(first.source.source.as_str()),
            Dataset::Yellow,
            &[first, second],
        );
        let wm = trip().watermark;
        (trips, vec![42, 43], vec![wm, wm + 60_000_000])
    }

    fn rows(m: &TripBatchMessage) -> Vec<Trip> {
        (0..m.len()).map(|i| m.trips.row(i)).collect()
    }

    #[test]
    fn a_selection_of_rows_round_trips() {
        let (trips, ids, wms) = batch();
        let mut buf = Vec::new();
        let mut got = TripBatchMessage::default();
        for sel in [vec![0, 1], vec![1], vec![1, 0]] {
            encode_trip_batch(&trips, &ids, &wms, &sel, &mut buf);
            decode_trip_batch(&buf, &mut got).unwrap();
            let want: Vec<Trip> = sel.iter().map(|&i| trips.row(i)).collect();
            assert_eq!(rows(&got), want);
            assert_eq!(
                got.landing_id,
                sel.iter().map(|&i| ids[i]).collect::<Vec<_>>()
            );
            assert_eq!(
                got.watermark,
                sel.iter().map(|&i| wms[i]).collect::<Vec<_>>()
            );
            assert_eq!(&*got.trips.source, "yellow_tripdata_2025-02.parquet");
        }
    }

    /// The wire contract: these bytes are `trip/3`. A change here breaks
    /// every aggregate reading a topic written by an older relay.
    #[test]
    fn golden_bytes() {
        let (trips, ids, wms) = batch();
        let mut buf = Vec::new();
        encode_trip_batch(&trips, &ids, &wms, &[0, 1], &mut buf);
        let hex: String = buf.iter().map(|b| format!("{b:02x}")).collect();
        let want = concat!(
            "030000",   // version 3, kind 0 (batch), yellow
            "02000000", // 2 trips
            "1f00",     // source: 31 bytes
            "79656c6c6f775f7472697064617461",
            "5f323032352d30322e70617271756574",
            "2a00000000000000", // landing ids 42, 43
            "2b00000000000000",
            "0036861b092d0600", // watermarks 1_738_367_000 s and a minute later
            "00bd191f092d0600",
            "d204000000000000", // source rows 1234, 1235
            "d304000000000000",
            "00002157092d0600", // pickups 1_738_368_000 s and a minute later
            "0087b45a092d0600",
            "00e9c58c092d0600", // dropoffs, both 1_738_368_900 s
            "00e9c58c092d0600",
            "84000000", // pickup zones 132, 132
            "84000000",
            "ec000000", // dropoff zones 236, 236
            "ec000000",
            "01ff",             // store_and_fwd Y, null
            "9a99999999990940", // trip_distance 3.2, 3.2
            "9a99999999990940",
            "3333333333b331c0", // fare -17.7, 12.5
            "0000000000002940",
            "0000000000000000", // extra
            "0000000000000000",
            "000000000000e03f", // mta_tax
            "000000000000e03f",
            "0000000000000000", // tip
            "0000000000000000",
            "c3f5285c8fc21b40", // tolls
            "c3f5285c8fc21b40",
            "000000000000f03f", // improvement surcharge
            "000000000000f03f",
            "85eb51b81e8522c0", // total -9.26, 15
            "0000000000002e40",
            // vendor: some, bitmap 01 (row 0 only), both values
            "02",
            "01",
            "0200000000000000",
            // passengers: some, bitmap 02 (row 1 only), both values
            "02",
            "02",
            "0000000001000000",
            // rate code, payment type: all
            "01",
            "0100000001000000",
            "01",
            "0100000001000000",
            // trip type: none
            "00",
            // congestion: all, 2.5 twice
            "01",
            "0000000000000440",
            "0000000000000440",
            // airport fee: none
            "00",
            // cbd: some, row 0 only (0.75)
            "02",
            "01",
            "000000000000e83f",
            "0000000000000000",
            // ehail: none
            "00",
        );
        assert_eq!(hex, want);
    }

    #[test]
    fn every_truncation_and_bad_tag_is_an_error_not_a_panic() {
        let (trips, ids, wms) = batch();
        let mut buf = Vec::new();
        encode_trip_batch(&trips, &ids, &wms, &[0, 1], &mut buf);
        let mut got = TripBatchMessage::default();
        for n in 0..buf.len() {
            assert!(
                decode_trip_batch(&buf[..n], &mut got).is_err(),
                "prefix of {n} bytes decoded"
            );
        }
        let reason = |v: &[u8]| {
            let mut got = TripBatchMessage::default();
            decode_trip_batch(v, &mut got)
                .unwrap_err()
                .reason()
                .as_str()
        };
        let mut trailing = buf.clone();
        trailing.push(0);
        assert_eq!(reason(&trailing), "trailing_bytes");
        let mut no_rows = buf.clone();
        no_rows[3..7].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(reason(&no_rows), "invalid_field");
        let mut bad_tag = buf.clone();
        let last = bad_tag.len() - 1;
        bad_tag[last] = 7;
        assert_eq!(reason(&bad_tag), "invalid_field");
        let mut bad_flag = buf;
        // The store_and_fwd column follows 2 + 7 + 31 header bytes and
        // 2 × (5 × 8 + 2 × 4) bytes of columns.
        bad_flag[40 + 96] = 5;
        assert_eq!(reason(&bad_flag), "invalid_field");
    }
}
