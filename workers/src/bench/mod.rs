//! `taxistream-worker bench`: the figures of `make bench`, one table.
//!
//! Generates (once) the seeded synthetic month of [`synthetic`], then drives
//! this binary's own subcommands as separate processes, as a user or the
//! operator would run them, so the figures hold whatever the stages do
//! inside:
//!
//! 1. the local job ([`local`]): `run` Parquet → Parquet and → CSV, against
//!    DuckDB on the same file and query;
//! 2. each backend stage on its own ([`stages`]), with the broker's raw
//!    produce rate ([`raw_produce`]);
//! 3. the stages concurrently, end to end ([`concurrent`]), with the latency
//!    from a window's close to its row in the results store ([`probe`]).
//!
//! Everything on the services lives in the run's own schemas, topics and
//! keyspaces ([`scratch`]) and is dropped at the end, also on Ctrl-C.

pub mod concurrent;
pub mod local;
pub mod probe;
pub mod process;
pub mod raw_produce;
pub mod report;
pub mod scratch;
pub mod split;
pub mod stages;
pub mod synthetic;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use scylla::client::session::Session;

use crate::io::kafka::{KafkaIoError, KafkaSettings};
use crate::validate::Month;
use process::Launcher;
use scratch::{CassandraAt, Pipeline, Services};

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
    /// Python interpreter with the `duckdb` package (the bench venv).
    #[arg(long, env = "BENCH_DUCKDB_PYTHON")]
    pub duckdb_python: Option<PathBuf>,
    /// Runs of each local process (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// PostgreSQL for the backend stages; without it they are not measured.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Kafka bootstrap servers for the backend stages.
    #[arg(long, env = "KAFKA_BOOTSTRAP")]
    pub kafka_bootstrap: Option<String>,
    /// Cassandra contact points (comma-separated); without them the sink is not measured.
    #[arg(long, env = "CASSANDRA_CONTACT_POINTS", value_delimiter = ',')]
    pub cassandra_contact_points: Vec<String>,
    /// Cassandra's local datacenter.
    #[arg(
        long,
        env = "CASSANDRA_LOCAL_DATACENTER",
        default_value = "datacenter1"
    )]
    pub cassandra_local_datacenter: String,
    /// Partitions of the trips topic.
    #[arg(long, default_value_t = 2)]
    pub partitions: i32,
    /// Messages for the raw produce rate (default: the rows, at most 1,000,000).
    #[arg(long)]
    pub raw_messages: Option<u64>,
    /// Part files the month is cut into for the concurrent run.
    #[arg(long, default_value_t = 10)]
    pub parts: usize,
    /// Give up on the concurrent run after this many seconds.
    #[arg(long, default_value_t = 900)]
    pub e2e_timeout_s: u64,
}

/// Errors of the benchmark; each names what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {}: {detail}", path.display())]
    Parquet {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("starting {label}: {source}")]
    Spawn {
        label: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{label} failed ({status}); its log ends with:\n{log_tail}")]
    Failed {
        label: String,
        status: String,
        log_tail: String,
    },
    #[error("generating the synthetic month: {0}")]
    Generate(String),
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    #[error("Kafka: {0}")]
    Kafka(String),
    #[error(transparent)]
    KafkaIo(#[from] KafkaIoError),
    #[error("Cassandra: {0}")]
    Cassandra(String),
    #[error("interrupted")]
    Interrupted,
    #[error("{0}")]
    Other(String),
}

/// Items over the time they took.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    pub items: u64,
    pub took: Duration,
    /// The peak RSS of the process that did it, where one process did.
    pub peak_rss: Option<u64>,
}

impl Throughput {
    pub fn new(items: u64, took: Duration) -> Self {
        Self {
            items,
            took,
            peak_rss: None,
        }
    }

    pub fn with_peak_rss(self, peak_rss: Option<u64>) -> Self {
        Self { peak_rss, ..self }
    }

    pub fn per_second(&self) -> f64 {
        self.items as f64 / self.took.as_secs_f64().max(1e-9)
    }
}

const MONTH: Month = Month {
    year: 2023,
    month: 1,
};

/// The synthetic month's file, generated when missing.
async fn synthetic_month(args: &BenchArgs) -> Result<PathBuf, BenchError> {
    std::fs::create_dir_all(&args.data_dir).map_err(|source| BenchError::Io {
        what: "creating",
        path: args.data_dir.clone(),
        source,
    })?;
    let path = args.data_dir.join(format!(
        "yellow_tripdata_{MONTH}_synthetic_{}_{}_v{}.parquet",
        args.rows,
        args.seed,
        synthetic::GENERATOR_VERSION
    ));
    if args.regenerate || !path.exists() {
        let t0 = Instant::now();
        let spec = synthetic::SyntheticSpec {
            rows: args.rows,
            seed: args.seed,
            month: MONTH,
            ..Default::default()
        };
        let target = path.clone();
        let g = tokio::task::spawn_blocking(move || synthetic::generate(&spec, &target))
            .await
            .map_err(|e| BenchError::Generate(e.to_string()))?
            .map_err(BenchError::Generate)?;
        eprintln!(
            "bench: generated {} rows ({} late) into {} in {:.1} s",
            g.rows,
            g.late_rows,
            path.display(),
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(path)
}

fn services(args: &BenchArgs) -> Result<Services, String> {
    let (Some(database_url), Some(kafka_bootstrap)) =
        (args.database_url.clone(), args.kafka_bootstrap.clone())
    else {
        return Err(
            "DATABASE_URL and KAFKA_BOOTSTRAP are not both set (scripts/bench.sh sets them)".into(),
        );
    };
    let points: Vec<String> = args
        .cassandra_contact_points
        .iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    Ok(Services {
        database_url,
        kafka_bootstrap,
        cassandra: (!points.is_empty()).then(|| CassandraAt {
            contact_points: points,
            local_datacenter: args.cassandra_local_datacenter.clone(),
        }),
    })
}

/// What every backend measurement works with.
pub struct Harness<'a> {
    pub launcher: &'a Launcher,
    /// This binary, whose subcommands are the stages.
    pub worker: &'a Path,
    pub kafka: &'a KafkaSettings,
    pub pg: &'a sqlx::PgPool,
    pub cassandra: Option<&'a Session>,
}

/// What the backend part produced, each part on its own.
struct BackendFigures {
    stages: Result<stages::StageFigures, String>,
    concurrent: Result<concurrent::ConcurrentFigures, String>,
}

/// Rows 3 to 7 in pipelines of their own, cleaned up whatever happens.
async fn backends(
    args: &BenchArgs,
    services: &Services,
    launcher: &Launcher,
    worker: &Path,
    input: &Path,
    scratch: &Path,
) -> Result<BackendFigures, BenchError> {
    let pg = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&services.database_url)
        .await
        .map_err(|e| BenchError::Postgres(format!("connecting: {e}")))?;
    let kafka = KafkaSettings::plain(services.kafka_bootstrap.clone());
    let cassandra: Option<Session> = match &services.cassandra {
        Some(at) => Some(scratch::cassandra_session(at).await?),
        None => None,
    };
    let base = format!(
        "bench_{}_{}",
        chrono::Utc::now().format("%Y%m%d%H%M%S"),
        std::process::id()
    );
    let harness = Harness {
        launcher,
        worker,
        kafka: &kafka,
        pg: &pg,
        cassandra: cassandra.as_ref(),
    };
    let one_by_one = Pipeline::new(services, scratch, &format!("{base}_stages"))?;
    let together = Pipeline::new(services, scratch, &format!("{base}_e2e"))?;

    let work = async {
        let stages = async {
            one_by_one
                .create(&kafka, cassandra.as_ref(), args.partitions)
                .await?;
            let raw = args
                .raw_messages
                .unwrap_or_else(|| (args.rows as u64).min(1_000_000));
            stages::measure(&harness, &one_by_one, input, raw).await
        }
        .await
        .map_err(|e| e.to_string());
        let concurrent = async {
            together
                .create(&kafka, cassandra.as_ref(), args.partitions)
                .await?;
            let parts_dir = scratch.join("parts");
            std::fs::create_dir_all(&parts_dir).map_err(|source| BenchError::Io {
                what: "creating",
                path: parts_dir.clone(),
                source,
            })?;
            let (input, dir, parts) = (input.to_owned(), parts_dir.clone(), args.parts);
            let files = tokio::task::spawn_blocking(move || {
                split::split(&input, &dir, &MONTH.to_string(), parts)
            })
            .await
            .map_err(|e| BenchError::Other(format!("splitting the month: {e}")))??;
            concurrent::measure(
                &harness,
                &together,
                &files,
                Duration::from_secs(args.e2e_timeout_s),
            )
            .await
        }
        .await
        .map_err(|e| e.to_string());
        BackendFigures { stages, concurrent }
    };
    let outcome = tokio::select! {
        figures = work => Ok(figures),
        _ = tokio::signal::ctrl_c() => Err(BenchError::Interrupted),
    };
    eprintln!("bench: dropping the run's schemas, topics and keyspaces");
    let mut failures = Vec::new();
    for p in [&one_by_one, &together] {
        failures.extend(p.drop_all(&pg, &kafka, cassandra.as_ref()).await);
    }
    for f in &failures {
        eprintln!("bench: cleanup: {f}");
    }
    outcome
}

async fn run(args: BenchArgs) -> Result<bool, BenchError> {
    let input = synthetic_month(&args).await?;
    let worker = std::env::current_exe().map_err(|source| BenchError::Io {
        what: "locating",
        path: PathBuf::from("taxistream-worker"),
        source,
    })?;
    let scratch = tempfile::Builder::new()
        .prefix("taxistream-bench-")
        .tempdir()
        .map_err(|source| BenchError::Io {
            what: "creating a scratch directory in",
            path: std::env::temp_dir(),
            source,
        })?;
    let launcher = Launcher::new(scratch.path());
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    let local = tokio::select! {
        l = local::measure(
            &launcher,
            &worker,
            &input,
            scratch.path(),
            args.duckdb_python.as_deref(),
            args.repeats,
        ) => l?,
        _ = tokio::signal::ctrl_c() => return Err(BenchError::Interrupted),
    };
    let backend = match services(&args) {
        Ok(s) => backends(&args, &s, &launcher, &worker, &input, scratch.path())
            .await
            .map_err(|e| e.to_string()),
        Err(why) => Err(why),
    };
    let (stages, concurrent) = match &backend {
        Ok(b) => (
            b.stages.as_ref().map_err(String::as_str),
            b.concurrent.as_ref().map_err(String::as_str),
        ),
        Err(e) => (Err(e.as_str()), Err(e.as_str())),
    };
    report::Report {
        date,
        machine: report::machine(),
        rows: args.rows,
        local: &local,
        stages,
        concurrent,
    }
    .print();
    Ok(local.duckdb.is_ok() && stages.is_ok() && concurrent.is_ok())
}

/// CLI entry: fails when any figure could not be measured.
pub async fn main(args: BenchArgs) -> ExitCode {
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}
