//! Window results → the local results: a table on stdout, or a CSV, JSON
//! lines or Parquet file ([`crate::output`]), written as they are emitted.

use crate::flow::BatchSink;
use crate::output::{OutputError, ResultWriter};
use crate::window::WindowResult;

pub struct ResultsFile {
    writer: Box<dyn ResultWriter>,
    /// Results written so far.
    pub written: u64,
}

impl ResultsFile {
    pub fn new(writer: Box<dyn ResultWriter>) -> Self {
        Self { writer, written: 0 }
    }

    /// Completes the output (a Parquet footer, the table, buffered lines).
    pub fn finish(&mut self) -> Result<(), OutputError> {
        self.writer.finish()
    }
}

impl BatchSink for ResultsFile {
    type Batch = Vec<WindowResult>;
    type Error = OutputError;

    async fn write(&mut self, batch: &mut Vec<WindowResult>) -> Result<(), OutputError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.writer.write(batch)?;
        self.written += batch.len() as u64;
        batch.clear();
        Ok(())
    }

    /// Nothing to wait for: `run` keeps no position to commit, and the file
    /// is only whole once [`ResultsFile::finish`] has written its end.
    async fn flush(&mut self) -> Result<(), OutputError> {
        Ok(())
    }
}
