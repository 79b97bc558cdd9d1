//! Window results → the Cassandra results table. Upserts are idempotent by
//! primary key, so a batch written again after a crash changes nothing.

use crate::error::StageError;
use crate::flow::BatchSink;
use crate::io::cassandra::ResultStore;
use crate::metrics::Metrics;
use crate::window::WindowResult;

pub struct ResultsTable {
    store: ResultStore,
    metrics: Metrics,
    pub written: u64,
}

impl ResultsTable {
    pub fn new(store: ResultStore, metrics: &Metrics) -> Self {
        Self {
            store,
            metrics: metrics.clone(),
            written: 0,
        }
    }
}

impl BatchSink for ResultsTable {
    type Batch = Vec<WindowResult>;
    type Error = StageError;

    /// Upserts the batch with the store's bounded concurrency; returns once
    /// every upsert is acknowledged, so [`BatchSink::flush`] has nothing to wait for.
    async fn write(&mut self, batch: &mut Vec<WindowResult>) -> Result<(), StageError> {
        if batch.is_empty() {
            return Ok(());
        }
        let took = self.store.upsert_all(batch).await?;
        self.metrics.batch("upsert", took);
        self.metrics.records_out(batch.len() as u64);
        self.written += batch.len() as u64;
        batch.clear();
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), StageError> {
        Ok(())
    }
}
