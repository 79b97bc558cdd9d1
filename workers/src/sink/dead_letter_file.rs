//! Dead letters of a local run: a JSON-lines file (`--dead-letters`), none
//! kept (the job still counts them), or kept in memory for tests.

use std::convert::Infallible;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::dead_letter::DeadLetter;
use crate::flow::DeadLetterSink;

#[derive(Debug, thiserror::Error)]
#[error("dead letters {path}: {error}")]
pub struct DeadLetterFileError {
    pub path: String,
    #[source]
    pub error: std::io::Error,
}

/// One JSON object per dead letter, a line each.
pub struct DeadLetterFile {
    out: BufWriter<File>,
    path: String,
}

impl DeadLetterFile {
    pub fn create(path: &Path) -> Result<Self, DeadLetterFileError> {
        let path = path.display().to_string();
        match File::create(&path) {
            Ok(file) => Ok(Self {
                out: BufWriter::new(file),
                path,
            }),
            Err(error) => Err(DeadLetterFileError { path, error }),
        }
    }

    fn error(&self, error: std::io::Error) -> DeadLetterFileError {
        DeadLetterFileError {
            path: self.path.clone(),
            error,
        }
    }

    fn write_line(&mut self, letter: &DeadLetter) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, letter)?;
        self.out.write_all(b"\n")
    }
}

impl DeadLetterSink for DeadLetterFile {
    type Error = DeadLetterFileError;

    async fn send(&mut self, letters: &mut Vec<DeadLetter>) -> Result<(), DeadLetterFileError> {
        for letter in letters.drain(..) {
            self.write_line(&letter).map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), DeadLetterFileError> {
        self.out.flush().map_err(|e| self.error(e))
    }
}

/// Keeps none: without `--dead-letters` only their counts are reported.
#[derive(Debug, Default)]
pub struct DiscardDeadLetters;

impl DeadLetterSink for DiscardDeadLetters {
    type Error = Infallible;

    async fn send(&mut self, letters: &mut Vec<DeadLetter>) -> Result<(), Infallible> {
        letters.clear();
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// Keeps every dead letter in memory (tests, small runs).
#[derive(Debug, Default)]
pub struct CollectDeadLetters(pub Vec<DeadLetter>);

impl DeadLetterSink for CollectDeadLetters {
    type Error = Infallible;

    async fn send(&mut self, letters: &mut Vec<DeadLetter>) -> Result<(), Infallible> {
        self.0.append(letters);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}
