//! CassandraSink flows against a real Cassandra or ScyllaDB (the API server
//! is the mock). The ignored test needs one named by
//! `CASSANDRA_CONTACT_POINTS` (`make test-external`) and fails without it;
//! its keyspace is dropped when it ends, whatever its outcome.

use std::sync::Arc;

use serde_json::{Value, json};
use taxistream_crds::CassandraSink;

use super::reconcile::{FINALIZER, reconcile};
use super::{schema, session};
use crate::fixtures::{Expect, mock_context, run};

const NS: &str = "taxi";

fn contact_points() -> Vec<String> {
    match std::env::var("CASSANDRA_CONTACT_POINTS") {
        Ok(v) if !v.is_empty() => v.split(',').map(str::to_owned).collect(),
        _ => panic!(
            "CASSANDRA_CONTACT_POINTS is not set: this test needs a Cassandra (CASSANDRA_CONTACT_POINTS=host:port make test-external)"
        ),
    }
}

/// Drops the test's keyspace when the test ends, also when it fails half-way.
struct DropOnDrop(CassandraSink);

impl Drop for DropOnDrop {
    fn drop(&mut self) {
        let spec = self.0.spec.clone();
        // Drop cannot await, and may run while the test's runtime unwinds:
        // a runtime of its own on a thread of its own.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let (ctx, _) = mock_context();
                if let Ok(cql) = session::connect(&ctx.client, NS, &spec).await {
                    session::ddl(&cql, &spec, schema::drop_keyspace(&spec))
                        .await
                        .ok();
                }
            });
        })
        .join()
        .ok();
    }
}

fn sink(contact_points: &[String], keyspace: &str) -> Value {
    json!({
        "apiVersion": "taxistream.dev/v1alpha1", "kind": "CassandraSink",
        "metadata": {"name": "results", "namespace": NS, "uid": "uid-results", "generation": 1,
                     "resourceVersion": "1", "finalizers": [FINALIZER]},
        "spec": {"contactPoints": contact_points,
                 "localDatacenter": std::env::var("CASSANDRA_DATACENTER").unwrap_or_else(|_| "datacenter1".into()),
                 "keyspace": {"name": keyspace, "strategy": "SimpleStrategy", "replicationFactor": 1},
                 "ttlSeconds": 3600, "clusteringOrder": "DESC", "deletionPolicy": "Delete"}
    })
}

#[tokio::test]
#[ignore = "needs a Cassandra: CASSANDRA_CONTACT_POINTS=host:port make test-external"]
async fn keyspace_and_table_are_created_kept_and_dropped() {
    let points = contact_points();
    let keyspace = format!("taxistream_op_{}", std::process::id());
    let obj = sink(&points, &keyspace);
    let _cleanup = DropOnDrop(serde_json::from_value(obj.clone()).unwrap());
    let path = format!("/apis/taxistream.dev/v1alpha1/namespaces/{NS}/cassandrasinks/results");

    // Create: keyspace, table, status with the schema version, Events.
    let (ctx, handle) = mock_context();
    let mut script = vec![Expect::event(NS), Expect::event(NS)];
    script.push(Expect::apply_status(format!("{path}/status"), obj.clone()));
    script.push(Expect::event(NS));
    let s: CassandraSink = serde_json::from_value(obj.clone()).unwrap();
    let (result, seen) = run(handle, script, reconcile(Arc::new(s.clone()), ctx)).await;
    result.unwrap();
    let status = seen[2].body["status"].clone();
    assert_eq!(status["schemaVersion"], 1);
    assert_eq!(status["table"], format!("{keyspace}.zone_window_stats"));
    let (ctx, _) = mock_context();
    let cql = session::connect(&ctx.client, NS, &s.spec).await.unwrap();
    let table = session::table(&cql, &s.spec).await.unwrap().unwrap();
    assert_eq!(table.default_time_to_live, 3600);
    assert_eq!(table.window_start_order, "desc");

    // Steady: no DDL, no status write, no Event.
    let mut steady = obj.clone();
    steady["status"] = status;
    let (ctx, handle) = mock_context();
    let s: CassandraSink = serde_json::from_value(steady.clone()).unwrap();
    let (result, seen) = run(handle, Vec::new(), reconcile(Arc::new(s), ctx)).await;
    result.unwrap();
    assert!(seen.is_empty());

    // Delete with deletionPolicy Delete drops the table and the empty keyspace.
    let mut deleting = steady;
    deleting["metadata"]["deletionTimestamp"] = json!(crate::context::now().to_string());
    let mut released = deleting.clone();
    released["metadata"]["finalizers"] = json!([]);
    let (ctx, handle) = mock_context();
    let s: CassandraSink = serde_json::from_value(deleting).unwrap();
    let script = vec![Expect::event(NS), Expect::patch(path, released)];
    let (result, seen) = run(handle, script, reconcile(Arc::new(s.clone()), ctx)).await;
    result.unwrap();
    assert_eq!(seen[0].body["reason"], "SchemaDropped");
    assert!(
        session::keyspace_replication(&cql, &s.spec)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn an_unreachable_cluster_gives_a_condition_and_an_error() {
    let obj = sink(&["127.0.0.1:9".to_owned()], "taxistream_unreachable");
    let (ctx, handle) = mock_context();
    let path =
        format!("/apis/taxistream.dev/v1alpha1/namespaces/{NS}/cassandrasinks/results/status");
    let script = vec![Expect::apply_status(path, obj.clone()), Expect::event(NS)];
    let s: CassandraSink = serde_json::from_value(obj).unwrap();
    let (result, seen) = run(handle, script, reconcile(Arc::new(s), ctx)).await;
    let error = result.unwrap_err().to_string();
    assert!(error.contains("taxistream_unreachable"), "{error}");
    let ready = &seen[0].body["status"]["conditions"][0];
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&json!("False"), &json!("CassandraError"))
    );
    assert!(seen[0].body["status"].get("schemaVersion").is_none());
    assert_eq!(seen[1].body["type"], "Warning");
}
