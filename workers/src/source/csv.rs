//! TLC CSV files, 2016-07 layout onwards, read as a stream.
//!
//! Handles what real copies contain: the TLC's own text (`.60`, `6`, empty
//! integer fields in "unknown vendor" rows), pandas re-saves (an unnamed index
//! column, `1.0` for integers), snake_case renamed headers, and spreadsheet
//! exports delimited by `;`, tab or `|` (told by the header line). A row that
//! does not parse becomes a dead letter naming the field; the file goes on. A
//! file without a header line, or with a quote that swallows line breaks (the
//! rest of the file would become one row), fails with an error naming the row.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use ::csv::{ByteRecord, ReaderBuilder};

use super::fields::{Layout, LayoutProblem, parse_float, parse_row, parse_timestamp, push_row};
use super::{BATCH_ROWS, ReadBatch, SourceError, TripReader, dataset_of};
use crate::dead_letter::DeadLetter;
use crate::trip::{Dataset, SourceRef, TripBatch};

/// Reads trips from CSV text.
pub struct CsvTripReader<R: Read> {
    name: Arc<str>,
    dataset: Dataset,
    rdr: ::csv::Reader<BufReader<R>>,
    layout: Layout,
    record: ByteRecord,
    next_row: u64,
    batch_rows: usize,
    done: bool,
    /// An error found after rows that are returned first.
    failed: Option<SourceError>,
}

impl CsvTripReader<std::fs::File> {
    /// Opens a CSV file.
    pub fn open(path: &Path, name: &str, default_dataset: Dataset) -> Result<Self, SourceError> {
        let file = std::fs::File::open(path).map_err(|error| SourceError::Io {
            name: name.to_string(),
            error,
        })?;
        Self::new(file, name, default_dataset)
    }
}

/// The delimiter of a header line: `,` unless the line has none and holds
/// `;`, tab or `|` instead.
fn sniff_delimiter(header: &[u8]) -> u8 {
    let count = |d: u8| header.iter().filter(|&&b| b == d).count();
    if count(b',') > 0 {
        return b',';
    }
    [b';', b'\t', b'|']
        .into_iter()
        .max_by_key(|&d| count(d))
        .filter(|&d| count(d) > 0)
        .unwrap_or(b',')
}

/// Whether a header cell is really a value (a timestamp or a number), which
/// means the file has no header line.
fn looks_like_data(cell: &str) -> bool {
    let cell = cell.trim();
    !cell.is_empty() && (parse_timestamp(cell).is_some() || parse_float(cell).is_ok())
}

impl<R: Read> CsvTripReader<R> {
    /// Reads CSV from any byte stream; the header line is required.
    pub fn new(reader: R, name: &str, default_dataset: Dataset) -> Result<Self, SourceError> {
        let mut reader = BufReader::with_capacity(1 << 20, reader);
        let head = reader.fill_buf().map_err(|error| SourceError::Io {
            name: name.to_string(),
            error,
        })?;
        let first_line = head.split(|&b| b == b'\n').next().unwrap_or(head);
        let delimiter = sniff_delimiter(first_line);
        let mut rdr = ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .delimiter(delimiter)
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
            let problem = match problem {
                LayoutProblem::Missing { .. }
                    if names.iter().filter(|n| looks_like_data(n)).count() >= 2 =>
                {
                    LayoutProblem::NoHeader(names.join(&char::from(delimiter).to_string()))
                }
                other => other,
            };
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
            failed: None,
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

    fn min_fields(&self) -> usize {
        self.layout
            .positions
            .iter()
            .flatten()
            .max()
            .map_or(0, |m| m + 1)
    }

    /// A record holding a line break: a quote opened in it was closed lines
    /// later, or never. TLC fields have no line breaks, so the lines it
    /// swallowed are rows that cannot be told apart any more.
    fn swallowed_lines(&self) -> Option<SourceError> {
        let breaks = self
            .record
            .iter()
            .flat_map(|f| f.iter())
            .filter(|&&b| b == b'\n')
            .count();
        if breaks == 0 {
            return None;
        }
        let line = self.record.position().map_or(0, |p| p.line());
        Some(SourceError::UnclosedQuote {
            name: self.name.to_string(),
            row: self.next_row,
            line,
            lines: breaks as u64,
        })
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
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
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
            if let Some(e) = self.swallowed_lines() {
                // The rows before it are passed on; the error comes next.
                self.done = true;
                if rows == 0 {
                    return Err(e);
                }
                self.failed = Some(e);
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
                    format!("{} did not parse: not valid UTF-8", f.name()),
                    Some(self.raw_line()),
                )),
                (Err(e), None) => {
                    let mut detail = e.detail();
                    if self.record.len() < self.min_fields() {
                        detail.push_str(&format!(
                            " (row has {} fields, header {})",
                            self.record.len(),
                            self.min_fields()
                        ));
                    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiters_come_from_the_header_line() {
        assert_eq!(sniff_delimiter(b"VendorID,tpep_pickup_datetime"), b',');
        assert_eq!(sniff_delimiter(b"VendorID;tpep_pickup_datetime;x"), b';');
        assert_eq!(sniff_delimiter(b"VendorID\ttpep_pickup_datetime"), b'\t');
        assert_eq!(sniff_delimiter(b"VendorID"), b',');
        assert!(looks_like_data("2024-01-01 00:00:00") && looks_like_data("12.5"));
        assert!(!looks_like_data("fare_amount") && !looks_like_data(""));
    }
}
