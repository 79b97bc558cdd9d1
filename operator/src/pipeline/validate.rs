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
