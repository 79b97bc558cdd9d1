//! Where a KafkaTopic meets the broker: create, grow, revert drift, report.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use taxistream_crds::conditions::{self, DEGRADED, READY, new_condition, set_condition};
use taxistream_crds::{DeletionPolicy, KafkaTopic, KafkaTopicStatus};

use super::admin::{TopicAdmin, TopicBroker, client_config};
use super::plan::{BrokerTopic, Plan, Step, plan};
use crate::conditions::{TOPIC_CREATING, degraded_unchecked, publish_transitions};
use crate::context::Context;
use crate::controller::{self, Reconciled, Removal};
use crate::error::{Error, Result};

pub const FINALIZER: &str = "taxistream.dev/topic";
const RESYNC: Duration = Duration::from_secs(300);

pub async fn reconcile(topic: Arc<KafkaTopic>, ctx: Arc<Context>) -> Result<Action> {
    let ctx = &*ctx;
    controller::reconcile(
        topic,
        ctx,
        |t| async move { apply(&t, ctx).await },
        |t| async move { cleanup(&t, ctx).await },
    )
    .await
}

/// What one pass against the broker did.
struct Outcome {
    broker: Option<BrokerTopic>,
    plan: Plan,
    /// One sentence per change made, for Events.
    changes: Vec<(&'static str, String)>,
    /// A create succeeded (or found the topic already there) but the
    /// brokers' metadata does not show it yet: progress, not a missing topic.
    creating: bool,
}

/// How often, and how far apart, the topic is described again after a
/// change until the broker's metadata reflects it: Apache Kafka answers
/// CreateTopics and CreatePartitions before every broker's metadata caught up.
const SETTLE_READS: u32 = 10;
const SETTLE_INTERVAL: Duration = Duration::from_millis(500);
/// Requeue after a pass whose change the broker did not show yet.
const PROGRESS_RECHECK: Duration = Duration::from_secs(2);

async fn admin_for(topic: &KafkaTopic, ctx: &Context) -> Result<TopicAdmin> {
    let namespace = topic.namespace().unwrap_or_default();
    let config = client_config(&ctx.client, &namespace, &topic.spec.cluster).await?;
    ctx.kafka.admin(&config, topic.topic_name())
}

async fn sync<B: TopicBroker>(topic: &KafkaTopic, ctx: &Context, admin: &B) -> Result<Outcome> {
    let name = topic.topic_name().to_owned();
    let spec = &topic.spec;
    let broker = admin.describe().await?;
    let plan = plan(&name, spec, broker.as_ref());
    let mut changes = Vec::new();
    let mut created = false;
    for step in &plan.steps {
        match step {
            Step::Create => {
                created = true;
                if !admin
                    .create(spec.partitions, spec.replication_factor, &spec.config)
                    .await?
                {
                    // Created by an earlier pass whose metadata read came too early.
                    continue;
                }
                changes.push((
                    "TopicCreated",
                    format!(
                        "created topic {name} with {} partitions and replication factor {}",
                        spec.partitions, spec.replication_factor
                    ),
                ));
            }
            Step::GrowPartitions(to) => {
                admin.grow(*to).await?;
                let from = broker.as_ref().map_or(0, |b| b.partitions);
                changes.push((
                    "PartitionsIncreased",
                    format!("grew topic {name} from {from} to {to} partitions"),
                ));
            }
            Step::SetConfig(drift) => {
                admin.set_config(&spec.config).await?;
                changes.push((
                    "ConfigReverted",
                    format!("reverted topic {name} to its spec: {}", drift.join("; ")),
                ));
            }
        }
        ctx.metrics.write(KafkaTopic::CONTROLLER);
    }
    if plan.steps.is_empty() {
        return Ok(Outcome {
            broker,
            plan,
            changes,
            creating: false,
        });
    }
    // Read again until the broker shows what was done (nothing left to do),
    // or give up for this pass and look again soon.
    let mut broker = admin.describe().await?;
    for _ in 1..SETTLE_READS {
        if super::plan::plan(&name, spec, broker.as_ref())
            .steps
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(SETTLE_INTERVAL).await;
        broker = admin.describe().await?;
    }
    let plan = super::plan::plan(&name, spec, broker.as_ref());
    Ok(Outcome {
        creating: created && broker.is_none(),
        broker,
        plan,
        changes,
    })
}

/// The status after a successful pass.
pub fn synced_status(
    topic: &KafkaTopic,
    broker: Option<&BrokerTopic>,
    problems: &[(&'static str, String)],
    creating: bool,
    now: Time,
) -> KafkaTopicStatus {
    let generation = topic.metadata.generation;
    let name = topic.topic_name();
    let mut status = topic.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    status.topic_name = Some(name.to_owned());
    status.partitions = broker.map(|b| b.partitions);
    status.replication_factor = broker.map(|b| b.replication_factor);
    status.config = broker.and_then(|b| b.config.clone()).unwrap_or_default();
    let ready = match (broker, problems.first()) {
        (None, _) if creating => new_condition(
            READY,
            false,
            TOPIC_CREATING,
            format!("topic {name} was created; waiting for the brokers' metadata to show it"),
            generation,
            now.clone(),
        ),
        (None, _) => new_condition(
            READY,
            false,
            "TopicMissing",
            format!("topic {name} does not exist on the broker yet"),
            generation,
            now.clone(),
        ),
        (Some(_), Some((reason, message))) => new_condition(
            READY,
            false,
            reason,
            message.clone(),
            generation,
            now.clone(),
        ),
        (Some(b), None) => {
            let mut message = format!(
                "topic {name} has {} partitions and replication factor {}",
                b.partitions, b.replication_factor
            );
            if b.config.is_none() {
                message.push_str(
                    "; the broker did not describe its configuration, so drift is not checked",
                );
            }
            new_condition(READY, true, "TopicReady", message, generation, now.clone())
        }
    };
    let degraded = match problems.first() {
        Some((reason, _)) => new_condition(
            DEGRADED,
            true,
            reason,
            problems
                .iter()
                .map(|(_, m)| m.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            generation,
            now,
        ),
        None => new_condition(
            DEGRADED,
            false,
            "AsExpected",
            "the topic matches its spec",
            generation,
            now,
        ),
    };
    set_condition(&mut status.conditions, ready);
    set_condition(&mut status.conditions, degraded);
    status
}

/// The status after a failed pass: Ready turns false with the error.
pub fn failed_status(topic: &KafkaTopic, error: &Error, now: Time) -> KafkaTopicStatus {
    let reason = match error {
        Error::Secret { .. } => "SecretUnavailable",
        Error::Kube(_) => "KubernetesError",
        _ => "KafkaError",
    };
    let mut status = topic.status.clone().unwrap_or_default();
    status.observed_generation = topic.metadata.generation;
    status.topic_name = Some(topic.topic_name().to_owned());
    set_condition(
        &mut status.conditions,
        new_condition(
            READY,
            false,
            reason,
            error.to_string(),
            topic.metadata.generation,
            now.clone(),
        ),
    );
    set_condition(
        &mut status.conditions,
        degraded_unchecked(
            &format!("topic {}", topic.topic_name()),
            topic.metadata.generation,
            now,
        ),
    );
    status
}

async fn apply(topic: &KafkaTopic, ctx: &Context) -> Result<Action> {
    match admin_for(topic, ctx).await {
        Ok(admin) => apply_with(topic, ctx, &admin).await,
        Err(error) => failed(topic, ctx, error).await,
    }
}

/// One pass against `admin`: sync, status, Events, and the next look.
pub(crate) async fn apply_with<B: TopicBroker>(
    topic: &KafkaTopic,
    ctx: &Context,
    admin: &B,
) -> Result<Action> {
    let outcome = match sync(topic, ctx, admin).await {
        Ok(outcome) => outcome,
        Err(error) => return failed(topic, ctx, error).await,
    };
    let now = Time(crate::context::now());
    let regarding = topic.object_ref(&());
    let old = conditions_of(topic);
    let status = synced_status(
        topic,
        outcome.broker.as_ref(),
        &outcome.plan.problems,
        outcome.creating,
        now,
    );
    controller::patch_status(ctx, topic, &status).await?;
    for (reason, note) in outcome.changes {
        ctx.event(&regarding, EventType::Normal, reason, "Reconcile", note)
            .await;
    }
    publish_transitions(ctx, &regarding, &old, &status.conditions).await;
    // A created topic or new partitions the metadata does not show yet are
    // looked at again soon, not at the next resync. A config the broker
    // still reports differently waits for the resync: reverting it again
    // every few seconds would only repeat the same AlterConfigs.
    let pending_growth = outcome
        .plan
        .steps
        .iter()
        .any(|s| matches!(s, Step::Create | Step::GrowPartitions(_)));
    if outcome.creating || pending_growth {
        Ok(Action::requeue(PROGRESS_RECHECK))
    } else {
        Ok(Action::requeue(RESYNC))
    }
}

fn conditions_of(topic: &KafkaTopic) -> Vec<conditions::Condition> {
    topic
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default()
}

/// Records a failed pass in the status and returns the error for backoff.
async fn failed(topic: &KafkaTopic, ctx: &Context, error: Error) -> Result<Action> {
    let status = failed_status(topic, &error, Time(crate::context::now()));
    controller::patch_status(ctx, topic, &status).await?;
    publish_transitions(
        ctx,
        &topic.object_ref(&()),
        &conditions_of(topic),
        &status.conditions,
    )
    .await;
    Err(error)
}

async fn cleanup(topic: &KafkaTopic, ctx: &Context) -> Result<Action> {
    let regarding = topic.object_ref(&());
    let name = topic.topic_name().to_owned();
    if topic.spec.deletion_policy != DeletionPolicy::Delete {
        ctx.event(
            &regarding,
            EventType::Normal,
            "TopicRetained",
            "Delete",
            format!("deletionPolicy is Retain: topic {name} stays on the broker"),
        )
        .await;
        return Ok(Action::await_change());
    }
    let result = async {
        admin_for(topic, ctx).await?.delete().await?;
        Ok(format!("deleted topic {name} from the broker"))
    }
    .await;
    let removal = Removal {
        what: &format!("topic {name}"),
        done: "TopicDeleted",
        never_created: "TopicNeverCreated",
        abandoned: "TopicDeleteAbandoned",
    };
    // A partition count is recorded once the broker showed the topic.
    let created = topic.status.as_ref().and_then(|s| s.partitions).is_some();
    controller::finish_removal(ctx, topic, removal, created, result).await
}
