//! Sinks: where a stage's output and its dead letters go (see
//! [`crate::flow`]). Each acknowledges in the order it was given batches.
//!
//! - [`results_table`]: window results upserted into Cassandra (`sink`);
//! - [`results_file`]: window results to a local file or table (`run`);
//! - [`dead_letter_file`]: dead letters to a JSON-lines file (`run`);
//! - [`dead_letter_topic`]: dead letters to the dead-letter topic, with
//!   their reason, detail, stage and origin as headers.

pub mod dead_letter_file;
pub mod dead_letter_topic;
pub mod results_file;
pub mod results_table;
