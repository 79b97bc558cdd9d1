//! Two replicas on one Lease, the Lease held by an in-memory API server
//! that both replicas' clients talk to: what SIGTERM does to the leader.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{LeaseSettings, lead};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
type Store = Arc<Mutex<Option<Value>>>;

/// RFC 7386 merge: what a strategic-merge or apply patch of the Lease's
/// scalar fields amounts to.
fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

fn reply(code: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::from(serde_json::to_vec(body).unwrap()));
    *response.status_mut() = code;
    response
}

/// Serves GET, POST and PATCH of the one Lease from `store`.
async fn serve(mut handle: Handle, store: Store) {
    while let Some((request, send)) = handle.next_request().await {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap_or_default();
        let sent: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let mut lease = store.lock().unwrap();
        let version = |l: &mut Value| {
            let v = l["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            l["metadata"]["resourceVersion"] = json!((v + 1).to_string());
        };
        let response = match (parts.method.clone(), lease.as_mut()) {
            (Method::GET, Some(l)) => reply(StatusCode::OK, l),
            (Method::POST, None) => {
                let mut l = sent;
                version(&mut l);
                let r = reply(StatusCode::CREATED, &l);
                *lease = Some(l);
                r
            }
            (Method::PATCH, Some(l)) => {
                merge(l, &sent);
                version(l);
                reply(StatusCode::OK, l)
            }
            _ => reply(
                StatusCode::NOT_FOUND,
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "reason": "NotFound", "code": 404, "message": "lease not found"}),
            ),
        };
        send.send_response(response);
    }
}

fn replica(store: &Store) -> Client {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(serve(handle, store.clone()));
    Client::new(service, "default")
}

fn settings(identity: &str) -> LeaseSettings {
    LeaseSettings {
        namespace: "taxistream-system".to_owned(),
        name: "taxistream-operator".to_owned(),
        identity: identity.to_owned(),
        duration_seconds: 6,
    }
}

fn holder(store: &Store) -> Option<String> {
    store
        .lock()
        .unwrap()
        .as_ref()
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn a_leader_told_to_stop_releases_the_lease_and_a_standby_takes_over() {
    let store: Store = Arc::new(Mutex::new(None));

    let (a_stop, a_stop_rx) = watch::channel(false);
    let leadership = lead(replica(&store), &settings("a"), a_stop_rx, a_stop.clone())
        .await
        .unwrap()
        .expect("the first replica leads");
    assert_eq!(holder(&store).as_deref(), Some("a"));

    let (b_stop, b_stop_rx) = watch::channel(false);
    let b_client = replica(&store);
    let standby = tokio::spawn(async move {
        lead(b_client, &settings("b"), b_stop_rx, b_stop)
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!standby.is_finished(), "the standby waits while a leads");

    // SIGTERM: the controllers stop, then the process releases the Lease.
    a_stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(3), leadership.release())
        .await
        .expect("the stopping leader returns promptly instead of renewing its Lease");
    assert_eq!(
        holder(&store),
        None,
        "the Lease is released, not left to expire"
    );

    // The standby looks again when the old lease would have expired, finds
    // it free and leads (without the release, it would find it renewed).
    let b = tokio::time::timeout(Duration::from_secs(10), standby)
        .await
        .expect("the standby takes over within one lease duration")
        .unwrap()
        .expect("the standby leads");
    assert_eq!(holder(&store).as_deref(), Some("b"));
    b.release().await;
}
