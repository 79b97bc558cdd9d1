//! The worker configuration file, rendered from the spec into a ConfigMap.
//!
//! Secrets are never copied: the file names where each referenced Secret key
//! is mounted (`secret_file`), and `workloads` mounts exactly those keys.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use sha2::{Digest, Sha256};
use taxistream_crds::worker_config::{
    AggregationConfig, CONFIG_KEY, CassandraConfig, KafkaConfig, OpenDataConfig, PostgresConfig,
    SaslConfig, SourceConfig, TlsFiles, TopicsConfig, WorkerConfig, secret_file,
};

use super::{Inputs, names};
use crate::error::{Error, Result};

/// Port of the workers' `/metrics`, `/healthz` and `/readyz`.
pub const METRICS_PORT: u16 = 9090;
/// Port of the relay container's endpoints, beside the ingest container.
pub const RELAY_METRICS_PORT: u16 = 9091;

fn seconds(d: &kube::core::Duration) -> u64 {
    std::time::Duration::from(*d).as_secs()
}

/// The configuration every stage reads.
pub fn worker_config(
    inputs: &Inputs<'_>,
) -> Result<WorkerConfig, taxistream_crds::worker_config::InputError> {
    let spec = &inputs.pipeline.spec;
    let source = &spec.source;
    let kafka = &spec.kafka;
    let sink = inputs.sink;
    let window = seconds(&spec.aggregation.window);
    Ok(WorkerConfig {
        pipeline: format!("{}/{}", inputs.namespace, inputs.name),
        source: SourceConfig {
            dataset: source.dataset,
            inputs: source.inputs()?,
            open_data: source.open_data.as_ref().map(|o| OpenDataConfig {
                domain: o.domain.clone(),
                dataset_id: o.dataset_id.clone(),
                page_size: u32::try_from(o.page_size).unwrap_or(50_000),
                r#where: o.r#where.clone(),
                app_token_file: o.app_token_secret_ref.as_ref().map(secret_file),
            }),
            replay_speedup: source.replay.as_ref().map(|r| r.speedup),
        },
        postgres: PostgresConfig {
            url_file: secret_file(&spec.postgres.url_secret_ref),
            schema: spec.postgres.schema.clone(),
            table: spec.postgres.table.clone(),
            ssl_mode: spec.postgres.ssl_mode,
            ca_file: spec.postgres.ca_secret_ref.as_ref().map(secret_file),
        },
        kafka: KafkaConfig {
            bootstrap_servers: kafka.bootstrap_servers.clone(),
            tls: kafka.tls.as_ref().map(|t| TlsFiles {
                ca_file: t.ca_secret_ref.as_ref().map(secret_file),
                cert_file: t.cert_secret_ref.as_ref().map(secret_file),
                key_file: t.key_secret_ref.as_ref().map(secret_file),
            }),
            sasl: kafka.sasl.as_ref().map(|s| SaslConfig {
                mechanism: s.mechanism.as_kafka_str().to_owned(),
                username_file: secret_file(&s.username_secret_ref),
                password_file: secret_file(&s.password_secret_ref),
            }),
        },
        topics: TopicsConfig {
            trips: inputs.topics.trips.clone(),
            aggregates: inputs.topics.aggregates.clone(),
            dead_letters: inputs.topics.dead_letters.clone(),
        },
        aggregation: AggregationConfig {
            window_seconds: window,
            slide_seconds: spec.aggregation.slide.as_ref().map_or(window, seconds),
            allowed_lateness_seconds: seconds(&spec.aggregation.allowed_lateness),
            group_by: spec.aggregation.group_by,
        },
        cassandra: CassandraConfig {
            contact_points: sink.contact_points.clone(),
            local_datacenter: sink.local_datacenter.clone(),
            keyspace: sink.keyspace.name.clone(),
            table: sink.table.clone(),
            ttl_seconds: u32::try_from(sink.ttl_seconds).unwrap_or(0),
            consistency: sink.consistency,
            tls: sink.tls.as_ref().map(|t| TlsFiles {
                ca_file: t.ca_secret_ref.as_ref().map(secret_file),
                cert_file: t.cert_secret_ref.as_ref().map(secret_file),
                key_file: t.key_secret_ref.as_ref().map(secret_file),
            }),
            username_file: sink
                .credentials
                .as_ref()
                .map(|c| secret_file(&c.username_secret_ref)),
            password_file: sink
                .credentials
                .as_ref()
                .map(|c| secret_file(&c.password_secret_ref)),
        },
        metrics_port: METRICS_PORT,
    })
}

/// The ConfigMap holding `worker.yaml`, and the hash of its contents that
/// pod templates carry.
pub fn config_map(inputs: &Inputs<'_>, config: &WorkerConfig) -> Result<(ConfigMap, String)> {
    let worker = serde_yaml::to_string(config).map_err(|source| Error::RenderConfig {
        pipeline: format!("{}/{}", inputs.namespace, inputs.name),
        source,
    })?;
    let hash = short_hash(&Sha256::digest(worker.as_bytes()));
    let cm = ConfigMap {
        metadata: inputs.meta(names::config(&inputs.name), inputs.labels()),
        data: Some(BTreeMap::from([(CONFIG_KEY.to_owned(), worker)])),
        ..ConfigMap::default()
    };
    Ok((cm, hash))
}

/// The first 16 hex digits of a digest: short enough for an annotation,
/// long enough that two configurations never collide in practice.
pub fn short_hash(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}
