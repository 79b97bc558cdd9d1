//! CSV and JSON-lines result writers.

use std::io::Write;

use chrono::{Datelike, Timelike};

use super::{OutputError, ResultWriter, columns};
use crate::io::codec::window::WindowV1;
use crate::trip::{MICROS_PER_SECOND, Micros, format_micros, naive_from_micros};
use crate::window::{GroupBy, WindowResult};

fn io(path: &str) -> impl Fn(std::io::Error) -> OutputError + '_ {
    move |error| OutputError::Io {
        path: path.to_string(),
        error,
    }
}

/// Appends `v` in the shortest digits that read back as exactly `v`,
/// without exponent (ryu, about three times faster than `Display`, which
/// took most of a CSV output's time). `Display` writes the same text except,
/// rarely, the last of 17 digits where two are equally short and both read
/// back as `v`; it is used where ryu would write an exponent.
fn write_float(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        let mut digits = ryu::Buffer::new();
        let s = digits.format_finite(v);
        if !s.contains('e') {
            out.extend_from_slice(s.strip_suffix(".0").unwrap_or(s).as_bytes());
            return;
        }
    }
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{v}");
}

fn write_int(out: &mut Vec<u8>, v: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends `v` as two digits (`v` < 100).
fn two_digits(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&[b'0' + (v / 10) as u8, b'0' + (v % 10) as u8]);
}

/// Appends `us` as [`crate::trip::format_micros`] writes it. Digits by
/// hand for four-digit years: `write!` with padding cost as much as the
/// rest of a row.
fn write_timestamp(out: &mut Vec<u8>, us: Micros) {
    let fraction = us.rem_euclid(MICROS_PER_SECOND);
    match naive_from_micros(us) {
        Some(ts) if (0..=9999).contains(&ts.year()) => {
            let year = ts.year() as u32;
            two_digits(out, year / 100);
            two_digits(out, year % 100);
            out.push(b'-');
            two_digits(out, ts.month());
            out.push(b'-');
            two_digits(out, ts.day());
            out.push(b' ');
            two_digits(out, ts.hour());
            out.push(b':');
            two_digits(out, ts.minute());
            out.push(b':');
            two_digits(out, ts.second());
            if fraction != 0 {
                let _ = write!(out, ".{fraction:06}");
            }
        }
        _ => out.extend_from_slice(format_micros(us).as_bytes()),
    }
}

/// Appends `text` as a CSV field, quoted (quotes doubled) only when it
/// holds a delimiter, a quote or a line break, as the `csv` crate does.
fn write_text(out: &mut Vec<u8>, text: &str) {
    if text
        .bytes()
        .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
    {
        out.push(b'"');
        for b in text.bytes() {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(text.as_bytes());
    }
}

/// Bytes of formatted rows gathered before one write to the output.
const CHUNK: usize = 256 * 1024;

/// CSV with a header line; timestamps as `YYYY-MM-DD HH:MM:SS`, nulls empty.
///
/// Rows are formatted straight into one byte buffer: going through the
/// `csv` crate field by field, with `Display` for numbers, made a CSV
/// output half again as slow as the Parquet one.
pub struct CsvWriter {
    out: Box<dyn Write + Send>,
    path: String,
    buf: Vec<u8>,
}

impl CsvWriter {
    pub fn new(
        out: Box<dyn Write + Send>,
        path: String,
        group_by: GroupBy,
    ) -> Result<Self, OutputError> {
        let mut buf = Vec::with_capacity(CHUNK + 1024);
        for (i, column) in columns(group_by).iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            write_text(&mut buf, column);
        }
        buf.push(b'\n');
        Ok(Self { out, path, buf })
    }

    fn row(&mut self, r: &WindowResult) {
        let out = &mut self.buf;
        write_int(out, r.key);
        out.push(b',');
        write_text(out, &r.key_name);
        out.push(b',');
        if let Some(zone) = &r.zone {
            write_text(out, zone);
        }
        out.push(b',');
        if let Some(borough) = &r.borough {
            write_text(out, borough);
        }
        out.push(b',');
        write_timestamp(out, r.window_start);
        out.push(b',');
        write_timestamp(out, r.window_end);
        out.push(b',');
        write_int(out, r.count);
        out.push(b',');
        write_int(out, r.passengers);
        out.push(b',');
        if let Some(m) = r.max_passengers {
            write_int(out, m);
        }
        for v in [
            r.sum_fare,
            r.sum_tip,
            r.sum_tolls,
            r.sum_total,
            r.avg_distance,
            r.avg_duration_s,
        ] {
            out.push(b',');
            write_float(out, v);
        }
        for v in [r.avg_speed_mph, r.avg_tip_ratio] {
            out.push(b',');
            if let Some(v) = v {
                write_float(out, v);
            }
        }
        out.push(b',');
        write_text(out, super::group_by_name(r.group_by));
        out.push(b'\n');
    }

    fn drain(&mut self) -> Result<(), OutputError> {
        self.out.write_all(&self.buf).map_err(io(&self.path))?;
        self.buf.clear();
        Ok(())
    }
}

impl ResultWriter for CsvWriter {
    fn write(&mut self, results: &[WindowResult]) -> Result<(), OutputError> {
        for r in results {
            self.row(r);
            if self.buf.len() >= CHUNK {
                self.drain()?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), OutputError> {
        self.drain()?;
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
    use super::*;

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
            let mut bytes = Vec::new();
            write_float(&mut bytes, v);
            let out = String::from_utf8(bytes).unwrap();
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

    #[test]
    fn text_fields_are_quoted_as_the_csv_crate_quotes_them() {
        let fields = [
            "Newark Airport",
            "Allerton/Pelham Gardens",
            "a,b",
            "say \"hi\"",
            "two\nlines",
            "cr\r",
            "",
            " padded ",
            "\\back",
        ];
        let mut expected = csv::Writer::from_writer(Vec::new());
        expected.write_record(fields).unwrap();
        let expected = expected.into_inner().unwrap();
        let mut got = Vec::new();
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                got.push(b',');
            }
            write_text(&mut got, f);
        }
        got.push(b'\n');
        assert_eq!(String::from_utf8(got), String::from_utf8(expected));
    }

    #[test]
    fn timestamps_match_format_micros() {
        let mut values = vec![
            0,
            -1,
            1,
            1_672_531_200_000_000,
            1_672_531_200_000_001,
            1_672_531_259_999_999,
            -62_135_596_800_000_000,
            -62_135_596_800_000_001,
            253_402_300_799_999_999,
            253_402_300_800_000_000,
            i64::MIN,
            i64::MAX,
        ];
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push((x % 4_000_000_000_000_000) as i64 - 1_000_000_000_000_000);
        }
        for us in values {
            let mut out = Vec::new();
            write_timestamp(&mut out, us);
            assert_eq!(String::from_utf8(out).unwrap(), format_micros(us), "{us}");
        }
    }
}
