//! The pipeline's status, computed from what the reconcile observed: pure,
//! so a steady pipeline yields an identical status and no write.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use taxistream_crds::conditions::{
    self, Condition, DEGRADED, READY, SINK_READY, TOPICS_READY, WORKERS_AVAILABLE, new_condition,
    set_condition,
};
use taxistream_crds::pipeline::{PipelinePhase, StageStatus, StagesStatus, TlsStatus};
use taxistream_crds::{TaxiPipeline, TaxiPipelineStatus};

use super::desired::Stage;

/// Workers mount a Secret that does not exist. Unlike other reasons for
/// unavailable workers, this one is worth a Warning on a new pipeline too:
/// the pods will not start until someone creates the Secret.
pub const SECRET_NOT_FOUND: &str = "SecretNotFound";

/// A referenced object (KafkaTopic or CassandraSink) as found.
#[derive(Clone, Debug, PartialEq)]
pub enum Dependency {
    NotFound,
    NotReady(String),
    Ready,
}

/// Everything the status is computed from.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// `(reason, message)` when the spec cannot be reconciled as written.
    pub invalid: Option<(&'static str, String)>,
    /// `(field, KafkaTopic name, state)` for trips, aggregates and deadLetters.
    pub topics: Vec<(&'static str, String, Dependency)>,
    /// CassandraSink name and state.
    pub sink: Option<(String, Dependency)>,
    /// The stage Deployments, once they have been applied.
    pub deployments: Option<Vec<(Stage, Deployment)>>,
    pub tls: Option<TlsStatus>,
    pub config_hash: Option<String>,
    /// Referenced Secrets that do not exist: the pods that mount them cannot start.
    pub missing_secrets: Vec<String>,
    /// Partitions the broker reports for the trips topic, once it is Ready.
    pub trips_partitions: Option<i32>,
}

/// `TopicsReady` reason when the trips topic has more partitions than the
/// pipeline pinned: healthy, but the extra partitions stay unused.
pub const TRIPS_TOPIC_GROWN: &str = "TripsTopicGrown";

fn stage_status(d: &Deployment) -> StageStatus {
    let status = d.status.clone().unwrap_or_default();
    let selector = d
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.as_ref())
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    StageStatus {
        desired_replicas: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        replicas: status.replicas.unwrap_or(0),
        ready_replicas: status.ready_replicas.unwrap_or(0),
        selector,
    }
}

/// Whether the Deployment has rolled out its current spec and has every replica available.
fn available(d: &Deployment) -> bool {
    let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = d.status.clone().unwrap_or_default();
    let current = match (status.observed_generation, d.metadata.generation) {
        (Some(seen), Some(generation)) => seen >= generation,
        (_, None) => true,
        (None, Some(_)) => desired == 0,
    };
    current && status.available_replicas.unwrap_or(0) >= desired
}

fn dependency_condition(
    type_: &str,
    kind: &str,
    deps: &[(&str, String, Dependency)],
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    for (_, name, state) in deps {
        match state {
            Dependency::NotFound => {
                return new_condition(
                    type_,
                    false,
                    &format!("{kind}NotFound"),
                    format!("{kind} {name} not found"),
                    generation,
                    now.clone(),
                );
            }
            Dependency::NotReady(why) => {
                return new_condition(
                    type_,
                    false,
                    &format!("{kind}NotReady"),
                    format!("{kind} {name} is not Ready: {why}"),
                    generation,
                    now.clone(),
                );
            }
            Dependency::Ready => {}
        }
    }
    let names: Vec<&str> = deps.iter().map(|(_, n, _)| n.as_str()).collect();
    let message = if names.len() == 1 {
        format!("{kind} {} is Ready", names.join(""))
    } else {
        format!("{kind}s {} are Ready", names.join(", "))
    };
    new_condition(
        type_,
        true,
        &format!("{kind}Ready"),
        message,
        generation,
        now.clone(),
    )
}

/// The new status of `pipeline`, given what was observed at `now`.
pub fn compute(pipeline: &TaxiPipeline, observed: &Observed, now: Time) -> TaxiPipelineStatus {
    let generation = pipeline.metadata.generation;
    let old = pipeline.status.clone().unwrap_or_default();
    let mut conds = old.conditions.clone();

    let degraded = match &observed.invalid {
        Some((reason, message)) => new_condition(
            DEGRADED,
            true,
            reason,
            message.clone(),
            generation,
            now.clone(),
        ),
        None => new_condition(
            DEGRADED,
            false,
            "AsExpected",
            "the spec is valid",
            generation,
            now.clone(),
        ),
    };
    // Pinned the first time the trips topic is Ready, never changed after:
    // the relay keys trips onto that many partitions for good.
    let pinned = old.trips_partitions.or(observed.trips_partitions);
    let mut topics = dependency_condition(
        TOPICS_READY,
        "KafkaTopic",
        &observed.topics,
        generation,
        &now,
    );
    if let (Some(pinned), Some(current)) = (pinned, observed.trips_partitions)
        && current > pinned
        && topics.status == conditions::TRUE
    {
        let trips = observed
            .topics
            .first()
            .map_or("trips", |(_, name, _)| name.as_str());
        topics = new_condition(
            TOPICS_READY,
            true,
            TRIPS_TOPIC_GROWN,
            format!(
                "KafkaTopic {trips} has {current} partitions but the pipeline started with {pinned}: the relay keeps every trip key on the first {pinned} partitions, so the new ones stay empty and at most {pinned} aggregate workers do work. To use {current} partitions, create a new TaxiPipeline with a new trips topic"
            ),
            generation,
            now.clone(),
        );
    }
    let sink_deps: Vec<(&str, String, Dependency)> = observed
        .sink
        .iter()
        .map(|(n, d)| ("cassandraSink", n.clone(), d.clone()))
        .collect();
    let sink = dependency_condition(SINK_READY, "CassandraSink", &sink_deps, generation, &now);

    let stages = observed.deployments.as_ref().map(|deps| {
        let find = |stage: Stage| {
            deps.iter()
                .find(|(s, _)| *s == stage)
                .map(|(_, d)| stage_status(d))
                .unwrap_or_default()
        };
        StagesStatus {
            ingest: find(Stage::Ingest),
            aggregate: find(Stage::Aggregate),
            sink: find(Stage::Sink),
        }
    });
    let workers = match &observed.deployments {
        _ if pipeline.spec.suspend => new_condition(
            WORKERS_AVAILABLE,
            false,
            "Suspended",
            "the pipeline is suspended; workers are scaled to zero",
            generation,
            now.clone(),
        ),
        None => new_condition(
            WORKERS_AVAILABLE,
            false,
            "NotCreated",
            "workers are created once the spec is valid, its KafkaTopics and CassandraSink exist and no child belongs to someone else",
            generation,
            now.clone(),
        ),
        Some(deps) => {
            let summary: Vec<String> = deps
                .iter()
                .map(|(stage, d)| {
                    let s = stage_status(d);
                    let avail = d
                        .status
                        .as_ref()
                        .and_then(|s| s.available_replicas)
                        .unwrap_or(0);
                    format!("{} {avail}/{}", stage.as_str(), s.desired_replicas)
                })
                .collect();
            // A stage whose Deployment could not be applied is not available.
            let all = Stage::ALL
                .into_iter()
                .all(|stage| deps.iter().any(|(s, d)| *s == stage && available(d)));
            if !all && !observed.missing_secrets.is_empty() {
                new_condition(
                    WORKERS_AVAILABLE,
                    false,
                    SECRET_NOT_FOUND,
                    format!(
                        "Secret {} not found; the workers that mount it cannot start (available replicas: {})",
                        observed.missing_secrets.join(", "),
                        summary.join(", ")
                    ),
                    generation,
                    now.clone(),
                )
            } else {
                new_condition(
                    WORKERS_AVAILABLE,
                    all,
                    if all { "Available" } else { "Unavailable" },
                    format!("available replicas: {}", summary.join(", ")),
                    generation,
                    now.clone(),
                )
            }
        }
    };

    let blocking = [&degraded, &topics, &sink, &workers]
        .into_iter()
        .find(|c| (c.type_ == DEGRADED) == (c.status == conditions::TRUE));
    let ready = match blocking {
        Some(c) => new_condition(
            READY,
            false,
            &c.reason,
            c.message.clone(),
            generation,
            now.clone(),
        ),
        None => new_condition(
            READY,
            true,
            "Running",
            "every stage is available",
            generation,
            now.clone(),
        ),
    };
    let phase = if observed.invalid.is_some() {
        PipelinePhase::Degraded
    } else if pipeline.spec.suspend {
        PipelinePhase::Suspended
    } else if ready.status == conditions::TRUE {
        PipelinePhase::Running
    } else {
        PipelinePhase::Pending
    };
    for c in [ready, topics, sink, workers, degraded] {
        set_condition(&mut conds, c);
    }
    TaxiPipelineStatus {
        observed_generation: generation,
        phase: Some(phase),
        conditions: conds,
        stages: stages.or(old.stages),
        tls: observed.tls.clone().or(old.tls),
        config_hash: observed.config_hash.clone().or(old.config_hash),
        trips_partitions: pinned,
    }
}

/// An Event to publish for a condition transition.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub warning: bool,
    pub reason: String,
    pub note: String,
}

/// Condition changes worth an Event: a condition turning bad, or recovering,
/// and the pipeline becoming Ready. Ready turning false raises no Event of
/// its own (the condition that caused it does), and workers that are not
/// available yet on a new pipeline are expected, not a warning, unless a
/// Secret they mount is missing.
pub fn transitions(old: &[Condition], new: &[Condition]) -> Vec<Transition> {
    let healthy = |c: &Condition| (c.type_ == DEGRADED) != (c.status == conditions::TRUE);
    let mut out = Vec::new();
    for c in new {
        let before = conditions::find(old, &c.type_);
        let changed = before.is_none_or(|o| o.status != c.status || o.reason != c.reason);
        if !changed {
            continue;
        }
        let was_healthy = before.map(healthy);
        let event = |warning: bool| Transition {
            warning,
            reason: c.reason.clone(),
            note: c.message.clone(),
        };
        if c.reason == TRIPS_TOPIC_GROWN {
            out.push(event(true));
        } else if c.type_ == READY {
            if healthy(c) {
                out.push(event(false));
            }
        } else if healthy(c) {
            if was_healthy == Some(false) {
                out.push(event(false));
            }
        } else if c.reason == "Suspended" {
            out.push(event(false));
        } else if c.type_ != WORKERS_AVAILABLE
            || was_healthy == Some(true)
            || c.reason == SECRET_NOT_FOUND
        {
            out.push(event(true));
        }
    }
    out
}
