//! What to do to a topic on the broker: pure decisions from spec and
//! observation, so growth, shrink refusal and drift are tested without Kafka.

use std::collections::BTreeMap;

use taxistream_crds::KafkaTopicSpec;

/// A topic as the broker describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct BrokerTopic {
    pub partitions: i32,
    pub replication_factor: i32,
    /// Topic-level overrides (config source `DYNAMIC_TOPIC_CONFIG`). `None`
    /// when the broker described no configuration at all, so drift cannot
    /// be judged (tansu 0.6 answers DescribeConfigs with nothing).
    pub config: Option<BTreeMap<String, String>>,
}

/// One change to make on the broker.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    Create,
    GrowPartitions(i32),
    /// Set the topic's overrides to exactly the spec's config.
    SetConfig(Vec<String>),
}

/// The changes to make and the problems that no change can fix.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// `(reason, message)` for the Degraded condition.
    pub problems: Vec<(&'static str, String)>,
}

/// Differences between the overrides the broker reports and the spec, one
/// sentence each. Keys the broker has but the spec lacks count: the spec
/// is the whole truth about the topic's overrides.
pub fn config_drift(
    spec: &BTreeMap<String, String>,
    broker: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (key, want) in spec {
        match broker.get(key) {
            Some(have) if have == want => {}
            Some(have) => out.push(format!(
                "{key} is {have} on the broker, the spec says {want}"
            )),
            None => out.push(format!(
                "{key} is not set on the broker, the spec says {want}"
            )),
        }
    }
    for (key, have) in broker {
        if !spec.contains_key(key) {
            out.push(format!(
                "{key}={have} is set on the broker but not in the spec"
            ));
        }
    }
    out
}

pub fn plan(topic: &str, spec: &KafkaTopicSpec, broker: Option<&BrokerTopic>) -> Plan {
    let Some(broker) = broker else {
        return Plan {
            steps: vec![Step::Create],
            problems: Vec::new(),
        };
    };
    let mut plan = Plan::default();
    if spec.partitions > broker.partitions {
        plan.steps.push(Step::GrowPartitions(spec.partitions));
    } else if spec.partitions < broker.partitions {
        plan.problems.push((
            "PartitionsCannotShrink",
            format!(
                "spec.partitions is {} but topic {topic} has {} partitions on the broker; Kafka cannot remove partitions, so set spec.partitions to at least {}",
                spec.partitions, broker.partitions, broker.partitions
            ),
        ));
    }
    if spec.replication_factor != broker.replication_factor {
        plan.problems.push((
            "ReplicationFactorMismatch",
            format!(
                "spec.replicationFactor is {} but topic {topic} has replication factor {} on the broker; changing it needs a partition reassignment",
                spec.replication_factor, broker.replication_factor
            ),
        ));
    }
    if let Some(config) = &broker.config {
        let drift = config_drift(&spec.config, config);
        if !drift.is_empty() {
            plan.steps.push(Step::SetConfig(drift));
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use taxistream_crds::{DeletionPolicy, KafkaConnection};

    fn spec(partitions: i32, config: &[(&str, &str)]) -> KafkaTopicSpec {
        KafkaTopicSpec {
            topic_name: None,
            partitions,
            replication_factor: 3,
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            deletion_policy: DeletionPolicy::Retain,
            cluster: KafkaConnection {
                bootstrap_servers: "k:9092".into(),
                tls: None,
                sasl: None,
            },
        }
    }

    fn broker(partitions: i32, config: Option<&[(&str, &str)]>) -> BrokerTopic {
        BrokerTopic {
            partitions,
            replication_factor: 3,
            config: config.map(|c| {
                c.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            }),
        }
    }

    #[test]
    fn a_missing_topic_is_created() {
        assert_eq!(plan("t", &spec(6, &[]), None).steps, vec![Step::Create]);
    }

    #[test]
    fn partitions_grow_but_never_shrink() {
        let grow = plan("t", &spec(12, &[]), Some(&broker(6, Some(&[]))));
        assert_eq!(grow.steps, vec![Step::GrowPartitions(12)]);
        assert!(grow.problems.is_empty());

        let shrink = plan("t", &spec(3, &[]), Some(&broker(6, Some(&[]))));
        assert!(shrink.steps.is_empty());
        assert_eq!(shrink.problems[0].0, "PartitionsCannotShrink");
        assert!(
            shrink.problems[0].1.contains("has 6 partitions"),
            "{}",
            shrink.problems[0].1
        );

        let steady = plan("t", &spec(6, &[]), Some(&broker(6, Some(&[]))));
        assert_eq!(steady, Plan::default());
    }

    #[test]
    fn replication_factor_mismatch_is_reported_not_changed() {
        let mut b = broker(6, Some(&[]));
        b.replication_factor = 1;
        let p = plan("t", &spec(6, &[]), Some(&b));
        assert!(p.steps.is_empty());
        assert_eq!(p.problems[0].0, "ReplicationFactorMismatch");
    }

    #[test]
    fn out_of_band_config_changes_are_reverted() {
        let s = spec(
            6,
            &[("retention.ms", "604800000"), ("cleanup.policy", "delete")],
        );
        // Changed value, missing key and an extra key are all drift.
        let b = broker(
            6,
            Some(&[("retention.ms", "1000"), ("segment.bytes", "1048576")]),
        );
        let p = plan("t", &s, Some(&b));
        let Step::SetConfig(drift) = &p.steps[0] else {
            panic!("expected SetConfig, got {:?}", p.steps)
        };
        assert_eq!(drift.len(), 3, "{drift:?}");
        assert!(drift.iter().any(|d| d.contains("retention.ms is 1000")));
        assert!(
            drift
                .iter()
                .any(|d| d.contains("cleanup.policy is not set"))
        );
        assert!(drift.iter().any(|d| d.contains("segment.bytes=1048576")));

        let in_sync = broker(
            6,
            Some(&[("retention.ms", "604800000"), ("cleanup.policy", "delete")]),
        );
        assert!(plan("t", &s, Some(&in_sync)).steps.is_empty());
    }

    #[test]
    fn undescribed_config_is_not_judged() {
        let s = spec(6, &[("retention.ms", "1")]);
        assert!(plan("t", &s, Some(&broker(6, None))).steps.is_empty());
    }
}
