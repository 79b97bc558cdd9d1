//! `window/1`, the value of the aggregates topic: a version byte, then one
//! JSON object per result. Results are a few per window and zone, orders of
//! magnitude fewer than trips, and JSON keeps them readable with any Kafka
//! tool.
//!
//! The object is its own type ([`WindowV1`]), not the engine's
//! [`WindowResult`]: renaming an engine field or a `GroupBy` variant of the
//! CRD cannot change what the sink workers of another version read. The
//! golden test pins every name. A new field is an additive change readers
//! ignore; anything else is a `window/2`.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use taxistream_crds::pipeline::GroupBy;

use super::DecodeError;
use crate::trip::Micros;
use crate::window::WindowResult;

/// Schema of window-result messages written by this version.
pub const WINDOW_SCHEMA: &str = "window/1";

const WINDOW_V1: u8 = 1;

/// What a window is keyed by, as `window/1` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum GroupByV1 {
    #[serde(rename = "pickupZone")]
    PickupZone,
    #[serde(rename = "dropoffZone")]
    DropoffZone,
    #[serde(rename = "borough")]
    Borough,
    #[serde(rename = "paymentType")]
    PaymentType,
}

impl From<GroupBy> for GroupByV1 {
    fn from(g: GroupBy) -> Self {
        match g {
            GroupBy::PickupZone => Self::PickupZone,
            GroupBy::DropoffZone => Self::DropoffZone,
            GroupBy::Borough => Self::Borough,
            GroupBy::PaymentType => Self::PaymentType,
        }
    }
}

impl From<GroupByV1> for GroupBy {
    fn from(g: GroupByV1) -> Self {
        match g {
            GroupByV1::PickupZone => Self::PickupZone,
            GroupByV1::DropoffZone => Self::DropoffZone,
            GroupByV1::Borough => Self::Borough,
            GroupByV1::PaymentType => Self::PaymentType,
        }
    }
}

/// The `window/1` object. Timestamps are microseconds since the epoch, in
/// the TLC's local wall-clock time.
#[derive(Debug, Serialize, Deserialize)]
pub struct WindowV1<'a> {
    group_by: GroupByV1,
    key: i32,
    #[serde(borrow)]
    key_name: Cow<'a, str>,
    #[serde(borrow)]
    zone: Option<Cow<'a, str>>,
    #[serde(borrow)]
    borough: Option<Cow<'a, str>>,
    window_start: Micros,
    window_end: Micros,
    count: u64,
    passengers: i64,
    max_passengers: Option<i32>,
    sum_fare: f64,
    sum_tip: f64,
    sum_tolls: f64,
    sum_total: f64,
    avg_distance: f64,
    avg_duration_s: f64,
    avg_speed_mph: Option<f64>,
    avg_tip_ratio: Option<f64>,
}

impl<'a> From<&'a WindowResult> for WindowV1<'a> {
    fn from(r: &'a WindowResult) -> Self {
        Self {
            group_by: r.group_by.into(),
            key: r.key,
            key_name: Cow::Borrowed(&r.key_name),
            zone: r.zone.as_deref().map(Cow::Borrowed),
            borough: r.borough.as_deref().map(Cow::Borrowed),
            window_start: r.window_start,
            window_end: r.window_end,
            count: r.count,
            passengers: r.passengers,
            max_passengers: r.max_passengers,
            sum_fare: r.sum_fare,
            sum_tip: r.sum_tip,
            sum_tolls: r.sum_tolls,
            sum_total: r.sum_total,
            avg_distance: r.avg_distance,
            avg_duration_s: r.avg_duration_s,
            avg_speed_mph: r.avg_speed_mph,
            avg_tip_ratio: r.avg_tip_ratio,
        }
    }
}

impl From<WindowV1<'_>> for WindowResult {
    fn from(w: WindowV1<'_>) -> Self {
        Self {
            group_by: w.group_by.into(),
            key: w.key,
            key_name: Arc::from(w.key_name.as_ref()),
            zone: w.zone.as_deref().map(Arc::from),
            borough: w.borough.as_deref().map(Arc::from),
            window_start: w.window_start,
            window_end: w.window_end,
            count: w.count,
            passengers: w.passengers,
            max_passengers: w.max_passengers,
            sum_fare: w.sum_fare,
            sum_tip: w.sum_tip,
            sum_tolls: w.sum_tolls,
            sum_total: w.sum_total,
            avg_distance: w.avg_distance,
            avg_duration_s: w.avg_duration_s,
            avg_speed_mph: w.avg_speed_mph,
            avg_tip_ratio: w.avg_tip_ratio,
        }
    }
}

/// Encodes a window result as `window/1`.
pub fn encode_window(result: &WindowResult) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = vec![WINDOW_V1];
    serde_json::to_writer(&mut out, &WindowV1::from(result))?;
    Ok(out)
}

/// Decodes a `window/1` value.
pub fn decode_window(value: &[u8]) -> Result<WindowResult, DecodeError> {
    match value.first() {
        None => Err(DecodeError::Empty),
        Some(&WINDOW_V1) => serde_json::from_slice::<WindowV1<'_>>(&value[1..])
            .map(WindowResult::from)
            .map_err(|e| DecodeError::Invalid {
                field: "window",
                detail: e.to_string(),
            }),
        Some(&v) => Err(DecodeError::UnknownVersion(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire contract, byte for byte: a change here breaks every sink
    /// worker of an older version still reading the topic.
    const GOLDEN: &str = r#"{"group_by":"borough","key":2,"key_name":"Manhattan","zone":null,"borough":"Manhattan","window_start":1735689600000000,"window_end":1735689900000000,"count":3,"passengers":4,"max_passengers":2,"sum_fare":30.5,"sum_tip":4.25,"sum_tolls":0.0,"sum_total":41.0,"avg_distance":1.5,"avg_duration_s":600.0,"avg_speed_mph":9.0,"avg_tip_ratio":null}"#;

    fn result() -> WindowResult {
        WindowResult {
            group_by: GroupBy::Borough,
            key: 2,
            key_name: Arc::from("Manhattan"),
            zone: None,
            borough: Some(Arc::from("Manhattan")),
            window_start: 1_735_689_600_000_000,
            window_end: 1_735_689_900_000_000,
            count: 3,
            passengers: 4,
            max_passengers: Some(2),
            sum_fare: 30.5,
            sum_tip: 4.25,
            sum_tolls: 0.0,
            sum_total: 41.0,
            avg_distance: 1.5,
            avg_duration_s: 600.0,
            avg_speed_mph: Some(9.0),
            avg_tip_ratio: None,
        }
    }

    #[test]
    fn window_1_is_pinned_byte_for_byte() {
        let encoded = encode_window(&result()).unwrap();
        assert_eq!(encoded[0], WINDOW_V1);
        assert_eq!(std::str::from_utf8(&encoded[1..]).unwrap(), GOLDEN);
        assert_eq!(decode_window(&encoded).unwrap(), result());
    }

    #[test]
    fn every_group_by_round_trips_and_readers_ignore_added_fields() {
        for g in [
            GroupBy::PickupZone,
            GroupBy::DropoffZone,
            GroupBy::Borough,
            GroupBy::PaymentType,
        ] {
            let r = WindowResult {
                group_by: g,
                ..result()
            };
            assert_eq!(decode_window(&encode_window(&r).unwrap()).unwrap(), r);
        }
        let added = format!(
            "\u{1}{}",
            GOLDEN.replace("\"key\":2", "\"key\":2,\"new\":[1]")
        );
        assert_eq!(decode_window(added.as_bytes()).unwrap(), result());
    }

    #[test]
    fn other_versions_and_bad_json_are_decode_errors() {
        assert!(matches!(decode_window(&[]), Err(DecodeError::Empty)));
        assert!(matches!(
            decode_window(b"\x02{}"),
            Err(DecodeError::UnknownVersion(2))
        ));
        assert!(matches!(
            decode_window(b"\x01{\"key\":"),
            Err(DecodeError::Invalid {
                field: "window",
                ..
            })
        ));
    }
}
