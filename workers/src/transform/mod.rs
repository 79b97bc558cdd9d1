//! Transforms: the steps between a source and a sink (see [`crate::flow`]).
//! The record-level checks ([`crate::validate`]) and the window engine
//! ([`crate::window`]) are the building blocks; each transform here puts
//! them together for one stage.
//!
//! - [`decode_windows`]: aggregates-topic messages → window results (`sink`);
//! - [`partitioned_windows`]: trips-topic messages → window results, one
//!   engine per partition (`aggregate`).

pub mod decode_windows;
pub mod partitioned_windows;
