//! Desired children of a TaxiPipeline: pure functions from the spec (and the
//! resolved KafkaTopic and CassandraSink objects) to Kubernetes objects.
//!
//! Nothing here talks to the API server; `pipeline::reconcile` applies what
//! these return.

pub mod autoscaling;
pub mod config;
pub mod drift;
pub mod rbac;
pub mod schedule;
pub mod security;
pub mod service;
pub mod tls;
pub mod workloads;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::core::{ApiResource, Resource};
use serde::Serialize;
use taxistream_crds::TaxiPipeline;
use taxistream_crds::sink::CassandraSinkSpec;

use crate::error::{Error, Result};

/// Label and annotation keys the operator sets.
pub const MANAGED_BY: &str = "taxistream-operator";
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
/// Hash of the applied object, so an unchanged object is not applied again.
pub const ANNOTATION_APPLIED_HASH: &str = "taxistream.dev/applied-hash";
/// Hash of the worker configuration on pod templates, so pods roll when it changes.
pub const ANNOTATION_CONFIG_HASH: &str = "taxistream.dev/config-hash";

/// The worker stages, each one Deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Ingest,
    Aggregate,
    Sink,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Ingest, Stage::Aggregate, Stage::Sink];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Ingest => "ingest",
            Stage::Aggregate => "aggregate",
            Stage::Sink => "sink",
        }
    }
}

/// Broker-side names and partition counts of the pipeline's topics.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedTopics {
    pub trips: String,
    pub aggregates: String,
    pub dead_letters: String,
    /// Partitions of the trips topic the relay keys onto (the count pinned
    /// in `status.tripsPartitions`, else the topic's): the most aggregate
    /// consumers that do work.
    pub trips_partitions: i32,
    /// Partitions of the aggregates topic: the most sink consumers that do work.
    pub aggregates_partitions: i32,
}

/// Everything the builders read.
pub struct Inputs<'a> {
    pub pipeline: &'a TaxiPipeline,
    pub namespace: String,
    pub name: String,
    pub owner: OwnerReference,
    pub image: String,
    pub topics: ResolvedTopics,
    pub sink: &'a CassandraSinkSpec,
}

impl<'a> Inputs<'a> {
    pub fn new(
        pipeline: &'a TaxiPipeline,
        default_image: &str,
        topics: ResolvedTopics,
        sink: &'a CassandraSinkSpec,
    ) -> Result<Self> {
        let name = pipeline
            .metadata
            .name
            .clone()
            .ok_or_else(|| Error::MissingField("TaxiPipeline".into(), "metadata.name"))?;
        let namespace = pipeline.metadata.namespace.clone().ok_or_else(|| {
            Error::MissingField(format!("TaxiPipeline {name}"), "metadata.namespace")
        })?;
        // blockOwnerDeletion: foreground deletion of the pipeline waits for
        // its children, and the API server checks `taxipipelines/finalizers`.
        let owner = pipeline
            .controller_owner_ref(&())
            .map(|owner| OwnerReference {
                block_owner_deletion: Some(true),
                ..owner
            })
            .ok_or_else(|| Error::MissingField(format!("TaxiPipeline {name}"), "metadata.uid"))?;
        Ok(Self {
            image: pipeline
                .spec
                .image
                .clone()
                .unwrap_or_else(|| default_image.to_owned()),
            pipeline,
            namespace,
            name,
            owner,
            topics,
            sink,
        })
    }

    /// Labels shared by every child.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_NAME.to_owned(), "taxistream-worker".to_owned()),
            (LABEL_INSTANCE.to_owned(), self.name.clone()),
            (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
            (LABEL_PART_OF.to_owned(), "taxistream".to_owned()),
        ])
    }

    /// Labels of one stage's objects.
    pub fn stage_labels(&self, stage: Stage) -> BTreeMap<String, String> {
        let mut labels = self.labels();
        labels.insert(LABEL_COMPONENT.to_owned(), stage.as_str().to_owned());
        labels
    }

    /// The selector of one stage's pods (a subset of its labels that never changes).
    pub fn stage_selector(&self, stage: Stage) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_NAME.to_owned(), "taxistream-worker".to_owned()),
            (LABEL_INSTANCE.to_owned(), self.name.clone()),
            (LABEL_COMPONENT.to_owned(), stage.as_str().to_owned()),
        ])
    }

    /// Metadata of a child: name, namespace, labels and the owner reference.
    pub fn meta(&self, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }
}

/// Child names, derived from the pipeline name.
pub mod names {
    use super::Stage;

    pub fn config(pipeline: &str) -> String {
        format!("{pipeline}-config")
    }
    pub fn service_account(pipeline: &str) -> String {
        format!("{pipeline}-workers")
    }
    pub fn deployment(pipeline: &str, stage: Stage) -> String {
        format!("{pipeline}-{}", stage.as_str())
    }
    pub fn metrics_service(pipeline: &str) -> String {
        format!("{pipeline}-metrics")
    }
    pub fn ca_secret(pipeline: &str) -> String {
        format!("{pipeline}-ca")
    }
    pub fn cert_secret(pipeline: &str) -> String {
        format!("{pipeline}-worker-tls")
    }
    pub fn cron_job(pipeline: &str) -> String {
        format!("{pipeline}-ingest-schedule")
    }
}

/// One child to apply: its API type, name and full JSON body.
#[derive(Clone, Debug)]
pub struct Desired {
    pub resource: ApiResource,
    pub name: String,
    pub object: serde_json::Value,
}

impl Desired {
    pub fn new<K>(obj: &K) -> Result<Self>
    where
        K: Resource<DynamicType = ()> + Serialize,
    {
        let resource = ApiResource::erase::<K>(&());
        let name = obj.meta().name.clone().unwrap_or_default();
        let mut object = serde_json::to_value(obj).map_err(|source| Error::Encode {
            what: format!("{} {name}", resource.kind),
            source,
        })?;
        // Typed k8s-openapi objects serialise without apiVersion/kind; apply needs them.
        if let Some(map) = object.as_object_mut() {
            map.insert("apiVersion".into(), resource.api_version.clone().into());
            map.insert("kind".into(), resource.kind.clone().into());
        }
        Ok(Self {
            resource,
            name,
            object,
        })
    }

    /// `Kind/name`, for logs, events and snapshots.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.resource.kind, self.name)
    }
}

/// Every child the spec asks for, in apply order (config and identity before
/// the workloads that mount and run as them).
pub fn build_all(
    inputs: &Inputs<'_>,
    config_hash: &str,
    config: &k8s_openapi::api::core::v1::ConfigMap,
) -> Result<Vec<Desired>> {
    let mut out = vec![Desired::new(config)?];
    out.push(Desired::new(&rbac::service_account(inputs))?);
    out.push(Desired::new(&rbac::role(inputs))?);
    out.push(Desired::new(&rbac::role_binding(inputs))?);
    for stage in Stage::ALL {
        out.push(Desired::new(&workloads::deployment(
            inputs,
            stage,
            config_hash,
        ))?);
    }
    out.push(Desired::new(&service::metrics_service(inputs))?);
    for stage in Stage::ALL {
        out.push(Desired::new(&autoscaling::pod_disruption_budget(
            inputs, stage,
        ))?);
    }
    for stage in [Stage::Aggregate, Stage::Sink] {
        if let Some(hpa) = autoscaling::horizontal_pod_autoscaler(inputs, stage) {
            out.push(Desired::new(&hpa)?);
        }
    }
    if let Some(cron_job) = schedule::cron_job(inputs, config_hash) {
        out.push(Desired::new(&cron_job)?);
    }
    Ok(out)
}

/// The kinds of children the pipeline watches: every kind `build_all` and
/// the TLS issue apply.
pub fn watched_kinds() -> Vec<ApiResource> {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
    use k8s_openapi::api::batch::v1::CronJob;
    use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    vec![
        ApiResource::erase::<Deployment>(&()),
        ApiResource::erase::<ConfigMap>(&()),
        ApiResource::erase::<ServiceAccount>(&()),
        ApiResource::erase::<Role>(&()),
        ApiResource::erase::<RoleBinding>(&()),
        ApiResource::erase::<Service>(&()),
        ApiResource::erase::<PodDisruptionBudget>(&()),
        ApiResource::erase::<HorizontalPodAutoscaler>(&()),
        ApiResource::erase::<CronJob>(&()),
        ApiResource::erase::<Secret>(&()),
    ]
}

/// Optional children that must be deleted when the spec no longer asks for
/// them (autoscaling turned off, schedule removed, pipeline suspended).
pub fn optional_children(inputs: &Inputs<'_>) -> Vec<(ApiResource, String)> {
    use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
    use k8s_openapi::api::batch::v1::CronJob;
    vec![
        (
            ApiResource::erase::<HorizontalPodAutoscaler>(&()),
            names::deployment(&inputs.name, Stage::Aggregate),
        ),
        (
            ApiResource::erase::<HorizontalPodAutoscaler>(&()),
            names::deployment(&inputs.name, Stage::Sink),
        ),
        (
            ApiResource::erase::<CronJob>(&()),
            names::cron_job(&inputs.name),
        ),
    ]
}
