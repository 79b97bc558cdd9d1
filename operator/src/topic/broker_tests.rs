//! KafkaTopic flows against a real broker (the API server is the mock).
//!
//! `KAFKA_BOOTSTRAP` (tansu, started by `scripts/test.sh`) runs the create,
//! no-op and finalizer flows. The ignored tests need an Apache Kafka named by
//! `KAFKA_FULL_BOOTSTRAP` (`make test-external`): the same flows, plus
//! partition growth and config drift, which tansu 0.6 cannot serve (no
//! CreatePartitions, empty DescribeConfigs). A test whose broker is not
//! named fails: it never passes without having run. Every topic a test
//! creates is deleted when the test ends, whatever its outcome.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use taxistream_crds::KafkaTopic;

use super::admin::{TopicAdmin, TopicBroker};
use super::reconcile::{FINALIZER, reconcile};
use crate::fixtures::{Expect, Seen, mock_context, run};

const NS: &str = "taxi";

fn bootstrap(var: &str) -> String {
    match std::env::var(var) {
        Ok(b) if !b.is_empty() => b,
        _ => panic!(
            "{var} is not set: this test needs that Kafka broker (scripts/test.sh sets KAFKA_BOOTSTRAP; KAFKA_FULL_BOOTSTRAP=host:port make test-external for an Apache Kafka)"
        ),
    }
}

/// Deletes the topic when the test ends, also when it fails half-way.
struct DeleteOnDrop {
    bootstrap: String,
    name: String,
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        let (bootstrap, name) = (self.bootstrap.clone(), self.name.clone());
        // Drop cannot await, and may run while the test's runtime unwinds:
        // a runtime of its own on a thread of its own.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async { admin(&bootstrap, &name).delete().await.ok() });
        })
        .join()
        .ok();
    }
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn topic(
    name: &str,
    bootstrap: &str,
    partitions: i32,
    policy: &str,
    config: &[(&str, &str)],
) -> Value {
    let config: BTreeMap<&str, &str> = config.iter().copied().collect();
    json!({
        "apiVersion": "taxistream.dev/v1alpha1", "kind": "KafkaTopic",
        "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}"), "generation": 1,
                     "resourceVersion": "1", "finalizers": [FINALIZER]},
        "spec": {"partitions": partitions, "replicationFactor": 1, "deletionPolicy": policy,
                 "config": config, "cluster": {"bootstrapServers": bootstrap}}
    })
}

fn status_path(name: &str) -> String {
    format!("/apis/taxistream.dev/v1alpha1/namespaces/{NS}/kafkatopics/{name}/status")
}

fn admin(bootstrap: &str, name: &str) -> TopicAdmin {
    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    TopicAdmin::new(&config, name).unwrap()
}

fn reasons(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .filter(|s| s.method == http::Method::POST)
        .map(|s| s.body["reason"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Reconciles `obj` expecting a status write and `events` Events; returns
/// the object with the written status, as the API server would now hold it.
async fn reconcile_expecting(obj: &Value, events: usize) -> (Value, Vec<Seen>) {
    let name = obj["metadata"]["name"].as_str().unwrap().to_owned();
    let (ctx, handle) = mock_context();
    let mut script = vec![Expect::apply_status(status_path(&name), obj.clone())];
    script.extend((0..events).map(|_| Expect::event(NS)));
    let t: KafkaTopic = serde_json::from_value(obj.clone()).unwrap();
    let (result, seen) = run(handle, script, reconcile(Arc::new(t), ctx)).await;
    result.unwrap();
    let mut next = obj.clone();
    next["status"] = seen[0].body["status"].clone();
    (next, seen)
}

async fn delete_expecting(obj: &Value, reason: &str) {
    let name = obj["metadata"]["name"].as_str().unwrap();
    let mut deleting = obj.clone();
    deleting["metadata"]["deletionTimestamp"] = json!(crate::context::now().to_string());
    let mut released = deleting.clone();
    released["metadata"]["finalizers"] = json!([]);
    let (ctx, handle) = mock_context();
    let script = vec![
        Expect::event(NS),
        Expect::patch(
            format!("/apis/taxistream.dev/v1alpha1/namespaces/{NS}/kafkatopics/{name}"),
            released,
        ),
    ];
    let t: KafkaTopic = serde_json::from_value(deleting).unwrap();
    let (result, seen) = run(handle, script, reconcile(Arc::new(t), ctx)).await;
    result.unwrap();
    assert_eq!(reasons(&seen), vec![reason.to_owned()]);
}

async fn created_left_alone_when_steady_and_deleted_by_the_finalizer(bootstrap: &str) {
    let name = unique("op-create");
    let _cleanup = DeleteOnDrop {
        bootstrap: bootstrap.to_owned(),
        name: name.clone(),
    };
    let obj = topic(&name, bootstrap, 3, "Delete", &[]);

    let (obj, seen) = reconcile_expecting(&obj, 2).await;
    assert_eq!(reasons(&seen), vec!["TopicCreated", "TopicReady"]);
    let status = &obj["status"];
    assert_eq!(status["partitions"], 3);
    assert_eq!(status["replicationFactor"], 1);
    assert_eq!(status["topicName"], name.as_str());
    let ready = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "True", "{ready}");
    let on_broker = admin(bootstrap, &name).describe().await.unwrap().unwrap();
    assert_eq!(on_broker.partitions, 3);

    // The topic matches its spec: the reconcile reads the broker and writes nothing.
    let (ctx, handle) = mock_context();
    let t: KafkaTopic = serde_json::from_value(obj.clone()).unwrap();
    let (result, seen) = run(handle, Vec::new(), reconcile(Arc::new(t), ctx)).await;
    result.unwrap();
    assert!(seen.is_empty(), "a steady topic caused {seen:?}");

    delete_expecting(&obj, "TopicDeleted").await;
    assert!(
        admin(bootstrap, &name).describe().await.unwrap().is_none(),
        "topic {name} still exists"
    );
}

async fn deletion_policy_retain_keeps_the_topic(bootstrap: &str) {
    let name = unique("op-retain");
    let _cleanup = DeleteOnDrop {
        bootstrap: bootstrap.to_owned(),
        name: name.clone(),
    };
    let obj = topic(&name, bootstrap, 1, "Retain", &[]);
    let (obj, _) = reconcile_expecting(&obj, 2).await;
    delete_expecting(&obj, "TopicRetained").await;
    assert!(
        admin(bootstrap, &name).describe().await.unwrap().is_some(),
        "Retain deleted the topic"
    );
}

#[tokio::test]
async fn a_topic_is_created_left_alone_when_steady_and_deleted_by_the_finalizer() {
    created_left_alone_when_steady_and_deleted_by_the_finalizer(&bootstrap("KAFKA_BOOTSTRAP"))
        .await;
}

#[tokio::test]
async fn deletion_policy_retain_keeps_the_topic_on_the_test_broker() {
    deletion_policy_retain_keeps_the_topic(&bootstrap("KAFKA_BOOTSTRAP")).await;
}

#[tokio::test]
#[ignore = "needs a full Apache Kafka: KAFKA_FULL_BOOTSTRAP=host:port make test-external"]
async fn a_topic_is_created_left_alone_and_deleted_on_apache_kafka() {
    created_left_alone_when_steady_and_deleted_by_the_finalizer(&bootstrap("KAFKA_FULL_BOOTSTRAP"))
        .await;
}

#[tokio::test]
#[ignore = "needs a full Apache Kafka: KAFKA_FULL_BOOTSTRAP=host:port make test-external"]
async fn deletion_policy_retain_keeps_the_topic_on_apache_kafka() {
    deletion_policy_retain_keeps_the_topic(&bootstrap("KAFKA_FULL_BOOTSTRAP")).await;
}

#[tokio::test]
async fn an_unreachable_broker_gives_a_condition_and_an_error_not_a_crash() {
    // Port 9 (discard) on loopback: nothing listens there.
    let obj = topic("unreachable", "127.0.0.1:9", 1, "Retain", &[]);
    let (ctx, handle) = mock_context();
    let script = vec![
        Expect::apply_status(status_path("unreachable"), obj.clone()),
        Expect::event(NS),
    ];
    let t: KafkaTopic = serde_json::from_value(obj).unwrap();
    let (result, seen) = run(handle, script, reconcile(Arc::new(t), ctx)).await;
    let error = result.unwrap_err().to_string();
    assert!(error.contains("unreachable"), "{error}");
    let ready = &seen[0].body["status"]["conditions"][0];
    assert_eq!(
        (&ready["type"], &ready["status"], &ready["reason"]),
        (&json!("Ready"), &json!("False"), &json!("KafkaError"))
    );
    assert_eq!(seen[1].body["type"], "Warning");
}

#[tokio::test]
#[ignore = "needs a full Apache Kafka: KAFKA_FULL_BOOTSTRAP=host:port make test-external"]
async fn partitions_grow_and_out_of_band_config_is_reverted_on_apache_kafka() {
    let bootstrap = bootstrap("KAFKA_FULL_BOOTSTRAP");
    let name = unique("op-grow");
    let _cleanup = DeleteOnDrop {
        bootstrap: bootstrap.clone(),
        name: name.clone(),
    };
    let obj = topic(
        &name,
        &bootstrap,
        2,
        "Delete",
        &[("retention.ms", "3600000")],
    );
    let (mut obj, _) = reconcile_expecting(&obj, 2).await;

    // The reconcile reads the metadata again until it shows the new
    // partitions, so the status is right on the first pass.
    obj["spec"]["partitions"] = json!(4);
    obj["metadata"]["generation"] = json!(2);
    let (obj, seen) = reconcile_expecting(&obj, 1).await;
    assert_eq!(reasons(&seen), vec!["PartitionsIncreased"]);
    assert_eq!(obj["status"]["partitions"], 4);

    // Reverting a drift ends where the status already is: the Event is
    // the only write.
    let a = admin(&bootstrap, &name);
    a.set_config(&BTreeMap::from([(
        "retention.ms".to_owned(),
        "1000".to_owned(),
    )]))
    .await
    .unwrap();
    let (ctx, handle) = mock_context();
    let t: KafkaTopic = serde_json::from_value(obj.clone()).unwrap();
    let (result, seen) = run(handle, vec![Expect::event(NS)], reconcile(Arc::new(t), ctx)).await;
    result.unwrap();
    assert_eq!(reasons(&seen), vec!["ConfigReverted"]);
    assert_eq!(obj["status"]["config"]["retention.ms"], "3600000");
    let described = a.describe().await.unwrap().unwrap();
    assert_eq!(described.config.unwrap()["retention.ms"], "3600000");
    delete_expecting(&obj, "TopicDeleted").await;
}
