//! The committed CRD YAML, the examples and the invalid fixtures, checked
//! against the schema the API server would enforce: OpenAPI structure with a
//! JSON-schema validator, and the CEL rules with kube's offline CEL evaluator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use serde_json::Value;
use taxistream_crds::manifests::{crd_files, crds};
use taxistream_crds::{CassandraSink, KafkaTopic, TaxiPipeline};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `openAPIV3Schema` of the CRD of `kind`.
fn openapi_schema(kind: &str) -> Value {
    let crd = crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for kind {kind}"));
    let schema = crd.spec.versions[0].schema.as_ref().unwrap();
    serde_json::to_value(schema.open_api_v3_schema.as_ref().unwrap()).unwrap()
}

/// OpenAPI 3.0 → JSON Schema: `nullable` makes `null` one more allowed type and
/// the Kubernetes extensions, which JSON Schema does not know, are dropped.
fn to_json_schema(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, val) in map {
                if k.starts_with("x-kubernetes-") || k == "nullable" {
                    continue;
                }
                out.insert(k.clone(), to_json_schema(val));
            }
            if map.get("nullable") == Some(&Value::Bool(true)) {
                // A type list keeps the errors inside the value precise; anyOf
                // would only say that no alternative matched.
                if let Some(Value::String(t)) = out.get("type") {
                    let types = serde_json::json!([t, "null"]);
                    out.insert("type".into(), types);
                    return Value::Object(out);
                }
                return serde_json::json!({"anyOf": [Value::Object(out), {"type": "null"}]});
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(to_json_schema).collect()),
        other => other.clone(),
    }
}

/// Every message the API server would answer `doc` with (as an update of `old` if given).
fn rejections(doc: &Value, old: Option<&Value>) -> Vec<String> {
    let kind = doc["kind"].as_str().unwrap();
    let openapi = openapi_schema(kind);
    let validator = jsonschema::validator_for(&to_json_schema(&openapi)).unwrap();
    let mut errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    if let Err(cel) = kube::core::cel::Validator::new().validate(&openapi, doc, old) {
        errors.extend(cel.iter().map(|e| e.to_string()));
    }
    errors
}

fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(d).unwrap();
            serde_json::to_value(v).unwrap()
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    out.sort();
}

#[test]
fn committed_crd_yaml_is_what_crdgen_writes() {
    for (name, yaml) in crd_files().unwrap() {
        for dir in ["crds", "charts/taxistream/crds"] {
            let path = root().join(dir).join(&name);
            let committed = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}; run `make crds`", path.display()));
            assert!(
                committed == yaml,
                "{} differs from crdgen's output; run `make crds` and commit the result",
                path.display()
            );
        }
    }
}

#[test]
fn every_example_parses_and_passes_the_schema() {
    let mut files = Vec::new();
    yaml_files(&root().join("examples"), &mut files);
    let mut checked = 0;
    for file in files {
        for doc in yaml_docs(&file) {
            if doc["apiVersion"] != "taxistream.dev/v1alpha1" {
                continue;
            }
            let errors = rejections(&doc, None);
            assert!(errors.is_empty(), "{}: {errors:#?}", file.display());
            let typed = match doc["kind"].as_str().unwrap() {
                "TaxiPipeline" => serde_json::from_value::<TaxiPipeline>(doc.clone()).map(drop),
                "KafkaTopic" => serde_json::from_value::<KafkaTopic>(doc.clone()).map(drop),
                "CassandraSink" => serde_json::from_value::<CassandraSink>(doc.clone()).map(drop),
                other => panic!("{}: unknown kind {other}", file.display()),
            };
            typed.unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            checked += 1;
        }
    }
    assert!(
        checked >= 6,
        "only {checked} taxistream objects under examples/"
    );
}

#[test]
fn invalid_manifests_are_rejected_with_their_message() {
    let mut files = Vec::new();
    yaml_files(&root().join("crds/tests/invalid"), &mut files);
    assert!(files.len() >= 20);
    // Every file is checked before failing, so one run lists every rule that slipped.
    let mut accepted = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: no `# expect:` line", file.display()));
        let docs = yaml_docs(&file);
        let (old, new) = match docs.as_slice() {
            [new] => (None, new),
            [old, new] => {
                assert!(
                    rejections(old, None).is_empty(),
                    "{}: old object invalid",
                    file.display()
                );
                (Some(old), new)
            }
            _ => panic!("{}: expected one or two documents", file.display()),
        };
        let errors = rejections(new, old);
        if !errors.iter().any(|e| e.contains(expect)) {
            accepted.push(format!(
                "{}: expected a rejection containing {expect:?}, got {errors:#?}",
                file.display()
            ));
        }
    }
    assert!(accepted.is_empty(), "{}", accepted.join("\n"));
}

/// Values at the edges of each rule, so a rule that is too strict fails too.
/// A file of two documents of one object is a stored object and its update.
#[test]
fn boundary_manifests_are_accepted() {
    let mut files = Vec::new();
    yaml_files(&root().join("crds/tests/valid"), &mut files);
    assert!(!files.is_empty());
    for file in files {
        let docs = yaml_docs(&file);
        let update = docs.len() == 2 && docs[0]["metadata"] == docs[1]["metadata"];
        let mut old = None;
        for doc in &docs {
            let errors = rejections(doc, old);
            assert!(errors.is_empty(), "{}: {errors:#?}", file.display());
            if update {
                old = Some(doc);
            }
        }
    }
}

/// Every list or map under `v` that a CEL rule iterates, with what bounds it lacks.
fn unbounded_iterations(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            let iterates = map
                .get("x-kubernetes-validations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|r| r["rule"].as_str())
                .any(|r| {
                    [".all(", ".exists(", ".exists_one(", ".map(", ".filter("]
                        .iter()
                        .any(|m| r.contains(m))
                });
            if iterates {
                let (count, element) = if map.contains_key("items") {
                    ("maxItems", &map["items"])
                } else {
                    ("maxProperties", &map["additionalProperties"])
                };
                if !map.contains_key(count) {
                    out.push(format!("{path}: no {count}"));
                }
                let stringy = element["type"] == "string"
                    || element["x-kubernetes-int-or-string"] == Value::Bool(true);
                if stringy && element.get("maxLength").is_none() {
                    out.push(format!("{path}: elements without maxLength"));
                }
            }
            for (k, val) in map {
                unbounded_iterations(val, &format!("{path}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, val) in items.iter().enumerate() {
                unbounded_iterations(val, &format!("{path}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// The API server refuses a CRD whose rules' estimated cost exceeds its budget,
/// and the estimate of a rule over a list or map grows with the number of
/// elements and their size: a rule that iterates needs both bounded.
#[test]
fn rules_over_lists_and_maps_are_bounded() {
    for crd in crds() {
        let kind = &crd.spec.names.kind;
        let mut found = Vec::new();
        unbounded_iterations(&openapi_schema(kind), "", &mut found);
        assert!(found.is_empty(), "{kind}: {found:#?}");
    }
}

/// Every `(path, bound)` under `v` whose `minimum` or `maximum` has a fraction.
fn fractional_bounds(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for bound in ["minimum", "maximum"] {
                if let Some(n) = map.get(bound).and_then(Value::as_f64)
                    && n.fract() != 0.0
                {
                    out.push(format!("{path}: {bound} {n}"));
                }
            }
            for (k, val) in map {
                fractional_bounds(val, &format!("{path}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, val) in items.iter().enumerate() {
                fractional_bounds(val, &format!("{path}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// The API server checks an integer against a bound truncated to an integer, so
/// `speedup: 0` passed `minimum: 0.001`. Bounds must be whole numbers; CEL,
/// which compares numbers as doubles, holds fractional limits.
#[test]
fn numeric_bounds_are_whole_numbers() {
    for crd in crds() {
        let kind = &crd.spec.names.kind;
        let mut found = Vec::new();
        fractional_bounds(&openapi_schema(kind), "", &mut found);
        assert!(found.is_empty(), "{kind}: {found:#?}");
    }
}

#[test]
fn defaults_fill_every_obvious_field() {
    let minimal = &yaml_docs(&root().join("examples/taxipipeline-minimal.yaml"))[0];
    let p: TaxiPipeline = serde_json::from_value(minimal.clone()).unwrap();
    let agg = &p.spec.aggregation;
    assert_eq!(std::time::Duration::from(agg.window).as_secs(), 300);
    assert_eq!(
        std::time::Duration::from(agg.allowed_lateness).as_secs(),
        600
    );
    assert!(agg.slide.is_none());
    assert_eq!(p.spec.workers.aggregate.replicas, 1);
    assert_eq!(p.spec.postgres.table, "trips");
    // The schema carries the same defaults, so the API server stores them.
    let schema = serde_json::to_string(&openapi_schema("TaxiPipeline")).unwrap();
    for d in [
        r#""default":"300s""#,
        r#""default":"600s""#,
        r#""default":"pickupZone""#,
    ] {
        assert!(schema.contains(d), "schema lacks {d}");
    }
}

#[test]
fn kinds_carry_short_names_categories_and_scale() {
    for crd in crds() {
        let names = &crd.spec.names;
        assert_eq!(
            names.categories.as_deref(),
            Some(&["taxistream".to_string()][..])
        );
        assert_eq!(names.short_names.as_ref().map(Vec::len), Some(1));
        assert_eq!(crd.spec.scope, "Namespaced");
        let version = &crd.spec.versions[0];
        let sub = version.subresources.as_ref().unwrap();
        assert!(
            sub.status.is_some(),
            "{} has no status subresource",
            names.kind
        );
        assert_eq!(sub.scale.is_some(), names.kind == "TaxiPipeline");
        assert!(version.additional_printer_columns.as_ref().unwrap().len() >= 4);
    }
}
