//! The plumbing the three controllers share, written once: the watch of the
//! controller's own kind, reconcile inside the finalizer, error policy,
//! status writes, and the end of an external resource's deletion.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, Predicate, WatchStreamExt, predicates, watcher};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::context::{Context, DELETE_GIVE_UP, FIELD_MANAGER};
use crate::error::{Error, Result};

/// A kind one of the controllers reconciles.
pub trait Reconciled:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// The `controller` label of the metrics.
    const CONTROLLER: &'static str;
    /// The finalizer the controller keeps on each object.
    const FINALIZER: &'static str;
    type Status: Serialize + PartialEq + Send + Sync;
    fn status(&self) -> Option<&Self::Status>;
}

/// A controller of `K` whose own watch passes only spec (generation) and
/// finalizer changes: the operator's status writes never wake the object
/// they were written to. Deletion bumps the generation, so it passes too.
pub fn controller<K: Reconciled>(api: Api<K>) -> Controller<K> {
    let (reader, writer) = reflector::store();
    let changes = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(forget_managed_fields)
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation::<K>.combine(predicates::finalizers::<K>),
            Default::default(),
        );
    Controller::for_stream(changes, reader)
        .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENCY))
}

/// Reconciles in flight at once per controller. Unbounded, a burst of a
/// thousand new pipelines holds a thousand half-built sets of children (and
/// their TLS keys) in memory at once, and none of them finishes sooner for
/// it: the API server and two cores are the limit either way.
pub const CONCURRENCY: u16 = 16;

/// Drops `metadata.managedFields` before an object enters a store: often
/// the largest part of an object, and never read by the operator.
pub fn forget_managed_fields<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// Keeps of an object's metadata only what a store of children (or of
/// Secret names) is read for: identity, owners, generation and the
/// operator's annotations. Labels and timestamps are most of the rest, and
/// thirteen children per pipeline make them the bulk of the operator's memory.
pub fn keep_identity<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    meta.labels = None;
    meta.creation_timestamp = None;
    meta.generate_name = None;
    meta.self_link = None;
}

/// Runs the controller of `K` in `namespace` (or all), woken by its own
/// watch alone, until `shutdown` resolves.
pub async fn run_alone<K, R, F>(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    reconcile: R,
) where
    K: Reconciled,
    R: FnMut(Arc<K>, Arc<Context>) -> F + Send + 'static,
    F: Future<Output = Result<Action>> + Send + 'static,
{
    let api = crate::api_for::<K>(&ctx.client, namespace.as_deref());
    run(controller(api), ctx, shutdown, reconcile).await;
}

/// Runs `controller` with the shared error policy until it shuts down.
pub async fn run<K, R, F>(
    controller: Controller<K>,
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    reconcile: R,
) where
    K: Reconciled,
    R: FnMut(Arc<K>, Arc<Context>) -> F + Send + 'static,
    F: Future<Output = Result<Action>> + Send + 'static,
{
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy::<K>, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => {
                    tracing::debug!(controller = K::CONTROLLER, object = %obj, "reconciled")
                }
                Err(error) => {
                    tracing::warn!(controller = K::CONTROLLER, %error, "reconcile failed")
                }
            }
        })
        .await;
}

/// One reconcile of `obj`: timed and counted, inside its finalizer (added
/// before anything else; `cleanup` runs on deletion), with the failure
/// count of the object reset on success.
pub async fn reconcile<K, A, AF, C, CF>(
    obj: Arc<K>,
    ctx: &Context,
    apply: A,
    cleanup: C,
) -> Result<Action>
where
    K: Reconciled,
    A: FnOnce(Arc<K>) -> AF,
    AF: Future<Output = Result<Action>>,
    C: FnOnce(Arc<K>) -> CF,
    CF: Future<Output = Result<Action>>,
{
    let _timer = ctx.metrics.reconcile(K::CONTROLLER);
    let name = obj.name_any();
    let namespace = obj.namespace().ok_or_else(|| {
        Error::MissingField(format!("{} {name}", K::kind(&())), "metadata.namespace")
    })?;
    let object = format!("{} {namespace}/{name}", K::kind(&()));
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let reference = ObjectRef::from_obj(&*obj);
    let action = finalizer(&api, K::FINALIZER, obj, |event| async {
        match event {
            Event::Apply(o) => apply(o).await,
            Event::Cleanup(o) => cleanup(o).await,
        }
    })
    .await
    .map_err(|e| Error::finalizer(object, e))?;
    ctx.succeeded(&reference);
    Ok(action)
}

/// Counts the failure by what failed and retries with per-object backoff.
pub fn error_policy<K: Reconciled>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failure(K::CONTROLLER, error.metric_label());
    let delay = ctx.failed(&ObjectRef::from_obj(&*obj));
    tracing::warn!(
        controller = K::CONTROLLER,
        object = %obj.name_any(),
        %error,
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// Writes `status` by server-side apply, unless it is what the object has.
pub async fn patch_status<K: Reconciled>(ctx: &Context, obj: &K, status: &K::Status) -> Result<()> {
    if obj.status() == Some(status) {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let body = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    ctx.metrics.write(K::CONTROLLER);
    Ok(())
}

/// The Event reasons and subject of an external resource's deletion.
pub struct Removal<'a> {
    /// What is removed, for notes: `topic x`, `table ks.t`.
    pub what: &'a str,
    /// Normal Event when the removal succeeded.
    pub done: &'static str,
    /// Normal Event when nothing was ever created, so nothing is removed.
    pub never_created: &'static str,
    /// Warning Event when the removal is given up after [`DELETE_GIVE_UP`].
    pub abandoned: &'static str,
}

/// Ends the deletion of `obj` after its external resource was removed
/// (`result`): releases the finalizer on success, at once when `created` is
/// false (nothing of ours can exist), or after [`DELETE_GIVE_UP`] of
/// failures, so that a dead cluster never blocks a namespace's deletion.
pub async fn finish_removal<K: Reconciled>(
    ctx: &Context,
    obj: &K,
    removal: Removal<'_>,
    created: bool,
    result: Result<String>,
) -> Result<Action> {
    let regarding = obj.object_ref(&());
    let deleting_for = obj
        .meta()
        .deletion_timestamp
        .as_ref()
        .map(|t| Timestamp::now().duration_since(t.0))
        .unwrap_or_default();
    let what = removal.what;
    let (type_, reason, note) = match result {
        Ok(note) => {
            ctx.metrics.write(K::CONTROLLER);
            (EventType::Normal, removal.done, note)
        }
        Err(error) if !created => (
            EventType::Normal,
            removal.never_created,
            format!("{what} was never created by the operator, so nothing is removed: {error}"),
        ),
        Err(error) if deleting_for > DELETE_GIVE_UP => (
            EventType::Warning,
            removal.abandoned,
            format!("gave up removing {what} after {DELETE_GIVE_UP:#}; it may remain: {error}"),
        ),
        Err(error) => return Err(error),
    };
    ctx.event(&regarding, type_, reason, "Delete", note).await;
    Ok(Action::await_change())
}
