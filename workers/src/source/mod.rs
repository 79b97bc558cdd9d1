//! Sources: where trip records come from, and how each format becomes
//! [`TripBatch`]es.
//!
//! - [`parquet`]: TLC monthly Parquet files, read row group by row group;
//! - [`csv`]: the historic CSV layouts from 2016-07 on (and re-saved copies);
//! - [`open_data`]: the NYC Open Data (Socrata) JSON API, paged;
//! - [`http`]: `http(s)` downloads with retries and resume;
//! - [`spec`]: what a user names as input (path, URL, month range, dataset);
//! - [`feed`]: one file or Open Data query as a stage's batch source,
//!   decoded a batch ahead on a thread of its own;
//! - [`inputs`]: every input of a `run`, one after the other, as one source;
//! - [`outbox`]: the PostgreSQL landing table as the relay reads it, in
//!   event-time order, one transaction per round (`relay`);
//! - [`consumer`]: a Kafka consumer in a group, as the topic sources use it;
//!   [`aggregates_topic`] is the `sink` stage's source on it and
//!   [`trips_topic`] the `aggregate` stage's, decoded message by message,
//!   with its checkpoints.
//!
//! Every reader yields [`ReadBatch`]es: the rows that parsed, plus a dead
//! letter for each row that did not. A file that cannot be read any further
//! (truncated, corrupt, wrong layout, not trip data at all) ends with a
//! [`SourceError`] naming it and saying what is wrong.

pub mod aggregates_topic;
pub mod consumer;
pub mod csv;
pub mod feed;
pub mod fields;
pub mod http;
pub mod inputs;
pub mod open_data;
pub mod outbox;
pub mod parquet;
pub mod spec;
pub mod trips_topic;

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
    #[error(
        "{name}: row {row} (line {line}) opens a quote that is not closed on its line, \
         swallowing {lines} line break(s); TLC fields hold no line breaks, so the rows from \
         there on cannot be told apart and the file is read no further"
    )]
    UnclosedQuote {
        name: String,
        row: u64,
        line: u64,
        lines: u64,
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
    #[error(
        "nothing to read in {dir}: the directory holds no trip files (*.parquet, *.csv, \
         *.csv.gz, *.json)"
    )]
    NoTripFiles { dir: String },
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

/// What the first bytes of a file say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Content {
    Empty,
    Parquet,
    Gzip,
    Zip,
    Html,
    Xml,
    Json,
    Binary,
    Text,
}

/// Bytes read to tell what a file is.
const SNIFF_BYTES: usize = 512;

fn identify(head: &[u8]) -> Content {
    let text = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let start = text.iter().position(|b| !b.is_ascii_whitespace());
    let Some(start) = start else {
        return Content::Empty;
    };
    let text = &text[start..];
    let lower: Vec<u8> = text.iter().take(64).map(u8::to_ascii_lowercase).collect();
    if head.starts_with(b"PAR1") {
        Content::Parquet
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Content::Gzip
    } else if head.starts_with(b"PK\x03\x04") {
        Content::Zip
    } else if lower.starts_with(b"<!doctype html") || lower.starts_with(b"<html") {
        Content::Html
    } else if lower.starts_with(b"<?xml") || lower.starts_with(b"<") {
        Content::Xml
    } else if matches!(text[0], b'[' | b'{') {
        Content::Json
    } else if head.contains(&0) || std::str::from_utf8(head).is_err() && !mostly_text(head) {
        Content::Binary
    } else {
        Content::Text
    }
}

/// Whether bytes are text with a few non-UTF-8 bytes (a Latin-1 zone name)
/// rather than binary data (a UTF-8 check alone fails on a cut multi-byte
/// character at the end of the sniffed bytes, too).
fn mostly_text(head: &[u8]) -> bool {
    let odd = head
        .iter()
        .filter(|&&b| b < 0x20 && !b.is_ascii_whitespace())
        .count();
    odd == 0
}

fn io_err(name: &str) -> impl Fn(std::io::Error) -> SourceError + Copy + '_ {
    move |error| SourceError::Io {
        name: name.to_string(),
        error,
    }
}

fn not_trip_data(name: &str, what: &str) -> SourceError {
    SourceError::Unsupported {
        name: name.to_string(),
        message: format!("not a trip file: {what}"),
    }
}

/// Opens a local file, choosing the reader from its first bytes: `PAR1`
/// for Parquet, `[` or `{` for Open Data JSON, gzip for compressed CSV or
/// JSON (`.csv.gz`), otherwise CSV. Empty files, web pages, archives and
/// binary data are refused with a message saying what the file is. `name` is
/// the source identity recorded in each row (the URL for downloaded files).
pub fn open_file(
    path: &Path,
    name: &str,
    default_dataset: Dataset,
) -> Result<Box<dyn TripReader>, SourceError> {
    use std::io::Read;
    let io_err = io_err(name);
    let file = std::fs::File::open(path).map_err(io_err)?;
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    (&file)
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(io_err)?;
    drop(file);
    match identify(&head) {
        Content::Parquet => {
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
        }
        Content::Gzip => open_gzip(path, name, default_dataset),
        Content::Json => Ok(Box::new(open_data::JsonFileReader::open(
            path,
            name,
            default_dataset,
        )?)),
        Content::Text => Ok(Box::new(csv::CsvTripReader::open(
            path,
            name,
            default_dataset,
        )?)),
        Content::Empty if head.is_empty() => {
            Err(not_trip_data(name, "the file is empty (0 bytes)"))
        }
        Content::Empty => Err(not_trip_data(name, "the file holds only blank lines")),
        Content::Zip => Err(not_trip_data(
            name,
            "a ZIP archive; extract the trip file from it first",
        )),
        Content::Html => Err(not_trip_data(
            name,
            "an HTML page (a web page saved or served instead of the data?)",
        )),
        Content::Xml => Err(not_trip_data(
            name,
            "an XML document (a storage service's error response?)",
        )),
        Content::Binary => Err(not_trip_data(
            name,
            "binary data that is neither Parquet nor gzip",
        )),
    }
}

/// A gzip file: CSV or JSON inside are read through the decompressor.
/// Parquet needs random access, so a gzipped Parquet file is refused.
fn open_gzip(
    path: &Path,
    name: &str,
    default_dataset: Dataset,
) -> Result<Box<dyn TripReader>, SourceError> {
    use std::io::{BufRead, Read};
    let io_err = io_err(name);
    let gz = |file| flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file));
    let file = std::fs::File::open(path).map_err(io_err)?;
    let mut inner = std::io::BufReader::with_capacity(SNIFF_BYTES, gz(file));
    let head = inner
        .fill_buf()
        .map_err(|e| not_trip_data(name, &format!("a damaged gzip file ({e})")))?
        .to_vec();
    match identify(&head) {
        Content::Text => {
            let file = std::fs::File::open(path).map_err(io_err)?;
            Ok(Box::new(csv::CsvTripReader::new(
                gz(file),
                name,
                default_dataset,
            )?))
        }
        Content::Json => {
            let mut bytes = head;
            inner.consume(bytes.len());
            inner
                .read_to_end(&mut bytes)
                .map_err(|e| not_trip_data(name, &format!("a damaged gzip file ({e})")))?;
            Ok(Box::new(open_data::JsonFileReader::from_bytes(
                &bytes,
                name,
                default_dataset,
            )?))
        }
        Content::Parquet => Err(not_trip_data(
            name,
            "a gzip-compressed Parquet file; decompress it first (gunzip)",
        )),
        other => Err(not_trip_data(
            name,
            &format!("a gzip file holding {}", describe(other)),
        )),
    }
}

fn describe(c: Content) -> &'static str {
    match c {
        Content::Empty => "nothing",
        Content::Parquet => "Parquet",
        Content::Gzip => "another gzip file",
        Content::Zip => "a ZIP archive",
        Content::Html => "an HTML page",
        Content::Xml => "an XML document",
        Content::Json => "JSON",
        Content::Binary => "binary data",
        Content::Text => "text",
    }
}

/// The next batch of `reader`, with a panic in the decoder (third-party
/// code fed untrusted bytes) turned into an error naming the source.
pub fn next_batch_guarded(reader: &mut dyn TripReader) -> Result<Option<ReadBatch>, SourceError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.next_batch())).unwrap_or_else(
        |panic| {
            Err(SourceError::Unsupported {
                name: reader.name().to_string(),
                message: format!("decoder failed on corrupt data: {}", panic_message(&*panic)),
            })
        },
    )
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
