//! `taxistream-worker run` as a user runs it: every output format, the
//! dead-letter file, the summary, and the exit code when a source fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn worker() -> Command {
    Command::new(env!("CARGO_BIN_EXE_taxistream-worker"))
}

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/data")
        .join(name)
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = worker().arg("run").args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn every_output_format_holds_the_same_windows() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample("yellow_tripdata_2025-01_head.parquet");
    let input = input.to_str().unwrap();
    let common = [
        "--input",
        input,
        "--allowed-lateness",
        "6h",
        "--no-progress",
    ];
    let mut counts = Vec::new();

    let csv = dir.path().join("out.csv");
    let (ok, _, stderr) = run(&[&common[..], &["--output", csv.to_str().unwrap()]].concat());
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("rows read") && stderr.contains("10000"),
        "{stderr}"
    );
    let mut rdr = csv::Reader::from_path(&csv).unwrap();
    assert_eq!(&rdr.headers().unwrap()[0], "PULocationID");
    let cnt = rdr
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "cnt")
        .unwrap();
    counts.push(
        rdr.records()
            .map(|r| r.unwrap()[cnt].parse::<u64>().unwrap())
            .sum::<u64>(),
    );

    let jsonl = dir.path().join("out.jsonl");
    let (ok, _, _) = run(&[&common[..], &["--output", jsonl.to_str().unwrap()]].concat());
    assert!(ok);
    let text = std::fs::read_to_string(&jsonl).unwrap();
    counts.push(
        text.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["count"]
                    .as_u64()
                    .unwrap()
            })
            .sum(),
    );

    let pq = dir.path().join("out.parquet");
    let (ok, _, _) = run(&[&common[..], &["--output", pq.to_str().unwrap()]].concat());
    assert!(ok);
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&pq).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut total = 0u64;
    for b in reader {
        let b = b.unwrap();
        let c = b.column_by_name("cnt").unwrap().as_primitive::<Int64Type>();
        assert_eq!(c.null_count(), 0);
        total += c.values().iter().map(|&v| v as u64).sum::<u64>();
        assert!(b.column_by_name("zone").is_some() && b.column_by_name("borough").is_some());
    }
    counts.push(total);

    let (ok, stdout, _) = run(&[&common[..], &["--max-table-rows", "5"]].concat());
    assert!(ok);
    assert!(stdout.starts_with("key"), "{stdout}");
    assert!(stdout.contains("more windows"), "{stdout}");

    assert_eq!(counts, vec![10_000, 10_000, 10_000]);
}

#[test]
fn dead_letters_are_written_and_a_failed_source_sets_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.jsonl");
    let input = sample("yellow_tripdata_2020-01_head.csv");
    let (ok, _, stderr) = run(&[
        "--input",
        "/nonexistent/yellow_tripdata_2020-02.parquet",
        input.to_str().unwrap(),
        "--format",
        "none",
        "--dead-letters",
        dead.to_str().unwrap(),
        "--no-progress",
        // In file order this head-and-tail sample has late rows to write.
        "--file-order",
    ]);
    assert!(!ok, "a failed source makes the exit code non-zero");
    assert!(
        stderr.contains("input order                       file"),
        "{stderr}"
    );
    assert!(
        stderr.contains("/nonexistent/yellow_tripdata_2020-02.parquet"),
        "{stderr}"
    );
    assert!(
        stderr.contains("sources ok") && stderr.contains("late"),
        "{stderr}"
    );
    let letters: Vec<serde_json::Value> = std::fs::read_to_string(&dead)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!letters.is_empty());
    for l in &letters {
        assert_eq!(l["reason"], "late");
        assert!(
            l["source"]["source"]
                .as_str()
                .unwrap()
                .ends_with("yellow_tripdata_2020-01_head.csv")
        );
        assert!(l["trip"]["pickup"].is_i64());
    }

    // By default the file is windowed in event-time order: nothing is late.
    let (ok, _, stderr) = run(&[
        "--input",
        input.to_str().unwrap(),
        "--format",
        "none",
        "--no-progress",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("input order                 event time"),
        "{stderr}"
    );
    assert!(
        stderr.contains("late (dead-lettered)                 0"),
        "{stderr}"
    );
}

#[test]
fn bad_arguments_are_refused() {
    let (ok, _, stderr) = run(&["--window", "7m", "--slide", "2m", "--input", "x.csv"]);
    assert!(!ok);
    assert!(stderr.contains("multiple"), "{stderr}");
    let (ok, _, stderr) = run(&[]);
    assert!(!ok);
    assert!(stderr.contains("nothing to read"), "{stderr}");
    let (ok, _, stderr) = run(&["--group-by", "vendor", "--input", "x.csv"]);
    assert!(!ok);
    assert!(stderr.contains("pickup-zone"), "{stderr}");
}
