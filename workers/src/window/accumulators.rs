//! Per-window, per-key running aggregates.

use serde::{Deserialize, Serialize};

use crate::trip::{MICROS_PER_SECOND, NULL_I32};

// Multiplications, not divisions, in the per-record path.
const SECONDS_PER_MICRO: f64 = 1.0 / MICROS_PER_SECOND as f64;
const HOURS_PER_MICRO: f64 = 1.0 / (3_600.0 * MICROS_PER_SECOND as f64);

/// Running sums for one (window, key). Averages are derived at emission, so
/// accumulators merge by addition and snapshot losslessly.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Accumulator {
    pub count: u64,
    /// Sum of non-null passenger counts.
    pub passengers: i64,
    /// [`NULL_I32`] while every passenger count seen is null.
    pub max_passengers: i32,
    pub sum_fare: f64,
    pub sum_tip: f64,
    pub sum_tolls: f64,
    pub sum_total: f64,
    pub sum_distance: f64,
    pub sum_duration_s: f64,
    /// Distance and hours over trips with a positive duration (average speed
    /// is their ratio, so zero-length trips cannot make it infinite).
    pub speed_distance: f64,
    pub speed_hours: f64,
    /// `tip / fare` summed over rows with `fare > 0`.
    pub tip_ratio_sum: f64,
    pub tip_ratio_count: u64,
}

impl Default for Accumulator {
    fn default() -> Self {
        Self {
            count: 0,
            passengers: 0,
            max_passengers: NULL_I32,
            sum_fare: 0.0,
            sum_tip: 0.0,
            sum_tolls: 0.0,
            sum_total: 0.0,
            sum_distance: 0.0,
            sum_duration_s: 0.0,
            speed_distance: 0.0,
            speed_hours: 0.0,
            tip_ratio_sum: 0.0,
            tip_ratio_count: 0,
        }
    }
}

/// The columns of one record that the aggregates read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordValues {
    pub passengers: i32,
    pub distance: f64,
    pub duration_us: i64,
    pub fare: f64,
    pub tip: f64,
    pub tolls: f64,
    pub total: f64,
}

impl Accumulator {
    #[inline(always)]
    pub(crate) fn add(&mut self, v: &RecordValues) {
        self.count += 1;
        if v.passengers != NULL_I32 {
            self.passengers += i64::from(v.passengers);
            self.max_passengers = self.max_passengers.max(v.passengers);
        }
        self.sum_fare += v.fare;
        self.sum_tip += v.tip;
        self.sum_tolls += v.tolls;
        self.sum_total += v.total;
        self.sum_distance += v.distance;
        self.sum_duration_s += v.duration_us as f64 * SECONDS_PER_MICRO;
        if v.duration_us > 0 {
            self.speed_distance += v.distance;
            self.speed_hours += v.duration_us as f64 * HOURS_PER_MICRO;
        }
        if v.fare > 0.0 {
            self.tip_ratio_sum += v.tip / v.fare;
            self.tip_ratio_count += 1;
        }
    }

    pub fn max_passengers(&self) -> Option<i32> {
        (self.max_passengers != NULL_I32).then_some(self.max_passengers)
    }

    pub fn avg_distance(&self) -> f64 {
        self.sum_distance / self.count.max(1) as f64
    }

    pub fn avg_duration_s(&self) -> f64 {
        self.sum_duration_s / self.count.max(1) as f64
    }

    /// Miles per hour over trips with a positive duration.
    pub fn avg_speed_mph(&self) -> Option<f64> {
        (self.speed_hours > 0.0).then(|| self.speed_distance / self.speed_hours)
    }

    /// Average `tip / fare` over rows with `fare > 0`.
    pub fn avg_tip_ratio(&self) -> Option<f64> {
        (self.tip_ratio_count > 0).then(|| self.tip_ratio_sum / self.tip_ratio_count as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_ignore_nulls_and_zero_fares() {
        let mut a = Accumulator::default();
        let v = |passengers, fare, tip, duration_us| RecordValues {
            passengers,
            distance: 2.0,
            duration_us,
            fare,
            tip,
            tolls: 0.0,
            total: fare + tip,
        };
        a.add(&v(NULL_I32, 10.0, 2.0, 600_000_000));
        assert_eq!(a.max_passengers(), None);
        a.add(&v(3, 0.0, 1.0, 0));
        a.add(&v(1, -5.0, 0.0, 1_200_000_000));
        assert_eq!(a.count, 3);
        assert_eq!(a.passengers, 4);
        assert_eq!(a.max_passengers(), Some(3));
        assert_eq!(a.avg_tip_ratio(), Some(0.2));
        assert_eq!(a.avg_distance(), 2.0);
        // 4 miles over 30 minutes.
        assert_eq!(a.avg_speed_mph(), Some(8.0));
        assert_eq!(a.sum_fare, 5.0);
    }
}
