//! Stage configuration: the file the operator renders into a ConfigMap
//! ([`WorkerConfig`], mounted at [`CONFIG_PATH`]), overridden by environment
//! variables, plus the secrets it names by file.
//!
//! Environment overrides (all optional):
//!
//! | variable | overrides |
//! |---|---|
//! | `TAXISTREAM_CONFIG` | path of the file itself |
//! | `TAXISTREAM_POSTGRES_URL` | the URL otherwise read from `postgres.urlFile` |
//! | `TAXISTREAM_KAFKA_BOOTSTRAP` | `kafka.bootstrapServers` |
//! | `TAXISTREAM_TOPIC_TRIPS`, `_AGGREGATES`, `_DEAD_LETTERS` | `topics.*` |
//! | `TAXISTREAM_CASSANDRA_CONTACT_POINTS` | `cassandra.contactPoints` (comma-separated) |
//! | `TAXISTREAM_METRICS_PORT` | `metricsPort` |
//! | `TAXISTREAM_KAFKA_PROPERTIES` | extra librdkafka properties, `key=value,…`, applied last |
//!
//! Secret values are wrapped in [`Secret`], whose `Debug` and `Display` never
//! show them, so logging a config or an error cannot leak a password.

use std::fmt;
use std::path::{Path, PathBuf};

pub use taxistream_crds::worker_config::{CONFIG_PATH, WorkerConfig};

/// Errors loading the configuration; they name the file or variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("reading secret file {path}: {source}")]
    Secret {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("environment variable {name}: {detail}")]
    Env { name: &'static str, detail: String },
}

/// A secret value (password, URL with credentials). Shown as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for handing to a client library.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads a mounted Secret key, trimming the trailing newline editors and
    /// `kubectl create secret --from-file` leave behind.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let raw = std::fs::read_to_string(path).map_err(|source| ConfigError::Secret {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self(raw.trim_end_matches(['\r', '\n']).to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The loaded configuration of one stage process.
#[derive(Debug, Clone)]
pub struct StageConfig {
    pub worker: WorkerConfig,
    /// Where it came from, for error messages.
    pub path: PathBuf,
    postgres_url_override: Option<Secret>,
}

fn env(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl StageConfig {
    /// Loads `path` (or `TAXISTREAM_CONFIG`, or [`CONFIG_PATH`]) and applies
    /// the environment overrides.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let path = path
            .map(Path::to_owned)
            .or_else(|| env("TAXISTREAM_CONFIG").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(CONFIG_PATH));
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let worker: WorkerConfig =
            serde_yaml::from_str(&text).map_err(|source| ConfigError::Parse {
                path: path.clone(),
                source,
            })?;
        let mut cfg = Self {
            worker,
            path,
            postgres_url_override: None,
        };
        cfg.apply_env()?;
        Ok(cfg)
    }

    fn apply_env(&mut self) -> Result<(), ConfigError> {
        let w = &mut self.worker;
        if let Some(v) = env("TAXISTREAM_KAFKA_BOOTSTRAP") {
            w.kafka.bootstrap_servers = v;
        }
        if let Some(v) = env("TAXISTREAM_TOPIC_TRIPS") {
            w.topics.trips = v;
        }
        if let Some(v) = env("TAXISTREAM_TOPIC_AGGREGATES") {
            w.topics.aggregates = v;
        }
        if let Some(v) = env("TAXISTREAM_TOPIC_DEAD_LETTERS") {
            w.topics.dead_letters = v;
        }
        if let Some(v) = env("TAXISTREAM_CASSANDRA_CONTACT_POINTS") {
            w.cassandra.contact_points = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(v) = env("TAXISTREAM_METRICS_PORT") {
            w.metrics_port = v.parse().map_err(|e| ConfigError::Env {
                name: "TAXISTREAM_METRICS_PORT",
                detail: format!("{v:?}: {e}"),
            })?;
        }
        self.postgres_url_override = env("TAXISTREAM_POSTGRES_URL").map(Secret::new);
        Ok(())
    }

    /// The PostgreSQL URL, from the environment or the mounted secret file.
    pub fn postgres_url(&self) -> Result<Secret, ConfigError> {
        match &self.postgres_url_override {
            Some(url) => Ok(url.clone()),
            None => Secret::from_file(Path::new(&self.worker.postgres.url_file)),
        }
    }

    /// Consumer group id of `stage`, unique per pipeline.
    pub fn group_id(&self, stage: &str) -> String {
        format!(
            "taxistream.{}.{stage}",
            self.worker.pipeline.replace('/', ".")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_the_rendered_file_and_reads_secrets_from_their_files() {
        let dir = std::env::temp_dir().join(format!("taxistream-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url_file = dir.join("url");
        std::fs::write(&url_file, "postgres://u:p@db:5432/x\n").unwrap();
        let path = dir.join("worker.yaml");
        std::fs::write(
            &path,
            format!(
                "pipeline: ns/taxi\n\
                 source: {{dataset: yellow, inputs: [a.parquet]}}\n\
                 postgres: {{urlFile: {}, schema: public, table: trips, sslMode: verify-full}}\n\
                 kafka: {{bootstrapServers: 'k:9092'}}\n\
                 topics: {{trips: t, aggregates: a, deadLetters: d}}\n\
                 aggregation: {{windowSeconds: 300, slideSeconds: 300, allowedLatenessSeconds: 600, groupBy: pickupZone}}\n\
                 cassandra: {{contactPoints: [c], localDatacenter: dc1, keyspace: k, table: t, ttlSeconds: 0, consistency: LOCAL_QUORUM}}\n",
                url_file.display()
            ),
        )
        .unwrap();
        let cfg = StageConfig::load(Some(&path)).unwrap();
        assert_eq!(cfg.worker.metrics_port, 9090);
        assert_eq!(cfg.group_id("aggregate"), "taxistream.ns.taxi.aggregate");
        assert_eq!(
            cfg.postgres_url().unwrap().expose(),
            "postgres://u:p@db:5432/x"
        );
        let missing = StageConfig::load(Some(&dir.join("nope.yaml"))).unwrap_err();
        assert!(missing.to_string().contains("nope.yaml"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("postgres://u:hunter2@db/x");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
        assert_eq!(s.expose(), "postgres://u:hunter2@db/x");
    }
}
