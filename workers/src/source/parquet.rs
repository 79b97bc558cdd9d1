//! TLC Parquet files, read row group by row group through arrow-rs.
//!
//! Only the columns a [`crate::trip::Trip`] needs are decoded. Column types
//! differ between years (int32/int64/double for the same column,
//! `timestamp[ns]` or `[us]`, `string` or `large_string`), so each column is
//! converted to its normalised type batch by batch, by the rules the CSV
//! reader applies to text: integers must be whole (zone 132.7 is no zone),
//! amounts finite, text columns are parsed as CSV fields are, and timestamps
//! with a time zone are instants, converted to New York local time. Rows
//! with a value that breaks these rules, or a null where the TLC allows none,
//! become dead letters; the rest of the file goes on. A truncated or corrupt
//! file (including a page whose checksum does not match) ends with an error
//! naming it.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Float64Type, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType,
};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use super::fields::{
    ALL_FIELDS, Field, FieldError, Kind, Layout, finite, int_from_f64, int_from_i64, parse_flag,
    parse_float, parse_int, parse_timestamp,
};
use super::{BATCH_ROWS, ReadBatch, SourceError, TripReader, dataset_of};
use crate::dead_letter::DeadLetter;
use crate::trip::{Dataset, Micros, NULL_I32, SourceRef, TripBatch, new_york_from_utc};

/// Streams trips out of one Parquet file.
pub struct ParquetTripReader {
    name: Arc<str>,
    dataset: Dataset,
    reader: ParquetRecordBatchReader,
    total_rows: u64,
    next_row: u64,
    /// Column name in the projected batches, per field.
    columns: Vec<Option<String>>,
}

impl ParquetTripReader {
    /// Opens `path`, reads its footer and checks the layout.
    pub fn open(path: &Path, name: &str, default_dataset: Dataset) -> Result<Self, SourceError> {
        Self::open_with_batch_rows(path, name, default_dataset, BATCH_ROWS)
    }

    /// Like [`ParquetTripReader::open`] with a chosen batch size.
    pub fn open_with_batch_rows(
        path: &Path,
        name: &str,
        default_dataset: Dataset,
        batch_rows: usize,
    ) -> Result<Self, SourceError> {
        let file = File::open(path).map_err(|error| SourceError::Io {
            name: name.to_string(),
            error,
        })?;
        let parquet_err = |error| SourceError::Parquet {
            name: name.to_string(),
            error,
        };
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet_err)?;
        let schema = builder.schema().clone();
        let layout = Layout::from_columns(schema.fields().iter().map(|f| f.name().as_str()))
            .map_err(|problem| SourceError::Layout {
                name: name.to_string(),
                problem,
            })?;
        let roots: Vec<usize> = layout.positions.iter().flatten().copied().collect();
        let columns = ALL_FIELDS
            .iter()
            .map(|f| layout.position(*f).map(|p| schema.field(p).name().clone()))
            .collect();
        let total_rows = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let reader = builder
            .with_projection(mask)
            .with_batch_size(batch_rows.max(1))
            .build()
            .map_err(parquet_err)?;
        Ok(Self {
            dataset: dataset_of(layout.dataset, name, default_dataset),
            name: name.into(),
            reader,
            total_rows,
            next_row: 0,
            columns,
        })
    }

    fn column(&self, batch: &RecordBatch, f: Field) -> Result<Option<ArrayRef>, SourceError> {
        let Some(col_name) = &self.columns[f.index()] else {
            return Ok(None);
        };
        batch
            .column_by_name(col_name)
            .cloned()
            .map(Some)
            .ok_or_else(|| SourceError::Column {
                name: self.name.to_string(),
                column: col_name.clone(),
                message: "missing from a record batch".into(),
            })
    }

    fn cast(&self, col: &ArrayRef, f: Field, to: &DataType) -> Result<ArrayRef, SourceError> {
        if col.data_type() == to {
            return Ok(col.clone());
        }
        cast(col, to).map_err(|e| SourceError::Column {
            name: self.name.to_string(),
            column: self.columns[f.index()].clone().unwrap_or_default(),
            message: format!("cannot convert {} to {to}: {e}", col.data_type()),
        })
    }

    /// A text column's values, to be parsed by the rules of the CSV reader.
    fn texts(&self, col: &ArrayRef, f: Field) -> Result<Option<ArrayRef>, SourceError> {
        match col.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                self.cast(col, f, &DataType::Utf8).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Timestamps on the TLC's naive New York clock. A column with a time
    /// zone holds instants (UTC by definition): they are converted.
    fn times(
        &self,
        col: &ArrayRef,
        f: Field,
        problems: &mut RowProblems,
        dst: &mut Vec<Micros>,
    ) -> Result<(), SourceError> {
        if let Some(text) = self.texts(col, f)? {
            let text = text.as_string::<i32>();
            dst.extend((0..text.len()).map(|i| {
                let s = if text.is_valid(i) { text.value(i) } else { "" };
                if s.trim().is_empty() {
                    problems.null(i, f);
                    return 0;
                }
                parse_timestamp(s).unwrap_or_else(|| {
                    problems.unparsed(i, f, format!("{s:?} is not a timestamp"), s);
                    0
                })
            }));
            return Ok(());
        }
        let zone = match col.data_type() {
            DataType::Timestamp(_, zone) => zone.clone(),
            _ => None,
        };
        let a = self.cast(
            col,
            f,
            &DataType::Timestamp(TimeUnit::Microsecond, zone.clone()),
        )?;
        problems.nulls(&a, f);
        let values = a.as_primitive::<TimestampMicrosecondType>().values();
        match zone {
            Some(_) => dst.extend(values.iter().map(|&t| new_york_from_utc(t))),
            None => dst.extend_from_slice(values),
        }
        Ok(())
    }

    /// Integers: whole numbers from integer, floating-point or text columns;
    /// fractions, non-finite values and text that is no number are problems.
    fn ints(
        &self,
        col: &ArrayRef,
        f: Field,
        nullable: bool,
        problems: &mut RowProblems,
        dst: &mut Vec<i32>,
    ) -> Result<(), SourceError> {
        let null = |problems: &mut RowProblems, i| {
            if !nullable {
                problems.null(i, f);
            }
            NULL_I32
        };
        if let Some(text) = self.texts(col, f)? {
            dst.extend(parse_text_column(
                &text, f, problems, null, parse_int, NULL_I32,
            ));
            return Ok(());
        }
        let dt = col.data_type();
        if dt.is_floating() || matches!(dt, DataType::Decimal128(..) | DataType::Decimal256(..)) {
            let a = self.cast(col, f, &DataType::Float64)?;
            let a = a.as_primitive::<Float64Type>();
            dst.extend((0..a.len()).map(|i| {
                if a.is_null(i) {
                    return null(problems, i);
                }
                let v = a.value(i);
                int_from_f64(v).unwrap_or_else(|why| {
                    problems.unparsed(i, f, format!("{v} {why}"), &v.to_string());
                    NULL_I32
                })
            }));
            return Ok(());
        }
        if dt == &DataType::Int32 {
            let a = col.as_primitive::<Int32Type>();
            if a.null_count() == 0 && !a.values().contains(&NULL_I32) {
                dst.extend_from_slice(a.values());
                return Ok(());
            }
        }
        let a = self.cast(col, f, &DataType::Int64)?;
        let a = a.as_primitive::<Int64Type>();
        dst.extend((0..a.len()).map(|i| {
            if a.is_null(i) {
                return null(problems, i);
            }
            int_from_i64(a.value(i)).unwrap_or_else(|why| {
                problems.unparsed(i, f, why, &a.value(i).to_string());
                NULL_I32
            })
        }));
        Ok(())
    }

    /// Decimals: finite numbers from numeric or text columns. A null is
    /// `null_value` where the TLC allows one.
    fn floats(
        &self,
        col: &ArrayRef,
        f: Field,
        nullable: bool,
        null_value: f64,
        problems: &mut RowProblems,
        dst: &mut Vec<f64>,
    ) -> Result<(), SourceError> {
        let null = |problems: &mut RowProblems, i| {
            if !nullable {
                problems.null(i, f);
            }
            null_value
        };
        if let Some(text) = self.texts(col, f)? {
            dst.extend(parse_text_column(
                &text,
                f,
                problems,
                null,
                parse_float,
                null_value,
            ));
            return Ok(());
        }
        let a = self.cast(col, f, &DataType::Float64)?;
        let a = a.as_primitive::<Float64Type>();
        if a.null_count() == 0 && a.values().iter().all(|v| v.is_finite()) {
            dst.extend_from_slice(a.values());
            return Ok(());
        }
        dst.extend((0..a.len()).map(|i| {
            if a.is_null(i) {
                return null(problems, i);
            }
            let v = a.value(i);
            finite(v).unwrap_or_else(|why| {
                problems.unparsed(i, f, format!("{v} {why}"), &v.to_string());
                null_value
            })
        }));
        Ok(())
    }

    fn flags(
        &self,
        col: &ArrayRef,
        f: Field,
        problems: &mut RowProblems,
    ) -> Result<Vec<i8>, SourceError> {
        let a = self.cast(col, f, &DataType::Utf8)?;
        let a = a.as_string::<i32>();
        Ok((0..a.len())
            .map(|i| match a.is_valid(i).then(|| a.value(i).trim()) {
                None | Some("") => -1,
                Some(s) => parse_flag(s).unwrap_or_else(|why| {
                    problems.unparsed(i, f, why, s);
                    -1
                }),
            })
            .collect())
    }

    fn convert(&self, batch: &RecordBatch, out: &mut ReadBatch) -> Result<(), SourceError> {
        let n = batch.num_rows();
        let t = &mut out.trips;
        let mut problems = RowProblems::new(n);
        t.row.extend(self.next_row..self.next_row + n as u64);
        for f in ALL_FIELDS {
            let col = self.column(batch, f)?;
            match f.kind() {
                Kind::Timestamp => {
                    let dst = if f == Field::Pickup {
                        &mut t.pickup
                    } else {
                        &mut t.dropoff
                    };
                    match col {
                        Some(col) => self.times(&col, f, &mut problems, dst)?,
                        None => dst.resize(dst.len() + n, 0),
                    }
                }
                Kind::Int { nullable } => {
                    let dst = match f {
                        Field::VendorId => &mut t.vendor_id,
                        Field::PassengerCount => &mut t.passenger_count,
                        Field::RatecodeId => &mut t.ratecode_id,
                        Field::PuLocationId => &mut t.pu_location_id,
                        Field::DoLocationId => &mut t.do_location_id,
                        Field::PaymentType => &mut t.payment_type,
                        _ => &mut t.trip_type,
                    };
                    match col {
                        Some(col) => self.ints(&col, f, nullable, &mut problems, dst)?,
                        None => dst.resize(dst.len() + n, NULL_I32),
                    }
                }
                Kind::Float { nullable } => {
                    // Surcharges a file lacks, or leaves null, count as zero;
                    // the TLC's nullable fees stay unknown (NaN).
                    let (dst, null_value) = match f {
                        Field::TripDistance => (&mut t.trip_distance, f64::NAN),
                        Field::FareAmount => (&mut t.fare_amount, f64::NAN),
                        Field::TipAmount => (&mut t.tip_amount, f64::NAN),
                        Field::TollsAmount => (&mut t.tolls_amount, f64::NAN),
                        Field::TotalAmount => (&mut t.total_amount, f64::NAN),
                        Field::Extra => (&mut t.extra, 0.0),
                        Field::MtaTax => (&mut t.mta_tax, 0.0),
                        Field::ImprovementSurcharge => (&mut t.improvement_surcharge, 0.0),
                        Field::CongestionSurcharge => (&mut t.congestion_surcharge, f64::NAN),
                        Field::AirportFee => (&mut t.airport_fee, f64::NAN),
                        Field::CbdCongestionFee => (&mut t.cbd_congestion_fee, f64::NAN),
                        _ => (&mut t.ehail_fee, f64::NAN),
                    };
                    match col {
                        Some(col) => {
                            self.floats(&col, f, nullable, null_value, &mut problems, dst)?
                        }
                        None => dst.resize(dst.len() + n, null_value),
                    }
                }
                Kind::Flag => match col {
                    Some(col) => t.store_and_fwd.extend(self.flags(&col, f, &mut problems)?),
                    None => t.store_and_fwd.resize(t.store_and_fwd.len() + n, -1),
                },
            }
        }
        if !problems.rows.is_empty() {
            let start = t.len() - n;
            let mut keep = vec![true; t.len()];
            for (i, p) in problems.rows.into_iter().enumerate() {
                if let Some(p) = p {
                    keep[start + i] = false;
                    out.rejects.push(DeadLetter::unparsable(
                        SourceRef {
                            source: self.name.to_string(),
                            row: self.next_row + i as u64,
                        },
                        p.field.name(),
                        p.detail,
                        p.raw,
                    ));
                }
            }
            t.retain(&keep);
        }
        Ok(())
    }
}

/// Why one row cannot be used: the first field found wrong.
struct RowProblem {
    field: Field,
    detail: String,
    /// The value as stored, when there is one.
    raw: Option<String>,
}

/// A numeric field stored as text is read with the CSV rules, so both file
/// formats accept and refuse the same values: blank is null, anything else
/// must parse, and what does not is reported with its raw text.
fn parse_text_column<T: Copy>(
    text: &ArrayRef,
    f: Field,
    problems: &mut RowProblems,
    null: impl Fn(&mut RowProblems, usize) -> T,
    parse: impl Fn(&str) -> Result<T, String>,
    fallback: T,
) -> Vec<T> {
    let text = text.as_string::<i32>();
    (0..text.len())
        .map(|i| {
            let s = if text.is_valid(i) { text.value(i) } else { "" };
            if s.trim().is_empty() {
                return null(problems, i);
            }
            parse(s).unwrap_or_else(|why| {
                problems.unparsed(i, f, why, s);
                fallback
            })
        })
        .collect()
}

/// The problem of each row of a batch; allocated only once a row has one.
struct RowProblems {
    n: usize,
    rows: Vec<Option<RowProblem>>,
}

impl RowProblems {
    fn new(n: usize) -> Self {
        Self {
            n,
            rows: Vec::new(),
        }
    }

    fn set(&mut self, i: usize, problem: impl FnOnce() -> RowProblem) {
        if self.rows.is_empty() {
            self.rows.resize_with(self.n, || None);
        }
        if self.rows[i].is_none() {
            self.rows[i] = Some(problem());
        }
    }

    /// A null where the TLC allows none.
    fn null(&mut self, i: usize, field: Field) {
        self.set(i, || RowProblem {
            field,
            detail: format!("{} is null", field.name()),
            raw: None,
        });
    }

    /// Every null of a column where the TLC allows none.
    fn nulls(&mut self, a: &dyn Array, field: Field) {
        if a.null_count() > 0 {
            for i in (0..a.len()).filter(|&i| a.is_null(i)) {
                self.null(i, field);
            }
        }
    }

    /// A value that is not a value of the field, said as the CSV reader says it.
    fn unparsed(&mut self, i: usize, field: Field, why: String, raw: &str) {
        self.set(i, || RowProblem {
            field,
            detail: FieldError::unparsed(field, why).detail(),
            raw: Some(raw.to_string()),
        });
    }
}

impl TripReader for ParquetTripReader {
    fn name(&self) -> &str {
        &self.name
    }

    fn total_rows(&self) -> Option<u64> {
        Some(self.total_rows)
    }

    fn next_batch(&mut self) -> Result<Option<ReadBatch>, SourceError> {
        let Some(batch) = self.reader.next() else {
            return Ok(None);
        };
        let batch = batch.map_err(|e| SourceError::Parquet {
            name: self.name.to_string(),
            error: parquet::errors::ParquetError::External(Box::new(e)),
        })?;
        let mut out = ReadBatch {
            trips: TripBatch::with_capacity(self.name.clone(), self.dataset, batch.num_rows()),
            rejects: Vec::new(),
        };
        self.convert(&batch, &mut out)?;
        self.next_row += batch.num_rows() as u64;
        Ok(Some(out))
    }
}
