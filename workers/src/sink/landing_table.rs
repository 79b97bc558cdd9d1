//! Rows to land → the PostgreSQL landing table (`ingest`). Each batch is one
//! transaction holding its rows, its dead letters and the source's new
//! progress ([`PgStore::prepare`]), so a crash leaves a source landed up to
//! a batch boundary and a restart carries on from there.
//!
//! Two batches are in flight on two connections: while one is being copied
//! in, the one before it commits, so both cores serve the landing; they
//! commit in the order they were written, which keeps the committed
//! progress a prefix of the source.
//!
//! The dead letters reach the table through [`LandingDeadLetters`], the
//! stage's [`DeadLetterSink`]: it only hands them over to the
//! [`LandingTable`], which lands them in the transaction of the batch they
//! came with (the driver sends a batch's dead letters before writing it).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::task::JoinHandle;

use crate::dead_letter::{DeadLetter, Reason};
use crate::error::StageError;
use crate::flow::{BatchSink, DeadLetterSink};
use crate::io::postgres::{PgError, PgStore, PreparedLanding};
use crate::metrics::Metrics;
use crate::transform::landing_checks::LandingBatch;
use crate::trip::SourceRef;

/// A dead letter as the landing store keeps it: where, why, and the detail
/// with the offending field in front.
type Rejected = (SourceRef, Reason, String);

/// Dead letters sent and not yet taken into a batch's transaction.
type Pending = Arc<Mutex<Vec<Rejected>>>;

/// What a source's landing did, counted as its batches commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LandingCounts {
    pub read: u64,
    pub inserted: u64,
    pub duplicates: u64,
    pub dead_letters: u64,
}

/// One source's batches → the landing table.
pub struct LandingTable {
    store: PgStore,
    source: String,
    pending: Pending,
    in_flight: Option<InFlight>,
    metrics: Metrics,
    pub counts: LandingCounts,
}

/// A batch being written on its own connection, not committed yet.
struct InFlight {
    landing: JoinHandle<Result<PreparedLanding, PgError>>,
    read: u64,
    dead: Vec<Reason>,
    started: Instant,
}

impl LandingTable {
    /// Lands the batches of `source`; its dead letters come through the
    /// returned [`LandingDeadLetters`].
    pub fn new(store: PgStore, source: &str, metrics: &Metrics) -> (Self, LandingDeadLetters) {
        let pending = Pending::default();
        let table = Self {
            store,
            source: source.to_owned(),
            pending: pending.clone(),
            in_flight: None,
            metrics: metrics.clone(),
            counts: LandingCounts::default(),
        };
        (table, LandingDeadLetters { pending })
    }

    /// Waits for `batch` to be written, commits it and counts it.
    async fn settle(&mut self, batch: InFlight) -> Result<(), StageError> {
        let prepared = batch.landing.await.map_err(|e| StageError::Other {
            what: "landing task",
            detail: e.to_string(),
        })??;
        let landed = prepared.commit().await?;
        for reason in &batch.dead {
            self.metrics.dead_letter(*reason);
        }
        self.metrics.records_in(batch.read);
        self.metrics.records_out(landed.inserted);
        self.metrics.batch("land", batch.started.elapsed());
        let c = &mut self.counts;
        c.read += batch.read;
        c.inserted += landed.inserted;
        c.duplicates += landed.duplicates;
        c.dead_letters += batch.dead.len() as u64;
        Ok(())
    }
}

impl BatchSink for LandingTable {
    type Batch = LandingBatch;
    type Error = StageError;

    /// Starts landing `batch` with the dead letters sent since the last
    /// write, then commits the batch before it.
    async fn write(&mut self, batch: &mut LandingBatch) -> Result<(), StageError> {
        let dead =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        // The driver writes once more at the end of the input, with nothing.
        if batch.read == 0 && dead.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let trips = std::mem::take(&mut batch.trips);
        let read = std::mem::take(&mut batch.read);
        let next_row = batch.next_row;
        let reasons = dead.iter().map(|d| d.1).collect();
        let landing = {
            let (store, source) = (self.store.clone(), self.source.clone());
            tokio::spawn(async move { store.prepare(&source, &trips, &dead, next_row).await })
        };
        let batch = InFlight {
            landing,
            read,
            dead: reasons,
            started,
        };
        if let Some(previous) = self.in_flight.replace(batch) {
            self.settle(previous).await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), StageError> {
        if let Some(last) = self.in_flight.take() {
            self.settle(last).await?;
        }
        Ok(())
    }
}

/// The landing's [`DeadLetterSink`]: letters wait here for the
/// [`LandingTable`] to land them with their batch.
pub struct LandingDeadLetters {
    pending: Pending,
}

impl DeadLetterSink for LandingDeadLetters {
    type Error = StageError;

    async fn send(&mut self, letters: &mut Vec<DeadLetter>) -> Result<(), StageError> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.extend(letters.drain(..).map(|d| {
            let detail = match &d.field {
                Some(f) => format!("{f}: {}", d.detail),
                None => d.detail,
            };
            (d.source, d.reason, detail)
        }));
        Ok(())
    }

    /// The letters are acknowledged with their batch, by the table's flush,
    /// which the driver runs first; any still here had no batch to go with
    /// and would be lost.
    async fn flush(&mut self) -> Result<(), StageError> {
        let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.is_empty() {
            Ok(())
        } else {
            Err(StageError::Other {
                what: "landing dead letters",
                detail: format!("{} sent with no batch to land them in", pending.len()),
            })
        }
    }
}
