//! Checks the CRD schema cannot express; a failure becomes `Degraded`.

use taxistream_crds::TaxiPipelineSpec;

use super::desired::schedule;

/// `(reason, message)` of the first problem, or `None` when the spec is usable.
pub fn check(spec: &TaxiPipelineSpec) -> Option<(&'static str, String)> {
    if let Some(s) = &spec.schedule
        && let Err(message) = schedule::validate(s)
    {
        return Some(("InvalidSchedule", message));
    }
    if let Err(e) = spec.source.inputs() {
        return Some(("InvalidSource", format!("spec.source: {e}")));
    }
    if spec.source.open_data.is_none() && spec.source.inputs().is_ok_and(|i| i.is_empty()) {
        return Some((
            "InvalidSource",
            "spec.source names no input: set files, months or openData".to_owned(),
        ));
    }
    None
}

/// One sentence per stage whose `replicas` differs from the default while
/// an HPA sets its count: `kubectl scale tp/NAME` (the `scale` subresource
/// writes `workers.aggregate.replicas`) would otherwise change nothing
/// without a word.
pub fn ignored_replicas(spec: &TaxiPipelineSpec) -> Vec<String> {
    if spec.suspend {
        return Vec::new();
    }
    [
        ("aggregate", &spec.workers.aggregate),
        ("sink", &spec.workers.sink),
    ]
    .into_iter()
    .filter_map(|(stage, s)| {
        let a = s.autoscaling.as_ref()?;
        (s.replicas != 1).then(|| {
            format!(
                "spec.workers.{stage}.replicas is {} but the {stage} stage autoscales (minReplicas {}, maxReplicas {}), so its HorizontalPodAutoscaler sets the replica count; change spec.workers.{stage}.autoscaling instead",
                s.replicas, a.min_replicas, a.max_replicas
            )
        })
    })
    .collect()
}
