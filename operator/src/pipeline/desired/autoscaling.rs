//! HorizontalPodAutoscalers (aggregate, sink) and PodDisruptionBudgets.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, ExternalMetricSource, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerSpec, MetricIdentifier, MetricSpec, MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

use super::workloads::stage_spec;
use super::{Inputs, Stage, names};

/// External metric the HPA reads for consumer lag; a metrics adapter
/// (prometheus-adapter, KEDA) must serve it from the workers' metrics.
pub const CONSUMER_LAG_METRIC: &str = "taxistream_consumer_lag";

/// `(minReplicas, maxReplicas)` with the maximum capped at the partitions of
/// the topic the stage consumes: more consumers than partitions sit idle.
pub fn replica_bounds(min: i32, max: i32, partitions: i32) -> (i32, i32) {
    let max = max.min(partitions.max(1));
    (min.min(max), max)
}

/// `(minReplicas, maxReplicas)` of the HPA of `stage`, when it has one
/// (autoscaling set, not ingest, pipeline not suspended).
pub fn hpa_bounds(inputs: &Inputs<'_>, stage: Stage) -> Option<(i32, i32)> {
    let autoscaling = stage_spec(inputs, stage).autoscaling.as_ref()?;
    if inputs.pipeline.spec.suspend || stage == Stage::Ingest {
        return None;
    }
    let partitions = match stage {
        Stage::Aggregate => inputs.topics.trips_partitions,
        _ => inputs.topics.aggregates_partitions,
    };
    Some(replica_bounds(
        autoscaling.min_replicas,
        autoscaling.max_replicas,
        partitions,
    ))
}

/// The HPA of `stage`, when it has autoscaling and the pipeline is not suspended.
pub fn horizontal_pod_autoscaler(
    inputs: &Inputs<'_>,
    stage: Stage,
) -> Option<HorizontalPodAutoscaler> {
    let autoscaling = stage_spec(inputs, stage).autoscaling.as_ref()?;
    let (min, max) = hpa_bounds(inputs, stage)?;
    let name = names::deployment(&inputs.name, stage);
    let mut metrics = vec![MetricSpec {
        type_: "Resource".to_owned(),
        resource: Some(ResourceMetricSource {
            name: "cpu".to_owned(),
            target: MetricTarget {
                type_: "Utilization".to_owned(),
                average_utilization: Some(autoscaling.target_cpu_utilization),
                ..MetricTarget::default()
            },
        }),
        ..MetricSpec::default()
    }];
    if let Some(lag) = autoscaling.target_consumer_lag {
        metrics.push(MetricSpec {
            type_: "External".to_owned(),
            external: Some(ExternalMetricSource {
                metric: MetricIdentifier {
                    name: CONSUMER_LAG_METRIC.to_owned(),
                    selector: Some(LabelSelector {
                        match_labels: Some(BTreeMap::from([
                            ("namespace".to_owned(), inputs.namespace.clone()),
                            ("pipeline".to_owned(), inputs.name.clone()),
                            ("stage".to_owned(), stage.as_str().to_owned()),
                        ])),
                        match_expressions: None,
                    }),
                },
                target: MetricTarget {
                    type_: "AverageValue".to_owned(),
                    average_value: Some(Quantity(lag.to_string())),
                    ..MetricTarget::default()
                },
            }),
            ..MetricSpec::default()
        });
    }
    Some(HorizontalPodAutoscaler {
        metadata: inputs.meta(name.clone(), inputs.stage_labels(stage)),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_owned()),
                kind: "Deployment".to_owned(),
                name,
            },
            min_replicas: Some(min),
            max_replicas: max,
            metrics: Some(metrics),
            behavior: None,
        }),
        status: None,
    })
}

/// At most one pod of a stage is voluntarily evicted at a time.
pub fn pod_disruption_budget(inputs: &Inputs<'_>, stage: Stage) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: inputs.meta(
            names::deployment(&inputs.name, stage),
            inputs.stage_labels(stage),
        ),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(inputs.stage_selector(stage)),
                match_expressions: None,
            }),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_owned()),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::replica_bounds;

    #[test]
    fn max_replicas_is_capped_at_partitions() {
        assert_eq!(replica_bounds(1, 10, 6), (1, 6));
        assert_eq!(replica_bounds(2, 4, 6), (2, 4));
        // A minimum above the partition count comes down with the maximum.
        assert_eq!(replica_bounds(8, 10, 6), (6, 6));
        // A topic not yet described counts as one partition, never zero.
        assert_eq!(replica_bounds(1, 3, 0), (1, 1));
    }
}
