//! What the pipeline controller's watches already hold: the KafkaTopics and
//! CassandraSinks pipelines name, and the Deployments they own. A reconcile
//! reads these from memory instead of asking the API server again.

use std::sync::Arc;

use futures::FutureExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::reflector::{ObjectRef, Store};
use taxistream_crds::{CassandraSink, KafkaTopic};

/// The stores of one set of pipeline watches (one namespace, or all).
#[derive(Clone)]
pub struct Watched {
    pub topics: Store<KafkaTopic>,
    pub sinks: Store<CassandraSink>,
    /// Only the Deployments labelled as the operator's: one absent here may
    /// still exist (unlabelled, someone else's), so it is read from the API.
    pub deployments: Store<Deployment>,
}

impl Watched {
    /// Whether every store has received its first full list.
    pub fn ready(&self) -> bool {
        [
            self.topics.wait_until_ready().now_or_never(),
            self.sinks.wait_until_ready().now_or_never(),
            self.deployments.wait_until_ready().now_or_never(),
        ]
        .iter()
        .all(|r| matches!(r, Some(Ok(()))))
    }

    pub fn topic(&self, namespace: &str, name: &str) -> Option<KafkaTopic> {
        get(&self.topics, namespace, name)
    }

    pub fn sink(&self, namespace: &str, name: &str) -> Option<CassandraSink> {
        get(&self.sinks, namespace, name)
    }

    pub fn deployment(&self, namespace: &str, name: &str) -> Option<Deployment> {
        get(&self.deployments, namespace, name)
    }
}

fn get<K>(store: &Store<K>, namespace: &str, name: &str) -> Option<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .get(&ObjectRef::new(name).within(namespace))
        .map(|k| Arc::unwrap_or_clone(k))
}
