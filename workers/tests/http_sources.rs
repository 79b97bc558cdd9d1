//! HTTP sources against a small HTTP/1.1 server on 127.0.0.1: downloads
//! that resume after a dropped connection, retries after server errors,
//! permanent failures, Open Data paging, and `run` end to end over a URL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use taxistream_worker::run::{RunArgs, run};
use taxistream_worker::source::http::{Downloader, RetryPolicy, Timeouts, client, client_with};
use taxistream_worker::source::open_data::{OpenDataPager, OpenDataQuery};
use taxistream_worker::trip::Dataset;

/// What the server does with the n-th request.
type Behaviour = dyn Fn(usize, &Request) -> Response + Send + Sync;

#[derive(Debug, Clone)]
struct Request {
    path: String,
    range_from: Option<usize>,
}

enum Response {
    /// Full or ranged body; `cut_after` closes the connection early.
    Body {
        bytes: Vec<u8>,
        cut_after: Option<usize>,
    },
    Status(u16),
}

struct Server {
    url: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

fn serve(behaviour: Box<Behaviour>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = requests.clone();
    std::thread::spawn(move || {
        // Bounded: a test never needs more than a few dozen requests.
        for (n, stream) in listener.incoming().take(64).enumerate() {
            let Ok(stream) = stream else { continue };
            handle(n, stream, &*behaviour, &log);
        }
    });
    Server { url, requests }
}

fn handle(n: usize, mut stream: TcpStream, behaviour: &Behaviour, log: &Mutex<Vec<Request>>) {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range_from = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("range: bytes=") {
            range_from = v.trim().trim_end_matches('-').parse().ok();
        }
    }
    let req = Request { path, range_from };
    log.lock().unwrap().push(req.clone());
    match behaviour(n, &req) {
        Response::Status(code) => {
            let _ = write!(
                stream,
                "HTTP/1.1 {code} Status\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
        Response::Body { bytes, cut_after } => {
            let (status, body, extra) = match req.range_from {
                Some(from) if from < bytes.len() => (
                    "206 Partial Content",
                    &bytes[from..],
                    format!(
                        "Content-Range: bytes {from}-{}/{}\r\n",
                        bytes.len() - 1,
                        bytes.len()
                    ),
                ),
                _ => ("200 OK", &bytes[..], String::new()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
                body.len()
            );
            let cut = cut_after.unwrap_or(body.len()).min(body.len());
            let _ = stream.write_all(&body[..cut]);
        }
    }
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 4,
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    }
}

fn sample_bytes() -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/data/yellow_tripdata_2025-01_head.parquet");
    let mut v = Vec::new();
    std::fs::File::open(p).unwrap().read_to_end(&mut v).unwrap();
    v
}

#[tokio::test]
async fn download_resumes_after_a_dropped_connection() {
    let bytes = sample_bytes();
    let body = bytes.clone();
    let server = serve(Box::new(move |n, _| Response::Body {
        bytes: body.clone(),
        // The first response stops a third of the way in.
        cut_after: (n == 0).then_some(body.len() / 3),
    }));
    let dir = tempfile::tempdir().unwrap();
    let dl = Downloader::new(client().unwrap(), dir.path().to_path_buf(), fast_retry());
    let url = format!("{}/trip-data/yellow_tripdata_2025-01.parquet", server.url);
    let path = dl.fetch(&url).await.unwrap();
    assert_eq!(path.file_name().unwrap(), "yellow_tripdata_2025-01.parquet");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    let reqs = server.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[0].range_from, None);
    assert_eq!(
        reqs[1].range_from,
        Some(bytes.len() / 3),
        "second request resumes"
    );
}

#[tokio::test]
async fn download_retries_server_errors_but_not_missing_files() {
    let bytes = sample_bytes();
    let body = bytes.clone();
    let server = serve(Box::new(move |n, req| {
        if req.path.contains("missing") {
            Response::Status(404)
        } else if n < 2 {
            Response::Status(503)
        } else {
            Response::Body {
                bytes: body.clone(),
                cut_after: None,
            }
        }
    }));
    let dir = tempfile::tempdir().unwrap();
    let dl = Downloader::new(client().unwrap(), dir.path().to_path_buf(), fast_retry());
    let ok = dl
        .fetch(&format!("{}/a.parquet", server.url))
        .await
        .unwrap();
    assert_eq!(std::fs::read(ok).unwrap(), bytes);
    let url = format!("{}/missing.parquet", server.url);
    let err = dl.fetch(&url).await.unwrap_err().to_string();
    assert!(err.contains(&url) && err.contains("404"), "{err}");
    let missing_requests = server
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.path.contains("missing"))
        .count();
    assert_eq!(missing_requests, 1, "a 404 is not retried");
}

#[tokio::test]
async fn a_server_that_stops_answering_costs_the_read_timeout_per_attempt() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/yellow_tripdata_2025-01.parquet",
        listener.local_addr().unwrap()
    );
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(8) {
            held.push(stream);
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    let dir = tempfile::tempdir().unwrap();
    let timeouts = Timeouts {
        connect: Duration::from_secs(1),
        read: Duration::from_millis(300),
    };
    let retry = RetryPolicy {
        max_retries: 2,
        ..fast_retry()
    };
    let dl = Downloader::new(
        client_with(timeouts).unwrap(),
        dir.path().to_path_buf(),
        retry,
    );
    let started = std::time::Instant::now();
    let err = dl.fetch(&url).await.unwrap_err().to_string();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "3 attempts of 300 ms took {:?}",
        started.elapsed()
    );
    assert!(err.contains(&url), "{err}");
}

#[test]
fn timeouts_and_retries_are_options_of_run_and_ingest() {
    use taxistream_worker::stage::ingest::IngestArgs;
    #[derive(clap::Parser)]
    struct Ingest {
        #[command(flatten)]
        args: IngestArgs,
    }
    let cli = Cli::parse_from([
        "run",
        "--input",
        "x.csv",
        "--connect-timeout",
        "3s",
        "--read-timeout",
        "1m",
    ]);
    assert_eq!(
        (cli.run.fetch.connect_timeout, cli.run.fetch.read_timeout),
        (3, 60)
    );
    let defaults = Cli::parse_from(["run", "--input", "x.csv"]);
    assert_eq!(
        (
            defaults.run.fetch.connect_timeout,
            defaults.run.fetch.read_timeout
        ),
        (10, 30)
    );
    let ingest = Ingest::parse_from([
        "ingest",
        "--retries",
        "1",
        "--connect-timeout",
        "2s",
        "--read-timeout",
        "5s",
    ]);
    assert_eq!(
        (
            ingest.args.fetch.retries,
            ingest.args.fetch.connect_timeout,
            ingest.args.fetch.read_timeout
        ),
        (1, 2, 5)
    );
}

fn socrata_record(i: usize) -> serde_json::Value {
    serde_json::json!({
        "vendorid": "2",
        "tpep_pickup_datetime": format!("2021-07-01T{:02}:{:02}:00.000", i / 60, i % 60),
        "tpep_dropoff_datetime": format!("2021-07-01T{:02}:{:02}:30.000", i / 60, i % 60),
        "passenger_count": "1",
        "trip_distance": "1.5",
        "ratecodeid": "1",
        "store_and_fwd_flag": "N",
        "pulocationid": (1 + i % 5).to_string(),
        "dolocationid": "236",
        "payment_type": "1",
        "fare_amount": "10",
        "extra": "0.5",
        "mta_tax": "0.5",
        "tip_amount": "2",
        "tolls_amount": "0",
        "improvement_surcharge": "0.3",
        "total_amount": "13.3",
        "congestion_surcharge": "2.5"
    })
}

fn socrata_server(records: usize) -> Server {
    let all: Vec<serde_json::Value> = (0..records).map(socrata_record).collect();
    serve(Box::new(move |n, req| {
        if n == 1 {
            return Response::Status(503);
        }
        let param = |name: &str| -> usize {
            req.path
                .split(['?', '&'])
                .find_map(|kv| {
                    kv.strip_prefix(&format!("%24{name}="))
                        .or(kv.strip_prefix(&format!("${name}=")))
                })
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let (limit, offset) = (param("limit"), param("offset"));
        let page: Vec<_> = all.iter().skip(offset).take(limit).cloned().collect();
        Response::Body {
            bytes: serde_json::to_vec(&page).unwrap(),
            cut_after: None,
        }
    }))
}

#[tokio::test]
async fn open_data_pages_until_a_short_page() {
    let server = socrata_server(250);
    let query = OpenDataQuery::new(&format!("{}/resource/m6nq-qud6.json", server.url), 100);
    let mut pager = OpenDataPager::new(client().unwrap(), query, fast_retry(), Dataset::Yellow);
    let mut rows = Vec::new();
    while let Some(b) = pager.next_batch().await.unwrap() {
        assert!(b.rejects.is_empty());
        rows.extend(b.trips.row.iter().copied());
        assert_eq!(&*b.trips.source, pager.name());
    }
    assert_eq!(rows, (0..250).collect::<Vec<u64>>());
    let reqs = server.requests.lock().unwrap().clone();
    // 3 pages plus one retried 503.
    assert_eq!(reqs.len(), 4, "{reqs:?}");
    assert!(reqs[0].path.contains("order=%3Aid"), "{}", reqs[0].path);
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    run: RunArgs,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reads_urls_months_and_open_data_in_one_job() {
    let bytes = sample_bytes();
    let files = serve(Box::new(move |_, req| {
        if req.path.ends_with("yellow_tripdata_2025-01.parquet") {
            Response::Body {
                bytes: bytes.clone(),
                cut_after: None,
            }
        } else {
            Response::Status(404)
        }
    }));
    let api = socrata_server(120);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results.jsonl");
    let dead = dir.path().join("dead.jsonl");
    let cli = Cli::parse_from([
        "run",
        "--months",
        "2024-12..2025-01",
        "--base-url",
        &format!("{}/trip-data", files.url),
        "--open-data",
        &format!("{}/resource/m6nq-qud6.json", api.url),
        "--page-size",
        "50",
        "--allowed-lateness",
        "1d",
        "--retries",
        "1",
        "--download-dir",
        &dir.path().display().to_string(),
        "--output",
        &out.display().to_string(),
        "--dead-letters",
        &dead.display().to_string(),
        "--no-progress",
    ]);
    let summary = run(cli.run).await.unwrap();
    // 2024-12 is missing on the server: reported, the rest still runs.
    assert_eq!(
        summary.sources_failed.len(),
        1,
        "{:?}",
        summary.sources_failed
    );
    assert!(summary.sources_failed[0].contains("yellow_tripdata_2024-12.parquet"));
    assert_eq!(summary.sources_ok, 2);
    assert_eq!(summary.rows_read, 10_000 + 120);
    let lines = std::fs::read_to_string(&out).unwrap();
    let windowed: u64 = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["count"]
                .as_u64()
                .unwrap()
        })
        .sum();
    let dead_lines = std::fs::read_to_string(&dead).unwrap().lines().count() as u64;
    assert_eq!(
        windowed + dead_lines,
        summary.rows_read,
        "every row windowed or dead-lettered"
    );
    // The Open Data rows (July 2021) arrive after the 2025 file, but the
    // inputs are merged by pickup before windowing: none of them is late.
    assert_eq!(dead_lines, 0);
    assert!(
        !dir.path().join("yellow_tripdata_2025-01.parquet").exists(),
        "downloads are deleted once read"
    );
}
