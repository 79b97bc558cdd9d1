//! Outbox rows → trips stamped with the watermark as of their publication.
//!
//! Rows come in pickup order, bounded by every other source's next pickup,
//! so nothing published later is earlier than a row's pickup: a row's
//! stamp is the latest of its pickup, the stamps before it and the
//! watermark already sent. The watermark is this step's state; the outbox
//! commits it with the round.

use std::convert::Infallible;

use crate::dead_letter::DeadLetter;
use crate::flow::{Rebalance, Transform};
use crate::source::outbox::OutboxRows;
use crate::trip::Micros;

#[derive(Debug, Default)]
pub struct EventTimeStamps {
    watermark: Option<Micros>,
}

/// Outbox rows with their stamps.
#[derive(Debug)]
pub struct StampedRows {
    pub rows: OutboxRows,
    /// The stamp of each row, indexed like the round's outbox (only the
    /// rows of `rows.rows` are set).
    pub stamps: Vec<Micros>,
}

impl Transform for EventTimeStamps {
    type In = OutboxRows;
    type Out = Vec<StampedRows>;
    type State = Option<Micros>;
    type Error = Infallible;

    fn apply(
        &mut self,
        input: OutboxRows,
        out: &mut Vec<StampedRows>,
        _dead: &mut Vec<DeadLetter>,
    ) -> Result<(), Infallible> {
        let mut watermark = self.watermark.max(input.floor);
        let mut stamps = vec![0; input.rows.start];
        stamps.reserve(input.rows.len());
        for &pickup in &input.outbox.trips.pickup[input.rows.clone()] {
            let stamp = watermark.map_or(pickup, |w| w.max(pickup));
            watermark = Some(stamp);
            stamps.push(stamp);
        }
        self.watermark = watermark;
        out.push(StampedRows {
            rows: input,
            stamps,
        });
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<StampedRows>) -> Result<(), Infallible> {
        Ok(())
    }

    fn checkpoint(&mut self) -> Result<Option<Micros>, Infallible> {
        Ok(self.watermark)
    }

    fn rebalance(&mut self, _change: Rebalance<Option<Micros>>) -> Result<(), Infallible> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::io::postgres::OutboxBatch;

    fn rows(pickups: &[Micros], rows: std::ops::Range<usize>, floor: Option<Micros>) -> OutboxRows {
        let mut outbox = OutboxBatch::default();
        outbox.trips.pickup = pickups.to_vec();
        outbox.ids = (1..=pickups.len() as i64).collect();
        OutboxRows {
            outbox: Rc::new(outbox),
            rows,
            marker: None,
            floor,
            key_groups: 1,
        }
    }

    #[test]
    fn stamps_never_go_back_and_start_at_the_watermark_sent() {
        let mut t = EventTimeStamps::default();
        let mut out = Vec::new();
        t.apply(
            rows(&[10, 30, 20, 40], 0..4, Some(15)),
            &mut out,
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(out[0].stamps, [15, 30, 30, 40]);
        assert_eq!(t.checkpoint().unwrap(), Some(40));
        // A later part of a round goes on from the stamps before it.
        t.apply(
            rows(&[0, 0, 35, 50], 2..4, Some(15)),
            &mut out,
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(out[1].stamps[2..], [40, 50]);
        // A marker moves every later stamp up to it.
        t.apply(rows(&[60], 0..1, Some(70)), &mut out, &mut Vec::new())
            .unwrap();
        assert_eq!(out[2].stamps, [70]);
        assert_eq!(t.checkpoint().unwrap(), Some(70));
    }
}
