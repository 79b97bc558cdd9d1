//! State shared by every reconciliation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;

use crate::error::backoff;
use crate::events::Publisher;
use crate::metrics::Metrics;
use crate::pipeline::watched::Watched;
use crate::topic::admin::KafkaAdmins;

/// The one field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "taxistream-operator";

/// After this long in deletion, an unreachable broker or cluster no longer
/// blocks a KafkaTopic or CassandraSink (and its namespace) from going away;
/// the external resource is left behind and a Warning Event says so.
pub const DELETE_GIVE_UP: k8s_openapi::jiff::SignedDuration =
    k8s_openapi::jiff::SignedDuration::from_mins(10);

/// Operator-wide settings from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Worker image used when a pipeline sets no `spec.image`.
    pub worker_image: String,
    /// This replica's identity (`--identity`): the Events' reporting instance.
    pub identity: String,
}

/// Handed to every reconcile and error policy.
pub struct Context {
    pub client: Client,
    pub events: Publisher,
    /// Kafka AdminClients, one per cluster and credentials.
    pub kafka: KafkaAdmins,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    /// Consecutive failures per object, for exponential requeue backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The pipeline watches' stores per scope (`None`: all namespaces).
    watched: Mutex<Vec<(Option<String>, Watched)>>,
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>, settings: Settings) -> Self {
        Self {
            events: Publisher::new(client.clone(), FIELD_MANAGER, &settings.identity),
            kafka: KafkaAdmins::default(),
            client,
            metrics,
            settings,
            failures: Mutex::new(HashMap::new()),
            watched: Mutex::new(Vec::new()),
        }
    }

    /// Publishes an Event about `regarding`. Events are best effort: a
    /// failure is logged and never fails the reconcile.
    pub async fn event(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        if let Err(error) = self
            .events
            .publish(regarding, type_, reason, action, note)
            .await
        {
            tracing::warn!(%error, reason, "could not publish event");
        }
    }

    /// Makes the stores of the pipeline watches of `scope` available to reconciles.
    pub fn register_watched(&self, scope: Option<String>, watched: Watched) {
        self.watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((scope, watched));
    }

    /// The stores covering `namespace`, once they hold a full list; `None`
    /// means read from the API server.
    pub fn watched(&self, namespace: &str) -> Option<Watched> {
        self.watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(scope, _)| scope.as_deref().is_none_or(|s| s == namespace))
            .map(|(_, w)| w.clone())
            .filter(Watched::ready)
    }

    /// Records one more failure of `key` and returns the requeue delay.
    pub fn failed<K: kube::Resource>(&self, obj: &ObjectRef<K>) -> std::time::Duration
    where
        K::DynamicType: Eq + std::hash::Hash,
    {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let count = failures.entry(obj.to_string()).or_insert(0);
        let delay = backoff(*count);
        *count = count.saturating_add(1);
        delay
    }

    /// Forgets the failures of `key` after a successful reconcile.
    pub fn succeeded<K: kube::Resource>(&self, obj: &ObjectRef<K>)
    where
        K::DynamicType: Eq + std::hash::Hash,
    {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(&obj.to_string());
    }
}

/// The current time in whole seconds: what `metav1.Time` keeps once
/// serialised, so a status computed now compares equal to the same status
/// read back from the API server.
pub fn now() -> k8s_openapi::jiff::Timestamp {
    let now = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_second(now.as_second()).unwrap_or(now)
}
