//! Sinks: where a stage's output and its dead letters go (see
//! [`crate::flow`]). Each acknowledges in the order it was given batches.
//!
//! - [`results_table`]: window results upserted into Cassandra (`sink`);
//! - [`windows_topic`]: window results to the aggregates topic (`aggregate`);
//! - [`dead_letter_topic`]: dead letters to the dead-letter topic, with
//!   their reason, detail, stage and origin as headers.

pub mod dead_letter_topic;
pub mod results_table;
pub mod windows_topic;
