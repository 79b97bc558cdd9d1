//! `KafkaTopic`: one Kafka topic, managed like Strimzi's topic operator does.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{DeletionPolicy, KafkaConnection};
use crate::conditions::{Condition, conditions_schema};

/// Desired state of a Kafka topic.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "taxistream.dev",
    version = "v1alpha1",
    kind = "KafkaTopic",
    namespaced,
    status = "KafkaTopicStatus",
    shortname = "ktopic",
    category = "taxistream",
    cel,
    // Without spec.topicName the object's name is the topic's: Kubernetes allows
    // 253 characters, Kafka 249.
    validation = Rule::new("has(self.spec.topicName) || self.metadata.name.size() <= 249").message("metadata.name is longer than the 249 characters Kafka allows in a topic name; set spec.topicName"),
    printcolumn = r#"{"name":"Topic","type":"string","jsonPath":".status.topicName"}"#,
    printcolumn = r#"{"name":"Partitions","type":"integer","jsonPath":".spec.partitions"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".spec.replicationFactor"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
// The field rule below only runs when both objects have the field, so adding or
// removing it needs this rule on the parent.
#[x_kube(validation = Rule::new("has(self.topicName) == has(oldSelf.topicName)").message("topicName is immutable: it can be neither added nor removed"))]
pub struct KafkaTopicSpec {
    /// Topic name on the broker, as Kafka allows it: 1 to 249 of `a-z A-Z 0-9 . _ -`,
    /// but not `.` or `..`. Absent means the object's name. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249), regex(pattern = r"^[a-zA-Z0-9._-]+$"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("topicName is immutable"))]
    #[x_kube(validation = Rule::new("self != '.' && self != '..'").message("topicName may not be '.' or '..'"))]
    pub topic_name: Option<String>,
    /// Partition count. It may grow but never shrink: Kafka cannot remove partitions.
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1, max = 10000))]
    #[x_kube(validation = Rule::new("self >= oldSelf").message("partitions may not decrease"))]
    pub partitions: i32,
    /// Replication factor. Immutable: changing it needs a reassignment, not a reconcile.
    #[serde(default = "default_replication_factor")]
    #[schemars(range(min = 1, max = 32))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("replicationFactor is immutable"))]
    pub replication_factor: i32,
    /// Topic configuration (`retention.ms`, `cleanup.policy`, …). Values set
    /// here win over changes made on the broker out of band.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// Whether deleting this object deletes the topic.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// The Kafka cluster the topic lives on.
    pub cluster: KafkaConnection,
}

fn default_partitions() -> i32 {
    6
}

fn default_replication_factor() -> i32 {
    1
}

impl KafkaTopic {
    /// The topic's name on the broker.
    pub fn topic_name(&self) -> &str {
        self.spec
            .topic_name
            .as_deref()
            .or(self.metadata.name.as_deref())
            .unwrap_or_default()
    }
}

/// Observed state of a Kafka topic, as the broker reports it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaTopicStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` and `Degraded`.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Topic name on the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_name: Option<String>,
    /// Topic ID the broker assigned, when it reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
    /// Partitions on the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// Replication factor on the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<i32>,
    /// Non-default configuration the broker reports for the topic.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
}
