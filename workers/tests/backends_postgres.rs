//! The PostgreSQL landing store against the real server: migrations,
//! idempotent COPY landing, resumable progress, the outbox read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backends_support;

use std::sync::Arc;

use taxistream_worker::config::Secret;
use taxistream_worker::dead_letter::Reason;
use taxistream_worker::io::postgres::{OutboxBatch, PgSettings, PgStore, RelayProgress};
use taxistream_worker::trip::{Dataset, SourceRef, Trip, TripBatch};

fn trip(source: &str, row: u64, zone: i32) -> Trip {
    Trip {
        source: SourceRef {
            source: source.into(),
            row,
        },
        dataset: Dataset::Yellow,
        vendor_id: Some(2),
        pickup: 1_738_368_000_000_000 + row as i64 * 1_000_000,
        dropoff: 1_738_368_600_000_000 + row as i64 * 1_000_000,
        passenger_count: if row.is_multiple_of(3) { None } else { Some(1) },
        trip_distance: 1.5,
        ratecode_id: Some(1),
        store_and_fwd: Some(false),
        pu_location_id: zone,
        do_location_id: 236,
        payment_type: Some(1),
        fare_amount: 10.0,
        extra: 0.0,
        mta_tax: 0.5,
        tip_amount: 2.0,
        tolls_amount: 0.0,
        improvement_surcharge: 1.0,
        total_amount: 13.5,
        congestion_surcharge: Some(2.5),
        airport_fee: None,
        cbd_congestion_fee: Some(0.75),
        ehail_fee: None,
        trip_type: None,
        refund: false,
    }
}

/// `trips` (of one source) as the column batch the store lands.
fn batch(trips: &[Trip]) -> TripBatch {
    let source = trips.first().map_or("", |t| t.source.source.as_str());
    let dataset = trips.first().map_or(Dataset::Yellow, |t| t.dataset);
    TripBatch::from_trips(Arc::from(source), dataset, trips)
}

async fn store() -> PgStore {
    let url = backends_support::postgres_url();
    let settings = PgSettings {
        url: Secret::new(url),
        ssl_mode: None,
        ca_file: None,
        schema: backends_support::unique("t"),
        table: "trips".into(),
    };
    PgStore::connect(&settings, 4).await.unwrap()
}

#[tokio::test]
async fn landing_is_idempotent_and_the_outbox_reads_each_source_in_pickup_order() {
    let store = store().await;
    let a: Vec<Trip> = (0..1000)
        .map(|r| trip("a.parquet", r, 1 + (r % 265) as i32))
        .collect();
    let first = store
        .land("a.parquet", &batch(&a[..600]), &[], 600)
        .await
        .unwrap();
    assert_eq!((first.inserted, first.duplicates), (600, 0));
    assert_eq!(
        store.progress("a.parquet").await.unwrap(),
        Some((600, false))
    );

    // A restart that re-reads the file from the top lands only what is new.
    let again = store
        .land("a.parquet", &batch(&a), &[], 1000)
        .await
        .unwrap();
    assert_eq!((again.inserted, again.duplicates), (400, 600));
    store.complete("a.parquet", 1000).await.unwrap();
    assert_eq!(
        store.progress("a.parquet").await.unwrap(),
        Some((1000, true))
    );
    assert_eq!(store.count().await.unwrap(), 1000);

    let rejected = vec![(
        SourceRef {
            source: "a.parquet".into(),
            row: 1000,
        },
        Reason::ZoneOutOfRange,
        "PULocationID 999".to_owned(),
    )];
    store
        .land("a.parquet", &batch(&[]), &rejected, 1001)
        .await
        .unwrap();
    store
        .land("a.parquet", &batch(&[]), &rejected, 1001)
        .await
        .unwrap();
    let dead: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {}_dead_letters",
        store.qualified_table()
    )))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(dead, 1);

    // A second source, still landing, its rows in reverse pickup order.
    let mut b: Vec<Trip> = (0..50).map(|r| trip("b.csv", r, 7)).collect();
    for (t, pickup) in b.iter_mut().zip((0..50).rev()) {
        t.pickup = a[500].pickup + pickup * 1_000_000;
    }
    store.land("b.csv", &batch(&b), &[], 50).await.unwrap();

    // The outbox returns every row of a completed source once, in (pickup,
    // id) order, with the values landed, and pages from a stored position.
    let idle = std::time::Duration::from_secs(600);
    let mut tx = store.begin_relay("r").await.unwrap();
    assert_eq!((tx.watermark, tx.key_groups), (None, None));
    let sources = tx.sources(idle).await.unwrap();
    assert_eq!(sources.len(), 2);
    let (sa, sb) = (&sources[0], &sources[1]);
    assert_eq!(
        (sa.source.as_str(), sa.completed, sa.position),
        ("a.parquet", true, None)
    );
    assert_eq!(sa.next.map(|n| n.0), Some(a[0].pickup));
    // Still landing: held at its earliest landed pickup.
    assert_eq!(
        (sb.completed, sb.next.map(|n| n.0)),
        (false, Some(a[500].pickup))
    );
    let mut rows = OutboxBatch::default();
    tx.fetch_ordered("a.parquet", None, Some(a[699].pickup), 10_000, &mut rows)
        .await
        .unwrap();
    assert_eq!(rows.ids.len(), 700);
    assert_eq!(rows.trips.len(), 700);
    assert!(rows.trips.pickup.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(rows.trips.row(0), a[0]);
    assert_eq!(rows.trips.row(699), a[699]);
    let last = (rows.trips.pickup[699], rows.ids[699]);
    tx.commit(&RelayProgress {
        positions: vec![("a.parquet".into(), last)],
        watermark: Some(last.0),
        key_groups: Some(3),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut tx = store.begin_relay("r").await.unwrap();
    assert_eq!((tx.watermark, tx.key_groups), (Some(last.0), Some(3)));
    let sources = tx.sources(idle).await.unwrap();
    assert_eq!(sources[0].position, Some(last));
    assert_eq!(sources[0].next.map(|n| n.0), Some(a[700].pickup));
    let mut rest = OutboxBatch::default();
    tx.fetch_ordered("a.parquet", Some(last), None, 10_000, &mut rest)
        .await
        .unwrap();
    assert_eq!(rest.ids.len(), 300);
    assert_eq!(rest.trips.row(299), a[999]);
    tx.commit(&RelayProgress {
        positions: vec![("a.parquet".into(), (rest.trips.pickup[299], rest.ids[299]))],
        finished: vec!["a.parquet".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut tx = store.begin_relay("r").await.unwrap();
    let sources = tx.sources(idle).await.unwrap();
    assert_eq!(sources.len(), 1, "a finished source is no longer listed");
    assert_eq!(tx.published_high().await.unwrap(), Some(a[999].pickup));
    // A source that stopped landing long ago no longer holds anything back.
    assert!(
        tx.sources(std::time::Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
}

/// The landing sink prepares a source's next batch while the one before it
/// is still open; whichever of the two reaches the server first, neither
/// may wait on the other, or the commit in order never comes.
#[tokio::test]
async fn batches_of_a_new_source_prepared_out_of_order_do_not_wait_on_each_other() {
    let store = store().await;
    let trips: Vec<Trip> = (0..1000).map(|r| trip("c.parquet", r, 9)).collect();
    let unregistered = store
        .prepare("c.parquet", &batch(&trips[..600]), &[], 600)
        .await;
    assert!(
        unregistered.is_err_and(|e| e.to_string().contains("not registered")),
        "a batch of a source with no progress row must be refused"
    );

    store.register("c.parquet").await.unwrap();
    let within = std::time::Duration::from_secs(20);
    let second = tokio::time::timeout(
        within,
        store.prepare("c.parquet", &batch(&trips[600..]), &[], 1000),
    )
    .await
    .expect("the second batch waited")
    .unwrap();
    let first = tokio::time::timeout(
        within,
        store.prepare("c.parquet", &batch(&trips[..600]), &[], 600),
    )
    .await
    .expect("the first batch waited on the second, uncommitted one")
    .unwrap();
    first.commit().await.unwrap();
    second.commit().await.unwrap();
    assert_eq!(store.count().await.unwrap(), 1000);
    assert_eq!(
        store.progress("c.parquet").await.unwrap(),
        Some((1000, false))
    );
}

#[tokio::test]
async fn bad_urls_do_not_leak_the_password() {
    let settings = PgSettings {
        url: Secret::new("postgres://user:hunter2@127.0.0.1:1/x?sslmode=bogus"),
        ssl_mode: None,
        ca_file: None,
        schema: "public".into(),
        table: "trips".into(),
    };
    let err = PgStore::connect(&settings, 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(!err.contains("hunter2"), "{err}");
}

#[tokio::test]
async fn verify_full_tls_checks_the_server_certificate_from_a_mounted_ca() {
    let url = backends_support::postgres_url();
    let ca = backends_support::pg_tls_ca();
    let settings = |ssl_mode, ca_file: Option<String>| PgSettings {
        url: Secret::new(url.clone()),
        ssl_mode: Some(ssl_mode),
        ca_file,
        schema: backends_support::unique("tls"),
        table: "trips".into(),
    };
    use taxistream_crds::pipeline::PgSslMode;
    let store = PgStore::connect(&settings(PgSslMode::VerifyFull, Some(ca)), 1)
        .await
        .unwrap();
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(ssl, "the connection is encrypted");
    // The test CA is not among the system roots: verification must fail.
    let err = PgStore::connect(&settings(PgSslMode::VerifyFull, None), 1)
        .await
        .unwrap_err();
    let err = format!("{err:?}").to_lowercase();
    assert!(
        err.contains("certificate") || err.contains("unknownissuer"),
        "{err}"
    );
}
