//! The PostgreSQL landing store against the real server: migrations,
//! idempotent COPY landing, resumable progress, the outbox read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backends_support;

use taxistream_worker::config::Secret;
use taxistream_worker::io::postgres::{PgSettings, PgStore};
use taxistream_worker::trip::{Dataset, SourceRef, Trip};

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

async fn store() -> Option<PgStore> {
    let url = backends_support::postgres_url()?;
    let settings = PgSettings {
        url: Secret::new(url),
        ssl_mode: None,
        ca_file: None,
        schema: backends_support::unique("t"),
        table: "trips".into(),
    };
    Some(PgStore::connect(&settings, 4).await.unwrap())
}

#[tokio::test]
async fn landing_is_idempotent_and_the_outbox_reads_in_landing_order() {
    let Some(store) = store().await else { return };
    let a: Vec<Trip> = (0..1000)
        .map(|r| trip("a.parquet", r, 1 + (r % 265) as i32))
        .collect();
    let first = store.land("a.parquet", &a[..600], &[], 600).await.unwrap();
    assert_eq!((first.inserted, first.duplicates), (600, 0));
    assert_eq!(
        store.progress("a.parquet").await.unwrap(),
        Some((600, false))
    );

    // A restart that re-reads the file from the top lands only what is new.
    let again = store.land("a.parquet", &a, &[], 1000).await.unwrap();
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
        "zone-out-of-range".to_owned(),
        "PULocationID 999".to_owned(),
    )];
    store.land("a.parquet", &[], &rejected, 1001).await.unwrap();
    store.land("a.parquet", &[], &rejected, 1001).await.unwrap();
    let dead: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {}_dead_letters",
        store.qualified_table()
    )))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(dead, 1);

    // The outbox returns every row once, in landing order, with the values landed.
    let mut tx = store.begin_relay("r").await.unwrap();
    assert_eq!(tx.last_id, 0);
    let rows = tx.fetch(700).await.unwrap();
    assert_eq!(rows.len(), 700);
    assert!(rows.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(rows[0].trip, a[0]);
    assert_eq!(rows[699].trip, a[699]);
    let last = rows[699].id;
    tx.commit(last).await.unwrap();
    let mut tx = store.begin_relay("r").await.unwrap();
    assert_eq!(tx.last_id, last);
    let rest = tx.fetch(10_000).await.unwrap();
    assert_eq!(rest.len(), 300);
    assert_eq!(rest[299].trip, a[999]);
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
    let Some(url) = backends_support::postgres_url() else {
        return;
    };
    let Some(ca) = backends_support::pg_tls_ca() else {
        return;
    };
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
