//! The CRD's shape and its CEL rules, evaluated client-side against example objects the
//! way the API server would (kube's CEL validator over the generated schema).

use crate::crd::{ConCoordCluster, ConCoordClusterSpec};
use kube::CustomResourceExt;
use kube::core::cel::{validate_cel, validate_cel_update};

fn cluster(yaml: &str) -> ConCoordCluster {
    serde_norway::from_str(yaml).unwrap()
}

const MINIMAL: &str = "
apiVersion: concoord.io/v1alpha1
kind: ConCoordCluster
metadata: {name: demo, namespace: ns1}
spec: {}
";

#[test]
fn defaults_fill_an_empty_spec() {
    let c = cluster(MINIMAL);
    let s: &ConCoordClusterSpec = &c.spec;
    assert_eq!(s.replicas, 3);
    assert_eq!(s.image, "concoord/replica");
    assert_eq!(s.version, env!("CARGO_PKG_VERSION"));
    assert!(s.dns.enabled);
    assert_eq!(s.dns.port, 53);
    assert!(s.persistence.enabled);
    assert_eq!(s.persistence.size, "1Gi");
    assert!(s.route53.is_none());
    assert!(s.objects.is_empty());
}

#[test]
fn crd_names_columns_scale_and_status() {
    let crd = serde_json::to_value(ConCoordCluster::crd()).unwrap();
    assert_eq!(crd["metadata"]["name"], "concoordclusters.concoord.io");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "ccc");
    let v = &crd["spec"]["versions"][0];
    assert_eq!(v["name"], "v1alpha1");
    assert_eq!(
        v["subresources"]["scale"]["specReplicasPath"],
        ".spec.replicas"
    );
    assert_eq!(
        v["subresources"]["scale"]["statusReplicasPath"],
        ".status.replicas"
    );
    assert!(v["subresources"]["status"].is_object());
    let columns: Vec<&str> = v["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Replicas", "Ready", "Leader", "View", "Age"]);
    let spec = &v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert_eq!(spec["replicas"]["default"], 3);
    // Structural: arbitrary constructor arguments are declared as such.
    let args = &spec["objects"]["items"]["properties"]["args"];
    assert_eq!(args["items"]["x-kubernetes-preserve-unknown-fields"], true);
    assert_eq!(spec["persistence"]["default"]["size"], "1Gi");
    assert_eq!(
        spec["persistence"]["x-kubernetes-validations"][0]["rule"],
        "self == oldSelf"
    );
    assert_eq!(
        spec["replicas"]["x-kubernetes-validations"][0]["rule"],
        "self >= 1"
    );
}

#[test]
fn cel_refuses_zero_replicas_with_a_clear_message() {
    let ok = cluster(MINIMAL);
    validate_cel(&ok).unwrap();
    let mut zero = ok.clone();
    zero.spec.replicas = 0;
    let err = validate_cel(&zero).unwrap_err().to_string();
    assert!(err.contains("replicas must be at least 1"), "{err}");
}

#[test]
fn cel_keeps_the_whole_persistence_block_immutable() {
    let old = cluster(MINIMAL);
    let mut resized = old.clone();
    resized.spec.persistence.size = "5Gi".into();
    let err = validate_cel_update(&resized, &old).unwrap_err().to_string();
    assert!(err.contains("persistence is immutable"), "{err}");
    // A new storage class would jam every StatefulSet apply just the same.
    let mut reclassed = old.clone();
    reclassed.spec.persistence.storage_class_name = Some("fast".into());
    let err = validate_cel_update(&reclassed, &old)
        .unwrap_err()
        .to_string();
    assert!(err.contains("persistence is immutable"), "{err}");
    let mut classed = old.clone();
    classed.spec.persistence.storage_class_name = Some("slow".into());
    let err = validate_cel_update(&reclassed, &classed)
        .unwrap_err()
        .to_string();
    assert!(err.contains("persistence is immutable"), "{err}");
    let mut disabled = old.clone();
    disabled.spec.persistence.enabled = false;
    let err = validate_cel_update(&disabled, &old)
        .unwrap_err()
        .to_string();
    assert!(err.contains("persistence is immutable"), "{err}");
    validate_cel_update(&classed, &classed).unwrap();
    // Other changes pass: scaling and a new version.
    let mut scaled = old.clone();
    scaled.spec.replicas = 5;
    scaled.spec.version = "0.2.0".into();
    validate_cel_update(&scaled, &old).unwrap();
    // A new object is not a transition: any size is fine.
    validate_cel(&resized).unwrap();
}

/// Walks a schema and lists nodes the API server would refuse as not structural: every
/// node names its type unless it is int-or-string or keeps unknown fields, and no node
/// uses `$ref` (the API server resolves none).
fn non_structural(node: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    let Some(obj) = node.as_object() else {
        out.push(format!("{path}: not an object"));
        return;
    };
    let flag = |k: &str| obj.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
    if obj.contains_key("$ref") {
        out.push(format!("{path}: $ref"));
    }
    let typed = obj
        .get("type")
        .and_then(|t| t.as_str())
        .is_some_and(|t| !t.is_empty());
    if !typed
        && !flag("x-kubernetes-int-or-string")
        && !flag("x-kubernetes-preserve-unknown-fields")
    {
        out.push(format!("{path}: no type"));
    }
    if let Some(props) = obj.get("properties").and_then(|p| p.as_object()) {
        for (k, v) in props {
            non_structural(v, &format!("{path}.{k}"), out);
        }
    }
    if let Some(items) = obj.get("items") {
        non_structural(items, &format!("{path}[]"), out);
    }
    if let Some(extra) = obj.get("additionalProperties").filter(|a| a.is_object()) {
        non_structural(extra, &format!("{path}{{}}"), out);
    }
}

#[test]
fn the_schema_is_structural() {
    let crd = serde_json::to_value(ConCoordCluster::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut problems = Vec::new();
    non_structural(schema, "", &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");
    // The checker does catch an untyped node.
    let mut found = Vec::new();
    non_structural(
        &serde_json::json!({"type": "array", "items": {}}),
        "",
        &mut found,
    );
    assert_eq!(found, ["[]: no type"]);
}
