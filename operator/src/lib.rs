//! taxistream-operator: reconciles TaxiPipeline, KafkaTopic and CassandraSink.
//!
//! - [`pipeline`]: spec → desired children (pure, in `pipeline::desired`) →
//!   server-side apply → status from the observed children;
//! - [`topic`]: the Kafka AdminClient creates, grows and de-drifts topics;
//! - [`sink`]: keyspace and results-table DDL through the `scylla` driver.

pub mod conditions;
pub mod context;
pub mod controller;
pub mod error;
pub mod events;
pub mod leader;
pub mod metrics;
pub mod pipeline;
pub mod secrets;
pub mod server;
pub mod sink;
pub mod telemetry;
pub mod topic;

#[cfg(test)]
mod fixtures;

use kube::{Api, Client, Resource};

/// An `Api` over one namespace, or all of them.
pub fn api_for<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}
