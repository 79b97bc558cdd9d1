//! Where a KafkaTopic meets the broker: create, grow, revert drift, report.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;
use taxistream_crds::conditions::{self, DEGRADED, READY, new_condition, set_condition};
use taxistream_crds::{DeletionPolicy, KafkaTopic, KafkaTopicStatus};

use super::admin::{TopicAdmin, client_config};
use super::plan::{BrokerTopic, Plan, Step, plan};
use crate::context::{Context, DELETE_GIVE_UP, FIELD_MANAGER};
use crate::error::{Error, Result};

pub const FINALIZER: &str = "taxistream.dev/topic";
const CONTROLLER: &str = "topic";
const RESYNC: Duration = Duration::from_secs(300);

pub async fn reconcile(topic: Arc<KafkaTopic>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let namespace = topic.namespace().ok_or_else(|| {
        Error::MissingField(
            format!("KafkaTopic {}", topic.name_any()),
            "metadata.namespace",
        )
    })?;
    let object = format!("KafkaTopic {namespace}/{}", topic.name_any());
    let api: Api<KafkaTopic> = Api::namespaced(ctx.client.clone(), &namespace);
    let reference = ObjectRef::from_obj(&*topic);
    let action = finalizer(&api, FINALIZER, topic, |event| async {
        match event {
            Event::Apply(t) => apply(&t, &ctx).await,
            Event::Cleanup(t) => cleanup(&t, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::finalizer(object, e))?;
    ctx.succeeded(&reference);
    Ok(action)
}

pub fn error_policy(topic: Arc<KafkaTopic>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failure(CONTROLLER, error.metric_label());
    let delay = ctx.failed(&ObjectRef::from_obj(&*topic));
    tracing::warn!(topic = %topic.name_any(), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// What one pass against the broker did.
struct Outcome {
    broker: Option<BrokerTopic>,
    plan: Plan,
    /// One sentence per change made, for Events.
    changes: Vec<(&'static str, String)>,
}

async fn admin_for(topic: &KafkaTopic, ctx: &Context) -> Result<TopicAdmin> {
    let namespace = topic.namespace().unwrap_or_default();
    let config = client_config(&ctx.client, &namespace, &topic.spec.cluster).await?;
    TopicAdmin::new(&config, topic.topic_name())
}

async fn sync(topic: &KafkaTopic, ctx: &Context) -> Result<Outcome> {
    let name = topic.topic_name().to_owned();
    let spec = &topic.spec;
    let admin = admin_for(topic, ctx).await?;
    let broker = admin.describe().await?;
    let plan = plan(&name, spec, broker.as_ref());
    let mut changes = Vec::new();
    for step in &plan.steps {
        match step {
            Step::Create => {
                admin
                    .create(spec.partitions, spec.replication_factor, &spec.config)
                    .await?;
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
        ctx.metrics.write(CONTROLLER);
    }
    let broker = if changes.is_empty() {
        broker
    } else {
        admin.describe().await?
    };
    Ok(Outcome {
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
            now,
        ),
    );
    status
}

async fn patch_status(ctx: &Context, topic: &KafkaTopic, status: &KafkaTopicStatus) -> Result<()> {
    if topic.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api: Api<KafkaTopic> =
        Api::namespaced(ctx.client.clone(), &topic.namespace().unwrap_or_default());
    let body = json!({
        "apiVersion": KafkaTopic::api_version(&()),
        "kind": KafkaTopic::kind(&()),
        "status": status,
    });
    api.patch_status(
        &topic.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    ctx.metrics.write(CONTROLLER);
    Ok(())
}

async fn apply(topic: &KafkaTopic, ctx: &Context) -> Result<Action> {
    let now = Time(crate::context::now());
    let regarding = topic.object_ref(&());
    let old = topic
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    match sync(topic, ctx).await {
        Ok(outcome) => {
            let status = synced_status(topic, outcome.broker.as_ref(), &outcome.plan.problems, now);
            patch_status(ctx, topic, &status).await?;
            for (reason, note) in outcome.changes {
                ctx.event(&regarding, EventType::Normal, reason, "Reconcile", note)
                    .await;
            }
            publish_transitions(ctx, topic, &old, &status.conditions).await;
            Ok(Action::requeue(RESYNC))
        }
        Err(error) => {
            let status = failed_status(topic, &error, now);
            patch_status(ctx, topic, &status).await?;
            publish_transitions(ctx, topic, &old, &status.conditions).await;
            Err(error)
        }
    }
}

/// Warning Events when Ready turns false or Degraded true; Normal when they recover.
async fn publish_transitions(
    ctx: &Context,
    topic: &KafkaTopic,
    old: &[conditions::Condition],
    new: &[conditions::Condition],
) {
    let regarding = topic.object_ref(&());
    for c in new {
        let before = conditions::find(old, &c.type_);
        if before.is_some_and(|o| o.status == c.status && o.reason == c.reason) {
            continue;
        }
        let bad = (c.type_ == DEGRADED) == (c.status == conditions::TRUE);
        let first_ok = before.is_none() && !bad;
        if first_ok && c.type_ == DEGRADED {
            continue;
        }
        let type_ = if bad {
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.event(&regarding, type_, &c.reason, "Reconcile", c.message.clone())
            .await;
    }
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
    let deleting_for = topic
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(|t| Timestamp::now().duration_since(t.0))
        .unwrap_or_default();
    let result = async {
        let admin = admin_for(topic, ctx).await?;
        admin.delete().await
    }
    .await;
    match result {
        Ok(()) => {
            ctx.metrics.write(CONTROLLER);
            ctx.event(
                &regarding,
                EventType::Normal,
                "TopicDeleted",
                "Delete",
                format!("deleted topic {name} from the broker"),
            )
            .await;
            Ok(Action::await_change())
        }
        Err(error) if deleting_for > DELETE_GIVE_UP => {
            ctx.event(
                &regarding,
                EventType::Warning,
                "TopicDeleteAbandoned",
                "Delete",
                format!("gave up deleting topic {name} after {DELETE_GIVE_UP:#}; it may remain on the broker: {error}"),
            )
            .await;
            Ok(Action::await_change())
        }
        Err(error) => Err(error),
    }
}
