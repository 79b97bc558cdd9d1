//! The worker configuration file: the contract between operator and workers.
//!
//! The operator renders a [`WorkerConfig`] from a `TaxiPipeline` (resolving
//! KafkaTopic and CassandraSink objects to concrete names) into a ConfigMap,
//! mounted at [`CONFIG_PATH`]. Secrets are never copied into it: it only names
//! the files where the referenced Secret keys are mounted ([`secret_file`]).

use serde::{Deserialize, Serialize};

use crate::SecretKeyRef;
use crate::pipeline::{Dataset, GroupBy, MonthRange, PgSslMode, SourceSpec};
use crate::sink::Consistency;

/// Where the rendered file is mounted in every worker pod.
pub const CONFIG_PATH: &str = "/etc/taxistream/worker.yaml";
/// Key of the file inside the ConfigMap.
pub const CONFIG_KEY: &str = "worker.yaml";
/// Directory under which referenced Secrets are mounted, one folder per Secret.
pub const SECRETS_DIR: &str = "/var/run/secrets/taxistream";

/// Path at which the worker finds a referenced Secret key.
pub fn secret_file(secret: &SecretKeyRef) -> String {
    format!("{SECRETS_DIR}/{}/{}", secret.name, secret.key)
}

/// Everything a worker stage needs to run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkerConfig {
    /// `namespace/name` of the pipeline, used in metric labels and consumer group ids.
    pub pipeline: String,
    pub source: SourceConfig,
    pub postgres: PostgresConfig,
    pub kafka: KafkaConfig,
    pub topics: TopicsConfig,
    pub aggregation: AggregationConfig,
    pub cassandra: CassandraConfig,
    /// Port of `/metrics`, `/healthz` and `/readyz`.
    #[serde(default = "default_metrics_port")]
    pub metrics_port: u16,
}

fn default_metrics_port() -> u16 {
    9090
}

/// Source of trip records.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SourceConfig {
    pub dataset: Dataset,
    /// Files or URLs, month ranges already expanded.
    #[serde(default)]
    pub inputs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_data: Option<OpenDataConfig>,
    /// Replay speed-up; absent means as fast as possible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_speedup: Option<f64>,
}

/// The Socrata API source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OpenDataConfig {
    pub domain: String,
    pub dataset_id: String,
    pub page_size: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#where: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_token_file: Option<String>,
}

/// The PostgreSQL landing store.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PostgresConfig {
    /// File holding the connection URL (with credentials).
    pub url_file: String,
    pub schema: String,
    pub table: String,
    pub ssl_mode: PgSslMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

/// Kafka connection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<SaslConfig>,
}

/// PEM files for TLS; all optional so server-only TLS and system roots work.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TlsFiles {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
}

/// Kafka SASL.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SaslConfig {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    pub username_file: String,
    pub password_file: String,
}

/// Broker-side topic names (resolved from the KafkaTopic objects).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TopicsConfig {
    pub trips: String,
    pub aggregates: String,
    pub dead_letters: String,
}

/// Window settings in whole seconds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AggregationConfig {
    pub window_seconds: u64,
    /// Equal to `windowSeconds` for tumbling windows.
    pub slide_seconds: u64,
    pub allowed_lateness_seconds: u64,
    pub group_by: GroupBy,
}

/// Cassandra results store.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CassandraConfig {
    pub contact_points: Vec<String>,
    pub local_datacenter: String,
    pub keyspace: String,
    pub table: String,
    pub ttl_seconds: u32,
    /// CQL consistency name, e.g. `LOCAL_QUORUM`.
    pub consistency: Consistency,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
}

/// Errors turning a spec into inputs.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputError {
    #[error("month {0:?} is not YYYY-MM")]
    BadMonth(String),
    #[error("month range {from}..{to} is reversed")]
    Reversed { from: String, to: String },
}

impl SourceSpec {
    /// Files and URLs to read: `files` as given, or `months` expanded
    /// against `baseUrl` as the TLC names its monthly files.
    pub fn inputs(&self) -> Result<Vec<String>, InputError> {
        if let Some(files) = &self.files {
            return Ok(files.clone());
        }
        match &self.months {
            Some(range) => expand_months(range, self.dataset, &self.base_url),
            None => Ok(Vec::new()),
        }
    }
}

fn parse_month(s: &str) -> Result<(u32, u32), InputError> {
    let bad = || InputError::BadMonth(s.to_owned());
    let (y, m) = s.split_once('-').ok_or_else(bad)?;
    let y: u32 = y.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    if y < 2000 || !(1..=12).contains(&m) {
        return Err(bad());
    }
    Ok((y, m))
}

/// `<base>/<dataset>_tripdata_<YYYY-MM>.parquet` for each month, inclusive.
pub fn expand_months(
    range: &MonthRange,
    dataset: Dataset,
    base_url: &str,
) -> Result<Vec<String>, InputError> {
    let (mut y, mut m) = parse_month(&range.from)?;
    let end = parse_month(&range.to)?;
    if (y, m) > end {
        return Err(InputError::Reversed {
            from: range.from.clone(),
            to: range.to.clone(),
        });
    }
    let base = base_url.trim_end_matches('/');
    let mut out = Vec::new();
    while (y, m) <= end {
        out.push(format!(
            "{base}/{}_tripdata_{y:04}-{m:02}.parquet",
            dataset.as_str()
        ));
        (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_expand_across_a_year_end() {
        let range = MonthRange {
            from: "2024-11".into(),
            to: "2025-02".into(),
        };
        let urls = expand_months(&range, Dataset::Green, "https://example.test/data/").unwrap();
        assert_eq!(
            urls,
            vec![
                "https://example.test/data/green_tripdata_2024-11.parquet",
                "https://example.test/data/green_tripdata_2024-12.parquet",
                "https://example.test/data/green_tripdata_2025-01.parquet",
                "https://example.test/data/green_tripdata_2025-02.parquet",
            ]
        );
    }

    #[test]
    fn reversed_and_malformed_months_are_errors() {
        let reversed = MonthRange {
            from: "2025-02".into(),
            to: "2025-01".into(),
        };
        assert!(matches!(
            expand_months(&reversed, Dataset::Yellow, "x"),
            Err(InputError::Reversed { .. })
        ));
        let bad = MonthRange {
            from: "2025-13".into(),
            to: "2025-13".into(),
        };
        assert_eq!(
            expand_months(&bad, Dataset::Yellow, "x"),
            Err(InputError::BadMonth("2025-13".into()))
        );
    }

    #[test]
    fn secret_files_live_under_one_folder_per_secret() {
        let r = SecretKeyRef {
            name: "pg".into(),
            key: "url".into(),
        };
        assert_eq!(secret_file(&r), "/var/run/secrets/taxistream/pg/url");
    }
}
