//! `CassandraSink`: the keyspace and table closed windows are written to.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{ClientTls, DeletionPolicy, SecretKeyRef};
use crate::conditions::{Condition, conditions_schema};

/// CQL identifiers we create: unquoted, so case-insensitive and safe to interpolate.
const CQL_IDENTIFIER: &str = r"^[a-z][a-z0-9_]{0,47}$";

/// Desired state of a Cassandra results store.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "taxistream.dev",
    version = "v1alpha1",
    kind = "CassandraSink",
    namespaced,
    status = "CassandraSinkStatus",
    shortname = "csink",
    category = "taxistream",
    cel,
    printcolumn = r#"{"name":"Keyspace","type":"string","jsonPath":".spec.keyspace.name"}"#,
    printcolumn = r#"{"name":"Table","type":"string","jsonPath":".spec.table"}"#,
    printcolumn = r#"{"name":"Schema","type":"integer","jsonPath":".status.schemaVersion"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CassandraSinkSpec {
    /// `host` or `host:port` of one or more Cassandra nodes (port 9042 by default).
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 261)))]
    pub contact_points: Vec<String>,
    /// Datacenter the driver prefers for load balancing and `LOCAL_*` consistency.
    #[serde(default = "default_datacenter")]
    #[schemars(length(min = 1, max = 128))]
    pub local_datacenter: String,
    /// TLS to the nodes. Absent means plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTls>,
    /// Password authentication. Absent means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<CassandraCredentials>,
    /// Keyspace holding the results table.
    pub keyspace: KeyspaceSpec,
    /// Results table. Immutable: renaming would orphan the data.
    #[serde(default = "default_table")]
    #[schemars(regex(pattern = CQL_IDENTIFIER))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("table is immutable"))]
    pub table: String,
    /// Time to live of each result row, in seconds. 0 keeps rows forever.
    #[serde(default)]
    #[schemars(range(min = 0, max = 630720000))]
    pub ttl_seconds: i32,
    /// Consistency level of the sink's writes.
    #[serde(default)]
    pub consistency: Consistency,
    /// Order of windows within a (group key, day) partition.
    #[serde(default)]
    pub clustering_order: ClusteringOrder,
    /// Whether deleting this object drops the table (and the keyspace, when empty).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn default_datacenter() -> String {
    "datacenter1".to_owned()
}

fn default_table() -> String {
    "zone_window_stats".to_owned()
}

/// Cassandra password authentication.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CassandraCredentials {
    /// Secret key holding the user name.
    pub username_secret_ref: SecretKeyRef,
    /// Secret key holding the password.
    pub password_secret_ref: SecretKeyRef,
}

/// Replication strategies we create keyspaces with.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ReplicationStrategy {
    SimpleStrategy,
    #[default]
    NetworkTopologyStrategy,
}

/// A keyspace and how it is replicated.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.strategy == 'NetworkTopologyStrategy' || !has(self.datacenters)").message("keyspace.datacenters only applies to NetworkTopologyStrategy"))]
pub struct KeyspaceSpec {
    /// Keyspace name. Immutable.
    #[schemars(regex(pattern = CQL_IDENTIFIER))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("keyspace.name is immutable"))]
    pub name: String,
    /// Replication strategy.
    #[serde(default)]
    pub strategy: ReplicationStrategy,
    /// Replication factor (of `localDatacenter`, for NetworkTopologyStrategy).
    #[serde(default = "default_rf")]
    #[schemars(range(min = 1, max = 32))]
    pub replication_factor: i32,
    /// Per-datacenter replication factors for NetworkTopologyStrategy; when
    /// set they replace `replicationFactor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacenters: Option<BTreeMap<String, i32>>,
}

fn default_rf() -> i32 {
    1
}

/// CQL consistency levels usable for writes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Consistency {
    Any,
    One,
    Two,
    Three,
    Quorum,
    All,
    #[default]
    LocalQuorum,
    EachQuorum,
    LocalOne,
}

/// Clustering order of `window_start`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ClusteringOrder {
    Asc,
    /// Newest window first: the usual dashboard query reads the latest windows.
    #[default]
    Desc,
}

/// Observed state of a CassandraSink.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CassandraSinkStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` and `Degraded`.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Version of the results-table schema applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<i32>,
    /// `keyspace.table` the sink writes to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
}
