//! Reading the user's Secrets the KafkaTopic and CassandraSink controllers
//! need to reach their clusters. Values stay in memory and never reach a
//! log line, a status or an Event.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use taxistream_crds::SecretKeyRef;

use crate::error::{Error, Result};

/// The UTF-8 value of one Secret key.
pub async fn read_key(client: &Client, namespace: &str, key: &SecretKeyRef) -> Result<String> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let problem = |problem: String| Error::Secret {
        namespace: namespace.to_owned(),
        name: key.name.clone(),
        problem,
    };
    let secret = api
        .get_opt(&key.name)
        .await?
        .ok_or_else(|| problem("not found".to_owned()))?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&key.key))
        .ok_or_else(|| problem(format!("has no key {}", key.key)))?;
    String::from_utf8(bytes.0.clone()).map_err(|_| problem(format!("key {} is not UTF-8", key.key)))
}

/// Like [`read_key`] for an optional reference.
pub async fn read_optional(
    client: &Client,
    namespace: &str,
    key: Option<&SecretKeyRef>,
) -> Result<Option<String>> {
    match key {
        Some(k) => read_key(client, namespace, k).await.map(Some),
        None => Ok(None),
    }
}
