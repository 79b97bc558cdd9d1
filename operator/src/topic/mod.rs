//! The KafkaTopic controller: the topic on the broker follows the spec.

pub mod admin;
pub mod plan;
pub mod reconcile;

use std::sync::Arc;

use futures::Future;
use taxistream_crds::{KafkaTopic, KafkaTopicStatus};

use crate::api_for;
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
    let api = api_for::<KafkaTopic>(&ctx.client, namespace.as_deref());
    controller::run(
        controller::controller(api),
        ctx,
        shutdown,
        reconcile::reconcile,
    )
    .await;
}

#[cfg(test)]
mod broker_tests;
#[cfg(test)]
mod flow_tests;
