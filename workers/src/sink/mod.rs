//! Sinks: where a stage's output and its dead letters go (see
//! [`crate::flow`]). Each acknowledges in the order it was given batches.
//!
//! - [`landing_table`]: rows, their dead letters and the source's progress
//!   into PostgreSQL, one transaction per batch (`ingest`);
//! - [`results_table`]: window results upserted into Cassandra (`sink`);
//! - [`results_file`]: window results to a local file or table (`run`);
//! - [`dead_letter_file`]: dead letters to a JSON-lines file (`run`);
//! - [`windows_topic`]: window results to the aggregates topic (`aggregate`);
//! - [`dead_letter_topic`]: dead letters to the dead-letter topic, with
//!   their reason, detail, stage and origin as headers;
//! - [`trips_topic`]: stamped trips to the trips topic as `trip/3`
//!   messages per key group, with watermark markers (`relay`).

pub mod dead_letter_file;
pub mod dead_letter_topic;
pub mod landing_table;
pub mod results_file;
pub mod results_table;
pub mod trips_topic;
pub mod windows_topic;
