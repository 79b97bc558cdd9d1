//! The window engine: assigns records to windows, applies the watermark and
//! emits closed windows. See the module docs of [`crate::window`] for the model.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::accumulators::{Accumulator, RecordValues};
use super::keys::KeyMapper;
use super::rows::{WindowColumns, WindowInput};
use super::snapshot::{EngineSnapshot, SNAPSHOT_VERSION, SnapshotWindow};
use super::watermark::Watermark;
use super::{GroupBy, WindowConfig, WindowError};
use crate::trip::Micros;
use crate::zones::ZoneLookup;

/// One emitted (window, key) result with its zone enrichment. Its wire
/// form is `crate::io::codec::window`, a separate type.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowResult {
    pub group_by: GroupBy,
    /// See [`super::KeyInfo::key`].
    pub key: i32,
    pub key_name: Arc<str>,
    pub zone: Option<Arc<str>>,
    pub borough: Option<Arc<str>>,
    pub window_start: Micros,
    pub window_end: Micros,
    pub count: u64,
    pub passengers: i64,
    pub max_passengers: Option<i32>,
    pub sum_fare: f64,
    pub sum_tip: f64,
    pub sum_tolls: f64,
    pub sum_total: f64,
    pub avg_distance: f64,
    pub avg_duration_s: f64,
    pub avg_speed_mph: Option<f64>,
    pub avg_tip_ratio: Option<f64>,
}

/// Counters since the engine was created (carried through snapshots).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStats {
    /// Records offered (after the caller's selection).
    pub records: u64,
    /// Records counted in at least one window.
    pub accepted: u64,
    /// Records whose every window had closed.
    pub late: u64,
    /// Hopping only: (record, window) pairs skipped because that window had
    /// closed while another window of the record was still open.
    pub late_window_assignments: u64,
    pub windows_emitted: u64,
}

#[derive(Debug)]
struct OpenWindow {
    start: Micros,
    /// Indexed by key.
    accs: Box<[Accumulator]>,
    /// Keys with `count > 0`, in first-touch order.
    touched: Vec<u16>,
}

/// Event-time window engine for one ordered input (one partition).
#[derive(Debug)]
pub struct WindowEngine {
    config: WindowConfig,
    keys: KeyMapper,
    watermark: Watermark,
    /// Open windows sorted by start (and so by end: all have the same size).
    open: VecDeque<OpenWindow>,
    /// Emitted windows' storage, zeroed, for reuse.
    spare: Vec<OpenWindow>,
    key_buf: Vec<u16>,
    stats: EngineStats,
}

impl WindowEngine {
    /// A new engine with no open windows. `zones` provides the enrichment.
    pub fn new(config: WindowConfig, zones: &ZoneLookup) -> Self {
        Self {
            keys: KeyMapper::new(config.group_by, zones),
            watermark: Watermark::new(config.allowed_lateness),
            config,
            open: VecDeque::new(),
            spare: Vec::new(),
            key_buf: Vec::new(),
            stats: EngineStats::default(),
        }
    }

    pub fn config(&self) -> &WindowConfig {
        &self.config
    }

    /// Current watermark, `None` before the first record.
    pub fn watermark(&self) -> Option<Micros> {
        self.watermark.get()
    }

    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Number of windows currently open.
    pub fn open_windows(&self) -> usize {
        self.open.len()
    }

    /// Applies the rows of `batch` selected by `include` (all rows when `None`;
    /// otherwise `include[i]` says whether row `i` takes part), in row order.
    ///
    /// Windows that close during the batch are appended to `emitted`; indices
    /// of rows that were late for every one of their windows are appended to
    /// `late`. Both vectors are only appended to, so callers can reuse them.
    pub fn push_batch(
        &mut self,
        batch: &impl WindowInput,
        include: Option<&[bool]>,
        emitted: &mut Vec<WindowResult>,
        late: &mut Vec<usize>,
    ) {
        self.push_rows(batch, include, None, emitted, late);
    }

    /// As [`WindowEngine::push_batch`], with the watermark carried by the
    /// input instead of derived from pickups: after row `i` event time has
    /// progressed to `progress[i]` (the relay's stamp), and windows close
    /// once `progress − allowed lateness` passes their end. Rows left out by
    /// `include` move no watermark.
    pub fn push_carried(
        &mut self,
        batch: &impl WindowInput,
        include: Option<&[bool]>,
        progress: &[Micros],
        emitted: &mut Vec<WindowResult>,
        late: &mut Vec<usize>,
    ) {
        self.push_rows(batch, include, Some(progress), emitted, late);
    }

    /// A watermark marker: event time has progressed to `progress` on every
    /// input; emits the windows it closes.
    pub fn advance(&mut self, progress: Micros, emitted: &mut Vec<WindowResult>) {
        self.watermark.observe(progress);
        self.emit_closed(emitted);
    }

    fn push_rows(
        &mut self,
        batch: &impl WindowInput,
        include: Option<&[bool]>,
        progress: Option<&[Micros]>,
        emitted: &mut Vec<WindowResult>,
        late: &mut Vec<usize>,
    ) {
        let mut key_buf = std::mem::take(&mut self.key_buf);
        let keys = batch.keys(&self.keys, &mut key_buf);
        let WindowColumns {
            pickup,
            dropoff,
            passenger_count: passengers,
            trip_distance: distance,
            fare_amount: fare,
            tip_amount: tip,
            tolls_amount: tolls,
            total_amount: total,
        } = batch.columns();
        let n = pickup.len();
        let cfg = self.config;
        let per_record = cfg.windows_per_record();
        for i in 0..n {
            if let Some(inc) = include
                && !inc[i]
            {
                continue;
            }
            self.stats.records += 1;
            let t = pickup[i];
            let values = RecordValues {
                passengers: passengers[i],
                distance: distance[i],
                duration_us: dropoff[i].wrapping_sub(t),
                fare: fare[i],
                tip: tip[i],
                tolls: tolls[i],
                total: total[i],
            };
            let key = keys[i];
            let last_start = cfg.last_window_start(t);
            let mut accepted = false;
            for k in 0..per_record {
                let start = last_start - k * cfg.slide;
                if self.watermark.is_closed(start + cfg.size) {
                    // Older windows of this record end even earlier: closed too.
                    if accepted {
                        self.stats.late_window_assignments += (per_record - k) as u64;
                    }
                    break;
                }
                let w = self.window_mut(start);
                let acc = &mut w.accs[usize::from(key)];
                if acc.count == 0 {
                    w.touched.push(key);
                }
                acc.add(&values);
                accepted = true;
            }
            if accepted {
                self.stats.accepted += 1;
            } else {
                self.stats.late += 1;
                late.push(i);
            }
            self.watermark.observe(progress.map_or(t, |p| p[i]));
        }
        self.key_buf = key_buf;
        self.emit_closed(emitted);
    }

    /// End of input: emits every open window (an infinite watermark).
    pub fn flush(&mut self, emitted: &mut Vec<WindowResult>) {
        while let Some(w) = self.open.pop_front() {
            self.emit(w, emitted);
        }
    }

    /// The open window starting at `start`, created if needed.
    #[inline]
    fn window_mut(&mut self, start: Micros) -> &mut OpenWindow {
        // Records are mostly in order, so the match is almost always the newest window.
        let mut pos = self.open.len();
        while pos > 0 {
            let s = self.open[pos - 1].start;
            if s == start {
                return &mut self.open[pos - 1];
            }
            if s < start {
                break;
            }
            pos -= 1;
        }
        let w = match self.spare.pop() {
            Some(mut w) => {
                w.start = start;
                w
            }
            None => OpenWindow {
                start,
                accs: vec![Accumulator::default(); self.keys.key_count()].into_boxed_slice(),
                touched: Vec::new(),
            },
        };
        self.open.insert(pos, w);
        &mut self.open[pos]
    }

    fn emit_closed(&mut self, emitted: &mut Vec<WindowResult>) {
        while let Some(front) = self.open.front() {
            if !self.watermark.is_closed(front.start + self.config.size) {
                break;
            }
            if let Some(w) = self.open.pop_front() {
                self.emit(w, emitted);
            }
        }
    }

    fn emit(&mut self, mut w: OpenWindow, emitted: &mut Vec<WindowResult>) {
        w.touched.sort_unstable();
        let end = w.start + self.config.size;
        emitted.reserve(w.touched.len());
        for &key in &w.touched {
            let acc = &mut w.accs[usize::from(key)];
            let info = self.keys.info(key);
            emitted.push(WindowResult {
                group_by: self.config.group_by,
                key: info.key,
                key_name: info.name.clone(),
                zone: info.zone.clone(),
                borough: info.borough.clone(),
                window_start: w.start,
                window_end: end,
                count: acc.count,
                passengers: acc.passengers,
                max_passengers: acc.max_passengers(),
                sum_fare: acc.sum_fare,
                sum_tip: acc.sum_tip,
                sum_tolls: acc.sum_tolls,
                sum_total: acc.sum_total,
                avg_distance: acc.avg_distance(),
                avg_duration_s: acc.avg_duration_s(),
                avg_speed_mph: acc.avg_speed_mph(),
                avg_tip_ratio: acc.avg_tip_ratio(),
            });
            *acc = Accumulator::default();
        }
        self.stats.windows_emitted += w.touched.len() as u64;
        w.touched.clear();
        self.spare.push(w);
    }

    /// The engine's state: open windows, watermark and counters.
    pub fn snapshot(&self) -> EngineSnapshot {
        EngineSnapshot {
            version: SNAPSHOT_VERSION,
            config: self.config,
            max_event_time: self.watermark.max_event_time(),
            windows: self
                .open
                .iter()
                .map(|w| {
                    let mut keys = w.touched.clone();
                    keys.sort_unstable();
                    SnapshotWindow {
                        start: w.start,
                        entries: keys.iter().map(|&k| (k, w.accs[usize::from(k)])).collect(),
                    }
                })
                .collect(),
            stats: self.stats,
        }
    }

    /// Rebuilds an engine from [`WindowEngine::snapshot`]; continuing it gives
    /// the same results as the engine the snapshot was taken from.
    pub fn restore(snapshot: EngineSnapshot, zones: &ZoneLookup) -> Result<Self, WindowError> {
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(WindowError::SnapshotVersion {
                found: snapshot.version,
                expected: SNAPSHOT_VERSION,
            });
        }
        snapshot.config.check()?;
        let mut engine = Self::new(snapshot.config, zones);
        engine.watermark = Watermark::with_max_event_time(
            snapshot.config.allowed_lateness,
            snapshot.max_event_time,
        );
        engine.stats = snapshot.stats;
        let key_count = engine.keys.key_count();
        let mut previous = None;
        for sw in snapshot.windows {
            if sw.start.rem_euclid(snapshot.config.slide) != 0
                || previous.is_some_and(|p| p >= sw.start)
            {
                return Err(WindowError::SnapshotInvalid(format!(
                    "window start {} is unaligned or out of order",
                    sw.start
                )));
            }
            previous = Some(sw.start);
            let mut accs = vec![Accumulator::default(); key_count].into_boxed_slice();
            let mut touched = Vec::with_capacity(sw.entries.len());
            for (k, acc) in sw.entries {
                let slot = accs.get_mut(usize::from(k)).ok_or_else(|| {
                    WindowError::SnapshotInvalid(format!("key index {k} out of range"))
                })?;
                if acc.count == 0 || slot.count != 0 {
                    return Err(WindowError::SnapshotInvalid(format!(
                        "key index {k} is empty or repeated in window {}",
                        sw.start
                    )));
                }
                *slot = acc;
                touched.push(k);
            }
            engine.open.push_back(OpenWindow {
                start: sw.start,
                accs,
                touched,
            });
        }
        Ok(engine)
    }
}
