//! The month cut into consecutive part files, for the concurrent run: the
//! relay publishes a source once it has landed, so with one file the stages
//! after ingest would only start when the whole month is in PostgreSQL.
//! Parts landed one after another keep every stage busy at once, as a feed
//! of files arriving over time would.

use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::BenchError;

/// Writes `input`'s rows, in order, into `parts` files in `dir`, named like
/// the month so that its validation applies to each.
pub fn split(
    input: &Path,
    dir: &Path,
    month: &str,
    parts: usize,
) -> Result<Vec<PathBuf>, BenchError> {
    let err = |what: &'static str, path: &Path| {
        let path = path.to_owned();
        move |e: parquet::errors::ParquetError| BenchError::Parquet {
            what,
            path,
            detail: e.to_string(),
        }
    };
    let file = File::open(input).map_err(|source| BenchError::Io {
        what: "opening the input",
        path: input.to_owned(),
        source,
    })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(err("reading", input))?;
    let total = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    let schema = builder.schema().clone();
    let reader = builder.build().map_err(err("reading", input))?;
    let parts = parts.clamp(1, total.max(1));
    let per_part = total.div_ceil(parts);
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut paths = Vec::with_capacity(parts);
    let mut writer: Option<(ArrowWriter<File>, usize)> = None;
    for batch in reader {
        let mut batch = batch.map_err(|e| BenchError::Parquet {
            what: "reading",
            path: input.to_owned(),
            detail: e.to_string(),
        })?;
        while batch.num_rows() > 0 {
            let (w, written) = match writer.as_mut() {
                Some(w) => w,
                None => {
                    let path = dir.join(format!(
                        "yellow_tripdata_{month}_part{:03}.parquet",
                        paths.len() + 1
                    ));
                    let f = File::create(&path).map_err(|source| BenchError::Io {
                        what: "creating a part file",
                        path: path.clone(),
                        source,
                    })?;
                    let w = ArrowWriter::try_new(f, schema.clone(), Some(props.clone()))
                        .map_err(err("writing", &path))?;
                    paths.push(path);
                    writer.insert((w, 0))
                }
            };
            let take = batch.num_rows().min(per_part - *written);
            w.write(&batch.slice(0, take))
                .map_err(err("writing", dir))?;
            *written += take;
            batch = batch.slice(take, batch.num_rows() - take);
            if *written == per_part
                && let Some((w, _)) = writer.take()
            {
                w.close().map_err(err("writing", dir))?;
            }
        }
    }
    if let Some((w, _)) = writer.take() {
        w.close().map_err(err("writing", dir))?;
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::synthetic::{SyntheticSpec, generate};
    use crate::source::TripReader;
    use crate::source::parquet::ParquetTripReader;
    use crate::trip::Dataset;

    fn pickups(path: &Path) -> Vec<i64> {
        let name = path.display().to_string();
        let mut r = ParquetTripReader::open(path, &name, Dataset::Yellow).unwrap();
        let mut out = Vec::new();
        while let Some(b) = r.next_batch().unwrap() {
            out.extend_from_slice(&b.trips.pickup);
        }
        out
    }

    #[test]
    fn parts_hold_the_rows_in_order_and_name_the_month() {
        let dir = tempfile::tempdir().unwrap();
        let month = dir.path().join("month.parquet");
        let spec = SyntheticSpec {
            rows: 25_003,
            ..Default::default()
        };
        generate(&spec, &month).unwrap();
        let parts = split(&month, dir.path(), "2023-01", 4).unwrap();
        assert_eq!(parts.len(), 4);
        let mut joined = Vec::new();
        for p in &parts {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            assert_eq!(
                crate::validate::Month::from_name(&name),
                crate::validate::Month::new(2023, 1),
                "{name}"
            );
            joined.extend(pickups(p));
        }
        assert_eq!(joined, pickups(&month));
    }
}
