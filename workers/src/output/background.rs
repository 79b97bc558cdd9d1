//! A text writer on a thread of its own. Formatting CSV or JSON lines is as
//! much work as windowing the rows behind them, so on two cores the job runs
//! them side by side, results handed over a batch at a time, the way the
//! Parquet writer encodes on its own thread.

use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::{OutputError, ResultWriter};
use crate::window::WindowResult;

/// Runs `inner` on its own thread; `finish` waits for it and returns its
/// first error.
pub struct Background {
    path: String,
    /// Dropping the sender tells the thread that the results are complete.
    to_writer: Option<SyncSender<Vec<WindowResult>>>,
    writer: Option<JoinHandle<Result<(), OutputError>>>,
}

impl Background {
    pub fn start(
        mut inner: Box<dyn ResultWriter + Send>,
        path: String,
    ) -> Result<Self, OutputError> {
        // One batch queued: enough to keep both threads busy, and memory
        // stays at two batches of results.
        let (to_writer, batches) = sync_channel::<Vec<WindowResult>>(1);
        let writer = std::thread::Builder::new()
            .name("result-writer".into())
            .spawn(move || {
                for batch in batches {
                    inner.write(&batch)?;
                }
                inner.finish()
            })
            .map_err(|error| OutputError::Io {
                path: path.clone(),
                error,
            })?;
        Ok(Self {
            path,
            to_writer: Some(to_writer),
            writer: Some(writer),
        })
    }

    /// Ends the thread and returns what it reported.
    fn join(&mut self) -> Result<(), OutputError> {
        self.to_writer = None;
        match self.writer.take() {
            Some(writer) => writer.join().unwrap_or_else(|_| {
                Err(OutputError::Encode {
                    path: self.path.clone(),
                    message: "the result writer thread panicked".into(),
                })
            }),
            None => Ok(()),
        }
    }
}

impl ResultWriter for Background {
    fn write(&mut self, results: &[WindowResult]) -> Result<(), OutputError> {
        if results.is_empty() {
            return Ok(());
        }
        let sent = match &self.to_writer {
            Some(to_writer) => to_writer.send(results.to_vec()).is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The thread stopped early: its error says why.
        self.join()?;
        Err(OutputError::Encode {
            path: self.path.clone(),
            message: "results written after the output was finished".into(),
        })
    }

    fn finish(&mut self) -> Result<(), OutputError> {
        self.join()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::text::CsvWriter;
    use crate::window::GroupBy;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn result(key: i32, start: i64) -> WindowResult {
        WindowResult {
            group_by: GroupBy::PickupZone,
            key,
            key_name: Arc::from(format!("zone {key}")),
            zone: None,
            borough: None,
            window_start: start,
            window_end: start + 300_000_000,
            count: 2,
            passengers: 3,
            max_passengers: Some(2),
            sum_fare: 10.5,
            sum_tip: 1.0,
            sum_tolls: 0.0,
            sum_total: 12.25,
            avg_distance: 1.5,
            avg_duration_s: 600.0,
            avg_speed_mph: Some(9.0),
            avg_tip_ratio: None,
        }
    }

    fn csv(results: &[Vec<WindowResult>], background: bool) -> Vec<u8> {
        let out = Shared::default();
        let csv =
            CsvWriter::new(Box::new(out.clone()), "t.csv".into(), GroupBy::PickupZone).unwrap();
        let mut w: Box<dyn ResultWriter> = if background {
            Box::new(Background::start(Box::new(csv), "t.csv".into()).unwrap())
        } else {
            Box::new(csv)
        };
        for batch in results {
            w.write(batch).unwrap();
        }
        w.finish().unwrap();
        out.0.lock().unwrap().clone()
    }

    #[test]
    fn the_background_writer_writes_the_same_bytes_in_the_same_order() {
        let batches: Vec<Vec<WindowResult>> = (0..5)
            .map(|b| (0..7).map(|k| result(k, b * 300_000_000)).collect())
            .collect();
        let direct = csv(&batches, false);
        assert!(direct.len() > 100);
        assert_eq!(csv(&batches, true), direct);
    }

    struct Failing;

    impl ResultWriter for Failing {
        fn write(&mut self, _: &[WindowResult]) -> Result<(), OutputError> {
            Err(OutputError::Encode {
                path: "f".into(),
                message: "disk full".into(),
            })
        }
        fn finish(&mut self) -> Result<(), OutputError> {
            Ok(())
        }
    }

    #[test]
    fn an_error_of_the_thread_reaches_the_caller() {
        let mut w = Background::start(Box::new(Failing), "f".into()).unwrap();
        let batch = vec![result(1, 0)];
        // The first batch is queued; the thread's error surfaces on a later
        // write or at the latest at finish.
        let first = w.write(&batch).and_then(|()| w.write(&batch));
        let outcome = first
            .and_then(|()| w.write(&batch))
            .and_then(|()| w.finish());
        let err = outcome.unwrap_err().to_string();
        assert!(err.contains("disk full"), "{err}");
    }
}
