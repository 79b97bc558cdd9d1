//! `make bench-operator`: the pipeline controller, as the operator runs it
//! (watches, stores, controller), against an in-memory API server in a
//! separate process, with 1,000 pipelines applied at once. Prints the
//! apply-to-children time per pipeline, the API requests of a settled
//! reconcile, then the apply-to-children time of pipelines created one at
//! a time with the stores full, and the operator process's own RSS.
//!
//! The bench re-executes itself as `bench_operator serve` for the API
//! server (`api_server.rs`): what `/proc/self/status` reports here is the
//! operator's memory only. Only the pipeline controller runs; the
//! KafkaTopics and CassandraSink are seeded ready. Deployments roll out the
//! moment they are applied: what is measured is the operator's work and
//! its request count, not a real API server's latency.

mod api_server;

use std::error::Error;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::Client;
use kube::core::ObjectList;
use prometheus_client::registry::Registry;
use serde_json::Value;
use taxistream_crds::TaxiPipeline;
use taxistream_operator::context::{Context, Settings};
use taxistream_operator::metrics::Metrics;
use taxistream_operator::pipeline;
use tokio::io::AsyncBufReadExt;

use api_server::NS;

const PIPELINES: usize = 1_000;
/// Reconciles in flight at once in the settled pass (the controller's own
/// concurrency is unbounded).
const CONCURRENCY: usize = 16;
/// How long nothing must be written before the pipelines count as settled.
const QUIET: Duration = Duration::from_secs(3);

/// A `/proc/self/status` memory figure (`VmHWM`: peak RSS, `VmRSS`: now) in MiB.
fn memory_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A bench request to the API server, not counted as the operator's.
async fn bench<T: serde::de::DeserializeOwned>(
    client: &Client,
    method: &str,
    path: &str,
) -> Result<T, Box<dyn Error>> {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("x-bench", "1")
        .body(Vec::new())?;
    Ok(client.request::<T>(request).await?)
}

fn count(stats: &Value, field: &str) -> u64 {
    stats[field].as_u64().unwrap_or(0)
}

fn percentile(sorted: &[u64], p: usize) -> Duration {
    let i = (sorted.len() * p / 100).min(sorted.len().saturating_sub(1));
    Duration::from_millis(sorted.get(i).copied().unwrap_or(0))
}

/// (children so far, ms from its apply to the last of them) of pipeline `name`.
fn children_of(stats: &Value, name: &str) -> (u64, u64) {
    let entry = &stats["children_ms"][name];
    (
        entry[0].as_u64().unwrap_or(0),
        entry[1].as_u64().unwrap_or(0),
    )
}

/// Pipelines applied one at a time once the others have settled: how long
/// each waits for its children with the stores full.
const ONE_BY_ONE: usize = 10;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    if std::env::args().nth(1).as_deref() == Some("serve") {
        return api_server::serve().await;
    }
    rustls::crypto::ring::default_provider()
        .install_default()
        .ok();
    // The server ends when its stdin closes, that is when this process ends.
    let mut server = tokio::process::Command::new(std::env::current_exe()?)
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = server
        .stdout
        .take()
        .ok_or("no stdout from the API server")?;
    let port = tokio::io::BufReader::new(stdout)
        .lines()
        .next_line()
        .await?
        .ok_or("the API server printed no port")?;
    let mut config = kube::Config::new(format!("http://127.0.0.1:{port}").parse()?);
    config.default_namespace = NS.to_owned();
    let client = Client::try_from(config)?;
    let settings = Settings {
        worker_image: "taxistream-worker:bench".to_owned(),
        identity: "bench".to_owned(),
    };
    let metrics = Arc::new(Metrics::new(&mut Registry::default()));
    let ctx = Arc::new(Context::new(client.clone(), metrics, settings));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(pipeline::run(ctx.clone(), Some(NS.to_owned()), async {
        let _ = stopped.await;
    }));
    while ctx.watched(NS).is_none() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let at_start = memory_mib("VmRSS");

    // kubectl apply of every pipeline at once, then wait for the writes to stop.
    let start = Instant::now();
    let _: Value = bench(&client, "POST", &format!("/bench/apply?count={PIPELINES}")).await?;
    let before: Value = bench(&client, "GET", "/bench/stats").await?;
    let mut last = (u64::MAX, Instant::now());
    let stats = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let stats: Value = bench(&client, "GET", "/bench/stats").await?;
        let writes = count(&stats, "writes");
        if writes != last.0 {
            last = (writes, Instant::now());
        } else if last.1.elapsed() >= QUIET && count(&stats, "with_status") == PIPELINES as u64 {
            break stats;
        }
        if start.elapsed() > Duration::from_secs(600) {
            return Err("the pipelines did not settle within 10 minutes".into());
        }
    };
    let settle = last.1.duration_since(start);
    let peak = memory_mib("VmHWM");
    let settled_rss = memory_mib("VmRSS");

    // One more reconcile of every settled pipeline, as a resync makes.
    let list: ObjectList<TaxiPipeline> = bench(
        &client,
        "GET",
        "/apis/taxistream.dev/v1alpha1/namespaces/bench/taxipipelines",
    )
    .await?;
    let counted: Value = bench(&client, "GET", "/bench/stats").await?;
    futures::stream::iter(list.items)
        .map(|p| {
            let ctx = ctx.clone();
            async move {
                let name = p.metadata.name.clone().unwrap_or_default();
                if let Err(error) = pipeline::reconcile::reconcile(Arc::new(p), ctx).await {
                    eprintln!("{name}: {error}");
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
    let after: Value = bench(&client, "GET", "/bench/stats").await?;
    let per =
        |a: &Value, b: &Value, field| (count(a, field) - count(b, field)) as f64 / PIPELINES as f64;

    let mut children_ms: Vec<u64> = stats["children_ms"]
        .as_object()
        .map(|m| m.values().filter_map(|v| v[1].as_u64()).collect())
        .unwrap_or_default();
    children_ms.sort_unstable();
    let per_pipeline = count(&stats, "children") / PIPELINES as u64;

    // Then pipelines one at a time, as they are created day to day.
    let mut one_by_one = Vec::new();
    for i in PIPELINES..PIPELINES + ONE_BY_ONE {
        let name = format!("p{i:04}");
        let _: Value = bench(&client, "POST", &format!("/bench/apply?first={i}&count=1")).await?;
        let waited = Instant::now();
        let ms = loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let stats: Value = bench(&client, "GET", "/bench/stats").await?;
            let (children, ms) = children_of(&stats, &name);
            if children >= per_pipeline {
                break ms;
            }
            if waited.elapsed() > Duration::from_secs(60) {
                return Err(format!("{name} got no children within a minute").into());
            }
        };
        one_by_one.push(ms);
    }
    one_by_one.sort_unstable();
    let one_by_one_peak = memory_mib("VmHWM");
    println!(
        "pipelines: {PIPELINES}, applied at once; {} children created",
        count(&stats, "children")
    );
    println!(
        "apply to children (from the apply to a pipeline's last child): median {:?}, p99 {:?}, max {:?}; all settled (last write) {settle:?} after the apply",
        percentile(&children_ms, 50),
        percentile(&children_ms, 99),
        percentile(&children_ms, 100),
    );
    println!(
        "then {ONE_BY_ONE} more, one at a time (stores full): apply to children median {:?}, max {:?}",
        percentile(&one_by_one, 50),
        percentile(&one_by_one, 100),
    );
    println!(
        "requests to settle: {:.1} GETs, {:.1} writes per pipeline (Events included)",
        per(&stats, &before, "gets"),
        per(&stats, &before, "writes"),
    );
    println!(
        "settled reconcile: {:.1} GETs, {:.1} writes",
        per(&after, &counted, "gets"),
        per(&after, &counted, "writes"),
    );
    println!(
        "operator process RSS: {at_start:.1} MiB with the stores synced and empty; peak {peak:.1} MiB up to settling; {settled_rss:.1} MiB settled; peak {one_by_one_peak:.1} MiB to the end"
    );
    let _ = stop.send(());
    let _ = controller.await;
    let _ = server.kill().await;
    Ok(())
}
