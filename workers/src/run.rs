//! `taxistream-worker run`: the embedded default job. Reads trips, validates
//! them and windows them in one process, with no external service.
//!
//! Wiring only ([`crate::flow`]): every input ([`Inputs`]) → validate and
//! window ([`LocalWindows`]: by default every input merged by pickup first,
//! with `--file-order` as read) → the results file or table
//! ([`ResultsFile`]); rejected and late records to the dead-letter file
//! ([`crate::sink::dead_letter_file`]). A source that fails (missing,
//! truncated, corrupt, wrong layout) is reported and skipped, rows read
//! before the failure still count; the others still run, and the exit code
//! says that something failed.

use std::convert::Infallible;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::dead_letter::{DeadLetter, DeadLetterCounts, Reason};
use crate::flow::{self, DeadLetterSink, DriveOptions};
use crate::output::{self, Format, OutputError, ResultWriter};
use crate::shutdown::Shutdown;
use crate::sink::dead_letter_file::{DeadLetterFile, DeadLetterFileError, DiscardDeadLetters};
use crate::sink::results_file::ResultsFile;
use crate::source::SourceError;
use crate::source::http::Downloader;
use crate::source::inputs::{Downloads, Inputs};
use crate::source::open_data::{OpenDataPager, OpenDataQuery};
use crate::source::spec::{InputSpec, MonthRange, TLC_BASE_URL, expand_input};
use crate::stage::fetch_args::{FetchArgs, parse_duration};
use crate::transform::local_windows::{LocalWindows, LocalWindowsError};
use crate::trip::Dataset;
use crate::validate::DEFAULT_MONTH_TOLERANCE_DAYS;
use crate::window::{GroupBy, WindowConfig, WindowError};
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
    #[error(transparent)]
    DeadLetters(#[from] DeadLetterFileError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Windows(#[from] LocalWindowsError),
}

/// The sources and the sinks that cannot fail.
impl From<Infallible> for RunError {
    fn from(never: Infallible) -> Self {
        match never {}
    }
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
}

/// The job over some inputs, with its results going to `writer`; reusable
/// from tests.
pub struct LocalJob<'z> {
    options: JobOptions,
    zones: &'z ZoneLookup,
    results: ResultsFile,
    event_time_order: bool,
    started: Instant,
}

impl<'z> LocalJob<'z> {
    pub fn new(options: JobOptions, zones: &'z ZoneLookup, writer: Box<dyn ResultWriter>) -> Self {
        Self {
            options,
            zones,
            results: ResultsFile::new(writer),
            event_time_order: true,
            started: Instant::now(),
        }
    }

    /// Windows rows in the order the sources list them, as they are read,
    /// instead of merging all sources by pickup at the end.
    pub fn in_file_order(mut self) -> Self {
        self.event_time_order = false;
        self
    }

    /// Reads every input to its end, closes every window, completes the
    /// output and says what happened.
    pub async fn run<D>(mut self, mut inputs: Inputs, dead: &mut D) -> Result<Summary, RunError>
    where
        D: DeadLetterSink,
        D::Error: Into<RunError>,
    {
        let mut windows = LocalWindows::new(
            self.options.window,
            self.zones,
            self.options.month_tolerance_days,
            self.event_time_order,
        );
        // Never fired: a local run has no position to keep, so it reads to
        // the end (Ctrl-C ends the process).
        let (_trigger, shutdown) = Shutdown::manual();
        let options = DriveOptions {
            // Nothing to commit before the end.
            commit_interval: Duration::MAX,
        };
        flow::drive::<_, _, _, _, RunError>(
            &mut inputs,
            &mut windows,
            &mut self.results,
            &mut Letters(dead),
            options,
            &shutdown,
        )
        .await?;
        self.results.finish()?;
        let stats = windows.stats();
        Ok(Summary {
            sources_ok: inputs.sources_ok,
            sources_failed: inputs.sources_failed,
            rows_read: stats.rows_read,
            rows_valid: stats.rows_valid,
            rows_windowed: stats.rows_windowed,
            refunds: stats.refunds,
            dead_letters: stats.dead_letters,
            windows_emitted: self.results.written,
            late_window_assignments: stats.late_window_assignments,
            elapsed: self.started.elapsed(),
            window_elapsed: stats.window_elapsed,
            event_time_order: windows.event_time_order(),
        })
    }
}

/// A dead-letter sink whose errors are [`RunError`]s: the driver converts
/// every error into the one type, which a bound on a generic sink's error
/// type cannot promise the compiler without hiding the other conversions.
struct Letters<'d, D>(&'d mut D);

impl<D> DeadLetterSink for Letters<'_, D>
where
    D: DeadLetterSink,
    D::Error: Into<RunError>,
{
    type Error = RunError;

    async fn send(&mut self, letters: &mut Vec<DeadLetter>) -> Result<(), RunError> {
        self.0.send(letters).await.map_err(Into::into)
    }

    async fn flush(&mut self) -> Result<(), RunError> {
        self.0.flush().await.map_err(Into::into)
    }
}

/// Runs the job described by `args`.
#[tracing::instrument(name = "run", skip_all)]
pub async fn run(args: RunArgs) -> Result<Summary, RunError> {
    let mut specs = Vec::new();
    for s in &args.input {
        specs.extend(expand_input(s)?);
    }
    if let Some(range) = args.months {
        specs.extend(
            range
                .urls(&args.base_url, args.dataset)
                .into_iter()
                .map(InputSpec::Url),
        );
    }
    if specs.is_empty() && args.open_data.is_none() {
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
    let needs_http =
        args.open_data.is_some() || specs.iter().any(|i| matches!(i, InputSpec::Url(_)));
    let mut inputs = Inputs::new(specs, args.dataset)
        .with_progress(!args.no_progress && std::io::stderr().is_terminal());
    if needs_http {
        let fetch = args.fetch.options();
        let client = crate::source::http::client_with(fetch.timeouts)?;
        if let Some(resource) = &args.open_data {
            let mut query = OpenDataQuery::new(resource, args.page_size);
            query.where_clause = args.where_clause.clone();
            query.app_token = args.app_token.clone();
            query.limit = args.open_data_limit;
            let pager = OpenDataPager::new(client.clone(), query, fetch.retry, args.dataset);
            inputs = inputs.with_open_data(pager);
        }
        inputs = inputs.with_downloads(Downloads {
            downloader: Downloader::new(client, args.fetch.download_dir.clone(), fetch.retry),
            keep: args.keep_downloads,
        });
    }
    let mut job = LocalJob::new(
        JobOptions {
            window,
            month_tolerance_days: args.month_tolerance_days,
        },
        zones,
        writer,
    );
    if args.file_order {
        job = job.in_file_order();
    }
    match &args.dead_letters {
        Some(path) => job.run(inputs, &mut DeadLetterFile::create(path)?).await,
        None => job.run(inputs, &mut DiscardDeadLetters).await,
    }
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
