//! The Kubernetes objects each in-cluster resource type stands for, and how to tell that one is
//! ready or what keeps it from going away.

use std::fmt;

use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::Settings;
use crate::providers::{ProviderError, spec, template};
use crate::resources::kube::{Manifest, Namespace, RoleBinding, Secret, StorageClass};

/// The identity of one applied object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// `v1`, `apps/v1`, ...
    pub api_version: String,
    /// `Deployment`, ...
    pub kind: String,
    /// Namespace, when the object is namespaced (or says one).
    pub namespace: Option<String>,
    /// Object name.
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(
                f,
                "{} {} {namespace}/{}",
                self.api_version, self.kind, self.name
            ),
            None => write!(f, "{} {} {}", self.api_version, self.kind, self.name),
        }
    }
}

impl ObjectRef {
    /// Reads the form [`fmt::Display`] writes, as recorded in the state.
    pub fn parse(text: &str) -> Result<Self, ProviderError> {
        let invalid = || {
            ProviderError::Invalid(format!(
                "recorded object `{text}` is not `API-VERSION KIND [NAMESPACE/]NAME`"
            ))
        };
        let mut parts = text.split(' ');
        let (Some(api_version), Some(kind), Some(object), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let (namespace, name) = match object.split_once('/') {
            Some((namespace, name)) => (Some(namespace.to_string()), name.to_string()),
            None => (None, object.to_string()),
        };
        if api_version.is_empty() || kind.is_empty() || name.is_empty() {
            return Err(invalid());
        }
        Ok(Self {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            namespace,
            name,
        })
    }

    fn of(body: &Value, default_namespace: Option<&str>) -> Option<Self> {
        let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_string);
        let metadata = body.get("metadata");
        Some(Self {
            api_version: text(body.get("apiVersion"))?,
            kind: text(body.get("kind"))?,
            namespace: text(metadata.and_then(|m| m.get("namespace")))
                .or_else(|| default_namespace.map(str::to_string)),
            name: text(metadata.and_then(|m| m.get("name")))?,
        })
    }
}

/// The objects of one resource, in the order they are applied.
pub fn build(
    kind: &str,
    address: &str,
    desired: &Value,
    settings: &Settings,
) -> Result<Vec<(ObjectRef, Value)>, ProviderError> {
    let bodies = match kind {
        "k8s.namespace" => {
            let ns: Namespace = spec(desired)?;
            vec![json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": { "name": ns.name, "labels": ns.labels },
            })]
        }
        "k8s.storage_class" => {
            let class: StorageClass = spec(desired)?;
            vec![json!({
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {
                    "name": class.name,
                    "annotations": {
                        "storageclass.kubernetes.io/is-default-class": class.default.to_string(),
                    },
                },
                "provisioner": class.provisioner,
                "parameters": class.parameters,
                "reclaimPolicy": class.reclaim_policy,
                "volumeBindingMode": class.volume_binding_mode,
                "allowVolumeExpansion": class.allow_volume_expansion,
            })]
        }
        "k8s.role_binding" => {
            let binding: RoleBinding = spec(desired)?;
            let mut metadata = json!({ "name": binding.name });
            let kind = match &binding.namespace {
                Some(namespace) => {
                    metadata["namespace"] = json!(namespace);
                    "RoleBinding"
                }
                None => "ClusterRoleBinding",
            };
            vec![json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": kind,
                "metadata": metadata,
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": binding.cluster_role,
                },
                "subjects": [{
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Group",
                    "name": binding.group,
                }],
            })]
        }
        "k8s.secret" => {
            let secret: Secret = spec(desired)?;
            let data: Map<String, Value> = secret
                .data
                .iter()
                .map(|(key, value)| {
                    let encoded = base64::engine::general_purpose::STANDARD.encode(value);
                    (key.clone(), Value::String(encoded))
                })
                .collect();
            vec![json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": { "name": secret.name, "namespace": secret.namespace },
                "type": "Opaque",
                "data": data,
            })]
        }
        "k8s.manifest" => {
            let manifest: Manifest = spec(desired)?;
            let text = template::render(
                &settings.templates_dir,
                &manifest.template,
                &manifest.values,
            )?;
            return documents(&text, &manifest, address, &manifest.owner);
        }
        other => {
            return Err(ProviderError::Invalid(format!(
                "{other} is not an in-cluster type"
            )));
        }
    };
    bodies
        .into_iter()
        .map(|body| {
            let object = ObjectRef::of(&body, None).ok_or_else(|| {
                ProviderError::Invalid(format!("{address}: built an object without a name"))
            })?;
            Ok((object, mark(body, address, owner(desired))))
        })
        .collect()
}

/// trails' mark in a resource's desired or recorded attributes (empty when recorded before
/// marks).
pub fn owner(attributes: &Value) -> &str {
    attributes
        .get("owner")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The annotation that carries trails' mark, `BLUEPRINT/ENVIRONMENT/ADDRESS`.
pub const OWNER_ANNOTATION: &str = "trails.dev/owner";

/// The mark a live object carries, if any.
pub fn mark_of(live: &Value) -> Option<&str> {
    live.pointer("/metadata/annotations")
        .and_then(|annotations| annotations.get(OWNER_ANNOTATION))
        .and_then(Value::as_str)
}

/// The objects of a rendered template: every YAML document that is not empty.
fn documents(
    text: &str,
    manifest: &Manifest,
    address: &str,
    owner: &str,
) -> Result<Vec<(ObjectRef, Value)>, ProviderError> {
    let mut objects = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let body = Value::deserialize(document).map_err(|error| {
            ProviderError::Invalid(format!(
                "template {} rendered document {} that is not YAML: {error}",
                manifest.template,
                index + 1
            ))
        })?;
        if body.is_null() {
            continue;
        }
        let object = ObjectRef::of(&body, manifest.namespace.as_deref()).ok_or_else(|| {
            ProviderError::Invalid(format!(
                "template {} rendered document {} without apiVersion, kind and metadata.name",
                manifest.template,
                index + 1
            ))
        })?;
        objects.push((object, mark(body, address, owner)));
    }
    Ok(objects)
}

/// Labels an object as trails' and names the resource it belongs to and its `owner`.
fn mark(mut body: Value, address: &str, owner: &str) -> Value {
    if let Some(metadata) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        let labels = metadata.entry("labels").or_insert_with(|| json!({}));
        if let Some(labels) = labels.as_object_mut() {
            labels.insert("app.kubernetes.io/managed-by".into(), json!("trails"));
        }
        let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.insert("trails.dev/address".into(), json!(address));
            if !owner.is_empty() {
                annotations.insert(OWNER_ANNOTATION.into(), json!(owner));
            }
        }
    }
    body
}

/// What trails applied for a recorded resource, rebuilt from its recorded attributes to
/// compare with what is live; `None` when they cannot rebuild it: a template edited since
/// (the plan updates it anyway) or values that carry a secret (the state keeps a digest).
/// A Secret's data is left out: the state keeps only its digest.
pub fn expected(
    kind: &str,
    address: &str,
    attributes: &Map<String, Value>,
    settings: &Settings,
) -> Option<Vec<(ObjectRef, Value)>> {
    let mut attributes = attributes.clone();
    if kind == "k8s.secret" {
        attributes.insert("data".into(), json!({}));
    }
    if kind == "k8s.manifest" {
        let template = attributes.get("template").and_then(Value::as_str)?;
        let now = crate::resources::template_digest(&settings.templates_dir, template);
        if attributes.get("template_digest").and_then(Value::as_str) != Some(now.as_str()) {
            return None;
        }
    }
    let mut built = build(kind, address, &Value::Object(attributes), settings).ok()?;
    if kind == "k8s.secret" {
        for (_, body) in &mut built {
            if let Some(body) = body.as_object_mut() {
                body.remove("data");
            }
        }
    }
    Some(built)
}

/// The fields trails set that the live object does not have as set (see
/// [`crate::providers::compare::differences`]); values under a Secret's data are never shown.
/// A field another field manager owns now (its `managedFields`) names it: `(set by
/// kubectl-edit)` says who changed it; trails' next apply takes it back by force.
pub fn differences(applied: &Value, live: &Value, manager: &str) -> Vec<String> {
    let secret = applied.get("kind").and_then(Value::as_str) == Some("Secret");
    let owners = field_owners(live);
    crate::providers::compare::differences(applied, live, secret)
        .into_iter()
        .map(|difference| {
            let path = difference.split(": ").next().unwrap_or_default();
            match owner_of(&owners, path, manager) {
                Some(owner) => format!("{difference} (set by {owner})"),
                None => difference,
            }
        })
        .collect()
}

/// Every field of `managedFields` (`fieldsV1`) with its manager, as difference paths
/// (`spec.template.spec.containers[name=web].image`).
fn field_owners(live: &Value) -> Vec<(String, String)> {
    fn walk(fields: &Value, path: String, manager: &str, out: &mut Vec<(String, String)>) {
        let Some(map) = fields.as_object() else {
            return;
        };
        if map.is_empty() || map.contains_key(".") {
            out.push((path.clone(), manager.to_string()));
        }
        for (key, child) in map {
            let segment = if let Some(field) = key.strip_prefix("f:") {
                if field.contains(['.', '/']) {
                    format!("{path}[\"{field}\"]")
                } else if path.is_empty() {
                    field.to_string()
                } else {
                    format!("{path}.{field}")
                }
            } else if let Some(item) = key.strip_prefix("k:") {
                let Ok(Value::Object(keys)) = serde_json::from_str::<Value>(item) else {
                    continue;
                };
                let chosen = ["name", "containerPort", "port", "mountPath"]
                    .into_iter()
                    .find_map(|name| keys.get(name).map(|value| (name, value)));
                let Some((name, value)) = chosen else {
                    continue;
                };
                let value = match value {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                format!("{path}[{name}={value}]")
            } else {
                continue;
            };
            walk(child, segment, manager, out);
        }
    }
    let mut out = Vec::new();
    for entry in live
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let manager = entry.get("manager").and_then(Value::as_str).unwrap_or("");
        if let Some(fields) = entry.get("fieldsV1") {
            walk(fields, String::new(), manager, &mut out);
        }
    }
    out
}

/// The manager other than `ours` that owns the field at `path`, or the nearest field above it
/// that is owned whole.
fn owner_of<'a>(owners: &'a [(String, String)], path: &str, ours: &str) -> Option<&'a str> {
    let covering: Vec<&(String, String)> = owners
        .iter()
        .filter(|(field, _)| {
            path == field
                || path
                    .strip_prefix(field.as_str())
                    .is_some_and(|rest| rest.starts_with(['.', '[']))
        })
        .collect();
    let nearest = covering.iter().map(|(field, _)| field.len()).max()?;
    covering
        .into_iter()
        .find(|(field, manager)| field.len() == nearest && manager != ours)
        .map(|(_, manager)| manager.as_str())
}

fn int(value: &Value, pointer: &str) -> Option<i64> {
    value.pointer(pointer).and_then(Value::as_i64)
}

/// Whether the live object reports condition `kind` as `True`.
fn condition_true(live: &Value, kind: &str) -> bool {
    live.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|conditions| {
            conditions.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some(kind)
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// Why a live object is not ready yet, or `None` when it is.
pub fn not_ready(kind: &str, live: &Value) -> Option<String> {
    match kind {
        "Deployment" | "StatefulSet" => {
            let wanted = int(live, "/spec/replicas").unwrap_or(1);
            let generation = int(live, "/metadata/generation").unwrap_or(0);
            let observed = int(live, "/status/observedGeneration").unwrap_or(0);
            let ready = int(live, "/status/readyReplicas").unwrap_or(0);
            let updated = int(live, "/status/updatedReplicas").unwrap_or(0);
            if observed < generation {
                Some("the controller has not seen the latest spec yet".to_string())
            } else if ready < wanted || updated < wanted {
                Some(format!(
                    "{ready} of {wanted} replicas ready, {updated} updated"
                ))
            } else {
                None
            }
        }
        "CustomResourceDefinition" => {
            (!condition_true(live, "Established")).then(|| "not established yet".to_string())
        }
        // cert-manager's: its Secret exists, and can be mounted, once it is Ready.
        "Certificate" => (!condition_true(live, "Ready"))
            .then(|| "cert-manager has not issued it yet".to_string()),
        "Namespace" => match live.pointer("/status/phase").and_then(Value::as_str) {
            Some("Terminating") => {
                Some("terminating: a previous deletion has not finished".to_string())
            }
            _ => None,
        },
        _ => None,
    }
}

/// What keeps a deleted object from going away: its finalizers and, for a namespace, the
/// conditions the namespace controller reports.
pub fn what_holds(live: &Value) -> String {
    let strings = |pointer: &str| -> Vec<String> {
        live.pointer(pointer)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut finalizers = strings("/metadata/finalizers");
    finalizers.extend(strings("/spec/finalizers"));
    let mut parts = Vec::new();
    if !finalizers.is_empty() {
        parts.push(format!("finalizers: {}", finalizers.join(", ")));
    }
    if let Some(conditions) = live.pointer("/status/conditions").and_then(Value::as_array) {
        for condition in conditions {
            if condition.get("status") == Some(&json!("True"))
                && let (Some(kind), Some(message)) = (
                    condition.get("type").and_then(Value::as_str),
                    condition.get("message").and_then(Value::as_str),
                )
            {
                parts.push(format!("{kind}: {message}"));
            }
        }
    }
    if parts.is_empty() {
        "no finalizer reported".to_string()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings(dir: &std::path::Path) -> Settings {
        Settings {
            target: super::super::Target::Context(None),
            templates_dir: dir.to_path_buf(),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn object_refs_round_trip() {
        for text in ["v1 Namespace web", "apps/v1 Deployment web/ingest"] {
            assert_eq!(ObjectRef::parse(text).expect("parses").to_string(), text);
        }
        assert!(ObjectRef::parse("v1 Namespace").is_err());
        assert!(ObjectRef::parse("v1 Namespace a b").is_err());
    }

    #[test]
    fn secrets_are_base64_and_marked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let desired = json!({"name": "db", "namespace": "web", "data": {"password": "hunter2"}});
        let objects = build(
            "k8s.secret",
            "k8s.secret.db",
            &desired,
            &settings(dir.path()),
        )
        .expect("builds");
        let (object, body) = &objects[0];
        assert_eq!(object.to_string(), "v1 Secret web/db");
        assert_eq!(body["data"]["password"], json!("aHVudGVyMg=="));
        assert_eq!(
            body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            json!("trails")
        );
        assert_eq!(
            body["metadata"]["annotations"]["trails.dev/address"],
            json!("k8s.secret.db")
        );
    }

    #[test]
    fn cluster_wide_bindings_are_cluster_role_bindings() {
        let dir = tempfile::tempdir().expect("temp dir");
        let desired =
            json!({"name": "readers", "namespace": null, "group": "g", "cluster_role": "view"});
        let objects =
            build("k8s.role_binding", "a", &desired, &settings(dir.path())).expect("builds");
        assert_eq!(objects[0].0.kind, "ClusterRoleBinding");
        assert_eq!(objects[0].1["subjects"][0]["name"], json!("g"));
    }

    #[test]
    fn manifests_yield_every_document_and_name_a_bad_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("two.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: Service\nmetadata: {name: '{{ values.name }}'}\n",
        )
        .expect("write");
        std::fs::write(
            dir.path().join("bad.yaml"),
            "apiVersion: v1\nkind: ConfigMap\n",
        )
        .expect("write");
        let desired = json!({"template": "two.yaml", "template_digest": "x", "namespace": "web", "values": {"name": "svc"}});
        let objects = build("k8s.manifest", "m", &desired, &settings(dir.path())).expect("builds");
        let names: Vec<String> = objects.iter().map(|(o, _)| o.to_string()).collect();
        assert_eq!(names, ["v1 ConfigMap web/a", "v1 Service web/svc"]);
        let desired = json!({"template": "bad.yaml", "template_digest": "x", "namespace": null, "values": {}});
        let error = build("k8s.manifest", "m", &desired, &settings(dir.path()))
            .expect_err("no name")
            .to_string();
        assert!(
            error.contains("bad.yaml") && error.contains("document 1"),
            "{error}"
        );
    }

    #[test]
    fn deployments_are_ready_when_every_replica_is() {
        let mut live = json!({"metadata": {"generation": 2}, "spec": {"replicas": 3},
            "status": {"observedGeneration": 2, "readyReplicas": 2, "updatedReplicas": 3}});
        assert_eq!(
            not_ready("Deployment", &live).as_deref(),
            Some("2 of 3 replicas ready, 3 updated")
        );
        live["status"]["readyReplicas"] = json!(3);
        assert_eq!(not_ready("Deployment", &live), None);
        live["metadata"]["generation"] = json!(3);
        assert!(not_ready("Deployment", &live).is_some());
    }

    #[test]
    fn certificates_are_ready_when_cert_manager_says_so() {
        let issuing = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False", "reason": "Issuing"}]}});
        assert_eq!(
            not_ready("Certificate", &issuing).as_deref(),
            Some("cert-manager has not issued it yet")
        );
        assert!(not_ready("Certificate", &json!({})).is_some());
        let issued = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        assert_eq!(not_ready("Certificate", &issued), None);
    }

    #[test]
    fn differences_are_the_fields_trails_set_that_changed() {
        let applied = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "ingest", "labels": {"app.kubernetes.io/name": "ingest"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "ingest",
                "image": "a:1", "ports": [{"containerPort": 8080}],
                "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}]}}}});
        let mut live = applied.clone();
        live["metadata"]["uid"] = json!("u");
        live["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"] = json!("TCP");
        live["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] =
            json!({"cpu": "0.5", "memory": "1024Mi"});
        live["status"] = json!({"readyReplicas": 2});
        assert_eq!(differences(&applied, &live, "trails"), Vec::<String>::new());
        live["spec"]["replicas"] = json!(5);
        live["spec"]["template"]["spec"]["containers"][0]["image"] = json!("b:2");
        live["metadata"]["labels"] = json!({});
        assert_eq!(
            differences(&applied, &live, "trails"),
            [
                "metadata.labels[\"app.kubernetes.io/name\"]: \"ingest\" -> (absent)",
                "spec.replicas: 2 -> 5",
                "spec.template.spec.containers[name=ingest].image: \"a:1\" -> \"b:2\"",
            ]
        );
    }

    #[test]
    fn secret_values_are_never_shown() {
        let applied = json!({"kind": "Secret", "data": {"password": "aHVudGVyMg=="}});
        let live = json!({"kind": "Secret", "data": {"password": "b3RoZXI="}});
        assert_eq!(
            differences(&applied, &live, "trails"),
            ["data.password: (hidden) -> (hidden)"]
        );
    }

    #[test]
    fn expected_objects_leave_out_secret_data_and_edited_templates() {
        let dir = tempfile::tempdir().expect("temp dir");
        let recorded = json!({"name": "db", "namespace": "web", "data": "sha256:abc"});
        let attributes = recorded.as_object().expect("an object").clone();
        let objects = expected(
            "k8s.secret",
            "k8s.secret.db",
            &attributes,
            &settings(dir.path()),
        )
        .expect("a secret rebuilds without its data");
        assert_eq!(objects[0].1.get("data"), None);
        std::fs::write(
            dir.path().join("cm.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
        )
        .expect("write");
        let digest = crate::resources::template_digest(dir.path(), "cm.yaml");
        let recorded = json!({"template": "cm.yaml", "template_digest": digest, "namespace": "web", "values": {}});
        let attributes = recorded.as_object().expect("an object").clone();
        assert!(expected("k8s.manifest", "m", &attributes, &settings(dir.path())).is_some());
        std::fs::write(
            dir.path().join("cm.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n",
        )
        .expect("edit");
        assert!(expected("k8s.manifest", "m", &attributes, &settings(dir.path())).is_none());
    }

    #[test]
    fn what_holds_names_finalizers_and_conditions() {
        let live = json!({"metadata": {"finalizers": ["example.com/block"]},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"conditions": [
                {"type": "NamespaceContentRemaining", "status": "True", "message": "1 ConfigMap left"},
                {"type": "Other", "status": "False", "message": "fine"}]}});
        assert_eq!(
            what_holds(&live),
            "finalizers: example.com/block, kubernetes; NamespaceContentRemaining: 1 ConfigMap left"
        );
    }

    #[test]
    fn a_difference_names_the_field_manager_that_owns_the_field_now() {
        // managedFields as the Kubernetes server-side apply documentation shows them.
        let applied = json!({"kind": "Deployment", "metadata": {"labels": {"app.kubernetes.io/name": "web"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "web", "image": "web:1", "ports": [{"containerPort": 8080}]}]}}}});
        let live = json!({"kind": "Deployment", "metadata": {
            "labels": {"app.kubernetes.io/name": "api"},
            "managedFields": [
                {"manager": "trails", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": {
                    "f:spec": {"f:template": {"f:spec": {"f:containers": {
                        "k:{\"name\":\"web\"}": {".": {}, "f:name": {}, "f:ports": {
                            "k:{\"containerPort\":8080,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}}}}}}}},
                {"manager": "kubectl-edit", "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": {
                    "f:metadata": {"f:labels": {"f:app.kubernetes.io/name": {}}},
                    "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                        "k:{\"name\":\"web\"}": {"f:image": {}}}}}}}}]},
            "spec": {"replicas": 5, "template": {"spec": {"containers": [
                {"name": "web", "image": "web:2", "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]}}}});
        assert_eq!(
            differences(&applied, &live, "trails"),
            [
                "metadata.labels[\"app.kubernetes.io/name\"]: \"web\" -> \"api\" (set by kubectl-edit)",
                "spec.replicas: 2 -> 5 (set by kubectl-edit)",
                "spec.template.spec.containers[name=web].image: \"web:1\" -> \"web:2\" (set by kubectl-edit)",
            ]
        );
        // Without managedFields (or when trails still owns the field), nobody is named.
        let mut unowned = live.clone();
        unowned["metadata"]
            .as_object_mut()
            .expect("metadata")
            .remove("managedFields");
        assert_eq!(
            differences(&applied, &unowned, "trails")[1],
            "spec.replicas: 2 -> 5"
        );
    }
}
