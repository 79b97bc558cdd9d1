//! Rows of a [`TripBatch`] in PostgreSQL's binary `COPY` format, written
//! straight from the batch's columns: no `Trip` or `String` per row here,
//! and no text for the server to parse.
//!
//! The fields are the source's key followed by [`super::COLUMNS`]; each value is sent as the column's
//! own type (`int4`, `int8`, `float8`, `bool`, `timestamp`, `text`), which
//! binary `COPY` requires.

use crate::trip::{Micros, NULL_I32, TripBatch};

/// Fields per row: the source's key and the entries of [`super::COLUMNS`].
const FIELDS: i16 = 27;

/// File header: signature, flags (no OIDs), header-extension length.
const HEADER: &[u8; 19] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01), the origin
/// of binary `timestamp` values.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Starts a `COPY` stream.
pub(super) fn header(buf: &mut Vec<u8>) {
    buf.extend_from_slice(HEADER);
}

/// Ends a `COPY` stream.
pub(super) fn trailer(buf: &mut Vec<u8>) {
    buf.extend_from_slice(&(-1i16).to_be_bytes());
}

fn null(buf: &mut Vec<u8>) {
    buf.extend_from_slice(&(-1i32).to_be_bytes());
}

fn bytes(buf: &mut Vec<u8>, v: &[u8]) {
    // Source names and dataset labels are far below 2 GiB.
    buf.extend_from_slice(&(v.len() as i32).to_be_bytes());
    buf.extend_from_slice(v);
}

fn int4(buf: &mut Vec<u8>, v: i32) {
    buf.extend_from_slice(&4i32.to_be_bytes());
    buf.extend_from_slice(&v.to_be_bytes());
}

fn int4_or_null(buf: &mut Vec<u8>, v: i32) {
    if v == NULL_I32 {
        null(buf)
    } else {
        int4(buf, v)
    }
}

fn int8(buf: &mut Vec<u8>, v: i64) {
    buf.extend_from_slice(&8i32.to_be_bytes());
    buf.extend_from_slice(&v.to_be_bytes());
}

fn float8(buf: &mut Vec<u8>, v: f64) {
    buf.extend_from_slice(&8i32.to_be_bytes());
    buf.extend_from_slice(&v.to_bits().to_be_bytes());
}

/// Optional amounts are NaN where absent (see [`TripBatch`]).
fn float8_or_null(buf: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        null(buf)
    } else {
        float8(buf, v)
    }
}

fn boolean(buf: &mut Vec<u8>, v: bool) {
    buf.extend_from_slice(&1i32.to_be_bytes());
    buf.push(u8::from(v));
}

fn timestamp(buf: &mut Vec<u8>, us: Micros) {
    // Saturating: only instants hundreds of thousands of years away reach
    // the bound, and the server rejects those as out of range.
    int8(buf, us.saturating_sub(POSTGRES_EPOCH_MICROS));
}

/// Appends row `i` of `batch` as one tuple, landed under `source` (its
/// name and key).
pub(super) fn row(buf: &mut Vec<u8>, (source, key): (&str, i64), batch: &TripBatch, i: usize) {
    buf.extend_from_slice(&FIELDS.to_be_bytes());
    int8(buf, key);
    bytes(buf, source.as_bytes());
    // Row numbers count records of one file: far below i64::MAX.
    int8(buf, batch.row[i] as i64);
    bytes(buf, batch.dataset.as_str().as_bytes());
    int4_or_null(buf, batch.vendor_id[i]);
    timestamp(buf, batch.pickup[i]);
    timestamp(buf, batch.dropoff[i]);
    int4_or_null(buf, batch.passenger_count[i]);
    float8(buf, batch.trip_distance[i]);
    int4_or_null(buf, batch.ratecode_id[i]);
    match batch.store_and_fwd[i] {
        sf if sf < 0 => null(buf),
        sf => boolean(buf, sf == 1),
    }
    int4(buf, batch.pu_location_id[i]);
    int4(buf, batch.do_location_id[i]);
    int4_or_null(buf, batch.payment_type[i]);
    for column in [
        &batch.fare_amount,
        &batch.extra,
        &batch.mta_tax,
        &batch.tip_amount,
        &batch.tolls_amount,
        &batch.improvement_surcharge,
        &batch.total_amount,
    ] {
        float8(buf, column[i]);
    }
    for column in [
        &batch.congestion_surcharge,
        &batch.airport_fee,
        &batch.cbd_congestion_fee,
        &batch.ehail_fee,
    ] {
        float8_or_null(buf, column[i]);
    }
    int4_or_null(buf, batch.trip_type[i]);
    boolean(buf, batch.is_refund(i));
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::trip::{Dataset, SourceRef, Trip};

    /// Splits one encoded tuple into its fields (`None` for NULL).
    fn fields(mut t: &[u8]) -> Vec<Option<Vec<u8>>> {
        let n = i16::from_be_bytes([t[0], t[1]]);
        t = &t[2..];
        let mut out = Vec::new();
        for _ in 0..n {
            let len = i32::from_be_bytes([t[0], t[1], t[2], t[3]]);
            t = &t[4..];
            if len < 0 {
                out.push(None);
            } else {
                out.push(Some(t[..len as usize].to_vec()));
                t = &t[len as usize..];
            }
        }
        assert!(t.is_empty(), "bytes after the last field");
        out
    }

    #[test]
    fn a_row_is_one_tuple_of_the_landing_columns_in_their_binary_types() {
        let trip = Trip {
            source: SourceRef {
                source: "ignored".into(),
                row: 3,
            },
            dataset: Dataset::Green,
            vendor_id: None,
            pickup: POSTGRES_EPOCH_MICROS + 1_000_000,
            dropoff: 0,
            passenger_count: Some(2),
            trip_distance: 1.25,
            ratecode_id: None,
            store_and_fwd: Some(true),
            pu_location_id: 1,
            do_location_id: 2,
            payment_type: None,
            fare_amount: -3.5,
            extra: 0.0,
            mta_tax: 0.5,
            tip_amount: 0.0,
            tolls_amount: 0.0,
            improvement_surcharge: 0.3,
            total_amount: -2.7,
            congestion_surcharge: None,
            airport_fee: Some(1.75),
            cbd_congestion_fee: None,
            ehail_fee: None,
            trip_type: Some(1),
            refund: true,
        };
        let batch = TripBatch::from_trips(Arc::from("x"), Dataset::Green, &[trip]);
        let mut buf = Vec::new();
        row(&mut buf, ("a\tb", 7), &batch, 0);
        let f = fields(&buf);
        assert_eq!(f.len(), 1 + super::super::COLUMNS.split(',').count());
        let be8 = |v: i64| Some(v.to_be_bytes().to_vec());
        let be4 = |v: i32| Some(v.to_be_bytes().to_vec());
        let f8 = |v: f64| Some(v.to_bits().to_be_bytes().to_vec());
        let want = vec![
            be8(7),
            Some(b"a\tb".to_vec()),
            be8(3),
            Some(b"green".to_vec()),
            None,
            be8(1_000_000),
            be8(-POSTGRES_EPOCH_MICROS),
            be4(2),
            f8(1.25),
            None,
            Some(vec![1]),
            be4(1),
            be4(2),
            None,
            f8(-3.5),
            f8(0.0),
            f8(0.5),
            f8(0.0),
            f8(0.0),
            f8(0.3),
            f8(-2.7),
            None,
            f8(1.75),
            None,
            None,
            be4(1),
            Some(vec![1]),
        ];
        assert_eq!(f, want);
    }

    #[test]
    fn the_stream_is_framed_by_the_signature_and_the_end_marker() {
        let mut buf = Vec::new();
        header(&mut buf);
        trailer(&mut buf);
        assert_eq!(&buf[..11], b"PGCOPY\n\xff\r\n\0");
        assert_eq!(&buf[11..19], &[0; 8]);
        assert_eq!(&buf[19..], &[0xff, 0xff]);
    }
}
