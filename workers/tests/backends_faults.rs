//! Stage defects that only show against real backends: what `ingest`
//! counts, a broker that cannot be used (readiness, `--exit-when-idle`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backends_support;

use std::io::Write;
use std::time::Duration;

use backends_support::{Pipeline, http_get, probe_addr, wait_timeout};
use taxistream_crds::worker_config::SaslConfig;
use taxistream_worker::config::Secret;
use taxistream_worker::io::postgres::{PgSettings, PgStore};
use taxistream_worker::metrics::Metrics;
use taxistream_worker::shutdown::Shutdown;
use taxistream_worker::source::http::FetchOptions;
use taxistream_worker::stage::ingest::{IngestStats, ingest};
use taxistream_worker::trip::Dataset;

const HEADER: &str = "VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,trip_distance,RatecodeID,store_and_fwd_flag,PULocationID,DOLocationID,payment_type,fare_amount,extra,mta_tax,tip_amount,tolls_amount,improvement_surcharge,total_amount";

fn row(minute: u32, zone: &str, fare: &str) -> String {
    format!(
        "1,2024-03-01 10:{minute:02}:00,2024-03-01 10:{:02}:00,1,1.5,1,N,{zone},236,1,{fare},0,0.5,2,0,1,16\n",
        minute + 5
    )
}

/// A landing store in a schema of its own.
async fn landing_store() -> PgStore {
    PgStore::connect(
        &PgSettings {
            url: Secret::new(backends_support::postgres_url()),
            ssl_mode: None,
            ca_file: None,
            schema: backends_support::unique("ing"),
            table: "trips".into(),
        },
        4,
    )
    .await
    .unwrap()
}

/// `rows` valid March-2024 trips as CSV, gzipped.
fn gzipped_month(rows: usize) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(format!("{HEADER}\n").as_bytes()).unwrap();
    for i in 0..rows {
        gz.write_all(row((i % 50) as u32, &(1 + i % 265).to_string(), "12.5").as_bytes())
            .unwrap();
    }
    gz.finish().unwrap()
}

/// Runs `ingest` over `input` alone.
async fn ingest_one(
    store: &PgStore,
    input: &std::path::Path,
    metrics: &Metrics,
    shutdown: &Shutdown,
) -> IngestStats {
    ingest(
        store,
        &[input.display().to_string()],
        None,
        Dataset::Yellow,
        input.parent().unwrap(),
        FetchOptions::default(),
        metrics,
        shutdown,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_counts_each_row_once_and_expands_directories() {
    let store = landing_store().await;
    let dir = tempfile::tempdir().unwrap();
    // 3 good rows, 1 that does not parse, 1 that fails validation.
    let text = format!(
        "{HEADER}\n{}{}{}{}{}",
        row(0, "132", "12.5"),
        row(1, "132", "abc"),
        row(2, "999", "12.5"),
        row(3, "138", "12.5"),
        row(4, "132", "9"),
    );
    std::fs::write(dir.path().join("yellow_tripdata_2024-03.csv"), &text).unwrap();
    // The same month gzipped, in the same directory: 2 more rows.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(format!("{HEADER}\n{}{}", row(5, "1", "3"), row(6, "2", "4")).as_bytes())
        .unwrap();
    std::fs::write(
        dir.path().join("yellow_tripdata_2024-03-b.csv.gz"),
        gz.finish().unwrap(),
    )
    .unwrap();
    let empty = tempfile::tempdir().unwrap();

    let metrics = Metrics::new("ingest");
    let (_trigger, shutdown) = Shutdown::manual();
    let stats = ingest(
        &store,
        &[
            dir.path().display().to_string(),
            empty.path().display().to_string(),
        ],
        None,
        Dataset::Yellow,
        dir.path(),
        FetchOptions::default(),
        &metrics,
        &shutdown,
    )
    .await
    .unwrap();
    assert_eq!(stats.sources, 2, "{stats:?}");
    assert_eq!(stats.read, 7, "every row counted once: {stats:?}");
    assert_eq!((stats.inserted, stats.dead_letters), (5, 2), "{stats:?}");
    assert_eq!(stats.failed.len(), 1, "{stats:?}");
    assert!(
        stats.failed[0].contains(&empty.path().display().to_string()),
        "{:?}",
        stats.failed
    );
    let text = metrics.encode().unwrap();
    assert!(
        text.contains(r#"taxistream_records_in_total{stage="ingest"} 7"#),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_cut_off_mid_way_keeps_the_batches_landed_before_the_cut() {
    let store = landing_store().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("yellow_tripdata_2024-03.csv.gz");
    let whole = gzipped_month(100_000);
    // Cut well past the first batch of 65,536 rows and before the last.
    std::fs::write(&path, &whole[..whole.len() * 9 / 10]).unwrap();
    let name = path.display().to_string();
    let (_trigger, shutdown) = Shutdown::manual();

    let metrics = Metrics::new("ingest");
    let stats = ingest_one(&store, &path, &metrics, &shutdown).await;
    assert_eq!(stats.failed.len(), 1, "{stats:?}");
    assert!(stats.failed[0].contains(&name), "{:?}", stats.failed);
    assert_eq!(
        stats.sources, 0,
        "a cut-off source is not complete: {stats:?}"
    );
    assert_eq!((stats.read, stats.inserted), (65_536, 65_536), "{stats:?}");
    assert_eq!(store.progress(&name).await.unwrap(), Some((65_536, false)));
    let text = metrics.encode().unwrap();
    assert!(
        text.contains(r#"taxistream_dead_letters_total{stage="ingest",reason="source_error"} 1"#),
        "{text}"
    );

    // Read again, it fails at the same place and lands nothing twice.
    let stats = ingest_one(&store, &path, &Metrics::new("ingest"), &shutdown).await;
    assert_eq!((stats.failed.len(), stats.inserted), (1, 0), "{stats:?}");
    let landed: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {}",
        store.qualified_table()
    )))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(landed, 65_536);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_ingest_after_a_landed_batch_and_a_restart_lands_the_rest_once() {
    const ROWS: usize = 600_000;
    let store = landing_store().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("yellow_tripdata_2024-03.csv.gz");
    std::fs::write(&path, gzipped_month(ROWS)).unwrap();
    let name = path.display().to_string();

    // Shutdown is requested as soon as the first batch has landed.
    let (trigger, shutdown) = Shutdown::manual();
    let watcher = {
        let (store, name) = (store.clone(), name.clone());
        tokio::spawn(async move {
            while store
                .progress(&name)
                .await
                .unwrap()
                .is_none_or(|p| p.0 == 0)
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            trigger.fire();
        })
    };
    let first = ingest_one(&store, &path, &Metrics::new("ingest"), &shutdown).await;
    watcher.await.unwrap();
    assert!(first.failed.is_empty(), "{first:?}");
    assert_eq!(first.sources, 0, "stopped before the end: {first:?}");
    let (landed_to, done) = store.progress(&name).await.unwrap().unwrap();
    assert!(!done);
    assert!(
        0 < first.inserted && first.inserted < ROWS as u64,
        "{first:?}"
    );
    assert_eq!(
        landed_to, first.inserted,
        "the progress covers exactly the rows landed"
    );

    let (_trigger, shutdown) = Shutdown::manual();
    let rest = ingest_one(&store, &path, &Metrics::new("ingest"), &shutdown).await;
    assert_eq!((rest.sources, rest.duplicates), (1, 0), "{rest:?}");
    assert_eq!(first.inserted + rest.inserted, ROWS as u64, "{rest:?}");
    assert_eq!(
        store.progress(&name).await.unwrap(),
        Some((ROWS as u64, true))
    );
    let landed: (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT count(*), count(DISTINCT source_row) FROM {}",
        store.qualified_table()
    )))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(landed, (ROWS as i64, ROWS as i64), "each row landed once");
}

/// How a broker can be unusable.
enum Unusable {
    /// Nothing listens at the address.
    Absent,
    /// The broker is up, but the stage's SASL login cannot succeed.
    RefusesLogin,
}

/// A pipeline whose stages are configured with a broker they cannot use.
async fn pipeline_with(broker: Unusable) -> Pipeline {
    let (db, kafka) = backends_support::services();
    let mut p = Pipeline::new(&db, &kafka, 300, 600).await;
    match broker {
        Unusable::Absent => p.config.kafka.bootstrap_servers = "127.0.0.1:1".into(),
        Unusable::RefusesLogin => {
            let dir = p.config_path.parent().unwrap().to_owned();
            std::fs::write(dir.join("user"), "nobody\n").unwrap();
            std::fs::write(dir.join("password"), "wrong\n").unwrap();
            p.config.kafka.sasl = Some(SaslConfig {
                mechanism: "SCRAM-SHA-512".into(),
                username_file: dir.join("user").display().to_string(),
                password_file: dir.join("password").display().to_string(),
            });
        }
    }
    std::fs::write(&p.config_path, serde_yaml::to_string(&p.config).unwrap()).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_while_the_broker_refuses_the_login() {
    let p = pipeline_with(Unusable::RefusesLogin).await;
    let mut relay = p.spawn("relay", &[]);
    // Until the relay has started it is not ready anyway; then the broker
    // check must keep it so, naming Kafka.
    let mut answers = Vec::new();
    for _ in 0..150 {
        if let Some(answer) = probe_addr(&p, "relay").and_then(|a| http_get(&a, "/readyz")) {
            let named = answer.1.contains("kafka");
            answers.push(answer);
            if named {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    relay.kill().ok();
    relay.wait().ok();
    assert!(answers.iter().all(|a| a.0 == 503), "{answers:?}");
    let last = answers.last().expect("relay served /readyz");
    assert!(last.1.contains("not ready: kafka"), "{answers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_exit_when_idle_fails_when_the_broker_cannot_be_used() {
    let p = pipeline_with(Unusable::Absent).await;
    let mut agg = p.spawn("aggregate", &["--exit-when-idle", "--idle-ms", "500"]);
    let status = wait_timeout(&mut agg, Duration::from_secs(60));
    if status.is_none() {
        agg.kill().ok();
    }
    let logs = p.logs();
    assert!(
        status.is_some_and(|s| !s.success()),
        "aggregate must exit with an error: {status:?}\n{logs}"
    );
    assert!(logs.contains("kafka"), "{logs}");
}
