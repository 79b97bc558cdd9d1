//! CSV and JSON-lines result writers.

use std::io::Write;

use super::{OutputError, ResultWriter, columns};
use crate::io::codec::window::WindowV1;
use crate::trip::format_micros;
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
}

impl CsvWriter {
    pub fn new(out: Box<dyn Write>, path: String, group_by: GroupBy) -> Result<Self, OutputError> {
        let mut out = csv::Writer::from_writer(out);
        out.write_record(columns(group_by))
            .map_err(|e| csv_err(&path, e))?;
        Ok(Self { out, path })
    }
}

fn csv_err(path: &str, e: csv::Error) -> OutputError {
    OutputError::Encode {
        path: path.to_string(),
        message: e.to_string(),
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

impl ResultWriter for CsvWriter {
    fn write(&mut self, results: &[WindowResult]) -> Result<(), OutputError> {
        for r in results {
            self.out
                .write_record([
                    r.key.to_string(),
                    r.key_name.to_string(),
                    opt(r.zone.as_deref()),
                    opt(r.borough.as_deref()),
                    format_micros(r.window_start),
                    format_micros(r.window_end),
                    r.count.to_string(),
                    r.passengers.to_string(),
                    opt(r.max_passengers),
                    r.sum_fare.to_string(),
                    r.sum_tip.to_string(),
                    r.sum_tolls.to_string(),
                    r.sum_total.to_string(),
                    r.avg_distance.to_string(),
                    r.avg_duration_s.to_string(),
                    opt(r.avg_speed_mph),
                    opt(r.avg_tip_ratio),
                    super::group_by_name(r.group_by).to_string(),
                ])
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
