//! The per-record event-time watermark.

use serde::{Deserialize, Serialize};

use crate::trip::Micros;

/// Tracks the maximum event time seen and derives the watermark from it.
///
/// The watermark only moves forward: it is `max event time − allowed lateness`,
/// and a window `[start, end)` is closed once the watermark is `>= end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    allowed_lateness: Micros,
    /// `i64::MIN` until the first record.
    max_event_time: Micros,
}

impl Watermark {
    pub fn new(allowed_lateness: Micros) -> Self {
        Self {
            allowed_lateness,
            max_event_time: Micros::MIN,
        }
    }

    /// Restores a watermark from a snapshot.
    pub fn with_max_event_time(allowed_lateness: Micros, max_event_time: Option<Micros>) -> Self {
        Self {
            allowed_lateness,
            max_event_time: max_event_time.unwrap_or(Micros::MIN),
        }
    }

    /// Current watermark; `Micros::MIN` before any record.
    #[inline]
    pub fn current(&self) -> Micros {
        self.max_event_time.saturating_sub(self.allowed_lateness)
    }

    /// Whether a window ending at `end` is closed.
    #[inline]
    pub fn is_closed(&self, end: Micros) -> bool {
        end <= self.current()
    }

    /// Feeds one event time.
    #[inline]
    pub fn observe(&mut self, event_time: Micros) {
        if event_time > self.max_event_time {
            self.max_event_time = event_time;
        }
    }

    /// Maximum event time seen so far.
    pub fn max_event_time(&self) -> Option<Micros> {
        (self.max_event_time != Micros::MIN).then_some(self.max_event_time)
    }

    /// The watermark, if any record has been seen.
    pub fn get(&self) -> Option<Micros> {
        self.max_event_time().map(|_| self.current())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_moves_forward() {
        let mut w = Watermark::new(10);
        assert_eq!(w.get(), None);
        assert!(!w.is_closed(i64::MIN + 1));
        w.observe(100);
        assert_eq!(w.get(), Some(90));
        w.observe(50);
        assert_eq!(w.get(), Some(90));
        assert!(w.is_closed(90));
        assert!(!w.is_closed(91));
    }
}
