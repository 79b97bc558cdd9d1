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
use taxistream_worker::stage::ingest::ingest;
use taxistream_worker::trip::Dataset;

const HEADER: &str = "VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,trip_distance,RatecodeID,store_and_fwd_flag,PULocationID,DOLocationID,payment_type,fare_amount,extra,mta_tax,tip_amount,tolls_amount,improvement_surcharge,total_amount";

fn row(minute: u32, zone: &str, fare: &str) -> String {
    format!(
        "1,2024-03-01 10:{minute:02}:00,2024-03-01 10:{:02}:00,1,1.5,1,N,{zone},236,1,{fare},0,0.5,2,0,1,16\n",
        minute + 5
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_counts_each_row_once_and_expands_directories() {
    let url = backends_support::postgres_url();
    let store = PgStore::connect(
        &PgSettings {
            url: Secret::new(url),
            ssl_mode: None,
            ca_file: None,
            schema: backends_support::unique("ing"),
            table: "trips".into(),
        },
        4,
    )
    .await
    .unwrap();
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
