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

/// Appends `v` as [`CsvWriter::float`] describes.
fn write_float(out: &mut String, v: f64) {
    if v.is_finite() {
        let mut digits = ryu::Buffer::new();
        let s = digits.format_finite(v);
        if !s.contains('e') {
            out.push_str(s.strip_suffix(".0").unwrap_or(s));
            return;
        }
    }
    let _ = write!(out, "{v}");
}

/// CSV with a header line; timestamps as `YYYY-MM-DD HH:MM:SS`, nulls empty.
pub struct CsvWriter {
    out: csv::Writer<Box<dyn Write + Send>>,
    path: String,
    /// Each field's text, reused: a `String` per field and row was most of
    /// the time of a CSV output.
    field: String,
}

impl CsvWriter {
    pub fn new(
        out: Box<dyn Write + Send>,
        path: String,
        group_by: GroupBy,
    ) -> Result<Self, OutputError> {
        let mut out = csv::Writer::from_writer(out);
        out.write_record(columns(group_by))
            .map_err(|e| csv_err(&path, e))?;
        Ok(Self {
            out,
            path,
            field: String::new(),
        })
    }

    /// Writes one field, its text as `fill` writes it into the reused buffer.
    fn put(&mut self, fill: impl FnOnce(&mut String)) -> Result<(), OutputError> {
        self.field.clear();
        fill(&mut self.field);
        self.out
            .write_field(self.field.as_bytes())
            .map_err(|e| csv_err(&self.path, e))
    }

    /// Writes one field: `value` as `Display` writes it, or empty for `None`.
    fn field<T: std::fmt::Display>(&mut self, value: Option<T>) -> Result<(), OutputError> {
        self.put(|out| {
            if let Some(v) = value {
                // Writing to a String cannot fail.
                let _ = write!(out, "{v}");
            }
        })
    }

    /// Writes `v` without exponent in the shortest digits that read back as
    /// exactly `v` (ryu, about three times faster than `Display`, which took
    /// most of a CSV output's time). `Display` writes the same text except,
    /// rarely, the last of 17 digits where two are equally short and both
    /// read back as `v`; it is used where ryu would write an exponent.
    fn float(&mut self, v: f64) -> Result<(), OutputError> {
        self.put(|out| write_float(out, v))
    }

    fn timestamp(&mut self, us: Micros) -> Result<(), OutputError> {
        self.put(|out| {
            let _ = write_micros(out, us);
        })
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
                self.float(v)?;
            }
            for v in [r.avg_speed_mph, r.avg_tip_ratio] {
                match v {
                    Some(v) => self.float(v)?,
                    None => self.field(None::<f64>)?,
                }
            }
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
    out: Box<dyn Write + Send>,
    path: String,
}

impl JsonLinesWriter {
    pub fn new(out: Box<dyn Write + Send>, path: String) -> Self {
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

#[cfg(test)]
mod tests {
    use super::write_float;

    #[test]
    fn floats_read_back_exactly_and_amounts_as_display_writes_them() {
        let mut values = vec![
            0.0,
            -0.0,
            1.0,
            30.0,
            -12.5,
            170.50000000000006,
            0.1 + 0.2,
            1e-7,
            123_456_789_012_345.0,
            1e15,
            1e16,
            1e21,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        // A spread of magnitudes and fractions, deterministic.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x);
            if v.is_finite() {
                values.push(v);
            }
            values.push((x % 10_000_000) as f64 / 100.0);
        }
        for v in values {
            let mut out = String::new();
            write_float(&mut out, v);
            assert!(!out.contains('e'), "{out}");
            if v.is_nan() {
                assert_eq!(out, "NaN");
                continue;
            }
            let back: f64 = out.parse().unwrap();
            assert_eq!(back.to_bits(), v.to_bits(), "{out} for {v:e}");
            if v.abs() < 1e14 {
                assert_eq!(out, v.to_string(), "{v:e}");
            }
        }
    }
}
