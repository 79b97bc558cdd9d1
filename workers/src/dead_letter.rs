//! Dead letters: records that could not be used, each with its reason and
//! where it came from. Nothing is dropped without one: every stage sends
//! them through a [`crate::flow::DeadLetterSink`].

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::trip::{Micros, SourceRef, Trip};

/// Why a record was set aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A field could not be parsed as its type (text in a numeric column, a
    /// fractional zone id, NaN or infinity), or a required field is null.
    Unparsable,
    /// Dropoff time before pickup time.
    DropoffBeforePickup,
    /// Pickup or dropoff zone outside 1..=265.
    ZoneOutOfRange,
    /// Pickup years away from the month the file covers.
    TimestampOutOfRange,
    /// A value outside what a trip can have: a passenger count outside
    /// 0..=9, an amount or distance beyond ten million, a fare of a fraction
    /// of a cent.
    ValueOutOfRange,
    /// Arrived after every window it belongs to had closed.
    Late,
    /// A Kafka message with an empty value.
    Empty,
    /// A Kafka message in a schema version this worker does not read.
    UnknownVersion,
    /// A Kafka message shorter than its format needs.
    Truncated,
    /// A Kafka message with a field its format does not allow.
    InvalidField,
    /// A Kafka message with bytes after its record.
    TrailingBytes,
    /// A whole source failed (unreadable, cut off, not trip data): its
    /// landed rows are kept, the rest of it is not read.
    SourceError,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unparsable => "unparsable",
            Reason::DropoffBeforePickup => "dropoff_before_pickup",
            Reason::ZoneOutOfRange => "zone_out_of_range",
            Reason::TimestampOutOfRange => "timestamp_out_of_range",
            Reason::ValueOutOfRange => "value_out_of_range",
            Reason::Late => "late",
            Reason::Empty => "empty",
            Reason::UnknownVersion => "unknown_version",
            Reason::Truncated => "truncated",
            Reason::InvalidField => "invalid_field",
            Reason::TrailingBytes => "trailing_bytes",
            Reason::SourceError => "source_error",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rejected record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub source: SourceRef,
    pub reason: Reason,
    /// The offending field, when one is to blame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub detail: String,
    /// The parsed record, when it could be parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trip: Option<Trip>,
    /// The raw text, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// The message it arrived in, byte for byte, for a dead-letter topic
    /// that passes it on unchanged (a file or table keeps `trip` or `raw`).
    #[serde(skip)]
    pub message: Option<RawMessage>,
}

/// A Kafka message as it arrived.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawMessage {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
}

impl DeadLetter {
    /// A record that could not be parsed.
    pub fn unparsable(source: SourceRef, field: &str, detail: String, raw: Option<String>) -> Self {
        Self {
            source,
            reason: Reason::Unparsable,
            field: Some(field.to_string()),
            detail,
            trip: None,
            raw,
            message: None,
        }
    }

    /// A parsed record that failed a check.
    pub fn invalid(trip: Trip, reason: Reason, field: Option<&str>, detail: String) -> Self {
        Self {
            source: trip.source.clone(),
            reason,
            field: field.map(str::to_string),
            detail,
            trip: Some(trip),
            raw: None,
            message: None,
        }
    }

    /// A Kafka message that could not be used as a whole (it does not
    /// decode): `origin` is its `topic/partition@offset`.
    pub fn message(
        origin: String,
        reason: Reason,
        field: Option<&str>,
        detail: String,
        message: RawMessage,
    ) -> Self {
        Self {
            source: SourceRef {
                source: origin,
                row: 0,
            },
            reason,
            field: field.map(str::to_string),
            detail,
            trip: None,
            raw: None,
            message: Some(message),
        }
    }

    /// A record whose windows had all closed when it arrived.
    pub fn late(trip: Trip, watermark: Option<Micros>) -> Self {
        let detail = match watermark {
            Some(w) => format!(
                "pickup {} arrived after its window closed (watermark {})",
                crate::trip::format_micros(trip.pickup),
                crate::trip::format_micros(w)
            ),
            None => "arrived after its window closed".to_string(),
        };
        Self {
            source: trip.source.clone(),
            reason: Reason::Late,
            field: Some("pickup".into()),
            detail,
            trip: Some(trip),
            raw: None,
            message: None,
        }
    }
}

impl fmt::Display for DeadLetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.reason)?;
        if let Some(field) = &self.field {
            write!(f, " ({field})")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// Dead-letter counts by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeadLetterCounts(pub BTreeMap<Reason, u64>);

impl DeadLetterCounts {
    pub fn add(&mut self, reason: Reason, n: u64) {
        if n > 0 {
            *self.0.entry(reason).or_default() += n;
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    pub fn get(&self, reason: Reason) -> u64 {
        self.0.get(&reason).copied().unwrap_or(0)
    }
}
