//! Where the worker Deployments (ingest with its relay, aggregate, sink) are built.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use taxistream_crds::pipeline::StageSpec;
use taxistream_crds::worker_config::CONFIG_PATH;

use super::config::{METRICS_PORT, RELAY_METRICS_PORT};
use super::security::{container_security_context, pod_security_context, secret_volumes};
use super::{ANNOTATION_CONFIG_HASH, Inputs, Stage, names};

/// Directory the ConfigMap is mounted at (holds `worker.yaml`).
pub const CONFIG_DIR: &str = "/etc/taxistream";

pub fn stage_spec<'a>(inputs: &'a Inputs<'_>, stage: Stage) -> &'a StageSpec {
    let workers = &inputs.pipeline.spec.workers;
    match stage {
        Stage::Ingest => &workers.ingest,
        Stage::Aggregate => &workers.aggregate,
        Stage::Sink => &workers.sink,
    }
}

/// `spec.replicas` of a stage's Deployment: zero while suspended, absent
/// when an HPA owns the count, the spec's count otherwise; for aggregate at
/// most the trips partitions the relay keys onto (more consumers sit idle).
pub fn replicas(inputs: &Inputs<'_>, stage: Stage) -> Option<i32> {
    let spec = stage_spec(inputs, stage);
    if inputs.pipeline.spec.suspend {
        Some(0)
    } else if spec.autoscaling.is_some() && stage != Stage::Ingest {
        None
    } else if stage == Stage::Aggregate {
        Some(spec.replicas.min(inputs.topics.trips_partitions.max(1)))
    } else {
        Some(spec.replicas)
    }
}

fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("100m".to_owned())),
            ("memory".to_owned(), Quantity("128Mi".to_owned())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity("512Mi".to_owned()),
        )])),
        ..ResourceRequirements::default()
    }
}

fn http_probe(path: &str, port: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(port.to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// One worker container running `taxistream-worker <subcommand>`.
pub fn worker_container(
    inputs: &Inputs<'_>,
    stage: Stage,
    subcommand: &str,
    extra_args: &[&str],
    port: u16,
    secret_mounts: &[VolumeMount],
) -> Container {
    let port_name = if port == METRICS_PORT {
        "metrics"
    } else {
        "relay-metrics"
    };
    let mut mounts = vec![
        VolumeMount {
            name: "config".to_owned(),
            mount_path: CONFIG_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "tmp".to_owned(),
            mount_path: "/tmp".to_owned(),
            ..VolumeMount::default()
        },
    ];
    mounts.extend_from_slice(secret_mounts);
    let mut args = vec![
        subcommand.to_owned(),
        "--config".to_owned(),
        CONFIG_PATH.to_owned(),
    ];
    args.extend(extra_args.iter().map(|a| (*a).to_owned()));
    Container {
        name: subcommand.to_owned(),
        image: Some(inputs.image.clone()),
        image_pull_policy: Some(inputs.pipeline.spec.image_pull_policy.as_str().to_owned()),
        args: Some(args),
        env: Some(vec![
            EnvVar {
                name: "POD_NAME".to_owned(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.name".to_owned(),
                        api_version: None,
                    }),
                    ..EnvVarSource::default()
                }),
                value: None,
            },
            EnvVar {
                name: "RUST_LOG".to_owned(),
                value: Some("info".to_owned()),
                value_from: None,
            },
            // The relay shares the ingest pod, so it serves on its own port.
            EnvVar {
                name: "TAXISTREAM_METRICS_PORT".to_owned(),
                value: Some(port.to_string()),
                value_from: None,
            },
        ]),
        ports: Some(vec![ContainerPort {
            name: Some(port_name.to_owned()),
            container_port: i32::from(port),
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        liveness_probe: Some(http_probe("/healthz", port_name, 10, 3)),
        readiness_probe: Some(http_probe("/readyz", port_name, 5, 3)),
        resources: Some(
            stage_spec(inputs, stage)
                .resources
                .clone()
                .unwrap_or_else(default_resources),
        ),
        security_context: Some(container_security_context()),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

/// The containers of a stage's long-running pods. Ingest carries the relay
/// as a second container (it drains PostgreSQL into Kafka); when the
/// pipeline has a schedule, ingest itself runs in the CronJob instead.
fn containers(inputs: &Inputs<'_>, stage: Stage, mounts: &[VolumeMount]) -> Vec<Container> {
    match stage {
        Stage::Ingest => {
            let mut out = Vec::new();
            if inputs.pipeline.spec.schedule.is_none() {
                out.push(worker_container(
                    inputs,
                    stage,
                    "ingest",
                    &[],
                    METRICS_PORT,
                    mounts,
                ));
            }
            out.push(worker_container(
                inputs,
                stage,
                "relay",
                &[],
                RELAY_METRICS_PORT,
                mounts,
            ));
            out
        }
        Stage::Aggregate => vec![worker_container(
            inputs,
            stage,
            "aggregate",
            &[],
            METRICS_PORT,
            mounts,
        )],
        Stage::Sink => vec![worker_container(
            inputs,
            stage,
            "sink",
            &[],
            METRICS_PORT,
            mounts,
        )],
    }
}

/// Volumes every worker pod has: the configuration, a scratch `/tmp` (the
/// root filesystem is read-only) and the stage's Secret keys.
pub fn pod_volumes(inputs: &Inputs<'_>, secret_volumes: Vec<Volume>) -> Vec<Volume> {
    let mut volumes = vec![
        Volume {
            name: "config".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::config(&inputs.name),
                default_mode: Some(0o444),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "tmp".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity("256Mi".to_owned())),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    volumes.extend(secret_volumes);
    volumes
}

/// Pod metadata: stage labels plus the user's pod labels, Prometheus scrape
/// annotations and the configuration hash that rolls pods on change.
pub fn pod_meta(inputs: &Inputs<'_>, stage: Stage, config_hash: &str, port: u16) -> ObjectMeta {
    let mut labels = stage_spec(inputs, stage).pod_labels.clone();
    labels.extend(inputs.stage_labels(stage));
    ObjectMeta {
        labels: Some(labels),
        annotations: Some(BTreeMap::from([
            ("prometheus.io/scrape".to_owned(), "true".to_owned()),
            ("prometheus.io/port".to_owned(), port.to_string()),
            ("prometheus.io/path".to_owned(), "/metrics".to_owned()),
            (ANNOTATION_CONFIG_HASH.to_owned(), config_hash.to_owned()),
        ])),
        ..ObjectMeta::default()
    }
}

/// A pod spec shared by the Deployments and the CronJob.
pub fn pod_spec(
    inputs: &Inputs<'_>,
    stage: Stage,
    containers: Vec<Container>,
    volumes: Vec<Volume>,
) -> PodSpec {
    PodSpec {
        service_account_name: Some(names::service_account(&inputs.name)),
        // Workers never call the Kubernetes API.
        automount_service_account_token: Some(false),
        security_context: Some(pod_security_context()),
        containers,
        volumes: Some(volumes),
        termination_grace_period_seconds: Some(30),
        topology_spread_constraints: Some(vec![
            TopologySpreadConstraint {
                max_skew: 1,
                topology_key: "kubernetes.io/hostname".to_owned(),
                when_unsatisfiable: "ScheduleAnyway".to_owned(),
                label_selector: Some(LabelSelector {
                    match_labels: Some(inputs.stage_selector(stage)),
                    match_expressions: None,
                }),
                ..TopologySpreadConstraint::default()
            },
            TopologySpreadConstraint {
                max_skew: 1,
                topology_key: "topology.kubernetes.io/zone".to_owned(),
                when_unsatisfiable: "ScheduleAnyway".to_owned(),
                label_selector: Some(LabelSelector {
                    match_labels: Some(inputs.stage_selector(stage)),
                    match_expressions: None,
                }),
                ..TopologySpreadConstraint::default()
            },
        ]),
        ..PodSpec::default()
    }
}

/// The Deployment of one stage.
pub fn deployment(inputs: &Inputs<'_>, stage: Stage, config_hash: &str) -> Deployment {
    let (secret_vols, secret_mounts) = secret_volumes(inputs, stage);
    let port = if stage == Stage::Ingest && inputs.pipeline.spec.schedule.is_some() {
        RELAY_METRICS_PORT
    } else {
        METRICS_PORT
    };
    let pod = pod_spec(
        inputs,
        stage,
        containers(inputs, stage, &secret_mounts),
        pod_volumes(inputs, secret_vols),
    );
    Deployment {
        metadata: inputs.meta(
            names::deployment(&inputs.name, stage),
            inputs.stage_labels(stage),
        ),
        spec: Some(DeploymentSpec {
            replicas: replicas(inputs, stage),
            selector: LabelSelector {
                match_labels: Some(inputs.stage_selector(stage)),
                match_expressions: None,
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            revision_history_limit: Some(5),
            template: PodTemplateSpec {
                metadata: Some(pod_meta(inputs, stage, config_hash, port)),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}
