//! Controller flows of the pipeline reconciler against the mock API server.

use std::sync::Arc;

use http::Method;
use serde_json::{Value, json};
use taxistream_crds::TaxiPipeline;

use super::reconcile::{FINALIZER, reconcile};
use crate::fixtures::{Expect, Seen, mock_context, run};

const NS: &str = "taxi";
const API: &str = "/apis/taxistream.dev/v1alpha1/namespaces/taxi";

/// The objects of `tests/fixtures/minimal.yaml`, as the API server would
/// return them: namespaced, with uid and generation; topics and sink Ready.
fn fixture() -> Vec<Value> {
    let text = include_str!("../../tests/fixtures/minimal.yaml");
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| {
            let mut v: Value = serde::Deserialize::deserialize(doc).unwrap();
            v["metadata"]["namespace"] = json!(NS);
            v["metadata"]["uid"] =
                json!(format!("uid-{}", v["metadata"]["name"].as_str().unwrap()));
            v["metadata"]["generation"] = json!(1);
            v["metadata"]["resourceVersion"] = json!("1");
            if v["kind"] != "TaxiPipeline" {
                v["status"] = json!({"conditions": [{
                    "type": "Ready", "status": "True", "reason": "Ok", "message": "ok",
                    "lastTransitionTime": "2026-01-01T00:00:00Z"
                }]});
            }
            if v["kind"] == "KafkaTopic" {
                // What the broker reports; 6 is the CRD's default.
                v["status"]["partitions"] = v["spec"]["partitions"]
                    .as_i64()
                    .map_or(json!(6), |p| json!(p));
            }
            v
        })
        .collect()
}

fn object(objects: &[Value], kind: &str, name: &str) -> Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .cloned()
        .unwrap()
}

fn pipeline(objects: &[Value], finalized: bool) -> TaxiPipeline {
    let mut v = object(objects, "TaxiPipeline", "demo");
    if finalized {
        v["metadata"]["finalizers"] = json!([FINALIZER]);
    }
    serde_json::from_value(v).unwrap()
}

fn dependency_reads(objects: &[Value], missing_trips: bool) -> Vec<Expect> {
    let trips = (!missing_trips).then(|| object(objects, "KafkaTopic", "trips"));
    vec![
        Expect::get(format!("{API}/kafkatopics/trips"), trips),
        Expect::get(
            format!("{API}/kafkatopics/aggregates"),
            Some(object(objects, "KafkaTopic", "aggregates")),
        ),
        Expect::get(
            format!("{API}/kafkatopics/dead-letters"),
            Some(object(objects, "KafkaTopic", "dead-letters")),
        ),
        Expect::get(
            format!("{API}/cassandrasinks/results"),
            Some(object(objects, "CassandraSink", "results")),
        ),
    ]
}

/// Every child of the minimal pipeline, in apply order.
const CHILDREN: [&str; 11] = [
    "/api/v1/namespaces/taxi/configmaps/demo-config",
    "/api/v1/namespaces/taxi/serviceaccounts/demo-workers",
    "/apis/rbac.authorization.k8s.io/v1/namespaces/taxi/roles/demo-workers",
    "/apis/rbac.authorization.k8s.io/v1/namespaces/taxi/rolebindings/demo-workers",
    "/apis/apps/v1/namespaces/taxi/deployments/demo-ingest",
    "/apis/apps/v1/namespaces/taxi/deployments/demo-aggregate",
    "/apis/apps/v1/namespaces/taxi/deployments/demo-sink",
    "/api/v1/namespaces/taxi/services/demo-metrics",
    "/apis/policy/v1/namespaces/taxi/poddisruptionbudgets/demo-ingest",
    "/apis/policy/v1/namespaces/taxi/poddisruptionbudgets/demo-aggregate",
    "/apis/policy/v1/namespaces/taxi/poddisruptionbudgets/demo-sink",
];
const CA: &str = "/api/v1/namespaces/taxi/secrets/demo-ca";
/// The user's Secret the minimal pipeline references (spec.postgres.urlSecretRef).
const POSTGRES: &str = "/api/v1/namespaces/taxi/secrets/postgres";

fn postgres_secret() -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "postgres", "namespace": NS}})
}
const CERT: &str = "/api/v1/namespaces/taxi/secrets/demo-worker-tls";

/// Optional children the minimal spec does not want: read, found absent.
fn prune_reads() -> Vec<Expect> {
    vec![
        Expect::get(
            "/apis/autoscaling/v2/namespaces/taxi/horizontalpodautoscalers/demo-aggregate",
            None,
        ),
        Expect::get(
            "/apis/autoscaling/v2/namespaces/taxi/horizontalpodautoscalers/demo-sink",
            None,
        ),
        Expect::get(
            "/apis/batch/v1/namespaces/taxi/cronjobs/demo-ingest-schedule",
            None,
        ),
    ]
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap()
}

fn find<'a>(seen: &'a [Seen], method: Method, path: &str) -> &'a Seen {
    seen.iter()
        .find(|s| s.method == method && s.path == path)
        .unwrap()
}

#[tokio::test]
async fn a_new_pipeline_gets_the_finalizer_before_anything_else() {
    let objects = fixture();
    let p = pipeline(&objects, false);
    let mut patched = object(&objects, "TaxiPipeline", "demo");
    patched["metadata"]["finalizers"] = json!([FINALIZER]);
    let (ctx, handle) = mock_context();
    let script = vec![Expect::patch(format!("{API}/taxipipelines/demo"), patched)];
    let (result, seen) = run(handle, script, reconcile(Arc::new(p), ctx)).await;
    result.unwrap();
    assert_eq!(seen[0].content_type, "application/json-patch+json");
    assert_eq!(seen[0].body[1]["value"], json!([FINALIZER]));
}

/// Creation: reads, TLS issue, every child applied, status, two Events.
/// Returns the requests so later passes can serve the applied objects.
async fn create(objects: &[Value]) -> Vec<Seen> {
    create_with(objects, true).await
}

async fn create_with(objects: &[Value], postgres_exists: bool) -> Vec<Seen> {
    let p = pipeline(objects, true);
    let events = if postgres_exists { 2 } else { 3 };
    create_script(
        p,
        objects,
        postgres_exists,
        &CHILDREN,
        prune_reads(),
        events,
    )
    .await
}

/// Creation of `p` whose children are `children` (in apply order): every
/// read first, then TLS issue and every apply, then the prune reads, the
/// status and `events` Events.
async fn create_script(
    p: TaxiPipeline,
    objects: &[Value],
    postgres_exists: bool,
    children: &[&str],
    prune: Vec<Expect>,
    events: usize,
) -> Vec<Seen> {
    let (ctx, handle) = mock_context();
    let mut script = dependency_reads(objects, false);
    script.push(Expect::get(POSTGRES, postgres_exists.then(postgres_secret)));
    script.extend([Expect::get(CA, None), Expect::get(CERT, None)]);
    script.extend(children.iter().map(|child| Expect::get(*child, None)));
    script.extend([Expect::apply(CA), Expect::apply(CERT)]);
    script.extend(children.iter().map(|child| Expect::apply(*child)));
    script.extend(prune);
    script.push(Expect::apply_status(
        format!("{API}/taxipipelines/demo/status"),
        object(objects, "TaxiPipeline", "demo"),
    ));
    script.extend((0..events).map(|_| Expect::event(NS)));
    let (result, seen) = run(handle, script, reconcile(Arc::new(p), ctx)).await;
    result.unwrap();
    seen
}

/// Where the writes of a pass over a settled pipeline go: after every read
/// of a child, before the prune reads.
fn first_prune_read(script: &[Expect]) -> usize {
    script
        .iter()
        .position(|e| e.path.contains("/horizontalpodautoscalers/"))
        .unwrap()
}

#[tokio::test]
async fn a_new_pipeline_creates_its_children_and_sets_conditions() {
    let objects = fixture();
    let seen = create(&objects).await;

    for write in seen.iter().filter(|s| s.method == Method::PATCH) {
        assert_eq!(
            write.content_type, "application/apply-patch+yaml",
            "{}",
            write.path
        );
        assert!(
            write.query.contains("fieldManager=taxistream-operator"),
            "{}",
            write.query
        );
        assert!(write.query.contains("force=true"), "{}", write.query);
    }
    for child in CHILDREN {
        let body = &find(&seen, Method::PATCH, child).body;
        assert_eq!(
            body["metadata"]["ownerReferences"][0]["uid"], "uid-demo",
            "{child}"
        );
        assert_eq!(
            body["metadata"]["ownerReferences"][0]["blockOwnerDeletion"], true,
            "{child}"
        );
        assert!(
            body["metadata"]["annotations"]["taxistream.dev/applied-hash"].is_string(),
            "{child}"
        );
    }
    let ca = &find(&seen, Method::PATCH, CA).body;
    assert_eq!(ca["type"], "kubernetes.io/tls");
    assert!(ca["data"]["tls.key"].is_string());

    let status = &find(
        &seen,
        Method::PATCH,
        &format!("{API}/taxipipelines/demo/status"),
    )
    .body["status"];
    assert_eq!(status["phase"], "Pending");
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(condition(status, "TopicsReady")["status"], "True");
    assert_eq!(condition(status, "SinkReady")["status"], "True");
    assert_eq!(condition(status, "Degraded")["status"], "False");
    let workers = condition(status, "WorkersAvailable");
    assert_eq!(
        (&workers["status"], &workers["reason"]),
        (&json!("False"), &json!("Unavailable"))
    );
    assert_eq!(condition(status, "Ready")["reason"], "Unavailable");
    assert_eq!(status["tls"]["caSecret"], "demo-ca");
    assert_eq!(status["tls"]["rotations"], 0);
    assert!(status["configHash"].is_string());
    assert_eq!(
        status["stages"]["aggregate"]["selector"].as_str().unwrap(),
        "app.kubernetes.io/component=aggregate,app.kubernetes.io/instance=demo,app.kubernetes.io/name=taxistream-worker"
    );

    let reasons: Vec<&Value> = seen
        .iter()
        .filter(|s| s.method == Method::POST)
        .map(|s| &s.body["reason"])
        .collect();
    assert_eq!(
        reasons,
        vec![&json!("Applied"), &json!("CertificateIssued")]
    );
}

/// Serves what the first pass applied, with Deployments rolled out.
fn live(seen: &[Seen], path: &str) -> Value {
    let mut obj = find(seen, Method::PATCH, path).body.clone();
    if obj["kind"] == "Deployment" {
        obj["metadata"]["generation"] = json!(1);
        let replicas = obj["spec"]["replicas"].clone();
        obj["status"] = json!({
            "observedGeneration": 1, "replicas": replicas,
            "readyReplicas": replicas, "availableReplicas": replicas
        });
    }
    obj
}

fn settled_reads(objects: &[Value], created: &[Seen]) -> Vec<Expect> {
    let mut script = dependency_reads(objects, false);
    script.push(Expect::get(POSTGRES, Some(postgres_secret())));
    script.push(Expect::get(CA, Some(live(created, CA))));
    script.push(Expect::get(CERT, Some(live(created, CERT))));
    for child in CHILDREN {
        script.push(Expect::get(child, Some(live(created, child))));
    }
    script.extend(prune_reads());
    script
}

/// The pipeline after a second reconcile found the children `created` made
/// and recorded their status, so the next reconcile has only its own work.
async fn settled(objects: &[Value], created: &[Seen]) -> TaxiPipeline {
    let status_path = format!("{API}/taxipipelines/demo/status");
    let mut p = pipeline(objects, true);
    p.status =
        serde_json::from_value(find(created, Method::PATCH, &status_path).body["status"].clone())
            .unwrap();
    let mut script = settled_reads(objects, created);
    script.push(Expect::apply_status(
        status_path.clone(),
        object(objects, "TaxiPipeline", "demo"),
    ));
    script.push(Expect::event(NS));
    let (ctx, handle) = mock_context();
    let (result, seen) = run(handle, script, reconcile(Arc::new(p.clone()), ctx)).await;
    result.unwrap();
    p.status =
        serde_json::from_value(find(&seen, Method::PATCH, &status_path).body["status"].clone())
            .unwrap();
    p
}

#[tokio::test]
async fn a_settled_pipeline_is_reconciled_without_a_single_write() {
    let objects = fixture();
    let created = create(&objects).await;
    let status_path = format!("{API}/taxipipelines/demo/status");

    // Second pass: children are as desired and the Deployments are available,
    // so only the status changes (Ready) and one Event says so.
    let mut p = pipeline(&objects, true);
    p.status =
        serde_json::from_value(find(&created, Method::PATCH, &status_path).body["status"].clone())
            .unwrap();
    let mut script = settled_reads(&objects, &created);
    script.push(Expect::apply_status(
        status_path.clone(),
        object(&objects, "TaxiPipeline", "demo"),
    ));
    script.push(Expect::event(NS));
    let (ctx, handle) = mock_context();
    let (result, seen) = run(handle, script, reconcile(Arc::new(p.clone()), ctx)).await;
    result.unwrap();
    let status = &find(&seen, Method::PATCH, &status_path).body["status"];
    assert_eq!(condition(status, "Ready")["status"], "True");
    assert_eq!(
        condition(status, "WorkersAvailable")["message"],
        "available replicas: ingest 1/1, aggregate 1/1, sink 1/1"
    );
    assert_eq!(status["phase"], "Running");
    assert_eq!(seen.last().unwrap().body["reason"], "Running");

    // Third pass: nothing to do, so nothing is written.
    p.status = serde_json::from_value(status.clone()).unwrap();
    let (ctx, handle) = mock_context();
    let (result, seen) = run(
        handle,
        settled_reads(&objects, &created),
        reconcile(Arc::new(p), ctx),
    )
    .await;
    result.unwrap();
    let writes: Vec<String> = seen
        .iter()
        .filter(|s| s.is_write())
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    assert!(writes.is_empty(), "a no-op reconcile wrote: {writes:?}");
}

#[tokio::test]
async fn a_missing_topic_sets_topics_ready_false_and_creates_nothing() {
    let objects = fixture();
    let p = pipeline(&objects, true);
    let (ctx, handle) = mock_context();
    let mut script = dependency_reads(&objects, true);
    script.push(Expect::apply_status(
        format!("{API}/taxipipelines/demo/status"),
        object(&objects, "TaxiPipeline", "demo"),
    ));
    script.push(Expect::event(NS));
    let (result, seen) = run(handle, script, reconcile(Arc::new(p), ctx)).await;
    result.unwrap();
    let status = &seen[4].body["status"];
    let topics = condition(status, "TopicsReady");
    assert_eq!(topics["status"], "False");
    assert_eq!(topics["reason"], "KafkaTopicNotFound");
    assert_eq!(topics["message"], "KafkaTopic trips not found");
    assert_eq!(
        condition(status, "Ready")["message"],
        "KafkaTopic trips not found"
    );
    assert_eq!(
        condition(status, "WorkersAvailable")["reason"],
        "NotCreated"
    );
    assert_eq!(status["phase"], "Pending");
    let event = &seen[5].body;
    assert_eq!(
        (&event["type"], &event["reason"]),
        (&json!("Warning"), &json!("KafkaTopicNotFound"))
    );
    assert_eq!(event["note"], "KafkaTopic trips not found");
}

#[tokio::test]
async fn an_invalid_schedule_is_degraded_with_the_parser_reason() {
    let objects = fixture();
    let mut p = pipeline(&objects, true);
    p.spec.schedule = Some("0 0 L * *".to_owned());
    let (ctx, handle) = mock_context();
    let mut script = dependency_reads(&objects, false);
    script.push(Expect::apply_status(
        format!("{API}/taxipipelines/demo/status"),
        object(&objects, "TaxiPipeline", "demo"),
    ));
    script.push(Expect::event(NS));
    let (result, seen) = run(handle, script, reconcile(Arc::new(p), ctx)).await;
    result.unwrap();
    let status = &seen[4].body["status"];
    assert_eq!(status["phase"], "Degraded");
    let degraded = condition(status, "Degraded");
    assert_eq!(
        (&degraded["status"], &degraded["reason"]),
        (&json!("True"), &json!("InvalidSchedule"))
    );
    assert!(
        degraded["message"]
            .as_str()
            .unwrap()
            .contains("not understood by Kubernetes")
    );
    assert_eq!(seen[5].body["reason"], "InvalidSchedule");
}

#[tokio::test]
async fn deleting_a_pipeline_runs_the_finalizer() {
    let objects = fixture();
    let mut v = object(&objects, "TaxiPipeline", "demo");
    v["metadata"]["finalizers"] = json!([FINALIZER]);
    v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    let p: TaxiPipeline = serde_json::from_value(v.clone()).unwrap();
    let mut released = v;
    released["metadata"]["finalizers"] = json!([]);
    let (ctx, handle) = mock_context();
    let script = vec![
        Expect::apply_status(
            format!("{API}/taxipipelines/demo/status"),
            object(&objects, "TaxiPipeline", "demo"),
        ),
        Expect::event(NS),
        Expect::patch(format!("{API}/taxipipelines/demo"), released),
    ];
    let (result, seen) = run(handle, script, reconcile(Arc::new(p), ctx)).await;
    result.unwrap();
    assert_eq!(seen[0].body["status"]["phase"], "Deleting");
    assert_eq!(seen[1].body["reason"], "Deleting");
    // The finalizer is removed by index, guarded by a test of its value.
    assert_eq!(seen[2].body[0]["op"], "test");
    assert_eq!(seen[2].body[0]["value"], FINALIZER);
    assert_eq!(seen[2].body[1]["op"], "remove");
}

#[tokio::test]
async fn children_the_spec_no_longer_wants_are_deleted() {
    let objects = fixture();
    let created = create(&objects).await;
    // Settle first, so that only the deletion remains to be done.
    let p = settled(&objects, &created).await;

    // An HPA left from when the aggregate stage autoscaled, and one made by someone else.
    let hpa = |uid: &str| {
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
               "metadata": {"name": "demo-aggregate", "namespace": NS,
                            "ownerReferences": [{"apiVersion": "taxistream.dev/v1alpha1", "kind": "TaxiPipeline",
                                                 "name": "demo", "uid": uid, "controller": true}]},
               "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "demo-aggregate"}, "maxReplicas": 3}})
    };
    let hpa_path = "/apis/autoscaling/v2/namespaces/taxi/horizontalpodautoscalers/demo-aggregate";
    let mut script = settled_reads(&objects, &created);
    let at = script.iter().position(|e| e.path == hpa_path).unwrap();
    script[at] = Expect::get(hpa_path, Some(hpa("uid-demo")));
    script.insert(at + 1, Expect::delete(hpa_path));
    script.push(Expect::event(NS));
    let (ctx, handle) = mock_context();
    let (result, seen) = run(handle, script, reconcile(Arc::new(p.clone()), ctx)).await;
    result.unwrap();
    assert_eq!(
        seen.last().unwrap().body["note"],
        "deleted HorizontalPodAutoscaler/demo-aggregate"
    );

    let mut script = settled_reads(&objects, &created);
    let at = script.iter().position(|e| e.path == hpa_path).unwrap();
    script[at] = Expect::get(hpa_path, Some(hpa("someone-else")));
    let (ctx, handle) = mock_context();
    let (result, seen) = run(handle, script, reconcile(Arc::new(p), ctx)).await;
    result.unwrap();
    assert!(
        seen.iter().all(|s| !s.is_write()),
        "an object we do not control was touched"
    );
}

#[tokio::test]
async fn an_expiring_worker_certificate_is_renewed_and_the_rotation_recorded() {
    let objects = fixture();
    let created = create(&objects).await;
    let status_path = format!("{API}/taxipipelines/demo/status");
    let mut p = pipeline(&objects, true);
    p.status =
        serde_json::from_value(find(&created, Method::PATCH, &status_path).body["status"].clone())
            .unwrap();

    let mut expiring = live(&created, CERT);
    let soon = crate::context::now() + k8s_openapi::jiff::SignedDuration::from_hours(24 * 5);
    expiring["metadata"]["annotations"]["taxistream.dev/not-after"] = json!(soon.to_string());
    let mut script = settled_reads(&objects, &created);
    let at = script.iter().position(|e| e.path == CERT).unwrap();
    script[at] = Expect::get(CERT, Some(expiring));
    // Renewal keeps the CA: only the worker Secret is written.
    let at = first_prune_read(&script);
    script.insert(at, Expect::apply(CERT));
    script.push(Expect::apply_status(
        status_path.clone(),
        object(&objects, "TaxiPipeline", "demo"),
    ));
    script.extend([Expect::event(NS), Expect::event(NS), Expect::event(NS)]);
    let (ctx, handle) = mock_context();
    let (result, seen) = run(handle, script, reconcile(Arc::new(p), ctx)).await;
    result.unwrap();
    let tls = &find(&seen, Method::PATCH, &status_path).body["status"]["tls"];
    assert_eq!(tls["rotations"], 1);
    assert!(tls["lastRotationTime"].is_string());
    let renewed = &find(&seen, Method::PATCH, CERT).body;
    let ca = &live(&created, CA);
    assert_eq!(
        renewed["data"]["ca.crt"], ca["data"]["tls.crt"],
        "the renewed certificate chains to the same CA"
    );
    let reasons: Vec<&Value> = seen
        .iter()
        .filter(|s| s.method == Method::POST)
        .map(|s| &s.body["reason"])
        .collect();
    assert_eq!(
        reasons,
        vec![
            &json!("Applied"),
            &json!("CertificateRenewed"),
            &json!("Running")
        ]
    );
}

#[tokio::test]
async fn a_missing_secret_is_named_in_workers_available() {
    let objects = fixture();
    let seen = create_with(&objects, false).await;
    let status = &find(
        &seen,
        Method::PATCH,
        &format!("{API}/taxipipelines/demo/status"),
    )
    .body["status"];
    let workers = condition(status, "WorkersAvailable");
    assert_eq!(workers["reason"], "SecretNotFound");
    assert!(
        workers["message"]
            .as_str()
            .unwrap()
            .starts_with("Secret postgres not found"),
        "{workers}"
    );
    // A new pipeline says so with a Warning too, not only in its status.
    let warning = seen
        .iter()
        .find(|s| s.method == Method::POST && s.body["reason"] == "SecretNotFound")
        .expect("a SecretNotFound Event");
    assert_eq!(warning.body["type"], "Warning");
    // The children are still applied, so the pods start once the Secret appears.
    assert!(
        seen.iter()
            .any(|s| s.method == Method::PATCH && s.path == CHILDREN[4])
    );
}

#[tokio::test]
async fn a_child_owned_by_someone_else_is_left_alone_and_reported() {
    let objects = fixture();
    let created = create(&objects).await;
    let status_path = format!("{API}/taxipipelines/demo/status");
    let mut p = pipeline(&objects, true);
    p.status =
        serde_json::from_value(find(&created, Method::PATCH, &status_path).body["status"].clone())
            .unwrap();
    let ingest = CHILDREN[4];
    let mut foreign = live(&created, ingest);
    foreign["metadata"]["ownerReferences"] = json!([]);
    let mut script = settled_reads(&objects, &created);
    let at = script.iter().position(|e| e.path == ingest).unwrap();
    script[at] = Expect::get(ingest, Some(foreign));
    // A conflict stops the pass before anything is written or pruned.
    script.truncate(first_prune_read(&script));
    script.push(Expect::apply_status(
        status_path.clone(),
        object(&objects, "TaxiPipeline", "demo"),
    ));
    script.push(Expect::event(NS));
    let (ctx, handle) = mock_context();
    let (result, seen) = run(handle, script, reconcile(Arc::new(p), ctx)).await;
    result.unwrap();
    assert!(
        !seen.iter().any(|s| s.path == ingest && s.is_write()),
        "the foreign Deployment was written"
    );
    let status = &find(&seen, Method::PATCH, &status_path).body["status"];
    let degraded = condition(status, "Degraded");
    assert_eq!(degraded["reason"], "ChildConflict");
    assert_eq!(
        degraded["message"],
        "not controlled by this TaxiPipeline, so left alone: Deployment/demo-ingest; delete or rename them. Nothing is applied until then"
    );
    assert_eq!(condition(status, "WorkersAvailable")["status"], "False");
    assert_eq!(seen.last().unwrap().body["reason"], "ChildConflict");
}

#[tokio::test]
async fn out_of_band_edits_to_a_child_are_reverted() {
    let objects = fixture();
    let created = create(&objects).await;
    let p = settled(&objects, &created).await;

    // Someone ran `kubectl scale deployment demo-sink --replicas=5`.
    let sink = CHILDREN[6];
    let mut scaled = live(&created, sink);
    scaled["spec"]["replicas"] = json!(5);
    let mut script = settled_reads(&objects, &created);
    let at = script.iter().position(|e| e.path == sink).unwrap();
    script[at] = Expect::get(sink, Some(scaled));
    // The server answers with the reverted Deployment, rolled out.
    let at = first_prune_read(&script);
    script.insert(at, Expect::patch(sink, live(&created, sink)));
    script.push(Expect::event(NS));
    let (ctx, handle) = mock_context();
    let (result, seen) = run(handle, script, reconcile(Arc::new(p), ctx)).await;
    result.unwrap();
    let revert = find(&seen, Method::PATCH, sink);
    assert_eq!(revert.content_type, "application/apply-patch+yaml");
    assert_eq!(revert.body["spec"]["replicas"], 1);
    assert_eq!(
        seen.last().unwrap().body["note"],
        "applied Deployment/demo-sink"
    );
}

#[tokio::test]
async fn a_foreign_config_map_on_a_new_pipeline_stops_every_write() {
    let objects = fixture();
    let p = pipeline(&objects, true);
    let config = CHILDREN[0];
    let foreign = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "demo-config", "namespace": NS},
        "data": {"worker.yaml": "kafka: {bootstrapServers: elsewhere:9092}"}});
    let (ctx, handle) = mock_context();
    let mut script = dependency_reads(&objects, false);
    script.push(Expect::get(POSTGRES, Some(postgres_secret())));
    script.extend([Expect::get(CA, None), Expect::get(CERT, None)]);
    script.push(Expect::get(config, Some(foreign)));
    script.extend(CHILDREN[1..].iter().map(|child| Expect::get(*child, None)));
    script.push(Expect::apply_status(
        format!("{API}/taxipipelines/demo/status"),
        object(&objects, "TaxiPipeline", "demo"),
    ));
    script.push(Expect::event(NS));
    let (result, seen) = run(handle, script, reconcile(Arc::new(p), ctx)).await;
    result.unwrap();
    let writes: Vec<&str> = seen
        .iter()
        .filter(|s| s.is_write() && s.method != Method::POST)
        .map(|s| s.path.as_str())
        .collect();
    assert_eq!(
        writes,
        vec![format!("{API}/taxipipelines/demo/status").as_str()],
        "no Deployment may mount a ConfigMap someone else wrote"
    );
    let status = &seen[seen.len() - 2].body["status"];
    assert_eq!(condition(status, "Degraded")["reason"], "ChildConflict");
    assert_eq!(
        condition(status, "WorkersAvailable")["reason"],
        "NotCreated"
    );
    assert_eq!(seen.last().unwrap().body["reason"], "ChildConflict");
}

#[tokio::test]
async fn an_autoscaled_stage_starts_at_min_replicas_and_ignored_replicas_are_reported() {
    let objects = fixture();
    let mut p = pipeline(&objects, true);
    // What `kubectl scale tp/demo --replicas=5` leaves when the stage autoscales.
    p.spec.workers.aggregate.replicas = 5;
    p.spec.workers.aggregate.autoscaling =
        Some(serde_json::from_value(json!({"minReplicas": 2, "maxReplicas": 4})).unwrap());
    let hpa = "/apis/autoscaling/v2/namespaces/taxi/horizontalpodautoscalers/demo-aggregate";
    let mut children = CHILDREN.to_vec();
    children.push(hpa);
    let prune = vec![
        Expect::get(
            "/apis/autoscaling/v2/namespaces/taxi/horizontalpodautoscalers/demo-sink",
            None,
        ),
        Expect::get(
            "/apis/batch/v1/namespaces/taxi/cronjobs/demo-ingest-schedule",
            None,
        ),
    ];
    let seen = create_script(p, &objects, true, &children, prune, 3).await;
    let aggregate = &find(&seen, Method::PATCH, CHILDREN[5]).body;
    assert_eq!(aggregate["spec"]["replicas"], 2, "starts at minReplicas");
    assert_eq!(
        find(&seen, Method::PATCH, hpa).body["spec"]["minReplicas"],
        2
    );
    let ignored = seen
        .iter()
        .find(|s| s.method == Method::POST && s.body["reason"] == "ReplicasIgnored")
        .expect("a ReplicasIgnored Event");
    assert_eq!(ignored.body["type"], "Warning");
    assert!(
        ignored.body["note"]
            .as_str()
            .unwrap()
            .starts_with("spec.workers.aggregate.replicas is 5 but the aggregate stage autoscales"),
        "{}",
        ignored.body["note"]
    );
}

#[tokio::test]
async fn the_trips_partitions_are_pinned_and_a_grown_trips_topic_is_reported() {
    let objects = fixture();
    let created = create(&objects).await;
    let status_path = format!("{API}/taxipipelines/demo/status");
    assert_eq!(
        find(&created, Method::PATCH, &status_path).body["status"]["tripsPartitions"],
        6,
        "pinned when the trips topic is first Ready"
    );
    let p = settled(&objects, &created).await;

    // Someone grew the trips topic to 12 partitions.
    let trips_path = format!("{API}/kafkatopics/trips");
    let mut grown = object(&objects, "KafkaTopic", "trips");
    grown["spec"]["partitions"] = json!(12);
    grown["status"]["partitions"] = json!(12);
    let mut script = settled_reads(&objects, &created);
    let at = script.iter().position(|e| e.path == trips_path).unwrap();
    script[at] = Expect::get(trips_path.clone(), Some(grown.clone()));
    script.push(Expect::apply_status(
        status_path.clone(),
        object(&objects, "TaxiPipeline", "demo"),
    ));
    script.push(Expect::event(NS));
    let (ctx, handle) = mock_context();
    let (result, seen) = run(handle, script, reconcile(Arc::new(p.clone()), ctx)).await;
    result.unwrap();
    let status = &find(&seen, Method::PATCH, &status_path).body["status"];
    assert_eq!(
        status["tripsPartitions"], 6,
        "never changed after it is pinned"
    );
    let topics = condition(status, "TopicsReady");
    assert_eq!(
        (&topics["status"], &topics["reason"]),
        (&json!("True"), &json!("TripsTopicGrown"))
    );
    assert!(
        topics["message"]
            .as_str()
            .unwrap()
            .contains("keeps every trip key on the first 6 partitions"),
        "{topics}"
    );
    assert_eq!(condition(status, "Ready")["status"], "True");
    let event = seen.last().unwrap();
    assert_eq!(
        (&event.body["type"], &event.body["reason"]),
        (&json!("Warning"), &json!("TripsTopicGrown"))
    );
    // The workers' Deployments were not touched: the pinned count still
    // bounds them, whatever the topic now has.
    assert!(
        seen.iter()
            .all(|s| s.method != Method::PATCH || s.path == status_path)
    );

    // Once reported, the next pass is quiet again.
    let mut p = p;
    p.status = serde_json::from_value(status.clone()).unwrap();
    let mut script = settled_reads(&objects, &created);
    script[at] = Expect::get(trips_path, Some(grown));
    let (ctx, handle) = mock_context();
    let (result, seen) = run(handle, script, reconcile(Arc::new(p), ctx)).await;
    result.unwrap();
    assert!(seen.iter().all(|s| !s.is_write()));
}

/// Stores as the pipeline watches fill them after their first list: what
/// `created` applied, and the referenced Secret.
fn watched_with(objects: &[Value], created: &[Seen]) -> super::watched::Watched {
    use kube::runtime::reflector::{self, store::Writer};
    use kube::runtime::watcher::Event;
    fn fill<K>(mut writer: Writer<K>, items: Vec<K>) -> reflector::Store<K>
    where
        K: kube::Resource + Clone + 'static,
        K::DynamicType: Eq + std::hash::Hash + Clone,
    {
        let store = writer.as_reader();
        writer.apply_watcher_event(&Event::Init);
        for item in items {
            writer.apply_watcher_event(&Event::InitApply(item));
        }
        writer.apply_watcher_event(&Event::InitDone);
        // The store reads as ready only while its writer lives.
        std::mem::forget(writer);
        store
    }
    fn parse<K: serde::de::DeserializeOwned>(v: Value) -> K {
        serde_json::from_value(v).unwrap()
    }
    let applied: Vec<Value> = created
        .iter()
        .filter(|s| s.method == Method::PATCH && !s.path.ends_with("/status"))
        .map(|s| live(created, &s.path))
        .collect();
    let children = super::desired::watched_kinds()
        .into_iter()
        .map(|resource| {
            // Trimmed as the watches trim them.
            let items = applied
                .iter()
                .filter(|o| o["kind"] == resource.kind.as_str())
                .map(|o| {
                    let mut obj = parse(o.clone());
                    super::keep_compared(&resource.kind, &mut obj);
                    obj
                })
                .collect();
            let store = fill(Writer::new(resource.clone()), items);
            (resource.kind.clone(), (resource, store))
        })
        .collect();
    let secrets = applied
        .iter()
        .filter(|o| o["kind"] == "Secret")
        .cloned()
        .chain([postgres_secret()])
        .map(parse)
        .collect();
    super::watched::Watched {
        topics: fill(
            Writer::default(),
            ["trips", "aggregates", "dead-letters"]
                .into_iter()
                .map(|n| parse(object(objects, "KafkaTopic", n)))
                .collect(),
        ),
        sinks: fill(
            Writer::default(),
            vec![parse(object(objects, "CassandraSink", "results"))],
        ),
        children,
        secrets: fill(Writer::default(), secrets),
    }
}

#[tokio::test]
async fn a_settled_pipeline_reads_watched_objects_from_memory() {
    let objects = fixture();
    let created = create(&objects).await;
    let p = settled(&objects, &created).await;
    let (ctx, handle) = mock_context();
    ctx.register_watched(Some(NS.to_owned()), watched_with(&objects, &created));
    // Everything is in the watches' stores: not a single request.
    let (result, seen) = run(handle, Vec::new(), reconcile(Arc::new(p), ctx)).await;
    result.unwrap();
    assert!(
        seen.is_empty(),
        "{:#?}",
        seen.iter().map(|s| &s.path).collect::<Vec<_>>()
    );
}
