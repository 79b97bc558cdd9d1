//! Event-time windows: where trips are grouped, counted and where windows close.
//!
//! # Model
//!
//! - **Event time** is the pickup time ([`crate::trip::TripBatch::pickup`]).
//! - **Windows** are tumbling (`slide == size`) or hopping (`size` a multiple of
//!   `slide`), aligned to the epoch of the naive clock: a window is
//!   `[start, start + size)` with `start` a multiple of `slide`. A hopping
//!   record falls into `size / slide` windows.
//! - **Key**: the configured [`GroupBy`] (pickup zone by default, dropoff zone,
//!   pickup borough or payment type).
//! - **Watermark** (per record): before record *i* is applied,
//!   `W = max(progress of records 0..i) − allowed_lateness`, where a record's
//!   progress is its pickup ([`WindowEngine::push_batch`], for input already
//!   in event-time order) or the watermark the input carries with it
//!   ([`WindowEngine::push_carried`] and the markers of
//!   [`WindowEngine::advance`], in the pipeline). A window is closed once
//!   `W >= end`. A record is *late for a window* when that window is
//!   already closed; it is counted in every window of its own that is still
//!   open, and reported late when none is (a tumbling record has exactly one).
//! - **Emission**: each closed window is emitted exactly once, at the end of
//!   the [`WindowEngine::push_batch`] call in which it closed, ordered by window
//!   end, then window start, then key. [`WindowEngine::flush`] closes everything
//!   at end of input (an infinite watermark).
//!
//! The engine is deterministic: the same records in the same order give the
//! same results, bit for bit, whatever the batch boundaries.
//!
//! # Using it from a stage
//!
//! The engine knows nothing about where records come from. A stage that reads
//! partitioned input keeps one engine per partition, feeds it batches in
//! partition order, writes the [`WindowResult`]s it returns, and dead-letters
//! the late row indices. To make output effectively-once it persists an
//! [`EngineSnapshot`] ([`WindowEngine::snapshot`], serde-serialisable) together
//! with the input position the snapshot covers, and after a restart rebuilds
//! the engine with [`WindowEngine::restore`] and resumes reading from there.
//!
//! ```
//! use taxistream_worker::trip::{Dataset, TripBatch};
//! use taxistream_worker::window::{GroupBy, WindowConfig, WindowEngine};
//! use taxistream_worker::zones::ZoneLookup;
//!
//! let config = WindowConfig::tumbling(300, 600, GroupBy::PickupZone).unwrap();
//! let mut engine = WindowEngine::new(config, ZoneLookup::embedded());
//! let batch = TripBatch::with_capacity("example".into(), Dataset::Yellow, 0);
//! let mut out = Vec::new();
//! let mut late = Vec::new();
//! engine.push_batch(&batch, None, &mut out, &mut late);
//! engine.flush(&mut out);
//! assert!(out.is_empty() && late.is_empty());
//! ```

mod accumulators;
mod engine;
mod keys;
mod rows;
mod snapshot;
mod watermark;

pub use accumulators::Accumulator;
pub use engine::{EngineStats, WindowEngine, WindowResult};
pub use keys::KeyInfo;
// The relay keys Kafka messages with the same mapping, so one window key
// never spans partitions; `run` keys the rows it keeps for the merge with it.
pub use keys::KeyMapper;
pub use rows::{WindowInput, WindowRows};
pub use snapshot::{EngineSnapshot, SNAPSHOT_VERSION, SnapshotWindow};
pub use taxistream_crds::pipeline::GroupBy;
pub use watermark::Watermark;

use serde::{Deserialize, Serialize};

use crate::trip::{MICROS_PER_SECOND, Micros};

/// Errors of window configuration and snapshot restore.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WindowError {
    #[error("window size must be positive, got {0} s")]
    ZeroSize(u64),
    #[error("window slide must be positive, got {0} s")]
    ZeroSlide(u64),
    #[error("window size {size} s is not a multiple of slide {slide} s")]
    SlideNotDivisor { size: u64, slide: u64 },
    #[error("duration {0} s is too large")]
    TooLarge(u64),
    #[error(
        "window size {size} s over slide {slide} s puts each record in more than {MAX_WINDOWS_PER_RECORD} windows"
    )]
    TooManyWindows { size: u64, slide: u64 },
    #[error("snapshot version {found} is not supported (expected {expected})")]
    SnapshotVersion { found: u32, expected: u32 },
    #[error("snapshot is inconsistent: {0}")]
    SnapshotInvalid(String),
}

/// Upper bound on `size / slide`: every open window holds one accumulator
/// per key, so a 24-hour window sliding by the second would need tens of
/// thousands of open windows (gigabytes) for no useful result.
pub const MAX_WINDOWS_PER_RECORD: u64 = 4_096;

/// Window shape, lateness and key. Durations are kept in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowConfig {
    pub size: Micros,
    pub slide: Micros,
    pub allowed_lateness: Micros,
    pub group_by: GroupBy,
}

fn secs_to_micros(s: u64) -> Result<Micros, WindowError> {
    i64::try_from(s)
        .ok()
        .and_then(|s| s.checked_mul(MICROS_PER_SECOND))
        .ok_or(WindowError::TooLarge(s))
}

impl WindowConfig {
    /// Hopping windows of `size_s` seconds starting every `slide_s` seconds.
    pub fn hopping(
        size_s: u64,
        slide_s: u64,
        lateness_s: u64,
        group_by: GroupBy,
    ) -> Result<Self, WindowError> {
        if size_s == 0 {
            return Err(WindowError::ZeroSize(size_s));
        }
        if slide_s == 0 {
            return Err(WindowError::ZeroSlide(slide_s));
        }
        if !size_s.is_multiple_of(slide_s) {
            return Err(WindowError::SlideNotDivisor {
                size: size_s,
                slide: slide_s,
            });
        }
        if size_s / slide_s > MAX_WINDOWS_PER_RECORD {
            return Err(WindowError::TooManyWindows {
                size: size_s,
                slide: slide_s,
            });
        }
        Ok(Self {
            size: secs_to_micros(size_s)?,
            slide: secs_to_micros(slide_s)?,
            allowed_lateness: secs_to_micros(lateness_s)?,
            group_by,
        })
    }

    /// Tumbling windows of `size_s` seconds.
    pub fn tumbling(size_s: u64, lateness_s: u64, group_by: GroupBy) -> Result<Self, WindowError> {
        Self::hopping(size_s, size_s, lateness_s, group_by)
    }

    /// From the operator-rendered worker configuration.
    pub fn from_aggregation(
        a: &taxistream_crds::worker_config::AggregationConfig,
    ) -> Result<Self, WindowError> {
        Self::hopping(
            a.window_seconds,
            a.slide_seconds,
            a.allowed_lateness_seconds,
            a.group_by,
        )
    }

    /// Number of windows each record falls into.
    pub fn windows_per_record(&self) -> i64 {
        self.size / self.slide
    }

    /// Start of the latest window containing `t`.
    #[inline]
    pub fn last_window_start(&self, t: Micros) -> Micros {
        t.div_euclid(self.slide) * self.slide
    }

    fn check(&self) -> Result<(), WindowError> {
        if self.size <= 0 {
            return Err(WindowError::ZeroSize(0));
        }
        if self.slide <= 0 {
            return Err(WindowError::ZeroSlide(0));
        }
        if self.size % self.slide != 0 || self.allowed_lateness < 0 {
            return Err(WindowError::SlideNotDivisor {
                size: (self.size / MICROS_PER_SECOND) as u64,
                slide: (self.slide / MICROS_PER_SECOND) as u64,
            });
        }
        Ok(())
    }
}
