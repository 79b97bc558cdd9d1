//! The one error type of the backend stages (`ingest`, `relay`, `aggregate`,
//! `sink`). Each variant keeps the context its layer added: the file, row,
//! table, topic or statement involved.

use crate::config::ConfigError;
use crate::io::cassandra::CassandraError;
use crate::io::kafka::KafkaIoError;
use crate::io::postgres::PgError;

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Postgres(#[from] PgError),
    #[error(transparent)]
    Kafka(#[from] KafkaIoError),
    #[error(transparent)]
    Cassandra(#[from] CassandraError),
    #[error("window configuration: {0}")]
    Window(#[from] crate::window::WindowError),
    #[error("{what}: {detail}")]
    Other { what: &'static str, detail: String },
    #[error("probe server on port {port}: {source}")]
    Probe { port: u16, source: std::io::Error },
}

/// Sources that cannot fail ([`crate::source::feed::SourceFeed`] keeps a
/// failed source's error beside its rows instead).
impl From<std::convert::Infallible> for StageError {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}
