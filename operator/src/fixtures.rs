//! A mock API server for controller-flow tests, as kube-rs `controller-rs`
//! does it: the reconcile talks to a `tower-test` service, and the test
//! states every request it must make, in order, with the reply to give.
//! A request the scenario does not list, or one it lists that never comes,
//! fails the test.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

use crate::context::{Context, Settings};
use crate::metrics::Metrics;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// What the mock answers.
pub enum Reply {
    /// 200 with this object.
    Json(Value),
    /// 404 NotFound.
    NotFound,
    /// 200 with the request body (what a server-side apply or create returns, near enough).
    Echo,
    /// 200 with this object, its status replaced by the request's.
    WithStatus(Value),
}

/// One request the reconcile must make.
pub struct Expect {
    pub method: Method,
    pub path: String,
    pub reply: Reply,
}

impl Expect {
    pub fn get(path: impl Into<String>, obj: Option<Value>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            reply: obj.map_or(Reply::NotFound, Reply::Json),
        }
    }
    /// A server-side apply (PATCH with `application/apply-patch+yaml`).
    pub fn apply(path: impl Into<String>) -> Self {
        Self {
            method: Method::PATCH,
            path: path.into(),
            reply: Reply::Echo,
        }
    }
    /// A server-side apply of `obj`'s status subresource.
    pub fn apply_status(path: impl Into<String>, obj: Value) -> Self {
        Self {
            method: Method::PATCH,
            path: path.into(),
            reply: Reply::WithStatus(obj),
        }
    }
    /// A JSON or merge patch answered with `obj`.
    pub fn patch(path: impl Into<String>, obj: Value) -> Self {
        Self {
            method: Method::PATCH,
            path: path.into(),
            reply: Reply::Json(obj),
        }
    }
    pub fn event(namespace: &str) -> Self {
        Self {
            method: Method::POST,
            path: format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events"),
            reply: Reply::Echo,
        }
    }
    pub fn delete(path: impl Into<String>) -> Self {
        Self {
            method: Method::DELETE,
            path: path.into(),
            reply: Reply::Json(json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})),
        }
    }
}

/// A request the mock received: method, path, query, content type and body.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

impl Seen {
    pub fn is_write(&self) -> bool {
        self.method != Method::GET
    }
}

fn not_found(path: &str) -> Response<Body> {
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("{path} not found"), "reason": "NotFound", "code": 404
    });
    let mut response = Response::new(Body::from(serde_json::to_vec(&status).unwrap_or_default()));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

async fn serve(mut handle: Handle, script: Vec<Expect>, seen: Arc<Mutex<Vec<Seen>>>) {
    for (i, expect) in script.into_iter().enumerate() {
        let Some((request, send)) = handle.next_request().await else {
            panic!(
                "request {i} ({} {}) never came: the client went away",
                expect.method, expect.path
            );
        };
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap_or_default();
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let got = Seen {
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
            body: value.clone(),
        };
        seen.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(got.clone());
        // A path ending in `*` stands for any name there (generated names).
        let path_matches = match expect.path.strip_suffix('*') {
            Some(prefix) => got.path.starts_with(prefix),
            None => got.path == expect.path,
        };
        assert!(
            got.method == expect.method && path_matches,
            "request {i}: expected {} {}, got {} {}?{}",
            expect.method,
            expect.path,
            got.method,
            got.path,
            got.query
        );
        let response = match expect.reply {
            Reply::Json(v) => Response::new(Body::from(serde_json::to_vec(&v).unwrap_or_default())),
            Reply::Echo => Response::new(Body::from(bytes.to_vec())),
            Reply::WithStatus(mut obj) => {
                obj["status"] = value["status"].clone();
                Response::new(Body::from(serde_json::to_vec(&obj).unwrap_or_default()))
            }
            Reply::NotFound => not_found(&got.path),
        };
        send.send_response(response);
    }
}

/// A context whose client talks to the mock, and the mock's handle.
pub fn mock_context() -> (Arc<Context>, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let metrics = Arc::new(Metrics::new(&mut Registry::default()));
    let settings = Settings {
        worker_image: "taxistream-worker:test".to_owned(),
        identity: "operator-test-0".to_owned(),
    };
    (Arc::new(Context::new(client, metrics, settings)), handle)
}

/// Runs `reconcile` against the mock following `script`, and returns what
/// the reconcile returned and every request the mock saw.
pub async fn run<F, T>(handle: Handle, script: Vec<Expect>, reconcile: F) -> (T, Vec<Seen>)
where
    F: std::future::Future<Output = T>,
{
    let seen = Arc::new(Mutex::new(Vec::new()));
    let expected = script.len();
    let server = tokio::spawn(serve(handle, script, seen.clone()));
    let outcome = tokio::time::timeout(Duration::from_secs(20), reconcile).await;
    let requests = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let finished = tokio::time::timeout(Duration::from_secs(2), server).await;
    match finished {
        Ok(Ok(())) => {}
        Ok(Err(panic)) => std::panic::resume_unwind(panic.into_panic()),
        Err(_) => panic!(
            "the reconcile made {} of the {expected} expected requests; seen: {:#?}",
            requests.len(),
            requests
                .iter()
                .map(|s| format!("{} {}", s.method, s.path))
                .collect::<Vec<_>>()
        ),
    }
    let Ok(outcome) = outcome else {
        panic!(
            "the reconcile hung after the scripted requests: it made a request the scenario does not list; seen: {:#?}",
            requests
                .iter()
                .map(|s| format!("{} {}", s.method, s.path))
                .collect::<Vec<_>>()
        );
    };
    (outcome, requests)
}
