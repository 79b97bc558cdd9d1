//! Condition handling shared by the KafkaTopic and CassandraSink
//! controllers: the `Unknown` state after a failed pass, and the Events a
//! condition change raises.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::EventType;
use taxistream_crds::conditions::{self, Condition, DEGRADED, Time, UNKNOWN};

use crate::context::Context;

/// Reason of a `Degraded` condition that a failed pass could not check.
pub const UNCHECKED: &str = "Unchecked";

/// `Degraded` after a pass that failed before it could compare the external
/// resource with the spec: neither the old verdict (which may belong to an
/// older generation) nor a fresh one holds, so it is `Unknown`.
pub fn degraded_unchecked(what: &str, generation: Option<i64>, now: Time) -> Condition {
    Condition {
        type_: DEGRADED.to_owned(),
        status: UNKNOWN.to_owned(),
        reason: UNCHECKED.to_owned(),
        message: format!(
            "{what} could not be compared with the spec: the last pass failed (see Ready)"
        ),
        observed_generation: generation,
        last_transition_time: now,
    }
}

/// Ready reason of a KafkaTopic whose create succeeded while the brokers'
/// metadata does not show the topic yet: progress, not a fault.
pub const TOPIC_CREATING: &str = "TopicCreating";

/// Warning Events when Ready turns false or Degraded true; Normal when they
/// recover. A healthy Degraded on a new object, `Unknown` conditions (their
/// cause has its own Ready Event) and progress (`TopicCreating`, whose
/// `TopicCreated` Event was just published) raise none.
pub async fn publish_transitions(
    ctx: &Context,
    regarding: &ObjectReference,
    old: &[Condition],
    new: &[Condition],
) {
    for c in new {
        if c.status == UNKNOWN || c.reason == TOPIC_CREATING {
            continue;
        }
        let before = conditions::find(old, &c.type_);
        if before.is_some_and(|o| o.status == c.status && o.reason == c.reason) {
            continue;
        }
        let bad = (c.type_ == DEGRADED) == (c.status == conditions::TRUE);
        let first_ok = before.is_none_or(|o| o.status == UNKNOWN) && !bad;
        if first_ok && c.type_ == DEGRADED {
            continue;
        }
        let type_ = if bad {
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.event(regarding, type_, &c.reason, "Reconcile", c.message.clone())
            .await;
    }
}
