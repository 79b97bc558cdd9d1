//! The sink stage against a real Cassandra (or ScyllaDB). No CQL server can
//! be installed here, so these tests are `#[ignore]`d: `make test-external`
//! runs them (with `CASSANDRA_CONTACT_POINTS`, e.g. `127.0.0.1:9042`), and
//! run that way without a server they fail rather than pass.
//!
//! Each run works in a keyspace of its own, named
//! `<CASSANDRA_TEST_KEYSPACE_PREFIX>_<pid>_<n>_<nanos>` (prefix
//! `taxistream_test` by default), and drops it at the end, pass or fail.
//! `CASSANDRA_LOCAL_DATACENTER` names the cluster's datacenter
//! (`datacenter1` by default, the name a single-node Cassandra reports).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backends_support;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use backends_support::Pipeline;
use futures::FutureExt;
use rdkafka::producer::{FutureProducer, FutureRecord};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::value::CqlTimestamp;
use taxistream_crds::results_table;
use taxistream_crds::sink::ClusteringOrder;
use taxistream_worker::io::cassandra::{CassandraError, ResultStore, group_key};
use taxistream_worker::io::codec;
use taxistream_worker::io::kafka::KafkaSettings;
use taxistream_worker::window::{GroupBy, WindowResult};

const NEEDS: &str = "set CASSANDRA_CONTACT_POINTS (host:port,…) and run `make test-external`";

fn contact_points() -> Vec<String> {
    let v = std::env::var("CASSANDRA_CONTACT_POINTS").unwrap_or_default();
    let points: Vec<String> = v
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    assert!(!points.is_empty(), "no Cassandra: {NEEDS}");
    points
}

fn local_datacenter() -> String {
    std::env::var("CASSANDRA_LOCAL_DATACENTER")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "datacenter1".into())
}

fn keyspace() -> String {
    let prefix = std::env::var("CASSANDRA_TEST_KEYSPACE_PREFIX")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "taxistream_test".into());
    backends_support::unique(&prefix)
}

async fn session(points: &[String]) -> Session {
    SessionBuilder::new()
        .known_nodes(points)
        .build()
        .await
        .unwrap_or_else(|e| panic!("connecting to Cassandra at {points:?}: {e}"))
}

/// Creates `keyspace` with the results table, runs `body`, and drops the
/// keyspace whatever `body` did.
async fn in_keyspace<F: std::future::Future<Output = ()>>(
    points: &[String],
    keyspace: &str,
    table: &str,
    body: F,
) {
    let admin = session(points).await;
    admin
        .query_unpaged(
            format!(
                "CREATE KEYSPACE {keyspace} WITH replication = \
                 {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
            ),
            (),
        )
        .await
        .unwrap();
    admin
        .query_unpaged(
            results_table::create_table(keyspace, table, ClusteringOrder::default(), 0),
            (),
        )
        .await
        .unwrap();
    let outcome = AssertUnwindSafe(body).catch_unwind().await;
    let dropped = admin
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), ())
        .await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    dropped.unwrap();
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
        sum_fare: 10.25 * count as f64,
        sum_tip: 1.5,
        sum_tolls: 0.0,
        sum_total: 12.75 * count as f64,
        avg_distance: 3.0,
        avg_duration_s: 900.0,
        avg_speed_mph: Some(12.0),
        avg_tip_ratio: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Cassandra: set CASSANDRA_CONTACT_POINTS and run `make test-external`"]
async fn sink_upserts_window_results_idempotently() {
    let points = contact_points();
    let (db, kafka) = backends_support::services();
    let mut p = Pipeline::new(&db, &kafka, 300, 600).await;
    let ks = keyspace();
    p.config.cassandra.contact_points = points.clone();
    p.config.cassandra.local_datacenter = local_datacenter();
    p.config.cassandra.keyspace = ks.clone();
    std::fs::write(&p.config_path, serde_yaml::to_string(&p.config).unwrap()).unwrap();
    let table = p.config.cassandra.table.clone();

    in_keyspace(&points, &ks, &table, async {
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
                    "SELECT group_key, window_start, window_end, key_name, zone, borough, trips, \
                     passengers, sum_fare, sum_total, avg_speed_mph, avg_tip_ratio FROM {ks}.{table}"
                ),
                (),
            )
            .await
            .unwrap()
            .into_rows_result()
            .unwrap();
        type Row = (
            String,
            CqlTimestamp,
            CqlTimestamp,
            String,
            Option<String>,
            Option<String>,
            i64,
            i64,
            f64,
            f64,
            Option<f64>,
            Option<f64>,
        );
        let mut got: Vec<Row> = rows.rows::<Row>().unwrap().map(Result::unwrap).collect();
        got.sort_by_key(|r| (r.0.clone(), r.1.0));
        let mut want: Vec<&WindowResult> = results.iter().collect();
        want.sort_by_key(|r| (group_key(r), r.window_start));
        assert_eq!(got.len(), want.len(), "one row per window and key");
        for (row, r) in got.iter().zip(want) {
            assert_eq!(row.0, group_key(r));
            assert_eq!(row.1.0, r.window_start / 1000, "window_start in ms");
            assert_eq!(row.2.0, r.window_end / 1000, "window_end in ms");
            assert_eq!(row.3, "JFK Airport");
            assert_eq!(
                (row.4.as_deref(), row.5.as_deref()),
                (Some("JFK Airport"), Some("Queens"))
            );
            assert_eq!((row.6, row.7), (r.count as i64, r.passengers));
            assert_eq!((row.8, row.9), (r.sum_fare, r.sum_total));
            assert_eq!((row.10, row.11), (Some(12.0), None), "nulls stay null");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Cassandra: set CASSANDRA_CONTACT_POINTS and run `make test-external`"]
async fn a_local_datacenter_the_cluster_lacks_is_refused() {
    let points = contact_points();
    let (db, kafka) = backends_support::services();
    let mut p = Pipeline::new(&db, &kafka, 300, 600).await;
    let ks = keyspace();
    p.config.cassandra.contact_points = points.clone();
    p.config.cassandra.keyspace = ks.clone();
    let table = p.config.cassandra.table.clone();
    in_keyspace(&points, &ks, &table, async {
        p.config.cassandra.local_datacenter = local_datacenter();
        ResultStore::connect(&p.config.cassandra, 1).await.unwrap();
        p.config.cassandra.local_datacenter = "no_such_dc".into();
        match ResultStore::connect(&p.config.cassandra, 1).await {
            Err(e @ CassandraError::Datacenter { .. }) => {
                assert!(e.to_string().contains("no_such_dc"), "{e}");
            }
            Err(e) => panic!("expected a datacenter error, got {e}"),
            Ok(_) => panic!("a datacenter the cluster lacks was accepted"),
        }
    })
    .await;
}
