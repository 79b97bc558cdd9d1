//! KafkaTopic flows that need no broker (the API server is the mock).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::controller::Action;
use serde_json::{Value, json};
use taxistream_crds::KafkaTopic;

use super::admin::TopicBroker;
use super::plan::BrokerTopic;
use super::reconcile::{FINALIZER, apply_with, reconcile};
use crate::error::Result;
use crate::fixtures::{Expect, mock_context, run};

const NS: &str = "taxi";
const PATH: &str = "/apis/taxistream.dev/v1alpha1/namespaces/taxi/kafkatopics/trips";

/// A KafkaTopic that authenticates with SASL credentials from `kafka-user`.
fn topic_with_sasl() -> Value {
    json!({
        "apiVersion": "taxistream.dev/v1alpha1", "kind": "KafkaTopic",
        "metadata": {"name": "trips", "namespace": NS, "uid": "uid-trips", "generation": 1,
                     "resourceVersion": "1", "finalizers": [FINALIZER]},
        "spec": {"partitions": 3, "replicationFactor": 1, "deletionPolicy": "Delete",
                 "cluster": {"bootstrapServers": "127.0.0.1:9",
                             "sasl": {"usernameSecretRef": {"name": "kafka-user", "key": "username"},
                                      "passwordSecretRef": {"name": "kafka-user", "key": "password"}}}}
    })
}

#[tokio::test]
async fn a_topic_never_created_is_released_at_once_when_its_secret_is_broken() {
    let mut deleting = topic_with_sasl();
    deleting["metadata"]["deletionTimestamp"] = json!(crate::context::now().to_string());
    let mut released = deleting.clone();
    released["metadata"]["finalizers"] = json!([]);
    let (ctx, handle) = mock_context();
    let script = vec![
        Expect::get("/api/v1/namespaces/taxi/secrets/kafka-user", None),
        Expect::event(NS),
        Expect::patch(PATH, released),
    ];
    let t: KafkaTopic = serde_json::from_value(deleting).unwrap();
    let (result, seen) = run(handle, script, reconcile(Arc::new(t), ctx)).await;
    result.unwrap();
    assert_eq!(seen[1].body["reason"], "TopicNeverCreated");
    assert_eq!(seen[2].body[1]["op"], "remove");
}

#[tokio::test]
async fn a_created_topic_with_a_broken_secret_keeps_its_finalizer() {
    let mut deleting = topic_with_sasl();
    deleting["metadata"]["deletionTimestamp"] = json!(crate::context::now().to_string());
    deleting["status"] = json!({"partitions": 3, "conditions": []});
    let (ctx, handle) = mock_context();
    let script = vec![Expect::get(
        "/api/v1/namespaces/taxi/secrets/kafka-user",
        None,
    )];
    let t: KafkaTopic = serde_json::from_value(deleting).unwrap();
    let (result, _) = run(handle, script, reconcile(Arc::new(t), ctx)).await;
    let error = result.unwrap_err();
    assert_eq!(error.metric_label(), "secret");
}

/// A broker whose metadata lags behind its writes, as Apache Kafka's does
/// right after CreateTopics: the first `hidden_reads` describes after the
/// topic exists still report it missing.
struct LaggingBroker {
    state: Mutex<(Option<i32>, u32)>,
}

impl LaggingBroker {
    fn new(hidden_reads: u32) -> Self {
        Self {
            state: Mutex::new((None, hidden_reads)),
        }
    }
}

impl TopicBroker for LaggingBroker {
    async fn describe(&self) -> Result<Option<BrokerTopic>> {
        let mut state = self.state.lock().unwrap();
        match *state {
            (Some(_), hidden) if hidden > 0 => {
                state.1 -= 1;
                Ok(None)
            }
            (Some(partitions), _) => Ok(Some(BrokerTopic {
                partitions,
                replication_factor: 1,
                config: Some(BTreeMap::new()),
            })),
            (None, _) => Ok(None),
        }
    }
    async fn create(&self, partitions: i32, _: i32, _: &BTreeMap<String, String>) -> Result<bool> {
        let mut state = self.state.lock().unwrap();
        let created = state.0.is_none();
        state.0.get_or_insert(partitions);
        Ok(created)
    }
    async fn grow(&self, partitions: i32) -> Result<()> {
        self.state.lock().unwrap().0 = Some(partitions);
        Ok(())
    }
    async fn set_config(&self, _: &BTreeMap<String, String>) -> Result<()> {
        Ok(())
    }
    async fn delete(&self) -> Result<()> {
        Ok(())
    }
}

fn plain_topic() -> Value {
    let mut t = topic_with_sasl();
    t["spec"]["cluster"] = json!({"bootstrapServers": "kafka:9092"});
    t
}

fn ready(status: &Value) -> &Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
}

#[tokio::test]
async fn a_created_topic_the_metadata_does_not_show_yet_is_progressing_and_looked_at_soon() {
    let obj = plain_topic();
    let broker = LaggingBroker::new(u32::MAX);
    let (ctx, handle) = mock_context();
    let script = vec![
        Expect::apply_status(format!("{PATH}/status"), obj.clone()),
        Expect::event(NS),
    ];
    let t: KafkaTopic = serde_json::from_value(obj.clone()).unwrap();
    let (result, seen) = run(handle, script, apply_with(&t, &ctx, &broker)).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(2)));
    let ready = ready(&seen[0].body["status"]);
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&json!("False"), &json!("TopicCreating"))
    );
    // The create is announced; the transient state is not a Warning.
    assert_eq!(seen[1].body["reason"], "TopicCreated");
    assert_eq!(seen[1].body["type"], "Normal");

    // The next look: CreateTopics answers "already exists", the metadata
    // still lags. Still progressing, and no second TopicCreated.
    let mut next = obj.clone();
    next["status"] = seen[0].body["status"].clone();
    let t: KafkaTopic = serde_json::from_value(next).unwrap();
    let (ctx, handle) = mock_context();
    let (result, seen) = run(handle, Vec::new(), apply_with(&t, &ctx, &broker)).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(2)));
    assert!(seen.is_empty(), "{seen:?}");
}

#[tokio::test]
async fn a_created_topic_is_read_again_until_the_metadata_shows_it() {
    let obj = plain_topic();
    let broker = LaggingBroker::new(2);
    let (ctx, handle) = mock_context();
    let script = vec![
        Expect::apply_status(format!("{PATH}/status"), obj.clone()),
        Expect::event(NS),
        Expect::event(NS),
    ];
    let t: KafkaTopic = serde_json::from_value(obj).unwrap();
    let (result, seen) = run(handle, script, apply_with(&t, &ctx, &broker)).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(300)));
    let status = &seen[0].body["status"];
    assert_eq!(ready(status)["reason"], "TopicReady");
    assert_eq!(status["partitions"], 3);
    assert_eq!(seen[1].body["reason"], "TopicCreated");
    assert_eq!(seen[2].body["reason"], "TopicReady");
}
