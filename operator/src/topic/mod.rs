//! The KafkaTopic controller: the topic on the broker follows the spec.

pub mod admin;
pub mod plan;
pub mod reconcile;

use std::sync::Arc;

use futures::Future;
use taxistream_crds::{KafkaTopic, KafkaTopicStatus};

use crate::context::Context;
use crate::controller::{self, Reconciled};

impl Reconciled for KafkaTopic {
    const CONTROLLER: &'static str = "topic";
    const FINALIZER: &'static str = reconcile::FINALIZER;
    type Status = KafkaTopicStatus;
    fn status(&self) -> Option<&KafkaTopicStatus> {
        self.status.as_ref()
    }
}

pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    controller::run_alone::<KafkaTopic, _, _>(ctx, namespace, shutdown, reconcile::reconcile).await;
}

#[cfg(test)]
mod broker_tests;
#[cfg(test)]
mod flow_tests;
