//! The Kafka AdminClient side of the KafkaTopic controller.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Client;
use rdkafka::ClientConfig;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use sha2::{Digest, Sha256};
use taxistream_crds::KafkaConnection;

use super::plan::BrokerTopic;
use crate::error::{Error, Result};
use crate::secrets::{read_key, read_optional};

const TIMEOUT: Duration = Duration::from_secs(15);

/// librdkafka settings for a connection, with TLS material and SASL
/// credentials read from the referenced Secrets and passed in memory.
pub async fn client_config(
    client: &Client,
    namespace: &str,
    conn: &KafkaConnection,
) -> Result<ClientConfig> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &conn.bootstrap_servers)
        .set("socket.timeout.ms", "10000")
        .set("client.id", "taxistream-operator");
    let protocol = match (&conn.tls, &conn.sasl) {
        (None, None) => "plaintext",
        (Some(_), None) => "ssl",
        (None, Some(_)) => "sasl_plaintext",
        (Some(_), Some(_)) => "sasl_ssl",
    };
    config.set("security.protocol", protocol);
    if let Some(tls) = &conn.tls {
        if let Some(ca) = read_optional(client, namespace, tls.ca_secret_ref.as_ref()).await? {
            config.set("ssl.ca.pem", ca);
        }
        if let Some(cert) = read_optional(client, namespace, tls.cert_secret_ref.as_ref()).await? {
            config.set("ssl.certificate.pem", cert);
        }
        if let Some(key) = read_optional(client, namespace, tls.key_secret_ref.as_ref()).await? {
            config.set("ssl.key.pem", key);
        }
    }
    if let Some(sasl) = &conn.sasl {
        config
            .set("sasl.mechanism", sasl.mechanism.as_kafka_str())
            .set(
                "sasl.username",
                read_key(client, namespace, &sasl.username_secret_ref).await?,
            )
            .set(
                "sasl.password",
                read_key(client, namespace, &sasl.password_secret_ref).await?,
            );
    }
    Ok(config)
}

/// What the KafkaTopic controller does to its topic on a broker; the
/// AdminClient below in production, a scripted broker in the flow tests.
pub(crate) trait TopicBroker {
    /// The topic as the broker sees it, or `None` when it does not exist.
    async fn describe(&self) -> Result<Option<BrokerTopic>>;
    /// Creates the topic; `false` when it already existed.
    async fn create(
        &self,
        partitions: i32,
        replication_factor: i32,
        config: &BTreeMap<String, String>,
    ) -> Result<bool>;
    async fn grow(&self, partitions: i32) -> Result<()>;
    async fn set_config(&self, config: &BTreeMap<String, String>) -> Result<()>;
    async fn delete(&self) -> Result<()>;
}

/// How long an AdminClient nobody asked for is kept (credentials rotated,
/// cluster no longer used).
const IDLE: Duration = Duration::from_secs(30 * 60);

type SharedAdmin = Arc<AdminClient<DefaultClientContext>>;

/// One AdminClient per cluster and credentials, shared by every KafkaTopic
/// on it: a client per reconcile meant a connection (and its TLS and SASL
/// handshakes) per topic per pass.
#[derive(Default)]
pub struct KafkaAdmins {
    clients: Mutex<HashMap<String, (SharedAdmin, Instant)>>,
}

impl KafkaAdmins {
    /// The shared client for `config`, bound to `topic`.
    pub fn admin(&self, config: &ClientConfig, topic: &str) -> Result<TopicAdmin> {
        // The key is a digest: the settings include Secret values.
        let entries = config.config_map();
        let key = hex(&Sha256::digest(format!("{entries:?}").as_bytes()));
        let now = Instant::now();
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.retain(|_, (_, used)| now.duration_since(*used) < IDLE);
        let admin = match clients.get_mut(&key) {
            Some((admin, used)) => {
                *used = now;
                admin.clone()
            }
            None => {
                let admin: SharedAdmin =
                    Arc::new(config.create().map_err(|source| Error::Kafka {
                        topic: topic.to_owned(),
                        source,
                    })?);
                clients.insert(key, (admin.clone(), now));
                admin
            }
        };
        Ok(TopicAdmin {
            admin,
            topic: topic.to_owned(),
        })
    }

    /// Clients currently kept.
    pub fn clients(&self) -> usize {
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An AdminClient bound to one topic name, for error context.
pub struct TopicAdmin {
    admin: Arc<AdminClient<DefaultClientContext>>,
    topic: String,
}

impl TopicAdmin {
    pub fn new(config: &ClientConfig, topic: &str) -> Result<Self> {
        let admin = config.create().map_err(|source| Error::Kafka {
            topic: topic.to_owned(),
            source,
        })?;
        Ok(Self {
            admin: Arc::new(admin),
            topic: topic.to_owned(),
        })
    }

    fn kafka(&self, source: rdkafka::error::KafkaError) -> Error {
        Error::Kafka {
            topic: self.topic.clone(),
            source,
        }
    }

    fn refused(&self, op: &str, code: RDKafkaErrorCode) -> Error {
        Error::KafkaTopic {
            topic: self.topic.clone(),
            message: format!("{op} refused by the broker: {code}"),
        }
    }

    fn options() -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(TIMEOUT))
            .operation_timeout(Some(TIMEOUT))
    }

    /// Topic-level overrides, or `None` when the broker described nothing.
    async fn describe_config(&self) -> Result<Option<BTreeMap<String, String>>> {
        let results = self
            .admin
            .describe_configs([&ResourceSpecifier::Topic(&self.topic)], &Self::options())
            .await
            .map_err(|e| self.kafka(e))?;
        let Some(result) = results.into_iter().next() else {
            return Ok(None);
        };
        let resource = result.map_err(|code| self.refused("DescribeConfigs", code))?;
        if resource.entries.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            resource
                .entries
                .into_iter()
                .filter(|e| e.source == ConfigSource::DynamicTopic)
                .filter_map(|e| e.value.map(|v| (e.name, v)))
                .collect(),
        ))
    }
}

impl TopicBroker for TopicAdmin {
    /// The topic as the broker sees it, or `None` when it does not exist.
    async fn describe(&self) -> Result<Option<BrokerTopic>> {
        let admin = self.admin.clone();
        // Metadata of all topics: asking for one by name could auto-create it
        // on brokers with auto.create.topics.enable.
        let metadata =
            tokio::task::spawn_blocking(move || admin.inner().fetch_metadata(None, TIMEOUT))
                .await
                .map_err(|e| Error::KafkaTopic {
                    topic: self.topic.clone(),
                    message: format!("metadata task failed: {e}"),
                })?
                .map_err(|e| self.kafka(e))?;
        let Some(topic) = metadata.topics().iter().find(|t| t.name() == self.topic) else {
            return Ok(None);
        };
        if let Some(err) = topic.error() {
            let code = RDKafkaErrorCode::from(err);
            if code == RDKafkaErrorCode::UnknownTopicOrPartition {
                return Ok(None);
            }
            return Err(self.refused("metadata", code));
        }
        let partitions = i32::try_from(topic.partitions().len()).unwrap_or(i32::MAX);
        let replication_factor = topic
            .partitions()
            .first()
            .map_or(0, |p| i32::try_from(p.replicas().len()).unwrap_or(i32::MAX));
        let config = self.describe_config().await?;
        Ok(Some(BrokerTopic {
            partitions,
            replication_factor,
            config,
        }))
    }

    async fn create(
        &self,
        partitions: i32,
        replication_factor: i32,
        config: &BTreeMap<String, String>,
    ) -> Result<bool> {
        let mut new = NewTopic::new(
            &self.topic,
            partitions,
            TopicReplication::Fixed(replication_factor),
        );
        for (k, v) in config {
            new = new.set(k, v);
        }
        let results = self
            .admin
            .create_topics([&new], &Self::options())
            .await
            .map_err(|e| self.kafka(e))?;
        let mut created = true;
        for r in results {
            match r {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => created = false,
                Err((_, code)) => return Err(self.refused("CreateTopics", code)),
            }
        }
        Ok(created)
    }

    async fn grow(&self, partitions: i32) -> Result<()> {
        let count = usize::try_from(partitions).unwrap_or(0);
        let results = self
            .admin
            .create_partitions([&NewPartitions::new(&self.topic, count)], &Self::options())
            .await
            .map_err(|e| self.kafka(e))?;
        for r in results {
            if let Err((_, code)) = r {
                return Err(self.refused("CreatePartitions", code));
            }
        }
        Ok(())
    }

    /// Sets the topic's overrides to exactly `config` (AlterConfigs replaces
    /// the whole set, so keys not in `config` return to the broker default).
    async fn set_config(&self, config: &BTreeMap<String, String>) -> Result<()> {
        let mut alter = AlterConfig::new(ResourceSpecifier::Topic(&self.topic));
        for (k, v) in config {
            alter = alter.set(k, v);
        }
        let results = self
            .admin
            .alter_configs([&alter], &Self::options())
            .await
            .map_err(|e| self.kafka(e))?;
        for r in results {
            if let Err((_, code)) = r {
                return Err(self.refused("AlterConfigs", code));
            }
        }
        Ok(())
    }

    async fn delete(&self) -> Result<()> {
        let results = self
            .admin
            .delete_topics(&[&self.topic], &Self::options())
            .await
            .map_err(|e| self.kafka(e))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((_, code)) => return Err(self.refused("DeleteTopics", code)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_on_one_cluster_share_one_client() {
        let admins = KafkaAdmins::default();
        let mut a = ClientConfig::new();
        a.set("bootstrap.servers", "127.0.0.1:9");
        let mut b = ClientConfig::new();
        b.set("bootstrap.servers", "127.0.0.2:9");
        admins.admin(&a, "trips").unwrap();
        admins.admin(&a, "aggregates").unwrap();
        assert_eq!(admins.clients(), 1);
        admins.admin(&b, "trips").unwrap();
        assert_eq!(admins.clients(), 2);
    }
}
