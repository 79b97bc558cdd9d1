//! CSV and JSON-lines result writers.

use std::fmt::Write as _;
use std::io::Write;

use super::{OutputError, ResultWriter, columns};
use crate::io::codec::window::WindowV1;
use crate::trip::{Micros, write_micros};
use crate::window::{GroupBy, WindowResult};

fn io(path: &str) -> impl Fn(std::io::Error) -> OutputError + '_ {
    move |error| OutputError::Io {
        path: path.to_string(),
        error,
    }
}

/// CSV with a header line; timestamps as `YYYY-MM-DD HH:MM:SS`, nulls empty.
pub struct CsvWriter {
    out: csv::Writer<Box<dyn Write>>,
    path: String,
    /// Each field's text, reused: a `String` per field and row was most of
    /// the time of a CSV output.
    field: String,
}

impl CsvWriter {
    pub fn new(out: Box<dyn Write>, path: String, group_by: GroupBy) -> Result<Self, OutputError> {
        let mut out = csv::Writer::from_writer(out);
        out.write_record(columns(group_by))
            .map_err(|e| csv_err(&path, e))?;
        Ok(Self {
            out,
            path,
            field: String::new(),
        })
    }

    /// Writes one field: `value` as `Display` writes it, or empty for `None`.
    fn field<T: std::fmt::Display>(&mut self, value: Option<T>) -> Result<(), OutputError> {
        self.field.clear();
        if let Some(v) = value {
            // Writing to a String cannot fail.
            let _ = write!(self.field, "{v}");
        }
        self.out
            .write_field(self.field.as_bytes())
            .map_err(|e| csv_err(&self.path, e))
    }

    fn timestamp(&mut self, us: Micros) -> Result<(), OutputError> {
        self.field.clear();
        let _ = write_micros(&mut self.field, us);
        self.out
            .write_field(self.field.as_bytes())
            .map_err(|e| csv_err(&self.path, e))
    }
}

fn csv_err(path: &str, e: csv::Error) -> OutputError {
    OutputError::Encode {
        path: path.to_string(),
        message: e.to_string(),
    }
}

impl ResultWriter for CsvWriter {
    fn write(&mut self, results: &[WindowResult]) -> Result<(), OutputError> {
        for r in results {
            self.field(Some(r.key))?;
            self.field(Some(&r.key_name))?;
            self.field(r.zone.as_deref())?;
            self.field(r.borough.as_deref())?;
            self.timestamp(r.window_start)?;
            self.timestamp(r.window_end)?;
            self.field(Some(r.count))?;
            self.field(Some(r.passengers))?;
            self.field(r.max_passengers)?;
            for v in [
                r.sum_fare,
                r.sum_tip,
                r.sum_tolls,
                r.sum_total,
                r.avg_distance,
                r.avg_duration_s,
            ] {
                self.field(Some(v))?;
            }
            self.field(r.avg_speed_mph)?;
            self.field(r.avg_tip_ratio)?;
            self.field(Some(super::group_by_name(r.group_by)))?;
            self.out
                .write_record(None::<&[u8]>)
                .map_err(|e| csv_err(&self.path, e))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), OutputError> {
        self.out.flush().map_err(io(&self.path))
    }
}

/// One JSON object per result, the object of the aggregates topic's `window/1`.
pub struct JsonLinesWriter {
    out: Box<dyn Write>,
    path: String,
}

impl JsonLinesWriter {
    pub fn new(out: Box<dyn Write>, path: String) -> Self {
        Self { out, path }
    }
}

impl ResultWriter for JsonLinesWriter {
    fn write(&mut self, results: &[WindowResult]) -> Result<(), OutputError> {
        for r in results {
            serde_json::to_writer(&mut self.out, &WindowV1::from(r)).map_err(|e| {
                OutputError::Encode {
                    path: self.path.clone(),
                    message: e.to_string(),
                }
            })?;
            self.out.write_all(b"\n").map_err(io(&self.path))?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), OutputError> {
        self.out.flush().map_err(io(&self.path))
    }
}
