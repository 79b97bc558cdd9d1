//! End to end with the stages running at the same time, as the operator
//! deploys them: separate `taxistream-worker` processes for ingest, relay,
//! aggregate and (with Cassandra) sink on the real services. The month goes
//! in as consecutive part files ([`super::split`]); the run is over when the
//! windows in the results store hold every landed trip that was not
//! dead-lettered.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use scylla::client::session::Session;

use super::probe::{self, Probe};
use super::process::Running;
use super::scratch::Pipeline;
use super::{BenchError, Harness, Throughput};

/// How long a stopped stage may take to checkpoint and leave.
const GRACE: Duration = Duration::from_secs(30);

/// Where the latency was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultsStore {
    AggregatesTopic,
    Cassandra,
}

/// Row 7 of the table.
#[derive(Debug)]
pub struct ConcurrentFigures {
    pub parts: usize,
    /// Landed trips over the time from starting the stages to the last
    /// result in the results store.
    pub throughput: Throughput,
    pub windows: u64,
    pub trips_in_windows: u64,
    pub dead_letters: u64,
    pub store: ResultsStore,
    pub latency_p50_ms: Option<i64>,
    pub latency_p99_ms: Option<i64>,
    pub latency_samples: usize,
}

fn args(stage: &str, config: &Path) -> Vec<OsString> {
    vec![stage.into(), "--config".into(), config.into()]
}

pub async fn measure(
    h: &Harness<'_>,
    pipeline: &Pipeline,
    parts: &[PathBuf],
    timeout: Duration,
) -> Result<ConcurrentFigures, BenchError> {
    let (launcher, worker, kafka, pg) = (h.launcher, h.worker, h.kafka, h.pg);
    let cfg = &pipeline.config;
    let table = pipeline
        .results_table
        .as_ref()
        .map(|(ks, t)| taxistream_crds::results_table::qualified(ks, t));
    let sink_table = h.cassandra.zip(table.as_deref());
    let probe = Probe::start(kafka, &pipeline.topics, sink_table.is_some())?;

    eprintln!(
        "bench: end to end, stages concurrently, {} part files",
        parts.len()
    );
    let started = Instant::now();
    let started_wall = SystemTime::now();
    let mut stages: Vec<Running> = vec![
        launcher.spawn("e2e-aggregate", worker, &args("aggregate", cfg))?,
        launcher.spawn("e2e-relay", worker, &args("relay", cfg))?,
    ];
    if sink_table.is_some() {
        stages.push(launcher.spawn("e2e-sink", worker, &args("sink", cfg))?);
    }
    let mut ingest_args = args("ingest", cfg);
    ingest_args.push("--exit-when-idle".into());
    for p in parts {
        ingest_args.push("--input".into());
        ingest_args.push(p.into());
    }
    let mut ingest = Some(launcher.spawn("e2e-ingest", worker, &ingest_args)?);

    let outcome = async {
        let mut landed = None;
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if started.elapsed() > timeout {
                return Err(BenchError::Other(format!(
                    "end to end: not through after {} s (landed {}; seen {})",
                    timeout.as_secs(),
                    landed.map_or("not yet known".into(), |n: u64| n.to_string()),
                    probe.summary()
                )));
            }
            for s in &mut stages {
                s.check_alive()?;
            }
            if let Some(i) = ingest.as_mut()
                && i.exited()?
            {
                ingest = None;
                landed = Some(pipeline.landed(pg).await?);
            }
            let Some(landed) = landed else { continue };
            let (trips, dead) = probe.trips_and_dead_letters();
            if trips + dead >= landed {
                return Ok(landed);
            }
        }
    }
    .await;
    let landed = match outcome {
        Ok(v) => v,
        Err(e) => {
            for s in stages {
                let _ = s.stop(GRACE).await;
            }
            let _ = probe.finish().await;
            return Err(e);
        }
    };
    let seen = probe.finish().await?;
    let read_back = match sink_table {
        Some((session, table)) => {
            cassandra_read_back(session, table, &seen, started, started_wall, timeout).await
        }
        None => Ok((
            ResultsStore::AggregatesTopic,
            seen.last_at.map_or(started.elapsed(), |t| t - started),
            seen.topic_latency_ms.clone(),
        )),
    };
    let mut stop_errors = Vec::new();
    for s in stages {
        if let Err(e) = s.stop(GRACE).await {
            stop_errors.push(e.to_string());
        }
    }
    let (store, end, mut latencies) = read_back?;
    if !stop_errors.is_empty() {
        return Err(BenchError::Other(stop_errors.join("; ")));
    }
    Ok(ConcurrentFigures {
        parts: parts.len(),
        throughput: Throughput::new(landed, end),
        windows: seen.windows,
        trips_in_windows: seen.trips,
        dead_letters: seen.dead_letters,
        store,
        latency_p50_ms: probe::quantile(&mut latencies, 0.50),
        latency_p99_ms: probe::quantile(&mut latencies, 0.99),
        latency_samples: latencies.len(),
    })
}

/// With Cassandra as the results store: waits for the sink to write every
/// window seen; then the time to the last write, and the latencies.
async fn cassandra_read_back(
    session: &Session,
    table: &str,
    seen: &probe::Seen,
    started: Instant,
    started_wall: SystemTime,
    timeout: Duration,
) -> Result<(ResultsStore, Duration, Vec<i64>), BenchError> {
    wait_for_rows(session, table, seen.windows, started, timeout).await?;
    let (latencies, last_ms) = probe::cassandra_latencies(session, table, &seen.closed_ms).await?;
    let start_ms = started_wall
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let end = match last_ms {
        Some(l) => Duration::from_millis((l - start_ms).max(0) as u64),
        None => seen.last_at.map_or(started.elapsed(), |t| t - started),
    };
    Ok((ResultsStore::Cassandra, end, latencies))
}

/// Waits until the sink has written one row per window seen.
async fn wait_for_rows(
    session: &Session,
    table: &str,
    windows: u64,
    started: Instant,
    timeout: Duration,
) -> Result<(), BenchError> {
    loop {
        let rows = probe::cassandra_rows(session, table).await?;
        if rows >= windows {
            return Ok(());
        }
        if started.elapsed() > timeout {
            return Err(BenchError::Other(format!(
                "end to end: {rows} of {windows} windows in Cassandra after {} s",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
