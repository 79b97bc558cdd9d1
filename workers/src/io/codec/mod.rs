//! The Kafka wire format of trips and window results.
//!
//! Every message value starts with one byte naming its schema version, and
//! every message also carries the header [`SCHEMA_HEADER`] (e.g. `trip/2`) so
//! tools can route messages without decoding them. A consumer that meets a
//! version it does not know sends the message to the dead-letter topic with
//! reason `unknown_version` instead of guessing.
//!
//! # Trips topic, format 3
//!
//! The trips topic carries two kinds of message: batches of trips (header
//! `trip/3`, version byte 3) and watermark markers (header `watermark/2`,
//! unchanged from format 2). The relay that publishes the trips knows how
//! far event time has progressed over every source it reads, so it stamps
//! that watermark on each trip and sends markers to every partition; the
//! aggregate closes windows on the carried watermark, which makes results
//! independent of how keys are spread over partitions.
//!
//! One message carries the trips of one relay round that go to one
//! partition (one key group), in publication order, at most
//! [`MAX_TRIPS_PER_MESSAGE`] of them; a longer run is split into
//! consecutive messages. Every trip of a message comes from one source. The
//! Kafka key is the key group (decimal): the trips inside have different
//! group keys, each of which hashes to that group (`murmur2(key) %
//! key_groups`), so the pinning of keys to partitions is unchanged. One
//! message per trip capped the relay at the broker's per-message rate.
//!
//! Trip batch, little-endian; `n` is the number of trips and every column
//! holds one value per trip, in publication order:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version = 3 |
//! | 1 | kind = 0 (trip batch) |
//! | 1 | dataset: 0 yellow, 1 green, 2 fhv, 3 fhvhv |
//! | 4 | n, 1..=4096 |
//! | 2 + s | source (file, URL or dataset), UTF-8 |
//! | 8n | landing id (i64): the row's id in the PostgreSQL landing table (with the source and pickup, the key that drops re-published copies) |
//! | 8n | watermark, µs: no trip published after this one has an earlier pickup (except trips of sources that start later) |
//! | 8n | source row (u64) |
//! | 8n | pickup, µs of naive local time (the event time) |
//! | 8n | dropoff, µs |
//! | 4n + 4n | pickup zone, dropoff zone (i32) |
//! | n | store_and_fwd (i8): 1 Y, 0 N, -1 null |
//! | 8 × 8n | trip_distance, fare, extra, mta_tax, tip, tolls, improvement_surcharge, total (f64) |
//! | 5 × (1 + …) | vendor_id, passenger_count, ratecode_id, payment_type, trip_type (i32), nullable |
//! | 4 × (1 + …) | congestion_surcharge, airport_fee, cbd_congestion_fee, ehail_fee (f64), nullable |
//!
//! A nullable column starts with a tag: 0 no trip has a value (nothing
//! follows), 1 every trip has one (n values follow), 2 some have one (a
//! bitmap of `ceil(n / 8)` bytes, bit `i % 8` of byte `i / 8` set when trip
//! `i` has a value, then n values, zero where absent). The refund flag is
//! not carried: it follows from the amounts, as in [`crate::trip::TripBatch`].
//!
//! Columns of fixed width decode straight into a [`crate::trip::TripBatch`]
//! without a row per trip; a yellow trip takes about 170 bytes before batch
//! compression (zstd, which shrinks the sorted pickups, the consecutive
//! landing ids and the repeated small values).
//!
//! Watermark marker: version = 2, kind = 1, then the watermark (8 bytes, µs).
//!
//! ## Format 2, still read
//!
//! The aggregate still reads `trip/2` (one trip per message, below), so a
//! relay and an aggregate can be upgraded one after the other while trips of
//! the old format are still in the topic, as a rolling upgrade of a
//! Strimzi or Flink deployment expects; a `trip/2` trip is handled as a
//! batch of one. Only the relay's writer moved to format 3. Format 1
//! (landing-order trips without a watermark) and any other version go to
//! the dead-letter topic as `unknown_version`.
//!
//! Trip (`trip/2`), little-endian, fixed layout followed by the optional fields that are present:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version = 2 |
//! | 1 | kind = 0 (trip) |
//! | 1 | dataset: 0 yellow, 1 green, 2 fhv, 3 fhvhv |
//! | 2 | flags: bit per optional field present (see `F_*`), plus `store_and_fwd` value and `refund` |
//! | 8 | landing id |
//! | 8 | watermark, µs |
//! | 8 | pickup, µs |
//! | 8 | dropoff, µs |
//! | 4 + 4 | pickup zone, dropoff zone |
//! | 8 × 8 | trip_distance, fare, extra, mta_tax, tip, tolls, improvement_surcharge, total (f64) |
//! | 4 each | vendor_id, passenger_count, ratecode_id, payment_type, trip_type, when present |
//! | 8 each | congestion_surcharge, airport_fee, cbd_congestion_fee, ehail_fee, when present |
//! | 8 | source row |
//! | 2 + n | source, UTF-8 |
//!
//! # `window/1` (value of the aggregates topic)
//!
//! See [`window`].

use taxistream_crds::pipeline::Dataset;

use crate::dead_letter::Reason;
use crate::trip::{Micros, SourceRef, Trip};

pub mod trip_batch;
pub mod window;

pub use trip_batch::{
    MAX_TRIPS_PER_MESSAGE, TRIP_BATCH_SCHEMA, TripBatchMessage, decode_trip_batch,
    encode_trip_batch,
};
pub use window::{WINDOW_SCHEMA, decode_window, encode_window};

/// Header naming the schema of a message value.
pub const SCHEMA_HEADER: &str = "taxistream-schema";
/// Schema of single-trip messages of format 2, still read.
pub const TRIP_SCHEMA: &str = "trip/2";
/// Schema of watermark markers on the trips topic.
pub const WATERMARK_SCHEMA: &str = "watermark/2";

const TRIPS_V2: u8 = 2;
const KIND_TRIP: u8 = 0;
const KIND_WATERMARK: u8 = 1;

const F_VENDOR: u16 = 1 << 0;
const F_PASSENGERS: u16 = 1 << 1;
const F_RATECODE: u16 = 1 << 2;
const F_PAYMENT: u16 = 1 << 3;
const F_TRIP_TYPE: u16 = 1 << 4;
const F_CONGESTION: u16 = 1 << 5;
const F_AIRPORT: u16 = 1 << 6;
const F_CBD: u16 = 1 << 7;
const F_EHAIL: u16 = 1 << 8;
const F_STORE_FWD: u16 = 1 << 9;
const F_STORE_FWD_Y: u16 = 1 << 10;
const F_REFUND: u16 = 1 << 11;
const F_KNOWN: u16 = (1 << 12) - 1;

/// Why a message could not be decoded; the `reason` goes into the dead-letter header.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty message value")]
    Empty,
    #[error("unknown schema version {0}")]
    UnknownVersion(u8),
    #[error("message truncated: needed {needed} bytes at offset {at}, value has {len}")]
    Truncated {
        at: usize,
        needed: usize,
        len: usize,
    },
    #[error("invalid field {field}: {detail}")]
    Invalid { field: &'static str, detail: String },
    #[error("{0} trailing bytes after the record")]
    Trailing(usize),
}

impl DecodeError {
    /// The dead-letter reason of a message that does not decode.
    pub fn reason(&self) -> Reason {
        match self {
            DecodeError::Empty => Reason::Empty,
            DecodeError::UnknownVersion(_) => Reason::UnknownVersion,
            DecodeError::Truncated { .. } => Reason::Truncated,
            DecodeError::Invalid { .. } => Reason::InvalidField,
            DecodeError::Trailing(_) => Reason::TrailingBytes,
        }
    }
}

/// A trip as published by the relay: the record, its landing id and the
/// watermark at the time it was published.
#[derive(Debug, Clone, PartialEq)]
pub struct TripMessage {
    pub landing_id: u64,
    pub watermark: Micros,
    pub trip: Trip,
}

/// A message of the trips topic.
#[derive(Debug, Clone, PartialEq)]
pub enum TripsMessage {
    Trip(Box<TripMessage>),
    /// Event time has reached this watermark on every source in flight.
    Watermark(Micros),
}

fn dataset_code(d: Dataset) -> u8 {
    match d {
        Dataset::Yellow => 0,
        Dataset::Green => 1,
        Dataset::Fhv => 2,
        Dataset::Fhvhv => 3,
    }
}

fn dataset_from(code: u8) -> Result<Dataset, DecodeError> {
    Ok(match code {
        0 => Dataset::Yellow,
        1 => Dataset::Green,
        2 => Dataset::Fhv,
        3 => Dataset::Fhvhv,
        other => {
            return Err(DecodeError::Invalid {
                field: "dataset",
                detail: format!("code {other}"),
            });
        }
    })
}

/// Appends the `trip/2` encoding of `msg` to `out` (cleared first), so a
/// producer loop can reuse one buffer.
pub fn encode_trip(msg: &TripMessage, out: &mut Vec<u8>) {
    let t = &msg.trip;
    out.clear();
    let mut flags = 0u16;
    let mut set = |bit: u16, on: bool| {
        if on {
            flags |= bit
        }
    };
    set(F_VENDOR, t.vendor_id.is_some());
    set(F_PASSENGERS, t.passenger_count.is_some());
    set(F_RATECODE, t.ratecode_id.is_some());
    set(F_PAYMENT, t.payment_type.is_some());
    set(F_TRIP_TYPE, t.trip_type.is_some());
    set(F_CONGESTION, t.congestion_surcharge.is_some());
    set(F_AIRPORT, t.airport_fee.is_some());
    set(F_CBD, t.cbd_congestion_fee.is_some());
    set(F_EHAIL, t.ehail_fee.is_some());
    set(F_STORE_FWD, t.store_and_fwd.is_some());
    set(F_STORE_FWD_Y, t.store_and_fwd == Some(true));
    set(F_REFUND, t.refund);

    out.push(TRIPS_V2);
    out.push(KIND_TRIP);
    out.push(dataset_code(t.dataset));
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&msg.landing_id.to_le_bytes());
    out.extend_from_slice(&msg.watermark.to_le_bytes());
    out.extend_from_slice(&t.pickup.to_le_bytes());
    out.extend_from_slice(&t.dropoff.to_le_bytes());
    out.extend_from_slice(&t.pu_location_id.to_le_bytes());
    out.extend_from_slice(&t.do_location_id.to_le_bytes());
    for v in [
        t.trip_distance,
        t.fare_amount,
        t.extra,
        t.mta_tax,
        t.tip_amount,
        t.tolls_amount,
        t.improvement_surcharge,
        t.total_amount,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for v in [
        t.vendor_id,
        t.passenger_count,
        t.ratecode_id,
        t.payment_type,
        t.trip_type,
    ]
    .into_iter()
    .flatten()
    {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for v in [
        t.congestion_surcharge,
        t.airport_fee,
        t.cbd_congestion_fee,
        t.ehail_fee,
    ]
    .into_iter()
    .flatten()
    {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&t.source.row.to_le_bytes());
    let src = bounded_source(&t.source.source);
    out.extend_from_slice(&(src.len() as u16).to_le_bytes());
    out.extend_from_slice(src.as_bytes());
}

/// Source names are bounded by the CRD (2048 bytes); longer ones are cut at
/// a character boundary to fit the 2-byte length rather than making the
/// message undecodable.
fn bounded_source(src: &str) -> &str {
    let mut cut = src.len().min(u16::MAX as usize);
    while !src.is_char_boundary(cut) {
        cut -= 1;
    }
    &src[..cut]
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.at..end];
                self.at = end;
                Ok(s)
            }
            None => Err(DecodeError::Truncated {
                at: self.at,
                needed: n,
                len: self.buf.len(),
            }),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<Micros, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    fn f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_le_bytes(self.array()?))
    }
}

/// The schema version byte of a value, if it has one.
pub fn version_of(value: &[u8]) -> Option<u8> {
    value.first().copied()
}

/// Writes the `watermark/2` marker for `watermark` into `out` (cleared first).
pub fn encode_watermark(watermark: Micros, out: &mut Vec<u8>) {
    out.clear();
    out.push(TRIPS_V2);
    out.push(KIND_WATERMARK);
    out.extend_from_slice(&watermark.to_le_bytes());
}

/// Decodes a value of the trips topic. Structural checks only: field-level
/// validation (zones, times, amounts) is the validator's job, so every stage
/// applies the same rules.
pub fn decode_trips(value: &[u8]) -> Result<TripsMessage, DecodeError> {
    let mut r = Reader { buf: value, at: 0 };
    match value.first() {
        None => return Err(DecodeError::Empty),
        Some(&TRIPS_V2) => {}
        Some(&v) => return Err(DecodeError::UnknownVersion(v)),
    }
    r.u8()?;
    match r.u8()? {
        KIND_TRIP => decode_trip_body(&mut r).map(|m| TripsMessage::Trip(Box::new(m))),
        KIND_WATERMARK => {
            let w = r.i64()?;
            if r.at != value.len() {
                return Err(DecodeError::Trailing(value.len() - r.at));
            }
            Ok(TripsMessage::Watermark(w))
        }
        other => Err(DecodeError::Invalid {
            field: "kind",
            detail: format!("code {other}"),
        }),
    }
}

/// What a message of the trips topic holds, as the aggregate reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TripsContent {
    /// Trips, now in the batch passed to [`decode_trips_topic`].
    Trips,
    /// Event time has reached this watermark on every source in flight.
    Watermark(Micros),
}

/// Decodes any message of the trips topic the aggregate reads: a `trip/3`
/// batch into `out`, a `trip/2` trip into `out` as a batch of one (so trips
/// of a relay not yet upgraded still count), a marker as its watermark.
pub fn decode_trips_topic(
    value: &[u8],
    out: &mut TripBatchMessage,
) -> Result<TripsContent, DecodeError> {
    if version_of(value) == Some(trip_batch::TRIPS_V3) {
        return decode_trip_batch(value, out).map(|()| TripsContent::Trips);
    }
    match decode_trips(value)? {
        TripsMessage::Watermark(w) => Ok(TripsContent::Watermark(w)),
        TripsMessage::Trip(m) => {
            out.clear();
            let t = &mut out.trips;
            if *t.source != *m.trip.source.source {
                t.source = m.trip.source.source.as_str().into();
            }
            t.dataset = m.trip.dataset;
            t.push(&m.trip);
            out.landing_id
                .push(i64::try_from(m.landing_id).unwrap_or(i64::MAX));
            out.watermark.push(m.watermark);
            Ok(TripsContent::Trips)
        }
    }
}

fn decode_trip_body(r: &mut Reader<'_>) -> Result<TripMessage, DecodeError> {
    let value = r.buf;
    let dataset = dataset_from(r.u8()?)?;
    let flags = r.u16()?;
    if flags & !F_KNOWN != 0 {
        return Err(DecodeError::Invalid {
            field: "flags",
            detail: format!("unknown bits {:#06x}", flags & !F_KNOWN),
        });
    }
    let has = |bit: u16| flags & bit != 0;
    let landing_id = r.u64()?;
    let watermark = r.i64()?;
    let pickup = r.i64()?;
    let dropoff = r.i64()?;
    let pu_location_id = r.i32()?;
    let do_location_id = r.i32()?;
    let trip_distance = r.f64()?;
    let fare_amount = r.f64()?;
    let extra = r.f64()?;
    let mta_tax = r.f64()?;
    let tip_amount = r.f64()?;
    let tolls_amount = r.f64()?;
    let improvement_surcharge = r.f64()?;
    let total_amount = r.f64()?;
    let mut opt_i32 = |bit: u16| -> Result<Option<i32>, DecodeError> {
        if has(bit) {
            r.i32().map(Some)
        } else {
            Ok(None)
        }
    };
    let vendor_id = opt_i32(F_VENDOR)?;
    let passenger_count = opt_i32(F_PASSENGERS)?;
    let ratecode_id = opt_i32(F_RATECODE)?;
    let payment_type = opt_i32(F_PAYMENT)?;
    let trip_type = opt_i32(F_TRIP_TYPE)?;
    let mut opt_f64 = |bit: u16| -> Result<Option<f64>, DecodeError> {
        if has(bit) {
            r.f64().map(Some)
        } else {
            Ok(None)
        }
    };
    let congestion_surcharge = opt_f64(F_CONGESTION)?;
    let airport_fee = opt_f64(F_AIRPORT)?;
    let cbd_congestion_fee = opt_f64(F_CBD)?;
    let ehail_fee = opt_f64(F_EHAIL)?;
    let row = r.u64()?;
    let len = r.u16()? as usize;
    let source = std::str::from_utf8(r.take(len)?)
        .map_err(|e| DecodeError::Invalid {
            field: "source",
            detail: e.to_string(),
        })?
        .to_owned();
    if r.at != value.len() {
        return Err(DecodeError::Trailing(value.len() - r.at));
    }
    Ok(TripMessage {
        landing_id,
        watermark,
        trip: Trip {
            source: SourceRef { source, row },
            dataset,
            vendor_id,
            pickup,
            dropoff,
            passenger_count,
            trip_distance,
            ratecode_id,
            store_and_fwd: has(F_STORE_FWD).then_some(has(F_STORE_FWD_Y)),
            pu_location_id,
            do_location_id,
            payment_type,
            fare_amount,
            extra,
            mta_tax,
            tip_amount,
            tolls_amount,
            improvement_surcharge,
            total_amount,
            congestion_surcharge,
            airport_fee,
            cbd_congestion_fee,
            ehail_fee,
            trip_type,
            refund: has(F_REFUND),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn trip() -> TripMessage {
        TripMessage {
            landing_id: 42,
            watermark: 1_738_367_000_000_000,
            trip: Trip {
                source: SourceRef {
                    source: "yellow_tripdata_2025-02.parquet".into(),
                    row: 1234,
                },
                dataset: Dataset::Yellow,
                vendor_id: Some(2),
                pickup: 1_738_368_000_000_000,
                dropoff: 1_738_368_900_000_000,
                passenger_count: None,
                trip_distance: 3.2,
                ratecode_id: Some(1),
                store_and_fwd: Some(true),
                pu_location_id: 132,
                do_location_id: 236,
                payment_type: Some(1),
                fare_amount: -17.7,
                extra: 0.0,
                mta_tax: 0.5,
                tip_amount: 0.0,
                tolls_amount: 6.94,
                improvement_surcharge: 1.0,
                total_amount: -9.26,
                congestion_surcharge: Some(2.5),
                airport_fee: None,
                cbd_congestion_fee: Some(0.75),
                ehail_fee: None,
                trip_type: None,
                refund: true,
            },
        }
    }

    #[test]
    fn trip_round_trips() {
        let mut buf = Vec::new();
        encode_trip(&trip(), &mut buf);
        assert_eq!(
            decode_trips(&buf).unwrap(),
            TripsMessage::Trip(Box::new(trip()))
        );
        assert!(buf.len() < 200, "{} bytes", buf.len());
    }

    #[test]
    fn the_topic_reader_takes_batches_old_single_trips_and_markers() {
        let mut out = TripBatchMessage::default();
        let mut buf = Vec::new();
        encode_trip(&trip(), &mut buf);
        assert_eq!(
            decode_trips_topic(&buf, &mut out).unwrap(),
            TripsContent::Trips
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out.trips.row(0), trip().trip);
        assert_eq!(
            (out.landing_id[0], out.watermark[0]),
            (42, trip().watermark)
        );
        let mut batch = Vec::new();
        encode_trip_batch(
            &out.trips.clone(),
            &[7],
            &[trip().watermark + 1],
            &[0, 0],
            &mut batch,
        );
        assert_eq!(
            decode_trips_topic(&batch, &mut out).unwrap(),
            TripsContent::Trips
        );
        assert_eq!((out.len(), out.landing_id.as_slice()), (2, &[7, 7][..]));
        encode_watermark(5, &mut buf);
        assert_eq!(
            decode_trips_topic(&buf, &mut out).unwrap(),
            TripsContent::Watermark(5)
        );
        buf[0] = 4;
        assert_eq!(
            decode_trips_topic(&buf, &mut out)
                .unwrap_err()
                .reason()
                .as_str(),
            "unknown_version"
        );
    }

    #[test]
    fn watermark_markers_round_trip_and_reject_trailing_bytes() {
        let mut buf = Vec::new();
        encode_watermark(-5, &mut buf);
        assert_eq!(decode_trips(&buf).unwrap(), TripsMessage::Watermark(-5));
        buf.push(0);
        assert_eq!(
            decode_trips(&buf).unwrap_err().reason().as_str(),
            "trailing_bytes"
        );
        assert_eq!(
            decode_trips(&[TRIPS_V2, 7]).unwrap_err().reason().as_str(),
            "invalid_field"
        );
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let mut buf = Vec::new();
        encode_trip(&trip(), &mut buf);
        for n in 0..buf.len() {
            assert!(
                decode_trips(&buf[..n]).is_err(),
                "prefix of {n} bytes decoded"
            );
        }
    }

    #[test]
    fn unknown_versions_and_garbage_are_rejected_with_reasons() {
        let mut buf = Vec::new();
        encode_trip(&trip(), &mut buf);
        buf[0] = 1;
        assert_eq!(
            decode_trips(&buf).unwrap_err().reason().as_str(),
            "unknown_version"
        );
        assert_eq!(decode_trips(&[]).unwrap_err().reason().as_str(), "empty");
        assert_eq!(
            decode_trips(b"\x02\x00\x00\x00\x00garbage")
                .unwrap_err()
                .reason()
                .as_str(),
            "truncated"
        );
        buf[0] = 2;
        buf.push(0);
        assert_eq!(
            decode_trips(&buf).unwrap_err().reason().as_str(),
            "trailing_bytes"
        );
    }
}
