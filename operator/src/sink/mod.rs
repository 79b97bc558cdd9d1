//! The CassandraSink controller: keyspace and results table follow the spec.

pub mod reconcile;
pub mod schema;
pub mod session;

use std::sync::Arc;

use futures::Future;
use taxistream_crds::{CassandraSink, CassandraSinkStatus};

use crate::context::Context;
use crate::controller::{self, Reconciled};

impl Reconciled for CassandraSink {
    const CONTROLLER: &'static str = "sink";
    const FINALIZER: &'static str = reconcile::FINALIZER;
    type Status = CassandraSinkStatus;
    fn status(&self) -> Option<&CassandraSinkStatus> {
        self.status.as_ref()
    }
}

pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    controller::run_alone::<CassandraSink, _, _>(ctx, namespace, shutdown, reconcile::reconcile)
        .await;
}

#[cfg(test)]
mod cassandra_tests;
