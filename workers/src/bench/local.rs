//! The local job against its peer: `taxistream-worker run` on the synthetic
//! month (Parquet and CSV output) and DuckDB on the same file and query
//! (`/work/shared/docs/reference-query.md`), each as a whole process, runs
//! interleaved so that load from elsewhere on the machine hits all of them
//! alike.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::BenchError;
use super::process::{Launcher, Measured};

/// The reference query in DuckDB's dialect, over `read_parquet` of the
/// input, written to Parquet like the job's output.
fn duckdb_copy(input: &Path, output: &Path) -> String {
    let quote = |p: &Path| p.display().to_string().replace('\'', "''");
    format!(
        "COPY (SELECT PULocationID, \
           time_bucket(INTERVAL 5 MINUTE, tpep_pickup_datetime) AS window_start, \
           time_bucket(INTERVAL 5 MINUTE, tpep_pickup_datetime) + INTERVAL 5 MINUTE AS window_end, \
           count(*) AS cnt, sum(fare_amount) AS sum_fare, sum(total_amount) AS sum_total, \
           avg(trip_distance) AS avg_dist, \
           avg(tip_amount / fare_amount) FILTER (WHERE fare_amount > 0) AS avg_tip_ratio, \
           max(passenger_count) AS max_pax \
         FROM read_parquet('{}') GROUP BY ALL) TO '{}' (FORMAT parquet)",
        quote(input),
        quote(output)
    )
}

/// Runs the statements given as arguments, in one DuckDB connection.
const DUCKDB_SCRIPT: &str =
    "import sys, duckdb\nc = duckdb.connect()\nfor s in sys.argv[1:]:\n    c.execute(s)\n";

/// One process's figures over the repeats: the median wall time, the
/// largest peak RSS.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub wall: Duration,
    pub peak_rss: Option<u64>,
}

impl Sample {
    fn of(runs: &[Measured]) -> Option<Self> {
        let mut walls: Vec<Duration> = runs.iter().map(|m| m.wall).collect();
        walls.sort();
        let wall = *walls.get(walls.len() / 2)?;
        let peak_rss = runs.iter().filter_map(|m| m.peak_rss).max();
        Some(Self { wall, peak_rss })
    }
}

/// Rows 1 and 2 of the table.
#[derive(Debug)]
pub struct LocalFigures {
    pub repeats: usize,
    pub run_parquet: Sample,
    pub run_csv: Sample,
    /// Why DuckDB was not measured, when it was not.
    pub duckdb: Result<Sample, String>,
    /// Result rows of the job and of DuckDB: the same unless the job
    /// dropped rows as late (its default merge by pickup leaves none late).
    pub run_rows: Option<i64>,
    pub duckdb_rows: Option<i64>,
}

fn parquet_rows(path: &Path) -> Option<i64> {
    use parquet::file::reader::FileReader;
    let file = std::fs::File::open(path).ok()?;
    let reader = parquet::file::reader::SerializedFileReader::new(file).ok()?;
    Some(reader.metadata().file_metadata().num_rows())
}

/// Measures rows 1 and 2; `duckdb_python` is the bench venv's interpreter.
pub async fn measure(
    launcher: &Launcher,
    worker: &Path,
    input: &Path,
    scratch: &Path,
    duckdb_python: Option<&Path>,
    repeats: usize,
) -> Result<LocalFigures, BenchError> {
    // The first read of a cold file would be charged to whoever runs first.
    std::fs::read(input).map_err(|source| BenchError::Io {
        what: "reading the input",
        path: input.to_owned(),
        source,
    })?;
    let out_parquet = scratch.join("results.parquet");
    let out_csv = scratch.join("results.csv");
    let out_duckdb = scratch.join("duckdb.parquet");
    let run_args = |output: &PathBuf| -> Vec<OsString> {
        vec![
            "run".into(),
            "--no-progress".into(),
            "--input".into(),
            input.into(),
            "--output".into(),
            output.into(),
        ]
    };
    let duckdb_args: Vec<OsString> = vec![
        "-c".into(),
        DUCKDB_SCRIPT.into(),
        "SET TimeZone = 'UTC'".into(),
        duckdb_copy(input, &out_duckdb).into(),
    ];
    let mut parquet_runs = Vec::new();
    let mut csv_runs = Vec::new();
    let mut duckdb_runs = Vec::new();
    let mut duckdb_error = duckdb_python
        .is_none()
        .then(|| "no DuckDB: scripts/bench.sh installs it in a bench-only venv".to_owned());
    for i in 0..repeats.max(1) {
        eprintln!("bench: local job, round {}/{}", i + 1, repeats.max(1));
        if let (Some(python), None) = (duckdb_python, &duckdb_error) {
            match launcher.measure("duckdb", python, &duckdb_args).await {
                Ok(m) => duckdb_runs.push(m),
                Err(e) => duckdb_error = Some(e.to_string()),
            }
        }
        parquet_runs.push(
            launcher
                .measure("run-parquet", worker, &run_args(&out_parquet))
                .await?,
        );
        csv_runs.push(
            launcher
                .measure("run-csv", worker, &run_args(&out_csv))
                .await?,
        );
    }
    let missing = || BenchError::Other("no run was measured".into());
    Ok(LocalFigures {
        repeats: repeats.max(1),
        run_parquet: Sample::of(&parquet_runs).ok_or_else(missing)?,
        run_csv: Sample::of(&csv_runs).ok_or_else(missing)?,
        duckdb: match duckdb_error {
            Some(e) => Err(e),
            None => Sample::of(&duckdb_runs).ok_or_else(|| "no DuckDB run".to_owned()),
        },
        run_rows: parquet_rows(&out_parquet),
        duckdb_rows: parquet_rows(&out_duckdb),
    })
}
