//! taxistream data plane.
//!
//! The data flows through the modules in this order:
//! `source` (files, URLs, Open Data API) → [`trip`] (one normalised record)
//! → `validate` (bad rows to `dead_letter`) → `window` (event-time windows)
//! → `output` (tables, CSV, JSON lines, Parquet). `stage` wires them into
//! the worker's subcommands.

pub mod bench;
pub mod config;
pub mod dead_letter;
pub mod error;
pub mod flow;
pub mod health;
pub mod io;
pub mod metrics;
pub mod output;
pub mod run;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod stage;
pub mod transform;
pub mod trip;
pub mod validate;
pub mod window;
pub mod zones;
