//! Sources: where trip records come from, and how each format becomes
//! [`TripBatch`]es.
//!
//! - [`parquet`]: TLC monthly Parquet files, read row group by row group;
//! - [`csv`]: the historic CSV layouts from 2016-07 on (and re-saved copies);
//! - [`open_data`]: the NYC Open Data (Socrata) JSON API, paged;
//! - [`http`]: `http(s)` downloads with retries and resume;
//! - [`spec`]: what a user names as input (path, URL, month range, dataset).
//!
//! Every reader yields [`ReadBatch`]es: the rows that parsed, plus a dead
//! letter for each row that did not. A file that cannot be read any further
//! (truncated, corrupt, wrong layout) ends with a [`SourceError`] naming it.

pub mod csv;
pub mod fields;
pub mod http;
pub mod open_data;
pub mod parquet;
pub mod spec;

use std::path::Path;

use crate::dead_letter::DeadLetter;
use crate::trip::{Dataset, TripBatch};

pub use fields::LayoutProblem;
pub use spec::InputSpec;

/// Rows per batch the readers aim for.
pub const BATCH_ROWS: usize = 64 * 1024;

/// Failures that stop reading one source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{name}: cannot read: {error}")]
    Io {
        name: String,
        #[source]
        error: std::io::Error,
    },
    #[error("{name}: {problem}")]
    Layout {
        name: String,
        problem: LayoutProblem,
    },
    #[error("{name}: corrupt or truncated Parquet file: {error}")]
    Parquet {
        name: String,
        #[source]
        error: ::parquet::errors::ParquetError,
    },
    #[error("{name}: column {column}: {message}")]
    Column {
        name: String,
        column: String,
        message: String,
    },
    #[error("{name}: CSV error near row {row}: {error}")]
    Csv {
        name: String,
        row: u64,
        #[source]
        error: ::csv::Error,
    },
    #[error("{name}: invalid JSON: {message}")]
    Json { name: String, message: String },
    #[error("{name}: download failed: {message}")]
    Http { name: String, message: String },
    #[error("{name}: {message}")]
    Unsupported { name: String, message: String },
}

/// One batch from a reader.
#[derive(Debug, Default)]
pub struct ReadBatch {
    pub trips: TripBatch,
    /// Rows that could not be parsed.
    pub rejects: Vec<DeadLetter>,
}

/// A reader of one source.
pub trait TripReader: Send {
    /// The source's name, as used in [`crate::trip::SourceRef`].
    fn name(&self) -> &str;
    /// Total rows, when the format says so up front (Parquet metadata).
    fn total_rows(&self) -> Option<u64>;
    /// The next batch; `Ok(None)` at the end.
    fn next_batch(&mut self) -> Result<Option<ReadBatch>, SourceError>;
}

/// Opens a local file, choosing the reader from its first bytes: `PAR1`
/// for Parquet, `[` or `{` for Open Data JSON, otherwise CSV. `name` is the
/// source identity recorded in each row (the URL for downloaded files).
pub fn open_file(
    path: &Path,
    name: &str,
    default_dataset: Dataset,
) -> Result<Box<dyn TripReader>, SourceError> {
    use std::io::Read;
    let io_err = |error| SourceError::Io {
        name: name.to_string(),
        error,
    };
    let mut head = [0u8; 4];
    let mut file = std::fs::File::open(path).map_err(io_err)?;
    let n = file.read(&mut head).map_err(io_err)?;
    drop(file);
    let first = head[..n].iter().copied().find(|b| !b.is_ascii_whitespace());
    if head[..n] == *b"PAR1" {
        // Footer parsing is third-party code fed untrusted bytes: a panic
        // there must become an error naming the file.
        let opened = std::panic::catch_unwind(|| {
            parquet::ParquetTripReader::open(path, name, default_dataset)
        })
        .map_err(|panic| SourceError::Unsupported {
            name: name.to_string(),
            message: format!("decoder failed on corrupt data: {}", panic_message(&*panic)),
        })?;
        Ok(Box::new(opened?))
    } else if matches!(first, Some(b'[') | Some(b'{')) {
        Ok(Box::new(open_data::JsonFileReader::open(
            path,
            name,
            default_dataset,
        )?))
    } else {
        Ok(Box::new(csv::CsvTripReader::open(
            path,
            name,
            default_dataset,
        )?))
    }
}

/// The text of a caught panic.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// The dataset a file holds: from its columns when they tell (`tpep_` or
/// `lpep_`), else from its name, else `default`.
pub fn dataset_of(layout_dataset: Option<Dataset>, name: &str, default: Dataset) -> Dataset {
    if let Some(d) = layout_dataset {
        return d;
    }
    let base = name.rsplit('/').next().unwrap_or(name).to_ascii_lowercase();
    if base.starts_with("green") {
        Dataset::Green
    } else if base.starts_with("yellow") {
        Dataset::Yellow
    } else {
        default
    }
}
