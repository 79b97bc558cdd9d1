//! The `ingest` stage: source files, URLs or an Open Data query → validation
//! → PostgreSQL landing table. Per source: a [`SourceFeed`] reads it ahead
//! on a thread of its own, [`LandingChecks`] validates each batch and keeps
//! what lies past the source's recorded progress, and a [`LandingTable`]
//! lands it, rows, dead letters and progress in one transaction per batch
//! (see [`crate::sink::landing_table`]). A restart skips completed sources
//! and the landed rows of a partly landed one, so nothing lands twice.
//!
//! Replicas share the sources through claims ([`PgStore::claim_source`]).
//! A source that cannot be read any further (truncated, corrupt) stops with
//! an error naming it; the others are still landed, and the stage reports
//! the failure at the end.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::Instrument;

use crate::config::Secret;
use crate::dead_letter::Reason;
use crate::error::StageError;
use crate::flow::{self, DriveOptions, Stopped};
use crate::io::postgres::PgStore;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::sink::landing_table::{LandingCounts, LandingTable};
use crate::source::feed::{Feed, SourceFeed};
use crate::source::http::{Downloader, FetchOptions};
use crate::source::open_data::{OpenDataPager, OpenDataQuery};
use crate::source::open_file;
use crate::source::spec::{InputSpec, expand_input};
use crate::stage::fetch_args::FetchArgs;
use crate::stage::runtime::{CommonArgs, StageRuntime};
use crate::transform::landing_checks::LandingChecks;
use crate::trip::Dataset;
use crate::validate::{DEFAULT_MONTH_TOLERANCE_DAYS, Validator};
use taxistream_crds::worker_config::OpenDataConfig;

const STAGE: &str = "ingest";

/// Each batch commits its rows with the source's progress in the landing
/// table, so the driver's commits have nothing to add before the end of a
/// source; committing earlier would only drain the two batches in flight.
const DRIVE: DriveOptions = DriveOptions {
    commit_interval: Duration::MAX,
};

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

impl IngestStats {
    fn add(&mut self, landed: LandingCounts) {
        self.read += landed.read;
        self.inserted += landed.inserted;
        self.duplicates += landed.duplicates;
        self.dead_letters += landed.dead_letters;
    }
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
        let Some(from_row) = self.resume_point(&name).await? else {
            return Ok(true);
        };
        let path = match spec {
            InputSpec::Path(p) => p,
            InputSpec::Url(url) => match self.download(&url).await? {
                Some(p) => p,
                None => return Ok(true),
            },
        };
        let validator = Validator::for_file(&name, DEFAULT_MONTH_TOLERANCE_DAYS);
        match open_file(&path, &name, self.dataset) {
            Ok(reader) => {
                self.land(&name, Feed::Reader(reader), validator, from_row)
                    .await?
            }
            Err(e) => self.source_failed(&name, e.to_string()),
        }
        Ok(true)
    }

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
        let Some(from_row) = self.resume_point(&name).await? else {
            return Ok(());
        };
        let pager = OpenDataPager::new(self.http_client()?, query, self.fetch.retry, self.dataset);
        let validator = Validator::for_open_data(DEFAULT_MONTH_TOLERANCE_DAYS);
        self.land(&name, Feed::OpenData(pager), validator, from_row)
            .await
    }

    /// The row to land `source` from, or `None` when it is complete.
    async fn resume_point(&mut self, source: &str) -> Result<Option<u64>, StageError> {
        match self.store.progress(source).await? {
            Some((_, true)) => {
                tracing::info!(source, "already landed; skipping");
                self.stats.skipped_sources += 1;
                Ok(None)
            }
            Some((from_row, false)) if from_row > 0 => {
                tracing::info!(source, from_row, "resuming");
                Ok(Some(from_row))
            }
            _ => Ok(Some(0)),
        }
    }

    /// Downloads `url` into the download directory; `None` (recorded as a
    /// failed source) when that fails.
    async fn download(&mut self, url: &str) -> Result<Option<PathBuf>, StageError> {
        let dl = match self.downloader.take() {
            Some(d) => d,
            None => Downloader::new(
                self.http_client()?,
                self.download_dir.to_owned(),
                self.fetch.retry,
            ),
        };
        let fetched = self.downloader.insert(dl).fetch(url).await;
        match fetched {
            Ok(p) => Ok(Some(p)),
            Err(e) => {
                tracing::error!(source = %url, error = %e, "download failed");
                self.metrics.dead_letter(Reason::SourceError);
                self.stats.failed.push(e.to_string());
                Ok(None)
            }
        }
    }

    fn http_client(&self) -> Result<reqwest::Client, StageError> {
        crate::source::http::client_with(self.fetch.timeouts).map_err(|e| StageError::Other {
            what: "http client",
            detail: e.to_string(),
        })
    }

    /// Lands one source from `from_row` on: feed → checks → landing table.
    /// Returns an error only for store failures; a broken source is
    /// recorded in the stats and the run goes on.
    async fn land(
        &mut self,
        name: &str,
        feed: Feed,
        validator: Validator,
        from_row: u64,
    ) -> Result<(), StageError> {
        let span = tracing::info_span!("source", source = name);
        self.store.register(name).await?;
        let mut source = SourceFeed::spawn(feed);
        let mut checks = LandingChecks::new(validator, from_row);
        let (mut table, mut dead) = LandingTable::new(self.store.clone(), name, self.metrics);
        let stopped = flow::drive::<_, _, _, _, StageError>(
            &mut source,
            &mut checks,
            &mut table,
            &mut dead,
            DRIVE,
            self.shutdown,
        )
        .instrument(span)
        .await?;
        self.stats.add(table.counts);
        match (source.failure(), stopped) {
            (Some(e), _) => self.source_failed(name, e.to_owned()),
            (None, Stopped::Drained) => {
                self.store.complete(name, checks.next_row()).await?;
                self.stats.sources += 1;
            }
            (None, Stopped::Shutdown) => tracing::info!(
                source = name,
                next_row = checks.next_row(),
                "shutdown: stopping after a landed batch"
            ),
        }
        Ok(())
    }

    fn source_failed(&mut self, name: &str, error: String) {
        tracing::error!(source = name, error = %error, "source failed; landed rows are kept and a restart resumes after them");
        self.metrics.dead_letter(Reason::SourceError);
        self.stats.failed.push(error);
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
