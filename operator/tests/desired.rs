//! The pure builders: golden YAML of every child, and the properties that
//! must hold whatever the spec (restricted pods, replicas vs HPA, secrets).
//!
//! Snapshots live in `tests/snapshots/`; regenerate them with
//! `UPDATE_SNAPSHOTS=1 cargo test -p taxistream-operator --test desired`
//! and review the diff.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, PodSpec};
use serde::Deserialize;
use taxistream_crds::worker_config::WorkerConfig;
use taxistream_crds::{CassandraSink, KafkaTopic, TaxiPipeline};
use taxistream_operator::pipeline::desired::{self, Desired, Inputs, ResolvedTopics, config};

struct Fixture {
    pipeline: TaxiPipeline,
    topics: Vec<KafkaTopic>,
    sink: CassandraSink,
}

fn load(name: &str) -> Fixture {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut pipeline = None;
    let mut topics = Vec::new();
    let mut sink = None;
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(doc).unwrap();
        match value["kind"].as_str().unwrap() {
            "TaxiPipeline" => {
                pipeline = Some(serde_yaml::from_value::<TaxiPipeline>(value).unwrap())
            }
            "KafkaTopic" => topics.push(serde_yaml::from_value::<KafkaTopic>(value).unwrap()),
            "CassandraSink" => sink = Some(serde_yaml::from_value::<CassandraSink>(value).unwrap()),
            other => panic!("unexpected kind {other}"),
        }
    }
    let mut pipeline = pipeline.unwrap();
    pipeline.metadata.namespace = Some("taxi".into());
    pipeline.metadata.uid = Some("00000000-0000-4000-8000-000000000001".into());
    pipeline.metadata.generation = Some(1);
    Fixture {
        pipeline,
        topics,
        sink: sink.unwrap(),
    }
}

fn resolved(f: &Fixture) -> ResolvedTopics {
    let find = |n: &str| {
        f.topics
            .iter()
            .find(|t| t.metadata.name.as_deref() == Some(n))
            .unwrap()
    };
    let t = &f.pipeline.spec.topics;
    ResolvedTopics {
        trips: find(&t.trips).topic_name().to_owned(),
        aggregates: find(&t.aggregates).topic_name().to_owned(),
        dead_letters: find(&t.dead_letters).topic_name().to_owned(),
        trips_partitions: find(&t.trips).spec.partitions,
        aggregates_partitions: find(&t.aggregates).spec.partitions,
    }
}

fn build_with(f: &Fixture, topics: ResolvedTopics) -> (Vec<Desired>, String) {
    let inputs = Inputs::new(&f.pipeline, "taxistream-worker:test", topics, &f.sink.spec).unwrap();
    let worker = config::worker_config(&inputs).unwrap();
    let (cm, hash) = config::config_map(&inputs, &worker).unwrap();
    (desired::build_all(&inputs, &hash, &cm).unwrap(), hash)
}

fn build(f: &Fixture) -> Vec<Desired> {
    build_with(f, resolved(f)).0
}

fn render(children: &[Desired]) -> String {
    children
        .iter()
        .map(|c| format!("---\n{}", serde_yaml::to_string(&c.object).unwrap()))
        .collect()
}

fn check_snapshot(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing; run with UPDATE_SNAPSHOTS=1", path.display()));
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the builders' output at line {}:\n  expected: {:?}\n  actual:   {:?}\nrun with UPDATE_SNAPSHOTS=1 and review the diff",
            path.display(),
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}

fn typed<K: serde::de::DeserializeOwned>(children: &[Desired], kind: &str) -> Vec<K> {
    children
        .iter()
        .filter(|c| c.resource.kind == kind)
        .map(|c| serde_json::from_value(c.object.clone()).unwrap())
        .collect()
}

fn pod_specs(children: &[Desired]) -> Vec<(String, PodSpec)> {
    let mut out: Vec<(String, PodSpec)> = typed::<Deployment>(children, "Deployment")
        .into_iter()
        .map(|d| {
            (
                d.metadata.name.unwrap(),
                d.spec.unwrap().template.spec.unwrap(),
            )
        })
        .collect();
    for c in typed::<CronJob>(children, "CronJob") {
        let pod = c
            .spec
            .unwrap()
            .job_template
            .spec
            .unwrap()
            .template
            .spec
            .unwrap();
        out.push((c.metadata.name.unwrap(), pod));
    }
    out
}

#[test]
fn full_pipeline_matches_snapshot() {
    check_snapshot("full.yaml", &render(&build(&load("full.yaml"))));
}

#[test]
fn minimal_pipeline_matches_snapshot() {
    check_snapshot("minimal.yaml", &render(&build(&load("minimal.yaml"))));
}

#[test]
fn every_child_is_owned_by_the_pipeline() {
    for f in [load("full.yaml"), load("minimal.yaml")] {
        for child in build(&f) {
            let owners = child.object["metadata"]["ownerReferences"]
                .as_array()
                .unwrap();
            assert_eq!(owners.len(), 1, "{}", child.describe());
            assert_eq!(owners[0]["kind"], "TaxiPipeline");
            assert_eq!(owners[0]["uid"], "00000000-0000-4000-8000-000000000001");
            assert_eq!(owners[0]["controller"], true);
            assert_eq!(child.object["metadata"]["namespace"], "taxi");
        }
    }
}

#[test]
fn every_pod_meets_the_restricted_pod_security_standard() {
    for f in [load("full.yaml"), load("minimal.yaml")] {
        let pods = pod_specs(&build(&f));
        assert!(pods.len() >= 3);
        for (name, pod) in pods {
            assert_eq!(pod.automount_service_account_token, Some(false), "{name}");
            let psc = pod.security_context.clone().unwrap();
            assert_eq!(psc.run_as_non_root, Some(true), "{name}");
            assert_ne!(psc.run_as_user, Some(0), "{name}");
            assert_eq!(
                psc.seccomp_profile.unwrap().type_,
                "RuntimeDefault",
                "{name}"
            );
            assert!(pod.host_network.is_none() && pod.host_pid.is_none() && pod.host_ipc.is_none());
            for v in pod.volumes.clone().unwrap_or_default() {
                assert!(v.host_path.is_none(), "{name}: hostPath volume {}", v.name);
            }
            for c in pod
                .containers
                .iter()
                .chain(pod.init_containers.iter().flatten())
            {
                let sc = c.security_context.clone().unwrap();
                assert_eq!(
                    sc.allow_privilege_escalation,
                    Some(false),
                    "{name}/{}",
                    c.name
                );
                assert_eq!(
                    sc.read_only_root_filesystem,
                    Some(true),
                    "{name}/{}",
                    c.name
                );
                assert_eq!(sc.run_as_non_root, Some(true), "{name}/{}", c.name);
                assert_ne!(sc.privileged, Some(true), "{name}/{}", c.name);
                let caps = sc.capabilities.unwrap();
                assert_eq!(caps.drop, Some(vec!["ALL".to_owned()]), "{name}/{}", c.name);
                assert!(caps.add.is_none(), "{name}/{}", c.name);
                assert!(
                    c.liveness_probe.is_some() && c.readiness_probe.is_some(),
                    "{name}/{}",
                    c.name
                );
                assert!(
                    c.resources.as_ref().unwrap().requests.is_some(),
                    "{name}/{}",
                    c.name
                );
            }
        }
    }
}

#[test]
fn autoscaled_stages_leave_replicas_to_the_hpa_capped_at_partitions() {
    let f = load("full.yaml");
    let mut topics = resolved(&f);
    topics.trips_partitions = 4;
    let (children, _) = build_with(&f, topics);
    let deployments = typed::<Deployment>(&children, "Deployment");
    let replicas = |n: &str| {
        deployments
            .iter()
            .find(|d| d.metadata.name.as_deref() == Some(n))
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
            .replicas
    };
    assert_eq!(replicas("yellow-2025-ingest"), Some(1));
    assert_eq!(replicas("yellow-2025-aggregate"), None);
    assert_eq!(replicas("yellow-2025-sink"), None);
    let hpas = typed::<HorizontalPodAutoscaler>(&children, "HorizontalPodAutoscaler");
    assert_eq!(hpas.len(), 2);
    let aggregate = hpas
        .iter()
        .find(|h| h.metadata.name.as_deref() == Some("yellow-2025-aggregate"))
        .unwrap();
    let spec = aggregate.spec.as_ref().unwrap();
    // maxReplicas 12 in the spec, but the trips topic has 4 partitions.
    assert_eq!((spec.min_replicas, spec.max_replicas), (Some(2), 4));
    let metrics = spec.metrics.as_ref().unwrap();
    assert_eq!(metrics[0].type_, "Resource");
    assert_eq!(
        metrics[1].external.as_ref().unwrap().metric.name,
        "taxistream_consumer_lag"
    );
    let sink = hpas
        .iter()
        .find(|h| h.metadata.name.as_deref() == Some("yellow-2025-sink"))
        .unwrap();
    assert_eq!(
        sink.spec.as_ref().unwrap().metrics.as_ref().unwrap().len(),
        1,
        "CPU only without targetConsumerLag"
    );
}

#[test]
fn suspend_scales_every_stage_to_zero() {
    let mut f = load("full.yaml");
    f.pipeline.spec.suspend = true;
    let children = build(&f);
    for d in typed::<Deployment>(&children, "Deployment") {
        assert_eq!(d.spec.unwrap().replicas, Some(0), "{:?}", d.metadata.name);
    }
    assert!(typed::<HorizontalPodAutoscaler>(&children, "HorizontalPodAutoscaler").is_empty());
    let cron = typed::<CronJob>(&children, "CronJob");
    assert_eq!(cron[0].spec.as_ref().unwrap().suspend, Some(true));
}

#[test]
fn a_schedule_moves_ingest_into_a_cron_job_and_keeps_the_relay_running() {
    let f = load("full.yaml");
    let children = build(&f);
    let ingest = typed::<Deployment>(&children, "Deployment")
        .into_iter()
        .find(|d| d.metadata.name.as_deref() == Some("yellow-2025-ingest"))
        .unwrap();
    let containers: Vec<String> = ingest
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(containers, vec!["relay"]);
    let cron = &typed::<CronJob>(&children, "CronJob")[0];
    let spec = cron.spec.as_ref().unwrap();
    assert_eq!(spec.schedule, "0 6 * * *");
    assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
    let pod = spec
        .job_template
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    assert_eq!(
        pod.containers[0].args.as_ref().unwrap(),
        &[
            "ingest",
            "--config",
            "/etc/taxistream/worker.yaml",
            "--exit-when-idle"
        ]
    );

    // Without a schedule, ingest and relay share the Deployment and no CronJob exists.
    let m = build(&load("minimal.yaml"));
    assert!(typed::<CronJob>(&m, "CronJob").is_empty());
    let ingest = typed::<Deployment>(&m, "Deployment")
        .into_iter()
        .next()
        .unwrap();
    let names: Vec<String> = ingest
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, vec!["ingest", "relay"]);
    // Both read worker.yaml; the relay serves its endpoints on its own port.
    let ingest = typed::<Deployment>(&m, "Deployment")
        .into_iter()
        .next()
        .unwrap();
    let relay = ingest
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers
        .remove(1);
    assert_eq!(
        relay.args.unwrap(),
        ["relay", "--config", "/etc/taxistream/worker.yaml"]
    );
    let env = relay.env.unwrap();
    let port = env
        .iter()
        .find(|e| e.name == "TAXISTREAM_METRICS_PORT")
        .unwrap();
    assert_eq!(port.value.as_deref(), Some("9091"));
    assert_eq!(relay.ports.unwrap()[0].container_port, 9091);
}

#[test]
fn stages_mount_only_the_secrets_they_read() {
    let f = load("full.yaml");
    let children = build(&f);
    let secrets_of = |stage: &str| -> Vec<String> {
        let d = typed::<Deployment>(&children, "Deployment")
            .into_iter()
            .find(|d| d.metadata.name.as_deref() == Some(&format!("yellow-2025-{stage}")))
            .unwrap();
        d.spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .volumes
            .unwrap()
            .into_iter()
            .filter_map(|v| v.secret.and_then(|s| s.secret_name))
            .collect()
    };
    assert_eq!(
        secrets_of("ingest"),
        vec![
            "kafka-tls",
            "kafka-user",
            "taxistream-postgres",
            "yellow-2025-worker-tls"
        ]
    );
    assert_eq!(
        secrets_of("aggregate"),
        vec!["kafka-tls", "kafka-user", "yellow-2025-worker-tls"]
    );
    assert_eq!(
        secrets_of("sink"),
        vec![
            "cassandra-user",
            "kafka-tls",
            "kafka-user",
            "yellow-2025-worker-tls"
        ]
    );
}

#[test]
fn config_map_holds_the_worker_contract_and_its_hash_tracks_the_spec() {
    let f = load("full.yaml");
    let (children, hash) = build_with(&f, resolved(&f));
    let cm = &typed::<ConfigMap>(&children, "ConfigMap")[0];
    let data = cm.data.as_ref().unwrap();
    let worker: WorkerConfig = serde_yaml::from_str(&data["worker.yaml"]).unwrap();
    assert_eq!(worker.pipeline, "taxi/yellow-2025");
    assert_eq!(worker.source.inputs.len(), 6, "2025-01..2025-06 expanded");
    assert_eq!(worker.topics.trips, "taxistream.trips");
    assert_eq!(
        (
            worker.aggregation.window_seconds,
            worker.aggregation.slide_seconds
        ),
        (900, 300)
    );
    assert_eq!(
        worker.postgres.url_file,
        "/var/run/secrets/taxistream/taxistream-postgres/url"
    );
    assert_eq!(worker.metrics_port, 9090);
    assert_eq!(data.len(), 1, "one file: worker.yaml");
    let serialized =
        serde_yaml::to_string(&children.iter().map(|c| &c.object).collect::<Vec<_>>()).unwrap();
    for secret_word in ["password:", "BEGIN CERTIFICATE", "PRIVATE KEY"] {
        assert!(
            !serialized.contains(secret_word),
            "{secret_word} leaked into a child"
        );
    }

    // Pod templates carry the hash, so a config change rolls the pods.
    for d in typed::<Deployment>(&children, "Deployment") {
        let annotations = d
            .spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap();
        assert_eq!(annotations["taxistream.dev/config-hash"], hash);
    }
    let mut changed = load("full.yaml");
    changed.pipeline.spec.aggregation.allowed_lateness = std::time::Duration::from_secs(60).into();
    let (_, other) = build_with(&changed, resolved(&changed));
    assert_ne!(hash, other);
}

/// The snapshots are valid Kubernetes objects for the oldest and newest
/// supported clusters, checked offline by `kubernetes-validate` (installed
/// by `scripts/setup.sh`), strictly: an unknown field fails.
#[test]
fn snapshots_validate_against_kubernetes_schemas() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    for version in ["1.33.0", "1.36.0"] {
        let output = std::process::Command::new("kubernetes-validate")
            .args(["--strict", "--quiet", "-k", version])
            .arg(dir.join("full.yaml"))
            .arg(dir.join("minimal.yaml"))
            .output();
        match output {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("kubernetes-validate is not on PATH: run `make setup` (scripts/setup.sh)")
            }
            Err(e) => panic!("running kubernetes-validate: {e}"),
            Ok(out) => assert!(
                out.status.success(),
                "kubernetes-validate {version}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
}
