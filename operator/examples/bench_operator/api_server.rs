//! The in-memory API server of `make bench-operator`, run in its own
//! process so that the operator's RSS is measured alone: objects by API
//! path, lists and watches (with label selectors), server-side apply,
//! status and finalizer patches, deletes. Deployments roll out the moment
//! they are applied. Requests carrying the `x-bench` header (the bench's
//! own bookkeeping) are not counted.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::http::request::Parts;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

pub const NS: &str = "bench";
const API: &str = "/apis/taxistream.dev/v1alpha1/namespaces/bench";

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// One change, as a watch of its collection sends it.
struct Change {
    revision: u64,
    collection: String,
    labels: Value,
    line: Bytes,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    revision: u64,
    /// Every change so far: a watch starting at an older revision replays them.
    history: Vec<Arc<Change>>,
    gets: u64,
    writes: u64,
    /// When each pipeline was applied, by name.
    applied: HashMap<String, Instant>,
    /// Per owning pipeline: its children, and when the last of them was created.
    children: HashMap<String, (u64, Instant)>,
}

struct Server {
    state: Mutex<State>,
    changes: broadcast::Sender<Arc<Change>>,
}

fn collection(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(c, _)| c)
}

impl State {
    /// Stores `obj` at `path` with the next revision and tells the watches.
    fn put(&mut self, server: &Server, path: &str, kind: &str, mut obj: Value) -> Value {
        self.revision += 1;
        obj["metadata"]["resourceVersion"] = json!(self.revision.to_string());
        let change = Arc::new(Change {
            revision: self.revision,
            collection: collection(path).to_owned(),
            labels: obj["metadata"]["labels"].clone(),
            line: Bytes::from(format!("{}\n", json!({"type": kind, "object": obj})).into_bytes()),
        });
        self.history.push(change.clone());
        // No watch yet is not an error.
        let _ = server.changes.send(change);
        if kind == "DELETED" {
            self.objects.remove(path);
        } else {
            self.objects.insert(path.to_owned(), obj.clone());
        }
        obj
    }
}

fn respond(code: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(serde_json::to_vec(body).unwrap_or_default())).boxed_unsync(),
    );
    *response.status_mut() = code;
    response
}

fn not_found() -> Response<Body> {
    respond(
        StatusCode::NOT_FOUND,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "NotFound", "code": 404, "message": "not found"}),
    )
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(request: &Parts) -> HashMap<String, String> {
    request
        .uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

/// Equality selectors only (`k=v,k2=v2`): all the operator uses.
fn selected(selector: Option<&String>, labels: &Value) -> bool {
    selector.is_none_or(|s| {
        s.split(',')
            .filter_map(|term| term.split_once('='))
            .all(|(k, v)| labels[k].as_str() == Some(v))
    })
}

/// A path below `/namespaces/NS/`: two segments name a collection, three an object.
fn is_collection(path: &str) -> bool {
    path.split_once("/namespaces/")
        .is_some_and(|(_, rest)| rest.split('/').count() == 2)
}

/// What the API server keeps after a server-side apply of `body`.
fn applied(mut body: Value, previous: Option<&Value>) -> Value {
    let name = body["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let generation = match previous {
        Some(p) if p["spec"] == body["spec"] => p["metadata"]["generation"].as_i64().unwrap_or(1),
        Some(p) => p["metadata"]["generation"].as_i64().unwrap_or(1) + 1,
        None => 1,
    };
    body["metadata"]["uid"] = json!(format!("uid-{name}"));
    body["metadata"]["generation"] = json!(generation);
    body["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    if body["kind"] == "Deployment" {
        let replicas = body["spec"]["replicas"].clone();
        body["status"] = json!({"observedGeneration": generation, "replicas": replicas,
                                "updatedReplicas": replicas, "readyReplicas": replicas,
                                "availableReplicas": replicas});
    } else if let Some(status) = previous.map(|p| p["status"].clone()) {
        body["status"] = status;
    }
    body
}

impl Server {
    fn seed(&self) -> Result<(), Box<dyn Error>> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let ready = json!([{"type": "Ready", "status": "True", "reason": "Ok", "message": "ok",
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}]);
        for doc in serde_yaml::Deserializer::from_str(FIXTURE) {
            let mut v: Value = serde::Deserialize::deserialize(doc)?;
            let name = v["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            v["metadata"]["namespace"] = json!(NS);
            v["metadata"]["uid"] = json!(format!("uid-{name}"));
            v["metadata"]["generation"] = json!(1);
            let plural = match v["kind"].as_str() {
                Some("KafkaTopic") => {
                    let partitions = v["spec"]["partitions"].as_i64().unwrap_or(6);
                    v["status"] = json!({"conditions": ready, "partitions": partitions});
                    "kafkatopics"
                }
                Some("CassandraSink") => {
                    v["status"] = json!({"conditions": ready});
                    "cassandrasinks"
                }
                _ => continue,
            };
            state.put(self, &format!("{API}/{plural}/{name}"), "ADDED", v);
        }
        let secret = json!({"apiVersion": "v1", "kind": "Secret",
                            "metadata": {"name": "postgres", "namespace": NS, "uid": "uid-postgres"},
                            "data": {"url": "cG9zdGdyZXM6Ly8="}});
        state.put(
            self,
            &format!("/api/v1/namespaces/{NS}/secrets/postgres"),
            "ADDED",
            secret,
        );
        Ok(())
    }

    /// `kubectl apply` of `count` copies of the fixture's pipeline at once.
    /// Applies pipelines `p{first}` to `p{first + count - 1}`.
    fn apply_pipelines(&self, first: usize, count: usize) -> Result<(), Box<dyn Error>> {
        let pipeline = serde_yaml::Deserializer::from_str(FIXTURE)
            .map(Value::deserialize)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .find(|v| v["kind"] == "TaxiPipeline")
            .ok_or("no pipeline in the fixture")?;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        for i in first..first + count {
            let name = format!("p{i:04}");
            state.applied.insert(name.clone(), now);
            let mut p = pipeline.clone();
            p["metadata"]["name"] = json!(name);
            p["metadata"]["namespace"] = json!(NS);
            p["metadata"]["uid"] = json!(format!("uid-{name}"));
            p["metadata"]["generation"] = json!(1);
            p["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
            state.put(self, &format!("{API}/taxipipelines/{name}"), "ADDED", p);
        }
        Ok(())
    }

    fn stats(&self) -> Value {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // Per pipeline: its children so far, and the ms from its apply to the last of them.
        let children_ms: serde_json::Map<String, Value> = state
            .children
            .iter()
            .filter_map(|(owner, (n, at))| {
                let applied = state.applied.get(owner)?;
                Some((
                    owner.clone(),
                    json!([n, at.duration_since(*applied).as_millis()]),
                ))
            })
            .collect();
        let children: u64 = state.children.values().map(|(n, _)| n).sum();
        let with_status = state
            .objects
            .iter()
            .filter(|(path, obj)| path.contains("/taxipipelines/") && !obj["status"].is_null())
            .count();
        json!({"gets": state.gets, "writes": state.writes, "children": children,
               "children_ms": children_ms, "with_status": with_status})
    }

    fn handle(self: &Arc<Self>, request: &Parts, sent: Value) -> Response<Body> {
        let path = request.uri.path().to_owned();
        let query = query(request);
        let counted = !request.headers.contains_key("x-bench");
        match path.as_str() {
            "/bench/stats" => return respond(StatusCode::OK, &self.stats()),
            "/bench/apply" => {
                let number = |k: &str| query.get(k).and_then(|c| c.parse().ok()).unwrap_or(0);
                return match self.apply_pipelines(number("first"), number("count")) {
                    Ok(()) => respond(StatusCode::OK, &json!({})),
                    Err(e) => respond(StatusCode::BAD_REQUEST, &json!({"error": e.to_string()})),
                };
            }
            _ => {}
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if counted {
            if request.method == Method::GET {
                state.gets += 1;
            } else {
                state.writes += 1;
            }
        }
        if path.contains("/events") {
            return respond(StatusCode::CREATED, &sent);
        }
        let selector = query.get("labelSelector");
        if request.method == Method::GET
            && query.get("watch").is_some_and(|w| w == "true" || w == "1")
        {
            let since: u64 = query
                .get("resourceVersion")
                .and_then(|rv| rv.parse().ok())
                .unwrap_or(0);
            let replay: Vec<Arc<Change>> = state
                .history
                .iter()
                .filter(|c| c.revision > since)
                .cloned()
                .collect();
            let live = futures::stream::unfold(self.changes.subscribe(), |mut rx| async move {
                loop {
                    match rx.recv().await {
                        Ok(change) => return Some((change, rx)),
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            });
            let selector = selector.cloned();
            let stream = futures::stream::iter(replay)
                .chain(live)
                .filter(move |c| {
                    futures::future::ready(
                        c.collection == path && selected(selector.as_ref(), &c.labels),
                    )
                })
                .map(|c| Ok::<_, Infallible>(Frame::data(c.line.clone())));
            return Response::new(StreamBody::new(stream).boxed_unsync());
        }
        if request.method == Method::GET && is_collection(&path) {
            let items: Vec<&Value> = state
                .objects
                .iter()
                .filter(|(p, o)| {
                    collection(p) == path && selected(selector, &o["metadata"]["labels"])
                })
                .map(|(_, o)| o)
                .collect();
            return respond(
                StatusCode::OK,
                &json!({"apiVersion": "v1", "kind": "List",
                        "metadata": {"resourceVersion": state.revision.to_string()},
                        "items": items}),
            );
        }
        if let Some(key) = path.strip_suffix("/status") {
            let Some(mut obj) = state.objects.get(key).cloned() else {
                return not_found();
            };
            obj["status"] = sent["status"].clone();
            let obj = state.put(self, key, "MODIFIED", obj);
            return respond(StatusCode::OK, &obj);
        }
        match request.method {
            Method::GET => match state.objects.get(&path) {
                Some(obj) => respond(StatusCode::OK, obj),
                None => not_found(),
            },
            Method::DELETE => match state.objects.get(&path).cloned() {
                Some(obj) => {
                    state.put(self, &path, "DELETED", obj);
                    respond(
                        StatusCode::OK,
                        &json!({"kind": "Status", "status": "Success"}),
                    )
                }
                None => not_found(),
            },
            // The finalizer's JSON patch (a test, then the new list).
            Method::PATCH if sent.is_array() => match state.objects.get(&path).cloned() {
                Some(mut obj) => {
                    if let Some(op) = sent.as_array().and_then(|ops| ops.last()) {
                        obj["metadata"]["finalizers"] = op["value"].clone();
                    }
                    let obj = state.put(self, &path, "MODIFIED", obj);
                    respond(StatusCode::OK, &obj)
                }
                None => not_found(),
            },
            _ => {
                let previous = state.objects.get(&path);
                let kind = if previous.is_some() {
                    "MODIFIED"
                } else {
                    "ADDED"
                };
                let obj = applied(sent, previous);
                if kind == "ADDED"
                    && let Some(owner) = obj["metadata"]["ownerReferences"][0]["name"].as_str()
                {
                    let entry = state
                        .children
                        .entry(owner.to_owned())
                        .or_insert((0, Instant::now()));
                    *entry = (entry.0 + 1, Instant::now());
                }
                let obj = state.put(self, &path, kind, obj);
                respond(StatusCode::OK, &obj)
            }
        }
    }
}

const FIXTURE: &str = include_str!("../../tests/fixtures/minimal.yaml");

/// Serves on a loopback port, printed on stdout, until stdin closes (the
/// bench ended, one way or another).
pub async fn serve() -> Result<(), Box<dyn Error>> {
    let (changes, _) = broadcast::channel(1 << 16);
    let server = Arc::new(Server {
        state: Mutex::new(State::default()),
        changes,
    });
    server.seed()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?.port());
    let accept = async {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let server = server.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let server = server.clone();
                    async move {
                        let (parts, body) = request.into_parts();
                        let bytes = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let sent = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                        Ok::<_, Infallible>(server.handle(&parts, sent))
                    }
                });
                // A watch the operator drops ends its connection: not an error.
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    };
    let stdin_closed = async {
        let _ = tokio::task::spawn_blocking(|| {
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new())
        })
        .await;
    };
    tokio::select! {
        () = accept => {}
        () = stdin_closed => {}
    }
    Ok(())
}
