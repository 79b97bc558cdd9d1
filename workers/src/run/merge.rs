//! The event-time merge of `run`: the valid rows of every source read, in
//! the order the relay publishes completed sources.
//!
//! A later input can hold pickups earlier than anything in an earlier one
//! (a month given after the next, a month whose tail strays into the next),
//! so nothing can be windowed before every input has been read. This is an
//! external merge sort: the valid rows are cut into runs of at most
//! [`RUN_ROWS`] in file order, each run is sorted by pickup (equal pickups
//! in file order) and, once the next run starts, written to one unnamed
//! temporary file, so memory holds about two runs whatever the size of the
//! inputs. The runs are then merged by (pickup, run): runs are numbered in
//! input and file order, which is the relay's order over completed sources
//! (it picks the source whose next row landed first and publishes all of
//! its rows up to the other sources' next pickup, and ingest lands the
//! inputs one after the other, in file order).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use crate::trip::{Dataset, TripBatch};

/// The temporary file of the sorted sources failed.
#[derive(Debug, thiserror::Error)]
#[error("keeping the sorted rows of the inputs read in a temporary file: {0}")]
pub struct SpillError(#[from] std::io::Error);

/// Rows per merged batch handed to the windows.
const CHUNK: usize = 65_536;

/// Rows per run. A run is sorted in memory, with its batches, its sort keys
/// and its sorted copy: about 350 bytes a row, so 45 MB at most.
pub const RUN_ROWS: usize = 131_072;

/// Rows per chunk of a sorted run: the merge holds one chunk of every run,
/// about 600 KB each.
const RUN_CHUNK: usize = 4_096;

/// One run's valid rows, sorted, in chunks.
enum Sorted {
    Memory(std::vec::IntoIter<TripBatch>),
    /// In the spill file: the next chunk's position, and the chunks left.
    Spilled {
        at: u64,
        chunks: usize,
    },
}

struct Run {
    name: Arc<str>,
    dataset: Dataset,
    rows: Sorted,
}

/// The next chunk of `run`, read from `spill` if it was written there.
fn next_chunk(
    run: &mut Run,
    spill: Option<&mut File>,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<TripBatch>> {
    match &mut run.rows {
        Sorted::Memory(chunks) => Ok(chunks.next()),
        Sorted::Spilled { chunks: 0, .. } => Ok(None),
        Sorted::Spilled { at, chunks } => {
            let file = spill.ok_or_else(|| std::io::Error::other("spill file missing"))?;
            file.seek(SeekFrom::Start(*at))?;
            let chunk = read_chunk(file, run.name.clone(), run.dataset, buf)?;
            *at = file.stream_position()?;
            *chunks -= 1;
            Ok(Some(chunk))
        }
    }
}

/// Where each row of a merged batch came from, for the dead letters it causes.
pub struct Origins<'a> {
    of_row: &'a [u32],
    sources: &'a [(Arc<str>, Dataset)],
}

impl Origins<'_> {
    /// The source and dataset of row `i`.
    pub fn of(&self, i: usize) -> (&Arc<str>, Dataset) {
        let (name, dataset) = &self.sources[self.of_row[i] as usize];
        (name, *dataset)
    }
}

/// The runs read so far, in input and file order.
pub struct EventTimeMerge {
    runs: Vec<Run>,
    /// The sorted runs no longer in memory, one after the other.
    spill: Option<File>,
    chunk: usize,
    run_chunk: usize,
}

impl Default for EventTimeMerge {
    fn default() -> Self {
        Self {
            runs: Vec::new(),
            spill: None,
            chunk: CHUNK,
            run_chunk: RUN_CHUNK,
        }
    }
}

impl EventTimeMerge {
    /// Makes room for the next run: the last one added goes to disk.
    pub fn spill_last(&mut self) -> Result<(), SpillError> {
        let Some(last) = self.runs.last_mut() else {
            return Ok(());
        };
        let file = match &mut self.spill {
            Some(file) => file,
            None => self.spill.insert(tempfile::tempfile()?),
        };
        Ok(spill(last, file)?)
    }

    /// Adds the next run: valid rows of one source, in file order, after
    /// the runs before them in the inputs. It is sorted by pickup here.
    pub fn add_run(&mut self, batches: Vec<TripBatch>) -> Result<(), SpillError> {
        let Some(first) = batches.first() else {
            return Ok(());
        };
        let (name, dataset) = (first.source.clone(), first.dataset);
        self.spill_last()?;
        let mut order: Vec<(i64, u32, u32)> = batches
            .iter()
            .enumerate()
            .flat_map(|(b, batch)| {
                batch
                    .pickup
                    .iter()
                    .enumerate()
                    .map(move |(i, &p)| (p, b as u32, i as u32))
            })
            .collect();
        order.sort_unstable();
        let chunks: Vec<TripBatch> = order
            .chunks(self.run_chunk)
            .map(|chunk| {
                let mut sorted = TripBatch::with_capacity(name.clone(), dataset, chunk.len());
                for &(_, b, i) in chunk {
                    sorted.push_from(&batches[b as usize], i as usize);
                }
                sorted
            })
            .collect();
        self.runs.push(Run {
            name,
            dataset,
            rows: Sorted::Memory(chunks.into_iter()),
        });
        Ok(())
    }

    /// Hands the rows of every run to `window` in batches of up to 65,536
    /// rows, by (pickup, source, file order).
    pub fn drain<E: From<SpillError>>(
        mut self,
        mut window: impl FnMut(&TripBatch, &Origins<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let origins: Vec<(Arc<str>, Dataset)> = self
            .runs
            .iter()
            .map(|s| (s.name.clone(), s.dataset))
            .collect();
        let mut buf = Vec::new();
        // The current chunk of each run and the next row in it.
        let mut heads: Vec<(TripBatch, usize)> = Vec::with_capacity(self.runs.len());
        let mut heap = BinaryHeap::new();
        for (s, run) in self.runs.iter_mut().enumerate() {
            match next_chunk(run, self.spill.as_mut(), &mut buf).map_err(SpillError)? {
                Some(chunk) => {
                    heap.push(Reverse((chunk.pickup[0], s)));
                    heads.push((chunk, 0));
                }
                None => heads.push((
                    TripBatch::with_capacity(Arc::from(""), Dataset::Yellow, 0),
                    0,
                )),
            }
        }
        let Some((name, dataset)) = origins.first().cloned() else {
            return Ok(());
        };
        let mut merged = TripBatch::with_capacity(name, dataset, self.chunk);
        let mut of_row = Vec::with_capacity(self.chunk);
        loop {
            let popped = heap.pop();
            let done = popped.is_none();
            if let Some(Reverse((_, s))) = popped {
                let (chunk, next) = &mut heads[s];
                merged.push_from(chunk, *next);
                of_row.push(s as u32);
                *next += 1;
                if *next == chunk.len()
                    && let Some(c) = next_chunk(&mut self.runs[s], self.spill.as_mut(), &mut buf)
                        .map_err(SpillError)?
                {
                    (*chunk, *next) = (c, 0);
                }
                if *next < chunk.len() {
                    heap.push(Reverse((chunk.pickup[*next], s)));
                }
            }
            if merged.len() == self.chunk || (done && !merged.is_empty()) {
                window(
                    &merged,
                    &Origins {
                        of_row: &of_row,
                        sources: &origins,
                    },
                )?;
                merged.clear();
                of_row.clear();
            }
            if done {
                return Ok(());
            }
        }
    }
}

/// Moves a sorted run held in memory to the end of the spill file.
fn spill(run: &mut Run, file: &mut File) -> std::io::Result<()> {
    let Sorted::Memory(chunks) = &mut run.rows else {
        return Ok(());
    };
    let at = file.seek(SeekFrom::End(0))?;
    let mut out = BufWriter::new(file);
    let mut buf = Vec::new();
    let mut n = 0;
    for chunk in chunks.by_ref() {
        write_chunk(&chunk, &mut buf);
        out.write_all(&buf)?;
        n += 1;
    }
    out.flush()?;
    run.rows = Sorted::Spilled { at, chunks: n };
    Ok(())
}

/// Fixed-width little-endian values: the columns of a spilled chunk.
trait Le: Copy {
    const WIDTH: usize;
    fn put(self, out: &mut Vec<u8>);
    fn take(bytes: &[u8]) -> Self;
}

macro_rules! le {
    ($($t:ty),*) => {$(
        impl Le for $t {
            const WIDTH: usize = std::mem::size_of::<$t>();
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn take(bytes: &[u8]) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(bytes);
                <$t>::from_le_bytes(a)
            }
        }
    )*};
}

le!(i8, i32, i64, u64, f64);

fn put<T: Le>(column: &[T], out: &mut Vec<u8>) {
    for &v in column {
        v.put(out);
    }
}

fn take<T: Le>(
    file: &mut impl Read,
    n: usize,
    buf: &mut Vec<u8>,
    column: &mut Vec<T>,
) -> std::io::Result<()> {
    buf.resize(n * T::WIDTH, 0);
    file.read_exact(buf)?;
    column.extend(buf.chunks_exact(T::WIDTH).map(T::take));
    Ok(())
}

/// A chunk as its row count, then each column (NaN payloads and null
/// markers survive, bit for bit).
fn write_chunk(b: &TripBatch, out: &mut Vec<u8>) {
    out.clear();
    put(&[b.len() as u64], out);
    put(&b.row, out);
    put(&b.vendor_id, out);
    put(&b.pickup, out);
    put(&b.dropoff, out);
    put(&b.passenger_count, out);
    put(&b.trip_distance, out);
    put(&b.ratecode_id, out);
    put(&b.store_and_fwd, out);
    put(&b.pu_location_id, out);
    put(&b.do_location_id, out);
    put(&b.payment_type, out);
    put(&b.fare_amount, out);
    put(&b.extra, out);
    put(&b.mta_tax, out);
    put(&b.tip_amount, out);
    put(&b.tolls_amount, out);
    put(&b.improvement_surcharge, out);
    put(&b.total_amount, out);
    put(&b.congestion_surcharge, out);
    put(&b.airport_fee, out);
    put(&b.cbd_congestion_fee, out);
    put(&b.ehail_fee, out);
    put(&b.trip_type, out);
}

fn read_chunk(
    f: &mut impl Read,
    source: Arc<str>,
    dataset: Dataset,
    buf: &mut Vec<u8>,
) -> std::io::Result<TripBatch> {
    let mut len = Vec::<u64>::new();
    take(f, 1, buf, &mut len)?;
    let n = len[0] as usize;
    let mut b = TripBatch::with_capacity(source, dataset, n);
    take(f, n, buf, &mut b.row)?;
    take(f, n, buf, &mut b.vendor_id)?;
    take(f, n, buf, &mut b.pickup)?;
    take(f, n, buf, &mut b.dropoff)?;
    take(f, n, buf, &mut b.passenger_count)?;
    take(f, n, buf, &mut b.trip_distance)?;
    take(f, n, buf, &mut b.ratecode_id)?;
    take(f, n, buf, &mut b.store_and_fwd)?;
    take(f, n, buf, &mut b.pu_location_id)?;
    take(f, n, buf, &mut b.do_location_id)?;
    take(f, n, buf, &mut b.payment_type)?;
    take(f, n, buf, &mut b.fare_amount)?;
    take(f, n, buf, &mut b.extra)?;
    take(f, n, buf, &mut b.mta_tax)?;
    take(f, n, buf, &mut b.tip_amount)?;
    take(f, n, buf, &mut b.tolls_amount)?;
    take(f, n, buf, &mut b.improvement_surcharge)?;
    take(f, n, buf, &mut b.total_amount)?;
    take(f, n, buf, &mut b.congestion_surcharge)?;
    take(f, n, buf, &mut b.airport_fee)?;
    take(f, n, buf, &mut b.cbd_congestion_fee)?;
    take(f, n, buf, &mut b.ehail_fee)?;
    take(f, n, buf, &mut b.trip_type)?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trip::{SourceRef, Trip};

    fn trip(name: &str, row: u64, pickup: i64) -> Trip {
        Trip {
            source: SourceRef {
                source: name.to_string(),
                row,
            },
            dataset: Dataset::Yellow,
            vendor_id: None,
            pickup,
            dropoff: pickup + 60,
            passenger_count: Some(row as i32),
            trip_distance: 1.5,
            ratecode_id: Some(1),
            store_and_fwd: Some(true),
            pu_location_id: 132,
            do_location_id: 236,
            payment_type: None,
            fare_amount: -10.0,
            extra: 0.0,
            mta_tax: 0.5,
            tip_amount: 0.25,
            tolls_amount: 0.0,
            improvement_surcharge: 1.0,
            total_amount: -8.25,
            congestion_surcharge: None,
            airport_fee: Some(1.75),
            cbd_congestion_fee: None,
            ehail_fee: None,
            trip_type: None,
            refund: true,
        }
    }

    fn source(name: &str, pickups: &[i64]) -> Vec<TripBatch> {
        let name: Arc<str> = Arc::from(name);
        pickups
            .chunks(2)
            .enumerate()
            .map(|(c, ps)| {
                let mut b = TripBatch::with_capacity(name.clone(), Dataset::Yellow, ps.len());
                for (i, &p) in ps.iter().enumerate() {
                    b.push(&trip(&name, (c * 2 + i) as u64, p));
                }
                b
            })
            .collect()
    }

    fn merged(sources: Vec<Vec<TripBatch>>) -> Vec<(String, u64, i64)> {
        // Chunks of two rows: spilled sources span several chunks, and
        // merged batches end in the middle of a source's chunk.
        let mut merge = EventTimeMerge {
            chunk: 2,
            run_chunk: 2,
            ..EventTimeMerge::default()
        };
        for s in sources {
            merge.add_run(s).unwrap();
        }
        let mut out = Vec::new();
        merge
            .drain(|b, o| {
                assert!(b.len() <= 2);
                for i in 0..b.len() {
                    let (name, _) = o.of(i);
                    // Every column survives the spill, nulls included.
                    let mut t = b.row(i);
                    t.source.source = name.to_string();
                    assert_eq!(t, trip(name, b.row[i], b.pickup[i]));
                    out.push((name.to_string(), b.row[i], b.pickup[i]));
                }
                Ok::<_, SpillError>(())
            })
            .unwrap();
        out
    }

    /// A source cut into runs merges as the whole source does: equal
    /// pickups in different runs stay in file order.
    #[test]
    fn a_source_in_several_runs_merges_as_one() {
        let whole = merged(vec![
            source("a", &[30, 10, 20, 10, 10, 5]),
            source("b", &[10]),
        ]);
        let mut runs: Vec<Vec<TripBatch>> = source("a", &[30, 10, 20, 10, 10, 5])
            .into_iter()
            .map(|batch| vec![batch])
            .collect();
        runs.push(source("b", &[10]));
        assert_eq!(merged(runs), whole);
        let rows: Vec<u64> = whole.iter().map(|(_, r, _)| *r).collect();
        assert_eq!(rows, [5, 1, 3, 4, 0, 2, 0]);
    }

    #[test]
    fn sources_merge_by_pickup_then_source_then_file_order_through_the_spill() {
        let got = merged(vec![
            source("a", &[30, 10, 20, 10]),
            source("b", &[10, 5, 40]),
            Vec::new(),
            source("c", &[20]),
        ]);
        let want = [
            ("b", 1, 5),
            ("a", 1, 10),
            ("a", 3, 10),
            ("b", 0, 10),
            ("a", 2, 20),
            ("c", 0, 20),
            ("a", 0, 30),
            ("b", 2, 40),
        ];
        let want: Vec<(String, u64, i64)> = want
            .iter()
            .map(|&(s, r, p)| (s.to_string(), r, p))
            .collect();
        assert_eq!(got, want);
    }
}
