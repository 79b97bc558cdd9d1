//! The TaxiPipeline controller: desired children, their application, status.

pub mod desired;
pub mod reconcile;
pub mod status;
pub mod validate;
pub mod watched;

use std::sync::Arc;

use futures::Future;
use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use taxistream_crds::{CassandraSink, KafkaTopic, TaxiPipeline, TaxiPipelineStatus};

use crate::api_for;
use crate::context::Context;
use crate::controller::{self, Reconciled, forget_managed_fields};

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
    let (deployments, writer) = reflector::store();
    let deployment_events = watcher(api_for::<Deployment>(&client, ns), owned)
        .default_backoff()
        .modify(forget_managed_fields)
        .reflect(writer)
        .touched_objects();
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
    ctx.register_watched(
        namespace.clone(),
        watched::Watched {
            topics,
            sinks,
            deployments,
        },
    );
    let with_watches = controller
        .owns_stream(deployment_events)
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
    controller::run(with_watches, ctx, shutdown, reconcile::reconcile).await;
}

#[cfg(test)]
mod flow_tests;
