//! Readers on every layout quirk: the CSV quirks listed in SOURCES.md,
//! Socrata JSON, the pre-2016-07 layout, and truncated or corrupt Parquet.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use taxistream_worker::dead_letter::Reason;
use taxistream_worker::output::{OutputError, ResultWriter};
use taxistream_worker::run::{JobOptions, LocalJob, Summary};
use taxistream_worker::sink::dead_letter_file::CollectDeadLetters;
use taxistream_worker::source::inputs::Inputs;
use taxistream_worker::source::{InputSpec, ReadBatch, SourceError, open_file};
use taxistream_worker::trip::{Dataset, Trip};
use taxistream_worker::validate::{DEFAULT_MONTH_TOLERANCE_DAYS, Month};
use taxistream_worker::window::{GroupBy, WindowConfig, WindowResult};
use taxistream_worker::zones::ZoneLookup;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn read_all(
    path: &Path,
) -> Result<(Vec<Trip>, Vec<taxistream_worker::dead_letter::DeadLetter>), SourceError> {
    let name = path.display().to_string();
    let mut reader = open_file(path, &name, Dataset::Yellow)?;
    let mut trips = Vec::new();
    let mut rejects = Vec::new();
    while let Some(ReadBatch {
        trips: b,
        rejects: r,
    }) = reader.next_batch()?
    {
        trips.extend((0..b.len()).map(|i| b.row(i)));
        rejects.extend(r);
    }
    Ok((trips, rejects))
}

fn at(s: &str) -> i64 {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .unwrap()
        .and_utc()
        .timestamp_micros()
}

#[test]
fn pandas_resave_with_index_column_and_float_integers() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "yellow_tripdata_2021-07.csv",
        ",VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,trip_distance,RatecodeID,store_and_fwd_flag,PULocationID,DOLocationID,payment_type,fare_amount,extra,mta_tax,tip_amount,tolls_amount,improvement_surcharge,total_amount,congestion_surcharge\n\
         0,1.0,2021-07-01 00:08:51,2021-07-01 00:13:05,1.0,0.8,1.0,N,90,68,1.0,5.0,3.0,0.5,0.0,0.0,0.3,8.8,2.5\n\
         1,2.0,2021-07-01 00:22:39,2021-07-01 00:25:58,,0.9,,Y,113,90,4.0,-5.0,-3.0,-0.5,0.0,0.0,-0.3,-8.8,\n",
    );
    let (trips, rejects) = read_all(&p).unwrap();
    assert!(rejects.is_empty(), "{rejects:?}");
    assert_eq!(trips.len(), 2);
    let t = &trips[0];
    assert_eq!(
        (
            t.vendor_id,
            t.passenger_count,
            t.ratecode_id,
            t.payment_type
        ),
        (Some(1), Some(1), Some(1), Some(1))
    );
    assert_eq!((t.pu_location_id, t.do_location_id), (90, 68));
    assert_eq!(t.pickup, at("2021-07-01 00:08:51"));
    assert_eq!(t.store_and_fwd, Some(false));
    assert_eq!(t.congestion_surcharge, Some(2.5));
    assert!(!t.refund);
    let r = &trips[1];
    assert_eq!(
        (r.passenger_count, r.ratecode_id, r.congestion_surcharge),
        (None, None, None)
    );
    assert_eq!(r.store_and_fwd, Some(true));
    assert!(r.refund, "negative amounts are kept and flagged");
    assert_eq!(r.total_amount, -8.8);
    assert_eq!(r.source.row, 1);
}

#[test]
fn raw_tlc_text_with_short_decimals_and_empty_integers() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "yellow_tripdata_2020-01.csv",
        "VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,trip_distance,RatecodeID,store_and_fwd_flag,PULocationID,DOLocationID,payment_type,fare_amount,extra,mta_tax,tip_amount,tolls_amount,improvement_surcharge,total_amount,congestion_surcharge\n\
         1,2020-01-01 00:28:15,2020-01-01 00:33:03,1,1.20,1,N,238,239,1,6,3,0.5,1.47,0,0.3,11.27,2.5\n\
         ,2020-01-31 18:42:00,2020-01-31 19:01:00,,7.07,,,107,173,,25.91,2.75,0.5,0,6.12,0.3,35.58,0\n\
         2,2020-01-01 00:35:39,2020-01-01 00:43:04,1,.60,1,N,239,238,1,.5,.5,.5,.6,0,.3,2.4,\n",
    );
    let (trips, rejects) = read_all(&p).unwrap();
    assert!(rejects.is_empty(), "{rejects:?}");
    assert_eq!(trips[0].fare_amount, 6.0);
    assert_eq!(trips[0].trip_distance, 1.2);
    let unknown = &trips[1];
    assert_eq!(
        (
            unknown.vendor_id,
            unknown.passenger_count,
            unknown.ratecode_id,
            unknown.store_and_fwd,
            unknown.payment_type
        ),
        (None, None, None, None, None)
    );
    assert_eq!(unknown.tolls_amount, 6.12);
    assert_eq!(trips[2].trip_distance, 0.6);
    assert_eq!(trips[2].tip_amount, 0.6);
    assert_eq!(trips[2].congestion_surcharge, None);
}

#[test]
fn snake_case_renamed_header() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "yellow_tripdata_sample_2019-01.csv",
        "vendor_id,pickup_datetime,dropoff_datetime,passenger_count,trip_distance,rate_code_id,store_and_fwd_flag,pickup_location_id,dropoff_location_id,payment_type,fare_amount,extra,mta_tax,tip_amount,tolls_amount,improvement_surcharge,total_amount,congestion_surcharge\n\
         4,2019-01-05 06:36:51,2019-01-05 06:50:42,1,3.72,1,N,68,236,1,14,0,0.5,1,0,0.3,15.8,\n",
    );
    let (trips, _) = read_all(&p).unwrap();
    let t = &trips[0];
    assert_eq!(
        (
            t.vendor_id,
            t.pu_location_id,
            t.do_location_id,
            t.ratecode_id
        ),
        (Some(4), 68, 236, Some(1))
    );
    assert_eq!(t.dataset, Dataset::Yellow);
    assert_eq!(t.congestion_surcharge, None);
    assert_eq!(
        Month::from_name(&p.display().to_string()),
        Month::new(2019, 1)
    );
}

#[test]
fn unparsable_rows_become_dead_letters_and_the_file_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let header = "VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,trip_distance,RatecodeID,store_and_fwd_flag,PULocationID,DOLocationID,payment_type,fare_amount,extra,mta_tax,tip_amount,tolls_amount,improvement_surcharge,total_amount\n";
    let good = "1,2018-03-01 10:00:00,2018-03-01 10:10:00,1,1.0,1,N,10,20,1,5,0,0.5,1,0,0.3,6.8\n";
    let text = format!(
        "{header}{good}1,2018-03-01 10:00:00,2018-03-01 10:10:00,1,1.0,1,N,10,20,1,abc,0,0.5,1,0,0.3,6.8\n\
         1,2018-03-01 99:00:00,2018-03-01 10:10:00,1,1.0,1,N,10,20,1,5,0,0.5,1,0,0.3,6.8\n\
         1,2018-03-01 10:00:00,2018-03-01 10:10:00,1,1.0\n\
         1,2018-03-01 10:00:00,2018-03-01 10:10:00,1.5,1.0,1,N,10,20,1,5,0,0.5,1,0,0.3,6.8\n\
         1,2018-03-01 10:00:00,2018-03-01 10:10:00,1,1.0,1,X,10,20,1,5,0,0.5,1,0,0.3,6.8\n{good}"
    );
    let p = write(dir.path(), "yellow_tripdata_2018-03.csv", &text);
    let (trips, rejects) = read_all(&p).unwrap();
    assert_eq!(trips.len(), 2);
    assert_eq!(trips[1].source.row, 6);
    let got: Vec<(u64, &str)> = rejects
        .iter()
        .map(|d| (d.source.row, d.field.as_deref().unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "fare_amount"),
            (2, "pickup_datetime"),
            (3, "PULocationID"),
            (4, "passenger_count"),
            (5, "store_and_fwd_flag")
        ]
    );
    assert!(
        rejects
            .iter()
            .all(|d| d.reason == Reason::Unparsable && d.raw.is_some())
    );
    assert!(
        rejects[0].detail.contains("\"abc\""),
        "{}",
        rejects[0].detail
    );
    assert!(
        rejects[0]
            .to_string()
            .contains("yellow_tripdata_2018-03.csv row 1")
    );
    assert!(
        rejects[2].detail.contains("row has 5 fields"),
        "{}",
        rejects[2].detail
    );
}

#[test]
fn pre_2016_07_coordinate_layouts_are_rejected_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "yellow_tripdata_2015-01.csv",
        "VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,trip_distance,pickup_longitude,pickup_latitude,RateCodeID,store_and_fwd_flag,dropoff_longitude,dropoff_latitude,payment_type,fare_amount,extra,mta_tax,tip_amount,tolls_amount,improvement_surcharge,total_amount\n\
         2,2015-01-15 19:05:39,2015-01-15 19:23:42,1,1.59,-73.993896484375,40.750110626220703,1,N,-73.974784851074219,40.750617980957031,1,12,1,0.5,3.25,0,0.3,17.05\n",
    );
    let err = read_all(&p).unwrap_err().to_string();
    assert!(err.contains("yellow_tripdata_2015-01.csv"), "{err}");
    assert!(err.contains("pre-2016-07"), "{err}");
    assert!(err.contains("pickup_longitude"), "{err}");
    let p = write(
        dir.path(),
        "yellow_tripdata_2009-01.csv",
        "vendor_name,Trip_Pickup_DateTime,Trip_Dropoff_DateTime,Passenger_Count,Trip_Distance,Start_Lon,Start_Lat,Rate_Code,store_and_forward,End_Lon,End_Lat,Payment_Type,Fare_Amt,surcharge,mta_tax,Tip_Amt,Tolls_Amt,Total_Amt\n",
    );
    assert!(
        read_all(&p)
            .unwrap_err()
            .to_string()
            .contains("pre-2016-07")
    );
}

#[test]
fn open_data_json_with_lowercase_names_and_string_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "m6nq-qud6.json",
        r#"[{"vendorid":"1","tpep_pickup_datetime":"2021-07-01T00:08:51.000","tpep_dropoff_datetime":"2021-07-01T00:13:05.000","passenger_count":"1","trip_distance":"0.8","ratecodeid":"1","store_and_fwd_flag":"N","pulocationid":"90","dolocationid":"68","payment_type":"1","fare_amount":"5","extra":"3","mta_tax":"0.5","tip_amount":"0","tolls_amount":"0","improvement_surcharge":"0.3","total_amount":"8.8","congestion_surcharge":"2.5"},
            {"tpep_pickup_datetime":"2021-07-01T00:22:39.000","tpep_dropoff_datetime":"2021-07-01T00:25:58.000","trip_distance":"0.9","pulocationid":"113","dolocationid":"90","fare_amount":"5","tip_amount":"0","tolls_amount":"0","total_amount":"8.8"},
            {"tpep_pickup_datetime":"2021-07-01T00:22:39.000","tpep_dropoff_datetime":"2021-07-01T00:25:58.000","trip_distance":"0.9","pulocationid":"x","dolocationid":"90","fare_amount":"5","tip_amount":"0","tolls_amount":"0","total_amount":"8.8"}]"#,
    );
    let (trips, rejects) = read_all(&p).unwrap();
    assert_eq!(trips.len(), 2);
    assert_eq!(trips[0].pickup, at("2021-07-01 00:08:51"));
    assert_eq!((trips[0].vendor_id, trips[0].pu_location_id), (Some(1), 90));
    assert_eq!(
        (trips[1].vendor_id, trips[1].passenger_count, trips[1].extra),
        (None, None, 0.0)
    );
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0].field.as_deref(), Some("PULocationID"));
    assert_eq!(rejects[0].source.row, 2);
}

struct Count(std::rc::Rc<std::cell::Cell<u64>>);

impl ResultWriter for Count {
    fn write(&mut self, results: &[WindowResult]) -> Result<(), OutputError> {
        self.0
            .set(self.0.get() + results.iter().map(|r| r.count).sum::<u64>());
        Ok(())
    }
    fn finish(&mut self) -> Result<(), OutputError> {
        Ok(())
    }
}

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/data/yellow_tripdata_2025-01_head.parquet")
}

/// The local job over `paths`, in this order; the trips it windows are
/// added to `counted`.
fn run_job(counted: &std::rc::Rc<std::cell::Cell<u64>>, paths: &[&Path]) -> Summary {
    let job = LocalJob::new(
        JobOptions {
            window: WindowConfig::tumbling(300, 86_400, GroupBy::PickupZone).unwrap(),
            month_tolerance_days: DEFAULT_MONTH_TOLERANCE_DAYS,
        },
        ZoneLookup::embedded(),
        Box::new(Count(counted.clone())),
    );
    let specs = paths
        .iter()
        .map(|p| InputSpec::Path(p.to_path_buf()))
        .collect();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(job.run(
            Inputs::new(specs, Dataset::Yellow),
            &mut CollectDeadLetters::default(),
        ))
        .unwrap()
}

#[test]
fn truncated_parquet_stops_that_file_only() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(sample()).unwrap();
    let truncated = dir.path().join("yellow_tripdata_2025-01_truncated.parquet");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();

    let err = read_all(&truncated).unwrap_err().to_string();
    assert!(
        err.contains("yellow_tripdata_2025-01_truncated.parquet"),
        "{err}"
    );
    assert!(err.contains("corrupt or truncated"), "{err}");

    let counted = std::rc::Rc::new(std::cell::Cell::new(0));
    let summary = run_job(&counted, &[&truncated, &sample()]);
    assert_eq!(summary.sources_failed.len(), 1);
    assert!(summary.sources_failed[0].contains("truncated.parquet"));
    assert_eq!(summary.sources_ok, 1);
    assert_eq!(
        counted.get(),
        10_000,
        "the next file is still read completely"
    );
}

#[test]
fn corrupt_parquet_pages_end_the_file_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(sample()).unwrap();
    // Overwrite page data in the middle, keeping the footer intact.
    let mid = bytes.len() / 3;
    for b in &mut bytes[mid..mid + 4096] {
        *b = 0xA5;
    }
    let corrupt = dir.path().join("yellow_tripdata_2025-01_corrupt.parquet");
    std::fs::write(&corrupt, &bytes).unwrap();
    let counted = std::rc::Rc::new(std::cell::Cell::new(0));
    let summary = run_job(&counted, &[&corrupt]);
    assert_eq!(summary.sources_failed.len(), 1, "{summary:?}");
    assert!(summary.sources_failed[0].contains("corrupt.parquet"));
}

#[test]
fn missing_file_is_reported_with_its_name() {
    let err = read_all(Path::new("/nonexistent/yellow_tripdata_2024-01.parquet"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/nonexistent/yellow_tripdata_2024-01.parquet"),
        "{err}"
    );
}

#[test]
fn synthetic_month_uses_the_2023_schema_and_reads_back() {
    use taxistream_worker::bench::synthetic::{SyntheticSpec, generate};
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("synthetic.parquet");
    let spec = SyntheticSpec {
        rows: 30_000,
        ..Default::default()
    };
    let g = generate(&spec, &p).unwrap();
    assert_eq!(g.late_rows, 30);
    let again = dir.path().join("again.parquet");
    generate(&spec, &again).unwrap();
    assert_eq!(
        std::fs::read(&p).unwrap(),
        std::fs::read(&again).unwrap(),
        "seeded: same bytes"
    );
    let (trips, rejects) = read_all(&p).unwrap();
    assert!(rejects.is_empty());
    assert_eq!(trips.len(), 30_000);
    assert!(
        trips.iter().any(|t| t.airport_fee.is_some_and(|f| f > 0.0)),
        "lowercase airport_fee is read"
    );
    assert!(trips.iter().any(|t| t.passenger_count.is_none()));
    let jan = Month::new(2023, 1).unwrap();
    assert!(
        trips
            .iter()
            .all(|t| t.pickup >= jan.start() && t.pickup < jan.next().start())
    );
}

#[test]
fn green_parquet_layout_with_double_codes_and_null_ehail_fee() {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, Float64Array, Int32Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    };
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
    let f64s = |v: Vec<Option<f64>>| Arc::new(Float64Array::from(v)) as ArrayRef;
    let cols: Vec<(&str, DataType, ArrayRef)> = vec![
        (
            "VendorID",
            DataType::Int32,
            Arc::new(Int32Array::from(vec![2, 2])),
        ),
        (
            "lpep_pickup_datetime",
            ts.clone(),
            Arc::new(TimestampMicrosecondArray::from(vec![
                at("2024-01-01 00:10:00"),
                at("2024-01-01 00:20:00"),
            ])),
        ),
        (
            "lpep_dropoff_datetime",
            ts,
            Arc::new(TimestampMicrosecondArray::from(vec![
                at("2024-01-01 00:20:00"),
                at("2024-01-01 00:31:00"),
            ])),
        ),
        (
            "store_and_fwd_flag",
            DataType::Utf8,
            Arc::new(StringArray::from(vec![Some("N"), None])),
        ),
        ("RatecodeID", DataType::Float64, f64s(vec![Some(1.0), None])),
        (
            "PULocationID",
            DataType::Int32,
            Arc::new(Int32Array::from(vec![74, 75])),
        ),
        (
            "DOLocationID",
            DataType::Int32,
            Arc::new(Int32Array::from(vec![41, 0])),
        ),
        (
            "passenger_count",
            DataType::Float64,
            f64s(vec![Some(1.0), None]),
        ),
        (
            "trip_distance",
            DataType::Float64,
            f64s(vec![Some(1.1), Some(2.2)]),
        ),
        (
            "fare_amount",
            DataType::Float64,
            f64s(vec![Some(8.6), Some(12.0)]),
        ),
        ("extra", DataType::Float64, f64s(vec![Some(1.0), None])),
        (
            "mta_tax",
            DataType::Float64,
            f64s(vec![Some(0.5), Some(0.5)]),
        ),
        (
            "tip_amount",
            DataType::Float64,
            f64s(vec![Some(2.0), Some(0.0)]),
        ),
        (
            "tolls_amount",
            DataType::Float64,
            f64s(vec![Some(0.0), Some(0.0)]),
        ),
        ("ehail_fee", DataType::Float64, f64s(vec![None, None])),
        (
            "improvement_surcharge",
            DataType::Float64,
            f64s(vec![Some(1.0), Some(1.0)]),
        ),
        (
            "total_amount",
            DataType::Float64,
            f64s(vec![Some(13.1), Some(13.5)]),
        ),
        (
            "payment_type",
            DataType::Float64,
            f64s(vec![Some(1.0), Some(2.0)]),
        ),
        (
            "trip_type",
            DataType::Float64,
            f64s(vec![Some(1.0), Some(2.0)]),
        ),
        (
            "congestion_surcharge",
            DataType::Float64,
            f64s(vec![Some(0.0), None]),
        ),
    ];
    let schema = Arc::new(Schema::new(
        cols.iter()
            .map(|(n, t, _)| Field::new(*n, t.clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(
        schema.clone(),
        cols.into_iter().map(|(_, _, a)| a).collect(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("green_tripdata_2024-01.parquet");
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&p).unwrap(), schema, None)
            .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();

    let (trips, rejects) = read_all(&p).unwrap();
    assert!(rejects.is_empty());
    let t = &trips[0];
    assert_eq!(t.dataset, Dataset::Green);
    assert_eq!(
        (t.payment_type, t.trip_type, t.ratecode_id),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!((t.ehail_fee, t.airport_fee), (None, None));
    let u = &trips[1];
    assert_eq!(
        (u.passenger_count, u.ratecode_id, u.store_and_fwd, u.extra),
        (None, None, None, 0.0)
    );

    // The zero dropoff zone is rejected by validation, with its field named.
    let counted = std::rc::Rc::new(std::cell::Cell::new(0));
    let summary = run_job(&counted, &[&p]);
    assert_eq!(summary.dead_letters.get(Reason::ZoneOutOfRange), 1);
    assert_eq!(counted.get(), 1);
}

#[test]
fn corruption_anywhere_never_takes_the_process_down() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read(sample()).unwrap();
    let mut files = Vec::new();
    // Deterministic damage at offsets across the file: page headers, data,
    // dictionary pages and the footer.
    for step in 1..40usize {
        let mut bytes = original.clone();
        let at = bytes.len() * step / 40;
        let len = 1 + (step * 37) % 300;
        for (k, b) in bytes[at..(at + len).min(original.len())]
            .iter_mut()
            .enumerate()
        {
            *b ^= (0x5Du8).wrapping_add(k as u8).wrapping_mul(31);
        }
        let p = dir
            .path()
            .join(format!("yellow_tripdata_2025-01_damaged_{step}.parquet"));
        std::fs::write(&p, &bytes).unwrap();
        files.push(p);
    }
    let counted = std::rc::Rc::new(std::cell::Cell::new(0));
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let summary = run_job(&counted, &paths);
    assert_eq!(
        summary.sources_ok + summary.sources_failed.len() as u64,
        files.len() as u64
    );
    assert!(!summary.sources_failed.is_empty());
    for f in &summary.sources_failed {
        assert!(f.contains("yellow_tripdata_2025-01_damaged_"), "{f}");
    }
}

#[test]
fn parquet_nulls_where_the_tlc_allows_none_become_dead_letters() {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, TimestampNanosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    let ns = |s: &str| at(s) * 1_000;
    let cols: Vec<(&str, ArrayRef)> = vec![
        (
            "tpep_pickup_datetime",
            Arc::new(TimestampNanosecondArray::from(vec![
                Some(ns("2024-03-01 10:00:00")),
                None,
                Some(ns("2024-03-01 10:02:00")),
                Some(ns("2024-03-01 10:03:00")),
            ])),
        ),
        (
            "tpep_dropoff_datetime",
            Arc::new(TimestampNanosecondArray::from(vec![
                Some(ns("2024-03-01 10:10:00")),
                Some(ns("2024-03-01 10:11:00")),
                Some(ns("2024-03-01 10:12:00")),
                Some(ns("2024-03-01 10:13:00")),
            ])),
        ),
        (
            "PULocationID",
            Arc::new(Int64Array::from(vec![Some(1), Some(2), None, Some(4)])),
        ),
        ("DOLocationID", Arc::new(Int64Array::from(vec![1, 2, 3, 4]))),
        (
            "trip_distance",
            Arc::new(Float64Array::from(vec![1.0, 1.0, 1.0, 1.0])),
        ),
        (
            "fare_amount",
            Arc::new(Float64Array::from(vec![
                Some(5.0),
                Some(5.0),
                Some(5.0),
                None,
            ])),
        ),
        (
            "tip_amount",
            Arc::new(Float64Array::from(vec![0.0, 0.0, 0.0, 0.0])),
        ),
        (
            "tolls_amount",
            Arc::new(Float64Array::from(vec![0.0, 0.0, 0.0, 0.0])),
        ),
        (
            "total_amount",
            Arc::new(Float64Array::from(vec![5.0, 5.0, 5.0, 5.0])),
        ),
    ];
    let schema = Arc::new(Schema::new(
        cols.iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    assert_eq!(
        schema.field(0).data_type(),
        &DataType::Timestamp(TimeUnit::Nanosecond, None)
    );
    let batch =
        RecordBatch::try_new(schema.clone(), cols.into_iter().map(|(_, a)| a).collect()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("yellow_tripdata_2024-03.parquet");
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&p).unwrap(), schema, None)
            .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();

    let (trips, rejects) = read_all(&p).unwrap();
    assert_eq!(trips.len(), 1);
    assert_eq!(
        trips[0].pickup,
        at("2024-03-01 10:00:00"),
        "nanoseconds become microseconds"
    );
    assert_eq!(
        trips[0].vendor_id, None,
        "an absent column is null, not an error"
    );
    let got: Vec<(u64, &str, &str)> = rejects
        .iter()
        .map(|d| (d.source.row, d.field.as_deref().unwrap(), d.detail.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "pickup_datetime", "pickup_datetime is null"),
            (2, "PULocationID", "PULocationID is null"),
            (3, "fare_amount", "fare_amount is null"),
        ]
    );
}
