//! Kafka clients of the stages: connection settings (TLS and SASL from
//! mounted files), the idempotent producer, consumer groups with rebalance
//! notifications, dead-letter publishing and topic creation.
//!
//! Only standard protocol features are used (no transactions, no reliance on
//! broker-side topic auto-creation), so the same code runs against Apache
//! Kafka, Redpanda and the tansu broker the tests use.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use taxistream_crds::worker_config::{KafkaConfig, SaslConfig, TlsFiles};

use crate::config::{ConfigError, Secret};
use crate::dead_letter::Reason;
use crate::metrics::Metrics;

/// Errors of the Kafka layer, naming the topic where there is one.
#[derive(Debug, thiserror::Error)]
pub enum KafkaIoError {
    #[error("creating Kafka client: {0}")]
    Client(#[source] KafkaError),
    #[error("{what} on topic {topic}: {source}")]
    Topic {
        what: &'static str,
        topic: String,
        source: KafkaError,
    },
    #[error("Kafka: {what}: {source}")]
    Op {
        what: &'static str,
        source: KafkaError,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("unsupported SASL mechanism {0:?} (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)")]
    SaslMechanism(String),
    #[error("{what} on topic {topic}: producer dropped before delivery")]
    Dropped { what: &'static str, topic: String },
    #[error("{topic} has no partitions (does it exist?)")]
    NoPartitions { topic: String },
    #[error("reading metadata of {topic}: {detail}")]
    Metadata { topic: String, detail: String },
}

/// Connection settings shared by every client of a process.
#[derive(Clone, Debug)]
pub struct KafkaSettings {
    pub bootstrap: String,
    pub tls: Option<TlsFiles>,
    sasl: Option<(String, Secret, Secret)>,
    /// `earliest` or `latest` for groups without committed offsets.
    pub auto_offset_reset: String,
    /// librdkafka properties applied last, over the defaults here
    /// (`TAXISTREAM_KAFKA_PROPERTIES`).
    pub extra: Vec<(String, String)>,
}

/// Parses `key=value,key=value` (librdkafka property names).
pub fn parse_properties(s: &str) -> Result<Vec<(String, String)>, ConfigError> {
    s.split(',')
        .map(str::trim)
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .ok_or_else(|| ConfigError::Env {
                    name: "TAXISTREAM_KAFKA_PROPERTIES",
                    // Only the key: values may be credentials.
                    detail: format!("{:?} is not key=value", kv.split('=').next().unwrap_or("")),
                })
        })
        .collect()
}

impl KafkaSettings {
    /// Plain-text connection to `bootstrap`.
    pub fn plain(bootstrap: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            tls: None,
            sasl: None,
            auto_offset_reset: "earliest".into(),
            extra: Vec::new(),
        }
    }

    /// From the worker configuration; reads the SASL credential files.
    pub fn from_config(cfg: &KafkaConfig) -> Result<Self, KafkaIoError> {
        let sasl = match &cfg.sasl {
            None => None,
            Some(SaslConfig {
                mechanism,
                username_file,
                password_file,
            }) => {
                if !matches!(
                    mechanism.as_str(),
                    "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512"
                ) {
                    return Err(KafkaIoError::SaslMechanism(mechanism.clone()));
                }
                Some((
                    mechanism.clone(),
                    Secret::from_file(Path::new(username_file))?,
                    Secret::from_file(Path::new(password_file))?,
                ))
            }
        };
        Ok(Self {
            bootstrap: cfg.bootstrap_servers.clone(),
            tls: cfg.tls.clone(),
            sasl,
            // The first start of a pipeline must see the whole history of the
            // trips topic; afterwards committed offsets take over.
            auto_offset_reset: "earliest".into(),
            extra: match std::env::var("TAXISTREAM_KAFKA_PROPERTIES") {
                Ok(v) => parse_properties(&v)?,
                Err(_) => Vec::new(),
            },
        })
    }

    fn apply_extra(&self, c: &mut ClientConfig) {
        for (k, v) in &self.extra {
            c.set(k, v);
        }
    }

    /// The librdkafka properties common to every client.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        let protocol = match (&self.tls, &self.sasl) {
            (None, None) => "plaintext",
            (Some(_), None) => "ssl",
            (None, Some(_)) => "sasl_plaintext",
            (Some(_), Some(_)) => "sasl_ssl",
        };
        c.set("security.protocol", protocol);
        if let Some(tls) = &self.tls {
            if let Some(ca) = &tls.ca_file {
                c.set("ssl.ca.location", ca);
            }
            if let Some(cert) = &tls.cert_file {
                c.set("ssl.certificate.location", cert);
            }
            if let Some(key) = &tls.key_file {
                c.set("ssl.key.location", key);
            }
            c.set("ssl.endpoint.identification.algorithm", "https");
        }
        if let Some((mechanism, user, password)) = &self.sasl {
            c.set("sasl.mechanisms", mechanism);
            c.set("sasl.username", user.expose());
            c.set("sasl.password", password.expose());
        }
        c
    }

    /// The idempotent producer: `acks=all`, ordered retries, zstd batches.
    /// Keys are placed with murmur2 like the Java client, so other producers
    /// of the same keys land on the same partitions.
    pub fn producer(&self) -> Result<FutureProducer, KafkaIoError> {
        self.producer_lingering(Duration::from_millis(20))
    }

    /// As [`KafkaSettings::producer`], waiting at most `linger` for more
    /// messages before sending a batch. A stage that enqueues a whole round
    /// and then waits for its acknowledgements (the relay) gains nothing
    /// from lingering: every round would spend the linger idle.
    pub fn producer_lingering(&self, linger: Duration) -> Result<FutureProducer, KafkaIoError> {
        let mut c = self.client_config();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "zstd")
            .set("linger.ms", linger.as_millis().to_string())
            .set("batch.size", "1000000")
            .set("queue.buffering.max.messages", "1000000")
            .set("message.timeout.ms", "120000")
            .set("partitioner", "murmur2_random");
        self.apply_extra(&mut c);
        c.create().map_err(KafkaIoError::Client)
    }

    /// A consumer in `group` that commits only when told to.
    pub fn consumer<C: ConsumerContext + 'static>(
        &self,
        group: &str,
        context: C,
    ) -> Result<StreamConsumer<C>, KafkaIoError> {
        let mut c = self.client_config();
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", &self.auto_offset_reset)
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("statistics.interval.ms", "5000")
            .set("enable.partition.eof", "false");
        // Static membership (KIP-345): a pod restarted in place (crash,
        // OOM kill) takes its partitions back without a group rebalance.
        if let Some(pod) = std::env::var("POD_NAME").ok().filter(|p| !p.is_empty()) {
            c.set("group.instance.id", format!("{pod}.{group}"));
        }
        self.apply_extra(&mut c);
        c.create_with_context(context).map_err(KafkaIoError::Client)
    }

    /// Creates the topics that do not exist yet, each with `partitions`
    /// partitions and replication factor `replication`. The operator owns
    /// topics in a cluster; the tests, the demo and the benchmark use this.
    pub async fn ensure_topics(
        &self,
        topics: &[&str],
        partitions: i32,
        replication: i32,
    ) -> Result<(), KafkaIoError> {
        let admin: AdminClient<DefaultClientContext> = self
            .client_config()
            .create()
            .map_err(KafkaIoError::Client)?;
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(replication)))
            .collect();
        let results = admin
            .create_topics(
                &new,
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .map_err(|source| KafkaIoError::Op {
                what: "create topics",
                source,
            })?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(KafkaIoError::Topic {
                        what: "create topic",
                        topic,
                        source: KafkaError::AdminOp(code),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Header keys of dead letters.
pub mod dlq {
    /// Why the record was rejected (`late`, `unknown_version`, `truncated`, `zone_out_of_range`, …).
    pub const REASON: &str = "taxistream-reason";
    /// Human-readable detail: the field, the value, the window.
    pub const DETAIL: &str = "taxistream-detail";
    /// Stage that rejected it.
    pub const STAGE: &str = "taxistream-stage";
    /// `topic/partition@offset` of the original message.
    pub const ORIGIN: &str = "taxistream-origin";
}

/// Headers of a dead-letter message.
pub fn dead_letter_headers(
    reason: Reason,
    detail: &str,
    stage: &str,
    origin: &str,
) -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header {
            key: dlq::REASON,
            value: Some(reason.as_str()),
        })
        .insert(Header {
            key: dlq::DETAIL,
            value: Some(detail),
        })
        .insert(Header {
            key: dlq::STAGE,
            value: Some(stage),
        })
        .insert(Header {
            key: dlq::ORIGIN,
            value: Some(origin),
        })
}

/// Headers carrying only the schema of the value.
pub fn schema_headers(schema: &str) -> OwnedHeaders {
    OwnedHeaders::new().insert(Header {
        key: super::codec::SCHEMA_HEADER,
        value: Some(schema),
    })
}

/// Hands `record` to the producer's queue without waiting for the broker:
/// the returned future resolves with its acknowledgement. Fails only when
/// the queue refuses it (full, or the topic unknown to the client).
pub fn enqueue(
    producer: &FutureProducer,
    record: FutureRecord<'_, [u8], [u8]>,
    what: &'static str,
) -> Result<DeliveryFuture, KafkaIoError> {
    let topic = record.topic;
    producer
        .send_result(record)
        .map_err(|(source, _)| KafkaIoError::Topic {
            what,
            topic: topic.to_owned(),
            source,
        })
}

/// Waits for the broker's answer to a record [`enqueue`]d on `topic`.
pub async fn delivered(
    delivery: DeliveryFuture,
    topic: &str,
    what: &'static str,
) -> Result<(), KafkaIoError> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((source, _))) => Err(KafkaIoError::Topic {
            what,
            topic: topic.to_owned(),
            source,
        }),
        Err(_) => Err(KafkaIoError::Dropped {
            what,
            topic: topic.to_owned(),
        }),
    }
}

/// Sends one record and waits for the broker's acknowledgement.
pub async fn send_acked(
    producer: &FutureProducer,
    topic: &str,
    key: Option<&[u8]>,
    value: &[u8],
    headers: OwnedHeaders,
) -> Result<(), KafkaIoError> {
    let mut rec = FutureRecord::<[u8], [u8]>::to(topic)
        .payload(value)
        .headers(headers);
    if let Some(k) = key {
        rec = rec.key(k);
    }
    producer
        .send(rec, Duration::from_secs(120))
        .await
        .map(|_| ())
        .map_err(|(source, _)| KafkaIoError::Topic {
            what: "produce",
            topic: topic.to_owned(),
            source,
        })
}

/// A topic's partition count as the broker reports it, for a producer that
/// places records by partition itself.
#[derive(Clone)]
pub struct TopicPartitions {
    producer: FutureProducer,
    topic: String,
}

impl TopicPartitions {
    pub fn new(producer: &FutureProducer, topic: &str) -> Self {
        Self {
            producer: producer.clone(),
            topic: topic.to_owned(),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partitions now, from a fresh metadata request.
    pub async fn count(&self) -> Result<i32, KafkaIoError> {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        // librdkafka's metadata call blocks.
        tokio::task::spawn_blocking(move || {
            let md = producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
                .map_err(|source| KafkaIoError::Topic {
                    what: "read metadata",
                    topic: topic.clone(),
                    source,
                })?;
            let n = md
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .map_or(0, |t| t.partitions().len() as i32);
            if n == 0 {
                return Err(KafkaIoError::NoPartitions { topic });
            }
            Ok(n)
        })
        .await
        .map_err(|e| KafkaIoError::Metadata {
            topic: self.topic.clone(),
            detail: e.to_string(),
        })?
    }
}

/// A partition assignment change, delivered to the stage loop in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    Assigned(Vec<(String, i32)>),
    Revoked(Vec<(String, i32)>),
}

/// Offsets a stage has made safe to commit; the rebalance callback commits
/// them synchronously before partitions move.
pub type CommitReady = Arc<Mutex<HashMap<(String, i32), i64>>>;

/// Consumer context of the stages: reports rebalances through a channel,
/// commits ready offsets before a revocation, and feeds the lag gauge from
/// librdkafka's statistics.
pub struct GroupContext {
    events: Mutex<mpsc::Sender<Assignment>>,
    pub ready: CommitReady,
    metrics: Metrics,
}

impl GroupContext {
    pub fn new(metrics: Metrics) -> (Self, mpsc::Receiver<Assignment>) {
        let (tx, rx) = mpsc::channel();
        (
            Self {
                events: Mutex::new(tx),
                ready: Arc::default(),
                metrics,
            },
            rx,
        )
    }

    fn send(&self, a: Assignment) {
        if let Ok(tx) = self.events.lock() {
            // The receiver only goes away when the stage is exiting.
            let _ = tx.send(a);
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

/// Commits `offsets` synchronously; used on revocation and shutdown.
pub fn commit_sync<X: ConsumerContext, C: Consumer<X>>(
    consumer: &C,
    offsets: &HashMap<(String, i32), i64>,
) -> Result<(), KafkaIoError> {
    commit(consumer, offsets, CommitMode::Sync)
}

/// Commits `offsets` without waiting for the broker.
pub fn commit_async<X: ConsumerContext, C: Consumer<X>>(
    consumer: &C,
    offsets: &HashMap<(String, i32), i64>,
) -> Result<(), KafkaIoError> {
    commit(consumer, offsets, CommitMode::Async)
}

fn commit<X: ConsumerContext, C: Consumer<X>>(
    consumer: &C,
    offsets: &HashMap<(String, i32), i64>,
    mode: CommitMode,
) -> Result<(), KafkaIoError> {
    if offsets.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in offsets {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .map_err(|source| KafkaIoError::Op {
                what: "build commit list",
                source,
            })?;
    }
    consumer
        .commit(&tpl, mode)
        .map_err(|source| KafkaIoError::Op {
            what: "commit offsets",
            source,
        })
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // librdkafka reports -1 for partitions it does not consume
                // and for the internal UA partition (-1).
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics.consumer_lag(topic, *partition, p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let revoked = partitions(tpl);
            let ready: HashMap<_, _> = match self.ready.lock() {
                Ok(mut ready) => revoked
                    .iter()
                    .filter_map(|k| ready.remove(k).map(|v| (k.clone(), v)))
                    .collect(),
                Err(_) => HashMap::new(),
            };
            if let Err(e) = commit_sync(consumer, &ready) {
                tracing::warn!(error = %e, "commit on revocation failed; the next owner replays from the previous commit");
            }
            self.send(Assignment::Revoked(revoked));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => self.send(Assignment::Assigned(partitions(tpl))),
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}
