//! Types shared by more than one kind.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A CEL rule that holds when `self` is none of the whitespace-separated `words`.
pub(crate) fn not_one_of(words: &str) -> String {
    let quoted: Vec<String> = words.split_whitespace().map(|w| format!("'{w}'")).collect();
    format!("!(self in [{}])", quoted.join(", "))
}

/// A key in a Secret in the same namespace as the referring object.
///
/// Credentials and certificates are always referenced, never inlined, so they
/// never appear in a custom resource, a ConfigMap or a log line.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// What happens to the external resource when its custom resource is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Leave the topic, keyspace or table in place (the safe default: data outlives the object).
    #[default]
    Retain,
    /// Delete the external resource before the custom resource goes away.
    Delete,
}

/// How to reach a Kafka cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaConnection {
    /// Comma-separated `host:port` list of bootstrap brokers.
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^[^,\s]+(,[^,\s]+)*$"))]
    pub bootstrap_servers: String,
    /// TLS to the brokers. Absent means plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTls>,
    /// SASL authentication. Absent means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<KafkaSasl>,
}

/// TLS to a Kafka or Cassandra cluster; every file comes from a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.certSecretRef) == has(self.keySecretRef)").message("tls.certSecretRef and tls.keySecretRef must be set together"))]
pub struct ClientTls {
    /// CA bundle that signs the servers' certificates. Absent means the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
    /// Client certificate (PEM) for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_secret_ref: Option<SecretKeyRef>,
    /// Client private key (PEM) for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_secret_ref: Option<SecretKeyRef>,
}

impl ClientTls {
    /// Every Secret key the TLS settings reference.
    pub fn secret_refs(&self) -> impl Iterator<Item = &SecretKeyRef> {
        [
            &self.ca_secret_ref,
            &self.cert_secret_ref,
            &self.key_secret_ref,
        ]
        .into_iter()
        .flatten()
    }
}

/// SASL mechanism names as Kafka spells them.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[default]
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// The name librdkafka's `sasl.mechanism` expects.
    pub fn as_kafka_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// SASL credentials for Kafka.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSasl {
    /// The SASL mechanism.
    #[serde(default)]
    pub mechanism: SaslMechanism,
    /// Secret key holding the user name.
    pub username_secret_ref: SecretKeyRef,
    /// Secret key holding the password.
    pub password_secret_ref: SecretKeyRef,
}
