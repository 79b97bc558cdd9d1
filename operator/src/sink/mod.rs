//! The CassandraSink controller: keyspace and results table follow the spec.

pub mod reconcile;
pub mod schema;
pub mod session;

use std::sync::Arc;

use futures::{Future, StreamExt};
use kube::runtime::{Controller, watcher};
use taxistream_crds::CassandraSink;

use crate::api_for;
use crate::context::Context;

pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let api = api_for::<CassandraSink>(&ctx.client, namespace.as_deref());
    Controller::new(api, watcher::Config::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(sink = %obj, "reconciled"),
                Err(error) => tracing::warn!(%error, "sink reconcile failed"),
            }
        })
        .await;
}

#[cfg(test)]
mod cassandra_tests;
