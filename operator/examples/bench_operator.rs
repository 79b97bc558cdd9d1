//! `make bench-operator`: the pipeline reconciler against an in-memory API
//! server, with 1,000 pipelines. Prints the apply-to-children time per
//! pipeline, the API requests of a settled reconcile (with and without the
//! watches' stores) and the process's peak RSS.
//!
//! The API server here is a map of objects behind the same `tower` seam the
//! flow tests use; Deployments roll out the moment they are applied. What is
//! measured is the operator's own work and its request count, not a real
//! API server's latency.

use std::collections::HashMap;
use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{DynamicObject, PartialObjectMeta};
use kube::client::Body;
use kube::core::ApiResource;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher::Event;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use taxistream_crds::{CassandraSink, KafkaTopic, TaxiPipeline};
use taxistream_operator::context::{Context, Settings};
use taxistream_operator::metrics::Metrics;
use taxistream_operator::pipeline::desired::watched_kinds;
use taxistream_operator::pipeline::keep_compared;
use taxistream_operator::pipeline::reconcile::reconcile;
use taxistream_operator::pipeline::watched::Watched;

const NS: &str = "bench";
const PIPELINES: usize = 1_000;
/// Reconciles in flight at once (the controller's default is unbounded;
/// this keeps the figures comparable between runs).
const CONCURRENCY: usize = 16;

/// Objects by API path, kept serialised: the server's memory should not
/// hide the operator's in the peak RSS.
type Objects = Arc<Mutex<HashMap<String, Vec<u8>>>>;

#[derive(Default)]
struct Counts {
    gets: usize,
    writes: usize,
}

fn respond(code: StatusCode, body: &Value) -> Response<Body> {
    respond_bytes(code, serde_json::to_vec(body).unwrap_or_default())
}

fn respond_bytes(code: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = code;
    response
}

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

/// What the API server would keep after a server-side apply of `body`.
fn stored(mut body: Value, previous: Option<Value>) -> Value {
    let name = body["metadata"]["name"].clone();
    body["metadata"]["uid"] = json!(format!("uid-{}", name.as_str().unwrap_or_default()));
    body["metadata"]["generation"] = json!(1);
    body["metadata"]["resourceVersion"] = json!("1");
    if body["kind"] == "Deployment" {
        let replicas = body["spec"]["replicas"].clone();
        body["status"] = json!({"observedGeneration": 1, "replicas": replicas,
                                "readyReplicas": replicas, "availableReplicas": replicas});
    } else if let Some(status) = previous.map(|p| p["status"].clone()) {
        body["status"] = status;
    }
    body
}

async fn serve(
    mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
    objects: Objects,
    counts: Arc<Mutex<Counts>>,
) {
    while let Some((request, send)) = handle.next_request().await {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap_or_default();
        let sent: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let path = parts.uri.path().to_owned();
        let mut objects = objects.lock().unwrap_or_else(|p| p.into_inner());
        let mut counts = counts.lock().unwrap_or_else(|p| p.into_inner());
        if parts.method == Method::GET {
            counts.gets += 1;
        } else {
            counts.writes += 1;
        }
        let response = if path.contains("/events") {
            respond(StatusCode::CREATED, &sent)
        } else if let Some(key) = path.strip_suffix("/status") {
            match objects.get_mut(key) {
                Some(bytes) => {
                    let mut obj = parse(bytes);
                    obj["status"] = sent["status"].clone();
                    *bytes = serde_json::to_vec(&obj).unwrap_or_default();
                    respond(StatusCode::OK, &obj)
                }
                None => not_found(),
            }
        } else {
            match parts.method {
                Method::GET => match objects.get(&path) {
                    Some(bytes) => respond_bytes(StatusCode::OK, bytes.clone()),
                    None => not_found(),
                },
                Method::DELETE => {
                    objects.remove(&path);
                    respond(
                        StatusCode::OK,
                        &json!({"kind": "Status", "status": "Success"}),
                    )
                }
                // The finalizer's JSON patch: add it.
                Method::PATCH if sent.is_array() => match objects.get_mut(&path) {
                    Some(bytes) => {
                        let mut obj = parse(bytes);
                        if let Some(value) = sent.as_array().and_then(|ops| ops.last()) {
                            obj["metadata"]["finalizers"] = value["value"].clone();
                        }
                        *bytes = serde_json::to_vec(&obj).unwrap_or_default();
                        respond(StatusCode::OK, &obj)
                    }
                    None => not_found(),
                },
                _ => {
                    let obj = stored(sent, objects.get(&path).map(|b| parse(b)));
                    let response = respond(StatusCode::OK, &obj);
                    objects.insert(path, serde_json::to_vec(&obj).unwrap_or_default());
                    response
                }
            }
        };
        send.send_response(response);
    }
}

fn not_found() -> Response<Body> {
    respond(
        StatusCode::NOT_FOUND,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "NotFound", "code": 404, "message": "not found"}),
    )
}

/// The minimal fixture's topics, sink and Secret, and `PIPELINES` copies of
/// its pipeline, keyed by API path.
fn seed() -> Result<HashMap<String, Vec<u8>>, Box<dyn Error>> {
    let text = include_str!("../tests/fixtures/minimal.yaml");
    let api = format!("/apis/taxistream.dev/v1alpha1/namespaces/{NS}");
    let mut objects = HashMap::new();
    let mut pipeline = Value::Null;
    for doc in serde_yaml::Deserializer::from_str(text) {
        let mut v: Value = serde::Deserialize::deserialize(doc)?;
        let name = v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        v["metadata"]["namespace"] = json!(NS);
        v["metadata"]["uid"] = json!(format!("uid-{name}"));
        v["metadata"]["generation"] = json!(1);
        let ready = json!([{"type": "Ready", "status": "True", "reason": "Ok", "message": "ok",
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}]);
        match v["kind"].as_str() {
            Some("KafkaTopic") => {
                let partitions = v["spec"]["partitions"].as_i64().unwrap_or(6);
                v["status"] = json!({"conditions": ready, "partitions": partitions});
                objects.insert(format!("{api}/kafkatopics/{name}"), serde_json::to_vec(&v)?);
            }
            Some("CassandraSink") => {
                v["status"] = json!({"conditions": ready});
                objects.insert(
                    format!("{api}/cassandrasinks/{name}"),
                    serde_json::to_vec(&v)?,
                );
            }
            _ => pipeline = v,
        }
    }
    objects.insert(
        format!("/api/v1/namespaces/{NS}/secrets/postgres"),
        serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Secret",
                                   "metadata": {"name": "postgres", "namespace": NS}}))?,
    );
    for i in 0..PIPELINES {
        let name = format!("p{i:04}");
        let mut p = pipeline.clone();
        p["metadata"]["name"] = json!(name);
        p["metadata"]["uid"] = json!(format!("uid-{name}"));
        objects.insert(
            format!("{api}/taxipipelines/{name}"),
            serde_json::to_vec(&p)?,
        );
    }
    Ok(objects)
}

fn pipeline(objects: &Objects, i: usize) -> Result<TaxiPipeline, Box<dyn Error>> {
    let path = format!("/apis/taxistream.dev/v1alpha1/namespaces/{NS}/taxipipelines/p{i:04}");
    let objects = objects.lock().unwrap_or_else(|p| p.into_inner());
    let bytes = objects.get(&path).ok_or("pipeline missing")?;
    Ok(serde_json::from_slice(bytes)?)
}

/// Reconciles every pipeline `passes` times; returns each pipeline's time.
async fn pass(ctx: &Arc<Context>, objects: &Objects, passes: usize) -> Vec<Duration> {
    futures::stream::iter(0..PIPELINES)
        .map(|i| async move {
            let start = Instant::now();
            for _ in 0..passes {
                let Ok(p) = pipeline(objects, i) else { break };
                if let Err(error) = reconcile(Arc::new(p), ctx.clone()).await {
                    eprintln!("p{i:04}: {error}");
                }
            }
            start.elapsed()
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await
}

/// Stores filled with what the API holds, one object at a time as a
/// watch's list fills them (trimmed as the watches trim them).
fn watched(objects: &Objects) -> Result<Watched, Box<dyn Error>> {
    fn start<K>(mut writer: Writer<K>) -> Writer<K>
    where
        K: kube::Resource + Clone + 'static,
        K::DynamicType: Eq + std::hash::Hash + Clone,
    {
        writer.apply_watcher_event(&Event::Init);
        writer
    }
    fn done<K>(mut writer: Writer<K>) -> reflector::Store<K>
    where
        K: kube::Resource + Clone + 'static,
        K::DynamicType: Eq + std::hash::Hash + Clone,
    {
        writer.apply_watcher_event(&Event::InitDone);
        let store = writer.as_reader();
        // A store reads as ready only while its writer lives.
        std::mem::forget(writer);
        store
    }
    let mut topics = start(Writer::<KafkaTopic>::default());
    let mut sinks = start(Writer::<CassandraSink>::default());
    let mut secrets = start(Writer::<PartialObjectMeta<Secret>>::default());
    let mut children: HashMap<String, (ApiResource, Writer<DynamicObject>)> = watched_kinds()
        .into_iter()
        .map(|r| (r.kind.clone(), (r.clone(), start(Writer::new(r)))))
        .collect();
    let objects = objects.lock().unwrap_or_else(|p| p.into_inner());
    for bytes in objects.values() {
        let value = parse(bytes);
        let kind = value["kind"].as_str().unwrap_or_default().to_owned();
        match kind.as_str() {
            "KafkaTopic" => {
                topics.apply_watcher_event(&Event::InitApply(serde_json::from_value(value)?))
            }
            "CassandraSink" => {
                sinks.apply_watcher_event(&Event::InitApply(serde_json::from_value(value)?))
            }
            _ => {
                if kind == "Secret" {
                    secrets.apply_watcher_event(&Event::InitApply(serde_json::from_value(
                        value.clone(),
                    )?));
                }
                if let Some((_, writer)) = children.get_mut(&kind) {
                    let mut obj: DynamicObject = serde_json::from_value(value)?;
                    keep_compared(&kind, &mut obj);
                    writer.apply_watcher_event(&Event::InitApply(obj));
                }
            }
        }
    }
    Ok(Watched {
        topics: done(topics),
        sinks: done(sinks),
        children: children
            .into_iter()
            .map(|(kind, (resource, writer))| (kind, (resource, done(writer))))
            .collect(),
        secrets: done(secrets),
    })
}

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

/// GETs and writes per pipeline of one more pass.
async fn per_reconcile(
    ctx: &Arc<Context>,
    objects: &Objects,
    counts: &Arc<Mutex<Counts>>,
) -> (f64, f64) {
    let read = || {
        let c = counts.lock().unwrap_or_else(|p| p.into_inner());
        (c.gets, c.writes)
    };
    let before = read();
    pass(ctx, objects, 1).await;
    let after = read();
    let per = |n: usize| n as f64 / PIPELINES as f64;
    (per(after.0 - before.0), per(after.1 - before.1))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    rustls::crypto::ring::default_provider()
        .install_default()
        .ok();
    let objects: Objects = Arc::new(Mutex::new(seed()?));
    let at_start = memory_mib("VmRSS");
    let counts = Arc::new(Mutex::new(Counts::default()));
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(serve(handle, objects.clone(), counts.clone()));
    let settings = Settings {
        worker_image: "taxistream-worker:bench".to_owned(),
        identity: "bench".to_owned(),
    };
    let metrics = Arc::new(Metrics::new(&mut Registry::default()));
    let ctx = Arc::new(Context::new(
        Client::new(service, "default"),
        metrics,
        settings,
    ));

    // kubectl apply: the finalizer pass, then the pass that creates the children.
    let start = Instant::now();
    let mut applied = pass(&ctx, &objects, 2).await;
    let wall = start.elapsed();
    applied.sort();
    // The status pass that finds the Deployments rolled out.
    pass(&ctx, &objects, 1).await;

    let settled = per_reconcile(&ctx, &objects, &counts).await;
    // Filling the stores here parses every object at once, which a watch's
    // paged list does not: the peak is taken before, the stores' own share after.
    let peak = memory_mib("VmHWM");
    ctx.register_watched(Some(NS.to_owned()), watched(&objects)?);
    let cached = per_reconcile(&ctx, &objects, &counts).await;

    println!("pipelines: {PIPELINES} (concurrency {CONCURRENCY})");
    println!(
        "apply to children: median {:?}, p99 {:?}, max {:?} per pipeline; all {PIPELINES} in {wall:?}",
        applied[PIPELINES / 2],
        applied[PIPELINES * 99 / 100],
        applied[PIPELINES - 1]
    );
    println!(
        "settled reconcile: {:.1} GETs, {:.1} writes (API reads only); {:.1} GETs, {:.1} writes with the watches' stores",
        settled.0, settled.1, cached.0, cached.1
    );
    let objects_mib = objects
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .map(Vec::len)
        .sum::<usize>() as f64
        / (1024.0 * 1024.0);
    println!(
        "peak RSS while applying and settling: {peak:.1} MiB (at start {at_start:.1} MiB; the in-memory API server holds {objects_mib:.1} MiB of objects); RSS with the stores filled: {:.1} MiB",
        memory_mib("VmRSS")
    );
    Ok(())
}
