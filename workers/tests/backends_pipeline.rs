//! The backend stages as separate processes on the real services:
//! PostgreSQL → relay → Kafka → aggregate → Kafka, with crashes (SIGKILL),
//! two replicas in one group, and bad messages.
//!
//! Expected windows come from the in-process engine over the same trips in
//! pickup order (equal pickups in landing order), the order the relay
//! publishes a landed source in, or from the local `run` job itself. The
//! relay carries the watermark to every partition, so the per-partition
//! engines must give bit-identical results for any number of partitions
//! and aggregate replicas, the last windows included, with no idle timeout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backends_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backends_support::{Pipeline, TRIP_PARTITIONS, http_get, probe_addr, sigkill, wait_timeout};
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use taxistream_worker::config::Secret;
use taxistream_worker::dead_letter::Reason;
use taxistream_worker::io::codec::{self, TripMessage};
use taxistream_worker::io::kafka::KafkaSettings;
use taxistream_worker::io::postgres::{PgSettings, PgStore};
use taxistream_worker::output::{OutputError, ResultWriter};
use taxistream_worker::run::{JobOptions, LocalJob};
use taxistream_worker::sink::dead_letter_file::DiscardDeadLetters;
use taxistream_worker::source::inputs::Inputs;
use taxistream_worker::source::{InputSpec, open_file};
use taxistream_worker::trip::{Dataset, SourceRef, Trip, TripBatch};
use taxistream_worker::validate::{DEFAULT_MONTH_TOLERANCE_DAYS, Month, Validator};
use taxistream_worker::window::{GroupBy, WindowConfig, WindowEngine, WindowResult};
use taxistream_worker::zones::ZoneLookup;

const WINDOW_S: u64 = 300;
const LATENESS_S: u64 = 600;

/// `n` trips over about `n` × 0.25 s of event time, shuffled by up to five
/// minutes, deterministic.
fn synthetic(source: &str, n: u64) -> Vec<Trip> {
    let base = 1_738_368_000_000_000i64; // 2025-02-01 00:00
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|row| {
            let jitter = (next() % 300_000_000) as i64;
            let pickup = base + row as i64 * 250_000 - jitter;
            let zone = 1 + (next() % 265) as i32;
            let fare = (next() % 5000) as f64 / 100.0;
            Trip {
                source: SourceRef {
                    source: source.into(),
                    row,
                },
                dataset: Dataset::Yellow,
                vendor_id: Some(2),
                pickup,
                dropoff: pickup + 600_000_000 + (next() % 600_000_000) as i64,
                passenger_count: if row.is_multiple_of(5) {
                    None
                } else {
                    Some((row % 4) as i32 + 1)
                },
                trip_distance: (next() % 1000) as f64 / 100.0,
                ratecode_id: Some(1),
                store_and_fwd: Some(false),
                pu_location_id: zone,
                do_location_id: 1 + (next() % 265) as i32,
                payment_type: Some(1 + (row % 4) as i32),
                fare_amount: fare,
                extra: 0.0,
                mta_tax: 0.5,
                tip_amount: fare * 0.2,
                tolls_amount: 0.0,
                improvement_surcharge: 1.0,
                total_amount: fare * 1.2 + 1.5,
                congestion_surcharge: Some(2.5),
                airport_fee: None,
                cbd_congestion_fee: None,
                ehail_fee: None,
                trip_type: None,
                refund: false,
            }
        })
        .collect()
}

type Windows = BTreeMap<(i32, i64), WindowResult>;

/// The in-process engine over `trips` in pickup order (the relay's order),
/// closed at end of input.
fn expected(trips: &[Trip]) -> Windows {
    let cfg = WindowConfig::tumbling(WINDOW_S, LATENESS_S, GroupBy::PickupZone).unwrap();
    let mut engine = WindowEngine::new(cfg, ZoneLookup::embedded());
    let mut sorted = trips.to_vec();
    sorted.sort_by(|a, b| {
        (a.pickup, &a.source.source, a.source.row).cmp(&(b.pickup, &b.source.source, b.source.row))
    });
    let batch = TripBatch::from_trips(Arc::from("x"), Dataset::Yellow, &sorted);
    let (mut out, mut late) = (Vec::new(), Vec::new());
    engine.push_batch(&batch, None, &mut out, &mut late);
    engine.flush(&mut out);
    assert!(late.is_empty(), "the test data must have no late records");
    let mut map = Windows::new();
    for r in out {
        assert!(
            map.insert((r.key, r.window_start), r).is_none(),
            "engine emitted a window twice"
        );
    }
    map
}

/// Window results on the aggregates topic, the last one per window winning
/// (what the sink's upserts leave in Cassandra).
fn emitted(p: &Pipeline) -> (Windows, usize) {
    let msgs = p.read_topic(&p.config.topics.aggregates, 1, Duration::from_secs(2));
    let total = msgs.len();
    let mut map = Windows::new();
    for m in msgs {
        assert_eq!(m.header(codec::SCHEMA_HEADER), Some(codec::WINDOW_SCHEMA));
        let r = codec::decode_window(&m.payload).unwrap();
        if let Some(prev) = map.get(&(r.key, r.window_start)) {
            // A re-emission after a crash must carry the same values.
            assert_eq!(prev, &r, "a window was re-emitted with different values");
        }
        map.insert((r.key, r.window_start), r);
    }
    (map, total)
}

fn assert_same(expected: &Windows, got: &Windows) {
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !got.contains_key(k))
        .take(5)
        .collect();
    let extra: Vec<_> = got
        .keys()
        .filter(|k| !expected.contains_key(k))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} windows expected, {} emitted; missing e.g. {missing:?}, unexpected e.g. {extra:?}",
        expected.len(),
        got.len()
    );
    for (k, want) in expected {
        assert_eq!(&got[k], want, "window {k:?} differs");
    }
}

/// Lands `trips` (of one source, in row order) and completes the source,
/// as ingest does.
async fn land(p: &Pipeline, trips: &[Trip]) -> PgStore {
    let store = store(p).await;
    let source = trips
        .first()
        .map_or("synthetic".into(), |t| t.source.source.clone());
    for chunk in trips.chunks(5000) {
        let next = chunk.last().map_or(0, |t| t.source.row + 1);
        store.land(&source, &batch(chunk), &[], next).await.unwrap();
    }
    let next = trips.last().map_or(0, |t| t.source.row + 1);
    store.complete(&source, next).await.unwrap();
    store
}

/// `trips` (of one source) as the column batch the store lands.
fn batch(trips: &[Trip]) -> TripBatch {
    let source = trips.first().map_or("", |t| t.source.source.as_str());
    let dataset = trips.first().map_or(Dataset::Yellow, |t| t.dataset);
    TripBatch::from_trips(Arc::from(source), dataset, trips)
}

async fn store(p: &Pipeline) -> PgStore {
    PgStore::connect(
        &PgSettings {
            url: Secret::new(p.database_url.clone()),
            ssl_mode: None,
            ca_file: None,
            schema: p.config.postgres.schema.clone(),
            table: p.config.postgres.table.clone(),
        },
        2,
    )
    .await
    .unwrap()
}

async fn checkpointed_offsets(store: &PgStore) -> i64 {
    sqlx::query_scalar::<_, Option<i64>>(sqlx::AssertSqlSafe(format!(
        "SELECT sum(next_offset)::bigint FROM {}_aggregate_checkpoints",
        store.qualified_table()
    )))
    .fetch_one(store.pool())
    .await
    .unwrap()
    .unwrap_or(0)
}

async fn relayed(store: &PgStore) -> i64 {
    sqlx::query_scalar::<_, Option<i64>>(sqlx::AssertSqlSafe(format!(
        "SELECT max(last_id) FROM {}_relay_sources",
        store.qualified_table()
    )))
    .fetch_one(store.pool())
    .await
    .unwrap()
    .unwrap_or(0)
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_killed_mid_stream_resumes_to_the_same_windows() {
    let (db, kafka) = backends_support::services();
    let mut p = Pipeline::new(&db, &kafka, WINDOW_S, LATENESS_S).await;
    let trips = synthetic("synthetic", 40_000);
    let store = land(&p, &trips).await;
    // The relay replays the 10,000 s of event time at 1000x, so the stream is
    // still flowing when the aggregate is killed and when it comes back.
    p.config.source.replay_speedup = Some(1000.0);
    std::fs::write(&p.config_path, serde_yaml::to_string(&p.config).unwrap()).unwrap();
    let mut relay = p.spawn("relay", &["--exit-when-idle"]);

    let started = Instant::now();
    let pod = [("POD_NAME", "aggregate-0")];
    let mut agg = p.spawn_with_env("aggregate", &["--commit-interval-ms", "100"], &pod);
    wait_until(
        "a checkpoint a few seconds in",
        Duration::from_secs(60),
        || {
            let store = store.clone();
            async move {
                started.elapsed() > Duration::from_secs(3) && checkpointed_offsets(&store).await > 0
            }
        },
    )
    .await;
    sigkill(&mut agg);
    let at_kill = checkpointed_offsets(&store).await;
    eprintln!(
        "killed aggregate with {at_kill} of {} offsets checkpointed",
        trips.len()
    );
    assert!(
        (at_kill as usize) < trips.len(),
        "the kill came after the end of the stream"
    );

    let restarted = Instant::now();
    // The relay publishes without pauses of seconds, so five idle seconds
    // mean the end of the stream.
    p.run_with_env("aggregate", &["--idle-ms", "5000"], &pod);
    eprintln!("restarted aggregate finished in {:?}", restarted.elapsed());
    let status = wait_timeout(&mut relay, Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.success()),
        "relay failed: {}",
        p.logs()
    );
    let (got, total) = emitted(&p);
    eprintln!("{total} window results emitted for {} windows", got.len());
    let dlq = p.read_topic(&p.config.topics.dead_letters, 1, Duration::from_millis(500));
    assert!(
        dlq.is_empty(),
        "{} dead letters, e.g. {:?}; logs: {}",
        dlq.len(),
        dlq.first(),
        p.logs()
    );
    assert_same(&expected(&trips), &got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_killed_mid_stream_loses_and_double_counts_nothing() {
    let (db, kafka) = backends_support::services();
    let p = Pipeline::new(&db, &kafka, WINDOW_S, LATENESS_S).await;
    let trips = synthetic("synthetic", 20_000);
    let store = land(&p, &trips).await;

    let mut relay = p.spawn("relay", &["--batch", "500"]);
    wait_until("relay progress", Duration::from_secs(60), || {
        let store = store.clone();
        async move { relayed(&store).await > 0 }
    })
    .await;
    sigkill(&mut relay);
    let at_kill = relayed(&store).await;
    eprintln!("killed relay at landing id {at_kill} of {}", trips.len());
    p.run("relay", &["--batch", "500"]);

    let mut batch = codec::TripBatchMessage::default();
    let published: usize = p
        .read_topic(
            &p.config.topics.trips,
            TRIP_PARTITIONS,
            Duration::from_secs(2),
        )
        .iter()
        .filter(|m| m.header(codec::SCHEMA_HEADER) == Some(codec::TRIP_BATCH_SCHEMA))
        .map(|m| {
            codec::decode_trip_batch(&m.payload, &mut batch).unwrap();
            batch.len()
        })
        .sum();
    assert!(
        published >= trips.len(),
        "{published} published < {} landed",
        trips.len()
    );
    eprintln!(
        "{published} trips published for {} landed (copies re-published after the kill are dropped by landing id)",
        trips.len()
    );

    p.run("aggregate", &["--idle-ms", "2000"]);
    let (got, _) = emitted(&p);
    assert_same(&expected(&trips), &got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_aggregate_replicas_in_one_group_give_the_single_replica_result() {
    let (db, kafka) = backends_support::services();
    let p = Pipeline::new(&db, &kafka, WINDOW_S, LATENESS_S).await;
    let trips = synthetic("synthetic", 30_000);
    land(&p, &trips).await;
    p.run("relay", &[]);

    let mut a = p.spawn("aggregate", &["--exit-when-idle", "--idle-ms", "4000"]);
    let mut b = p.spawn("aggregate", &["--exit-when-idle", "--idle-ms", "4000"]);
    for child in [&mut a, &mut b] {
        let status = wait_timeout(child, Duration::from_secs(120));
        assert!(
            status.is_some_and(|s| s.success()),
            "replica failed: {}",
            p.logs()
        );
    }
    let (got, _) = emitted(&p);
    assert_same(&expected(&trips), &got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_go_to_the_dead_letter_topic_with_reasons() {
    let (db, kafka) = backends_support::services();
    let p = Pipeline::new(&db, &kafka, WINDOW_S, LATENESS_S).await;
    let producer: FutureProducer = KafkaSettings::plain(kafka.clone()).producer().unwrap();
    let good = synthetic("bad-test", 3);
    let mut valid = Vec::new();
    codec::encode_trip(
        &TripMessage {
            landing_id: 1,
            watermark: good[0].pickup,
            trip: good[0].clone(),
        },
        &mut valid,
    );
    let mut wrong_version = valid.clone();
    wrong_version[0] = 42;
    let truncated = valid[..30].to_vec();
    let mut bad_zone_trip = good[1].clone();
    bad_zone_trip.pu_location_id = 999;
    let mut bad_zone = Vec::new();
    codec::encode_trip(
        &TripMessage {
            landing_id: 2,
            watermark: good[0].pickup,
            trip: bad_zone_trip,
        },
        &mut bad_zone,
    );
    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        ("garbage", b"\xde\xad\xbe\xef not a trip".to_vec(), None),
        ("empty", Vec::new(), None),
        ("wrong version", wrong_version, Some(codec::TRIP_SCHEMA)),
        ("truncated", truncated, Some(codec::TRIP_SCHEMA)),
        ("wrong schema header", valid.clone(), Some("trip/99")),
        ("invalid zone", bad_zone, Some(codec::TRIP_SCHEMA)),
    ];
    for (i, (_, value, schema)) in cases.iter().enumerate() {
        let mut rec = FutureRecord::<str, [u8]>::to(&p.config.topics.trips)
            .key("7")
            .payload(value.as_slice())
            .partition(i as i32 % TRIP_PARTITIONS);
        if let Some(s) = schema {
            rec = rec.headers(OwnedHeaders::new().insert(Header {
                key: codec::SCHEMA_HEADER,
                value: Some(*s),
            }));
        }
        producer.send(rec, Duration::from_secs(10)).await.unwrap();
    }
    // A valid trip after the bad ones shows the stage kept going.
    let rec = FutureRecord::<str, [u8]>::to(&p.config.topics.trips)
        .key("7")
        .payload(valid.as_slice())
        .partition(0);
    producer.send(rec, Duration::from_secs(10)).await.unwrap();
    // A trip three hours behind it in the same partition: late for its window.
    let mut late_trip = good[2].clone();
    // Another source: within one source a partition only sees increasing
    // pickups, and an earlier one is taken for a re-published copy.
    late_trip.source.source = "another-source".into();
    late_trip.pickup = good[0].pickup - 3 * 3600 * 1_000_000;
    late_trip.dropoff = late_trip.pickup + 600_000_000;
    let mut late = Vec::new();
    codec::encode_trip(
        &TripMessage {
            landing_id: 3,
            watermark: good[0].pickup,
            trip: late_trip,
        },
        &mut late,
    );
    let rec = FutureRecord::<str, [u8]>::to(&p.config.topics.trips)
        .key("7")
        .payload(late.as_slice())
        .partition(0);
    producer.send(rec, Duration::from_secs(10)).await.unwrap();

    // A trip/3 batch with one bad trip among good ones: only the bad one
    // is dead-lettered (as a batch of one), the others count.
    // An hour after the others, in pickup order as the relay publishes.
    let mut batch_trips: Vec<Trip> = synthetic("batch-source", 3);
    for t in &mut batch_trips {
        t.pickup += 3600 * 1_000_000;
        t.dropoff += 3600 * 1_000_000;
    }
    batch_trips.sort_by_key(|t| t.pickup);
    batch_trips[1].pu_location_id = 999;
    let stamps: Vec<i64> = batch_trips.iter().map(|t| t.pickup).collect();
    let mut batch = Vec::new();
    codec::encode_trip_batch(
        &TripBatch::from_trips(Arc::from("batch-source"), Dataset::Yellow, &batch_trips),
        &[10, 11, 12],
        &stamps,
        &[0, 1, 2],
        &mut batch,
    );
    let rec = FutureRecord::<str, [u8]>::to(&p.config.topics.trips)
        .key("1")
        .payload(batch.as_slice())
        .partition(1 % TRIP_PARTITIONS)
        .headers(OwnedHeaders::new().insert(Header {
            key: codec::SCHEMA_HEADER,
            value: Some(codec::TRIP_BATCH_SCHEMA),
        }));
    producer.send(rec, Duration::from_secs(10)).await.unwrap();

    p.run("aggregate", &["--idle-ms", "2000"]);
    let dlq = p.read_topic(&p.config.topics.dead_letters, 1, Duration::from_secs(2));
    let mut reasons: Vec<&str> = dlq
        .iter()
        .map(|m| m.header("taxistream-reason").unwrap())
        .collect();
    reasons.sort_unstable();
    assert_eq!(
        reasons,
        vec![
            "empty",
            "invalid_field",
            "late",
            "truncated",
            "unknown_version",
            "unknown_version",
            "zone_out_of_range",
            "zone_out_of_range"
        ],
        "dead letters: {dlq:?}"
    );
    let mut one = codec::TripBatchMessage::default();
    let from_batch: Vec<_> = dlq
        .iter()
        .filter_map(|m| {
            codec::decode_trip_batch(&m.payload, &mut one).ok()?;
            Some((one.len(), one.landing_id[0], one.trips.row(0)))
        })
        .collect();
    assert!(
        from_batch.contains(&(1, 11, batch_trips[1].clone())),
        "the bad trip of the batch is dead-lettered alone: {from_batch:?}"
    );
    for m in &dlq {
        assert!(
            m.header("taxistream-origin")
                .unwrap()
                .starts_with(&p.config.topics.trips)
        );
        assert_eq!(m.header("taxistream-stage"), Some("aggregate"));
        assert!(!m.header("taxistream-detail").unwrap().is_empty());
    }
    let (got, _) = emitted(&p);
    assert_eq!(
        got.values().map(|r| r.count).sum::<u64>(),
        3,
        "the valid trip and the batch's two good trips are counted once"
    );
}

/// The rows of a real sample that pass validation, in file order: what
/// ingest lands and the local `run` job windows.
fn valid_rows(path: &std::path::Path) -> (Vec<Trip>, usize) {
    let name = path.display().to_string();
    let mut reader = open_file(path, &name, Dataset::Yellow).unwrap();
    let mut validator = Validator::new(Month::from_name(&name), DEFAULT_MONTH_TOLERANCE_DAYS);
    let (mut trips, mut rejected, mut valid) = (Vec::new(), 0, Vec::new());
    while let Some(b) = reader.next_batch().unwrap() {
        rejected += b.rejects.len();
        validator.check(&b.trips, &mut valid, |_| rejected += 1);
        trips.extend(
            (0..b.trips.len())
                .filter(|&i| valid[i])
                .map(|i| b.trips.row(i)),
        );
    }
    (trips, rejected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_sample_lands_idempotently_resumes_and_streams_to_the_in_process_windows() {
    let (db, kafka) = backends_support::services();
    let sample = backends_support::sample("yellow_tripdata_2025-01_head.parquet");
    let input = backends_support::path_str(&sample);
    let (trips, rejected) = valid_rows(&sample);
    eprintln!("{} valid rows, {rejected} rejected", trips.len());
    // The default lateness: the relay publishes the landed file by pickup.
    let p = Pipeline::new(&db, &kafka, WINDOW_S, LATENESS_S).await;

    // An ingest interrupted after its first 4000 rows (landed with their progress)...
    let store = store(&p).await;
    let first: Vec<Trip> = trips
        .iter()
        .filter(|t| t.source.row < 4000)
        .cloned()
        .collect();
    store.land(&input, &batch(&first), &[], 4000).await.unwrap();
    // ...resumes after them, and a second run of the same file lands nothing.
    p.run("ingest", &["--input", &input]);
    assert_eq!(store.count().await.unwrap(), trips.len() as i64);
    p.run("ingest", &["--input", &input]);
    assert_eq!(store.count().await.unwrap(), trips.len() as i64);
    assert_eq!(
        store.progress(&input).await.unwrap().map(|p| p.1),
        Some(true)
    );
    let dead: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {}_dead_letters",
        store.qualified_table()
    )))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(
        dead as usize, rejected,
        "every rejected row is kept with its reason"
    );

    p.run("relay", &[]);
    p.run("aggregate", &["--idle-ms", "2000"]);
    let (got, _) = emitted(&p);
    assert_same(&expected(&trips), &got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_serve_probes_and_metrics_and_sigterm_checkpoints_before_exit() {
    let (db, kafka) = backends_support::services();
    let p = Pipeline::new(&db, &kafka, WINDOW_S, LATENESS_S).await;
    let trips = synthetic("synthetic", 5000);
    let store = land(&p, &trips).await;
    p.run("relay", &[]);

    // A long commit interval: only the shutdown path can checkpoint everything.
    let mut agg = p.spawn("aggregate", &["--commit-interval-ms", "600000"]);
    let mut addr = None;
    for _ in 0..200 {
        addr = probe_addr(&p, "aggregate");
        if addr.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let addr = addr.expect("aggregate logged its probe address");
    assert_eq!(http_get(&addr, "/healthz").map(|r| r.0), Some(200));
    assert_eq!(http_get(&addr, "/nope").map(|r| r.0), Some(404));
    wait_until("readiness", Duration::from_secs(30), || {
        let addr = addr.clone();
        async move { http_get(&addr, "/readyz").is_some_and(|r| r.0 == 200) }
    })
    .await;
    let want = format!(
        "taxistream_records_in_total{{stage=\"aggregate\"}} {}",
        trips.len()
    );
    wait_until("every trip consumed", Duration::from_secs(60), || {
        let (addr, want) = (addr.clone(), want.clone());
        async move { http_get(&addr, "/metrics").is_some_and(|r| r.1.contains(&want)) }
    })
    .await;
    // The end-of-source watermark closes the last windows; the markers
    // after the last trip are consumed within moments.
    let want = format!(
        "taxistream_records_out_total{{stage=\"aggregate\"}} {}",
        expected(&trips).len()
    );
    wait_until("every window emitted", Duration::from_secs(60), || {
        let (addr, want) = (addr.clone(), want.clone());
        async move { http_get(&addr, "/metrics").is_some_and(|r| r.1.contains(&want)) }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, metrics) = http_get(&addr, "/metrics").unwrap();
    for series in [
        "taxistream_records_out_total{stage=\"aggregate\"}",
        "taxistream_window_emit_latency_seconds_count",
    ] {
        assert!(
            metrics.contains(series),
            "{series} missing from:\n{metrics}"
        );
    }
    assert_eq!(
        checkpointed_offsets(&store).await,
        0,
        "no periodic checkpoint yet"
    );

    let status = std::process::Command::new("kill")
        .args(["-TERM", &agg.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = wait_timeout(&mut agg, Duration::from_secs(30));
    assert!(
        exit.is_some_and(|s| s.success()),
        "aggregate did not exit cleanly: {}",
        p.logs()
    );
    let in_topic = p
        .read_topic(
            &p.config.topics.trips,
            TRIP_PARTITIONS,
            Duration::from_secs(1),
        )
        .len();
    assert_eq!(
        checkpointed_offsets(&store).await,
        in_topic as i64,
        "the graceful exit checkpointed everything it had consumed (trips and watermark markers)"
    );
    assert!(
        !p.logs().contains(":taxistream@"),
        "a log line shows the database URL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ingest_replicas_share_the_sources_and_land_each_row_once() {
    let (db, kafka) = backends_support::services();
    let p = Pipeline::new(&db, &kafka, WINDOW_S, LATENESS_S).await;
    let a = backends_support::sample("yellow_tripdata_2025-01_head.parquet");
    let b = backends_support::sample("yellow_tripdata_2020-01_head.csv");
    let (ta, ra) = valid_rows(&a);
    let (tb, rb) = valid_rows(&b);
    let (a, b) = (
        backends_support::path_str(&a),
        backends_support::path_str(&b),
    );
    let args = ["--exit-when-idle", "--input", &a, "--input", &b];
    let mut one = p.spawn("ingest", &args);
    let mut two = p.spawn("ingest", &args);
    for child in [&mut one, &mut two] {
        let status = wait_timeout(child, Duration::from_secs(120));
        assert!(
            status.is_some_and(|s| s.success()),
            "ingest failed: {}",
            p.logs()
        );
    }
    let store = store(&p).await;
    assert_eq!(store.count().await.unwrap() as usize, ta.len() + tb.len());
    let dead: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {}_dead_letters",
        store.qualified_table()
    )))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(dead as usize, ra + rb);
}

/// A minimal Socrata endpoint on 127.0.0.1: `$limit`/`$offset` paging over
/// `n` July-2021 records, as the NYC Open Data API serves them.
fn socrata(n: usize) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let records: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "vendorid": "2",
                "tpep_pickup_datetime": format!("2021-07-01T{:02}:{:02}:00.000", i / 60, i % 60),
                "tpep_dropoff_datetime": format!("2021-07-01T{:02}:{:02}:30.000", i / 60, i % 60),
                "passenger_count": "1", "trip_distance": "1.5", "ratecodeid": "1",
                "store_and_fwd_flag": "N", "pulocationid": (1 + i % 5).to_string(),
                "dolocationid": "236", "payment_type": "1", "fare_amount": "10",
                "extra": "0.5", "mta_tax": "0.5", "tip_amount": "2", "tolls_amount": "0",
                "improvement_surcharge": "0.3", "total_amount": "13.3",
                "congestion_surcharge": "2.5"
            })
        })
        .collect();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(200) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let param = |name: &str| -> usize {
                path.split(['?', '&'])
                    .find_map(|kv| {
                        kv.strip_prefix(&format!("%24{name}="))
                            .or(kv.strip_prefix(&format!("${name}=")))
                    })
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            let page: Vec<_> = records
                .iter()
                .skip(param("offset"))
                .take(param("limit"))
                .collect();
            let body = serde_json::to_vec(&page).unwrap();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_data_api_lands_page_by_page_once() {
    let (db, kafka) = backends_support::services();
    let mut p = Pipeline::new(&db, &kafka, WINDOW_S, LATENESS_S).await;
    p.config.source.open_data = Some(taxistream_crds::worker_config::OpenDataConfig {
        domain: socrata(250),
        dataset_id: "m6nq-qud6".into(),
        page_size: 100,
        r#where: None,
        app_token_file: None,
    });
    std::fs::write(&p.config_path, serde_yaml::to_string(&p.config).unwrap()).unwrap();
    p.run("ingest", &[]);
    p.run("ingest", &[]);
    let store = store(&p).await;
    assert_eq!(store.count().await.unwrap(), 250);
    let sources: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT DISTINCT source FROM {}",
        store.qualified_table()
    )))
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(sources.len(), 1);
    assert!(
        sources[0].starts_with("opendata:http://127.0.0.1:"),
        "{sources:?}"
    );
}

struct Collect(std::rc::Rc<std::cell::RefCell<Vec<WindowResult>>>);

impl ResultWriter for Collect {
    fn write(&mut self, results: &[WindowResult]) -> Result<(), OutputError> {
        self.0.borrow_mut().extend_from_slice(results);
        Ok(())
    }
    fn finish(&mut self) -> Result<(), OutputError> {
        Ok(())
    }
}

/// What `taxistream-worker run` emits for `path` with the pipeline's
/// settings (the defaults: event-time order, ten minutes of lateness).
async fn run_groups(path: &std::path::Path) -> Windows {
    run_groups_of(&[path]).await
}

/// As [`run_groups`], for several inputs read in the order given.
async fn run_groups_of(paths: &[&std::path::Path]) -> Windows {
    let results = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let job = LocalJob::new(
        JobOptions {
            window: WindowConfig::tumbling(WINDOW_S, LATENESS_S, GroupBy::PickupZone).unwrap(),
            month_tolerance_days: DEFAULT_MONTH_TOLERANCE_DAYS,
        },
        ZoneLookup::embedded(),
        Box::new(Collect(results.clone())),
    );
    let specs = paths
        .iter()
        .map(|p| InputSpec::Path(p.to_path_buf()))
        .collect();
    let summary = job
        .run(Inputs::new(specs, Dataset::Yellow), &mut DiscardDeadLetters)
        .await
        .unwrap();
    assert_eq!(
        summary.dead_letters.get(Reason::Late),
        0,
        "run loses no trip of a real file to lateness"
    );
    let mut map = Windows::new();
    for r in results.borrow().iter() {
        assert!(map.insert((r.key, r.window_start), r.clone()).is_none());
    }
    map
}

/// Waits until the aggregates topic holds exactly `want` (the stages keep
/// running: no `--exit-when-idle`), then asserts it.
fn await_results(p: &Pipeline, want: &Windows, what: &str) {
    let start = Instant::now();
    loop {
        let (got, _) = emitted(p);
        if &got == want {
            return;
        }
        if start.elapsed() > Duration::from_secs(240) {
            eprintln!("{what}: timed out; logs:\n{}", p.logs());
            assert_same(want, &got);
            panic!("{what}: results differ");
        }
    }
}

fn no_dead_letters(p: &Pipeline, what: &str) {
    let dlq = p.read_topic(&p.config.topics.dead_letters, 1, Duration::from_millis(500));
    assert!(
        dlq.is_empty(),
        "{what}: {} dead letters, e.g. {:?}",
        dlq.len(),
        dlq.first().map(|m| m.headers.clone())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_number_of_partitions_and_replicas_emits_the_run_groups_without_idle_exit() {
    let (db, kafka) = backends_support::services();
    // The demo's sample: 86% of its rows trail the newest pickup before them
    // by more than the ten minutes of allowed lateness, in file order.
    let sample = backends_support::sample("yellow_tripdata_2025-01_head.parquet");
    let (trips, _) = valid_rows(&sample);
    let want = run_groups(&sample).await;
    assert_eq!(
        want.values().map(|r| r.count).sum::<u64>(),
        trips.len() as u64,
        "run windows every valid row"
    );
    let configs = [(1, 1), (2, 2), (6, 1), (6, 2)];
    let mut running = Vec::new();
    for (partitions, replicas) in configs {
        let p = Pipeline::with_partitions(&db, &kafka, WINDOW_S, LATENESS_S, partitions).await;
        land(&p, &trips).await;
        let mut children = vec![p.spawn("relay", &[])];
        for _ in 0..replicas {
            children.push(p.spawn("aggregate", &["--commit-interval-ms", "500"]));
        }
        running.push((
            p,
            children,
            format!("{partitions} partitions, {replicas} replicas"),
        ));
    }
    for (p, children, what) in &mut running {
        let started = Instant::now();
        await_results(p, &want, what);
        eprintln!(
            "{what}: {} groups after {:?}",
            want.len(),
            started.elapsed()
        );
        for c in children.iter_mut() {
            sigkill(c);
        }
        no_dead_letters(p, what);
    }
}

/// Messages of the trips topic by partition: (trip batches, watermark markers).
fn trips_by_partition(p: &Pipeline, partitions: i32) -> Vec<(usize, usize)> {
    let mut out = vec![(0, 0); partitions as usize];
    for m in p.read_topic(&p.config.topics.trips, partitions, Duration::from_secs(2)) {
        let e = &mut out[m.partition as usize];
        match m.header(codec::SCHEMA_HEADER) {
            Some(codec::TRIP_BATCH_SCHEMA) => e.0 += 1,
            Some(codec::WATERMARK_SCHEMA) => e.1 += 1,
            other => panic!("unexpected schema {other:?}"),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growing_the_trips_topic_mid_stream_changes_no_result() {
    let (db, kafka) = backends_support::services();
    let sample = backends_support::sample("yellow_tripdata_2025-01_head.parquet");
    let (trips, _) = valid_rows(&sample);
    let want = run_groups(&sample).await;

    // 1. Grow a topic from 3 to 6 partitions while the relay replays into it,
    // on a full Apache Kafka when there is one (tansu cannot grow topics).
    let full = std::env::var("KAFKA_FULL_BOOTSTRAP")
        .ok()
        .filter(|v| !v.is_empty());
    let broker = full.clone().unwrap_or_else(|| kafka.clone());
    let mut p = Pipeline::with_partitions(&db, &broker, WINDOW_S, LATENESS_S, 3).await;
    // About five hours of pickups at 2000x: the stream flows for seconds.
    p.config.source.replay_speedup = Some(2000.0);
    std::fs::write(&p.config_path, serde_yaml::to_string(&p.config).unwrap()).unwrap();
    let store = land(&p, &trips).await;
    let mut relay = p.spawn("relay", &[]);
    let mut agg = p.spawn("aggregate", &["--commit-interval-ms", "500"]);
    wait_until("the first publication", Duration::from_secs(60), || {
        let store = store.clone();
        async move { relayed(&store).await > 0 }
    })
    .await;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker)
        .create()
        .unwrap();
    let grown = admin
        .create_partitions(
            &[NewPartitions::new(&p.config.topics.trips, 6)],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .map(|r| r.into_iter().all(|t| t.is_ok()));
    let pinned: Option<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT key_groups FROM {}_relay_progress",
        store.qualified_table()
    )))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(
        pinned,
        Some(3),
        "the key groups are pinned at the first publication"
    );
    let finished: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {}_relay_sources WHERE finished",
        store.qualified_table()
    )))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(finished, 0, "the growth came after the end of the stream");
    eprintln!("grew the trips topic from 3 to 6 partitions mid-stream: {grown:?}");
    if full.is_some() {
        assert!(
            matches!(grown, Ok(true)),
            "Apache Kafka grows topics: {grown:?}"
        );
    }
    await_results(&p, &want, "grown mid-stream");
    sigkill(&mut relay);
    sigkill(&mut agg);
    no_dead_letters(&p, "grown mid-stream");
    if grown.unwrap_or(false) {
        let parts = trips_by_partition(&p, 6);
        assert!(
            parts[3..].iter().all(|(t, _)| *t == 0),
            "new partitions carry only watermarks: {parts:?}"
        );
    }

    // 2. Whatever the broker supports: a topic with more partitions than the
    // key groups pinned for it routes keys by the pin alone.
    let p = Pipeline::with_partitions(&db, &kafka, WINDOW_S, LATENESS_S, 6).await;
    let store = land(&p, &trips).await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {}_relay_progress (relay, key_groups) VALUES ($1, 3)",
        store.qualified_table()
    )))
    .bind(format!(
        "taxistream.{}.relay",
        p.config.pipeline.replace('/', ".")
    ))
    .execute(store.pool())
    .await
    .unwrap();
    let mut relay = p.spawn("relay", &[]);
    let mut agg = p.spawn("aggregate", &["--commit-interval-ms", "500"]);
    await_results(&p, &want, "topic larger than the pin");
    sigkill(&mut relay);
    sigkill(&mut agg);
    no_dead_letters(&p, "topic larger than the pin");
    let parts = trips_by_partition(&p, 6);
    assert!(
        parts[..3].iter().all(|(t, _)| *t > 0) && parts[3..].iter().all(|(t, m)| *t == 0 && *m > 0),
        "keys stay on the 3 pinned key groups, the others get markers: {parts:?}"
    );
    assert!(
        p.logs()
            .contains("more partitions than the key groups pinned"),
        "the relay warns about the unused partitions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_still_landing_holds_back_a_later_month_so_neither_is_late() {
    let (db, kafka) = backends_support::services();
    let early = backends_support::sample("yellow_tripdata_2020-01_head.csv");
    let late = backends_support::sample("yellow_tripdata_2025-01_head.parquet");
    let (early_trips, _) = valid_rows(&early);
    let (late_trips, _) = valid_rows(&late);
    // `run` merges its inputs by pickup, so the order they are given in
    // (here: the order they land in, and the reverse) does not matter.
    let want = run_groups_of(&[&late, &early]).await;
    assert_eq!(run_groups_of(&[&early, &late]).await, want);
    let p = Pipeline::with_partitions(&db, &kafka, WINDOW_S, LATENESS_S, 2).await;
    // The later month is landed completely; the earlier one only in part.
    let store = land(&p, &late_trips).await;
    let early_name = backends_support::path_str(&early);
    let first: Vec<Trip> = early_trips
        .iter()
        .filter(|t| t.source.row < 400)
        .cloned()
        .collect();
    store
        .land(&early_name, &batch(&first), &[], 400)
        .await
        .unwrap();
    let mut relay = p.spawn("relay", &[]);
    let mut agg = p.spawn("aggregate", &["--commit-interval-ms", "500"]);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        relayed(&store).await,
        0,
        "nothing of the later month is published while the earlier one lands"
    );
    let rest: Vec<Trip> = early_trips
        .iter()
        .filter(|t| t.source.row >= 400)
        .cloned()
        .collect();
    let end = early_trips.last().map_or(0, |t| t.source.row + 1);
    store
        .land(&early_name, &batch(&rest), &[], end)
        .await
        .unwrap();
    store.complete(&early_name, end).await.unwrap();
    await_results(&p, &want, "two months");
    sigkill(&mut relay);
    sigkill(&mut agg);
    no_dead_letters(&p, "two months");
}
