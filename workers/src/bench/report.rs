//! The table `make bench` prints: one row per path of the data plane, with
//! its target and, where a peer or raw rate exists, the ratio to it measured
//! in the same run.

use super::Throughput;
use super::concurrent::{ConcurrentFigures, ResultsStore};
use super::local::LocalFigures;
use super::stages::StageFigures;

/// The machine the figures come from, as the README quotes it.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1))
        .map_or("unknown CPU", str::trim)
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1_048_576.0);
    format!("{cores} cores ({model}), {mem_gib:.0} GiB RAM")
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(
        || "n/a (no /usr/bin/time)".into(),
        |b| format!("{:.0} MiB", b as f64 / 1_048_576.0),
    )
}

fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else {
        format!("{:.1} k", v / 1e3)
    }
}

fn thr(t: &Throughput, unit: &str) -> String {
    let rss = t
        .peak_rss
        .map(|b| format!(", peak RSS {}", mib(Some(b))))
        .unwrap_or_default();
    format!(
        "{} {unit}/s ({} in {:.1} s{rss})",
        rate(t.per_second()),
        t.items,
        t.took.as_secs_f64()
    )
}

fn met(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}

struct Row {
    path: String,
    measured: String,
    ratio: String,
    target: &'static str,
    met: &'static str,
}

/// Everything measured; a part that could not run says why.
pub struct Report<'a> {
    pub date: String,
    pub machine: String,
    pub rows: usize,
    pub local: &'a LocalFigures,
    pub stages: Result<&'a StageFigures, &'a str>,
    pub concurrent: Result<&'a ConcurrentFigures, &'a str>,
}

impl Report<'_> {
    fn rows(&self) -> Vec<Row> {
        let mut out = Vec::new();
        let l = self.local;
        let run = l.run_parquet.wall.as_secs_f64();
        let rss = l.run_parquet.peak_rss;
        let (measured, ratio, ok) = match &l.duckdb {
            Ok(d) => {
                let r = d.wall.as_secs_f64() / run.max(1e-9);
                (
                    format!(
                        "{run:.2} s, peak RSS {}; DuckDB {:.2} s, peak RSS {}",
                        mib(rss),
                        d.wall.as_secs_f64(),
                        mib(d.peak_rss)
                    ),
                    format!("{r:.2}× DuckDB"),
                    r >= 1.5 && rss.is_some_and(|b| b <= 64 << 20),
                )
            }
            Err(why) => (
                format!("{run:.2} s, peak RSS {}; DuckDB {why}", mib(rss)),
                "n/a".into(),
                false,
            ),
        };
        out.push(Row {
            path: format!(
                "`run`, {} rows, Parquet in → Parquet out, whole process",
                self.rows
            ),
            measured,
            ratio,
            target: "≥ 1.5× DuckDB, peak RSS ≤ 64 MiB",
            met: met(ok),
        });
        let csv = l.run_csv.wall.as_secs_f64();
        let r = csv / run.max(1e-9);
        out.push(Row {
            path: "`run --output results.csv`".into(),
            measured: format!(
                "{csv:.2} s{}",
                l.run_rows
                    .map_or(String::new(), |n| format!(" ({n} result rows)"))
            ),
            ratio: format!("{r:.2}× the Parquet output time"),
            target: "within 20% of the Parquet output time",
            met: met(r <= 1.2),
        });
        match self.stages {
            Ok(s) => {
                let raw = s.raw_produce.per_second();
                out.push(Row {
                    path: "ingest, file → PostgreSQL".into(),
                    measured: thr(&s.ingest, "rows"),
                    ratio: String::new(),
                    target: "≥ 400 k rows/s",
                    met: met(s.ingest.per_second() >= 400e3),
                });
                out.push(Row {
                    path: "relay, PostgreSQL → Kafka".into(),
                    measured: thr(&s.relay, "trips"),
                    ratio: format!(
                        "{:.2}× raw produce ({} msg/s)",
                        s.relay.per_second() / raw.max(1e-9),
                        rate(raw)
                    ),
                    target: "≥ 400 k trips/s",
                    met: met(s.relay.per_second() >= 400e3),
                });
                out.push(Row {
                    path: "aggregate, Kafka → windows → Kafka".into(),
                    measured: thr(&s.aggregate, "rows"),
                    ratio: String::new(),
                    target: "≥ 1 M rows/s",
                    met: met(s.aggregate.per_second() >= 1e6),
                });
                let (measured, ok) = match &s.sink {
                    Ok(t) => (thr(t, "upserts"), met(t.per_second() >= 20e3)),
                    Err(why) => (why.clone(), "n/a"),
                };
                out.push(Row {
                    path: "sink, aggregates topic → Cassandra".into(),
                    measured,
                    ratio: String::new(),
                    target: "≥ 20 k upserts/s",
                    met: ok,
                });
            }
            Err(why) => {
                for path in [
                    "ingest, file → PostgreSQL",
                    "relay, PostgreSQL → Kafka",
                    "aggregate, Kafka → windows → Kafka",
                    "sink, aggregates topic → Cassandra",
                ] {
                    out.push(Row {
                        path: path.into(),
                        measured: format!("not measured: {why}"),
                        ratio: String::new(),
                        target: "",
                        met: "n/a",
                    });
                }
            }
        }
        let e2e_path = "end to end, stages as concurrent processes".to_owned();
        match self.concurrent {
            Ok(c) => {
                let store = match c.store {
                    ResultsStore::AggregatesTopic => "aggregates topic",
                    ResultsStore::Cassandra => "Cassandra",
                };
                let ms = |v: Option<i64>| v.map_or("n/a".into(), |v| format!("{v} ms"));
                let ratio = match self.stages {
                    Ok(s) => format!(
                        "{:.2}× raw produce",
                        c.throughput.per_second() / s.raw_produce.per_second().max(1e-9)
                    ),
                    Err(_) => "n/a".into(),
                };
                out.push(Row {
                    path: format!("{e2e_path} ({} part files)", c.parts),
                    measured: format!(
                        "{}; window close → {store}: p50 {}, p99 {} ({} windows)",
                        thr(&c.throughput, "rows"),
                        ms(c.latency_p50_ms),
                        ms(c.latency_p99_ms),
                        c.latency_samples
                    ),
                    ratio,
                    target: "≥ 300 k rows/s sustained",
                    met: met(c.throughput.per_second() >= 300e3),
                });
            }
            Err(why) => out.push(Row {
                path: e2e_path,
                measured: format!("not measured: {why}"),
                ratio: String::new(),
                target: "≥ 300 k rows/s sustained",
                met: "n/a",
            }),
        }
        out
    }

    /// Prints the table (Markdown, as the README shows it) and the notes.
    pub fn print(&self) {
        println!();
        println!(
            "taxistream bench, {}, {}; {} synthetic rows",
            self.date, self.machine, self.rows
        );
        println!();
        println!("| path | measured | ratio in the same run | target | met |");
        println!("|---|---|---|---|---|");
        for r in self.rows() {
            println!(
                "| {} | {} | {} | {} | {} |",
                r.path, r.measured, r.ratio, r.target, r.met
            );
        }
        println!();
        let l = self.local;
        println!(
            "Local job: the median of {} interleaved runs of each; result rows: run {}, DuckDB {}.",
            l.repeats,
            l.run_rows.map_or("?".into(), |n| n.to_string()),
            l.duckdb_rows.map_or("?".into(), |n| n.to_string()),
        );
        if let Ok(s) = self.stages {
            println!(
                "Stages one at a time: {} landed, {} windows holding {} trips, {} dead letters; aggregate and sink times exclude their 2 s idle exit.",
                s.ingest.items, s.windows, s.trips_in_windows, s.dead_letters
            );
        }
        if let Ok(c) = self.concurrent {
            println!(
                "End to end: time from starting the stages to the last result in the store; {} landed, {} windows holding {} trips, {} dead letters.",
                c.throughput.items, c.windows, c.trips_in_windows, c.dead_letters
            );
        }
    }
}
