//! Where window results go in a local run: a readable table, CSV, JSON
//! lines or Parquet. Writers receive results as the engine emits them, so
//! nothing but the table is held in memory.

pub mod background;
pub mod parquet;
pub mod table;
pub mod text;

use std::path::Path;

use crate::window::{GroupBy, WindowResult};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// An aligned table of the first --max-table-rows windows.
    Table,
    Csv,
    /// One JSON object per line.
    Jsonl,
    Parquet,
    /// Count results, write nothing (benchmarks).
    None,
}

impl Format {
    /// Guesses the format from a file extension.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" | "json" => Some(Format::Jsonl),
            "parquet" => Some(Format::Parquet),
            "txt" => Some(Format::Table),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{path}: {error}")]
    Io {
        path: String,
        #[source]
        error: std::io::Error,
    },
    #[error("{path}: {message}")]
    Encode { path: String, message: String },
}

/// Receives emitted windows.
pub trait ResultWriter {
    fn write(&mut self, results: &[WindowResult]) -> Result<(), OutputError>;
    fn finish(&mut self) -> Result<(), OutputError>;
}

/// Name of the key column for a grouping, as in the TLC files.
pub fn key_column(group_by: GroupBy) -> &'static str {
    match group_by {
        GroupBy::PickupZone => "PULocationID",
        GroupBy::DropoffZone => "DOLocationID",
        GroupBy::Borough => "borough_id",
        GroupBy::PaymentType => "payment_type",
    }
}

/// The configuration spelling of a grouping, e.g. `pickupZone`.
pub fn group_by_name(group_by: GroupBy) -> &'static str {
    match group_by {
        GroupBy::PickupZone => "pickupZone",
        GroupBy::DropoffZone => "dropoffZone",
        GroupBy::Borough => "borough",
        GroupBy::PaymentType => "paymentType",
    }
}

/// Column names shared by the CSV and Parquet outputs.
pub fn columns(group_by: GroupBy) -> [&'static str; 18] {
    [
        key_column(group_by),
        "key_name",
        "zone",
        "borough",
        "window_start",
        "window_end",
        "cnt",
        "passengers",
        "max_pax",
        "sum_fare",
        "sum_tip",
        "sum_tolls",
        "sum_total",
        "avg_dist",
        "avg_duration_s",
        "avg_speed_mph",
        "avg_tip_ratio",
        "group_by",
    ]
}

/// Opens the writer for `format` at `path` (stdout when `None`).
pub fn open(
    format: Format,
    path: Option<&Path>,
    group_by: GroupBy,
    max_table_rows: usize,
) -> Result<Box<dyn ResultWriter>, OutputError> {
    let name = path.map_or_else(|| "stdout".to_string(), |p| p.display().to_string());
    let sink = || -> Result<Box<dyn std::io::Write + Send>, OutputError> {
        Ok(match path {
            Some(p) => Box::new(std::io::BufWriter::with_capacity(
                1 << 20,
                std::fs::File::create(p).map_err(|error| OutputError::Io {
                    path: name.clone(),
                    error,
                })?,
            )),
            None => Box::new(std::io::BufWriter::new(std::io::stdout())),
        })
    };
    Ok(match format {
        Format::Table => Box::new(table::TableWriter::new(
            sink()?,
            name.clone(),
            max_table_rows,
        )),
        Format::Csv => Box::new(background::Background::start(
            Box::new(text::CsvWriter::new(sink()?, name.clone(), group_by)?),
            name.clone(),
        )?),
        Format::Jsonl => Box::new(background::Background::start(
            Box::new(text::JsonLinesWriter::new(sink()?, name.clone())),
            name.clone(),
        )?),
        Format::Parquet => {
            let Some(p) = path else {
                return Err(OutputError::Encode {
                    path: name,
                    message: "Parquet output needs --output FILE".into(),
                });
            };
            Box::new(parquet::ParquetWriter::create(p, group_by)?)
        }
        Format::None => Box::new(Discard),
    })
}

struct Discard;

impl ResultWriter for Discard {
    fn write(&mut self, _results: &[WindowResult]) -> Result<(), OutputError> {
        Ok(())
    }

    fn finish(&mut self) -> Result<(), OutputError> {
        Ok(())
    }
}
