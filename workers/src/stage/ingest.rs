//! The `ingest` stage: source files → validation → PostgreSQL landing table.
//!
//! Each source is read with the data-plane readers on a blocking thread while
//! the previous batch is being copied in, so reading and landing overlap.
//! Every batch lands in one transaction together with the source's progress
//! (see [`crate::io::postgres`]): a restart skips completed sources and skips
//! the rows of a partly landed one that are already in, and the store skips
//! anything below a source's recorded progress again under the lock of its
//! progress row, so nothing lands twice. Rows that fail parsing
//! or validation land in the dead-letter table with their reason.
//!
//! A source that cannot be read any further (truncated, corrupt) stops with
//! an error naming it; the others are still landed, and the stage reports
//! the failure at the end.

use std::path::{Path, PathBuf};
use std::time::Instant;

use tokio::sync::mpsc;

use crate::config::Secret;
use crate::dead_letter::{DeadLetter, Reason};
use crate::error::StageError;
use crate::io::postgres::{PgError, PgStore, PreparedLanding};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::source::http::{Downloader, FetchOptions};
use crate::source::open_data::{OpenDataPager, OpenDataQuery};
use crate::source::spec::{InputSpec, expand_input};
use crate::source::{ReadBatch, SourceError, next_batch_guarded, open_file};
use crate::stage::fetch_args::FetchArgs;
use crate::stage::runtime::{CommonArgs, StageRuntime};
use crate::trip::{Dataset, SourceRef};
use crate::validate::{DEFAULT_MONTH_TOLERANCE_DAYS, Validator};
use taxistream_crds::worker_config::OpenDataConfig;

const STAGE: &str = "ingest";

/// `taxistream-worker ingest`
#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Inputs (files, directories of them, or `http(s)` URLs) to land
    /// instead of the configured ones.
    #[arg(long = "input")]
    pub inputs: Vec<String>,
    #[command(flatten)]
    pub fetch: FetchArgs,
}

/// What an ingest run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestStats {
    pub sources: u64,
    pub skipped_sources: u64,
    pub read: u64,
    pub inserted: u64,
    pub duplicates: u64,
    pub dead_letters: u64,
    /// Sources that stopped with an error, with the error.
    pub failed: Vec<String>,
}

fn rejected(letters: &[DeadLetter], from_row: u64) -> Vec<(SourceRef, Reason, String)> {
    letters
        .iter()
        .filter(|d| d.source.row >= from_row)
        .map(|d| {
            let detail = match &d.field {
                Some(f) => format!("{f}: {}", d.detail),
                None => d.detail.clone(),
            };
            (d.source.clone(), d.reason, detail)
        })
        .collect()
}

/// Where a source's batches come from.
enum Feed {
    File(PathBuf),
    OpenData(OpenDataPager),
}

type Batches = mpsc::Receiver<Result<ReadBatch, SourceError>>;

impl Feed {
    /// Starts producing batches a little ahead of the landing, so reading
    /// (CPU-bound decoding on a blocking thread, or API paging) overlaps
    /// with the `COPY` of the previous batch.
    fn spawn(self, name: &str, dataset: Dataset) -> (Batches, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel::<Result<ReadBatch, SourceError>>(2);
        let name = name.to_owned();
        let handle = match self {
            Feed::File(path) => tokio::task::spawn_blocking(move || {
                let mut reader = match open_file(&path, &name, dataset) {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                };
                loop {
                    // As in `run`: a decoder bug on corrupt input costs this source only.
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
            Feed::OpenData(mut pager) => tokio::spawn(async move {
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
        };
        (rx, handle)
    }
}

/// A batch being written on its own connection, committed once the one
/// before it is: with two in flight, both cores serve the landing.
struct InFlight {
    landing: tokio::task::JoinHandle<Result<PreparedLanding, PgError>>,
    read: u64,
    dead: Vec<Reason>,
    started: Instant,
}

impl InFlight {
    /// Waits for the batch to be written, commits it and counts it.
    async fn settle(self, metrics: &Metrics, stats: &mut IngestStats) -> Result<(), StageError> {
        let prepared = self.landing.await.map_err(|e| StageError::Other {
            what: "landing task",
            detail: e.to_string(),
        })??;
        let landed = prepared.commit().await?;
        for reason in &self.dead {
            metrics.dead_letter(*reason);
        }
        metrics.records_in(self.read);
        metrics.records_out(landed.inserted);
        metrics.batch("land", self.started.elapsed());
        stats.read += self.read;
        stats.inserted += landed.inserted;
        stats.duplicates += landed.duplicates;
        stats.dead_letters += self.dead.len() as u64;
        Ok(())
    }
}

/// Lands one source; returns an error only for store failures (a broken
/// source is recorded in `stats.failed`).
#[allow(clippy::too_many_arguments)]
async fn ingest_source(
    store: &PgStore,
    input: &str,
    feed: Feed,
    mut validator: Validator,
    dataset: Dataset,
    metrics: &Metrics,
    shutdown: &Shutdown,
    stats: &mut IngestStats,
) -> Result<(), StageError> {
    let from_row = store.progress(input).await?.map_or(0, |(next, _)| next);
    if from_row > 0 {
        tracing::info!(source = input, from_row, "resuming");
    }
    let (mut rx, reader) = feed.spawn(input, dataset);
    let mut valid = Vec::new();
    let mut next_row = from_row;
    let mut failure = None;
    let mut in_flight: Option<InFlight> = None;
    while let Some(item) = rx.recv().await {
        let batch = match item {
            Ok(b) => b,
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        };
        let started = Instant::now();
        // Rows the reader could not parse, plus the parsed ones (valid or not).
        let read = batch.trips.len() as u64 + batch.rejects.len() as u64;
        let mut letters = batch.rejects;
        let mut trips = batch.trips;
        validator.check(&trips, &mut valid, |d| letters.push(d));
        let dead = rejected(&letters, from_row);
        let batch_end = trips
            .row
            .iter()
            .chain(letters.iter().map(|d| &d.source.row))
            .max()
            .map_or(next_row, |r| r + 1);
        next_row = next_row.max(batch_end);
        for (keep, row) in valid.iter_mut().zip(&trips.row) {
            *keep &= *row >= from_row;
        }
        trips.retain(&valid);
        let landing = {
            let (store, input) = (store.clone(), input.to_owned());
            let dead = dead.clone();
            tokio::spawn(async move { store.prepare(&input, &trips, &dead, next_row).await })
        };
        let batch = InFlight {
            landing,
            read,
            dead: dead.iter().map(|d| d.1).collect(),
            started,
        };
        // The previous batch commits while this one is being written.
        if let Some(previous) = in_flight.replace(batch) {
            previous.settle(metrics, stats).await?;
        }
        if shutdown.requested() {
            tracing::info!(
                source = input,
                next_row,
                "shutdown: stopping after a landed batch"
            );
            break;
        }
    }
    if let Some(last) = in_flight.take() {
        last.settle(metrics, stats).await?;
    }
    drop(rx);
    // A reader that died (a panic outside the decoder, a cancelled task)
    // ends the channel just as a complete source does: only its join
    // result tells them apart, and a partly read source must not be marked
    // complete.
    if let Err(e) = reader.await
        && failure.is_none()
        && !shutdown.requested()
    {
        failure = Some(format!("{input}: reader stopped: {e}"));
    }
    match failure {
        Some(e) => {
            tracing::error!(source = input, error = %e, "source failed; landed rows are kept and a restart resumes after them");
            metrics.dead_letter(Reason::SourceError);
            stats.failed.push(e);
        }
        None if !shutdown.requested() => {
            store.complete(input, next_row).await?;
            stats.sources += 1;
        }
        None => {}
    }
    Ok(())
}

/// One ingest run over a list of inputs.
struct Landing<'a> {
    store: &'a PgStore,
    dataset: Dataset,
    download_dir: &'a Path,
    fetch: FetchOptions,
    downloader: Option<Downloader>,
    metrics: &'a Metrics,
    shutdown: &'a Shutdown,
    stats: IngestStats,
}

impl Landing<'_> {
    /// Claims `input` (waiting for another replica's claim with `wait`),
    /// downloads it if it is a URL, and lands it unless it is complete.
    /// Returns false when another replica holds it and `wait` is false.
    async fn claim_and_land(&mut self, input: &str, wait: bool) -> Result<bool, StageError> {
        let spec = InputSpec::parse(input);
        let name = spec.name();
        let Some(_claim) = self.store.claim_source(&name, wait).await? else {
            tracing::info!(source = %name, "another replica is landing it; coming back later");
            return Ok(false);
        };
        if self
            .store
            .progress(&name)
            .await?
            .is_some_and(|(_, done)| done)
        {
            tracing::info!(source = %name, "already landed; skipping");
            self.stats.skipped_sources += 1;
            return Ok(true);
        }
        let path = match spec {
            InputSpec::Path(p) => p,
            InputSpec::Url(url) => {
                let dl = match &mut self.downloader {
                    Some(d) => d,
                    None => {
                        let client = crate::source::http::client_with(self.fetch.timeouts)
                            .map_err(|e| StageError::Other {
                                what: "http client",
                                detail: e.to_string(),
                            })?;
                        self.downloader.insert(Downloader::new(
                            client,
                            self.download_dir.to_owned(),
                            self.fetch.retry,
                        ))
                    }
                };
                match dl.fetch(&url).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(source = %url, error = %e, "download failed");
                        self.metrics.dead_letter(Reason::SourceError);
                        self.stats.failed.push(e.to_string());
                        return Ok(true);
                    }
                }
            }
        };
        ingest_source(
            self.store,
            &name,
            Feed::File(path),
            Validator::for_file(&name, DEFAULT_MONTH_TOLERANCE_DAYS),
            self.dataset,
            self.metrics,
            self.shutdown,
            &mut self.stats,
        )
        .await?;
        Ok(true)
    }
}

impl Landing<'_> {
    /// Pages through the Open Data API into the landing table. A restart
    /// pages from the start again and lands only the rows past its progress.
    async fn land_open_data(&mut self, cfg: &OpenDataConfig) -> Result<(), StageError> {
        let mut query =
            OpenDataQuery::new(&format!("{}/{}", cfg.domain, cfg.dataset_id), cfg.page_size);
        query.where_clause = cfg.r#where.clone();
        if let Some(file) = &cfg.app_token_file {
            query.app_token = Some(Secret::from_file(Path::new(file))?.expose().to_owned());
        }
        let name = query.source_name();
        let Some(_claim) = self.store.claim_source(&name, true).await? else {
            return Ok(());
        };
        if self
            .store
            .progress(&name)
            .await?
            .is_some_and(|(_, done)| done)
        {
            tracing::info!(source = %name, "already landed; skipping");
            self.stats.skipped_sources += 1;
            return Ok(());
        }
        let client = crate::source::http::client_with(self.fetch.timeouts).map_err(|e| {
            StageError::Other {
                what: "http client",
                detail: e.to_string(),
            }
        })?;
        let pager = OpenDataPager::new(client, query, self.fetch.retry, self.dataset);
        ingest_source(
            self.store,
            &name,
            Feed::OpenData(pager),
            Validator::for_open_data(DEFAULT_MONTH_TOLERANCE_DAYS),
            self.dataset,
            self.metrics,
            self.shutdown,
            &mut self.stats,
        )
        .await
    }
}

/// Lands every input in order; directories are expanded as `run` does, URLs
/// are downloaded first (with `fetch`'s retries and timeouts). Replicas
/// share the work: each source is claimed by one of them at a time, and a
/// replica that finds a source claimed comes back to it at the end (by then
/// it is usually complete and skipped).
#[allow(clippy::too_many_arguments)]
pub async fn ingest(
    store: &PgStore,
    inputs: &[String],
    open_data: Option<&OpenDataConfig>,
    dataset: Dataset,
    download_dir: &Path,
    fetch: FetchOptions,
    metrics: &Metrics,
    shutdown: &Shutdown,
) -> Result<IngestStats, StageError> {
    let mut run = Landing {
        store,
        dataset,
        download_dir,
        fetch,
        downloader: None,
        metrics,
        shutdown,
        stats: IngestStats::default(),
    };
    let mut expanded = Vec::new();
    for input in inputs {
        match expand_input(input) {
            Ok(specs) => expanded.extend(specs.iter().map(InputSpec::name)),
            Err(e) => {
                tracing::error!(input = %input, error = %e, "input failed");
                metrics.dead_letter(Reason::SourceError);
                run.stats.failed.push(e.to_string());
            }
        }
    }
    let mut deferred = Vec::new();
    for input in &expanded {
        if shutdown.requested() {
            break;
        }
        if !run.claim_and_land(input, false).await? {
            deferred.push(input);
        }
    }
    for input in deferred {
        if shutdown.requested() {
            break;
        }
        run.claim_and_land(input, true).await?;
    }
    if let Some(cfg) = open_data
        && !shutdown.requested()
    {
        run.land_open_data(cfg).await?;
    }
    Ok(run.stats)
}

/// Entry point of `taxistream-worker ingest`.
pub async fn main(args: IngestArgs) -> Result<(), StageError> {
    let rt = StageRuntime::start(STAGE, &args.common).await?;
    let w = &rt.config.worker;
    let store = rt.landing_store(2).await?;
    rt.ready.set(true);
    let inputs = if args.inputs.is_empty() {
        w.source.inputs.clone()
    } else {
        args.inputs.clone()
    };
    let stats = ingest(
        &store,
        &inputs,
        if args.inputs.is_empty() {
            w.source.open_data.as_ref()
        } else {
            None
        },
        w.source.dataset,
        &args.fetch.download_dir,
        args.fetch.options(),
        &rt.metrics,
        &rt.shutdown,
    )
    .await?;
    tracing::info!(
        sources = stats.sources,
        skipped = stats.skipped_sources,
        read = stats.read,
        inserted = stats.inserted,
        duplicates = stats.duplicates,
        dead_letters = stats.dead_letters,
        failed = stats.failed.len(),
        "ingest finished"
    );
    if !stats.failed.is_empty() {
        return Err(StageError::Other {
            what: "ingest",
            detail: stats.failed.join("; "),
        });
    }
    if !args.common.exit_when_idle {
        // A Deployment's pod must stay up (and ready) once its work is done.
        rt.shutdown.wait().await;
    }
    Ok(())
}
