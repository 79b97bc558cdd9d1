//! `TaxiPipeline`: one pipeline from TLC source to Cassandra results.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::{CustomResource, KubeSchema, core::Duration};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{KafkaConnection, SecretKeyRef, not_one_of};
use crate::conditions::{Condition, Time, conditions_schema};

/// Go-style durations restricted to whole seconds (`90s`, `5m`, `1h30m`).
const DURATION_PATTERN: &str = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$";

/// Desired state of a taxistream pipeline.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "taxistream.dev",
    version = "v1alpha1",
    kind = "TaxiPipeline",
    namespaced,
    status = "TaxiPipelineStatus",
    shortname = "tp",
    category = "taxistream",
    cel,
    scale(
        spec_replicas_path = ".spec.workers.aggregate.replicas",
        status_replicas_path = ".status.stages.aggregate.replicas",
        label_selector_path = ".status.stages.aggregate.selector"
    ),
    // Child objects are named `<name>-<suffix>`; the longest suffix is
    // `-ingest-schedule` (16) on the CronJob, whose names Kubernetes caps at 52,
    // and the Service `<name>-metrics` is a DNS-1035 label of at most 63.
    validation = Rule::new("self.metadata.name.size() <= (has(self.spec.schedule) ? 36 : 55)").message("metadata.name must be at most 55 characters, or 36 with spec.schedule: the pipeline's Service <name>-metrics is limited to 63 and its CronJob <name>-ingest-schedule to 52"),
    validation = Rule::new("self.metadata.name.matches('^[a-z][-a-z0-9]*$')").message("metadata.name must start with a letter and hold only lower-case letters, digits and '-': it names the pipeline's Service, a DNS-1035 label"),
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Dataset","type":"string","jsonPath":".spec.source.dataset"}"#,
    printcolumn = r#"{"name":"Window","type":"string","jsonPath":".spec.aggregation.window"}"#,
    printcolumn = r#"{"name":"Aggregators","type":"integer","jsonPath":".status.stages.aggregate.readyReplicas"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TaxiPipelineSpec {
    /// Where trip records come from.
    pub source: SourceSpec,
    /// Cron schedule (five fields, or `@hourly`-style) for batch pulls of the
    /// source, run as a CronJob. Absent means ingest runs continuously.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = Rule::new(r"self.matches('^(@(yearly|annually|monthly|weekly|daily|hourly)|([0-9*/,?A-Za-z-]+ +){4}[0-9*/,?A-Za-z-]+)$')").message("schedule must be a five-field cron expression or one of @yearly, @monthly, @weekly, @daily, @hourly"))]
    pub schedule: Option<String>,
    /// Stop every worker (replicas 0) while keeping all state and objects.
    #[serde(default)]
    pub suspend: bool,
    /// Where raw trips land.
    pub postgres: PostgresSpec,
    /// The Kafka cluster the pipeline streams through.
    pub kafka: KafkaConnection,
    /// Names of the KafkaTopic objects (in this namespace) the pipeline uses.
    pub topics: TopicRefs,
    /// Event-time windowing of the aggregate stage.
    #[serde(default)]
    pub aggregation: AggregationSpec,
    /// Name of the CassandraSink (in this namespace) the results are written to.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub cassandra_sink: String,
    /// Per-stage worker settings.
    #[serde(default)]
    pub workers: WorkersSpec,
    /// Worker image. Absent means the operator's default (its `--worker-image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Pull policy of the worker image.
    #[serde(default)]
    pub image_pull_policy: PullPolicy,
}

/// TLC dataset families.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Dataset {
    #[default]
    Yellow,
    Green,
    Fhv,
    Fhvhv,
}

impl Dataset {
    /// The file-name prefix the TLC uses, e.g. `yellow` in `yellow_tripdata_2025-01.parquet`.
    pub fn as_str(self) -> &'static str {
        match self {
            Dataset::Yellow => "yellow",
            Dataset::Green => "green",
            Dataset::Fhv => "fhv",
            Dataset::Fhvhv => "fhvhv",
        }
    }
}

/// The trip-record source. Exactly one of `files`, `months` or `openData` is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.files) ? 1 : 0) + (has(self.months) ? 1 : 0) + (has(self.openData) ? 1 : 0) == 1").message("source must set exactly one of files, months or openData"))]
pub struct SourceSpec {
    /// Dataset family of the records.
    #[serde(default)]
    pub dataset: Dataset,
    /// Explicit Parquet or CSV files: `http(s)://` URLs or paths inside the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1000), inner(length(min = 1, max = 2048)))]
    pub files: Option<Vec<String>>,
    /// A range of months, expanded to `<baseUrl>/<dataset>_tripdata_<YYYY-MM>.parquet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub months: Option<MonthRange>,
    /// Base URL the month range is expanded against.
    #[serde(default = "default_base_url")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^(https?|file)://"))]
    pub base_url: String,
    /// The NYC Open Data (Socrata) API instead of files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_data: Option<OpenDataSource>,
    /// Replay history paced by pickup time. Absent means publish as fast as possible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplaySpec>,
}

fn default_base_url() -> String {
    "https://d37ci6vzurychx.cloudfront.net/trip-data".to_owned()
}

/// An inclusive range of `YYYY-MM` months.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.from <= self.to").message("months.from must not be after months.to"))]
pub struct MonthRange {
    /// First month, `YYYY-MM`. TLC zone IDs start in 2016-07.
    #[schemars(
        length(min = 7, max = 7),
        regex(pattern = r"^20[0-9]{2}-(0[1-9]|1[0-2])$")
    )]
    pub from: String,
    /// Last month, `YYYY-MM`, inclusive.
    #[schemars(
        length(min = 7, max = 7),
        regex(pattern = r"^20[0-9]{2}-(0[1-9]|1[0-2])$")
    )]
    pub to: String,
}

/// A Socrata dataset on NYC Open Data, read page by page.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpenDataSource {
    /// Socrata host.
    #[serde(default = "default_open_data_domain")]
    #[schemars(length(min = 1, max = 253))]
    pub domain: String,
    /// Dataset identifier, e.g. `m6nq-qud6` (2021 yellow trips).
    #[schemars(regex(pattern = r"^[a-z0-9]{4}-[a-z0-9]{4}$"))]
    pub dataset_id: String,
    /// Rows per API page.
    #[serde(default = "default_page_size")]
    #[schemars(range(min = 1, max = 50000))]
    pub page_size: i32,
    /// Optional SoQL `$where` filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub r#where: Option<String>,
    /// Socrata app token, which raises the API's rate limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_token_secret_ref: Option<SecretKeyRef>,
}

fn default_open_data_domain() -> String {
    "data.cityofnewyork.us".to_owned()
}

fn default_page_size() -> i32 {
    50_000
}

/// Replay pacing: trips are published when `(pickup - first pickup) / speedup` has elapsed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplaySpec {
    /// How many times faster than real time history is replayed (60 = an hour a
    /// minute), from 0.001 to 1000000.
    // The API server compares an integer with a fractional bound truncated
    // (`speedup: 0` passed `minimum: 0.001`), so the schema bounds are whole
    // numbers and CEL, which compares numbers as doubles, holds the floor.
    #[schemars(range(min = 0, max = 1000000))]
    #[x_kube(validation = Rule::new("self >= 0.001").message("replay.speedup must be at least 0.001"))]
    pub speedup: f64,
}

/// sslmode values libpq understands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PgSslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    #[default]
    VerifyFull,
}

impl PgSslMode {
    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PgSslMode::Disable => "disable",
            PgSslMode::Prefer => "prefer",
            PgSslMode::Require => "require",
            PgSslMode::VerifyCa => "verify-ca",
            PgSslMode::VerifyFull => "verify-full",
        }
    }
}

/// Key words PostgreSQL reserves, also for function and type names: none of
/// them can name a schema or table unquoted.
const PG_RESERVED_KEYWORDS: &str = "all analyse analyze and any array as asc asymmetric \
    authorization binary both case cast check collate collation column concurrently \
    constraint create cross current_catalog current_date current_role current_schema \
    current_time current_timestamp current_user default deferrable desc distinct do else \
    end except false fetch for foreign freeze from full grant group having ilike in \
    initially inner intersect into is isnull join lateral leading left like limit \
    localtime localtimestamp natural not notnull null offset on only or order outer \
    overlaps placing primary references returning right select session_user similar some \
    symmetric system_user table tablesample then to trailing true union unique user using \
    variadic verbose when where window with";

/// The PostgreSQL landing store.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostgresSpec {
    /// Secret key holding a `postgres://user:password@host:port/db` URL.
    pub url_secret_ref: SecretKeyRef,
    /// Schema of the landing table: not a PostgreSQL reserved word, not `pg_*`.
    #[serde(default = "default_pg_schema")]
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_]{0,62}$"))]
    #[x_kube(validation = Rule::new(not_one_of(PG_RESERVED_KEYWORDS)).message("postgres.schema must not be a PostgreSQL reserved word"))]
    #[x_kube(validation = Rule::new("!self.startsWith('pg_')").message("postgres.schema must not start with pg_, which PostgreSQL reserves for system schemas"))]
    pub schema: String,
    /// Landing table for raw trips: at most 40 characters, not a PostgreSQL
    /// reserved word.
    // The workers create `_taxistream_<table>_migrations` and
    // `<table>_aggregate_checkpoints` (the longest derived names, 23 and 22
    // characters more) next to it, and PostgreSQL cuts names at 63.
    #[serde(default = "default_pg_table")]
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_]{0,39}$"))]
    #[x_kube(validation = Rule::new(not_one_of(PG_RESERVED_KEYWORDS)).message("postgres.table must not be a PostgreSQL reserved word"))]
    pub table: String,
    /// libpq sslmode. `verify-full` checks the server certificate and host name.
    #[serde(default)]
    pub ssl_mode: PgSslMode,
    /// CA bundle for `verify-ca`/`verify-full`. Absent means the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

fn default_pg_schema() -> String {
    "public".to_owned()
}

fn default_pg_table() -> String {
    "trips".to_owned()
}

/// The KafkaTopic objects of a pipeline, by name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.trips != self.aggregates && self.trips != self.deadLetters && self.aggregates != self.deadLetters").message("topics.trips, topics.aggregates and topics.deadLetters must name three different KafkaTopics"))]
pub struct TopicRefs {
    /// Raw trips, keyed by group key.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub trips: String,
    /// Closed-window results.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub aggregates: String,
    /// Late and malformed records, with the reason in headers.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub dead_letters: String,
}

/// What windows are keyed by.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum GroupBy {
    #[default]
    PickupZone,
    DropoffZone,
    Borough,
    PaymentType,
}

/// Event-time windows: tumbling when `slide` is absent, hopping otherwise.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.window) >= duration('1s') && duration(self.window) <= duration('24h')").message("aggregation.window must be between 1s and 24h (results are partitioned by day)"))]
#[x_kube(validation = Rule::new("!has(self.slide) || duration(self.slide) >= duration('1s')").message("aggregation.slide must be at least 1s"))]
#[x_kube(validation = Rule::new("!has(self.slide) || (duration(self.slide) >= duration('1s') && duration(self.window).getSeconds() % duration(self.slide).getSeconds() == 0)").message("aggregation.window must be a multiple of aggregation.slide"))]
#[x_kube(validation = Rule::new("duration(self.allowedLateness) <= duration('24h')").message("aggregation.allowedLateness must not be longer than 24h"))]
pub struct AggregationSpec {
    /// Window length.
    #[serde(default = "default_window")]
    #[schemars(length(min = 2, max = 32), regex(pattern = DURATION_PATTERN))]
    pub window: Duration,
    /// Hop between window starts. Absent means tumbling (slide = window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 32), regex(pattern = DURATION_PATTERN))]
    pub slide: Option<Duration>,
    /// How far behind the newest pickup time a record may arrive and still count.
    #[serde(default = "default_lateness")]
    #[schemars(length(min = 2, max = 32), regex(pattern = DURATION_PATTERN))]
    pub allowed_lateness: Duration,
    /// Window key.
    #[serde(default)]
    pub group_by: GroupBy,
}

fn default_window() -> Duration {
    std::time::Duration::from_secs(300).into()
}

fn default_lateness() -> Duration {
    std::time::Duration::from_secs(600).into()
}

impl Default for AggregationSpec {
    fn default() -> Self {
        Self {
            window: default_window(),
            slide: None,
            allowed_lateness: default_lateness(),
            group_by: GroupBy::default(),
        }
    }
}

/// Image pull policy of the workers.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

impl PullPolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// Settings of the three worker stages.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.ingest.autoscaling)").message("workers.ingest does not autoscale; set workers.ingest.replicas"))]
pub struct WorkersSpec {
    /// Reads sources into PostgreSQL and relays landed rows to Kafka.
    #[serde(default)]
    pub ingest: StageSpec,
    /// Consumes trips and emits closed windows. Has the `scale` subresource.
    #[serde(default)]
    pub aggregate: StageSpec,
    /// Writes closed windows to Cassandra.
    #[serde(default)]
    pub sink: StageSpec,
}

/// One worker stage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageSpec {
    /// Replicas when autoscaling is off.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    /// HorizontalPodAutoscaler settings; when set, they replace `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// CPU and memory requests and limits, as non-negative quantities. Absent
    /// means the operator's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "resources_schema")]
    pub resources: Option<ResourceRequirements>,
    /// Extra pod labels, e.g. for network policies: at most 64, keys qualified
    /// names (`[prefix/]name`), values label values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "pod_labels_schema")]
    pub pod_labels: BTreeMap<String, String>,
}

fn default_replicas() -> i32 {
    1
}

/// A non-negative Kubernetes quantity (`100m`, `1.5`, `512Mi`, `1e3`), the
/// grammar of `resource.Quantity` without the sign.
const QUANTITY: &str = r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

/// `ResourceRequirements` with its quantities checked, so `cpu: lots` fails
/// at admission instead of on the Deployment the operator applies.
fn resources_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Option<ResourceRequirements>>();
    for list in ["limits", "requests"] {
        let Some(map) = schema
            .get_mut("properties")
            .and_then(|p| p.get_mut(list))
            .and_then(serde_json::Value::as_object_mut)
        else {
            continue;
        };
        // Bounds keep the estimated cost of the rule below small.
        map.insert("maxProperties".into(), 16.into());
        map.insert(
            "x-kubernetes-validations".into(),
            serde_json::json!([{
                "rule": "self.all(r, !string(self[r]).startsWith('-'))",
                "message": format!("resources.{list} must not be negative"),
            }]),
        );
        if let Some(quantity) = map
            .get_mut("additionalProperties")
            .and_then(serde_json::Value::as_object_mut)
        {
            quantity.insert("maxLength".into(), 64.into());
            quantity.insert("pattern".into(), QUANTITY.into());
        }
    }
    schema
}

/// A label key: an optional DNS-subdomain prefix of at most 253 characters and
/// `/`, then a name of at most 63.
const LABEL_KEY_RULE: &str = r"self.all(k, k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$') && (!k.contains('/') || k.indexOf('/') <= 253))";

/// Pod labels as Kubernetes accepts them on a pod.
fn pod_labels_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 64,
        "additionalProperties": {
            "type": "string",
            "maxLength": 63,
            "pattern": "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
        },
        "x-kubernetes-validations": [{
            "rule": LABEL_KEY_RULE,
            "message": "podLabels keys must be qualified names: an optional DNS subdomain prefix and '/', then 1 to 63 of letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
        }]
    })
}

impl Default for StageSpec {
    fn default() -> Self {
        Self {
            replicas: default_replicas(),
            autoscaling: None,
            resources: None,
            pod_labels: BTreeMap::new(),
        }
    }
}

/// HorizontalPodAutoscaler settings of a stage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("autoscaling.minReplicas must not be greater than autoscaling.maxReplicas"))]
pub struct AutoscalingSpec {
    /// Lower bound of replicas.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    /// Upper bound of replicas; the operator also caps it at the topic's partition count.
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Average CPU utilisation, in percent of requests, to scale on.
    #[serde(default = "default_cpu_target")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization: i32,
    /// Consumer lag per replica (records) to scale on, read as the external
    /// metric `taxistream_consumer_lag`. Absent means CPU only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub target_consumer_lag: Option<i64>,
}

fn default_cpu_target() -> i32 {
    70
}

/// Lifecycle phase, a summary of the conditions for `kubectl get`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PipelinePhase {
    /// Children are being created or are not available yet.
    #[default]
    Pending,
    /// Every condition is healthy.
    Running,
    /// `spec.suspend` is set; workers are scaled to zero.
    Suspended,
    /// The spec or a dependency is wrong; see the `Degraded` condition.
    Degraded,
    /// The pipeline is being deleted.
    Deleting,
}

/// Observed state of a TaxiPipeline.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaxiPipelineStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Summary phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PipelinePhase>,
    /// `Ready`, `TopicsReady`, `SinkReady`, `WorkersAvailable` and `Degraded`.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Replica counts per stage, read from the owned Deployments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stages: Option<StagesStatus>,
    /// The operator-issued certificate and its rotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsStatus>,
    /// Hash of the rendered worker configuration the Deployments run with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// Partitions of the trips topic when it first became Ready. The relay
    /// keys trips onto this many partitions for the pipeline's whole life,
    /// so it bounds the aggregate workers that do work; never changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trips_partitions: Option<i32>,
}

/// Replica counts of the three stages.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StagesStatus {
    pub ingest: StageStatus,
    pub aggregate: StageStatus,
    pub sink: StageStatus,
}

/// Replica counts of one stage's Deployment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageStatus {
    /// Replicas the Deployment asks for.
    pub desired_replicas: i32,
    /// Pods created (the `scale` subresource's status replicas).
    pub replicas: i32,
    /// Pods ready.
    pub ready_replicas: i32,
    /// Label selector of the stage's pods, for the `scale` subresource.
    #[serde(default)]
    pub selector: String,
}

/// The per-pipeline CA and worker certificate the operator issues.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsStatus {
    /// `kubernetes.io/tls` Secret holding the CA.
    pub ca_secret: String,
    /// `kubernetes.io/tls` Secret holding the worker certificate.
    pub cert_secret: String,
    /// Expiry of the worker certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Time>,
    /// When the worker certificate was last issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_time: Option<Time>,
    /// How many times the worker certificate has been renewed.
    #[serde(default)]
    pub rotations: i32,
}
