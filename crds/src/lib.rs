//! The taxistream API, group `taxistream.dev`, version `v1alpha1`.
//!
//! Three namespaced kinds, each with a status subresource:
//! - [`TaxiPipeline`]: the whole pipeline (source → PostgreSQL → Kafka → windows → Cassandra);
//! - [`KafkaTopic`]: one Kafka topic the pipeline uses;
//! - [`CassandraSink`]: the keyspace and table the results land in.
//!
//! Validation lives in the generated OpenAPI schema (ranges, enums, patterns) and in
//! CEL `x-kubernetes-validations` rules, so the API server rejects bad objects
//! before the operator sees them. [`worker_config`] is the contract between the
//! operator, which renders it into a ConfigMap, and the workers, which read it.

pub mod common;
pub mod conditions;
pub mod manifests;
pub mod pipeline;
pub mod results_table;
pub mod sink;
pub mod topic;
pub mod worker_config;

pub use common::{DeletionPolicy, KafkaConnection, SecretKeyRef};
pub use pipeline::{TaxiPipeline, TaxiPipelineSpec, TaxiPipelineStatus};
pub use sink::{CassandraSink, CassandraSinkSpec, CassandraSinkStatus};
pub use topic::{KafkaTopic, KafkaTopicSpec, KafkaTopicStatus};

/// API group of every taxistream kind.
pub const GROUP: &str = "taxistream.dev";
/// API version of every taxistream kind.
pub const VERSION: &str = "v1alpha1";
/// Category shared by the kinds, so `kubectl get taxistream` lists them all.
pub const CATEGORY: &str = "taxistream";
