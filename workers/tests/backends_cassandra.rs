//! The sink stage against a real Cassandra (or ScyllaDB). No CQL server can
//! be installed here, so this runs only when `CASSANDRA_CONTACT_POINTS` is
//! set (e.g. `127.0.0.1:9042`), and prints a skip line otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backends_support;

use std::sync::Arc;
use std::time::Duration;

use backends_support::Pipeline;
use rdkafka::producer::{FutureProducer, FutureRecord};
use taxistream_worker::io::cassandra::{ResultStore, table_ddl};
use taxistream_worker::io::codec;
use taxistream_worker::io::kafka::KafkaSettings;
use taxistream_worker::window::{GroupBy, WindowResult};

fn contact_points() -> Option<Vec<String>> {
    match std::env::var("CASSANDRA_CONTACT_POINTS") {
        Ok(v) if !v.trim().is_empty() => Some(v.split(',').map(|s| s.trim().to_owned()).collect()),
        _ => {
            eprintln!("skipped: no Cassandra (CASSANDRA_CONTACT_POINTS unset)");
            None
        }
    }
}

fn result(key: i32, start: i64, count: u64) -> WindowResult {
    WindowResult {
        group_by: GroupBy::PickupZone,
        key,
        key_name: Arc::from("JFK Airport"),
        zone: Some(Arc::from("JFK Airport")),
        borough: Some(Arc::from("Queens")),
        window_start: start,
        window_end: start + 300_000_000,
        count,
        passengers: count as i64,
        max_passengers: Some(1),
        sum_fare: 10.0 * count as f64,
        sum_tip: 1.0,
        sum_tolls: 0.0,
        sum_total: 12.0 * count as f64,
        avg_distance: 3.0,
        avg_duration_s: 900.0,
        avg_speed_mph: Some(12.0),
        avg_tip_ratio: Some(0.1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_upserts_window_results_idempotently() {
    let Some(points) = contact_points() else {
        return;
    };
    let Some((db, kafka)) = backends_support::services() else {
        return;
    };
    let mut p = Pipeline::new(&db, &kafka, 300, 600).await;
    p.config.cassandra.contact_points = points;
    p.config.cassandra.keyspace = "taxistream_test".into();
    std::fs::write(&p.config_path, serde_yaml::to_string(&p.config).unwrap()).unwrap();

    let store = ResultStore::connect(&p.config.cassandra, 8).await;
    let store = match store {
        Ok(s) => s,
        Err(_) => {
            // The table does not exist yet: create it (the operator does this in a cluster).
            let session = scylla::client::session_builder::SessionBuilder::new()
                .known_nodes(&p.config.cassandra.contact_points)
                .build()
                .await
                .unwrap();
            session
                .query_unpaged(
                    "CREATE KEYSPACE IF NOT EXISTS taxistream_test WITH replication = \
                     {'class': 'SimpleStrategy', 'replication_factor': 1}",
                    (),
                )
                .await
                .unwrap();
            session
                .query_unpaged(
                    table_ddl("taxistream_test", &p.config.cassandra.table, 0),
                    (),
                )
                .await
                .unwrap();
            ResultStore::connect(&p.config.cassandra, 8).await.unwrap()
        }
    };
    drop(store);

    let producer: FutureProducer = KafkaSettings::plain(kafka.clone()).producer().unwrap();
    let t0 = 1_738_368_000_000_000i64;
    let results: Vec<WindowResult> = (0..50)
        .map(|i| result(1 + i % 5, t0 + (i / 5) as i64 * 300_000_000, 1 + i as u64))
        .collect();
    // Every result twice, as after an aggregate restart: the upsert keeps one row each.
    for r in results.iter().chain(results.iter()) {
        let value = codec::encode_window(r).unwrap();
        producer
            .send(
                FutureRecord::<str, [u8]>::to(&p.config.topics.aggregates)
                    .key("k")
                    .payload(&value),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    p.run("sink", &["--idle-ms", "2000"]);

    let store = ResultStore::connect(&p.config.cassandra, 8).await.unwrap();
    let rows = store
        .session()
        .query_unpaged(
            format!(
                "SELECT count(*) FROM taxistream_test.{}",
                p.config.cassandra.table
            ),
            (),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .single_row::<(i64,)>()
        .unwrap();
    assert_eq!(rows.0, 50);
}
