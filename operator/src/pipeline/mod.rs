//! The TaxiPipeline controller: desired children, their application, status.

pub mod desired;
pub mod reconcile;
pub mod status;
pub mod validate;
pub mod watched;

use std::collections::HashMap;
use std::sync::Arc;

use futures::{Future, Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use taxistream_crds::{CassandraSink, KafkaTopic, TaxiPipeline, TaxiPipelineStatus};

use crate::api_for;
use crate::context::Context;
use crate::controller::{self, Reconciled, forget_managed_fields, keep_identity};

impl Reconciled for TaxiPipeline {
    const CONTROLLER: &'static str = "pipeline";
    const FINALIZER: &'static str = reconcile::FINALIZER;
    type Status = TaxiPipelineStatus;
    fn status(&self) -> Option<&TaxiPipelineStatus> {
        self.status.as_ref()
    }
}

/// Runs the controller until `shutdown` resolves. Reconciles on changes to
/// pipelines, to the Deployments they own, and to the KafkaTopics and
/// CassandraSinks they name.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let ns = namespace.as_deref();
    let controller = controller::controller(api_for::<TaxiPipeline>(&client, ns));
    let store = controller.store();
    let topic_store = store.clone();
    let owned = watcher::Config::default().labels(&format!(
        "{}={}",
        desired::LABEL_MANAGED_BY,
        desired::MANAGED_BY
    ));
    // Each watch fills a store the reconciles read instead of the API server.
    let (topics, writer) = reflector::store();
    let topic_events = watcher(
        api_for::<KafkaTopic>(&client, ns),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(forget_managed_fields)
    .reflect(writer)
    .touched_objects();
    let (sinks, writer) = reflector::store();
    let sink_events = watcher(
        api_for::<CassandraSink>(&client, ns),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(forget_managed_fields)
    .reflect(writer)
    .touched_objects();
    // Every Secret's metadata: whether the Secrets a pipeline references
    // exist. Not a trigger: a pipeline missing one looks again every 30 s.
    let secrets_api = match ns {
        Some(ns) => Api::<PartialObjectMeta<Secret>>::namespaced(client.clone(), ns),
        None => Api::<PartialObjectMeta<Secret>>::all(client.clone()),
    };
    let (secrets, writer) = reflector::store();
    let secret_events = watcher(secrets_api, watcher::Config::default())
        .default_backoff()
        .modify(keep_identity)
        .reflect(writer)
        .touched_objects();

    let with_watches = controller
        .watches_stream(topic_events, move |topic: KafkaTopic| {
            let name = topic.metadata.name.clone().unwrap_or_default();
            let namespace = topic.metadata.namespace.clone();
            topic_store
                .state()
                .into_iter()
                .filter(|p| p.metadata.namespace == namespace)
                .filter(|p| {
                    let t = &p.spec.topics;
                    [&t.trips, &t.aggregates, &t.dead_letters].contains(&&name)
                })
                .map(|p| ObjectRef::from_obj(&*p))
                .collect::<Vec<_>>()
        })
        .watches_stream(sink_events, move |sink: CassandraSink| {
            let name = sink.metadata.name.clone().unwrap_or_default();
            let namespace = sink.metadata.namespace.clone();
            store
                .state()
                .into_iter()
                .filter(|p| p.metadata.namespace == namespace && p.spec.cassandra_sink == name)
                .map(|p| ObjectRef::from_obj(&*p))
                .collect::<Vec<_>>()
        });
    // The other children (and the TLS Secrets), labelled as ours: their
    // stores, and a reconcile of the owner when one changes.
    let mut children = HashMap::new();
    let mut with_children =
        with_watches.watches_stream(secret_events, |_| None::<ObjectRef<TaxiPipeline>>);
    for resource in desired::watched_kinds() {
        let api = match ns {
            Some(ns) => Api::<DynamicObject>::namespaced_with(client.clone(), ns, &resource),
            None => Api::<DynamicObject>::all_with(client.clone(), &resource),
        };
        let writer = reflector::store::Writer::new(resource.clone());
        let store = writer.as_reader();
        let kind = resource.kind.clone();
        let events = watcher(api, owned.clone())
            .default_backoff()
            .modify(move |obj: &mut DynamicObject| keep_compared(&kind, obj))
            .reflect(writer);
        // A Deployment's status is the pipeline's: every change of it counts.
        with_children = if resource.kind == "Deployment" {
            with_children.owns_stream_with(events.touched_objects(), resource.clone())
        } else {
            with_children.owns_stream_with(changed_or_deleted(events), resource.clone())
        };
        children.insert(resource.kind.clone(), (resource, store));
    }
    ctx.register_watched(
        namespace.clone(),
        watched::Watched {
            topics,
            sinks,
            children,
            secrets,
        },
    );
    controller::run(with_children, ctx, shutdown, reconcile::reconcile).await;
}

/// The objects of a child watch worth a reconcile: every deletion, and an
/// object whose generation changed (or that has none). The status updates of
/// HPAs and PDBs (every sync period) no longer wake their pipeline.
fn changed_or_deleted(
    events: impl Stream<Item = Result<watcher::Event<DynamicObject>, watcher::Error>> + Send + 'static,
) -> impl Stream<Item = Result<DynamicObject, watcher::Error>> + Send + 'static {
    let mut seen: HashMap<String, i64> = HashMap::new();
    events.filter_map(move |event| {
        let item = match event {
            Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => {
                let uid = obj.metadata.uid.clone().unwrap_or_default();
                match obj.metadata.generation {
                    Some(generation) if seen.insert(uid, generation) == Some(generation) => None,
                    _ => Some(Ok(obj)),
                }
            }
            Ok(watcher::Event::Delete(obj)) => {
                seen.remove(obj.metadata.uid.as_deref().unwrap_or_default());
                Some(Ok(obj))
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
            Err(error) => Some(Err(error)),
        };
        futures::future::ready(item)
    })
}

/// What a child store keeps: metadata (owner, applied hash) and the fields
/// compared for drift (for Deployments also selector, replicas and status);
/// the TLS Secrets whole, for their certificates. The body is kept packed
/// ([`watched::pack`]).
pub fn keep_compared(kind: &str, obj: &mut DynamicObject) {
    keep_identity(obj);
    if kind == "Secret" {
        obj.data = watched::pack(&obj.data);
        return;
    }
    let mut kept = desired::drift::compared_only(kind, &obj.data);
    if kind == "Deployment" {
        // What the stage status reads, and what a Deployment must have to parse.
        let containers = obj
            .data
            .pointer("/spec/template/spec/containers")
            .and_then(|c| c.as_array())
            .map_or(0, Vec::len);
        let names = (0..containers).map(|i| format!("/spec/template/spec/containers/{i}/name"));
        for pointer in [
            "/spec/selector".to_owned(),
            "/spec/replicas".to_owned(),
            "/status".to_owned(),
        ]
        .into_iter()
        .chain(names)
        {
            desired::drift::copy(&mut kept, &obj.data, &pointer);
        }
    }
    obj.data = watched::pack(&kept);
}

#[cfg(test)]
mod flow_tests;

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use kube::api::DynamicObject;
    use kube::runtime::watcher::Event;
    use serde_json::json;

    use super::changed_or_deleted;

    fn obj(uid: &str, generation: Option<i64>, rv: &str) -> DynamicObject {
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "X",
            "metadata": {"name": uid, "uid": uid, "generation": generation, "resourceVersion": rv}}))
        .unwrap()
    }

    #[tokio::test]
    async fn status_updates_of_children_wake_nothing_deletions_always_do() {
        let events = futures::stream::iter(vec![
            Ok(Event::Init),
            Ok(Event::InitApply(obj("hpa", Some(1), "1"))),
            Ok(Event::InitDone),
            Ok(Event::Apply(obj("hpa", Some(1), "2"))),
            Ok(Event::Apply(obj("hpa", Some(2), "3"))),
            Ok(Event::Apply(obj("cm", None, "4"))),
            Ok(Event::Apply(obj("cm", None, "5"))),
            Ok(Event::Delete(obj("hpa", Some(2), "6"))),
        ]);
        let passed: Vec<String> = changed_or_deleted(events)
            .map(|o| o.unwrap().metadata.resource_version.unwrap())
            .collect()
            .await;
        assert_eq!(passed, ["1", "3", "4", "5", "6"]);
    }
}
