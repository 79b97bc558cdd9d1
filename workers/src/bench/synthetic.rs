//! The seeded synthetic month used by `make bench`.
//!
//! One month of yellow-taxi trips in the TLC's 2023 Parquet schema (19
//! columns; int64 ids, double passenger count and rate code, lowercase
//! `airport_fee`), shaped like the reference benchmark's generator:
//!
//! - pickups spread evenly over the month in row order, each moved by a
//!   uniform jitter of at most 240 s ("mostly ordered, minutes of jitter");
//! - 0.1% of rows (`rows / 1000`, evenly spaced after the first 10,000 rows,
//!   whose watermark is still too young for a record to be late) are late:
//!   their pickup is 30 minutes to 3 hours earlier than their position;
//! - pickup zones follow a Zipf-like law (exponent 1.09) over a seeded
//!   permutation of zones 1..=265, so about 130 zones are busy in each
//!   5-minute window, as in TLC data;
//! - distances, durations, fares, tips, tolls and surcharges are drawn from
//!   simple plausible distributions; about 2% of passenger counts are null.
//!
//! The same seed gives the same file, byte for byte.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::trip::MICROS_PER_SECOND;
use crate::validate::Month;

/// Rows at the start of the month that are never late (the first late
/// record must trail a watermark that is already 30 minutes in).
const WARMUP_ROWS: usize = 10_000;

/// Bumped whenever the generated data changes, so cached files are not reused.
pub const GENERATOR_VERSION: u32 = 3;

/// Generator settings.
#[derive(Debug, Clone, Copy)]
pub struct SyntheticSpec {
    pub rows: usize,
    pub month: Month,
    pub seed: u64,
    /// Maximum jitter of on-time pickups, in seconds.
    pub jitter_s: i64,
    /// `rows / late_every` rows are late.
    pub late_every: usize,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        Self {
            rows: 5_000_000,
            month: Month {
                year: 2023,
                month: 1,
            },
            seed: 42,
            jitter_s: 240,
            late_every: 1_000,
        }
    }
}

/// What was generated.
#[derive(Debug, Clone, Copy, Default)]
pub struct Generated {
    pub rows: usize,
    pub late_rows: usize,
}

fn schema() -> Arc<Schema> {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
    let f = |name: &str, t: DataType, nullable: bool| Field::new(name, t, nullable);
    Arc::new(Schema::new(vec![
        f("VendorID", DataType::Int64, true),
        f("tpep_pickup_datetime", ts.clone(), true),
        f("tpep_dropoff_datetime", ts, true),
        f("passenger_count", DataType::Float64, true),
        f("trip_distance", DataType::Float64, true),
        f("RatecodeID", DataType::Float64, true),
        f("store_and_fwd_flag", DataType::Utf8, true),
        f("PULocationID", DataType::Int64, true),
        f("DOLocationID", DataType::Int64, true),
        f("payment_type", DataType::Int64, true),
        f("fare_amount", DataType::Float64, true),
        f("extra", DataType::Float64, true),
        f("mta_tax", DataType::Float64, true),
        f("tip_amount", DataType::Float64, true),
        f("tolls_amount", DataType::Float64, true),
        f("improvement_surcharge", DataType::Float64, true),
        f("total_amount", DataType::Float64, true),
        f("congestion_surcharge", DataType::Float64, true),
        f("airport_fee", DataType::Float64, true),
    ]))
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Writes the synthetic month to `path`.
pub fn generate(spec: &SyntheticSpec, path: &Path) -> Result<Generated, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut zones: Vec<i64> = (1..=265).collect();
    zones.shuffle(&mut rng);
    let weights: Vec<f64> = (1..=zones.len())
        .map(|r| 1.0 / (r as f64).powf(1.09))
        .collect();
    let total: f64 = weights.iter().sum();
    let mut cdf = Vec::with_capacity(weights.len());
    let mut acc = 0.0;
    for w in &weights {
        acc += w / total;
        cdf.push(acc);
    }
    let pick_zone = |u: f64| zones[cdf.partition_point(|&c| c < u).min(zones.len() - 1)];

    let start = spec.month.start();
    let span = spec.month.next().start() - start;
    let step = span / spec.rows.max(1) as i64;
    let jitter = spec.jitter_s * MICROS_PER_SECOND;
    let late_rows = spec.rows / spec.late_every.max(1);
    let late_stride = (spec.rows.saturating_sub(WARMUP_ROWS) / late_rows.max(1)).max(1);

    let file = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(1 << 20))
        .build();
    let schema = schema();
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Generated::default();
    const CHUNK: usize = 1 << 16;
    let mut row = 0usize;
    while row < spec.rows {
        let n = CHUNK.min(spec.rows - row);
        let mut vendor = Vec::with_capacity(n);
        let mut pickup = Vec::with_capacity(n);
        let mut dropoff = Vec::with_capacity(n);
        let mut pax = Vec::with_capacity(n);
        let mut dist = Vec::with_capacity(n);
        let mut rate = Vec::with_capacity(n);
        let mut flag = Vec::with_capacity(n);
        let mut pu = Vec::with_capacity(n);
        let mut du = Vec::with_capacity(n);
        let mut pay = Vec::with_capacity(n);
        let mut fare = Vec::with_capacity(n);
        let mut extra = Vec::with_capacity(n);
        let mut mta = Vec::with_capacity(n);
        let mut tip = Vec::with_capacity(n);
        let mut tolls = Vec::with_capacity(n);
        let mut improvement = Vec::with_capacity(n);
        let mut total_amt = Vec::with_capacity(n);
        let mut congestion = Vec::with_capacity(n);
        let mut airport = Vec::with_capacity(n);
        for i in row..row + n {
            let base = start + i as i64 * step;
            let late = i >= WARMUP_ROWS && (i - WARMUP_ROWS) % late_stride == late_stride - 1;
            let t = if late {
                out.late_rows += 1;
                base - rng.random_range(30 * 60..=3 * 3600) * MICROS_PER_SECOND
            } else {
                base + rng.random_range(-jitter..=jitter)
            };
            let t = t.clamp(start, start + span - 1);
            // Log-normal-ish distance: most trips 1-3 miles, a long tail.
            let d: f64 = (rng.random::<f64>() * 1.6 - 0.2).exp() * rng.random_range(0.5..2.0);
            let d = round2(d.min(60.0));
            let mph: f64 = rng.random_range(6.0..22.0);
            let duration =
                ((d / mph) * 3600.0 * MICROS_PER_SECOND as f64) as i64 + 60 * MICROS_PER_SECOND;
            let z = pick_zone(rng.random::<f64>());
            let airport_trip = z == 132 || z == 138;
            let f = round2(3.0 + 3.38 * d + duration as f64 / 60e6 * 0.7);
            let card = rng.random_bool(0.75);
            let tp = if card {
                round2(f * rng.random_range(0.1..0.3))
            } else {
                0.0
            };
            let tl = if d > 12.0 && rng.random_bool(0.4) {
                6.55
            } else {
                0.0
            };
            let ex = if rng.random_bool(0.4) { 2.5 } else { 0.0 };
            let cg = if rng.random_bool(0.9) { 2.5 } else { 0.0 };
            let ap = if airport_trip { 1.25 } else { 0.0 };
            vendor.push(if rng.random_bool(0.7) { 2 } else { 1 });
            pickup.push(t);
            dropoff.push(t + duration);
            pax.push(if rng.random_bool(0.02) {
                None
            } else {
                Some(f64::from(
                    [1, 1, 1, 1, 1, 2, 2, 3, 4, 5, 6][rng.random_range(0..11)],
                ))
            });
            dist.push(d);
            rate.push(Some(if airport_trip { 2.0 } else { 1.0 }));
            flag.push(Some(if rng.random_bool(0.005) { "Y" } else { "N" }));
            pu.push(z);
            du.push(pick_zone(rng.random::<f64>()));
            pay.push(if card { 1 } else { 2 });
            fare.push(f);
            extra.push(ex);
            mta.push(0.5);
            tip.push(tp);
            tolls.push(tl);
            improvement.push(1.0);
            total_amt.push(round2(f + ex + 0.5 + tp + tl + 1.0 + cg + ap));
            congestion.push(cg);
            airport.push(ap);
        }
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vendor)),
            Arc::new(TimestampMicrosecondArray::from(pickup)),
            Arc::new(TimestampMicrosecondArray::from(dropoff)),
            Arc::new(Float64Array::from(pax)),
            Arc::new(Float64Array::from(dist)),
            Arc::new(Float64Array::from(rate)),
            Arc::new(StringArray::from(flag)),
            Arc::new(Int64Array::from(pu)),
            Arc::new(Int64Array::from(du)),
            Arc::new(Int64Array::from(pay)),
            Arc::new(Float64Array::from(fare)),
            Arc::new(Float64Array::from(extra)),
            Arc::new(Float64Array::from(mta)),
            Arc::new(Float64Array::from(tip)),
            Arc::new(Float64Array::from(tolls)),
            Arc::new(Float64Array::from(improvement)),
            Arc::new(Float64Array::from(total_amt)),
            Arc::new(Float64Array::from(congestion)),
            Arc::new(Float64Array::from(airport)),
        ];
        let batch = RecordBatch::try_new(schema.clone(), cols).map_err(|e| e.to_string())?;
        writer
            .write(&batch)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        row += n;
    }
    writer
        .close()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    out.rows = spec.rows;
    Ok(out)
}
