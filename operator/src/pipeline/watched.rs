//! What the pipeline controller's watches already hold, so that a settled
//! reconcile reads memory, not the API server: the KafkaTopics and
//! CassandraSinks pipelines name, every child the operator labels as its
//! own, and the metadata of every Secret (whether a referenced one exists).

use std::collections::HashMap;
use std::sync::Arc;

use futures::FutureExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DynamicObject, PartialObjectMeta};
use kube::core::ApiResource;
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::Value;
use taxistream_crds::{CassandraSink, KafkaTopic};

/// A child's kept fields as the store holds them: compact JSON text. A
/// `serde_json` map allocates a B-tree node of about 600 bytes per nesting
/// level however few its keys, so the few fields kept of a Deployment cost
/// five times their text as a `Value`, and 13,000 children made them most
/// of the operator's memory.
pub fn pack(kept: &Value) -> Value {
    Value::String(kept.to_string())
}

/// The fields [`pack`] kept, as a `Value` again.
fn unpack(data: Value) -> Value {
    match data {
        Value::String(text) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        other => other,
    }
}

/// What a store says about one object.
pub enum Lookup {
    Found(Box<DynamicObject>),
    /// Certainly absent.
    Absent,
    /// Not in the labelled store, yet an unlabelled object of that name
    /// (someone else's) may exist: only the API server can tell.
    Unknown,
}

/// The stores of one set of pipeline watches (one namespace, or all).
#[derive(Clone)]
pub struct Watched {
    pub topics: Store<KafkaTopic>,
    pub sinks: Store<CassandraSink>,
    /// The children labelled as the operator's, by kind (the TLS Secrets
    /// among them), trimmed to what a reconcile reads.
    pub children: HashMap<String, (ApiResource, Store<DynamicObject>)>,
    /// Metadata of every Secret.
    pub secrets: Store<PartialObjectMeta<Secret>>,
}

fn ready<K>(store: &Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    matches!(store.wait_until_ready().now_or_never(), Some(Ok(())))
}

impl Watched {
    /// Whether every store has received its first full list.
    pub fn ready(&self) -> bool {
        ready(&self.topics)
            && ready(&self.sinks)
            && ready(&self.secrets)
            && self.children.values().all(|(_, s)| ready(s))
    }

    pub fn topic(&self, namespace: &str, name: &str) -> Option<KafkaTopic> {
        typed(&self.topics, namespace, name)
    }

    pub fn sink(&self, namespace: &str, name: &str) -> Option<CassandraSink> {
        typed(&self.sinks, namespace, name)
    }

    /// Whether a Secret of that name exists (labelled or not).
    pub fn secret_exists(&self, namespace: &str, name: &str) -> bool {
        self.secrets
            .get(&ObjectRef::new(name).within(namespace))
            .is_some()
    }

    /// A child (or TLS Secret) of kind `resource`.
    pub fn child(&self, resource: &ApiResource, namespace: &str, name: &str) -> Lookup {
        let Some((ar, store)) = self.children.get(&resource.kind) else {
            return Lookup::Unknown;
        };
        let found = store
            .get(&ObjectRef::new_with(name, ar.clone()).within(namespace))
            .map(|o| {
                let mut obj = Arc::unwrap_or_clone(o);
                obj.data = unpack(std::mem::take(&mut obj.data));
                Box::new(obj)
            });
        match found {
            Some(obj) => Lookup::Found(obj),
            // Every Secret's metadata is watched: absent there is absent.
            None if resource.kind == "Secret" && !self.secret_exists(namespace, name) => {
                Lookup::Absent
            }
            None => Lookup::Unknown,
        }
    }
}

fn typed<K>(store: &Store<K>, namespace: &str, name: &str) -> Option<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .get(&ObjectRef::new(name).within(namespace))
        .map(Arc::unwrap_or_clone)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{pack, unpack};

    #[test]
    fn packed_fields_come_back_as_they_were() {
        let kept = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "sink", "image": "w:1", "args": ["sink", "--config", "/etc/w.yaml"]}
        ]}}}, "status": {"readyReplicas": 2}});
        let packed = pack(&kept);
        assert!(packed.is_string());
        assert_eq!(unpack(packed), kept);
        // An object that never went through `pack` is left alone.
        assert_eq!(unpack(kept.clone()), kept);
    }
}
