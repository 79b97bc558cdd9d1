//! Column names and text values shared by every reader: which TLC column is
//! which across layouts, and how text fields (CSV, Socrata JSON) parse.

use crate::trip::{Dataset, Micros, NULL_I32, TripBatch, micros_from_naive, new_york_from_utc};

use chrono::{DateTime, NaiveDateTime};

/// The normalised columns of [`crate::trip::Trip`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    VendorId,
    Pickup,
    Dropoff,
    PassengerCount,
    TripDistance,
    RatecodeId,
    StoreAndFwd,
    PuLocationId,
    DoLocationId,
    PaymentType,
    FareAmount,
    Extra,
    MtaTax,
    TipAmount,
    TollsAmount,
    ImprovementSurcharge,
    TotalAmount,
    CongestionSurcharge,
    AirportFee,
    CbdCongestionFee,
    EhailFee,
    TripType,
}

/// Number of [`Field`]s.
pub const FIELD_COUNT: usize = 22;

/// Every field, in [`Field`] order.
pub const ALL_FIELDS: [Field; FIELD_COUNT] = [
    Field::VendorId,
    Field::Pickup,
    Field::Dropoff,
    Field::PassengerCount,
    Field::TripDistance,
    Field::RatecodeId,
    Field::StoreAndFwd,
    Field::PuLocationId,
    Field::DoLocationId,
    Field::PaymentType,
    Field::FareAmount,
    Field::Extra,
    Field::MtaTax,
    Field::TipAmount,
    Field::TollsAmount,
    Field::ImprovementSurcharge,
    Field::TotalAmount,
    Field::CongestionSurcharge,
    Field::AirportFee,
    Field::CbdCongestionFee,
    Field::EhailFee,
    Field::TripType,
];

/// What kind of value a field holds, and whether the TLC lets it be null.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Timestamp,
    Int { nullable: bool },
    Float { nullable: bool },
    Flag,
}

impl Field {
    /// The TLC's current column name (used in messages).
    pub fn name(self) -> &'static str {
        match self {
            Field::VendorId => "VendorID",
            Field::Pickup => "pickup_datetime",
            Field::Dropoff => "dropoff_datetime",
            Field::PassengerCount => "passenger_count",
            Field::TripDistance => "trip_distance",
            Field::RatecodeId => "RatecodeID",
            Field::StoreAndFwd => "store_and_fwd_flag",
            Field::PuLocationId => "PULocationID",
            Field::DoLocationId => "DOLocationID",
            Field::PaymentType => "payment_type",
            Field::FareAmount => "fare_amount",
            Field::Extra => "extra",
            Field::MtaTax => "mta_tax",
            Field::TipAmount => "tip_amount",
            Field::TollsAmount => "tolls_amount",
            Field::ImprovementSurcharge => "improvement_surcharge",
            Field::TotalAmount => "total_amount",
            Field::CongestionSurcharge => "congestion_surcharge",
            Field::AirportFee => "airport_fee",
            Field::CbdCongestionFee => "cbd_congestion_fee",
            Field::EhailFee => "ehail_fee",
            Field::TripType => "trip_type",
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Field::Pickup | Field::Dropoff => Kind::Timestamp,
            Field::StoreAndFwd => Kind::Flag,
            Field::PuLocationId | Field::DoLocationId => Kind::Int { nullable: false },
            Field::VendorId
            | Field::PassengerCount
            | Field::RatecodeId
            | Field::PaymentType
            | Field::TripType => Kind::Int { nullable: true },
            Field::TripDistance
            | Field::FareAmount
            | Field::TipAmount
            | Field::TollsAmount
            | Field::TotalAmount => Kind::Float { nullable: false },
            // Absent from some layouts or null in some rows; a missing
            // surcharge is not a reason to reject a trip.
            Field::Extra
            | Field::MtaTax
            | Field::ImprovementSurcharge
            | Field::CongestionSurcharge
            | Field::AirportFee
            | Field::CbdCongestionFee
            | Field::EhailFee => Kind::Float { nullable: true },
        }
    }

    /// Whether a file without this column cannot be read at all.
    pub fn required(self) -> bool {
        matches!(
            self,
            Field::Pickup
                | Field::Dropoff
                | Field::PuLocationId
                | Field::DoLocationId
                | Field::TripDistance
                | Field::FareAmount
                | Field::TipAmount
                | Field::TollsAmount
                | Field::TotalAmount
        )
    }

    /// Recognises a column name of any TLC layout from 2016-07 on: the TLC
    /// names (`VendorID`, `tpep_pickup_datetime`, `Airport_fee`…), their
    /// snake_case renames (`vendor_id`, `pickup_location_id`…) and the
    /// lowercase Socrata names (`vendorid`, `pulocationid`…).
    pub fn from_column(name: &str) -> Option<Field> {
        // A byte-order mark survives in headers of spreadsheet-saved CSVs.
        let key: String = name
            .trim()
            .trim_start_matches('\u{feff}')
            .chars()
            .filter(|c| *c != '_' && *c != ' ')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        Some(match key.as_str() {
            "vendorid" => Field::VendorId,
            "tpeppickupdatetime" | "lpeppickupdatetime" | "pickupdatetime" => Field::Pickup,
            "tpepdropoffdatetime" | "lpepdropoffdatetime" | "dropoffdatetime" => Field::Dropoff,
            "passengercount" => Field::PassengerCount,
            "tripdistance" => Field::TripDistance,
            "ratecodeid" | "ratecode" => Field::RatecodeId,
            "storeandfwdflag" => Field::StoreAndFwd,
            "pulocationid" | "pickuplocationid" => Field::PuLocationId,
            "dolocationid" | "dropofflocationid" => Field::DoLocationId,
            "paymenttype" => Field::PaymentType,
            "fareamount" => Field::FareAmount,
            "extra" => Field::Extra,
            "mtatax" => Field::MtaTax,
            "tipamount" => Field::TipAmount,
            "tollsamount" => Field::TollsAmount,
            "improvementsurcharge" => Field::ImprovementSurcharge,
            "totalamount" => Field::TotalAmount,
            "congestionsurcharge" => Field::CongestionSurcharge,
            "airportfee" => Field::AirportFee,
            "cbdcongestionfee" => Field::CbdCongestionFee,
            "ehailfee" => Field::EhailFee,
            "triptype" => Field::TripType,
            _ => return None,
        })
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Whether a column name marks a pre-2016-07 layout (coordinates, not zones).
pub fn is_legacy_coordinate(name: &str) -> bool {
    let n = name.trim().to_ascii_lowercase();
    n.ends_with("_longitude")
        || n.ends_with("_latitude")
        || matches!(
            n.as_str(),
            "start_lon" | "start_lat" | "end_lon" | "end_lat"
        )
}

/// Column positions of the fields in one file.
#[derive(Debug, Clone)]
pub struct Layout {
    pub positions: [Option<usize>; FIELD_COUNT],
    pub dataset: Option<Dataset>,
}

/// Why a header cannot be read.
#[derive(Debug, Clone, PartialEq)]
pub enum LayoutProblem {
    /// Coordinates instead of zone ids: the TLC layouts before 2016-07.
    LegacyCoordinates(Vec<String>),
    /// Required columns absent; `found` is what the header holds instead.
    Missing {
        missing: Vec<&'static str>,
        found: Vec<String>,
    },
    /// The first line is data, not column names.
    NoHeader(String),
}

impl std::fmt::Display for LayoutProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayoutProblem::LegacyCoordinates(cols) => write!(
                f,
                "pre-2016-07 TLC layout: pickup/dropoff are coordinates ({}) instead of zone ids; \
                 only the 2016-07 and later layouts (PULocationID/DOLocationID) are supported",
                cols.join(", ")
            ),
            LayoutProblem::Missing { missing, found } => {
                write!(f, "required columns missing: {}", missing.join(", "))?;
                let shown: Vec<String> = found
                    .iter()
                    .take(8)
                    .map(|c| c.chars().take(40).collect())
                    .collect();
                let more = found.len().saturating_sub(shown.len());
                write!(
                    f,
                    "; the header has {} column(s): {}",
                    found.len(),
                    shown.join(", ")
                )?;
                if more > 0 {
                    write!(f, " and {more} more")?;
                }
                Ok(())
            }
            LayoutProblem::NoHeader(line) => {
                let line: String = line.chars().take(120).collect();
                write!(
                    f,
                    "no header line: the first line is data ({line}); TLC CSV files start \
                     with a line naming the columns"
                )
            }
        }
    }
}

impl Layout {
    /// Maps column names to fields. Unknown columns (such as a pandas index
    /// column) are ignored; the first occurrence of a field wins.
    pub fn from_columns<'a>(
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Layout, LayoutProblem> {
        let mut positions = [None; FIELD_COUNT];
        let mut legacy = Vec::new();
        let mut dataset = None;
        let mut found = Vec::new();
        for (i, name) in names.into_iter().enumerate() {
            found.push(name.to_string());
            let lower = name.trim().to_ascii_lowercase();
            if lower.starts_with("tpep_") {
                dataset = Some(Dataset::Yellow);
            } else if lower.starts_with("lpep_") {
                dataset = Some(Dataset::Green);
            }
            if is_legacy_coordinate(name) {
                legacy.push(name.trim().to_string());
            }
            if let Some(f) = Field::from_column(name)
                && positions[f.index()].is_none()
            {
                positions[f.index()] = Some(i);
            }
        }
        let has_zones = positions[Field::PuLocationId.index()].is_some();
        if !legacy.is_empty() && !has_zones {
            return Err(LayoutProblem::LegacyCoordinates(legacy));
        }
        let missing: Vec<_> = ALL_FIELDS
            .iter()
            .filter(|f| f.required() && positions[f.index()].is_none())
            .map(|f| f.name())
            .collect();
        if !missing.is_empty() {
            return Err(LayoutProblem::Missing { missing, found });
        }
        Ok(Layout { positions, dataset })
    }

    pub fn position(&self, f: Field) -> Option<usize> {
        self.positions[f.index()]
    }
}

/// One row parsed from text, before it is appended to a batch.
#[derive(Debug, Clone, Copy)]
pub struct ParsedRow {
    pub ints: [i32; FIELD_COUNT],
    pub floats: [f64; FIELD_COUNT],
    pub times: [Micros; 2],
    pub flag: i8,
}

/// A field of one row that cannot be used.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub field: Field,
    /// Why its text did not parse; `None` when the value is missing.
    pub unparsed: Option<String>,
}

impl FieldError {
    pub fn missing(field: Field) -> Self {
        Self {
            field,
            unparsed: None,
        }
    }

    pub fn unparsed(field: Field, why: String) -> Self {
        Self {
            field,
            unparsed: Some(why),
        }
    }

    /// The dead letter's detail, the same for every reader:
    /// `fare_amount did not parse: "abc" is not a number`, `PULocationID is empty`.
    pub fn detail(&self) -> String {
        match &self.unparsed {
            Some(why) => format!("{} did not parse: {why}", self.field.name()),
            None => format!("{} is empty", self.field.name()),
        }
    }
}

/// Parses `YYYY-MM-DD HH:MM:SS`, the `T`-separated form, and fractional
/// seconds (Socrata writes `2021-07-01T00:05:33.000`), as the TLC's naive
/// local time. A timestamp with a UTC offset or `Z` is an instant: it is
/// converted to New York local time.
pub fn parse_timestamp(s: &str) -> Option<Micros> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() == 19
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b' ' || b[10] == b'T')
        && b[13] == b':'
        && b[16] == b':'
    {
        let num = |r: std::ops::Range<usize>| -> Option<u32> {
            b[r].iter().try_fold(0u32, |acc, c| {
                c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
            })
        };
        let date = chrono::NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
        let time = chrono::NaiveTime::from_hms_opt(num(11..13)?, num(14..16)?, num(17..19)?)?;
        return Some(micros_from_naive(NaiveDateTime::new(date, time)));
    }
    let naive = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%m/%d/%Y %I:%M:%S %p",
        "%m/%d/%Y %H:%M:%S",
    ]
    .iter()
    .find_map(|fmt| NaiveDateTime::parse_from_str(s, fmt).ok())
    .map(micros_from_naive);
    naive.or_else(|| {
        ["%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z"]
            .iter()
            .find_map(|fmt| DateTime::parse_from_str(&s.replace('Z', "+00:00"), fmt).ok())
            .map(|t| new_york_from_utc(t.timestamp_micros()))
    })
}

/// An integer stored as a floating-point number (Parquet `double` columns,
/// pandas re-saves): only whole numbers in range are integers. The error is
/// what is wrong with the value, to follow it in a message.
pub fn int_from_f64(v: f64) -> Result<i32, &'static str> {
    if !v.is_finite() {
        Err("is not a finite number")
    } else if v.fract() != 0.0 {
        Err("is not a whole number")
    } else if v <= f64::from(NULL_I32) || v > f64::from(i32::MAX) {
        Err("is out of range")
    } else {
        Ok(v as i32)
    }
}

/// An integer stored in a wider integer type.
pub fn int_from_i64(v: i64) -> Result<i32, String> {
    i32::try_from(v)
        .ok()
        .filter(|&i| i != NULL_I32)
        .ok_or_else(|| format!("{v} is out of range"))
}

/// A decimal stored as a floating-point number: NaN and infinities are not
/// amounts.
pub fn finite(v: f64) -> Result<f64, &'static str> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err("is not a finite number")
    }
}

/// Parses an integer written as `1`, `1.0` or `1.` (pandas turns integer
/// columns with nulls into floats). Fractional values are errors.
pub fn parse_int(s: &str) -> Result<i32, String> {
    let s = s.trim();
    if let Ok(v) = s.parse::<i64>() {
        return int_from_i64(v).map_err(|_| format!("{s:?} is out of range"));
    }
    match s.parse::<f64>() {
        Ok(f) => int_from_f64(f).map_err(|why| format!("{s:?} {why}")),
        Err(_) => Err(format!("{s:?} is not a number")),
    }
}

/// Parses a decimal, including `.60` and `6`.
pub fn parse_float(s: &str) -> Result<f64, String> {
    let s = s.trim();
    match s.parse::<f64>() {
        Ok(v) => finite(v).map_err(|why| format!("{s:?} {why}")),
        Err(_) => Err(format!("{s:?} is not a number")),
    }
}

/// Parses one row given a getter that returns each field's text (`None`
/// when the column is absent or the value is missing).
pub fn parse_row<'a>(get: impl Fn(Field) -> Option<&'a str>) -> Result<ParsedRow, FieldError> {
    let mut row = ParsedRow {
        ints: [NULL_I32; FIELD_COUNT],
        floats: [f64::NAN; FIELD_COUNT],
        times: [0; 2],
        flag: -1,
    };
    for f in ALL_FIELDS {
        let text = get(f).map(str::trim).filter(|s| !s.is_empty());
        let err = |why: String| FieldError::unparsed(f, why);
        match (f.kind(), text) {
            (Kind::Timestamp, Some(s)) => {
                let t =
                    parse_timestamp(s).ok_or_else(|| err(format!("{s:?} is not a timestamp")))?;
                row.times[usize::from(f == Field::Dropoff)] = t;
            }
            (Kind::Int { .. }, Some(s)) => row.ints[f.index()] = parse_int(s).map_err(err)?,
            (Kind::Float { .. }, Some(s)) => row.floats[f.index()] = parse_float(s).map_err(err)?,
            (Kind::Flag, Some(s)) => row.flag = parse_flag(s).map_err(err)?,
            (Kind::Timestamp, None)
            | (Kind::Int { nullable: false }, None)
            | (Kind::Float { nullable: false }, None) => return Err(FieldError::missing(f)),
            (Kind::Int { nullable: true }, None)
            | (Kind::Float { nullable: true }, None)
            | (Kind::Flag, None) => {}
        }
    }
    Ok(row)
}

/// `store_and_fwd_flag`: `Y` 1, `N` 0.
pub fn parse_flag(s: &str) -> Result<i8, String> {
    match s {
        "Y" | "y" => Ok(1),
        "N" | "n" => Ok(0),
        other => Err(format!("{other:?} is neither Y nor N")),
    }
}

/// Appends a parsed row to a batch.
pub fn push_row(batch: &mut TripBatch, row_number: u64, r: &ParsedRow) {
    let i = |f: Field| r.ints[f.index()];
    let fl = |f: Field| r.floats[f.index()];
    let amount = |f: Field| {
        let v = fl(f);
        // Surcharges a layout lacks count as zero, not as unknown.
        if v.is_nan() { 0.0 } else { v }
    };
    batch.row.push(row_number);
    batch.vendor_id.push(i(Field::VendorId));
    batch.pickup.push(r.times[0]);
    batch.dropoff.push(r.times[1]);
    batch.passenger_count.push(i(Field::PassengerCount));
    batch.trip_distance.push(fl(Field::TripDistance));
    batch.ratecode_id.push(i(Field::RatecodeId));
    batch.store_and_fwd.push(r.flag);
    batch.pu_location_id.push(i(Field::PuLocationId));
    batch.do_location_id.push(i(Field::DoLocationId));
    batch.payment_type.push(i(Field::PaymentType));
    batch.fare_amount.push(fl(Field::FareAmount));
    batch.extra.push(amount(Field::Extra));
    batch.mta_tax.push(amount(Field::MtaTax));
    batch.tip_amount.push(fl(Field::TipAmount));
    batch.tolls_amount.push(fl(Field::TollsAmount));
    batch
        .improvement_surcharge
        .push(amount(Field::ImprovementSurcharge));
    batch.total_amount.push(fl(Field::TotalAmount));
    batch
        .congestion_surcharge
        .push(fl(Field::CongestionSurcharge));
    batch.airport_fee.push(fl(Field::AirportFee));
    batch.cbd_congestion_fee.push(fl(Field::CbdCongestionFee));
    batch.ehail_fee.push(fl(Field::EhailFee));
    batch.trip_type.push(i(Field::TripType));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_every_spelling() {
        for (name, f) in [
            ("VendorID", Field::VendorId),
            ("vendor_id", Field::VendorId),
            ("vendorid", Field::VendorId),
            ("tpep_pickup_datetime", Field::Pickup),
            ("lpep_dropoff_datetime", Field::Dropoff),
            ("pickup_datetime", Field::Pickup),
            ("RatecodeID", Field::RatecodeId),
            ("RateCodeID", Field::RatecodeId),
            ("rate_code_id", Field::RatecodeId),
            ("pickup_location_id", Field::PuLocationId),
            ("pulocationid", Field::PuLocationId),
            ("Airport_fee", Field::AirportFee),
            ("airport_fee", Field::AirportFee),
            ("cbd_congestion_fee", Field::CbdCongestionFee),
        ] {
            assert_eq!(Field::from_column(name), Some(f), "{name}");
        }
        assert_eq!(
            Field::from_column("\u{feff}VendorID"),
            Some(Field::VendorId)
        );
        assert_eq!(Field::from_column(""), None);
        assert_eq!(Field::from_column("Unnamed: 0"), None);
    }

    #[test]
    fn rejects_legacy_layout() {
        let header = "VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,trip_distance,pickup_longitude,pickup_latitude,RateCodeID,store_and_fwd_flag,dropoff_longitude,dropoff_latitude,payment_type,fare_amount,extra,mta_tax,tip_amount,tolls_amount,improvement_surcharge,total_amount";
        let err = Layout::from_columns(header.split(',')).unwrap_err();
        assert!(matches!(err, LayoutProblem::LegacyCoordinates(_)));
        assert!(err.to_string().contains("pre-2016-07"));
    }

    #[test]
    fn parses_text_quirks() {
        assert_eq!(parse_int("1.0"), Ok(1));
        assert_eq!(parse_int(" 2 "), Ok(2));
        assert!(parse_int("1.5").is_err());
        assert_eq!(parse_float(".60"), Ok(0.6));
        assert_eq!(parse_float("6"), Ok(6.0));
        assert!(parse_float("abc").is_err());
        let a = parse_timestamp("2021-07-01 00:05:33").unwrap();
        assert_eq!(parse_timestamp("2021-07-01T00:05:33.000"), Some(a));
        assert_eq!(parse_timestamp("2021-07-01T00:05:33"), Some(a));
        assert_eq!(parse_timestamp("2021-13-01 00:05:33"), None);
        // Instants are brought onto the New York clock (EDT in July).
        assert_eq!(parse_timestamp("2021-07-01T04:05:33Z"), Some(a));
        assert_eq!(parse_timestamp("2021-07-01 00:05:33-04:00"), Some(a));
        assert_eq!(parse_timestamp("2021-07-01T06:05:33+02:00"), Some(a));
    }

    #[test]
    fn numbers_that_are_not_values_do_not_parse() {
        assert_eq!(
            parse_int("132.7"),
            Err("\"132.7\" is not a whole number".into())
        );
        assert!(
            parse_int("-2147483648").is_err(),
            "the null marker is not a value"
        );
        assert!(parse_int("4294967296").is_err());
        assert_eq!(parse_int("two"), Err("\"two\" is not a number".into()));
        for s in ["NaN", "inf", "-inf", "infinity", "1e400"] {
            assert!(
                parse_float(s).unwrap_err().contains("not a finite number"),
                "{s}"
            );
        }
        assert!(parse_float("$12.50").unwrap_err().contains("not a number"));
        let e = parse_row(|f| (f == Field::FareAmount).then_some("abc")).unwrap_err();
        assert_eq!(e.detail(), "pickup_datetime is empty");
        assert_eq!(
            FieldError::unparsed(Field::FareAmount, "\"abc\" is not a number".into()).detail(),
            "fare_amount did not parse: \"abc\" is not a number"
        );
    }
}
