//! Each backend stage on its own, one after another, each a
//! `taxistream-worker` process run to the end of its input: ingest (file →
//! PostgreSQL), relay (PostgreSQL → trips topic), aggregate (trips topic →
//! windows → aggregates topic) and, with Cassandra, sink (aggregates topic →
//! Cassandra). The broker's raw produce rate is measured first, in the same
//! run.

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use super::probe::Probe;
use super::scratch::Pipeline;
use super::{BenchError, Harness, Throughput, raw_produce};

/// How long without input the aggregate and the sink wait before they
/// exit; not part of their work, so subtracted from their time.
const IDLE: Duration = Duration::from_secs(2);

/// Rows 3 to 6 of the table.
#[derive(Debug)]
pub struct StageFigures {
    pub raw_produce: Throughput,
    pub ingest: Throughput,
    pub relay: Throughput,
    pub aggregate: Throughput,
    /// Why the sink was not measured, when it was not.
    pub sink: Result<Throughput, String>,
    pub windows: u64,
    pub trips_in_windows: u64,
    pub dead_letters: u64,
}

fn args(stage: &str, config: &Path, extra: &[&str]) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec![stage.into(), "--config".into(), config.into()];
    a.extend(extra.iter().map(OsString::from));
    a
}

pub async fn measure(
    h: &Harness<'_>,
    pipeline: &Pipeline,
    input: &Path,
    raw_messages: u64,
) -> Result<StageFigures, BenchError> {
    let (launcher, worker, kafka) = (h.launcher, h.worker, h.kafka);
    let cfg = &pipeline.config;
    eprintln!("bench: broker raw produce, {raw_messages} messages");
    let raw = raw_produce::measure(kafka, &pipeline.topics.raw, raw_messages).await?;
    let raw_produce = Throughput::new(raw_messages, raw);

    eprintln!("bench: ingest");
    let input_arg = input.display().to_string();
    let m = launcher
        .measure(
            "ingest",
            worker,
            &args("ingest", cfg, &["--exit-when-idle", "--input", &input_arg]),
        )
        .await?;
    let landed = pipeline.landed(h.pg).await?;
    let ingest = Throughput::new(landed, m.wall).with_peak_rss(m.peak_rss);

    eprintln!("bench: relay");
    let m = launcher
        .measure("relay", worker, &args("relay", cfg, &["--exit-when-idle"]))
        .await?;
    let relay = Throughput::new(landed, m.wall).with_peak_rss(m.peak_rss);

    eprintln!("bench: aggregate");
    let idle_ms = IDLE.as_millis().to_string();
    let m = launcher
        .measure(
            "aggregate",
            worker,
            &args(
                "aggregate",
                cfg,
                &["--exit-when-idle", "--idle-ms", &idle_ms],
            ),
        )
        .await?;
    let aggregate = Throughput::new(landed, m.wall.saturating_sub(IDLE)).with_peak_rss(m.peak_rss);
    // Read once the aggregate is done, so as not to take CPU from it.
    let probe = Probe::start(kafka, &pipeline.topics, false)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (trips, dead) = probe.trips_and_dead_letters();
        if trips + dead >= landed || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = probe.finish().await?;

    let sink = if h.cassandra.is_some() {
        eprintln!("bench: sink");
        let m = launcher
            .measure(
                "sink",
                worker,
                &args("sink", cfg, &["--exit-when-idle", "--idle-ms", &idle_ms]),
            )
            .await?;
        Ok(Throughput::new(seen.windows, m.wall.saturating_sub(IDLE)).with_peak_rss(m.peak_rss))
    } else {
        Err("not measured: CASSANDRA_CONTACT_POINTS is not set, so there is no Cassandra to write to".into())
    };
    Ok(StageFigures {
        raw_produce,
        ingest,
        relay,
        aggregate,
        sink,
        windows: seen.windows,
        trips_in_windows: seen.trips,
        dead_letters: seen.dead_letters,
    })
}
