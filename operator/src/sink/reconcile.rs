//! Where a CassandraSink's keyspace and table are created, kept in line
//! with the spec, and dropped on deletion when the policy says so.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use taxistream_crds::conditions::{DEGRADED, READY, new_condition, set_condition};
use taxistream_crds::results_table::SCHEMA_VERSION;
use taxistream_crds::{CassandraSink, CassandraSinkStatus, DeletionPolicy};

use super::schema;
use super::session::{self, connect};
use crate::conditions::{degraded_unchecked, publish_transitions};
use crate::context::Context;
use crate::controller::{self, Reconciled, Removal};
use crate::error::{Error, Result};

pub const FINALIZER: &str = "taxistream.dev/sink";
const RESYNC: Duration = Duration::from_secs(300);

pub async fn reconcile(sink: Arc<CassandraSink>, ctx: Arc<Context>) -> Result<Action> {
    let ctx = &*ctx;
    controller::reconcile(
        sink,
        ctx,
        |s| async move { apply(&s, ctx).await },
        |s| async move { cleanup(&s, ctx).await },
    )
    .await
}

/// DDL run, one sentence each for Events, and problems DDL cannot fix.
type Changes = (Vec<(&'static str, String)>, Option<String>);

async fn sync(sink: &CassandraSink, ctx: &Context) -> Result<Changes> {
    let spec = &sink.spec;
    let ks = &spec.keyspace.name;
    let table = format!("{ks}.{}", spec.table);
    let session = connect(&ctx.client, &sink.namespace().unwrap_or_default(), spec).await?;
    let mut changes = Vec::new();
    match session::keyspace_replication(&session, spec).await? {
        None => {
            session::ddl(&session, spec, schema::create_keyspace(spec)).await?;
            changes.push(("KeyspaceCreated", format!("created keyspace {ks}")));
        }
        Some(have) if !schema::replication_matches(&schema::replication(spec), &have) => {
            session::ddl(&session, spec, schema::alter_keyspace(spec)).await?;
            changes.push((
                "ReplicationChanged",
                format!(
                    "changed the replication of keyspace {ks} to {:?}; run a repair",
                    schema::replication(spec)
                ),
            ));
        }
        Some(_) => {}
    }
    let mut problem = None;
    match session::table(&session, spec).await? {
        None => {
            session::ddl(&session, spec, schema::create_table(spec)).await?;
            changes.push((
                "TableCreated",
                format!("created table {table} (schema version {SCHEMA_VERSION})"),
            ));
        }
        Some(observed) => {
            let (ttl_differs, order_problem) = schema::table_drift(spec, &observed);
            if ttl_differs {
                session::ddl(&session, spec, schema::alter_ttl(spec)).await?;
                changes.push((
                    "TtlChanged",
                    format!(
                        "set default_time_to_live of {table} to {}s",
                        spec.ttl_seconds
                    ),
                ));
            }
            problem = order_problem;
        }
    }
    for _ in &changes {
        ctx.metrics.write(CassandraSink::CONTROLLER);
    }
    Ok((changes, problem))
}

/// The status after a pass; `error` when the pass failed.
pub fn sink_status(
    sink: &CassandraSink,
    problem: Option<&str>,
    error: Option<&Error>,
    now: Time,
) -> CassandraSinkStatus {
    let generation = sink.metadata.generation;
    let spec = &sink.spec;
    let table = format!("{}.{}", spec.keyspace.name, spec.table);
    let mut status = sink.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    let ready = match (error, problem) {
        (Some(e), _) => {
            let reason = if matches!(e, Error::Secret { .. }) {
                "SecretUnavailable"
            } else {
                "CassandraError"
            };
            new_condition(READY, false, reason, e.to_string(), generation, now.clone())
        }
        (None, Some(p)) => new_condition(
            READY,
            false,
            "ClusteringOrderMismatch",
            p.to_owned(),
            generation,
            now.clone(),
        ),
        (None, None) => {
            status.schema_version = Some(SCHEMA_VERSION);
            status.table = Some(table.clone());
            new_condition(
                READY,
                true,
                "SchemaApplied",
                format!(
                    "keyspace {} and table {table} are in place (schema version {SCHEMA_VERSION})",
                    spec.keyspace.name
                ),
                generation,
                now.clone(),
            )
        }
    };
    set_condition(&mut status.conditions, ready);
    let degraded = match (error, problem) {
        (Some(_), _) => degraded_unchecked(&format!("table {table}"), generation, now),
        (None, Some(p)) => new_condition(
            DEGRADED,
            true,
            "ClusteringOrderMismatch",
            p.to_owned(),
            generation,
            now,
        ),
        (None, None) => new_condition(
            DEGRADED,
            false,
            "AsExpected",
            "the schema matches the spec",
            generation,
            now,
        ),
    };
    set_condition(&mut status.conditions, degraded);
    status
}

async fn apply(sink: &CassandraSink, ctx: &Context) -> Result<Action> {
    let now = Time(crate::context::now());
    let regarding = sink.object_ref(&());
    let old = sink
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let (status, result) = match sync(sink, ctx).await {
        Ok((changes, problem)) => {
            for (reason, note) in changes {
                ctx.event(&regarding, EventType::Normal, reason, "Reconcile", note)
                    .await;
            }
            (
                sink_status(sink, problem.as_deref(), None, now),
                Ok(Action::requeue(RESYNC)),
            )
        }
        Err(e) => (sink_status(sink, None, Some(&e), now), Err(e)),
    };
    controller::patch_status(ctx, sink, &status).await?;
    publish_transitions(ctx, &regarding, &old, &status.conditions).await;
    result
}

async fn cleanup(sink: &CassandraSink, ctx: &Context) -> Result<Action> {
    let regarding = sink.object_ref(&());
    let spec = &sink.spec;
    let table = format!("{}.{}", spec.keyspace.name, spec.table);
    if spec.deletion_policy != DeletionPolicy::Delete {
        ctx.event(
            &regarding,
            EventType::Normal,
            "SchemaRetained",
            "Delete",
            format!("deletionPolicy is Retain: table {table} stays"),
        )
        .await;
        return Ok(Action::await_change());
    }
    let result = async {
        let session = connect(&ctx.client, &sink.namespace().unwrap_or_default(), spec).await?;
        session::ddl(&session, spec, schema::drop_table(spec)).await?;
        let remaining = session::tables_in_keyspace(&session, spec).await?;
        if remaining.is_empty() {
            session::ddl(&session, spec, schema::drop_keyspace(spec)).await?;
            Ok::<_, Error>(format!(
                "dropped table {table} and the now empty keyspace {}",
                spec.keyspace.name
            ))
        } else {
            Ok(format!(
                "dropped table {table}; keyspace {} still holds {} other tables",
                spec.keyspace.name,
                remaining.len()
            ))
        }
    }
    .await;
    let removal = Removal {
        what: &format!("table {table}"),
        done: "SchemaDropped",
        never_created: "SchemaNeverCreated",
        abandoned: "SchemaDropAbandoned",
    };
    // A schema version is recorded once the table was in place.
    let created = sink
        .status
        .as_ref()
        .and_then(|s| s.schema_version)
        .is_some();
    controller::finish_removal(ctx, sink, removal, created, result).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use taxistream_crds::conditions;

    #[test]
    fn a_failed_pass_does_not_leave_an_old_degraded_verdict_standing() {
        let mut sink: CassandraSink = serde_json::from_value(json!({
            "apiVersion": "taxistream.dev/v1alpha1", "kind": "CassandraSink",
            "metadata": {"name": "results", "namespace": "taxi", "generation": 1},
            "spec": {"contactPoints": ["127.0.0.1"], "keyspace": {"name": "ks"}}
        }))
        .unwrap();
        let then = Time(crate::context::now());
        let mismatch = sink_status(&sink, Some("orders ASC"), None, then.clone());
        sink.status = Some(mismatch);
        sink.metadata.generation = Some(2);
        let error = Error::Cassandra {
            keyspace: "ks".into(),
            message: "unreachable".into(),
        };
        let status = sink_status(&sink, None, Some(&error), then);
        let degraded = conditions::find(&status.conditions, DEGRADED).unwrap();
        assert_eq!(degraded.status, conditions::UNKNOWN);
        assert_eq!(degraded.reason, crate::conditions::UNCHECKED);
        assert_eq!(degraded.observed_generation, Some(2));
    }
}
