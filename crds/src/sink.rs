//! `CassandraSink`: the keyspace and table closed windows are written to.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{ClientTls, DeletionPolicy, SecretKeyRef, not_one_of};
use crate::conditions::{Condition, conditions_schema};

/// CQL identifiers we create: lower case, so quoting them (see [`quote_cql_identifier`])
/// names the same keyspace or table as leaving them unquoted would.
const CQL_IDENTIFIER: &str = r"^[a-z][a-z0-9_]{0,47}$";

/// Keywords Cassandra 4.0 reserves, plus `check`, `constraint` and `length`,
/// which later releases reserve. The operator and the workers quote
/// identifiers, but a keyspace or table named like this would need quotes in
/// every query a person writes against it, so the schema rejects them.
const CQL_RESERVED_KEYWORDS: &str = "add allow alter and apply asc authorize batch begin by \
    check columnfamily constraint create delete desc describe drop entries execute from \
    full grant if in index infinity insert into is keyspace length limit materialized \
    modify nan norecursive not null of on or order primary rename replace revoke schema \
    select set table to token truncate unlogged update use using view where with";

/// `name` as a quoted CQL identifier: reserved words stay usable and the case
/// is kept. Quotes inside are doubled, so no name can end the identifier early.
pub fn quote_cql_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A host name, IPv4 address or bracketed IPv6 address, then an optional port
/// from 1 to 65535.
const CONTACT_POINT: &str = r"^([A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?$";

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
    /// `host` or `host:port` of one or more Cassandra nodes (port 9042 by default;
    /// 1 to 65535). An IPv6 address goes in brackets: `[fd00::1]:9042`.
    #[schemars(
        length(min = 1, max = 64),
        inner(length(min = 1, max = 261), regex(pattern = CONTACT_POINT))
    )]
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
    #[x_kube(validation = Rule::new(not_one_of(CQL_RESERVED_KEYWORDS)).message("table must not be a CQL reserved word"))]
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
    /// Keyspace name. Immutable. Neither a CQL reserved word nor a Cassandra
    /// system keyspace (`system`, `system_*`).
    #[schemars(regex(pattern = CQL_IDENTIFIER))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("keyspace.name is immutable"))]
    #[x_kube(validation = Rule::new(not_one_of(CQL_RESERVED_KEYWORDS)).message("keyspace.name must not be a CQL reserved word"))]
    #[x_kube(validation = Rule::new("self != 'system' && !self.startsWith('system_')").message("keyspace.name must not be a Cassandra system keyspace (system, system_*)"))]
    pub name: String,
    /// Replication strategy.
    #[serde(default)]
    pub strategy: ReplicationStrategy,
    /// Replication factor (of `localDatacenter`, for NetworkTopologyStrategy).
    #[serde(default = "default_rf")]
    #[schemars(range(min = 1, max = 32))]
    pub replication_factor: i32,
    /// Per-datacenter replication factors (1 to 32) for NetworkTopologyStrategy;
    /// when set they replace `replicationFactor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "datacenters_schema")]
    pub datacenters: Option<BTreeMap<String, i32>>,
}

fn default_rf() -> i32 {
    1
}

/// 1 to 16 datacenters with a factor of 1 to 32 each. `class` and
/// `replication_factor` are options of the replication map, not datacenters.
fn datacenters_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "nullable": true,
        "minProperties": 1,
        "maxProperties": 16,
        "additionalProperties": {
            "type": "integer",
            "format": "int32",
            "minimum": 1,
            "maximum": 32
        },
        "x-kubernetes-validations": [{
            "rule": "self.all(dc, dc.size() <= 128 && dc != 'class' && dc != 'replication_factor')",
            "message": "keyspace.datacenters keys must be datacenter names of at most 128 characters, other than class and replication_factor"
        }]
    })
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
