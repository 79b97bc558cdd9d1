//! Out-of-band edits to children: the fields whose live value must equal
//! the desired one, or the child is applied again.
//!
//! Only fields the API server neither defaults nor normalises are compared
//! (a resource quantity `0.5` comes back as `500m`, a `fieldRef` gains an
//! `apiVersion`), so a child that was just applied never looks drifted and
//! a steady pipeline still makes no writes. Fields someone else legitimately
//! owns are left out: the HPA's replica count, `kubectl rollout restart`'s
//! template annotation.

use serde_json::Value;

use super::ANNOTATION_CONFIG_HASH;

/// JSON pointers compared for a kind. `{i}` stands for every container index.
fn pointers(kind: &str) -> &'static [&'static str] {
    match kind {
        "ConfigMap" => &["/data"],
        "ServiceAccount" => &["/automountServiceAccountToken"],
        "Role" => &["/rules"],
        "RoleBinding" => &["/roleRef", "/subjects"],
        "Service" => &["/spec/selector", "/spec/clusterIP"],
        "Deployment" => &[
            "/spec/replicas",
            "/spec/template/metadata/annotations/CONFIG_HASH",
            "/spec/template/spec/serviceAccountName",
            "/spec/template/spec/automountServiceAccountToken",
            "/spec/template/spec/containers/{i}/image",
            "/spec/template/spec/containers/{i}/args",
            "/spec/template/spec/containers/{i}/securityContext",
        ],
        "PodDisruptionBudget" => &["/spec/maxUnavailable", "/spec/selector"],
        "HorizontalPodAutoscaler" => &["/spec/minReplicas", "/spec/maxReplicas"],
        "CronJob" => &[
            "/spec/schedule",
            "/spec/suspend",
            "/spec/concurrencyPolicy",
            "/spec/jobTemplate/spec/template/spec/containers/{i}/image",
            "/spec/jobTemplate/spec/template/spec/containers/{i}/args",
        ],
        _ => &[],
    }
}

/// The compared pointers of `kind`, `{i}` expanded over the container
/// list as `source` has it.
fn expanded(kind: &str, source: &Value) -> Vec<String> {
    let hash_key = ANNOTATION_CONFIG_HASH.replace('/', "~1");
    let mut out = Vec::new();
    for pattern in pointers(kind) {
        let pattern = pattern.replace("CONFIG_HASH", &hash_key);
        match pattern.split_once("{i}") {
            Some((list, _)) => {
                let count = source
                    .pointer(list.trim_end_matches('/'))
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                out.extend((0..count).map(|i| pattern.replace("{i}", &i.to_string())));
            }
            None => out.push(pattern),
        }
    }
    out
}

/// The compared fields where `live` differs from `desired`, as pointers.
/// A field absent from `desired` (e.g. replicas left to an HPA) is not compared.
pub fn drifted(kind: &str, desired: &Value, live: &Value) -> Vec<String> {
    expanded(kind, desired)
        .into_iter()
        .filter(|pointer| {
            desired
                .pointer(pointer)
                .is_some_and(|want| live.pointer(pointer) != Some(want))
        })
        .collect()
}

/// `live` (without `metadata`) cut down to the fields [`drifted`] compares
/// for `kind`: all a store of children needs to keep of the body.
pub fn compared_only(kind: &str, live: &Value) -> Value {
    let mut out = Value::Object(serde_json::Map::new());
    for pointer in expanded(kind, live) {
        copy(&mut out, live, &pointer);
    }
    out
}

/// Copies the value at `pointer` in `from`, if any, to the same place in `to`.
pub fn copy(to: &mut Value, from: &Value, pointer: &str) {
    if let Some(value) = from.pointer(pointer) {
        put(to, pointer, value.clone());
    }
}

/// Sets `value` at `pointer` in `target`, creating objects and padding
/// arrays on the way (`{}` placeholders keep container indexes).
fn put(target: &mut Value, pointer: &str, value: Value) {
    let mut here = target;
    let parts: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    for (n, part) in parts.iter().enumerate() {
        let last = n + 1 == parts.len();
        let next_is_index = parts.get(n + 1).is_some_and(|p| p.parse::<usize>().is_ok());
        let empty = || {
            if next_is_index {
                Value::Array(Vec::new())
            } else {
                Value::Object(serde_json::Map::new())
            }
        };
        here = match (here, part.parse::<usize>()) {
            (Value::Array(items), Ok(i)) => {
                while items.len() <= i {
                    items.push(Value::Object(serde_json::Map::new()));
                }
                if last {
                    items[i] = value;
                    return;
                }
                &mut items[i]
            }
            (Value::Object(map), _) => {
                if last {
                    map.insert(part.clone(), value);
                    return;
                }
                map.entry(part.clone()).or_insert_with(empty)
            }
            _ => return,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(replicas: Option<i32>, image: &str) -> Value {
        let mut d = json!({
            "spec": {"template": {
                "metadata": {"annotations": {"taxistream.dev/config-hash": "abc"}},
                "spec": {"containers": [{"name": "sink", "image": image, "args": ["sink"]}]}
            }}
        });
        if let Some(r) = replicas {
            d["spec"]["replicas"] = json!(r);
        }
        d
    }

    #[test]
    fn scaled_or_re_imaged_deployments_have_drifted() {
        let want = deployment(Some(2), "w:1");
        assert!(drifted("Deployment", &want, &want).is_empty());
        assert_eq!(
            drifted("Deployment", &want, &deployment(Some(5), "w:1")),
            ["/spec/replicas"]
        );
        assert_eq!(
            drifted("Deployment", &want, &deployment(Some(2), "evil:1")),
            ["/spec/template/spec/containers/0/image"]
        );
    }

    #[test]
    fn fields_we_leave_to_others_are_not_compared() {
        // The HPA owns replicas; a rollout restart adds its own annotation;
        // the API server adds defaults next to our fields.
        let want = deployment(None, "w:1");
        let mut live = deployment(Some(7), "w:1");
        live["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] =
            json!("now");
        live["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] =
            json!("/dev/termination-log");
        assert!(drifted("Deployment", &want, &live).is_empty());
    }

    #[test]
    fn a_stored_child_keeps_exactly_what_drift_compares() {
        let mut live = deployment(Some(2), "w:1");
        live["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] =
            json!("/dev/termination-log");
        live["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "relay", "image": "w:1", "args": ["relay"], "ports": []}));
        let kept = compared_only("Deployment", &live);
        assert_eq!(
            kept,
            json!({"spec": {"replicas": 2, "template": {
                "metadata": {"annotations": {"taxistream.dev/config-hash": "abc"}},
                "spec": {"containers": [{"image": "w:1", "args": ["sink"]},
                                        {"image": "w:1", "args": ["relay"]}]}}}})
        );
        let want = deployment(Some(2), "w:1");
        assert!(drifted("Deployment", &want, &kept).is_empty());
        let cm = json!({"data": {"worker.yaml": "a"}, "immutable": false});
        assert_eq!(
            compared_only("ConfigMap", &cm),
            json!({"data": {"worker.yaml": "a"}})
        );
    }

    #[test]
    fn changed_config_and_rules_have_drifted() {
        let cm = json!({"data": {"worker.yaml": "a"}});
        assert_eq!(
            drifted("ConfigMap", &cm, &json!({"data": {"worker.yaml": "b"}})),
            ["/data"]
        );
        let role = json!({"rules": [{"verbs": ["get"]}]});
        assert_eq!(
            drifted("Role", &role, &json!({"rules": [{"verbs": ["*"]}]})),
            ["/rules"]
        );
        assert!(drifted("Unknown", &role, &json!({})).is_empty());
    }
}
