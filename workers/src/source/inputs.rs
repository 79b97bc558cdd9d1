//! Every input of a `run`, in the order given, as one [`BatchSource`]:
//! files, URLs (downloaded first, and deleted once read unless kept), then
//! the Open Data query if there is one. Each is read through a
//! [`SourceFeed`], a batch ahead of the job.
//!
//! A source that fails (a download, a file that cannot be opened, one cut
//! off part way) is logged and counted in [`Inputs::sources_failed`]; the
//! rows read before the failure still count, and the next input is read.
//! The input ends ([`Pull::End`]) only after the last source, so the windows
//! of the job close once, over everything it read.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::{error, info, warn};

use crate::flow::{BatchSource, Pull};
use crate::source::feed::{Feed, SourceFeed};
use crate::source::http::Downloader;
use crate::source::open_data::OpenDataPager;
use crate::source::spec::InputSpec;
use crate::source::{ReadBatch, SourceError, open_file};
use crate::trip::Dataset;
use crate::validate::Month;

/// Which month a source's rows are checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A file or URL: the month its name gives, else the one its first
    /// batch shows.
    File { month: Option<Month> },
    /// The Open Data query, whose rows span any months.
    OpenData,
}

/// A batch and the source it came from.
#[derive(Debug)]
pub struct InputBatch {
    /// The source's place among the inputs: every batch of one source has
    /// the same number, and a later source a larger one.
    pub input: usize,
    pub origin: Origin,
    pub batch: ReadBatch,
}

/// How URLs are fetched.
pub struct Downloads {
    pub downloader: Downloader,
    /// Keep downloaded files after reading them.
    pub keep: bool,
}

/// The source being read.
struct Reading {
    feed: SourceFeed,
    input: usize,
    origin: Origin,
    /// The downloaded file to delete once read.
    delete: Option<PathBuf>,
    bar: ProgressBar,
}

pub struct Inputs {
    pending: VecDeque<InputSpec>,
    open_data: Option<OpenDataPager>,
    downloads: Option<Downloads>,
    dataset: Dataset,
    progress: bool,
    reading: Option<Reading>,
    /// Sources started so far.
    started: usize,
    /// Sources read to their end.
    pub sources_ok: u64,
    /// One message per source that failed, naming it.
    pub sources_failed: Vec<String>,
}

impl Inputs {
    /// Files and URLs, read in this order; `dataset` is for files whose
    /// columns and name do not tell.
    pub fn new(specs: Vec<InputSpec>, dataset: Dataset) -> Self {
        Self {
            pending: specs.into(),
            open_data: None,
            downloads: None,
            dataset,
            progress: false,
            reading: None,
            started: 0,
            sources_ok: 0,
            sources_failed: Vec::new(),
        }
    }

    /// How URLs are fetched; without it, a URL fails as a source.
    pub fn with_downloads(mut self, downloads: Downloads) -> Self {
        self.downloads = Some(downloads);
        self
    }

    /// An Open Data query, read after every file and URL.
    pub fn with_open_data(mut self, pager: OpenDataPager) -> Self {
        self.open_data = Some(pager);
        self
    }

    /// A progress bar on stderr for each source.
    pub fn with_progress(mut self, progress: bool) -> Self {
        self.progress = progress;
        self
    }

    fn failed(&mut self, error: &str) {
        error!(error = %error, "source failed; continuing with the next one");
        self.sources_failed.push(error.to_owned());
    }

    /// Downloads and opens the next file or URL; a failure is recorded and
    /// leaves nothing being read.
    #[tracing::instrument(skip_all, fields(input = %spec.name()))]
    async fn start(&mut self, spec: InputSpec) {
        let name = spec.name();
        let (path, delete) = match spec {
            InputSpec::Path(path) => (path, None),
            InputSpec::Url(url) => match self.download(&url).await {
                Ok(fetched) => fetched,
                Err(e) => {
                    self.failed(&e.to_string());
                    return;
                }
            },
        };
        match open_file(&path, &name, self.dataset) {
            Ok(reader) => {
                let bar = progress_bar(self.progress, reader.name(), reader.total_rows());
                self.begin(
                    Feed::Reader(reader),
                    Origin::File {
                        month: Month::from_name(&name),
                    },
                    delete,
                    bar,
                );
            }
            Err(e) => {
                self.failed(&e.to_string());
                remove_download(delete);
            }
        }
    }

    /// The local copy of `url`, and whether to delete it once read.
    async fn download(&self, url: &str) -> Result<(PathBuf, Option<PathBuf>), SourceError> {
        let Some(downloads) = &self.downloads else {
            return Err(SourceError::Http {
                name: url.to_owned(),
                message: "no HTTP client was set up for this run".into(),
            });
        };
        info!(url, "downloading");
        let path = downloads.downloader.fetch(url).await?;
        let delete = (!downloads.keep).then(|| path.clone());
        Ok((path, delete))
    }

    fn begin(&mut self, feed: Feed, origin: Origin, delete: Option<PathBuf>, bar: ProgressBar) {
        self.reading = Some(Reading {
            feed: SourceFeed::spawn(feed),
            input: self.started,
            origin,
            delete,
            bar,
        });
        self.started += 1;
    }

    /// The source being read ended, at its end or at a failure.
    fn ended(&mut self, reading: Reading) {
        match reading.feed.failure() {
            Some(failure) => self.failed(failure),
            None => self.sources_ok += 1,
        }
        remove_download(reading.delete);
        reading.bar.finish_and_clear();
    }
}

impl BatchSource for Inputs {
    type Batch = InputBatch;
    type State = ();
    type Error = Infallible;

    /// The next batch of the current source, starting the next source when
    /// one ends. `run` is never shut down part way (it has no position to
    /// keep), so a pull is not cancelled half way through a download.
    async fn pull(&mut self) -> Result<Pull<InputBatch, ()>, Infallible> {
        loop {
            if let Some(reading) = &mut self.reading {
                match reading.feed.pull().await? {
                    Pull::Batch { batch, .. } => {
                        reading
                            .bar
                            .inc((batch.trips.len() + batch.rejects.len()) as u64);
                        return Ok(Pull::Batch {
                            batch: InputBatch {
                                input: reading.input,
                                origin: reading.origin,
                                batch,
                            },
                            barrier: false,
                        });
                    }
                    Pull::Idle | Pull::Rebalance(_) => return Ok(Pull::Idle),
                    Pull::End => {
                        if let Some(reading) = self.reading.take() {
                            self.ended(reading);
                        }
                    }
                }
            } else if let Some(spec) = self.pending.pop_front() {
                self.start(spec).await;
            } else if let Some(pager) = self.open_data.take() {
                let bar = progress_bar(self.progress, pager.name(), None);
                self.begin(Feed::OpenData(pager), Origin::OpenData, None, bar);
            } else {
                return Ok(Pull::End);
            }
        }
    }

    /// Nothing to keep: a local run reads its inputs from their start.
    async fn commit(&mut self, (): ()) -> Result<(), Infallible> {
        Ok(())
    }
}

fn remove_download(path: Option<PathBuf>) {
    if let Some(path) = path
        && let Err(e) = std::fs::remove_file(&path)
    {
        warn!(path = %path.display(), error = %e, "cannot delete download");
    }
}

/// A bar of rows read (a spinner when the total is not known up front);
/// hidden unless asked for.
fn progress_bar(show: bool, name: &str, total: Option<u64>) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {human_pos}/{human_len} rows, {elapsed} elapsed, eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        ),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template("{spinner} {msg} {human_pos} rows, {elapsed} elapsed")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    let short = name.rsplit('/').next().unwrap_or(name).to_string();
    bar.set_message(short);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
