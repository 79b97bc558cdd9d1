//! `taxistream-worker run`: the embedded default job. Reads trips, validates
//! them and windows them in one process, with no external service.
//!
//! read ([`crate::source`]) → validate ([`crate::validate`]) → merge by
//! pickup → window ([`crate::window`]) → write ([`crate::output`]); bad,
//! unparsable and late records go to the dead-letter file.
//!
//! Files are history, not a live feed, so by default every source is read
//! first and the valid rows of all of them are windowed in one event-time
//! order: by pickup, equal pickups in source order, then in file order. That
//! is the order in which the relay publishes completed sources (it merges
//! them by (pickup, landing id), and ingest lands the inputs one after the
//! other), so `run` over several files and the pipeline over the same
//! sources compute the same windows, whatever order the files are given in
//! and whichever file holds a pickup. Nothing trails the watermark in that
//! order, so TLC files, which come in rough hour blocks with an unsorted tail
//! and stray pickups of neighbouring months, lose no trip to lateness.
//! Memory holds a bounded run of rows, not a source ([`crate::run::merge`]).
//! `--file-order` windows rows as the files list them, as they are read. A
//! source that fails (missing, truncated, corrupt, wrong layout) is reported
//! and skipped, rows read before the failure still count; the others still
//! run, and the exit code says that something failed.

pub mod merge;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::{error, info, warn};

use self::merge::{EventTimeMerge, RUN_ROWS, SpillError};
use crate::dead_letter::{
    DeadLetter, DeadLetterCounts, DeadLetterSink, DiscardDeadLetters, JsonLinesDeadLetters, Reason,
};
use crate::output::{self, Format, OutputError, ResultWriter};
use crate::source::http::Downloader;
use crate::source::open_data::{OpenDataPager, OpenDataQuery};
use crate::source::spec::{InputSpec, MonthRange, TLC_BASE_URL, expand_input};
use crate::source::{ReadBatch, SourceError, TripReader, next_batch_guarded, open_file};
use crate::stage::fetch_args::{FetchArgs, parse_duration};
use crate::trip::{Dataset, TripBatch};
use crate::validate::{DEFAULT_MONTH_TOLERANCE_DAYS, Month, Validator};
use crate::window::{
    GroupBy, KeyMapper, WindowConfig, WindowEngine, WindowError, WindowInput, WindowResult,
    WindowRows,
};
use crate::zones::{ZoneError, ZoneLookup};

/// Arguments of `run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Trip files (Parquet, CSV, saved Open Data JSON), directories of them, or
    /// http(s) URLs, read in order.
    #[arg(long, short, num_args = 1.., value_name = "PATH|URL")]
    pub input: Vec<String>,
    /// TLC months to fetch from --base-url, e.g. `2024-01..2024-03` (inclusive).
    #[arg(long, value_name = "FROM..TO")]
    pub months: Option<MonthRange>,
    /// Where --months files live.
    #[arg(long, default_value = TLC_BASE_URL)]
    pub base_url: String,
    /// NYC Open Data dataset to page through: `<domain>/<dataset-id>` or a full resource URL.
    #[arg(long, value_name = "DOMAIN/ID|URL")]
    pub open_data: Option<String>,
    /// Records per Open Data page.
    #[arg(long, default_value_t = 50_000)]
    pub page_size: u32,
    /// SoQL `$where` filter for --open-data.
    #[arg(long = "where", value_name = "SOQL")]
    pub where_clause: Option<String>,
    /// Stop --open-data after this many records.
    #[arg(long)]
    pub open_data_limit: Option<u64>,
    /// Socrata app token (raises the API's rate limits).
    #[arg(long, env = "SOCRATA_APP_TOKEN", hide_env_values = true)]
    pub app_token: Option<String>,
    /// Dataset of inputs whose columns and name do not tell.
    #[arg(long, default_value = "yellow", value_parser = parse_dataset)]
    pub dataset: Dataset,
    /// Window length, e.g. `5m`, `300s`, `1h`.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub window: u64,
    /// Hop between windows (hopping windows); defaults to the window length (tumbling).
    #[arg(long, value_parser = parse_duration)]
    pub slide: Option<u64>,
    /// How far behind the newest pickup a record may arrive and still count.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub allowed_lateness: u64,
    /// Window key: pickup-zone, dropoff-zone, borough (of the pickup zone) or payment-type.
    #[arg(long, default_value = "pickup-zone", value_parser = parse_group_by)]
    pub group_by: GroupBy,
    /// Results file; the format follows the extension unless --format is given. Default: a table on stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Results format.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Rows of the stdout table (the rest are counted).
    #[arg(long, default_value_t = 40)]
    pub max_table_rows: usize,
    /// Dead letters (JSON lines, one per rejected or late record).
    #[arg(long, value_name = "FILE")]
    pub dead_letters: Option<PathBuf>,
    /// Zone lookup CSV to use instead of the built-in one.
    #[arg(long, value_name = "FILE")]
    pub zones: Option<PathBuf>,
    /// Pickups more than this many days outside a file's month are dead-lettered.
    #[arg(long, default_value_t = DEFAULT_MONTH_TOLERANCE_DAYS)]
    pub month_tolerance_days: i64,
    #[command(flatten)]
    pub fetch: FetchArgs,
    /// Keep downloaded files after reading them (they are deleted by default).
    #[arg(long)]
    pub keep_downloads: bool,
    /// No progress bar even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
    /// Window rows in the order the files list them (the watermark follows
    /// the newest pickup seen) instead of merging all sources by pickup.
    #[arg(long)]
    pub file_order: bool,
}

fn parse_dataset(s: &str) -> Result<Dataset, String> {
    match s.to_ascii_lowercase().as_str() {
        "yellow" => Ok(Dataset::Yellow),
        "green" => Ok(Dataset::Green),
        other => Err(format!(
            "{other:?}: only yellow and green trip records are supported"
        )),
    }
}

fn parse_group_by(s: &str) -> Result<GroupBy, String> {
    match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
        "pickupzone" | "pulocationid" => Ok(GroupBy::PickupZone),
        "dropoffzone" | "dolocationid" => Ok(GroupBy::DropoffZone),
        "borough" => Ok(GroupBy::Borough),
        "paymenttype" => Ok(GroupBy::PaymentType),
        _ => Err(format!(
            "{s:?}: expected pickup-zone, dropoff-zone, borough or payment-type"
        )),
    }
}

/// Failures that stop the whole run (per-source failures do not).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("nothing to read: give --input, --months or --open-data")]
    NoInput,
    #[error(transparent)]
    Window(#[from] WindowError),
    #[error(transparent)]
    Zones(#[from] ZoneError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("dead letters {path}: {error}")]
    DeadLetters {
        path: String,
        #[source]
        error: std::io::Error,
    },
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Spill(#[from] SpillError),
    /// Merged by pickup, no row can trail the watermark (it follows the
    /// newest pickup, minus a lateness of zero or more); one that does is a
    /// bug in the merge, not a late trip.
    #[error("internal error: {0} rows came late in event-time order")]
    LateInEventTime(usize),
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub sources_ok: u64,
    /// One message per source that failed, naming it.
    pub sources_failed: Vec<String>,
    pub rows_read: u64,
    /// Rows that passed validation and were offered to the windows.
    pub rows_valid: u64,
    /// Rows counted in windows.
    pub rows_windowed: u64,
    /// Valid rows with a negative amount (kept).
    pub refunds: u64,
    pub dead_letters: DeadLetterCounts,
    pub windows_emitted: u64,
    /// Hopping windows: (record, window) pairs skipped because that window
    /// had closed while the record still counted in its newer windows.
    pub late_window_assignments: u64,
    pub elapsed: Duration,
    /// Time spent in the window engine alone.
    pub window_elapsed: Duration,
    /// All sources were merged by pickup before windowing (the default).
    pub event_time_order: bool,
}

impl Summary {
    /// Human-readable report (stderr).
    pub fn render(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let wsecs = self.window_elapsed.as_secs_f64().max(1e-9);
        let mut s = String::new();
        let mut line =
            |label: &str, value: String| s.push_str(&format!("{label:<24}{value:>14}\n"));
        line(
            "input order",
            if self.event_time_order {
                "event time".to_string()
            } else {
                "file".to_string()
            },
        );
        line("rows read", self.rows_read.to_string());
        line("rows windowed", self.rows_windowed.to_string());
        line("refunds flagged (kept)", self.refunds.to_string());
        line("windows emitted", self.windows_emitted.to_string());
        // Always shown: trips lost to lateness are the first thing to check
        // when a month's totals look low.
        line(
            "late (dead-lettered)",
            self.dead_letters.get(Reason::Late).to_string(),
        );
        if self.late_window_assignments > 0 {
            line(
                "closed-window skips",
                self.late_window_assignments.to_string(),
            );
        }
        line("wall time", format!("{secs:.3} s"));
        line(
            "throughput",
            format!("{:.0} rows/s", self.rows_read as f64 / secs),
        );
        line(
            "window step",
            format!("{:.0} rows/s", self.rows_valid as f64 / wsecs),
        );
        line("dead letters", self.dead_letters.total().to_string());
        for (reason, n) in &self.dead_letters.0 {
            line(&format!("  {}", reason.as_str()), n.to_string());
        }
        line("sources ok", self.sources_ok.to_string());
        line("sources failed", self.sources_failed.len().to_string());
        for f in &self.sources_failed {
            s.push_str(&format!("  failed: {f}\n"));
        }
        s
    }
}

/// Settings of a [`LocalJob`] that do not come from the command line parser.
pub struct JobOptions {
    pub window: WindowConfig,
    pub month_tolerance_days: i64,
    pub default_dataset: Dataset,
    pub progress: bool,
}

/// The read → validate → window → write loop, reusable from tests.
pub struct LocalJob {
    engine: WindowEngine,
    options: JobOptions,
    writer: Box<dyn ResultWriter>,
    dead: Box<dyn DeadLetterSink>,
    dead_path: String,
    summary: Summary,
    started: Instant,
    emitted: Vec<WindowResult>,
    late: Vec<usize>,
    mask: Vec<bool>,
    /// Keys the rows kept for the merge, as the engine would.
    keys: KeyMapper,
    key_buf: Vec<u16>,
    /// Valid rows of the run being read (part of one source).
    buffered: WindowRows,
    /// Sorted runs of the rows read, waiting for the merge.
    merge: EventTimeMerge,
}

impl LocalJob {
    pub fn new(
        options: JobOptions,
        zones: &ZoneLookup,
        writer: Box<dyn ResultWriter>,
        dead: Box<dyn DeadLetterSink>,
        dead_path: String,
    ) -> Self {
        Self {
            engine: WindowEngine::new(options.window, zones),
            keys: KeyMapper::new(options.window.group_by, zones),
            key_buf: Vec::new(),
            options,
            writer,
            dead,
            dead_path,
            started: Instant::now(),
            emitted: Vec::new(),
            late: Vec::new(),
            mask: Vec::new(),
            buffered: WindowRows::default(),
            merge: EventTimeMerge::default(),
            summary: Summary {
                event_time_order: true,
                ..Summary::default()
            },
        }
    }

    /// Windows rows in the order the sources list them, as they are read,
    /// instead of merging all sources by pickup at the end.
    pub fn in_file_order(mut self) -> Self {
        self.summary.event_time_order = false;
        self
    }

    fn dead_letter(&mut self, d: &DeadLetter) -> Result<(), RunError> {
        self.summary.dead_letters.add(d.reason, 1);
        self.dead.write(d).map_err(|error| RunError::DeadLetters {
            path: self.dead_path.clone(),
            error,
        })
    }

    /// Validates one batch and windows it, or keeps its valid rows for the
    /// event-time merge in [`LocalJob::finish`].
    pub fn process(&mut self, batch: ReadBatch, validator: &mut Validator) -> Result<(), RunError> {
        self.summary.rows_read += (batch.trips.len() + batch.rejects.len()) as u64;
        for d in &batch.rejects {
            self.dead_letter(d)?;
        }
        let trips = batch.trips;
        let mut rejected = Vec::new();
        let mut mask = std::mem::take(&mut self.mask);
        let check = validator.check(&trips, &mut mask, |d| rejected.push(d));
        for d in &rejected {
            self.dead_letter(d)?;
        }
        self.summary.rows_valid += check.valid;
        self.summary.refunds += check.refunds;
        if self.summary.event_time_order {
            if check.valid > 0 {
                if self.buffered.is_empty() {
                    // Memory holds the run being read and at most one sorted run.
                    self.merge.spill_last()?;
                }
                self.buffered
                    .extend_selected(&trips, &mask, &self.keys, &mut self.key_buf);
                if self.buffered.len() >= RUN_ROWS {
                    self.end_run()?;
                }
            }
            self.mask = mask;
            return Ok(());
        }
        let result = self.window_in_file_order(&trips, &mask);
        self.mask = mask;
        result
    }

    /// The end of a run (its size reached, or the end of its source): its
    /// valid rows join the merge.
    fn end_run(&mut self) -> Result<(), RunError> {
        let t0 = Instant::now();
        self.merge.add_run(std::mem::take(&mut self.buffered))?;
        self.summary.window_elapsed += t0.elapsed();
        Ok(())
    }

    /// Windows the valid rows of every source read by (pickup, source,
    /// file order), the relay's order over completed sources.
    fn window_in_event_time(&mut self) -> Result<(), RunError> {
        std::mem::take(&mut self.merge).drain(|rows| self.window_merged(rows))
    }

    /// Windows rows merged by pickup, none of which can be late.
    fn window_merged(&mut self, rows: &WindowRows) -> Result<(), RunError> {
        self.push(rows, None);
        if !self.late.is_empty() {
            return Err(RunError::LateInEventTime(self.late.len()));
        }
        self.summary.rows_windowed += rows.len() as u64;
        self.write_emitted()
    }

    /// Windows the valid rows of a batch as read; late ones are dead letters.
    fn window_in_file_order(&mut self, trips: &TripBatch, mask: &[bool]) -> Result<(), RunError> {
        self.push(trips, Some(mask));
        let offered = mask.iter().filter(|&&v| v).count();
        self.summary.rows_windowed += (offered - self.late.len()) as u64;
        let watermark = self.engine.watermark();
        let late = std::mem::take(&mut self.late);
        for &i in &late {
            self.dead_letter(&DeadLetter::late(trips.row(i), watermark))?;
        }
        self.late = late;
        self.write_emitted()
    }

    /// Offers rows to the engine; the rows late for all their windows are
    /// left in `self.late`.
    fn push(&mut self, rows: &impl WindowInput, mask: Option<&[bool]>) {
        let t0 = Instant::now();
        self.late.clear();
        self.engine
            .push_batch(rows, mask, &mut self.emitted, &mut self.late);
        self.summary.window_elapsed += t0.elapsed();
    }

    fn write_emitted(&mut self) -> Result<(), RunError> {
        if !self.emitted.is_empty() {
            self.summary.windows_emitted += self.emitted.len() as u64;
            self.writer.write(&self.emitted)?;
            self.emitted.clear();
        }
        Ok(())
    }

    /// Reads one source to its end. A failure is recorded in the summary,
    /// naming the source, and the job goes on.
    pub fn read_source(
        &mut self,
        reader: Result<Box<dyn TripReader>, SourceError>,
        month_hint: Option<Month>,
    ) -> Result<(), RunError> {
        let mut reader = match reader {
            Ok(r) => r,
            Err(e) => {
                self.source_failed(&e);
                return Ok(());
            }
        };
        let mut validator = Validator::new(month_hint, self.options.month_tolerance_days);
        let bar = self.progress_bar(reader.name(), reader.total_rows());
        // Decoding runs on its own thread, a batch ahead, so a run takes
        // about as long as decoding the file rather than decode plus
        // windowing. Batches still reach the engine in file order. One
        // batch of every column is about 10 MB: more queued would only
        // hold memory, as decoding is the slower side.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<ReadBatch, SourceError>>(1);
        let outcome = std::thread::scope(|scope| {
            scope.spawn(move || {
                loop {
                    // A decoder bug on corrupt input must cost this file, not the process.
                    let next = next_batch_guarded(reader.as_mut()).transpose();
                    let stop = !matches!(next, Some(Ok(_)));
                    if let Some(item) = next
                        && tx.send(item).is_err()
                    {
                        break;
                    }
                    if stop {
                        break;
                    }
                }
            });
            for item in rx.iter() {
                match item {
                    Ok(batch) => {
                        bar.inc((batch.trips.len() + batch.rejects.len()) as u64);
                        // Returning drops the receiver, which stops the reader thread.
                        self.process(batch, &mut validator)?;
                    }
                    Err(e) => return Ok(Some(e)),
                }
            }
            Ok::<_, RunError>(None)
        })?;
        // Rows read before a failure still count, as in file order.
        self.end_run()?;
        match outcome {
            Some(e) => self.source_failed(&e),
            None => self.summary.sources_ok += 1,
        }
        bar.finish_and_clear();
        Ok(())
    }

    /// Pages through an Open Data query.
    pub async fn read_open_data(&mut self, mut pager: OpenDataPager) -> Result<(), RunError> {
        let mut validator = Validator::for_open_data(self.options.month_tolerance_days);
        let bar = self.progress_bar(pager.name(), None);
        loop {
            match pager.next_batch().await {
                Ok(Some(batch)) => {
                    bar.inc((batch.trips.len() + batch.rejects.len()) as u64);
                    self.process(batch, &mut validator)?;
                }
                Ok(None) => {
                    self.summary.sources_ok += 1;
                    break;
                }
                Err(e) => {
                    self.source_failed(&e);
                    break;
                }
            }
        }
        self.end_run()?;
        bar.finish_and_clear();
        Ok(())
    }

    fn source_failed(&mut self, e: &SourceError) {
        error!(error = %e, "source failed; continuing with the next one");
        self.summary.sources_failed.push(e.to_string());
    }

    fn progress_bar(&self, name: &str, total: Option<u64>) -> ProgressBar {
        if !self.options.progress {
            return ProgressBar::hidden();
        }
        let bar = match total {
            Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr())
                .with_style(
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

    /// End of input: closes every window, flushes the outputs, returns the summary.
    pub fn finish(mut self) -> Result<Summary, RunError> {
        self.end_run()?;
        self.window_in_event_time()?;
        let t0 = Instant::now();
        self.engine.flush(&mut self.emitted);
        self.summary.window_elapsed += t0.elapsed();
        self.summary.late_window_assignments = self.engine.stats().late_window_assignments;
        self.write_emitted()?;
        self.writer.finish()?;
        self.dead.finish().map_err(|error| RunError::DeadLetters {
            path: self.dead_path.clone(),
            error,
        })?;
        self.summary.elapsed = self.started.elapsed();
        Ok(self.summary)
    }
}

/// Runs the job described by `args`.
pub async fn run(args: RunArgs) -> Result<Summary, RunError> {
    let mut inputs = Vec::new();
    for s in &args.input {
        inputs.extend(expand_input(s)?);
    }
    if let Some(range) = args.months {
        inputs.extend(
            range
                .urls(&args.base_url, args.dataset)
                .into_iter()
                .map(InputSpec::Url),
        );
    }
    if inputs.is_empty() && args.open_data.is_none() {
        return Err(RunError::NoInput);
    }
    let window = WindowConfig::hopping(
        args.window,
        args.slide.unwrap_or(args.window),
        args.allowed_lateness,
        args.group_by,
    )?;
    let zones_owned;
    let zones = match &args.zones {
        Some(p) => {
            zones_owned = ZoneLookup::from_path(p)?;
            &zones_owned
        }
        None => ZoneLookup::embedded(),
    };
    let format = args
        .format
        .or_else(|| args.output.as_deref().and_then(Format::from_path))
        .unwrap_or(if args.output.is_some() {
            Format::Csv
        } else {
            Format::Table
        });
    let writer = output::open(
        format,
        args.output.as_deref(),
        args.group_by,
        args.max_table_rows,
    )?;
    let (dead, dead_path): (Box<dyn DeadLetterSink>, String) = match &args.dead_letters {
        Some(p) => {
            let file = std::fs::File::create(p).map_err(|error| RunError::DeadLetters {
                path: p.display().to_string(),
                error,
            })?;
            (
                Box::new(JsonLinesDeadLetters::new(std::io::BufWriter::new(file))),
                p.display().to_string(),
            )
        }
        None => (Box::new(DiscardDeadLetters), "(not written)".to_string()),
    };
    let options = JobOptions {
        window,
        month_tolerance_days: args.month_tolerance_days,
        default_dataset: args.dataset,
        progress: !args.no_progress && std::io::stderr().is_terminal(),
    };
    let mut job = LocalJob::new(options, zones, writer, dead, dead_path);
    if args.file_order {
        job = job.in_file_order();
    }
    let fetch = args.fetch.options();
    let retry = fetch.retry;
    let needs_http =
        args.open_data.is_some() || inputs.iter().any(|i| matches!(i, InputSpec::Url(_)));
    let client = if needs_http {
        Some(crate::source::http::client_with(fetch.timeouts)?)
    } else {
        None
    };
    for input in &inputs {
        let name = input.name();
        let month = Month::from_name(&name);
        let path = match (input, &client) {
            (InputSpec::Path(p), _) => p.clone(),
            (InputSpec::Url(url), Some(client)) => {
                info!(url, "downloading");
                let dl = Downloader::new(client.clone(), args.fetch.download_dir.clone(), retry);
                match dl.fetch(url).await {
                    Ok(p) => p,
                    Err(e) => {
                        job.source_failed(&e);
                        continue;
                    }
                }
            }
            (InputSpec::Url(_), None) => continue,
        };
        let dataset = job.options.default_dataset;
        tokio::task::block_in_place(|| job.read_source(open_file(&path, &name, dataset), month))?;
        if matches!(input, InputSpec::Url(_))
            && !args.keep_downloads
            && let Err(e) = std::fs::remove_file(&path)
        {
            warn!(path = %path.display(), error = %e, "cannot delete download");
        }
    }
    if let (Some(resource), Some(client)) = (&args.open_data, &client) {
        let mut query = OpenDataQuery::new(resource, args.page_size);
        query.where_clause = args.where_clause.clone();
        query.app_token = args.app_token.clone();
        query.limit = args.open_data_limit;
        let pager = OpenDataPager::new(client.clone(), query, retry, args.dataset);
        job.read_open_data(pager).await?;
    }
    tokio::task::block_in_place(|| job.finish())
}

/// CLI entry: human-readable logs and summary on stderr, results on stdout
/// or in the output file. Exit code 1 when the job or any source failed.
pub async fn main(args: RunArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let dead_letters_written = args.dead_letters.is_some();
    match run(args).await {
        Ok(summary) => {
            eprint!("{}", summary.render());
            if !dead_letters_written && summary.dead_letters.total() > 0 {
                eprintln!(
                    "dead letters were counted but not written: add --dead-letters FILE to keep them"
                );
            }
            if summary.sources_failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse() {
        assert_eq!(parse_group_by("pickup-zone"), Ok(GroupBy::PickupZone));
        assert_eq!(parse_group_by("dropoffZone"), Ok(GroupBy::DropoffZone));
        assert_eq!(parse_group_by("payment_type"), Ok(GroupBy::PaymentType));
        assert!(parse_group_by("vendor").is_err());
        assert_eq!(parse_dataset("Green"), Ok(Dataset::Green));
        assert!(parse_dataset("fhv").is_err());
    }
}
