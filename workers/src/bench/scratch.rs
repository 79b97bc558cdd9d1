//! The benchmark's own corner of the shared services: one PostgreSQL schema,
//! a set of topics and (with Cassandra) a keyspace per pipeline it runs,
//! named after the run so that nothing it touches belongs to anyone else,
//! and all of it dropped again at the end.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use sqlx::AssertSqlSafe;
use taxistream_crds::results_table;
use taxistream_crds::sink::ClusteringOrder;

use super::BenchError;
use crate::io::kafka::KafkaSettings;

/// Where the services are.
#[derive(Debug, Clone)]
pub struct Services {
    pub database_url: String,
    pub kafka_bootstrap: String,
    pub cassandra: Option<CassandraAt>,
}

#[derive(Debug, Clone)]
pub struct CassandraAt {
    pub contact_points: Vec<String>,
    pub local_datacenter: String,
}

/// The topics of one pipeline.
#[derive(Debug, Clone)]
pub struct Topics {
    pub trips: String,
    pub aggregates: String,
    pub dead_letters: String,
    /// For the broker's raw produce rate.
    pub raw: String,
}

/// One pipeline's schema, topics, keyspace and worker configuration file.
pub struct Pipeline {
    pub name: String,
    pub topics: Topics,
    pub config: PathBuf,
    /// `keyspace.table` of the results, with Cassandra.
    pub results_table: Option<(String, String)>,
}

const RESULTS_TABLE: &str = "window_results";

impl Pipeline {
    /// Writes the worker configuration of pipeline `name` into `dir`.
    pub fn new(services: &Services, dir: &Path, name: &str) -> Result<Self, BenchError> {
        let io = |what, path: &Path| {
            let path = path.to_owned();
            move |source| BenchError::Io { what, path, source }
        };
        let url_file = dir.join(format!("{name}.pg-url"));
        std::fs::write(&url_file, format!("{}\n", services.database_url))
            .map_err(io("writing the PostgreSQL URL", &url_file))?;
        let topics = Topics {
            trips: format!("{name}.trips"),
            aggregates: format!("{name}.aggregates"),
            dead_letters: format!("{name}.dlq"),
            raw: format!("{name}.raw"),
        };
        let (points, dc) = match &services.cassandra {
            Some(c) => (c.contact_points.join(", "), c.local_datacenter.clone()),
            None => (String::new(), "datacenter1".to_owned()),
        };
        let config = dir.join(format!("{name}.yaml"));
        let yaml = format!(
            "pipeline: bench/{name}\n\
             source: {{dataset: yellow, inputs: []}}\n\
             postgres: {{urlFile: {url}, schema: {name}, table: trips, sslMode: disable}}\n\
             kafka: {{bootstrapServers: \"{kafka}\"}}\n\
             topics: {{trips: {trips}, aggregates: {aggregates}, deadLetters: {dlq}}}\n\
             aggregation: {{windowSeconds: 300, slideSeconds: 300, allowedLatenessSeconds: 600, groupBy: pickupZone}}\n\
             cassandra: {{contactPoints: [{points}], localDatacenter: {dc}, keyspace: {name}, table: {RESULTS_TABLE}, ttlSeconds: 0, consistency: LOCAL_ONE}}\n\
             metricsPort: 0\n",
            url = url_file.display(),
            kafka = services.kafka_bootstrap,
            trips = topics.trips,
            aggregates = topics.aggregates,
            dlq = topics.dead_letters,
        );
        std::fs::write(&config, yaml).map_err(io("writing the worker configuration", &config))?;
        Ok(Self {
            name: name.to_owned(),
            topics,
            config,
            results_table: services
                .cassandra
                .as_ref()
                .map(|_| (name.to_owned(), RESULTS_TABLE.to_owned())),
        })
    }

    /// Creates the topics (trips with `partitions` partitions) and, with
    /// Cassandra, the keyspace and results table, as the operator would.
    pub async fn create(
        &self,
        kafka: &KafkaSettings,
        cassandra: Option<&Session>,
        partitions: i32,
    ) -> Result<(), BenchError> {
        kafka
            .ensure_topics(&[&self.topics.trips, &self.topics.raw], partitions, 1)
            .await?;
        kafka
            .ensure_topics(&[&self.topics.aggregates, &self.topics.dead_letters], 1, 1)
            .await?;
        if let (Some(session), Some((ks, table))) = (cassandra, &self.results_table) {
            cql(
                session,
                format!(
                    "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = \
                     {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
                ),
            )
            .await?;
            cql(
                session,
                results_table::create_table(ks, table, ClusteringOrder::default(), 0),
            )
            .await?;
        }
        Ok(())
    }

    /// The number of trips landed in the schema.
    pub async fn landed(&self, pg: &sqlx::PgPool) -> Result<u64, BenchError> {
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            // The name is the run's own, made of [a-z0-9_].
            "SELECT count(*) FROM {}.trips",
            self.name
        )))
        .fetch_one(pg)
        .await
        .map_err(|e| BenchError::Postgres(e.to_string()))?;
        Ok(n.max(0) as u64)
    }

    /// Drops everything [`Pipeline::create`] and the stages made; each step
    /// is tried whatever the others did, and the failures are returned.
    pub async fn drop_all(
        &self,
        pg: &sqlx::PgPool,
        kafka: &KafkaSettings,
        cassandra: Option<&Session>,
    ) -> Vec<String> {
        let mut failures = Vec::new();
        if let Err(e) = sqlx::query(AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            self.name
        )))
        .execute(pg)
        .await
        {
            failures.push(format!("dropping schema {}: {e}", self.name));
        }
        let topics = [
            self.topics.trips.as_str(),
            self.topics.aggregates.as_str(),
            self.topics.dead_letters.as_str(),
            self.topics.raw.as_str(),
        ];
        if let Err(e) = delete_topics(kafka, &topics).await {
            failures.push(e.to_string());
        }
        if let (Some(session), Some((ks, _))) = (cassandra, &self.results_table)
            && let Err(e) = cql(session, format!("DROP KEYSPACE IF EXISTS {ks}")).await
        {
            failures.push(e.to_string());
        }
        failures
    }
}

/// Deletes topics; one that is already gone is not an error.
pub async fn delete_topics(kafka: &KafkaSettings, topics: &[&str]) -> Result<(), BenchError> {
    let admin: AdminClient<DefaultClientContext> = kafka
        .client_config()
        .create()
        .map_err(|e| BenchError::Kafka(e.to_string()))?;
    let results = admin
        .delete_topics(
            topics,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .map_err(|e| BenchError::Kafka(format!("deleting topics: {e}")))?;
    let failed: Vec<String> = results
        .into_iter()
        .filter_map(|r| match r {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition)) => None,
            Err((topic, code)) => Some(format!("{topic}: {code}")),
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(BenchError::Kafka(format!(
            "deleting topics: {}",
            failed.join(", ")
        )))
    }
}

/// A session for the benchmark's DDL and read-backs.
pub async fn cassandra_session(at: &CassandraAt) -> Result<Session, BenchError> {
    SessionBuilder::new()
        .known_nodes(&at.contact_points)
        .build()
        .await
        .map_err(|e| {
            BenchError::Cassandra(format!(
                "connecting to {}: {e}",
                at.contact_points.join(",")
            ))
        })
}

pub async fn cql(session: &Session, statement: String) -> Result<(), BenchError> {
    session
        .query_unpaged(statement.clone(), ())
        .await
        .map(|_| ())
        .map_err(|e| BenchError::Cassandra(format!("{statement}: {e}")))
}
