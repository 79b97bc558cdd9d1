//! A human-readable table on stdout.

use std::io::Write;

use super::{OutputError, ResultWriter};
use crate::trip::format_micros;
use crate::window::WindowResult;

/// Keeps the first `max_rows` results and prints them aligned at the end.
pub struct TableWriter {
    out: Box<dyn Write>,
    path: String,
    max_rows: usize,
    rows: Vec<[String; 12]>,
    total: u64,
}

impl TableWriter {
    pub fn new(out: Box<dyn Write>, path: String, max_rows: usize) -> Self {
        Self {
            out,
            path,
            max_rows,
            rows: Vec::new(),
            total: 0,
        }
    }
}

const HEADER: [&str; 12] = [
    "key",
    "name",
    "borough",
    "window_start",
    "cnt",
    "pax",
    "sum_fare",
    "sum_total",
    "avg_dist",
    "avg_mph",
    "tip_rate",
    "max_pax",
];

fn fixed(v: f64, digits: usize) -> String {
    format!("{v:.digits$}")
}

impl ResultWriter for TableWriter {
    fn write(&mut self, results: &[WindowResult]) -> Result<(), OutputError> {
        for r in results {
            self.total += 1;
            if self.rows.len() >= self.max_rows {
                continue;
            }
            let mut name: String = r.key_name.chars().take(28).collect();
            if r.key_name.chars().count() > 28 {
                name.push('…');
            }
            self.rows.push([
                r.key.to_string(),
                name,
                r.borough.as_deref().unwrap_or("").to_string(),
                format_micros(r.window_start),
                r.count.to_string(),
                r.passengers.to_string(),
                fixed(r.sum_fare, 2),
                fixed(r.sum_total, 2),
                fixed(r.avg_distance, 2),
                r.avg_speed_mph.map_or_else(String::new, |v| fixed(v, 1)),
                r.avg_tip_ratio.map_or_else(String::new, |v| fixed(v, 3)),
                r.max_passengers.map_or_else(String::new, |v| v.to_string()),
            ]);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), OutputError> {
        let mut widths = HEADER.map(|h| h.chars().count());
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let numeric = |i: usize| !(1..=3).contains(&i);
        let mut text = String::new();
        let mut line = |cells: &[String]| {
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                let pad = w.saturating_sub(cell.chars().count());
                if numeric(i) {
                    text.push_str(&" ".repeat(pad));
                    text.push_str(cell);
                } else {
                    text.push_str(cell);
                    text.push_str(&" ".repeat(pad));
                }
            }
            text.push('\n');
        };
        line(&HEADER.map(str::to_string));
        for row in &self.rows {
            line(row);
        }
        if self.total > self.rows.len() as u64 {
            text.push_str(&format!(
                "… {} more windows (write them all with --output FILE)\n",
                self.total - self.rows.len() as u64
            ));
        }
        let err = |error| OutputError::Io {
            path: self.path.clone(),
            error,
        };
        self.out.write_all(text.as_bytes()).map_err(err)?;
        self.out.flush().map_err(err)
    }
}
