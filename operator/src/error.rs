//! The operator's one error type.

use std::time::Duration;

/// Everything that can fail while reconciling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    #[error("finalizer of {object}: {source}")]
    Finalizer {
        object: String,
        #[source]
        source: Box<kube::runtime::finalizer::Error<Error>>,
    },

    #[error("{0} has no {1}")]
    MissingField(String, &'static str),

    #[error("encoding {what}: {source}")]
    Encode {
        what: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("reading {what}: {source}")]
    Decode {
        what: String,
        #[source]
        source: kube::core::dynamic::ParseDynamicObjectError,
    },

    #[error("rendering the worker configuration of {pipeline}: {source}")]
    RenderConfig {
        pipeline: String,
        #[source]
        source: serde_yaml::Error,
    },

    #[error("issuing a certificate for {pipeline}: {source}")]
    Certificate {
        pipeline: String,
        #[source]
        source: rcgen::Error,
    },

    #[error("Secret {namespace}/{name}: {problem}")]
    Secret {
        namespace: String,
        name: String,
        problem: String,
    },

    #[error("Kafka topic {topic}: {source}")]
    Kafka {
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },

    #[error("Kafka topic {topic}: {message}")]
    KafkaTopic { topic: String, message: String },

    #[error("Cassandra {keyspace}: {message}")]
    Cassandra { keyspace: String, message: String },
}

impl Error {
    /// A short, bounded label for the failures metric. Every reconcile runs
    /// inside `finalizer()`, so its wrapper is looked through: the label
    /// names what actually failed.
    pub fn metric_label(&self) -> &'static str {
        use kube::runtime::finalizer::Error as Finalizer;
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer { source, .. } => match source.as_ref() {
                Finalizer::ApplyFailed(inner) | Finalizer::CleanupFailed(inner) => {
                    inner.metric_label()
                }
                Finalizer::AddFinalizer(_) | Finalizer::RemoveFinalizer(_) => "kube",
                _ => "finalizer",
            },
            Error::MissingField(..) => "missing_field",
            Error::Encode { .. } => "encode",
            Error::Decode { .. } => "decode",
            Error::RenderConfig { .. } => "render_config",
            Error::Certificate { .. } => "certificate",
            Error::Secret { .. } => "secret",
            Error::Kafka { .. } | Error::KafkaTopic { .. } => "kafka",
            Error::Cassandra { .. } => "cassandra",
        }
    }

    /// Wraps a finalizer error with the object it concerns.
    pub fn finalizer(object: String, source: kube::runtime::finalizer::Error<Error>) -> Self {
        Error::Finalizer {
            object,
            source: Box::new(source),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Requeue delay after the `failures`-th consecutive failure of one object:
/// 5 s doubling up to 5 minutes, so a broker outage is retried without a hot loop.
pub fn backoff(failures: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << failures.min(6));
    Duration::from_secs(secs.min(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_label_names_the_error_inside_the_finalizer() {
        use kube::runtime::finalizer::Error as Finalizer;
        let secret = Error::Secret {
            namespace: "taxi".into(),
            name: "kafka-user".into(),
            problem: "not found".into(),
        };
        let wrapped = Error::finalizer(
            "KafkaTopic taxi/trips".into(),
            Finalizer::ApplyFailed(secret),
        );
        assert_eq!(wrapped.metric_label(), "secret");
        let cassandra = Error::Cassandra {
            keyspace: "ks".into(),
            message: "down".into(),
        };
        let wrapped = Error::finalizer(
            "CassandraSink taxi/r".into(),
            Finalizer::CleanupFailed(cassandra),
        );
        assert_eq!(wrapped.metric_label(), "cassandra");
        let wrapped = Error::finalizer("x".into(), Finalizer::UnnamedObject);
        assert_eq!(wrapped.metric_label(), "finalizer");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0), Duration::from_secs(5));
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(3), Duration::from_secs(40));
        assert_eq!(backoff(6), Duration::from_secs(300));
        assert_eq!(backoff(60), Duration::from_secs(300));
    }
}
