//! Status condition types and reasons, and the one rule for updating them.
//!
//! Conditions follow the Kubernetes convention (`metav1.Condition`): a type,
//! a `True`/`False`/`Unknown` status, a CamelCase reason and a message a
//! person can act on. `lastTransitionTime` only moves when the status flips,
//! which is what lets a reconcile that changed nothing write nothing.

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Everything the pipeline needs is in place and its workers are available.
pub const READY: &str = "Ready";
/// Every KafkaTopic the pipeline names exists and is Ready.
pub const TOPICS_READY: &str = "TopicsReady";
/// The CassandraSink the pipeline names exists and is Ready.
pub const SINK_READY: &str = "SinkReady";
/// Every worker Deployment has its desired replicas available.
pub const WORKERS_AVAILABLE: &str = "WorkersAvailable";
/// The object cannot be reconciled as written; the reason says why.
pub const DEGRADED: &str = "Degraded";

/// Condition status values.
pub const TRUE: &str = "True";
pub const FALSE: &str = "False";
pub const UNKNOWN: &str = "Unknown";

/// Builds a condition stamped with `generation` and `now`.
pub fn new_condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Time,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if ok { TRUE } else { FALSE }.to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: now,
    }
}

/// Inserts or replaces the condition of the same type.
///
/// An existing condition keeps its `lastTransitionTime` when its status is
/// unchanged, so repeated reconciles of a steady object produce identical
/// status and no write.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            if existing.status == new.status {
                new.last_transition_time = existing.last_transition_time.clone();
            }
            *existing = new;
        }
        None => conditions.push(new),
    }
}

/// The condition of `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of `type_` is present and `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == TRUE)
}

/// The conditions list schema: a map keyed by `type`, so server-side apply
/// merges individual conditions instead of replacing the list.
pub fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn unchanged_status_keeps_transition_time() {
        let mut conds = vec![new_condition(READY, true, "Ok", "fine", Some(1), at(10))];
        set_condition(
            &mut conds,
            new_condition(READY, true, "Ok", "still fine", Some(2), at(20)),
        );
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].last_transition_time, at(10));
        assert_eq!(conds[0].message, "still fine");
        assert_eq!(conds[0].observed_generation, Some(2));
    }

    #[test]
    fn flipped_status_moves_transition_time() {
        let mut conds = vec![new_condition(READY, true, "Ok", "fine", Some(1), at(10))];
        set_condition(
            &mut conds,
            new_condition(READY, false, "Broken", "no", Some(1), at(20)),
        );
        assert_eq!(conds[0].last_transition_time, at(20));
        assert_eq!(conds[0].status, FALSE);
        set_condition(
            &mut conds,
            new_condition(DEGRADED, true, "Bad", "x", None, at(30)),
        );
        assert_eq!(conds.len(), 2);
        assert!(is_true(&conds, DEGRADED));
        assert!(!is_true(&conds, READY));
    }
}
