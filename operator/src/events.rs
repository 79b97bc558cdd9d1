//! Publishing Events (`events.k8s.io/v1`) so that they never hide a change.
//!
//! kube's `Recorder` folds a repeated Event into a series of the first one
//! whenever type, reason and action match, so the note a person reads stays
//! the first one (`Applied` kept naming the first children, not the one
//! just reverted). Here the note is part of the key: only a truly repeated
//! Event (same object, type, reason, action and note) becomes a series.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use serde_json::json;

/// How long a published Event can still become a series.
const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(10);

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Key {
    regarding: String,
    warning: bool,
    reason: String,
    action: String,
    note: String,
}

struct Published {
    name: String,
    count: i32,
    last: Timestamp,
}

/// Publishes Events as `controller`, reporting instance `instance`.
pub struct Publisher {
    client: Client,
    controller: String,
    instance: String,
    published: Mutex<HashMap<Key, Published>>,
}

impl Publisher {
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        Self {
            client,
            controller: controller.to_owned(),
            instance: instance.to_owned(),
            published: Mutex::new(HashMap::new()),
        }
    }

    /// Creates the Event, or counts one more occurrence of an identical
    /// recent one.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let namespace = regarding.namespace.clone().unwrap_or_default();
        let key = Key {
            regarding: format!(
                "{}/{}/{}",
                regarding.kind.as_deref().unwrap_or_default(),
                namespace,
                regarding
                    .uid
                    .as_deref()
                    .or(regarding.name.as_deref())
                    .unwrap_or_default()
            ),
            warning: matches!(type_, EventType::Warning),
            reason: reason.to_owned(),
            action: action.to_owned(),
            note: note.clone(),
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        // The lock is never held across a request: publishing from many
        // reconciles at once must not queue behind one slow write.
        let repeat = {
            let mut published = self.published.lock().unwrap_or_else(|p| p.into_inner());
            published.retain(|_, p| p.last + SERIES_WINDOW > now);
            published.get_mut(&key).map(|seen| {
                seen.count = seen.count.saturating_add(1);
                seen.last = now;
                (seen.name.clone(), seen.count)
            })
        };
        if let Some((name, count)) = repeat {
            let series = EventSeries {
                count,
                last_observed_time: MicroTime(now),
            };
            api.patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "series": series })),
            )
            .await?;
            return Ok(());
        }
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(&self.controller),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(action.to_owned()),
            reason: Some(reason.to_owned()),
            note: Some(note),
            type_: Some(if key.warning { "Warning" } else { "Normal" }.to_owned()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        };
        api.create(&PostParams::default(), &event).await?;
        self.published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                key,
                Published {
                    name,
                    count: 1,
                    last: now,
                },
            );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use http::Method;
    use kube::Resource;
    use serde_json::json;
    use taxistream_crds::TaxiPipeline;

    use super::*;
    use crate::fixtures::{Expect, Reply, mock_context, run};

    #[tokio::test]
    async fn same_reason_new_note_is_a_new_event_and_a_true_repeat_a_series() {
        let p: TaxiPipeline = serde_json::from_value(json!({
            "apiVersion": "taxistream.dev/v1alpha1", "kind": "TaxiPipeline",
            "metadata": {"name": "demo", "namespace": "taxi", "uid": "uid-demo"},
            "spec": {"source": {"files": ["a.parquet"]},
                     "postgres": {"urlSecretRef": {"name": "pg", "key": "url"}},
                     "kafka": {"bootstrapServers": "kafka:9092"},
                     "topics": {"trips": "t", "aggregates": "a", "deadLetters": "d"},
                     "cassandraSink": "results"}
        }))
        .unwrap();
        let regarding = p.object_ref(&());
        let (ctx, handle) = mock_context();
        let events = "/apis/events.k8s.io/v1/namespaces/taxi/events";
        let publish = |note: &str| {
            ctx.event(
                &regarding,
                EventType::Normal,
                "Applied",
                "Apply",
                note.to_owned(),
            )
        };
        let script = vec![
            Expect::event("taxi"),
            Expect::event("taxi"),
            // A series goes to the first Event's generated name.
            Expect {
                method: Method::PATCH,
                path: format!("{events}/*"),
                reply: Reply::Echo,
            },
        ];
        let (_, seen) = run(handle, script, async {
            publish("applied Deployment/demo-ingest").await;
            publish("applied Deployment/demo-sink").await;
            publish("applied Deployment/demo-sink").await;
        })
        .await;
        assert_eq!(seen[0].body["note"], "applied Deployment/demo-ingest");
        assert_eq!(seen[1].method, Method::POST, "a new note is a new Event");
        assert_eq!(seen[1].body["note"], "applied Deployment/demo-sink");
        assert_eq!(seen[1].body["reportingInstance"], "operator-test-0");
        assert_eq!(seen[1].body["reportingController"], "taxistream-operator");
        assert_eq!(
            seen[2].path,
            format!(
                "{events}/{}",
                seen[1].body["metadata"]["name"].as_str().unwrap()
            )
        );
        assert_eq!(seen[2].body["series"]["count"], 2);
    }
}
