//! The event-time merge of `run`: the valid rows of every source read, in
//! the order the relay publishes completed sources.
//!
//! A later input can hold pickups earlier than anything in an earlier one
//! (a month given after the next, a month whose tail strays into the next),
//! so nothing can be windowed before every input has been read. This is an
//! external merge sort: the valid rows, reduced to what the windows read
//! ([`WindowRows`]), are cut into runs in file order, each run is sorted by
//! pickup (equal pickups in file order) and, once the next run starts,
//! written to one unnamed temporary file, so memory holds about two runs
//! whatever the size of the inputs. The runs are then merged by (pickup,
//! run): runs are numbered in input and file order, which is the relay's
//! order over completed sources (it picks the source whose next row landed
//! first and publishes all of its rows up to the other sources' next
//! pickup, and ingest lands the inputs one after the other, in file order).
//! Where a run cannot interleave with the others (TLC files come in rough
//! hour blocks), its rows are taken as a slice, not one heap step a row.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};

use crate::trip::Micros;
use crate::window::WindowRows;

/// The temporary file of the sorted sources failed.
#[derive(Debug, thiserror::Error)]
#[error("keeping the sorted rows of the inputs read in a temporary file: {0}")]
pub struct SpillError(#[from] std::io::Error);

/// Rows per merged batch handed to the windows.
const CHUNK: usize = 65_536;

/// Rows per run. A run is sorted in memory, with its sort keys: about 80
/// bytes a row, so 10 MB at most.
pub const RUN_ROWS: usize = 131_072;

/// Rows per chunk of a spilled run: the merge holds one chunk of every run,
/// about 125 KB each.
const RUN_CHUNK: usize = 2_048;

/// Bytes of one row in the spill file.
const ROW_BYTES: usize = 8 * 2 + 4 + 8 * 5 + 2;

/// One run's valid rows, sorted.
enum Sorted {
    Memory(WindowRows),
    /// In the spill file: where its next chunk starts, and the rows left.
    Spilled {
        at: u64,
        rows: usize,
    },
}

/// The next chunk of `run`, read from `spill` if it was written there.
fn next_chunk(
    run: &mut Sorted,
    run_chunk: usize,
    spill: Option<&mut File>,
    buf: &mut Vec<u8>,
    out: &mut WindowRows,
) -> std::io::Result<bool> {
    out.clear();
    match run {
        Sorted::Memory(rows) => {
            std::mem::swap(rows, out);
            Ok(!out.is_empty())
        }
        Sorted::Spilled { rows: 0, .. } => Ok(false),
        Sorted::Spilled { at, rows } => {
            let file = spill.ok_or_else(|| std::io::Error::other("spill file missing"))?;
            let n = (*rows).min(run_chunk);
            file.seek(SeekFrom::Start(*at))?;
            buf.resize(n * ROW_BYTES, 0);
            file.read_exact(buf)?;
            read_chunk(buf, n, out);
            *at += (n * ROW_BYTES) as u64;
            *rows -= n;
            Ok(true)
        }
    }
}

/// The runs read so far, in input and file order.
pub struct EventTimeMerge {
    runs: Vec<Sorted>,
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
        Ok(spill(last, file, self.run_chunk)?)
    }

    /// Adds the next run: valid rows of one source, in file order, after
    /// the runs before them in the inputs. It is sorted by pickup here.
    pub fn add_run(&mut self, mut rows: WindowRows) -> Result<(), SpillError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.spill_last()?;
        if !rows.pickup.is_sorted() {
            // The position breaks ties: equal pickups stay in file order.
            let mut order: Vec<(Micros, u32)> = rows
                .pickup
                .iter()
                .enumerate()
                .map(|(i, &p)| (p, i as u32))
                .collect();
            order.sort_unstable();
            rows.permute(order.iter().map(|&(_, i)| i as usize));
        }
        self.runs.push(Sorted::Memory(rows));
        Ok(())
    }

    /// Starts handing out the rows of every run by (pickup, run), in
    /// batches of up to 65,536 rows ([`MergeDrain::next_batch`]).
    pub fn into_drain(mut self) -> Result<MergeDrain, SpillError> {
        let mut buf = Vec::new();
        // The current chunk of each run and the next row in it.
        let mut heads: Vec<(WindowRows, usize)> = Vec::with_capacity(self.runs.len());
        let mut heap = BinaryHeap::with_capacity(self.runs.len());
        for (s, run) in self.runs.iter_mut().enumerate() {
            let mut chunk = WindowRows::default();
            if next_chunk(
                run,
                self.run_chunk,
                self.spill.as_mut(),
                &mut buf,
                &mut chunk,
            )? {
                heap.push(Reverse((chunk.pickup[0], s)));
            }
            heads.push((chunk, 0));
        }
        Ok(MergeDrain {
            merged: WindowRows::with_capacity(self.chunk),
            merge: self,
            buf,
            heads,
            heap,
        })
    }
}

/// The runs being merged: taken a batch at a time, so the windows of one
/// batch are written before the next is merged.
pub struct MergeDrain {
    merge: EventTimeMerge,
    buf: Vec<u8>,
    heads: Vec<(WindowRows, usize)>,
    /// The head row of every run not yet drained: (pickup, run).
    heap: BinaryHeap<Reverse<(Micros, usize)>>,
    /// The batch handed out last.
    merged: WindowRows,
}

impl MergeDrain {
    /// The next batch of rows by (pickup, run); `None` once every run is
    /// drained.
    pub fn next_batch(&mut self) -> Result<Option<&WindowRows>, SpillError> {
        let merged = &mut self.merged;
        merged.clear();
        let chunk_rows = self.merge.chunk;
        while merged.len() < chunk_rows {
            let Some(Reverse((_, s))) = self.heap.pop() else {
                break;
            };
            let (chunk, next) = &mut self.heads[s];
            // Rows of this run up to the next run's head go as one slice.
            let room = chunk_rows - merged.len();
            let end = (*next + room).min(chunk.len());
            let take = match self.heap.peek() {
                Some(&Reverse((p, other))) => chunk.pickup[*next..end]
                    .iter()
                    .position(|&q| (q, s) > (p, other))
                    .map_or(end, |k| *next + k),
                None => end,
            };
            // The popped row itself always goes: it was the smallest head.
            let take = take.max(*next + 1);
            merged.extend_range(chunk, *next, take);
            *next = take;
            if *next == chunk.len() {
                let more = next_chunk(
                    &mut self.merge.runs[s],
                    self.merge.run_chunk,
                    self.merge.spill.as_mut(),
                    &mut self.buf,
                    chunk,
                )?;
                *next = 0;
                if !more {
                    chunk.clear();
                }
            }
            if *next < chunk.len() {
                self.heap.push(Reverse((chunk.pickup[*next], s)));
            }
        }
        Ok((!merged.is_empty()).then_some(&self.merged))
    }
}

/// Moves a sorted run held in memory to the end of the spill file.
fn spill(run: &mut Sorted, file: &mut File, run_chunk: usize) -> std::io::Result<()> {
    let Sorted::Memory(rows) = run else {
        return Ok(());
    };
    let at = file.seek(SeekFrom::End(0))?;
    let mut buf = Vec::with_capacity(run_chunk.min(rows.len()) * ROW_BYTES);
    let mut from = 0;
    while from < rows.len() {
        let to = (from + run_chunk).min(rows.len());
        write_chunk(rows, from, to, &mut buf);
        file.write_all(&buf)?;
        from = to;
    }
    *run = Sorted::Spilled {
        at,
        rows: rows.len(),
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

le!(u16, i32, i64, f64);

fn put<T: Le>(column: &[T], out: &mut Vec<u8>) {
    for &v in column {
        v.put(out);
    }
}

/// Decodes the next column of `n` values off the front of `bytes`.
fn take<'a, T: Le>(bytes: &'a [u8], n: usize, column: &mut Vec<T>) -> &'a [u8] {
    let (mine, rest) = bytes.split_at(n * T::WIDTH);
    column.extend(mine.chunks_exact(T::WIDTH).map(T::take));
    rest
}

/// Rows `from..to` as each column in turn (NaN payloads and null markers
/// survive, bit for bit); the row count is the reader's to know.
fn write_chunk(r: &WindowRows, from: usize, to: usize, out: &mut Vec<u8>) {
    out.clear();
    put(&r.pickup[from..to], out);
    put(&r.dropoff[from..to], out);
    put(&r.passenger_count[from..to], out);
    put(&r.trip_distance[from..to], out);
    put(&r.fare_amount[from..to], out);
    put(&r.tip_amount[from..to], out);
    put(&r.tolls_amount[from..to], out);
    put(&r.total_amount[from..to], out);
    put(&r.key[from..to], out);
}

fn read_chunk(bytes: &[u8], n: usize, r: &mut WindowRows) {
    let b = take(bytes, n, &mut r.pickup);
    let b = take(b, n, &mut r.dropoff);
    let b = take(b, n, &mut r.passenger_count);
    let b = take(b, n, &mut r.trip_distance);
    let b = take(b, n, &mut r.fare_amount);
    let b = take(b, n, &mut r.tip_amount);
    let b = take(b, n, &mut r.tolls_amount);
    let b = take(b, n, &mut r.total_amount);
    take(b, n, &mut r.key);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trip::NULL_I32;

    /// Every column of a row, floats as bits: NaN must survive the spill too.
    type Row = (i64, i64, i32, u64, u64, u64, u64, u64, u16);

    fn row_of(r: &WindowRows, i: usize) -> Row {
        (
            r.pickup[i],
            r.dropoff[i],
            r.passenger_count[i],
            r.trip_distance[i].to_bits(),
            r.fare_amount[i].to_bits(),
            r.tip_amount[i].to_bits(),
            r.tolls_amount[i].to_bits(),
            r.total_amount[i].to_bits(),
            r.key[i],
        )
    }

    /// Rows of source `tag` (the key) from row `first` on; the row number
    /// rides in the fare.
    fn source(tag: u16, first: usize, pickups: &[i64]) -> WindowRows {
        let mut r = WindowRows::default();
        for (k, &p) in pickups.iter().enumerate() {
            let row = first + k;
            r.pickup.push(p);
            r.dropoff.push(p + 60);
            r.passenger_count.push(if row.is_multiple_of(2) {
                NULL_I32
            } else {
                row as i32
            });
            r.trip_distance.push(f64::NAN);
            r.fare_amount.push(row as f64);
            r.tip_amount.push(-0.0);
            r.tolls_amount.push(0.25);
            r.total_amount.push(-8.25);
            r.key.push(tag);
        }
        r
    }

    fn merged(runs: Vec<WindowRows>) -> Vec<(u16, usize, i64)> {
        let expected: Vec<Row> = runs
            .iter()
            .flat_map(|r| (0..r.len()).map(|i| row_of(r, i)))
            .collect();
        // Chunks of two rows: spilled runs span several chunks, and merged
        // batches end in the middle of a run's chunk.
        let mut merge = EventTimeMerge {
            chunk: 2,
            run_chunk: 2,
            ..EventTimeMerge::default()
        };
        for r in runs {
            merge.add_run(r).unwrap();
        }
        let mut out = Vec::new();
        let mut rows = Vec::new();
        let mut drain = merge.into_drain().unwrap();
        while let Some(b) = drain.next_batch().unwrap() {
            assert!(b.len() <= 2);
            for i in 0..b.len() {
                rows.push(row_of(b, i));
                out.push((b.key[i], b.fare_amount[i] as usize, b.pickup[i]));
            }
        }
        assert!(
            drain.next_batch().unwrap().is_none(),
            "a drained merge stays drained"
        );
        // Every column survives the spill, nulls and NaN included.
        let mut want = expected;
        want.sort_by_key(|r| (r.8, r.4.to_le_bytes()));
        rows.sort_by_key(|r| (r.8, r.4.to_le_bytes()));
        assert_eq!(rows, want);
        out
    }

    /// A source cut into runs merges as the whole source does: equal
    /// pickups in different runs stay in file order.
    #[test]
    fn a_source_in_several_runs_merges_as_one() {
        let pickups = [30, 10, 20, 10, 10, 5];
        let whole = merged(vec![source(1, 0, &pickups), source(2, 0, &[10])]);
        let mut runs: Vec<WindowRows> = pickups
            .chunks(2)
            .enumerate()
            .map(|(c, ps)| source(1, c * 2, ps))
            .collect();
        runs.push(source(2, 0, &[10]));
        assert_eq!(merged(runs), whole);
        let rows: Vec<usize> = whole.iter().map(|(_, r, _)| *r).collect();
        assert_eq!(rows, [5, 1, 3, 4, 0, 2, 0]);
    }

    #[test]
    fn sources_merge_by_pickup_then_source_then_file_order_through_the_spill() {
        let got = merged(vec![
            source(1, 0, &[30, 10, 20, 10]),
            source(2, 0, &[10, 5, 40]),
            WindowRows::default(),
            source(3, 0, &[20]),
        ]);
        let want = [
            (2, 1, 5),
            (1, 1, 10),
            (1, 3, 10),
            (2, 0, 10),
            (1, 2, 20),
            (3, 0, 20),
            (1, 0, 30),
            (2, 2, 40),
        ];
        assert_eq!(got, want);
    }

    /// Runs that follow each other in time go through as slices, and a run
    /// that reaches back into another still interleaves row by row.
    #[test]
    fn slices_of_a_run_stop_at_the_other_runs_heads() {
        let got = merged(vec![
            source(1, 0, &[1, 2, 3, 4, 5, 6]),
            source(2, 0, &[7, 8, 9]),
            source(3, 0, &[2, 4, 9, 9]),
        ]);
        let pickups: Vec<i64> = got.iter().map(|&(_, _, p)| p).collect();
        assert_eq!(pickups, [1, 2, 2, 3, 4, 4, 5, 6, 7, 8, 9, 9, 9]);
        let sources: Vec<u16> = got.iter().map(|&(s, _, _)| s).collect();
        assert_eq!(sources, [1, 1, 3, 1, 1, 3, 1, 1, 2, 2, 2, 3, 3]);
    }
}
