//! Serialisable engine state, for effectively-once stages that checkpoint it
//! together with their input position.

use serde::{Deserialize, Serialize};

use super::WindowConfig;
use super::accumulators::Accumulator;
use super::engine::EngineStats;
use crate::trip::Micros;

/// Format version of [`EngineSnapshot`]; bumped on incompatible changes.
pub const SNAPSHOT_VERSION: u32 = 1;

/// Everything needed to continue a [`super::WindowEngine`] elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineSnapshot {
    pub version: u32,
    pub config: WindowConfig,
    /// Event-time progress: the maximum pickup seen, or the carried watermark
    /// ([`super::WindowEngine::push_carried`]); the watermark follows from it.
    pub max_event_time: Option<Micros>,
    /// Open windows, by ascending start.
    pub windows: Vec<SnapshotWindow>,
    pub stats: EngineStats,
}

/// One open window: its start and the non-empty accumulators by key index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotWindow {
    pub start: Micros,
    pub entries: Vec<(u16, Accumulator)>,
}
