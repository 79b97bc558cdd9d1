//! Malformed input, generated here: one set of value rules for the Parquet
//! and CSV readers, files that are not what their name says, CSV that cannot
//! be split into rows, and Parquet pages whose checksum does not match.
//! Every row must end up windowed or dead-lettered with a reason, and every
//! file that cannot be read must say what it is.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::array::{TimestampMicrosecondArray, TimestampNanosecondArray};
use arrow::datatypes::{Field, Schema};
use taxistream_worker::dead_letter::{DeadLetter, Reason};
use taxistream_worker::source::{
    ReadBatch, SourceError, TripReader, next_batch_guarded, open_file,
};
use taxistream_worker::trip::{Dataset, Trip};
use taxistream_worker::validate::{DEFAULT_MONTH_TOLERANCE_DAYS, Validator};

const HEADER: &str = "VendorID,tpep_pickup_datetime,tpep_dropoff_datetime,passenger_count,trip_distance,RatecodeID,store_and_fwd_flag,PULocationID,DOLocationID,payment_type,fare_amount,extra,mta_tax,tip_amount,tolls_amount,improvement_surcharge,total_amount";

fn csv_row(minute: u32) -> String {
    format!(
        "1,2024-03-01 10:{minute:02}:00,2024-03-01 10:{:02}:00,1,1.5,1,N,132,236,1,12.5,0,0.5,2,0,1,16\n",
        minute + 5
    )
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn at(s: &str) -> i64 {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .unwrap()
        .and_utc()
        .timestamp_micros()
}

/// Reads a file and validates it as `run` and `ingest` do.
fn read_checked(path: &Path) -> Result<(Vec<Trip>, Vec<DeadLetter>), SourceError> {
    let name = path.display().to_string();
    let mut reader = open_file(path, &name, Dataset::Yellow)?;
    let mut validator = Validator::for_file(&name, DEFAULT_MONTH_TOLERANCE_DAYS);
    let (mut trips, mut dead) = (Vec::new(), Vec::new());
    while let Some(ReadBatch { trips: b, rejects }) = reader.next_batch()? {
        dead.extend(rejects);
        let mut valid = Vec::new();
        validator.check(&b, &mut valid, |d| dead.push(d));
        trips.extend((0..b.len()).filter(|&i| valid[i]).map(|i| b.row(i)));
    }
    dead.sort_by_key(|d| d.source.row);
    Ok((trips, dead))
}

fn outcome(dead: &[DeadLetter]) -> Vec<(u64, Reason, String)> {
    dead.iter()
        .map(|d| (d.source.row, d.reason, d.field.clone().unwrap_or_default()))
        .collect()
}

fn write_parquet(path: &Path, cols: Vec<(&str, ArrayRef)>) {
    let schema = Arc::new(Schema::new(
        cols.iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch =
        RecordBatch::try_new(schema.clone(), cols.into_iter().map(|(_, a)| a).collect()).unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None)
            .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// The rows both readers get, as text: a good row, then one of each bad
/// value, then a good row.
const PASSENGERS: [&str; 10] = ["1", "1", "1", "1", "two", "255", "-3", "1", "1", "1"];
const PU_ZONES: [&str; 10] = [
    "132", "132", "132", "132.7", "132", "132", "132", "132", "132", "132",
];
const FARES: [&str; 10] = [
    "12.5", "NaN", "inf", "12.5", "12.5", "12.5", "12.5", "1e308", "12.5", "12.5",
];
const TIPS: [&str; 10] = ["2", "2", "2", "2", "2", "2", "2", "2", "$12.50", "2"];

fn expected() -> Vec<(u64, Reason, String)> {
    [
        (1, Reason::Unparsable, "fare_amount"),
        (2, Reason::Unparsable, "fare_amount"),
        (3, Reason::Unparsable, "PULocationID"),
        (4, Reason::Unparsable, "passenger_count"),
        (5, Reason::ValueOutOfRange, "passenger_count"),
        (6, Reason::ValueOutOfRange, "passenger_count"),
        (7, Reason::ValueOutOfRange, "fare_amount"),
        (8, Reason::Unparsable, "tip_amount"),
    ]
    .into_iter()
    .map(|(r, reason, f)| (r, reason, f.to_string()))
    .collect()
}

#[test]
fn parquet_and_csv_readers_apply_one_set_of_value_rules() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!("{HEADER}\n");
    for i in 0..10 {
        text.push_str(&format!(
            "1,2024-03-01 10:{i:02}:00,2024-03-01 10:{:02}:00,{},1.5,1,N,{},236,1,{},0,0.5,{},0,1,16\n",
            i + 5,
            PASSENGERS[i],
            PU_ZONES[i],
            FARES[i],
            TIPS[i]
        ));
    }
    let csv = write(dir.path(), "yellow_tripdata_2024-03.csv", text.as_bytes());

    // The same values in the types real files use: pandas-written doubles
    // for zones, text where a column was saved as strings.
    let n = 10;
    let ts = |offset: i64| -> ArrayRef {
        Arc::new(TimestampNanosecondArray::from(
            (0..n)
                .map(|i| (at("2024-03-01 10:00:00") + (i as i64 * 60 + offset) * 1_000_000) * 1_000)
                .collect::<Vec<_>>(),
        ))
    };
    let floats = |v: [&str; 10]| -> ArrayRef {
        Arc::new(Float64Array::from(
            v.iter()
                .map(|s| s.parse::<f64>().unwrap())
                .collect::<Vec<_>>(),
        ))
    };
    let texts = |v: [&str; 10]| -> ArrayRef { Arc::new(StringArray::from(v.to_vec())) };
    let consts = |v: f64| -> ArrayRef { Arc::new(Float64Array::from(vec![v; n])) };
    let pq = dir.path().join("yellow_tripdata_2024-03.parquet");
    write_parquet(
        &pq,
        vec![
            ("tpep_pickup_datetime", ts(0)),
            ("tpep_dropoff_datetime", ts(300)),
            ("passenger_count", texts(PASSENGERS)),
            ("trip_distance", consts(1.5)),
            ("PULocationID", floats(PU_ZONES)),
            ("DOLocationID", Arc::new(Int64Array::from(vec![236; n]))),
            ("fare_amount", floats(FARES)),
            ("tip_amount", texts(TIPS)),
            ("tolls_amount", consts(0.0)),
            ("total_amount", consts(16.0)),
        ],
    );

    let (csv_trips, csv_dead) = read_checked(&csv).unwrap();
    let (pq_trips, pq_dead) = read_checked(&pq).unwrap();
    assert_eq!(outcome(&csv_dead), expected(), "CSV");
    assert_eq!(outcome(&pq_dead), expected(), "Parquet");
    assert_eq!(csv_trips.len(), 2);
    assert_eq!(pq_trips.len(), 2);
    for (c, p) in csv_trips.iter().zip(&pq_trips) {
        assert_eq!(
            (c.pickup, c.pu_location_id, c.fare_amount, c.tip_amount),
            (p.pickup, p.pu_location_id, p.fare_amount, p.tip_amount)
        );
    }
    // Text that is no number says so and keeps the value.
    for dead in [&csv_dead, &pq_dead] {
        let two = &dead[3];
        assert!(
            two.detail.contains("passenger_count did not parse") && two.detail.contains("\"two\""),
            "{}",
            two.detail
        );
        assert!(two.raw.as_deref().unwrap().contains("two"));
        let dollars = &dead[7];
        assert!(dollars.detail.contains("\"$12.50\""), "{}", dollars.detail);
        assert!(
            dead[0].detail.contains("not a finite number"),
            "{}",
            dead[0].detail
        );
        assert!(dead[2].detail.contains("132.7"), "{}", dead[2].detail);
    }
    assert_eq!(pq_dead[3].raw.as_deref(), Some("two"));
    assert_eq!(pq_dead[2].raw.as_deref(), Some("132.7"));
}

fn worker() -> Command {
    Command::new(env!("CARGO_BIN_EXE_taxistream-worker"))
}

#[test]
fn window_sums_stay_finite_and_every_row_is_accounted_for() {
    let dir = tempfile::tempdir().unwrap();
    let pq = dir.path().join("yellow_tripdata_2024-03.parquet");
    // Each fare alone is finite; summed in one window they would overflow.
    let n = 6;
    let fares = vec![1.7e308, 1.7e308, f64::NAN, f64::INFINITY, 12.5, -12.5];
    let ts = |offset: i64| -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(
            (0..n)
                .map(|i| at("2024-03-01 10:00:00") + (i as i64 + offset) * 1_000_000)
                .collect::<Vec<_>>(),
        ))
    };
    write_parquet(
        &pq,
        vec![
            ("tpep_pickup_datetime", ts(0)),
            ("tpep_dropoff_datetime", ts(600)),
            ("PULocationID", Arc::new(Int64Array::from(vec![132; n]))),
            ("DOLocationID", Arc::new(Int64Array::from(vec![236; n]))),
            ("trip_distance", Arc::new(Float64Array::from(vec![1.0; n]))),
            ("fare_amount", Arc::new(Float64Array::from(fares))),
            ("tip_amount", Arc::new(Float64Array::from(vec![1.0; n]))),
            ("tolls_amount", Arc::new(Float64Array::from(vec![0.0; n]))),
            ("total_amount", Arc::new(Float64Array::from(vec![20.0; n]))),
        ],
    );
    let out = dir.path().join("out.jsonl");
    let dead = dir.path().join("dead.jsonl");
    let run = worker()
        .args(["run", "--no-progress", "--input"])
        .arg(&pq)
        .arg("--output")
        .arg(&out)
        .arg("--dead-letters")
        .arg(&dead)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(!text.contains("NaN") && !text.contains("inf"), "{text}");
    let mut windowed = 0;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        windowed += v["count"].as_u64().unwrap();
        let fare = v["sum_fare"].as_f64().expect("sum_fare is a finite number");
        assert!(fare.is_finite(), "{line}");
    }
    let letters = std::fs::read_to_string(&dead).unwrap().lines().count() as u64;
    assert_eq!((windowed, letters), (2, 4));
}

#[test]
fn timestamps_with_a_time_zone_are_converted_to_new_york_time() {
    let dir = tempfile::tempdir().unwrap();
    // 15:00 UTC on 2024-03-01 is 10:00 in New York (EST); on 2024-07-01, 11:00 (EDT).
    let utc = |s: &str| at(s);
    for (zone, name) in [
        ("America/New_York", "yellow_tripdata_2024-03.parquet"),
        ("UTC", "yellow_tripdata_2024-03-utc.parquet"),
        ("+00:00", "yellow_tripdata_2024-03-offset.parquet"),
    ] {
        let ts = |s: &str| -> ArrayRef {
            Arc::new(TimestampMicrosecondArray::from(vec![utc(s)]).with_timezone(zone))
        };
        let p = dir.path().join(name);
        write_parquet(
            &p,
            vec![
                ("tpep_pickup_datetime", ts("2024-03-01 15:00:00")),
                ("tpep_dropoff_datetime", ts("2024-03-01 15:10:00")),
                ("PULocationID", Arc::new(Int64Array::from(vec![132]))),
                ("DOLocationID", Arc::new(Int64Array::from(vec![236]))),
                ("trip_distance", Arc::new(Float64Array::from(vec![1.0]))),
                ("fare_amount", Arc::new(Float64Array::from(vec![10.0]))),
                ("tip_amount", Arc::new(Float64Array::from(vec![1.0]))),
                ("tolls_amount", Arc::new(Float64Array::from(vec![0.0]))),
                ("total_amount", Arc::new(Float64Array::from(vec![11.0]))),
            ],
        );
        let (trips, dead) = read_checked(&p).unwrap();
        assert!(dead.is_empty(), "{zone}: {dead:?}");
        assert_eq!(trips[0].pickup, at("2024-03-01 10:00:00"), "{zone}");
        assert_eq!(trips[0].dropoff, at("2024-03-01 10:10:00"), "{zone}");
    }
    let text = format!(
        "{HEADER}\n1,2024-07-01T15:00:00Z,2024-07-01T11:10:00-04:00,1,1.5,1,N,132,236,1,12.5,0,0.5,2,0,1,16\n"
    );
    let p = write(dir.path(), "yellow_tripdata_2024-07.csv", text.as_bytes());
    let (trips, _) = read_checked(&p).unwrap();
    assert_eq!(
        (trips[0].pickup, trips[0].dropoff),
        (at("2024-07-01 11:00:00"), at("2024-07-01 11:10:00"))
    );
}

fn open_error(path: &Path) -> String {
    match open_file(path, &path.display().to_string(), Dataset::Yellow) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn files_that_are_not_trip_data_say_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: Vec<(PathBuf, &str)> = vec![
        (write(d, "empty.csv", b""), "empty (0 bytes)"),
        (write(d, "blank.csv", b"\n\n  \n"), "only blank lines"),
        (
            write(
                d,
                "page.parquet",
                b"<!DOCTYPE html>\n<html><body>Not found</body></html>",
            ),
            "an HTML page",
        ),
        (
            write(
                d,
                "error.parquet",
                b"<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code></Error>",
            ),
            "an XML document",
        ),
        (
            write(d, "a.zip", b"PK\x03\x04\x14\x00\x00\x00"),
            "ZIP archive",
        ),
        (
            write(d, "b.bin", &[0x00, 0x01, 0x02, 0xff, 0xfe, 0x00]),
            "binary data",
        ),
        (
            write(
                d,
                "noheader.csv",
                format!("{}{}", csv_row(0), csv_row(1)).as_bytes(),
            ),
            "no header line: the first line is data (1,2024-03-01 10:00:00",
        ),
        (
            write(d, "other.csv", b"station,lat,lon\nA,40.7,-73.9\n"),
            "the header has 3 column(s): station, lat, lon",
        ),
    ];
    for (path, want) in cases {
        let e = open_error(&path);
        assert!(
            e.contains(&path.display().to_string()),
            "names the file: {e}"
        );
        assert!(e.contains(want), "{e}\nshould say {want:?}");
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"PAR1 not really").unwrap();
    let p = write(d, "x.parquet.gz", &gz.finish().unwrap());
    assert!(open_error(&p).contains("gzip-compressed Parquet"));
}

#[test]
fn gzipped_and_semicolon_delimited_csv_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{HEADER}\n{}{}", csv_row(0), csv_row(1));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    let p = write(
        dir.path(),
        "yellow_tripdata_2024-03.csv.gz",
        &gz.finish().unwrap(),
    );
    let (trips, dead) = read_checked(&p).unwrap();
    assert_eq!((trips.len(), dead.len()), (2, 0));
    assert_eq!(trips[1].pickup, at("2024-03-01 10:01:00"));

    let p = write(
        dir.path(),
        "yellow_tripdata_2024-03-semicolons.csv",
        text.replace(',', ";").as_bytes(),
    );
    let (trips, dead) = read_checked(&p).unwrap();
    assert_eq!((trips.len(), dead.len()), (2, 0));
    assert_eq!(trips[0].fare_amount, 12.5);
}

#[test]
fn an_unclosed_quote_fails_the_file_naming_the_row_and_keeps_the_rows_before() {
    let dir = tempfile::tempdir().unwrap();
    let bad =
        "1,2024-03-01 10:02:00,2024-03-01 10:07:00,1,1.5,1,\"N,132,236,1,12.5,0,0.5,2,0,1,16\n";
    let text = format!(
        "{HEADER}\n{}{}{bad}{}{}",
        csv_row(0),
        csv_row(1),
        csv_row(3),
        csv_row(4)
    );
    let p = write(dir.path(), "yellow_tripdata_2024-03.csv", text.as_bytes());
    let name = p.display().to_string();
    let mut reader = open_file(&p, &name, Dataset::Yellow).unwrap();
    let mut read = 0;
    let err = loop {
        match reader.next_batch() {
            Ok(Some(b)) => read += b.trips.len() + b.rejects.len(),
            Ok(None) => panic!("the unclosed quote went unnoticed"),
            Err(e) => break e.to_string(),
        }
    };
    assert_eq!(read, 2, "the rows before the quote are passed on");
    assert!(err.contains(&name), "{err}");
    assert!(err.contains("row 2 (line 4)"), "{err}");
    assert!(err.contains("not closed on its line"), "{err}");

    // Through `run`: the file fails, and the exit code says so.
    let run = worker()
        .args(["run", "--no-progress", "--input"])
        .arg(&p)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{stderr}");
    assert!(stderr.contains("not closed on its line"), "{stderr}");
}

#[test]
fn a_directory_without_trip_files_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "notes.txt", b"nothing here");
    let run = worker()
        .args(["run", "--no-progress", "--input"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        stderr.contains(&dir.path().display().to_string()) && stderr.contains("no trip files"),
        "{stderr}"
    );
    // A directory with a gzipped CSV is read.
    let text = format!("{HEADER}\n{}", csv_row(0));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    write(
        dir.path(),
        "yellow_tripdata_2024-03.csv.gz",
        &gz.finish().unwrap(),
    );
    let run = worker()
        .args(["run", "--no-progress", "--input"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("rows windowed") && stderr.contains("sources ok"),
        "{stderr}"
    );
}

/// A reader whose decoder panics, as third-party code may on corrupt bytes.
struct Panicking;

impl TripReader for Panicking {
    fn name(&self) -> &str {
        "boom.parquet"
    }
    fn total_rows(&self) -> Option<u64> {
        None
    }
    fn next_batch(&mut self) -> Result<Option<ReadBatch>, SourceError> {
        panic!("index out of bounds")
    }
}

#[test]
fn a_decoder_panic_becomes_an_error_naming_the_source() {
    let e = next_batch_guarded(&mut Panicking).unwrap_err().to_string();
    assert!(
        e.contains("boom.parquet") && e.contains("index out of bounds"),
        "{e}"
    );
}

/// The Thrift compact protocol, just enough to write a Parquet file by
/// hand: the `parquet` crate's writer does not write page checksums.
struct Compact {
    out: Vec<u8>,
    last: Vec<i16>,
}

impl Compact {
    fn new() -> Self {
        Self {
            out: Vec::new(),
            last: vec![0],
        }
    }
    fn varint(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.out.push(b);
                return;
            }
            self.out.push(b | 0x80);
        }
    }
    fn zigzag(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }
    fn field(&mut self, id: i16, ty: u8) {
        let last = self.last.last_mut().unwrap();
        let delta = id - *last;
        assert!((1..=15).contains(&delta));
        self.out.push(((delta as u8) << 4) | ty);
        *last = id;
    }
    fn i32(&mut self, id: i16, v: i32) {
        self.field(id, 5);
        self.zigzag(v.into());
    }
    fn i64(&mut self, id: i16, v: i64) {
        self.field(id, 6);
        self.zigzag(v);
    }
    fn binary(&mut self, id: i16, b: &[u8]) {
        self.field(id, 8);
        self.varint(b.len() as u64);
        self.out.extend_from_slice(b);
    }
    fn list(&mut self, id: i16, elem_type: u8, n: usize) {
        self.field(id, 9);
        assert!(n < 15);
        self.out.push(((n as u8) << 4) | elem_type);
    }
    fn begin(&mut self, id: Option<i16>) {
        if let Some(id) = id {
            self.field(id, 12);
        }
        self.last.push(0);
    }
    fn end(&mut self) {
        self.out.push(0);
        self.last.pop();
    }
}

enum Values {
    Text(Vec<&'static str>),
    Int(Vec<i32>),
    Double(Vec<f64>),
}

/// A Parquet file of required columns, one PLAIN page each, with CRC-32
/// page checksums. Returns the file and the offset of each column's values.
fn parquet_with_checksums(columns: &[(&str, Values)]) -> (Vec<u8>, Vec<usize>) {
    let rows = match &columns[0].1 {
        Values::Text(v) => v.len(),
        Values::Int(v) => v.len(),
        Values::Double(v) => v.len(),
    };
    let mut file = b"PAR1".to_vec();
    let mut chunks = Vec::new();
    let mut data_offsets = Vec::new();
    for (_, values) in columns {
        let (physical, data) = match values {
            Values::Text(v) => (
                6,
                v.iter()
                    .flat_map(|s| {
                        let mut b = (s.len() as u32).to_le_bytes().to_vec();
                        b.extend_from_slice(s.as_bytes());
                        b
                    })
                    .collect::<Vec<u8>>(),
            ),
            Values::Int(v) => (1, v.iter().flat_map(|i| i.to_le_bytes()).collect()),
            Values::Double(v) => (5, v.iter().flat_map(|f| f.to_le_bytes()).collect()),
        };
        let mut h = Compact::new();
        h.i32(1, 0); // DATA_PAGE
        h.i32(2, data.len() as i32);
        h.i32(3, data.len() as i32);
        h.i32(4, crc32fast::hash(&data) as i32);
        h.begin(Some(5));
        h.i32(1, rows as i32);
        h.i32(2, 0); // PLAIN
        h.i32(3, 3); // RLE
        h.i32(4, 3);
        h.end();
        h.out.push(0);
        let offset = file.len();
        file.extend_from_slice(&h.out);
        data_offsets.push(file.len());
        file.extend_from_slice(&data);
        chunks.push((physical, offset, file.len() - offset));
    }
    let mut m = Compact::new();
    m.i32(1, 1);
    m.list(2, 12, columns.len() + 1);
    m.begin(None);
    m.binary(4, b"schema");
    m.i32(5, columns.len() as i32);
    m.end();
    for ((name, _), (physical, _, _)) in columns.iter().zip(&chunks) {
        m.begin(None);
        m.i32(1, *physical);
        m.i32(3, 0); // REQUIRED
        m.binary(4, name.as_bytes());
        if *physical == 6 {
            m.i32(6, 0); // UTF8
        }
        m.end();
    }
    m.i64(3, rows as i64);
    m.list(4, 12, 1);
    m.begin(None);
    m.list(1, 12, columns.len());
    for ((name, _), (physical, offset, size)) in columns.iter().zip(&chunks) {
        m.begin(None);
        m.i64(2, *offset as i64);
        m.begin(Some(3));
        m.i32(1, *physical);
        m.list(2, 5, 1);
        m.zigzag(0);
        m.list(3, 8, 1);
        m.varint(name.len() as u64);
        m.out.extend_from_slice(name.as_bytes());
        m.i32(4, 0); // UNCOMPRESSED
        m.i64(5, rows as i64);
        m.i64(6, *size as i64);
        m.i64(7, *size as i64);
        m.i64(9, *offset as i64);
        m.end();
        m.end();
    }
    let total: usize = chunks.iter().map(|c| c.2).sum();
    m.i64(2, total as i64);
    m.i64(3, rows as i64);
    m.end();
    m.end();
    file.extend_from_slice(&m.out);
    file.extend_from_slice(&(m.out.len() as u32).to_le_bytes());
    file.extend_from_slice(b"PAR1");
    (file, data_offsets)
}

#[test]
fn a_parquet_page_whose_checksum_does_not_match_fails_the_file() {
    let columns = [
        (
            "tpep_pickup_datetime",
            Values::Text(vec!["2024-03-01 10:00:00", "2024-03-01 10:01:00"]),
        ),
        (
            "tpep_dropoff_datetime",
            Values::Text(vec!["2024-03-01 10:10:00", "2024-03-01 10:11:00"]),
        ),
        ("PULocationID", Values::Int(vec![132, 138])),
        ("DOLocationID", Values::Int(vec![236, 236])),
        ("trip_distance", Values::Double(vec![1.5, 2.5])),
        ("fare_amount", Values::Double(vec![12.5, 20.0])),
        ("tip_amount", Values::Double(vec![2.0, 0.0])),
        ("tolls_amount", Values::Double(vec![0.0, 0.0])),
        ("total_amount", Values::Double(vec![15.5, 21.0])),
    ];
    let (bytes, data_offsets) = parquet_with_checksums(&columns);
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "yellow_tripdata_2024-03.parquet", &bytes);
    let (trips, dead) = read_checked(&good).unwrap();
    assert!(dead.is_empty(), "{dead:?}");
    assert_eq!(
        trips.iter().map(|t| t.fare_amount).collect::<Vec<_>>(),
        [12.5, 20.0],
        "the hand-written file reads back"
    );

    // 12.5 is 0x4029000000000000: one flipped bit makes it 25.0.
    let mut corrupt = bytes.clone();
    corrupt[data_offsets[5] + 6] ^= 0x10;
    let p = write(
        dir.path(),
        "yellow_tripdata_2024-03-corrupt.parquet",
        &corrupt,
    );
    let err = match read_checked(&p) {
        Ok((trips, _)) => panic!(
            "a corrupted page was read: fares {:?}",
            trips.iter().map(|t| t.fare_amount).collect::<Vec<_>>()
        ),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("corrupt-parquet") || err.contains("corrupt.parquet"),
        "{err}"
    );
    assert!(err.to_ascii_lowercase().contains("checksum"), "{err}");
}
