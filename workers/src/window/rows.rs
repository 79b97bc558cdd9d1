//! What the engine reads of a trip: the event time, the values it sums and
//! the key. [`TripBatch`] offers them as it is; [`WindowRows`] holds only
//! them, for a job that has to keep many rows before windowing them (`run`
//! merging its inputs by pickup keeps a fifth of a [`TripBatch`] per row).

use super::keys::KeyMapper;
use crate::trip::{Micros, TripBatch};

/// The columns the engine reads, all of the same length.
#[derive(Debug, Clone, Copy)]
pub struct WindowColumns<'a> {
    pub pickup: &'a [Micros],
    pub dropoff: &'a [Micros],
    pub passenger_count: &'a [i32],
    pub trip_distance: &'a [f64],
    pub fare_amount: &'a [f64],
    pub tip_amount: &'a [f64],
    pub tolls_amount: &'a [f64],
    pub total_amount: &'a [f64],
}

/// Rows the engine can window: their columns and each row's key.
pub trait WindowInput {
    fn columns(&self) -> WindowColumns<'_>;
    /// The key index of every row under `keys`, in `buf` when it has to be
    /// computed.
    fn keys<'a>(&'a self, keys: &KeyMapper, buf: &'a mut Vec<u16>) -> &'a [u16];
}

/// The engine's columns of any struct with fields of the same names.
macro_rules! window_columns {
    ($rows:expr) => {
        WindowColumns {
            pickup: &$rows.pickup,
            dropoff: &$rows.dropoff,
            passenger_count: &$rows.passenger_count,
            trip_distance: &$rows.trip_distance,
            fare_amount: &$rows.fare_amount,
            tip_amount: &$rows.tip_amount,
            tolls_amount: &$rows.tolls_amount,
            total_amount: &$rows.total_amount,
        }
    };
}

impl WindowInput for TripBatch {
    fn columns(&self) -> WindowColumns<'_> {
        window_columns!(self)
    }
    fn keys<'a>(&'a self, keys: &KeyMapper, buf: &'a mut Vec<u16>) -> &'a [u16] {
        keys.fill(self, buf);
        buf
    }
}

/// Trips reduced to what the engine reads, keyed already. Built with the
/// same grouping and zones as the engine that reads them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WindowRows {
    pub pickup: Vec<Micros>,
    pub dropoff: Vec<Micros>,
    pub passenger_count: Vec<i32>,
    pub trip_distance: Vec<f64>,
    pub fare_amount: Vec<f64>,
    pub tip_amount: Vec<f64>,
    pub tolls_amount: Vec<f64>,
    pub total_amount: Vec<f64>,
    /// Key index ([`KeyMapper`]).
    pub key: Vec<u16>,
}

impl WindowRows {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            pickup: Vec::with_capacity(n),
            dropoff: Vec::with_capacity(n),
            passenger_count: Vec::with_capacity(n),
            trip_distance: Vec::with_capacity(n),
            fare_amount: Vec::with_capacity(n),
            tip_amount: Vec::with_capacity(n),
            tolls_amount: Vec::with_capacity(n),
            total_amount: Vec::with_capacity(n),
            key: Vec::with_capacity(n),
        }
    }

    pub fn len(&self) -> usize {
        self.pickup.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pickup.is_empty()
    }

    /// Appends the rows of `batch` where `keep` is true, keyed by `keys`.
    pub fn extend_selected(
        &mut self,
        batch: &TripBatch,
        keep: &[bool],
        keys: &KeyMapper,
        buf: &mut Vec<u16>,
    ) {
        keys.fill(batch, buf);
        fn pick<T: Copy>(dst: &mut Vec<T>, src: &[T], keep: &[bool]) {
            dst.extend(src.iter().zip(keep).filter(|(_, k)| **k).map(|(v, _)| *v));
        }
        pick(&mut self.pickup, &batch.pickup, keep);
        pick(&mut self.dropoff, &batch.dropoff, keep);
        pick(&mut self.passenger_count, &batch.passenger_count, keep);
        pick(&mut self.trip_distance, &batch.trip_distance, keep);
        pick(&mut self.fare_amount, &batch.fare_amount, keep);
        pick(&mut self.tip_amount, &batch.tip_amount, keep);
        pick(&mut self.tolls_amount, &batch.tolls_amount, keep);
        pick(&mut self.total_amount, &batch.total_amount, keep);
        pick(&mut self.key, buf.as_slice(), keep);
    }

    /// Reorders the rows: row `k` becomes the row at the `k`-th position of
    /// `order`, a permutation. One column is copied at a time, so it takes
    /// one column's memory more, not another batch's.
    pub fn permute(&mut self, order: impl Iterator<Item = usize> + Clone) {
        fn gather<T: Copy>(column: &mut Vec<T>, order: impl Iterator<Item = usize>) {
            let gathered: Vec<T> = order.map(|i| column[i]).collect();
            *column = gathered;
        }
        gather(&mut self.pickup, order.clone());
        gather(&mut self.dropoff, order.clone());
        gather(&mut self.passenger_count, order.clone());
        gather(&mut self.trip_distance, order.clone());
        gather(&mut self.fare_amount, order.clone());
        gather(&mut self.tip_amount, order.clone());
        gather(&mut self.tolls_amount, order.clone());
        gather(&mut self.total_amount, order.clone());
        gather(&mut self.key, order);
    }

    /// Appends rows `from..to` of `other`.
    pub fn extend_range(&mut self, other: &WindowRows, from: usize, to: usize) {
        self.pickup.extend_from_slice(&other.pickup[from..to]);
        self.dropoff.extend_from_slice(&other.dropoff[from..to]);
        self.passenger_count
            .extend_from_slice(&other.passenger_count[from..to]);
        self.trip_distance
            .extend_from_slice(&other.trip_distance[from..to]);
        self.fare_amount
            .extend_from_slice(&other.fare_amount[from..to]);
        self.tip_amount
            .extend_from_slice(&other.tip_amount[from..to]);
        self.tolls_amount
            .extend_from_slice(&other.tolls_amount[from..to]);
        self.total_amount
            .extend_from_slice(&other.total_amount[from..to]);
        self.key.extend_from_slice(&other.key[from..to]);
    }

    /// Drops every row, keeping the allocations for reuse.
    pub fn clear(&mut self) {
        self.pickup.clear();
        self.dropoff.clear();
        self.passenger_count.clear();
        self.trip_distance.clear();
        self.fare_amount.clear();
        self.tip_amount.clear();
        self.tolls_amount.clear();
        self.total_amount.clear();
        self.key.clear();
    }
}

impl WindowInput for WindowRows {
    fn columns(&self) -> WindowColumns<'_> {
        window_columns!(self)
    }
    fn keys<'a>(&'a self, _keys: &KeyMapper, _buf: &'a mut Vec<u16>) -> &'a [u16] {
        &self.key
    }
}
