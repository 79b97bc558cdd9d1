//! Parquet result files (zstd), one row group per emitted chunk of windows.
//!
//! Encoding and compressing results costs about as much as computing them,
//! so it runs on a thread of its own, a batch or two behind the windows.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use arrow::array::{
    ArrayRef, Float64Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::{OutputError, ResultWriter, columns};
use crate::window::{GroupBy, WindowResult};

/// Results per row group. The writer holds a row group's encoded pages
/// until it is complete, so this bounds its memory (the default of about a
/// million rows took 150 MB for a month's results). 32k rows rather than
/// 128k: 6 MiB less peak RSS for `run` on the 5M-row month, at the same
/// speed and a file 0.4% larger.
const ROW_GROUP_ROWS: usize = 32 * 1024;

/// Results converted to a record batch and handed to the writer at once.
const BATCH_ROWS: usize = 16 * 1024;

pub struct ParquetWriter {
    path: String,
    pending: Vec<WindowResult>,
    encoder: Encoder,
}

enum Encoder {
    /// Started at the first results, not with the file: in `run` the
    /// threads that read the inputs have ended by then, and the allocator
    /// hands the new thread the memory they freed instead of fresh memory.
    Idle(SchemaRef, Box<ArrowWriter<File>>),
    /// Dropping the sender tells the thread that the results are complete.
    Running(
        SyncSender<Vec<WindowResult>>,
        JoinHandle<Result<(), OutputError>>,
    ),
    Closed,
}

impl ParquetWriter {
    pub fn create(path: &Path, group_by: GroupBy) -> Result<Self, OutputError> {
        let name = path.display().to_string();
        let c = columns(group_by);
        let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
        let schema = Arc::new(Schema::new(vec![
            Field::new(c[0], DataType::Int32, false),
            Field::new(c[1], DataType::Utf8, false),
            Field::new(c[2], DataType::Utf8, true),
            Field::new(c[3], DataType::Utf8, true),
            Field::new(c[4], ts.clone(), false),
            Field::new(c[5], ts, false),
            Field::new(c[6], DataType::Int64, false),
            Field::new(c[7], DataType::Int64, false),
            Field::new(c[8], DataType::Int64, true),
            Field::new(c[9], DataType::Float64, false),
            Field::new(c[10], DataType::Float64, false),
            Field::new(c[11], DataType::Float64, false),
            Field::new(c[12], DataType::Float64, false),
            Field::new(c[13], DataType::Float64, false),
            Field::new(c[14], DataType::Float64, false),
            Field::new(c[15], DataType::Float64, true),
            Field::new(c[16], DataType::Float64, true),
            Field::new(c[17], DataType::Utf8, false),
        ]));
        let file = File::create(path).map_err(|error| OutputError::Io {
            path: name.clone(),
            error,
        })?;
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
        // Sums and averages hardly ever repeat: a dictionary for them is
        // hashed value by value and then dropped for plain encoding at the
        // page size limit, which was most of the encoder's time.
        for float_column in &c[9..=16] {
            props = props.set_column_dictionary_enabled(ColumnPath::from(*float_column), false);
        }
        let props = props.build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|e| {
            OutputError::Encode {
                path: name.clone(),
                message: e.to_string(),
            }
        })?;
        Ok(Self {
            path: name,
            pending: Vec::new(),
            encoder: Encoder::Idle(schema, Box::new(writer)),
        })
    }

    fn flush_pending(&mut self) -> Result<(), OutputError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if let Encoder::Idle(..) = self.encoder {
            self.start_encoder()?;
        }
        let batch = std::mem::take(&mut self.pending);
        match &self.encoder {
            Encoder::Running(tx, _) if tx.send(batch).is_ok() => Ok(()),
            // The encoder stopped: its error says why.
            _ => self.close(),
        }
    }

    fn start_encoder(&mut self) -> Result<(), OutputError> {
        let Encoder::Idle(schema, writer) = std::mem::replace(&mut self.encoder, Encoder::Closed)
        else {
            return Ok(());
        };
        // A batch is handed over only once the encoder is done with the one
        // before: each holds tens of thousands of results, several MB.
        let (to_encoder, batches) = sync_channel(0);
        let path = self.path.clone();
        let encoder = std::thread::Builder::new()
            .name("parquet-output".into())
            .spawn(move || encode(&path, &schema, *writer, &batches))
            .map_err(|error| OutputError::Io {
                path: self.path.clone(),
                error,
            })?;
        self.encoder = Encoder::Running(to_encoder, encoder);
        Ok(())
    }

    /// Writes everything sent and closes the file.
    fn close(&mut self) -> Result<(), OutputError> {
        let encode_err = |message: String| OutputError::Encode {
            path: self.path.clone(),
            message,
        };
        match std::mem::replace(&mut self.encoder, Encoder::Closed) {
            Encoder::Idle(_, writer) => writer
                .close()
                .map(drop)
                .map_err(|e| encode_err(e.to_string())),
            Encoder::Running(to_encoder, encoder) => {
                drop(to_encoder);
                encoder.join().unwrap_or_else(|panic| {
                    Err(encode_err(format!(
                        "encoder failed: {}",
                        crate::source::panic_message(&*panic)
                    )))
                })
            }
            Encoder::Closed => Err(encode_err("the file was already closed".into())),
        }
    }
}

/// The encoding thread: writes each batch of results as it comes, and
/// closes the file once the sender is gone.
fn encode(
    path: &str,
    schema: &SchemaRef,
    mut writer: ArrowWriter<File>,
    batches: &Receiver<Vec<WindowResult>>,
) -> Result<(), OutputError> {
    let encode_err = |e: &dyn std::fmt::Display| OutputError::Encode {
        path: path.to_string(),
        message: e.to_string(),
    };
    for results in batches {
        let batch = to_batch(schema, &results).map_err(|e| encode_err(&e))?;
        writer.write(&batch).map_err(|e| encode_err(&e))?;
    }
    writer.close().map_err(|e| encode_err(&e))?;
    Ok(())
}

fn to_batch(
    schema: &SchemaRef,
    rs: &[WindowResult],
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let n = rs.len();
    let mut key = Int32Builder::with_capacity(n);
    let mut key_name = StringBuilder::new();
    let mut zone = StringBuilder::new();
    let mut borough = StringBuilder::new();
    let mut start = TimestampMicrosecondBuilder::with_capacity(n);
    let mut end = TimestampMicrosecondBuilder::with_capacity(n);
    let mut cnt = Int64Builder::with_capacity(n);
    let mut pax = Int64Builder::with_capacity(n);
    let mut max_pax = Int64Builder::with_capacity(n);
    let mut f: Vec<Float64Builder> = (0..8).map(|_| Float64Builder::with_capacity(n)).collect();
    let mut group = StringBuilder::new();
    for r in rs {
        key.append_value(r.key);
        key_name.append_value(&r.key_name);
        zone.append_option(r.zone.as_deref());
        borough.append_option(r.borough.as_deref());
        start.append_value(r.window_start);
        end.append_value(r.window_end);
        cnt.append_value(i64::try_from(r.count).unwrap_or(i64::MAX));
        pax.append_value(r.passengers);
        max_pax.append_option(r.max_passengers.map(i64::from));
        f[0].append_value(r.sum_fare);
        f[1].append_value(r.sum_tip);
        f[2].append_value(r.sum_tolls);
        f[3].append_value(r.sum_total);
        f[4].append_value(r.avg_distance);
        f[5].append_value(r.avg_duration_s);
        f[6].append_option(r.avg_speed_mph);
        f[7].append_option(r.avg_tip_ratio);
        group.append_value(super::group_by_name(r.group_by));
    }
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(key.finish()),
        Arc::new(key_name.finish()),
        Arc::new(zone.finish()),
        Arc::new(borough.finish()),
        Arc::new(start.finish()),
        Arc::new(end.finish()),
        Arc::new(cnt.finish()),
        Arc::new(pax.finish()),
        Arc::new(max_pax.finish()),
    ];
    cols.extend(f.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    cols.push(Arc::new(group.finish()));
    RecordBatch::try_new(schema.clone(), cols)
}

impl ResultWriter for ParquetWriter {
    fn write(&mut self, results: &[WindowResult]) -> Result<(), OutputError> {
        // Exactly: doubling would leave each batch in flight up to half empty.
        self.pending.reserve_exact(results.len());
        self.pending.extend_from_slice(results);
        if self.pending.len() >= BATCH_ROWS {
            self.flush_pending()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), OutputError> {
        self.flush_pending()?;
        self.close()
    }
}
