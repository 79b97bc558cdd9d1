//! TLC CSV files, 2016-07 layout onwards, read as a stream.
//!
//! Handles what real copies contain: the TLC's own text (`.60`, `6`, empty
//! integer fields in "unknown vendor" rows), pandas re-saves (an unnamed index
//! column, `1.0` for integers) and snake_case renamed headers. A row that does
//! not parse becomes a dead letter naming the field; the file goes on.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use ::csv::{ByteRecord, ReaderBuilder};

use super::fields::{Layout, parse_row, push_row};
use super::{BATCH_ROWS, ReadBatch, SourceError, TripReader, dataset_of};
use crate::dead_letter::DeadLetter;
use crate::trip::{Dataset, SourceRef, TripBatch};

/// Reads trips from CSV text.
pub struct CsvTripReader<R: Read> {
    name: Arc<str>,
    dataset: Dataset,
    rdr: ::csv::Reader<R>,
    layout: Layout,
    record: ByteRecord,
    next_row: u64,
    batch_rows: usize,
    done: bool,
}

impl CsvTripReader<std::io::BufReader<std::fs::File>> {
    /// Opens a CSV file.
    pub fn open(path: &Path, name: &str, default_dataset: Dataset) -> Result<Self, SourceError> {
        let file = std::fs::File::open(path).map_err(|error| SourceError::Io {
            name: name.to_string(),
            error,
        })?;
        Self::new(
            std::io::BufReader::with_capacity(1 << 20, file),
            name,
            default_dataset,
        )
    }
}

impl<R: Read> CsvTripReader<R> {
    /// Reads CSV from any byte stream; the header line is required.
    pub fn new(reader: R, name: &str, default_dataset: Dataset) -> Result<Self, SourceError> {
        let mut rdr = ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(reader);
        let header = rdr.byte_headers().map_err(|error| SourceError::Csv {
            name: name.to_string(),
            row: 0,
            error,
        })?;
        let names: Vec<String> = header
            .iter()
            .map(|h| String::from_utf8_lossy(h).into_owned())
            .collect();
        let layout = Layout::from_columns(names.iter().map(String::as_str)).map_err(|problem| {
            SourceError::Layout {
                name: name.to_string(),
                problem,
            }
        })?;
        Ok(Self {
            dataset: dataset_of(layout.dataset, name, default_dataset),
            name: name.into(),
            rdr,
            layout,
            record: ByteRecord::new(),
            next_row: 0,
            batch_rows: BATCH_ROWS,
            done: false,
        })
    }

    /// Changes the number of rows per batch (tests use small batches).
    pub fn with_batch_rows(mut self, rows: usize) -> Self {
        self.batch_rows = rows.max(1);
        self
    }

    fn raw_line(&self) -> String {
        let fields: Vec<_> = self.record.iter().map(String::from_utf8_lossy).collect();
        fields.join(",")
    }
}

impl<R: Read + Send> TripReader for CsvTripReader<R> {
    fn name(&self) -> &str {
        &self.name
    }

    fn total_rows(&self) -> Option<u64> {
        None
    }

    fn next_batch(&mut self) -> Result<Option<ReadBatch>, SourceError> {
        if self.done {
            return Ok(None);
        }
        let mut out = ReadBatch {
            trips: TripBatch::with_capacity(self.name.clone(), self.dataset, self.batch_rows),
            rejects: Vec::new(),
        };
        let mut rows = 0;
        while rows < self.batch_rows {
            let more = self
                .rdr
                .read_byte_record(&mut self.record)
                .map_err(|error| SourceError::Csv {
                    name: self.name.to_string(),
                    row: self.next_row,
                    error,
                })?;
            if !more {
                self.done = true;
                break;
            }
            let row = self.next_row;
            self.next_row += 1;
            rows += 1;
            let record = &self.record;
            let layout = &self.layout;
            let bad_utf8 = std::cell::Cell::new(None);
            let parsed = parse_row(|f| {
                let bytes = record.get(layout.position(f)?)?;
                match std::str::from_utf8(bytes) {
                    Ok(s) => Some(s),
                    Err(_) => {
                        if bad_utf8.get().is_none() {
                            bad_utf8.set(Some(f));
                        }
                        None
                    }
                }
            });
            let source = || SourceRef {
                source: self.name.to_string(),
                row,
            };
            match (parsed, bad_utf8.get()) {
                (Ok(r), None) => push_row(&mut out.trips, row, &r),
                (_, Some(f)) => out.rejects.push(DeadLetter::unparsable(
                    source(),
                    f.name(),
                    "not valid UTF-8".into(),
                    Some(self.raw_line()),
                )),
                (Err(e), None) => {
                    let detail = if self.record.len() < self.min_fields() {
                        format!(
                            "{} {} (row has {} fields, header {})",
                            e.field.name(),
                            e.message,
                            self.record.len(),
                            self.min_fields()
                        )
                    } else {
                        format!("{} {}", e.field.name(), e.message)
                    };
                    out.rejects.push(DeadLetter::unparsable(
                        source(),
                        e.field.name(),
                        detail,
                        Some(self.raw_line()),
                    ))
                }
            }
        }
        if rows == 0 {
            return Ok(None);
        }
        Ok(Some(out))
    }
}

impl<R: Read> CsvTripReader<R> {
    fn min_fields(&self) -> usize {
        self.layout
            .positions
            .iter()
            .flatten()
            .max()
            .map_or(0, |m| m + 1)
    }
}
