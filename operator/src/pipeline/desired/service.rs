//! The headless metrics Service: one endpoint per worker pod for Prometheus.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

use super::config::{METRICS_PORT, RELAY_METRICS_PORT};
use super::{Inputs, LABEL_INSTANCE, LABEL_NAME, names};

pub fn metrics_service(inputs: &Inputs<'_>) -> Service {
    let port = |name: &str, port: u16| ServicePort {
        name: Some(name.to_owned()),
        port: i32::from(port),
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    };
    Service {
        metadata: inputs.meta(names::metrics_service(&inputs.name), inputs.labels()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            selector: Some(BTreeMap::from([
                (LABEL_NAME.to_owned(), "taxistream-worker".to_owned()),
                (LABEL_INSTANCE.to_owned(), inputs.name.clone()),
            ])),
            ports: Some(vec![
                port("metrics", METRICS_PORT),
                port("relay-metrics", RELAY_METRICS_PORT),
            ]),
            publish_not_ready_addresses: Some(true),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}
