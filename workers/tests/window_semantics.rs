//! Window engine semantics: out-of-order input, late records, hopping
//! windows, emission exactly once, determinism across batch boundaries,
//! snapshot/restore, and the other group-by keys.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use taxistream_worker::trip::{Dataset, SourceRef, Trip, TripBatch};
use taxistream_worker::window::{
    EngineSnapshot, GroupBy, WindowConfig, WindowEngine, WindowResult,
};
use taxistream_worker::zones::ZoneLookup;

const MIN: i64 = 60_000_000;

fn trip(row: u64, pickup_min: i64, zone: i32, fare: f64) -> Trip {
    Trip {
        source: SourceRef {
            source: "test".into(),
            row,
        },
        dataset: Dataset::Yellow,
        vendor_id: Some(2),
        pickup: pickup_min * MIN,
        dropoff: pickup_min * MIN + 12 * MIN,
        passenger_count: if row.is_multiple_of(3) {
            None
        } else {
            Some((row % 5) as i32 + 1)
        },
        trip_distance: 1.0 + row as f64 * 0.1,
        ratecode_id: Some(1),
        store_and_fwd: Some(false),
        pu_location_id: zone,
        do_location_id: 236,
        payment_type: Some((row % 3) as i32 + 1),
        fare_amount: fare,
        extra: 0.0,
        mta_tax: 0.5,
        tip_amount: fare * 0.2,
        tolls_amount: 0.0,
        improvement_surcharge: 1.0,
        total_amount: fare * 1.2 + 1.5,
        congestion_surcharge: None,
        airport_fee: None,
        cbd_congestion_fee: None,
        ehail_fee: None,
        trip_type: None,
        refund: fare < 0.0,
    }
}

fn batch(trips: &[Trip]) -> TripBatch {
    TripBatch::from_trips("test".into(), Dataset::Yellow, trips)
}

/// Runs `trips` through a fresh engine in batches of `chunk`, then flushes.
fn run(config: WindowConfig, trips: &[Trip], chunk: usize) -> (Vec<WindowResult>, Vec<u64>) {
    let mut engine = WindowEngine::new(config, ZoneLookup::embedded());
    let mut out = Vec::new();
    let mut late_rows = Vec::new();
    for part in trips.chunks(chunk.max(1)) {
        let b = batch(part);
        let mut late = Vec::new();
        engine.push_batch(&b, None, &mut out, &mut late);
        late_rows.extend(late.iter().map(|&i| b.row[i]));
    }
    engine.flush(&mut out);
    (out, late_rows)
}

fn tumbling(size_min: u64, lateness_min: u64) -> WindowConfig {
    WindowConfig::tumbling(size_min * 60, lateness_min * 60, GroupBy::PickupZone).unwrap()
}

fn counts(results: &[WindowResult]) -> Vec<(i32, i64, u64)> {
    let mut v: Vec<_> = results
        .iter()
        .map(|r| (r.key, r.window_start / MIN, r.count))
        .collect();
    v.sort_unstable();
    v
}

#[test]
fn out_of_order_within_lateness_equals_sorted_input() {
    // Pickups moved by -8..=+7 minutes: a record can trail the newest pickup by
    // 15 minutes, so 20 minutes of lateness (window end included) keeps every one.
    let mut trips = Vec::new();
    for i in 0..400u64 {
        let jitter = [(0i64), 7, -8, 3, -2, 5, -6, 1][(i % 8) as usize];
        trips.push(trip(
            i,
            1_000 + i as i64 + jitter,
            [132, 161, 236][(i % 3) as usize],
            10.0 + i as f64,
        ));
    }
    let (shuffled, late) = run(tumbling(5, 20), &trips, 37);
    assert!(late.is_empty());
    let mut sorted = trips.clone();
    sorted.sort_by_key(|t| t.pickup);
    let (ordered, _) = run(tumbling(5, 20), &sorted, 1000);
    // With only 5 minutes of lateness the same input loses records to lateness.
    assert!(!run(tumbling(5, 5), &trips, 37).1.is_empty());
    assert_eq!(counts(&shuffled), counts(&ordered));
    assert_eq!(shuffled.iter().map(|r| r.count).sum::<u64>(), 400);
    for (a, b) in shuffled.iter().zip(ordered.iter()) {
        assert!((a.sum_fare - b.sum_fare).abs() < 1e-9);
    }
}

#[test]
fn late_records_are_reported_and_not_counted() {
    let trips = vec![
        trip(0, 100, 10, 5.0),
        trip(1, 131, 10, 5.0), // watermark now 121: windows ending <= 121 are closed
        trip(2, 104, 10, 7.0), // window [100,105) closed: late
        trip(3, 118, 10, 9.0), // window [115,120) closed: late
        trip(4, 121, 10, 9.0), // window [120,125) ends after 121: on time
        trip(5, 126, 11, 9.0), // on time
    ];
    for chunk in [1, 2, 6] {
        let (results, late) = run(tumbling(5, 10), &trips, chunk);
        assert_eq!(late, vec![2, 3], "chunk {chunk}");
        assert_eq!(
            counts(&results),
            vec![(10, 100, 1), (10, 120, 1), (10, 130, 1), (11, 125, 1)],
            "chunk {chunk}"
        );
    }
}

#[test]
fn windows_are_emitted_once_when_the_watermark_passes_their_end() {
    let mut engine = WindowEngine::new(tumbling(5, 10), ZoneLookup::embedded());
    let mut out = Vec::new();
    let mut late = Vec::new();
    engine.push_batch(&batch(&[trip(0, 100, 10, 1.0)]), None, &mut out, &mut late);
    // Watermark 104 - 10 = 94: nothing closed.
    engine.push_batch(&batch(&[trip(1, 114, 10, 1.0)]), None, &mut out, &mut late);
    assert!(
        out.is_empty(),
        "window [100,105) must stay open until watermark >= 105"
    );
    engine.push_batch(&batch(&[trip(2, 115, 12, 1.0)]), None, &mut out, &mut late);
    assert_eq!(counts(&out), vec![(10, 100, 1)]);
    assert_eq!(engine.watermark(), Some(105 * MIN));
    out.clear();
    engine.push_batch(&batch(&[trip(3, 116, 12, 1.0)]), None, &mut out, &mut late);
    assert!(out.is_empty(), "no window is emitted twice");
    engine.flush(&mut out);
    assert_eq!(counts(&out), vec![(10, 110, 1), (12, 115, 2)]);
    assert_eq!(engine.stats().windows_emitted, 3);
}

#[test]
fn hopping_windows_count_each_record_size_over_slide_times() {
    // 15-minute windows every 5 minutes: each record is in 3 windows.
    let config = WindowConfig::hopping(15 * 60, 5 * 60, 60 * 60, GroupBy::PickupZone).unwrap();
    let trips: Vec<Trip> = (0..30u64)
        .map(|i| trip(i, 200 + i as i64 * 2, 48, 10.0))
        .collect();
    let (results, late) = run(config, &trips, 7);
    assert!(late.is_empty());
    assert_eq!(results.iter().map(|r| r.count).sum::<u64>(), 90);
    for r in &results {
        let expected = trips
            .iter()
            .filter(|t| t.pickup >= r.window_start && t.pickup < r.window_end)
            .count() as u64;
        assert_eq!(r.count, expected, "window at {}", r.window_start / MIN);
        assert_eq!(r.window_end - r.window_start, 15 * MIN);
        assert_eq!(r.window_start % (5 * MIN), 0);
    }
    // The first window containing pickup 200 starts at 190.
    assert_eq!(
        results.iter().map(|r| r.window_start).min(),
        Some(190 * MIN)
    );
}

#[test]
fn hopping_record_partly_late_counts_in_its_open_windows() {
    let config = WindowConfig::hopping(15 * 60, 5 * 60, 0, GroupBy::PickupZone).unwrap();
    // After pickup 120 the watermark is 120: windows ending <= 120 are closed.
    let trips = vec![trip(0, 120, 7, 1.0), trip(1, 112, 7, 1.0)];
    let (results, late) = run(config, &trips, 10);
    assert!(
        late.is_empty(),
        "pickup 112 still has open windows [110,125)"
    );
    let with_112: Vec<_> = counts(&results)
        .into_iter()
        .filter(|(_, s, c)| *s == 110 && *c == 2)
        .collect();
    assert_eq!(with_112.len(), 1);
    let total: u64 = results.iter().map(|r| r.count).sum();
    // Pickup 120 is in 3 windows; pickup 112 only in [110,125): [105,120) had closed.
    assert_eq!(total, 3 + 1);
    assert_eq!(
        engine_late_assignments(&trips),
        2,
        "[105,120) and [100,115) were skipped"
    );
}

fn engine_late_assignments(trips: &[Trip]) -> u64 {
    let config = WindowConfig::hopping(15 * 60, 5 * 60, 0, GroupBy::PickupZone).unwrap();
    let mut engine = WindowEngine::new(config, ZoneLookup::embedded());
    engine.push_batch(&batch(trips), None, &mut Vec::new(), &mut Vec::new());
    engine.stats().late_window_assignments
}

#[test]
fn aggregates_match_their_definitions() {
    let trips: Vec<Trip> = (0..10u64)
        .map(|i| trip(i, 300, 161, i as f64 - 2.0))
        .collect();
    let (results, _) = run(tumbling(5, 10), &trips, 3);
    assert_eq!(results.len(), 1);
    let r = &results[0];
    assert_eq!(r.count, 10);
    assert_eq!(&*r.key_name, "Midtown Center");
    assert_eq!(r.borough.as_deref(), Some("Manhattan"));
    let fares: Vec<f64> = trips.iter().map(|t| t.fare_amount).collect();
    assert!((r.sum_fare - fares.iter().sum::<f64>()).abs() < 1e-9);
    assert!((r.sum_tip - trips.iter().map(|t| t.tip_amount).sum::<f64>()).abs() < 1e-9);
    assert!((r.sum_total - trips.iter().map(|t| t.total_amount).sum::<f64>()).abs() < 1e-9);
    let pax: Vec<i32> = trips.iter().filter_map(|t| t.passenger_count).collect();
    assert_eq!(r.passengers, pax.iter().map(|&p| i64::from(p)).sum::<i64>());
    assert_eq!(r.max_passengers, pax.iter().copied().max());
    // Tip rate only over fare > 0: rows 3..10, each tip = 0.2 × fare.
    assert!((r.avg_tip_ratio.unwrap() - 0.2).abs() < 1e-12);
    let avg_dist = trips.iter().map(|t| t.trip_distance).sum::<f64>() / 10.0;
    assert!((r.avg_distance - avg_dist).abs() < 1e-12);
    assert!((r.avg_duration_s - 720.0).abs() < 1e-9);
    let mph = trips.iter().map(|t| t.trip_distance).sum::<f64>() / (10.0 * 0.2);
    assert!((r.avg_speed_mph.unwrap() - mph).abs() < 1e-9);
}

#[test]
fn results_do_not_depend_on_batch_boundaries() {
    let trips: Vec<Trip> = (0..2_000u64)
        .map(|i| {
            let jitter = ((i * 7919) % 23) as i64 - 11;
            let late = if i.is_multiple_of(97) { -45 } else { 0 };
            trip(
                i,
                5_000 + (i as i64) / 3 + jitter + late,
                1 + (i % 263) as i32,
                (i % 50) as f64,
            )
        })
        .collect();
    let (reference, late_ref) = run(tumbling(5, 10), &trips, trips.len());
    assert!(!late_ref.is_empty());
    for chunk in [1, 13, 256] {
        let (r, l) = run(tumbling(5, 10), &trips, chunk);
        assert_eq!(r, reference, "chunk {chunk}");
        assert_eq!(l, late_ref, "chunk {chunk}");
    }
}

#[test]
fn snapshot_and_restore_continue_identically() {
    let trips: Vec<Trip> = (0..1_000u64)
        .map(|i| {
            trip(
                i,
                10_000 + (i as i64) / 4 + ((i * 31) % 9) as i64,
                1 + (i % 40) as i32,
                1.5 * i as f64,
            )
        })
        .collect();
    let config = tumbling(5, 10);
    let (reference, late_ref) = run(config, &trips, 50);

    let mut engine = WindowEngine::new(config, ZoneLookup::embedded());
    let mut out = Vec::new();
    let mut late = Vec::new();
    let (first, second) = trips.split_at(437);
    engine.push_batch(&batch(first), None, &mut out, &mut late);
    assert!(engine.open_windows() > 0);
    let snapshot = engine.snapshot();
    // Through JSON, as a stage would persist it.
    let json = serde_json::to_string(&snapshot).unwrap();
    let restored: EngineSnapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(restored, snapshot);
    drop(engine);
    let mut engine = WindowEngine::restore(restored, ZoneLookup::embedded()).unwrap();
    let b = batch(second);
    let mut late2 = Vec::new();
    engine.push_batch(&b, None, &mut out, &mut late2);
    engine.flush(&mut out);
    let mut late_rows: Vec<u64> = late.iter().map(|&i| i as u64).collect();
    late_rows.extend(late2.iter().map(|&i| b.row[i]));
    assert_eq!(out, reference);
    assert_eq!(late_rows, late_ref);
}

#[test]
fn restore_rejects_inconsistent_snapshots() {
    let mut engine = WindowEngine::new(tumbling(5, 10), ZoneLookup::embedded());
    let mut out = Vec::new();
    let mut late = Vec::new();
    engine.push_batch(&batch(&[trip(0, 100, 10, 1.0)]), None, &mut out, &mut late);
    let mut s = engine.snapshot();
    s.version = 99;
    assert!(WindowEngine::restore(s, ZoneLookup::embedded()).is_err());
    let mut s = engine.snapshot();
    s.windows[0].start += 1;
    assert!(WindowEngine::restore(s, ZoneLookup::embedded()).is_err());
    let mut s = engine.snapshot();
    s.windows[0].entries[0].0 = 9_999;
    assert!(WindowEngine::restore(s, ZoneLookup::embedded()).is_err());
}

#[test]
fn other_group_by_keys() {
    let trips = vec![
        trip(0, 100, 132, 10.0),
        trip(1, 101, 138, 10.0),
        trip(2, 102, 161, 10.0),
    ];
    let cfg = |g| WindowConfig::tumbling(300, 600, g).unwrap();
    let (r, _) = run(cfg(GroupBy::Borough), &trips, 10);
    let names: Vec<(&str, u64)> = r.iter().map(|r| (&*r.key_name, r.count)).collect();
    // Keys are borough indices in lookup order: Queens before Manhattan.
    assert_eq!(names, vec![("Queens", 2), ("Manhattan", 1)]);
    let (r, _) = run(cfg(GroupBy::DropoffZone), &trips, 10);
    assert_eq!(counts(&r), vec![(236, 100, 3)]);
    assert_eq!(r[0].zone.as_deref(), Some("Upper East Side North"));
    let mut t = trips.clone();
    t[2].payment_type = None;
    let (r, _) = run(cfg(GroupBy::PaymentType), &t, 10);
    let keys: Vec<(i32, &str)> = r.iter().map(|r| (r.key, &*r.key_name)).collect();
    assert_eq!(
        keys,
        vec![(1, "Credit card"), (2, "Cash"), (-1, "Null or other")]
    );
    assert!(r.iter().all(|r| r.zone.is_none()));
}

#[test]
fn window_configurations_are_checked() {
    let g = GroupBy::PickupZone;
    assert!(WindowConfig::hopping(600, 300, 0, g).is_ok());
    assert!(
        WindowConfig::hopping(600, 700, 0, g).is_err(),
        "slide must divide size"
    );
    assert!(WindowConfig::hopping(700, 300, 0, g).is_err());
    assert!(WindowConfig::tumbling(0, 0, g).is_err());
    let err = WindowConfig::hopping(86_400, 1, 0, g)
        .unwrap_err()
        .to_string();
    assert!(err.contains("more than 4096 windows"), "{err}");
    assert_eq!(
        WindowConfig::hopping(3_600, 60, 0, g)
            .unwrap()
            .windows_per_record(),
        60
    );
}

/// The pipeline's model: the watermark comes with the input (stamped on each
/// trip, and markers). Splitting the keys over any number of engines that
/// all receive the markers gives the single engine's windows, and a marker
/// alone closes the last windows, with no flush.
#[test]
fn a_carried_watermark_makes_results_independent_of_how_keys_are_split() {
    let config = tumbling(5, 10);
    // Pickup order, as the relay publishes a landed source.
    let mut trips: Vec<Trip> = (0..600)
        .map(|r| {
            trip(
                r,
                (r as i64 * 7919) % 240,
                1 + (r % 9) as i32,
                5.0 + r as f64,
            )
        })
        .collect();
    trips.sort_by_key(|t| (t.pickup, t.source.row));
    let (want, late) = run(config, &trips, 64);
    assert!(late.is_empty());
    let end = trips.last().unwrap().pickup + config.size + config.allowed_lateness;
    for engines in [1usize, 2, 6] {
        let mut parts: Vec<WindowEngine> = (0..engines)
            .map(|_| WindowEngine::new(config, ZoneLookup::embedded()))
            .collect();
        let mut out = Vec::new();
        for chunk in trips.chunks(50) {
            for (k, engine) in parts.iter_mut().enumerate() {
                let mine: Vec<Trip> = chunk
                    .iter()
                    .filter(|t| t.pu_location_id as usize % engines == k)
                    .cloned()
                    .collect();
                let stamps: Vec<i64> = mine.iter().map(|t| t.pickup).collect();
                let mut late = Vec::new();
                engine.push_carried(&batch(&mine), None, &stamps, &mut out, &mut late);
                assert!(late.is_empty());
                // The marker after each round of the relay.
                engine.advance(chunk.last().unwrap().pickup, &mut out);
            }
        }
        for engine in &mut parts {
            engine.advance(end, &mut out);
            assert_eq!(engine.open_windows(), 0, "the end marker closes everything");
        }
        out.sort_by_key(|r| (r.window_end, r.window_start, r.key));
        assert_eq!(out, want, "{engines} engines");
    }

    // A trip behind the carried watermark by more than the lateness is late,
    // whatever pickups its own engine has seen.
    let mut engine = WindowEngine::new(config, ZoneLookup::embedded());
    let (mut out, mut late) = (Vec::new(), Vec::new());
    engine.advance(100 * MIN, &mut out);
    engine.push_carried(
        &batch(&[trip(0, 80, 1, 1.0)]),
        None,
        &[100 * MIN],
        &mut out,
        &mut late,
    );
    assert_eq!(late, vec![0]);
    engine.push_carried(
        &batch(&[trip(1, 91, 1, 1.0)]),
        None,
        &[100 * MIN],
        &mut out,
        &mut late,
    );
    assert_eq!(
        late,
        vec![0],
        "within the allowed lateness of the watermark"
    );
}
