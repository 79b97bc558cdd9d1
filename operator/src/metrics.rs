//! Prometheus metrics of the reconcilers: counts, durations and failures.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `controller` label values.
pub const CONTROLLERS: [&str; 3] = ["pipeline", "topic", "sink"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub controller: &'static str,
    pub error: &'static str,
}

/// The operator's metrics, registered once and shared by every controller.
pub struct Metrics {
    reconciliations: Family<ControllerLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    duration: Family<ControllerLabels, Histogram>,
    writes: Family<ControllerLabels, Counter>,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let reconciliations = Family::<ControllerLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let writes = Family::<ControllerLabels, Counter>::default();
        let duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
        });
        let sub = registry.sub_registry_with_prefix("taxistream_operator");
        sub.register(
            "reconciliations",
            "Reconciliations started",
            reconciliations.clone(),
        );
        sub.register(
            "reconcile_failures",
            "Reconciliations that failed, by error kind",
            failures.clone(),
        );
        sub.register(
            "reconcile_duration_seconds",
            "Duration of reconciliations",
            duration.clone(),
        );
        sub.register(
            "writes",
            "Create, apply, patch and delete calls made to the API server or an external system",
            writes.clone(),
        );
        // Start every controller's series at zero, so dashboards and rate()
        // see them before the first reconcile.
        for controller in CONTROLLERS {
            let labels = ControllerLabels { controller };
            drop(reconciliations.get_or_create(&labels));
            drop(writes.get_or_create(&labels));
            drop(duration.get_or_create(&labels));
        }
        Self {
            reconciliations,
            failures,
            duration,
            writes,
        }
    }

    /// Counts a reconciliation and times it until the guard drops.
    pub fn reconcile(&self, controller: &'static str) -> ReconcileTimer<'_> {
        let labels = ControllerLabels { controller };
        self.reconciliations.get_or_create(&labels).inc();
        ReconcileTimer {
            metrics: self,
            labels,
            start: Instant::now(),
        }
    }

    pub fn failure(&self, controller: &'static str, error: &'static str) {
        self.failures
            .get_or_create(&FailureLabels { controller, error })
            .inc();
    }

    pub fn write(&self, controller: &'static str) {
        self.writes
            .get_or_create(&ControllerLabels { controller })
            .inc();
    }
}

/// Observes the reconcile duration when dropped.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    labels: ControllerLabels,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .get_or_create(&self.labels)
            .observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_exposed_with_the_prefix() {
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        drop(metrics.reconcile("pipeline"));
        metrics.failure("topic", "kafka");
        metrics.write("pipeline");
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(
            out.contains("taxistream_operator_reconciliations_total{controller=\"pipeline\"} 1")
        );
        assert!(out.contains(
            "taxistream_operator_reconcile_failures_total{controller=\"topic\",error=\"kafka\"} 1"
        ));
        assert!(out.contains("taxistream_operator_reconcile_duration_seconds_count"));
        assert!(out.contains("taxistream_operator_writes_total{controller=\"pipeline\"} 1"));
        assert!(out.contains("taxistream_operator_reconciliations_total{controller=\"sink\"} 0"));
    }
}
