//! The pipeline's own identity: a ServiceAccount, and a Role that grants no
//! more than reading the pipeline and its configuration.
//!
//! The workers read everything from mounted files and never call the API,
//! so their pods do not mount a token (`automountServiceAccountToken: false`
//! on the pods and the ServiceAccount). The Role exists so a worker that
//! opts into API access gets exactly this and nothing wider.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};

use super::{Inputs, names};

pub fn service_account(inputs: &Inputs<'_>) -> ServiceAccount {
    ServiceAccount {
        metadata: inputs.meta(names::service_account(&inputs.name), inputs.labels()),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

pub fn role(inputs: &Inputs<'_>) -> Role {
    Role {
        metadata: inputs.meta(names::service_account(&inputs.name), inputs.labels()),
        rules: Some(vec![
            PolicyRule {
                api_groups: Some(vec![taxistream_crds::GROUP.to_owned()]),
                resources: Some(vec!["taxipipelines".to_owned()]),
                resource_names: Some(vec![inputs.name.clone()]),
                verbs: vec!["get".to_owned()],
                ..PolicyRule::default()
            },
            PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["configmaps".to_owned()]),
                resource_names: Some(vec![names::config(&inputs.name)]),
                verbs: vec!["get".to_owned()],
                ..PolicyRule::default()
            },
        ]),
    }
}

pub fn role_binding(inputs: &Inputs<'_>) -> RoleBinding {
    let name = names::service_account(&inputs.name);
    RoleBinding {
        metadata: inputs.meta(name.clone(), inputs.labels()),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "Role".to_owned(),
            name: name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name,
            namespace: Some(inputs.namespace.clone()),
            api_group: None,
        }]),
    }
}
