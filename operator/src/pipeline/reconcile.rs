//! Where a TaxiPipeline's children are applied and its status written.
//!
//! Every child is applied with server-side apply under one field manager.
//! Before applying, the child is read and its `taxistream.dev/applied-hash`
//! compared with the hash of what we would apply, so a pipeline whose
//! children are already as desired causes no write at all.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::ApiResource;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;
use sha2::{Digest, Sha256};
use taxistream_crds::pipeline::{PipelinePhase, TlsStatus};
use taxistream_crds::{CassandraSink, KafkaTopic, TaxiPipeline, conditions};

use super::desired::{
    self, ANNOTATION_APPLIED_HASH, Desired, Inputs, ResolvedTopics, Stage, config, names, tls,
};
use super::status::{self, Dependency, Observed};
use super::validate;
use super::watched::{Lookup, Watched};
use crate::context::{Context, FIELD_MANAGER};
use crate::controller::{self, Reconciled};
use crate::error::{Error, Result};

pub const FINALIZER: &str = "taxistream.dev/pipeline";
/// Periodic re-check: certificate renewal and drift of children.
const RESYNC: Duration = Duration::from_secs(300);
/// Re-check for a referenced Secret that does not exist yet.
const SECRET_RECHECK: Duration = Duration::from_secs(30);

pub async fn reconcile(pipeline: Arc<TaxiPipeline>, ctx: Arc<Context>) -> Result<Action> {
    let ctx = &*ctx;
    controller::reconcile(
        pipeline,
        ctx,
        |p| async move { apply(&p, ctx).await },
        |p| async move { cleanup(&p, ctx).await },
    )
    .await
}

fn topic_dependency(topic: Option<&KafkaTopic>, bootstrap: &str) -> Dependency {
    let Some(topic) = topic else {
        return Dependency::NotFound;
    };
    if topic.spec.cluster.bootstrap_servers != bootstrap {
        return Dependency::NotReady(format!(
            "it is on Kafka cluster {} but the pipeline uses {bootstrap}",
            topic.spec.cluster.bootstrap_servers
        ));
    }
    ready_dependency(topic.status.as_ref().map(|s| s.conditions.as_slice()))
}

fn ready_dependency(conds: Option<&[conditions::Condition]>) -> Dependency {
    match conds.and_then(|c| conditions::find(c, conditions::READY)) {
        Some(c) if c.status == conditions::TRUE => Dependency::Ready,
        Some(c) => Dependency::NotReady(c.message.clone()),
        None => Dependency::NotReady("not reconciled yet".to_owned()),
    }
}

fn partitions(topic: &KafkaTopic) -> i32 {
    topic
        .status
        .as_ref()
        .and_then(|s| s.partitions)
        .unwrap_or(topic.spec.partitions)
}

async fn apply(pipeline: &TaxiPipeline, ctx: &Context) -> Result<Action> {
    let now = crate::context::now();
    let namespace = pipeline.namespace().unwrap_or_default();
    let spec = &pipeline.spec;
    let topics_api: Api<KafkaTopic> = Api::namespaced(ctx.client.clone(), &namespace);
    let sinks_api: Api<CassandraSink> = Api::namespaced(ctx.client.clone(), &namespace);

    // What the watches hold is read from memory; without them (or before
    // their first list) from the API server.
    let watched = ctx.watched(&namespace);
    let mut observed = Observed {
        invalid: validate::check(spec),
        ..Observed::default()
    };
    let mut found = Vec::new();
    for (field, name) in [
        ("trips", &spec.topics.trips),
        ("aggregates", &spec.topics.aggregates),
        ("deadLetters", &spec.topics.dead_letters),
    ] {
        let topic = match &watched {
            Some(w) => w.topic(&namespace, name),
            None => topics_api.get_opt(name).await?,
        };
        observed.topics.push((
            field,
            name.clone(),
            topic_dependency(topic.as_ref(), &spec.kafka.bootstrap_servers),
        ));
        found.push(topic);
    }
    let sink = match &watched {
        Some(w) => w.sink(&namespace, &spec.cassandra_sink),
        None => sinks_api.get_opt(&spec.cassandra_sink).await?,
    };
    observed.sink = Some((
        spec.cassandra_sink.clone(),
        match &sink {
            None => Dependency::NotFound,
            Some(s) => ready_dependency(s.status.as_ref().map(|s| s.conditions.as_slice())),
        },
    ));

    // The trips partitions as the broker reports them once the topic is Ready.
    observed.trips_partitions = found[0]
        .as_ref()
        .filter(|_| {
            observed
                .topics
                .first()
                .is_some_and(|(_, _, d)| *d == Dependency::Ready)
        })
        .and_then(|t| t.status.as_ref())
        .and_then(|s| s.partitions);
    let pinned = pipeline.status.as_ref().and_then(|s| s.trips_partitions);

    let mut written: Vec<String> = Vec::new();
    let mut tls_event = None;
    if let (None, [Some(trips), Some(aggregates), Some(dead_letters)], Some(sink)) =
        (&observed.invalid, found.as_slice(), &sink)
    {
        let topics = ResolvedTopics {
            trips: trips.topic_name().to_owned(),
            aggregates: aggregates.topic_name().to_owned(),
            dead_letters: dead_letters.topic_name().to_owned(),
            trips_partitions: pinned.unwrap_or_else(|| partitions(trips)),
            aggregates_partitions: partitions(aggregates),
        };
        let inputs = Inputs::new(pipeline, &ctx.settings.worker_image, topics, &sink.spec)?;
        match config::worker_config(&inputs) {
            Err(e) => observed.invalid = Some(("InvalidSource", format!("spec.source: {e}"))),
            Ok(worker_config) => {
                tls_event = apply_children(
                    ctx,
                    pipeline,
                    &inputs,
                    &worker_config,
                    now,
                    &mut observed,
                    &mut written,
                )
                .await?;
            }
        }
    }

    let new_status = status::compute(pipeline, &observed, Time(now));
    let old_conditions = pipeline
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    if pipeline.status.as_ref() != Some(&new_status) {
        controller::patch_status(ctx, pipeline, &new_status).await?;
    }

    let regarding = pipeline.object_ref(&());
    // Once per spec change: the generation the status has not described yet.
    let new_spec = pipeline.status.as_ref().and_then(|s| s.observed_generation)
        != pipeline.metadata.generation;
    if new_spec {
        for note in validate::ignored_replicas(spec) {
            ctx.event(
                &regarding,
                EventType::Warning,
                "ReplicasIgnored",
                "Reconcile",
                note,
            )
            .await;
        }
    }
    if !written.is_empty() {
        ctx.event(
            &regarding,
            EventType::Normal,
            "Applied",
            "Apply",
            written.join(", "),
        )
        .await;
    }
    if let Some((reason, note)) = tls_event {
        ctx.event(
            &regarding,
            EventType::Normal,
            reason,
            "IssueCertificate",
            note,
        )
        .await;
    }
    for t in status::transitions(&old_conditions, &new_status.conditions) {
        let type_ = if t.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.event(&regarding, type_, &t.reason, "Reconcile", t.note)
            .await;
    }
    // Secrets are not watched; look again soon for one that is missing.
    if observed.missing_secrets.is_empty() {
        Ok(Action::requeue(RESYNC))
    } else {
        Ok(Action::requeue(SECRET_RECHECK))
    }
}

/// Reads every child, and unless one of them (or a TLS Secret) belongs to
/// someone else, issues TLS material, applies the children that differ and
/// prunes the unwanted ones. Records what it saw in `observed`; returns the
/// TLS Event, if any.
///
/// A conflict stops every write: the workers mount the ConfigMap and the
/// TLS Secrets, run as the ServiceAccount, and the HPAs and PDBs act on the
/// Deployments, so nothing may be created that would use a foreign object.
async fn apply_children(
    ctx: &Context,
    pipeline: &TaxiPipeline,
    inputs: &Inputs<'_>,
    worker_config: &taxistream_crds::worker_config::WorkerConfig,
    now: Timestamp,
    observed: &mut Observed,
    written: &mut Vec<String>,
) -> Result<Option<(&'static str, String)>> {
    let (config_map, hash) = config::config_map(inputs, worker_config)?;
    let watched = ctx.watched(&inputs.namespace);
    let watched = watched.as_ref();
    observed.missing_secrets = missing_secrets(ctx, watched, inputs).await?;
    let tls_live = read_tls(ctx, watched, inputs).await?;
    let children = desired::build_all(inputs, &hash, &config_map)?;
    let mut live = Vec::with_capacity(children.len());
    for child in &children {
        live.push(
            read(
                ctx,
                watched,
                &child.resource,
                &inputs.namespace,
                &child.name,
            )
            .await?,
        );
    }
    let conflicts: Vec<String> = tls_live
        .foreign(inputs)
        .into_iter()
        .chain(children.iter().zip(&live).filter_map(|(child, live)| {
            live.as_ref()
                .filter(|l| !controlled_by_us(&l.metadata, inputs))
                .map(|_| child.describe())
        }))
        .collect();
    if !conflicts.is_empty() {
        observed.invalid = Some((
            "ChildConflict",
            format!(
                "not controlled by this TaxiPipeline, so left alone: {}; delete or rename them. Nothing is applied until then",
                conflicts.join(", ")
            ),
        ));
        let ours = children
            .iter()
            .zip(live)
            .filter_map(|(child, live)| {
                live.map(|l| (child.resource.kind.clone(), child.name.clone(), l))
            })
            .filter(|(_, _, l)| controlled_by_us(&l.metadata, inputs));
        let deployments = stage_deployments(inputs, ours)?;
        observed.deployments = (!deployments.is_empty()).then_some(deployments);
        return Ok(None);
    }

    let (tls_status, tls_event) = ensure_tls(ctx, inputs, pipeline, tls_live, now, written).await?;
    observed.tls = Some(tls_status);
    observed.config_hash = Some(hash.clone());
    let wanted: Vec<(String, String)> = children
        .iter()
        .map(|c| (c.resource.kind.clone(), c.name.clone()))
        .collect();
    let mut applied = Vec::new();
    for (child, live) in children.into_iter().zip(live) {
        let (kind, name) = (child.resource.kind.clone(), child.name.clone());
        let obj = apply_child(ctx, inputs, child, live, written).await?;
        applied.push((kind, name, obj));
    }
    prune(ctx, watched, inputs, &wanted, written).await?;
    observed.deployments = Some(stage_deployments(inputs, applied.into_iter())?);
    Ok(tls_event)
}

/// `resource`/`name` as the watches hold it, or as the API server has it
/// when they cannot tell (not started, or not a labelled child).
async fn read(
    ctx: &Context,
    watched: Option<&Watched>,
    resource: &ApiResource,
    namespace: &str,
    name: &str,
) -> Result<Option<DynamicObject>> {
    if let Some(w) = watched {
        match w.child(resource, namespace, name) {
            Lookup::Found(obj) => return Ok(Some(*obj)),
            Lookup::Absent => return Ok(None),
            Lookup::Unknown => {}
        }
    }
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), namespace, resource);
    Ok(api.get_opt(name).await?)
}

/// The stage Deployments among `(kind, name, object)` children.
fn stage_deployments(
    inputs: &Inputs<'_>,
    children: impl Iterator<Item = (String, String, DynamicObject)>,
) -> Result<Vec<(Stage, Deployment)>> {
    let mut out = Vec::new();
    for (kind, name, obj) in children {
        let Some(stage) = Stage::ALL
            .into_iter()
            .find(|s| names::deployment(&inputs.name, *s) == name)
        else {
            continue;
        };
        if kind != "Deployment" {
            continue;
        }
        let d: Deployment = obj.try_parse().map_err(|source| Error::Decode {
            what: format!("Deployment {name}"),
            source,
        })?;
        out.push((stage, d));
    }
    Ok(out)
}

async fn cleanup(pipeline: &TaxiPipeline, ctx: &Context) -> Result<Action> {
    if pipeline.status.as_ref().and_then(|s| s.phase) != Some(PipelinePhase::Deleting) {
        let mut status = pipeline.status.clone().unwrap_or_default();
        status.phase = Some(PipelinePhase::Deleting);
        controller::patch_status(ctx, pipeline, &status).await?;
    }
    ctx.event(
        &pipeline.object_ref(&()),
        EventType::Normal,
        "Deleting",
        "Delete",
        "deleting the pipeline; its workers, configuration and certificates go with it (owner references)".to_owned(),
    )
    .await;
    Ok(Action::await_change())
}

fn hash_of(value: &serde_json::Value) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    config::short_hash(&Sha256::digest(&bytes))
}

fn controlled_by_us(meta: &kube::api::ObjectMeta, inputs: &Inputs<'_>) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == inputs.owner.uid && o.controller == Some(true))
}

/// Applies `child` unless `live` (ours, read just before) already carries
/// its hash and shows no drift.
async fn apply_child(
    ctx: &Context,
    inputs: &Inputs<'_>,
    mut child: Desired,
    live: Option<DynamicObject>,
    written: &mut Vec<String>,
) -> Result<DynamicObject> {
    let hash = hash_of(&child.object);
    if let Some(meta) = child
        .object
        .get_mut("metadata")
        .and_then(|m| m.as_object_mut())
    {
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        if let Some(a) = annotations.as_object_mut() {
            a.insert(ANNOTATION_APPLIED_HASH.to_owned(), hash.clone().into());
        }
    }
    if let Some(live) = &live {
        let live_json = serde_json::to_value(live).map_err(|source| Error::Encode {
            what: child.describe(),
            source,
        })?;
        let drift = desired::drift::drifted(&child.resource.kind, &child.object, &live_json);
        if live.annotations().get(ANNOTATION_APPLIED_HASH) == Some(&hash) && drift.is_empty() {
            return Ok(live.clone());
        }
        if !drift.is_empty() {
            tracing::info!(child = %child.describe(), ?drift, "reverting out-of-band changes");
        }
    }
    hpa_replicas(inputs, &mut child, live.as_ref());
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &inputs.namespace, &child.resource);
    // Force: these objects are ours alone (controller owner reference checked before).
    let obj = api
        .patch(
            &child.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&child.object),
        )
        .await?;
    ctx.metrics.write(TaxiPipeline::CONTROLLER);
    written.push(format!("applied {}", child.describe()));
    Ok(obj)
}

/// An autoscaled Deployment is applied with the replica count it has (so
/// the HPA's choice stands), or with the HPA's minimum when it is new (so it
/// does not start at 1 and wait for the HPA). Not part of the applied hash:
/// the HPA changing the count is no reason to apply again.
fn hpa_replicas(inputs: &Inputs<'_>, child: &mut Desired, live: Option<&DynamicObject>) {
    if child.resource.kind != "Deployment" || child.object.pointer("/spec/replicas").is_some() {
        return;
    }
    let Some(stage) = Stage::ALL
        .into_iter()
        .find(|s| names::deployment(&inputs.name, *s) == child.name)
    else {
        return;
    };
    let Some((min, _)) = desired::autoscaling::hpa_bounds(inputs, stage) else {
        return;
    };
    let current = live.and_then(|l| l.data.pointer("/spec/replicas")).cloned();
    if let Some(spec) = child.object.get_mut("spec").and_then(|s| s.as_object_mut()) {
        spec.insert("replicas".to_owned(), current.unwrap_or_else(|| json!(min)));
    }
}

/// Deletes optional children the spec no longer asks for.
async fn prune(
    ctx: &Context,
    watched: Option<&Watched>,
    inputs: &Inputs<'_>,
    wanted: &[(String, String)],
    written: &mut Vec<String>,
) -> Result<()> {
    for (resource, name) in desired::optional_children(inputs) {
        if wanted.contains(&(resource.kind.clone(), name.clone())) {
            continue;
        }
        // Only an object of ours is ever deleted, and ours carry the label
        // the watches select on: not in their store means nothing to do.
        let live = match watched {
            Some(w) => match w.child(&resource, &inputs.namespace, &name) {
                Lookup::Found(obj) => Some(*obj),
                Lookup::Absent | Lookup::Unknown => None,
            },
            None => read(ctx, None, &resource, &inputs.namespace, &name).await?,
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &inputs.namespace, &resource);
        if let Some(live) = live
            && controlled_by_us(&live.metadata, inputs)
        {
            api.delete(&name, &DeleteParams::background()).await?;
            ctx.metrics.write(TaxiPipeline::CONTROLLER);
            written.push(format!("deleted {}/{name}", resource.kind));
        }
    }
    Ok(())
}

/// The user Secrets the workers mount that do not exist (reads only).
async fn missing_secrets(
    ctx: &Context,
    watched: Option<&Watched>,
    inputs: &Inputs<'_>,
) -> Result<Vec<String>> {
    let names: BTreeSet<String> = Stage::ALL
        .into_iter()
        .flat_map(|stage| desired::security::stage_secret_keys(inputs, stage).into_keys())
        .collect();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &inputs.namespace);
    let mut missing = Vec::new();
    for name in names {
        let exists = match watched {
            Some(w) => w.secret_exists(&inputs.namespace, &name),
            None => secrets.get_metadata_opt(&name).await?.is_some(),
        };
        if !exists {
            missing.push(name);
        }
    }
    Ok(missing)
}

/// The pipeline's two TLS Secrets as they are.
struct TlsLive {
    ca: Option<Secret>,
    cert: Option<Secret>,
}

impl TlsLive {
    /// `Secret/name` of those someone else controls.
    fn foreign(&self, inputs: &Inputs<'_>) -> Vec<String> {
        [&self.ca, &self.cert]
            .into_iter()
            .flatten()
            .filter(|s| !controlled_by_us(&s.metadata, inputs))
            .map(|s| format!("Secret/{}", s.name_any()))
            .collect()
    }
}

async fn read_tls(
    ctx: &Context,
    watched: Option<&Watched>,
    inputs: &Inputs<'_>,
) -> Result<TlsLive> {
    Ok(TlsLive {
        ca: read_secret(ctx, watched, inputs, &names::ca_secret(&inputs.name)).await?,
        cert: read_secret(ctx, watched, inputs, &names::cert_secret(&inputs.name)).await?,
    })
}

async fn read_secret(
    ctx: &Context,
    watched: Option<&Watched>,
    inputs: &Inputs<'_>,
    name: &str,
) -> Result<Option<Secret>> {
    let resource = ApiResource::erase::<Secret>(&());
    read(ctx, watched, &resource, &inputs.namespace, name)
        .await?
        .map(|obj| {
            obj.try_parse().map_err(|source| Error::Decode {
                what: format!("Secret {name}"),
                source,
            })
        })
        .transpose()
}

/// Makes sure the CA and worker certificate (ours, read just before) exist
/// and are far from expiry. Returns the TLS status and, when something was
/// issued, an Event.
async fn ensure_tls(
    ctx: &Context,
    inputs: &Inputs<'_>,
    pipeline: &TaxiPipeline,
    live: TlsLive,
    now: Timestamp,
    written: &mut Vec<String>,
) -> Result<(TlsStatus, Option<(&'static str, String)>)> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &inputs.namespace);
    let ca_name = names::ca_secret(&inputs.name);
    let cert_name = names::cert_secret(&inputs.name);
    let TlsLive {
        ca: ca_live,
        cert: cert_live,
    } = live;
    let ca = ca_live.as_ref().map(tls::ObservedCert::from_secret);
    let cert = cert_live.as_ref().map(tls::ObservedCert::from_secret);
    let mut status = pipeline
        .status
        .as_ref()
        .and_then(|s| s.tls.clone())
        .unwrap_or_default();
    status.ca_secret = ca_name.clone();
    status.cert_secret = cert_name.clone();
    let plan = tls::plan(now, ca.as_ref(), cert.as_ref());
    let cert_error = |source| Error::Certificate {
        pipeline: format!("{}/{}", inputs.namespace, inputs.name),
        source,
    };
    let (ca_pem, ca_key) = match (&plan, &ca) {
        (tls::TlsPlan::Keep, _) => {
            status.not_after = cert.and_then(|c| c.not_after).map(Time);
            return Ok((status, None));
        }
        (
            tls::TlsPlan::IssueCert,
            Some(tls::ObservedCert {
                cert_pem: Some(c),
                key_pem: Some(k),
                ..
            }),
        ) => (c.clone(), k.clone()),
        _ => {
            let issued = tls::issue_ca(&inputs.namespace, &inputs.name, now).map_err(cert_error)?;
            apply_secret(ctx, &secrets, &tls::ca_secret(inputs, &issued)).await?;
            written.push(format!("applied Secret/{ca_name}"));
            (issued.cert_pem, issued.key_pem)
        }
    };
    let issued = tls::issue_worker_cert(&inputs.namespace, &inputs.name, &ca_key, now)
        .map_err(cert_error)?;
    apply_secret(ctx, &secrets, &tls::cert_secret(inputs, &issued, &ca_pem)).await?;
    written.push(format!("applied Secret/{cert_name}"));
    let renewed = cert_live.is_some();
    if renewed {
        status.rotations = status.rotations.saturating_add(1);
    }
    status.last_rotation_time = Some(Time(now));
    status.not_after = Some(Time(issued.not_after));
    let event = if renewed {
        (
            "CertificateRenewed",
            format!(
                "renewed worker certificate in Secret {cert_name}, valid until {}",
                issued.not_after
            ),
        )
    } else {
        (
            "CertificateIssued",
            format!(
                "issued CA in Secret {ca_name} and worker certificate in Secret {cert_name}, valid until {}",
                issued.not_after
            ),
        )
    };
    Ok((status, Some(event)))
}

async fn apply_secret(ctx: &Context, api: &Api<Secret>, secret: &Secret) -> Result<()> {
    let name = secret.name_any();
    let mut body = serde_json::to_value(secret).map_err(|source| Error::Encode {
        what: format!("Secret {name}"),
        source,
    })?;
    if let Some(map) = body.as_object_mut() {
        map.insert("apiVersion".into(), "v1".into());
        map.insert("kind".into(), "Secret".into());
    }
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    ctx.metrics.write(TaxiPipeline::CONTROLLER);
    Ok(())
}
