//! The restricted Pod Security Standard, and which Secret keys each stage mounts.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Capabilities, KeyToPath, PodSecurityContext, SeccompProfile, SecretVolumeSource,
    SecurityContext, Volume, VolumeMount,
};
use taxistream_crds::SecretKeyRef;
use taxistream_crds::worker_config::SECRETS_DIR;

use super::{Inputs, Stage, names};

/// The non-root user of the worker image (distroless `nonroot`).
pub const RUN_AS_USER: i64 = 65532;

/// Pod-level settings of the restricted profile.
pub fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS_USER),
        run_as_group: Some(RUN_AS_USER),
        fs_group: Some(RUN_AS_USER),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

/// Container-level settings of the restricted profile, plus a read-only root.
pub fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}

/// Secret keys `stage` reads, by Secret name. A stage mounts only these.
pub fn stage_secret_keys(inputs: &Inputs<'_>, stage: Stage) -> BTreeMap<String, BTreeSet<String>> {
    let spec = &inputs.pipeline.spec;
    let mut refs: Vec<&SecretKeyRef> = Vec::new();
    // Every stage talks to Kafka (ingest through its relay).
    if let Some(tls) = &spec.kafka.tls {
        refs.extend(tls.secret_refs());
    }
    if let Some(sasl) = &spec.kafka.sasl {
        refs.push(&sasl.username_secret_ref);
        refs.push(&sasl.password_secret_ref);
    }
    match stage {
        Stage::Ingest => {
            refs.push(&spec.postgres.url_secret_ref);
            refs.extend(spec.postgres.ca_secret_ref.iter());
            if let Some(open_data) = &spec.source.open_data {
                refs.extend(open_data.app_token_secret_ref.iter());
            }
        }
        Stage::Aggregate => {}
        Stage::Sink => {
            if let Some(tls) = &inputs.sink.tls {
                refs.extend(tls.secret_refs());
            }
            if let Some(c) = &inputs.sink.credentials {
                refs.push(&c.username_secret_ref);
                refs.push(&c.password_secret_ref);
            }
        }
    }
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in refs {
        out.entry(r.name.clone()).or_default().insert(r.key.clone());
    }
    out
}

/// Volumes and mounts for the referenced Secrets (only the named keys) and
/// the operator-issued worker certificate, at the paths `secret_file` names.
pub fn secret_volumes(inputs: &Inputs<'_>, stage: Stage) -> (Vec<Volume>, Vec<VolumeMount>) {
    let mut secrets = stage_secret_keys(inputs, stage);
    let cert = names::cert_secret(&inputs.name);
    secrets.insert(
        cert,
        ["ca.crt", "tls.crt", "tls.key"].map(str::to_owned).into(),
    );
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for (i, (secret, keys)) in secrets.into_iter().enumerate() {
        let volume = format!("secret-{i}");
        volumes.push(Volume {
            name: volume.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                items: Some(
                    keys.into_iter()
                        .map(|key| KeyToPath {
                            path: key.clone(),
                            key,
                            mode: None,
                        })
                        .collect(),
                ),
                default_mode: Some(0o440),
                optional: Some(false),
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: volume,
            mount_path: format!("{SECRETS_DIR}/{secret}"),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    (volumes, mounts)
}
