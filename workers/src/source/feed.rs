//! One source (a file or an Open Data query) as a [`BatchSource`]: its
//! batches are decoded on a thread of their own (or paged from the API), a
//! couple ahead of the stage, so reading overlaps with what the stage does
//! with the previous batch.
//!
//! A source that cannot be read any further (truncated, corrupt, a decoder
//! panic on bad bytes, a reader that died) ends its input early with the
//! failure kept in [`SourceFeed::failure`]: the rows read before it still
//! count, and the stage goes on with its other sources.

use std::convert::Infallible;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::flow::{BatchSource, Pull};
use crate::source::open_data::OpenDataPager;
use crate::source::{ReadBatch, SourceError, TripReader, next_batch_guarded};

/// Where a source's batches come from.
pub enum Feed {
    /// An opened file.
    Reader(Box<dyn TripReader>),
    /// An Open Data query, paged.
    OpenData(OpenDataPager),
}

/// Batches decoded ahead: one being used, this many waiting, and the next
/// being decoded. A batch of every column is about 10 MB, and decoding is
/// the slower side, so more would only hold memory (a second one waiting
/// cost `run` 10 MB more peak RSS, no time).
const AHEAD: usize = 1;

pub struct SourceFeed {
    name: String,
    rx: mpsc::Receiver<Result<ReadBatch, SourceError>>,
    reader: Option<JoinHandle<()>>,
    failure: Option<String>,
    /// Rows handed out, parsed or not.
    pub rows: u64,
}

impl SourceFeed {
    /// Starts reading `feed`.
    pub fn spawn(feed: Feed) -> Self {
        let (tx, rx) = mpsc::channel(AHEAD);
        let (name, reader) = match feed {
            Feed::Reader(mut reader) => (
                reader.name().to_owned(),
                tokio::task::spawn_blocking(move || {
                    loop {
                        // A decoder bug on corrupt input costs this source only.
                        let item = next_batch_guarded(reader.as_mut()).transpose();
                        let last = !matches!(item, Some(Ok(_)));
                        if let Some(item) = item
                            && tx.blocking_send(item).is_err()
                        {
                            return;
                        }
                        if last {
                            return;
                        }
                    }
                }),
            ),
            Feed::OpenData(mut pager) => (
                pager.name().to_owned(),
                tokio::spawn(async move {
                    loop {
                        let item = pager.next_batch().await.transpose();
                        let last = !matches!(item, Some(Ok(_)));
                        if let Some(item) = item
                            && tx.send(item).await.is_err()
                        {
                            return;
                        }
                        if last {
                            return;
                        }
                    }
                }),
            ),
        };
        Self {
            name,
            rx,
            reader: Some(reader),
            failure: None,
            rows: 0,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Why the source ended before its end, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }
}

impl BatchSource for SourceFeed {
    type Batch = ReadBatch;
    type State = ();
    type Error = Infallible;

    async fn pull(&mut self) -> Result<Pull<ReadBatch, ()>, Infallible> {
        match self.rx.recv().await {
            Some(Ok(batch)) => {
                self.rows += (batch.trips.len() + batch.rejects.len()) as u64;
                Ok(Pull::Batch {
                    batch,
                    barrier: false,
                })
            }
            Some(Err(e)) => {
                self.failure = Some(e.to_string());
                Ok(Pull::End)
            }
            None => {
                // A reader that died (a panic outside the decoder, a
                // cancelled task) ends the channel just as a complete source
                // does: only its join result tells them apart, and a partly
                // read source must not pass for a complete one.
                if let Some(reader) = self.reader.take()
                    && let Err(e) = reader.await
                    && self.failure.is_none()
                {
                    self.failure = Some(format!("{}: reader stopped: {e}", self.name));
                }
                Ok(Pull::End)
            }
        }
    }

    /// Nothing to do: a file is re-read from its start, and the sink that
    /// needs to resume (the landing table) records progress in the same
    /// transaction as the rows.
    async fn commit(&mut self, (): ()) -> Result<(), Infallible> {
        Ok(())
    }
}
