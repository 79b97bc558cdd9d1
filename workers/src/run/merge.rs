//! The event-time merge of `run`: the valid rows of every source read, in
//! the order the relay publishes completed sources.
//!
//! A later input can hold pickups earlier than anything in an earlier one
//! (a month given after the next, a month whose tail strays into the next),
//! so nothing can be windowed before every input has been read. Each source
//! is sorted by pickup once it has been read, equal pickups in file order,
//! and while the next source is read it waits in an unnamed temporary file,
//! so memory holds one source at a time. The sorted sources are then merged
//! by (pickup, source): the relay picks the source whose next row landed
//! first and publishes all of its rows up to the other sources' next
//! pickup, and ingest lands the inputs one after the other, in file order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::sync::Arc;

use crate::trip::{Dataset, TripBatch};

/// The temporary file of the sorted sources failed.
#[derive(Debug, thiserror::Error)]
#[error("keeping the sorted rows of the inputs read in a temporary file: {0}")]
pub struct SpillError(#[from] std::io::Error);

/// Rows per sorted chunk, and per merged batch handed to the windows.
const CHUNK: usize = 65_536;

/// One source's valid rows, sorted, in chunks.
enum Sorted {
    Memory(std::vec::IntoIter<TripBatch>),
    Spilled {
        file: BufReader<File>,
        chunks: usize,
    },
}

struct Source {
    name: Arc<str>,
    dataset: Dataset,
    rows: Sorted,
}

impl Source {
    fn next_chunk(&mut self, buf: &mut Vec<u8>) -> std::io::Result<Option<TripBatch>> {
        match &mut self.rows {
            Sorted::Memory(chunks) => Ok(chunks.next()),
            Sorted::Spilled { file, chunks } => {
                if *chunks == 0 {
                    return Ok(None);
                }
                *chunks -= 1;
                read_chunk(file, self.name.clone(), self.dataset, buf).map(Some)
            }
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

/// The sources read so far, in input order.
pub struct EventTimeMerge {
    sources: Vec<Source>,
    chunk: usize,
}

impl Default for EventTimeMerge {
    fn default() -> Self {
        Self {
            sources: Vec::new(),
            chunk: CHUNK,
        }
    }
}

impl EventTimeMerge {
    /// Makes room for the next source: the last one added goes to disk.
    pub fn spill_last(&mut self) -> Result<(), SpillError> {
        match self.sources.last_mut() {
            Some(last) => Ok(spill(last)?),
            None => Ok(()),
        }
    }

    /// Adds the next source's valid rows, in file order, sorted by pickup.
    pub fn add_source(&mut self, batches: Vec<TripBatch>) -> Result<(), SpillError> {
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
            .chunks(self.chunk)
            .map(|chunk| {
                let mut sorted = TripBatch::with_capacity(name.clone(), dataset, chunk.len());
                for &(_, b, i) in chunk {
                    sorted.push_from(&batches[b as usize], i as usize);
                }
                sorted
            })
            .collect();
        self.sources.push(Source {
            name,
            dataset,
            rows: Sorted::Memory(chunks.into_iter()),
        });
        Ok(())
    }

    /// Hands the rows of every source to `window` in batches of up to
    /// 65,536 rows, by (pickup, source, file order).
    pub fn drain<E: From<SpillError>>(
        mut self,
        mut window: impl FnMut(&TripBatch, &Origins<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let origins: Vec<(Arc<str>, Dataset)> = self
            .sources
            .iter()
            .map(|s| (s.name.clone(), s.dataset))
            .collect();
        let mut buf = Vec::new();
        // The current chunk of each source and the next row in it.
        let mut heads: Vec<(TripBatch, usize)> = Vec::with_capacity(self.sources.len());
        let mut heap = BinaryHeap::new();
        for (s, source) in self.sources.iter_mut().enumerate() {
            match source.next_chunk(&mut buf).map_err(SpillError)? {
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
        while let Some(Reverse((_, s))) = heap.pop() {
            let (chunk, next) = &mut heads[s];
            merged.push_from(chunk, *next);
            of_row.push(s as u32);
            *next += 1;
            if *next == chunk.len()
                && let Some(c) = self.sources[s].next_chunk(&mut buf).map_err(SpillError)?
            {
                (*chunk, *next) = (c, 0);
            }
            if *next < chunk.len() {
                heap.push(Reverse((chunk.pickup[*next], s)));
            }
            if merged.len() == self.chunk {
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
        }
        if !merged.is_empty() {
            window(
                &merged,
                &Origins {
                    of_row: &of_row,
                    sources: &origins,
                },
            )?;
        }
        Ok(())
    }
}

/// Moves a sorted source held in memory to an unnamed temporary file.
fn spill(source: &mut Source) -> std::io::Result<()> {
    let Sorted::Memory(chunks) = &mut source.rows else {
        return Ok(());
    };
    let mut file = BufWriter::new(tempfile::tempfile()?);
    let mut buf = Vec::new();
    let mut n = 0;
    for chunk in chunks.by_ref() {
        write_chunk(&chunk, &mut buf);
        file.write_all(&buf)?;
        n += 1;
    }
    let mut file = file.into_inner().map_err(|e| e.into_error())?;
    file.rewind()?;
    source.rows = Sorted::Spilled {
        file: BufReader::new(file),
        chunks: n,
    };
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
            ..EventTimeMerge::default()
        };
        for s in sources {
            merge.add_source(s).unwrap();
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
