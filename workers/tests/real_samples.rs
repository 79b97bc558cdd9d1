//! Correctness on every real TLC sample in `examples/data`, read in the
//! order the TLC ships them: the per-zone, per-window totals the local job
//! emits must equal totals computed here, independently, from the raw rows
//! (excluding late and dead-letter rows), and every row must be accounted
//! for exactly once. By default the job windows each file in event-time
//! order, so with the default ten minutes of allowed lateness no trip of a
//! real month is late; the file-order mode keeps the old per-record
//! watermark over file order, checked against the same reference.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, TimeUnit, TimestampMicrosecondType};
use chrono::NaiveDateTime;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use taxistream_worker::dead_letter::{DeadLetter, Reason};
use taxistream_worker::output::{OutputError, ResultWriter};
use taxistream_worker::run::{JobOptions, LocalJob, Summary};
use taxistream_worker::sink::dead_letter_file::CollectDeadLetters;
use taxistream_worker::source::inputs::Inputs;
use taxistream_worker::source::{InputSpec, open_file};
use taxistream_worker::trip::Dataset;
use taxistream_worker::validate::{DEFAULT_MONTH_TOLERANCE_DAYS, Month};
use taxistream_worker::window::{GroupBy, WindowConfig, WindowResult};
use taxistream_worker::zones::ZoneLookup;

const US: i64 = 1_000_000;

fn samples() -> PathBuf {
    // Copies of `../shared/data`, so a clone anywhere has them.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/data")
}

/// One raw row, parsed here without the worker's readers.
#[derive(Debug, Clone)]
struct Raw {
    pickup: Option<i64>,
    dropoff: Option<i64>,
    pu: Option<i64>,
    du: Option<i64>,
    fare: Option<f64>,
    total: Option<f64>,
    pax: Option<i64>,
}

fn norm(h: &str) -> String {
    h.to_ascii_lowercase().replace('_', "")
}

fn ts(s: &str) -> Option<i64> {
    NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.and_utc().timestamp_micros())
}

fn num(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() { None } else { s.parse().ok() }
}

fn raw_csv(path: &Path) -> Vec<Raw> {
    let mut rdr = csv::Reader::from_path(path).unwrap();
    let headers: Vec<String> = rdr.headers().unwrap().iter().map(norm).collect();
    let col = |names: &[&str]| {
        headers
            .iter()
            .position(|h| names.contains(&h.as_str()))
            .unwrap()
    };
    let (p, d) = (
        col(&["tpeppickupdatetime", "lpeppickupdatetime", "pickupdatetime"]),
        col(&[
            "tpepdropoffdatetime",
            "lpepdropoffdatetime",
            "dropoffdatetime",
        ]),
    );
    let (pu, du) = (
        col(&["pulocationid", "pickuplocationid"]),
        col(&["dolocationid", "dropofflocationid"]),
    );
    let (fare, total, pax) = (
        col(&["fareamount"]),
        col(&["totalamount"]),
        col(&["passengercount"]),
    );
    rdr.records()
        .map(|r| {
            let r = r.unwrap();
            Raw {
                pickup: ts(&r[p]),
                dropoff: ts(&r[d]),
                pu: num(&r[pu]).map(|v| v as i64),
                du: num(&r[du]).map(|v| v as i64),
                fare: num(&r[fare]),
                total: num(&r[total]),
                pax: num(&r[pax]).map(|v| v as i64),
            }
        })
        .collect()
}

fn raw_parquet(path: &Path) -> Vec<Raw> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let schema = batch.schema();
        let find = |names: &[&str]| {
            let i = schema
                .fields()
                .iter()
                .position(|f| names.contains(&norm(f.name()).as_str()))
                .unwrap();
            batch.column(i).clone()
        };
        let t = |names: &[&str]| {
            cast(
                &find(names),
                &DataType::Timestamp(TimeUnit::Microsecond, None),
            )
            .unwrap()
        };
        let f = |names: &[&str]| cast(&find(names), &DataType::Float64).unwrap();
        let (p, d) = (t(&["tpeppickupdatetime"]), t(&["tpepdropoffdatetime"]));
        let (pu, du, fare, total, pax) = (
            f(&["pulocationid"]),
            f(&["dolocationid"]),
            f(&["fareamount"]),
            f(&["totalamount"]),
            f(&["passengercount"]),
        );
        let tv = |a: &dyn Array, i| {
            (!a.is_null(i)).then(|| a.as_primitive::<TimestampMicrosecondType>().value(i))
        };
        let fv =
            |a: &dyn Array, i| (!a.is_null(i)).then(|| a.as_primitive::<Float64Type>().value(i));
        for i in 0..batch.num_rows() {
            out.push(Raw {
                pickup: tv(&p, i),
                dropoff: tv(&d, i),
                pu: fv(&pu, i).map(|v| v as i64),
                du: fv(&du, i).map(|v| v as i64),
                fare: fv(&fare, i),
                total: fv(&total, i),
                pax: fv(&pax, i).map(|v| v as i64),
            });
        }
    }
    out
}

#[derive(Debug, Default, Clone, PartialEq)]
struct Totals {
    count: u64,
    fare: f64,
    total: f64,
    pax: i64,
    max_pax: Option<i64>,
}

#[derive(Debug, Default)]
struct Expected {
    rows: u64,
    invalid: u64,
    late: u64,
    windows: BTreeMap<(i64, i64), Totals>,
}

/// The reference semantics, written out plainly: validity (against the
/// month of the file each row comes from), then the per-record watermark
/// over valid rows in the order given.
fn expected(rows: &[(Raw, Month)], size: i64, lateness: i64) -> Expected {
    let tol = DEFAULT_MONTH_TOLERANCE_DAYS * 86_400 * US;
    let mut e = Expected {
        rows: rows.len() as u64,
        ..Default::default()
    };
    let mut max_seen: Option<i64> = None;
    for (r, month) in rows {
        let (lo, hi) = (month.start() - tol, month.next().start() + tol);
        let (Some(p), Some(d), Some(pu), Some(du), Some(fare), Some(total)) =
            (r.pickup, r.dropoff, r.pu, r.du, r.fare, r.total)
        else {
            e.invalid += 1;
            continue;
        };
        let valid =
            d >= p && (1..=265).contains(&pu) && (1..=265).contains(&du) && p >= lo && p < hi;
        if !valid {
            e.invalid += 1;
            continue;
        }
        let start = p.div_euclid(size) * size;
        if let Some(m) = max_seen
            && start + size <= m - lateness
        {
            e.late += 1;
            continue;
        }
        max_seen = Some(max_seen.map_or(p, |m| m.max(p)));
        let t = e.windows.entry((pu, start)).or_default();
        t.count += 1;
        t.fare += fare;
        t.total += total;
        t.pax += r.pax.unwrap_or(0);
        t.max_pax = match (t.max_pax, r.pax) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
    e
}

struct Collect(Rc<RefCell<Vec<WindowResult>>>);

impl ResultWriter for Collect {
    fn write(&mut self, results: &[WindowResult]) -> Result<(), OutputError> {
        self.0.borrow_mut().extend_from_slice(results);
        Ok(())
    }
    fn finish(&mut self) -> Result<(), OutputError> {
        Ok(())
    }
}

fn run_job(
    path: &Path,
    size_s: u64,
    lateness_s: u64,
) -> (Summary, Vec<WindowResult>, Vec<DeadLetter>) {
    run_job_in(&[path], size_s, lateness_s, true)
}

/// The local job over `paths`, read in the order given.
fn run_job_in(
    paths: &[&Path],
    size_s: u64,
    lateness_s: u64,
    event_time_order: bool,
) -> (Summary, Vec<WindowResult>, Vec<DeadLetter>) {
    let results = Rc::new(RefCell::new(Vec::new()));
    let mut letters = CollectDeadLetters::default();
    let options = JobOptions {
        window: WindowConfig::tumbling(size_s, lateness_s, GroupBy::PickupZone).unwrap(),
        month_tolerance_days: DEFAULT_MONTH_TOLERANCE_DAYS,
    };
    let mut job = LocalJob::new(
        options,
        ZoneLookup::embedded(),
        Box::new(Collect(results.clone())),
    );
    if !event_time_order {
        job = job.in_file_order();
    }
    let specs = paths
        .iter()
        .map(|p| InputSpec::Path(p.to_path_buf()))
        .collect();
    let inputs = Inputs::new(specs, Dataset::Yellow);
    let summary = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(job.run(inputs, &mut letters))
        .unwrap();
    let r = results.borrow().clone();
    (summary, r, letters.0)
}

fn check_sample(file: &str) {
    check_sample_at(&samples().join(file), file);
}

fn check_sample_at(path: &Path, file: &str) {
    let path = path.to_path_buf();
    let raw = raw_rows(&path, file);
    // Pickup order, equal pickups in file order: what the job sorts by.
    let mut by_pickup = raw.clone();
    by_pickup.sort_by_key(|(r, _)| r.pickup);
    // The defaults (5-minute windows, 10 minutes of lateness; in file order
    // most rows of these roughly ordered files would be late) and a
    // lateness long enough to window almost everything.
    for (size_s, lateness_s, event_time) in [
        (300u64, 600u64, true),
        (900, 2 * 86_400, true),
        (300, 600, false),
        (900, 2 * 86_400, false),
    ] {
        let order = if event_time { &by_pickup } else { &raw };
        let exp = expected(order, size_s as i64 * US, lateness_s as i64 * US);
        let (summary, results, letters) = run_job_in(&[&path], size_s, lateness_s, event_time);
        let ctx = format!(
            "{file} window {size_s}s lateness {lateness_s}s {}",
            if event_time {
                "event-time order"
            } else {
                "file order"
            }
        );
        assert_eq!(summary.event_time_order, event_time, "{ctx}");
        if event_time {
            assert_eq!(exp.late, 0, "{ctx}: the reference has late rows");
        }
        assert_matches(&ctx, size_s as i64 * US, &exp, &summary, &results, &letters);
    }
}

/// The local job's output equals the reference: rows, dead letters, and the
/// totals of every (zone, window) group and of every zone.
fn assert_matches(
    ctx: &str,
    size: i64,
    exp: &Expected,
    summary: &Summary,
    results: &[WindowResult],
    letters: &[DeadLetter],
) {
    assert!(
        summary.sources_failed.is_empty(),
        "{ctx}: {:?}",
        summary.sources_failed
    );
    assert_eq!(summary.rows_read, exp.rows, "{ctx}: rows read");
    assert_eq!(
        summary.rows_windowed + summary.dead_letters.total(),
        summary.rows_read,
        "{ctx}: rows read = windowed + dead letters"
    );
    let late = letters.iter().filter(|d| d.reason == Reason::Late).count() as u64;
    assert_eq!(late, exp.late, "{ctx}: late rows");
    assert_eq!(
        letters.len() as u64 - late,
        exp.invalid,
        "{ctx}: invalid rows"
    );
    // Every row exactly once: windowed, late or rejected.
    let windowed: u64 = results.iter().map(|r| r.count).sum();
    assert_eq!(
        windowed + letters.len() as u64,
        exp.rows,
        "{ctx}: rows accounted for"
    );
    let mut rows_seen: Vec<(&str, u64)> = letters
        .iter()
        .map(|d| (d.source.source.as_str(), d.source.row))
        .collect();
    rows_seen.sort_unstable();
    rows_seen.dedup();
    assert_eq!(
        rows_seen.len(),
        letters.len(),
        "{ctx}: a row was dead-lettered twice"
    );

    let mut got: BTreeMap<(i64, i64), Totals> = BTreeMap::new();
    for r in results {
        assert_eq!(r.window_end - r.window_start, size);
        let prev = got.insert(
            (i64::from(r.key), r.window_start),
            Totals {
                count: r.count,
                fare: r.sum_fare,
                total: r.sum_total,
                pax: r.passengers,
                max_pax: r.max_passengers.map(i64::from),
            },
        );
        assert!(prev.is_none(), "{ctx}: window emitted twice");
        let zone = ZoneLookup::embedded().zone(r.key).unwrap();
        assert_eq!(r.zone.as_deref(), Some(&*zone.name));
        assert_eq!(r.borough.as_deref(), Some(&*zone.borough));
    }
    assert_eq!(
        got.len(),
        exp.windows.len(),
        "{ctx}: number of (zone, window) groups"
    );
    for (k, e) in &exp.windows {
        let g = &got[k];
        assert_eq!(g.count, e.count, "{ctx}: count {k:?}");
        assert_eq!(g.pax, e.pax, "{ctx}: passengers {k:?}");
        assert_eq!(g.max_pax, e.max_pax, "{ctx}: max passengers {k:?}");
        assert!(
            (g.fare - e.fare).abs() < 1e-6,
            "{ctx}: fare {k:?} {} vs {}",
            g.fare,
            e.fare
        );
        assert!((g.total - e.total).abs() < 1e-6, "{ctx}: total {k:?}");
    }
    // Per-zone totals over all windows, the figure a user would check.
    let per_zone = |m: &BTreeMap<(i64, i64), Totals>| {
        let mut z: BTreeMap<i64, (u64, f64)> = BTreeMap::new();
        for ((zone, _), t) in m {
            let e = z.entry(*zone).or_default();
            e.0 += t.count;
            e.1 += t.fare;
        }
        z
    };
    let (gz, ez) = (per_zone(&got), per_zone(&exp.windows));
    assert_eq!(gz.keys().collect::<Vec<_>>(), ez.keys().collect::<Vec<_>>());
    for (z, (c, f)) in &ez {
        assert_eq!(gz[z].0, *c, "{ctx}: zone {z} count");
        assert!((gz[z].1 - f).abs() < 1e-6, "{ctx}: zone {z} fare");
    }
}

/// The raw rows of a sample, each with the month its file name gives.
fn raw_rows(path: &Path, file: &str) -> Vec<(Raw, Month)> {
    let month = Month::from_name(file).unwrap();
    let raw = if file.ends_with(".parquet") {
        raw_parquet(path)
    } else {
        raw_csv(path)
    };
    raw.into_iter().map(|r| (r, month)).collect()
}

#[test]
fn yellow_2025_02_random_sample_parquet() {
    check_sample("yellow_tripdata_2025-02_sample.parquet");
}

#[test]
fn yellow_2025_01_head_parquet() {
    check_sample("yellow_tripdata_2025-01_head.parquet");
}

#[test]
fn yellow_2021_07_head_pandas_csv() {
    check_sample("yellow_tripdata_2021-07_head.csv");
}

#[test]
fn yellow_2020_01_head_and_tail_raw_csv() {
    check_sample("yellow_tripdata_2020-01_head.csv");
}

#[test]
fn yellow_2019_01_renamed_csv() {
    check_sample("yellow_tripdata_2019-01_sample_ge.csv");
}

/// The only whole month among the samples, in the order TLC ships it: rough
/// hour blocks, then an unsorted tail of 11,110 rows (31%) spanning the
/// month. In file order most of it is late; by pickup none of it is.
#[test]
fn green_2020_04_whole_month_loses_no_trip_to_lateness() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("green_tripdata_2020-04.csv");
    let gz = std::fs::File::open(samples().join("green_tripdata_2020-04.csv.gz")).unwrap();
    std::io::copy(
        &mut flate2::read::GzDecoder::new(gz),
        &mut std::fs::File::create(&csv).unwrap(),
    )
    .unwrap();
    check_sample_at(&csv, "green_tripdata_2020-04.csv");
    let (summary, results, letters) = run_job(&csv, 300, 600);
    assert_eq!(summary.rows_read, 35_612);
    assert_eq!(summary.dead_letters.get(Reason::Late), 0);
    // Only the pickups outside April 2020 are dead-lettered.
    assert!(letters.iter().all(|d| d.reason != Reason::Late));
    assert!(letters.len() <= 6, "{letters:?}");
    assert_eq!(
        results.iter().map(|r| r.count).sum::<u64>(),
        35_612 - letters.len() as u64
    );
    let (file_order, _, _) = run_job_in(&[&csv], 300, 600, false);
    assert!(
        file_order.dead_letters.get(Reason::Late) > 20_000,
        "in file order most of the month is late"
    );
}

/// The groups emitted, by (zone, window start).
fn keyed(results: &[WindowResult]) -> BTreeMap<(i32, i64), WindowResult> {
    results
        .iter()
        .map(|r| ((r.key, r.window_start), r.clone()))
        .collect()
}

/// `run` over several files, given in `orders`, against the reference over
/// all their rows in pickup order: nothing is late, and every order gives
/// the same groups.
fn check_merged(files: &[(PathBuf, String)], orders: &[&[usize]]) {
    let mut rows: Vec<(Raw, Month)> = files
        .iter()
        .flat_map(|(path, name)| raw_rows(path, name))
        .collect();
    rows.sort_by_key(|(r, _)| r.pickup);
    let exp = expected(&rows, 300 * US, 600 * US);
    assert_eq!(exp.late, 0, "the reference in pickup order has late rows");
    let mut first: Option<BTreeMap<(i32, i64), WindowResult>> = None;
    for order in orders {
        let paths: Vec<&Path> = order.iter().map(|&i| files[i].0.as_path()).collect();
        let ctx = format!("files in order {order:?}");
        let (summary, results, letters) = run_job_in(&paths, 300, 600, true);
        assert_eq!(summary.sources_ok, files.len() as u64, "{ctx}");
        assert_eq!(summary.dead_letters.get(Reason::Late), 0, "{ctx}: late");
        assert_matches(&ctx, 300 * US, &exp, &summary, &results, &letters);
        let got = keyed(&results);
        match &first {
            Some(f) => assert!(f == &got, "{ctx}: groups differ from the first order"),
            None => first = Some(got),
        }
    }
}

/// Two real months, given in either order: `run` merges them by pickup, as
/// the relay merges completed sources, so neither makes the other late.
#[test]
fn two_real_months_in_either_order_merge_by_pickup() {
    let files: Vec<(PathBuf, String)> = [
        "yellow_tripdata_2025-01_head.parquet",
        "yellow_tripdata_2025-02_sample.parquet",
    ]
    .iter()
    .map(|f| (samples().join(f), f.to_string()))
    .collect();
    check_merged(&files, &[&[0, 1], &[1, 0]]);
    // Windowing one file after the other, the later month given first
    // makes the earlier one late.
    let (one_by_one, _, _) = run_job_in(&[&files[1].0, &files[0].0], 300, 600, false);
    assert!(one_by_one.dead_letters.get(Reason::Late) > 500);
}

/// A month whose file also holds pickups of the next month, at its end as
/// TLC tails do: the next month's file, read after it, loses nothing.
/// The rows are the real 2020-01 head and tail, and a copy of them moved a
/// month on, whose latest 20 pickups are in the January file.
#[test]
fn a_file_with_pickups_of_the_next_month_makes_nothing_late() {
    let text = std::fs::read_to_string(samples().join("yellow_tripdata_2020-01_head.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let jan: Vec<&str> = lines.collect();
    let month_on = |field: &str| {
        NaiveDateTime::parse_from_str(field, "%Y-%m-%d %H:%M:%S")
            .unwrap()
            .checked_add_months(chrono::Months::new(1))
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    let mut feb: Vec<(String, String)> = jan
        .iter()
        .map(|line| {
            let mut f: Vec<String> = line.split(',').map(str::to_string).collect();
            f[1] = month_on(&f[1]);
            f[2] = month_on(&f[2]);
            (f[1].clone(), f.join(","))
        })
        .collect();
    feb.sort();
    let strays = feb.split_off(feb.len() - 20);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, rows: Vec<&str>| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{header}\n{}\n", rows.join("\n"))).unwrap();
        (path, name.to_string())
    };
    let files = [
        write(
            "yellow_tripdata_2020-01.csv",
            jan.iter()
                .copied()
                .chain(strays.iter().map(|(_, l)| l.as_str()))
                .collect(),
        ),
        // The February file in pickup order, so only the strays can be late.
        write(
            "yellow_tripdata_2020-02.csv",
            feb.iter().map(|(_, l)| l.as_str()).collect(),
        ),
    ];
    check_merged(&files, &[&[0, 1], &[1, 0]]);
    // Windowing one file after the other, January's strays at the end of
    // February make the February file late.
    let (one_by_one, _, _) = run_job_in(&[&files[0].0, &files[1].0], 300, 600, false);
    assert!(one_by_one.dead_letters.get(Reason::Late) > 500);
}

#[test]
fn quirks_of_the_samples_survive_normalisation() {
    let data = samples();
    // 2025-02: null passenger counts are kept as nulls, refunds are flagged, CBD fee read.
    let (summary, _, _) = run_job(
        &data.join("yellow_tripdata_2025-02_sample.parquet"),
        300,
        40 * 86_400,
    );
    assert_eq!(summary.rows_read, 5_000);
    assert!(summary.refunds >= 92, "refunds {}", summary.refunds);
    let name = data
        .join("yellow_tripdata_2025-02_sample.parquet")
        .display()
        .to_string();
    let mut reader = open_file(Path::new(&name), &name, Dataset::Yellow).unwrap();
    let mut null_pax = 0;
    let mut cbd = 0;
    let mut helix = 0;
    while let Some(b) = reader.next_batch().unwrap() {
        for i in 0..b.trips.len() {
            let t = b.trips.row(i);
            null_pax += usize::from(t.passenger_count.is_none());
            cbd += usize::from(t.cbd_congestion_fee.is_some_and(|f| f > 0.0));
            helix += usize::from(t.vendor_id == Some(7));
        }
    }
    assert_eq!(null_pax, 1_125);
    assert_eq!(cbd, 3_624);
    assert!(helix > 0);

    // 2021-07: 63 negative totals, all kept (flagged as refunds, none dropped).
    let (summary, results, _) = run_job(
        &data.join("yellow_tripdata_2021-07_head.csv"),
        300,
        40 * 86_400,
    );
    assert_eq!(summary.refunds, 63);
    assert_eq!(results.iter().map(|r| r.count).sum::<u64>(), 10_000);

    // 2020-01: 500 unknown-vendor rows with empty fields are valid trips.
    let path = data.join("yellow_tripdata_2020-01_head.csv");
    let name = path.display().to_string();
    let mut reader = open_file(&path, &name, Dataset::Yellow).unwrap();
    let mut no_vendor = 0;
    let mut rows = 0;
    while let Some(b) = reader.next_batch().unwrap() {
        assert!(b.rejects.is_empty());
        rows += b.trips.len();
        for i in 0..b.trips.len() {
            let t = b.trips.row(i);
            if t.vendor_id.is_none() {
                no_vendor += 1;
                assert!(
                    t.passenger_count.is_none()
                        && t.payment_type.is_none()
                        && t.store_and_fwd.is_none()
                );
            }
        }
    }
    assert_eq!((rows, no_vendor), (999, 500));
}
