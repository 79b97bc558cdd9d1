//! `taxistream-worker bench`: the reference query on a seeded synthetic month.
//!
//! Generates (once) the synthetic 2023-01 yellow month of [`synthetic`], then
//! measures, in one process so the ratios are comparable:
//!
//! 1. end to end: Parquet → validate → 5-minute tumbling windows by pickup
//!    zone with 10 minutes of allowed lateness (the reference query), with
//!    wall time, rows/s and peak RSS;
//! 2. Parquet decode alone, the ceiling for (1);
//! 3. the window step alone, on batches already in memory.

pub mod e2e;
pub mod synthetic;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::dead_letter::DiscardDeadLetters;
use crate::output::{OutputError, ResultWriter};
use crate::run::{JobOptions, LocalJob};
use crate::source::parquet::ParquetTripReader;
use crate::source::{SourceError, TripReader};
use crate::trip::{Dataset, TripBatch};
use crate::validate::{DEFAULT_MONTH_TOLERANCE_DAYS, Month};
use crate::window::{GroupBy, WindowConfig, WindowEngine, WindowResult};
use crate::zones::ZoneLookup;

/// Arguments of `bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Rows in the synthetic month.
    #[arg(long, default_value_t = 5_000_000)]
    pub rows: usize,
    /// Generator seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where the generated file is kept between runs.
    #[arg(long, default_value = "bench-data")]
    pub data_dir: PathBuf,
    /// Regenerate the file even if it exists.
    #[arg(long)]
    pub regenerate: bool,
}

/// Totals of the emitted windows (the reference query's check figures).
#[derive(Debug, Default)]
struct Totals {
    groups: u64,
    rows: u64,
    sum_fare: f64,
}

struct Counting(std::rc::Rc<std::cell::RefCell<Totals>>);

impl ResultWriter for Counting {
    fn write(&mut self, results: &[WindowResult]) -> Result<(), OutputError> {
        let mut t = self.0.borrow_mut();
        for r in results {
            t.groups += 1;
            t.rows += r.count;
            t.sum_fare += r.sum_fare;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), OutputError> {
        Ok(())
    }
}

/// Peak resident set size of this process, from `/proc/self/status`.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn rate(rows: u64, d: Duration) -> String {
    let r = rows as f64 / d.as_secs_f64().max(1e-9);
    format!("{:.1} M rows/s", r / 1e6)
}

fn reference_config() -> Result<WindowConfig, String> {
    WindowConfig::tumbling(300, 600, GroupBy::PickupZone).map_err(|e| e.to_string())
}

fn run(args: &BenchArgs) -> Result<(), String> {
    let month = Month {
        year: 2023,
        month: 1,
    };
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| format!("{}: {e}", args.data_dir.display()))?;
    let path = args.data_dir.join(format!(
        "yellow_tripdata_{month}_synthetic_{}_{}_v{}.parquet",
        args.rows,
        args.seed,
        synthetic::GENERATOR_VERSION
    ));
    let name = path.display().to_string();
    if args.regenerate || !path.exists() {
        let t0 = Instant::now();
        let spec = synthetic::SyntheticSpec {
            rows: args.rows,
            seed: args.seed,
            month,
            ..Default::default()
        };
        let g = synthetic::generate(&spec, &path)?;
        eprintln!(
            "generated {} rows ({} late) into {} in {:.1}s",
            g.rows,
            g.late_rows,
            name,
            t0.elapsed().as_secs_f64()
        );
    }
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let zones = ZoneLookup::embedded();
    let config = reference_config()?;

    // 1. End to end.
    let totals = std::rc::Rc::new(std::cell::RefCell::new(Totals::default()));
    let options = JobOptions {
        window: config,
        month_tolerance_days: DEFAULT_MONTH_TOLERANCE_DAYS,
        default_dataset: Dataset::Yellow,
        progress: false,
    };
    let mut job = LocalJob::new(
        options,
        zones,
        Box::new(Counting(totals.clone())),
        Box::new(DiscardDeadLetters),
        "(counted only)".into(),
    )
    // The reference query's late rows are defined by file order.
    .in_file_order();
    let t0 = Instant::now();
    let reader: Result<Box<dyn TripReader>, SourceError> =
        ParquetTripReader::open(&path, &name, Dataset::Yellow)
            .map(|r| Box::new(r) as Box<dyn TripReader>);
    job.read_source(reader, Some(month))
        .map_err(|e| e.to_string())?;
    let summary = job.finish().map_err(|e| e.to_string())?;
    let e2e = t0.elapsed();
    let rss = peak_rss_bytes();
    if !summary.sources_failed.is_empty() {
        return Err(summary.sources_failed.join("; "));
    }

    // 2. Parquet decode alone (batches dropped as they come, like the job does).
    let t0 = Instant::now();
    let mut reader =
        ParquetTripReader::open(&path, &name, Dataset::Yellow).map_err(|e| e.to_string())?;
    let mut decoded = 0u64;
    while let Some(b) = reader.next_batch().map_err(|e| e.to_string())? {
        decoded += b.trips.len() as u64;
    }
    let decode = t0.elapsed();

    // Load the columns the window step reads (not timed).
    let mut reader =
        ParquetTripReader::open(&path, &name, Dataset::Yellow).map_err(|e| e.to_string())?;
    let mut batches: Vec<TripBatch> = Vec::new();
    while let Some(mut b) = reader.next_batch().map_err(|e| e.to_string())? {
        slim(&mut b.trips);
        batches.push(b.trips);
    }

    // 3. Window step alone, on the batches in memory.
    let mut engine = WindowEngine::new(config, zones);
    let mut emitted = Vec::with_capacity(1 << 20);
    let mut late = Vec::new();
    let t0 = Instant::now();
    let mut groups = 0u64;
    for b in &batches {
        engine.push_batch(b, None, &mut emitted, &mut late);
        groups += emitted.len() as u64;
        emitted.clear();
    }
    engine.flush(&mut emitted);
    groups += emitted.len() as u64;
    let window = t0.elapsed();

    let t = totals.borrow();
    let late_letters = summary.dead_letters.get(crate::dead_letter::Reason::Late);
    println!(
        "taxistream bench: reference query (pickup zone, 5-minute tumbling windows, 10-minute allowed lateness)"
    );
    println!(
        "input            {} ({:.1} MiB, {} rows)",
        name,
        size as f64 / 1048576.0,
        summary.rows_read
    );
    println!("groups           {}", t.groups);
    println!("rows in windows  {}", t.rows);
    println!("late rows        {late_letters}");
    println!(
        "other dead rows  {}",
        summary.dead_letters.total() - late_letters
    );
    println!("sum_fare         {:.2}", t.sum_fare);
    println!(
        "end to end       {:.3} s, {}",
        e2e.as_secs_f64(),
        rate(summary.rows_read, e2e)
    );
    println!(
        "  of which window step {:.3} s, {}",
        summary.window_elapsed.as_secs_f64(),
        rate(summary.rows_valid, summary.window_elapsed)
    );
    println!(
        "parquet decode   {:.3} s, {}",
        decode.as_secs_f64(),
        rate(decoded, decode)
    );
    println!(
        "window step alone {:.3} s, {} ({} groups, in-memory batches, one core)",
        window.as_secs_f64(),
        rate(decoded, window),
        groups
    );
    match rss {
        Some(b) => println!("peak RSS (end to end) {:.0} MiB", b as f64 / 1048576.0),
        None => println!("peak RSS (end to end) unavailable"),
    }
    Ok(())
}

/// Drops the columns the window step does not read, so the in-memory pass
/// measures the engine rather than memory pressure.
fn slim(b: &mut TripBatch) {
    for v in [&mut b.vendor_id, &mut b.ratecode_id, &mut b.trip_type] {
        *v = Vec::new();
    }
    for v in [
        &mut b.extra,
        &mut b.mta_tax,
        &mut b.improvement_surcharge,
        &mut b.congestion_surcharge,
        &mut b.airport_fee,
        &mut b.cbd_congestion_fee,
        &mut b.ehail_fee,
    ] {
        *v = Vec::new();
    }
    b.row = Vec::new();
    b.store_and_fwd = Vec::new();
}

/// CLI entry.
pub fn main(args: BenchArgs) -> ExitCode {
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
