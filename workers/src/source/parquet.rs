//! TLC Parquet files, read row group by row group through arrow-rs.
//!
//! Only the columns a [`crate::trip::Trip`] needs are decoded. Column types
//! differ between years (int32/int64/double for the same column,
//! `timestamp[ns]` or `[us]`, `string` or `large_string`), so each column is
//! cast to its normalised type batch by batch. Rows with a null where the TLC
//! allows none become dead letters; the rest of the file goes on. A truncated
//! or corrupt file ends with an error naming it.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int32Type, TimeUnit, TimestampMicrosecondType};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use super::fields::{ALL_FIELDS, Field, Kind, Layout};
use super::{BATCH_ROWS, ReadBatch, SourceError, TripReader, dataset_of};
use crate::dead_letter::DeadLetter;
use crate::trip::{Dataset, NULL_I32, SourceRef, TripBatch};

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

    fn column(
        &self,
        batch: &RecordBatch,
        f: Field,
        to: &DataType,
    ) -> Result<Option<ArrayRef>, SourceError> {
        let Some(col_name) = &self.columns[f.index()] else {
            return Ok(None);
        };
        let col = batch
            .column_by_name(col_name)
            .ok_or_else(|| SourceError::Column {
                name: self.name.to_string(),
                column: col_name.clone(),
                message: "missing from a record batch".into(),
            })?;
        if col.data_type() == to {
            return Ok(Some(col.clone()));
        }
        cast(col, to).map(Some).map_err(|e| SourceError::Column {
            name: self.name.to_string(),
            column: col_name.clone(),
            message: format!("cannot convert {} to {to}: {e}", col.data_type()),
        })
    }

    fn convert(&self, batch: &RecordBatch, out: &mut ReadBatch) -> Result<(), SourceError> {
        let n = batch.num_rows();
        let t = &mut out.trips;
        // Required fields that are null, per row; only allocated when needed.
        let mut null_field: Vec<Option<Field>> = Vec::new();
        fn mark_nulls(null_field: &mut Vec<Option<Field>>, n: usize, f: Field, a: &dyn Array) {
            if a.null_count() == 0 {
                return;
            }
            if null_field.is_empty() {
                null_field.resize(n, None);
            }
            for (i, slot) in null_field.iter_mut().enumerate() {
                if a.is_null(i) && slot.is_none() {
                    *slot = Some(f);
                }
            }
        }
        t.row.extend(self.next_row..self.next_row + n as u64);
        for f in ALL_FIELDS {
            match f.kind() {
                Kind::Timestamp => {
                    let a =
                        self.column(batch, f, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
                    let dst = if f == Field::Pickup {
                        &mut t.pickup
                    } else {
                        &mut t.dropoff
                    };
                    match a {
                        Some(a) => {
                            mark_nulls(&mut null_field, n, f, &a);
                            dst.extend_from_slice(
                                a.as_primitive::<TimestampMicrosecondType>().values(),
                            );
                        }
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
                    match self.column(batch, f, &DataType::Int32)? {
                        Some(a) => {
                            if !nullable {
                                mark_nulls(&mut null_field, n, f, &a);
                            }
                            let a = a.as_primitive::<Int32Type>();
                            if a.null_count() == 0 {
                                dst.extend_from_slice(a.values());
                            } else {
                                dst.extend(a.iter().map(|v| v.unwrap_or(NULL_I32)));
                            }
                        }
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
                    match self.column(batch, f, &DataType::Float64)? {
                        Some(a) => {
                            if !nullable {
                                mark_nulls(&mut null_field, n, f, &a);
                            }
                            let a = a.as_primitive::<Float64Type>();
                            if a.null_count() == 0 {
                                dst.extend_from_slice(a.values());
                            } else {
                                dst.extend(a.iter().map(|v| v.unwrap_or(null_value)));
                            }
                        }
                        None => dst.resize(dst.len() + n, null_value),
                    }
                }
                Kind::Flag => match self.column(batch, f, &DataType::Utf8)? {
                    Some(a) => {
                        let a = a.as_string::<i32>();
                        for i in 0..n {
                            let flag = match a.is_valid(i).then(|| a.value(i)) {
                                Some("Y") | Some("y") => 1,
                                Some("N") | Some("n") => 0,
                                None | Some("") => -1,
                                Some(_) => {
                                    if null_field.is_empty() {
                                        null_field.resize(n, None);
                                    }
                                    null_field[i].get_or_insert(f);
                                    -1
                                }
                            };
                            t.store_and_fwd.push(flag);
                        }
                    }
                    None => t.store_and_fwd.resize(t.store_and_fwd.len() + n, -1),
                },
            }
        }
        if !null_field.is_empty() {
            let start = t.len() - n;
            let mut keep = vec![true; t.len()];
            for (i, f) in null_field.iter().enumerate() {
                if let Some(f) = f {
                    keep[start + i] = false;
                    let detail = if *f == Field::StoreAndFwd {
                        format!("{} is neither Y nor N", f.name())
                    } else {
                        format!("{} is null", f.name())
                    };
                    out.rejects.push(DeadLetter::unparsable(
                        SourceRef {
                            source: self.name.to_string(),
                            row: self.next_row + i as u64,
                        },
                        f.name(),
                        detail,
                        None,
                    ));
                }
            }
            t.retain(&keep);
        }
        Ok(())
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
