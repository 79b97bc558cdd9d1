//! Transforms: the steps between a source and a sink (see [`crate::flow`]).
//! The record-level checks ([`crate::validate`]) and the window engine
//! ([`crate::window`]) are the building blocks; each transform here puts
//! them together for one stage.
//!
//! - [`decode_windows`]: aggregates-topic messages → window results (`sink`);
//! - [`landing_checks`]: read batches → the valid rows past a source's
//!   progress, and its rejects (`ingest`);
//! - [`event_time_stamps`]: outbox rows → trips stamped with the watermark
//!   as of their publication (`relay`);
//! - [`local_windows`]: file batches → validated → windows (`run`), with
//!   [`event_time_merge`] ordering every input by pickup first;
//! - [`partitioned_windows`]: trips-topic messages → window results, one
//!   engine per partition (`aggregate`).

pub mod decode_windows;
pub mod event_time_merge;
pub mod event_time_stamps;
pub mod landing_checks;
pub mod local_windows;
pub mod partitioned_windows;
