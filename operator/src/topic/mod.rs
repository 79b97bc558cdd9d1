//! The KafkaTopic controller: the topic on the broker follows the spec.

pub mod admin;
pub mod plan;
pub mod reconcile;

use std::sync::Arc;

use futures::{Future, StreamExt};
use kube::runtime::{Controller, watcher};
use taxistream_crds::KafkaTopic;

use crate::api_for;
use crate::context::Context;

pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let api = api_for::<KafkaTopic>(&ctx.client, namespace.as_deref());
    Controller::new(api, watcher::Config::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(topic = %obj, "reconciled"),
                Err(error) => tracing::warn!(%error, "topic reconcile failed"),
            }
        })
        .await;
}

#[cfg(test)]
mod broker_tests;
#[cfg(test)]
mod flow_tests;
