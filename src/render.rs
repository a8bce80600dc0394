//! What trails would apply inside the cluster, as text (`trails render`): every Kubernetes
//! object and every Helm values file, rendered as apply renders them. Outputs not known before
//! apply stay `${ADDRESS.OUTPUT}`; Secrets' values and sensitive variables are redacted.
//!
//! `validate` uses the same rendering to report what would otherwise fail only at apply: a
//! template that does not render, a document that is not YAML, and an object with a field its
//! Kubernetes type does not have (checked against the typed `k8s-openapi` structs).

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::blueprint::{Diagnostic, Loaded, diagnostic::Location};
use crate::graph::{Graph, Resource};
use crate::providers::kube::{Settings, objects};
use crate::providers::{spec, template};
use crate::resources::{Kind, Spec, helm, kube};

/// What one resource renders to.
#[derive(Debug, Clone)]
pub struct Item {
    /// The resource.
    pub address: String,
    /// Its objects, or its Helm values file.
    pub content: Content,
}

/// The rendered text of one resource.
#[derive(Debug, Clone)]
pub enum Content {
    /// Kubernetes objects, in the order they are applied.
    Objects(Vec<Value>),
    /// A Helm release's values file (empty when it has no template).
    Values(String),
}

/// A resource that cannot be rendered, or renders something Kubernetes would refuse.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The resource.
    pub address: String,
    /// The template, when one is to blame, and the line in it when it can be told.
    pub template: Option<(PathBuf, Option<usize>)>,
    /// What is wrong.
    pub message: String,
}

/// Everything rendered, and what could not be.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    /// In graph order.
    pub items: Vec<Item>,
    /// What failed or was refused.
    pub problems: Vec<Problem>,
}

fn in_cluster(kind: &Kind) -> bool {
    kind == kube::Namespace::KIND
        || kind == kube::StorageClass::KIND
        || kind == kube::RoleBinding::KIND
        || kind == kube::Secret::KIND
        || kind == kube::Manifest::KIND
}

/// Renders every in-cluster resource and Helm release of the graph.
pub fn render(loaded: &Loaded, graph: &Graph) -> Rendered {
    let settings = Settings::for_blueprint(loaded, std::time::Duration::ZERO);
    let mut rendered = Rendered::default();
    for resource in graph.resources() {
        let desired = Value::Object(resource.attributes.clone());
        let template = text(resource, "template")
            .or_else(|| text(resource, "values_template"))
            .map(|relative| settings.templates_dir.join(relative));
        let problem = |message: String, line: Option<usize>| Problem {
            address: resource.address.clone(),
            template: template.clone().map(|path| (path, line)),
            message,
        };
        if in_cluster(resource.kind) {
            match objects::build(resource.kind.name, &resource.address, &desired, &settings) {
                Ok(built) => {
                    let mut bodies = Vec::new();
                    for (object, body) in built {
                        for field in unknown_fields(&body) {
                            let line = template.as_deref().and_then(|path| line_of(path, &field));
                            rendered
                                .problems
                                .push(problem(format!("{object}: {field}"), line));
                        }
                        bodies.push(redact_secret(body));
                    }
                    rendered.items.push(Item {
                        address: resource.address.clone(),
                        content: Content::Objects(bodies),
                    });
                }
                Err(error) => rendered.problems.push(problem(error.to_string(), None)),
            }
        } else if resource.kind == helm::Release::KIND {
            match values(&settings.templates_dir, &desired) {
                Ok(text) => rendered.items.push(Item {
                    address: resource.address.clone(),
                    content: Content::Values(loaded.sensitive.redact(&text)),
                }),
                Err(message) => rendered.problems.push(problem(message, None)),
            }
        }
    }
    rendered
}

fn text<'a>(resource: &'a Resource, name: &str) -> Option<&'a str> {
    resource.attributes.get(name).and_then(Value::as_str)
}

/// A release's values file, rendered and checked to be YAML.
fn values(templates_dir: &Path, desired: &Value) -> Result<String, String> {
    let release: helm::Release = spec(desired).map_err(|error| error.to_string())?;
    let Some(path) = &release.values_template else {
        return Ok(String::new());
    };
    let text = template::render(templates_dir, path, &release.values)
        .map_err(|error| error.to_string())?;
    serde_yaml::from_str::<serde_yaml::Value>(&text)
        .map_err(|error| format!("template {path} renders values that are not YAML: {error}"))?;
    Ok(text)
}

/// The text of [`Rendered::items`] as YAML documents, each after a `# Source:` comment.
pub fn to_yaml(items: &[Item]) -> String {
    let mut out = String::new();
    for item in items {
        match &item.content {
            Content::Objects(bodies) => {
                for body in bodies {
                    out.push_str(&format!("---\n# Source: {}\n", item.address));
                    out.push_str(&serde_yaml::to_string(body).unwrap_or_default());
                }
            }
            Content::Values(text) => {
                out.push_str(&format!("---\n# Source: {} (Helm values)\n", item.address));
                out.push_str(text);
                if !text.ends_with('\n') {
                    out.push('\n');
                }
            }
        }
    }
    out
}

/// The problems as validation errors, at the template line where one is known.
pub fn diagnostics(rendered: &Rendered, loaded: &Loaded) -> Vec<Diagnostic> {
    rendered
        .problems
        .iter()
        .map(|problem| {
            let message = format!("{}: {}", problem.address, problem.message);
            match &problem.template {
                Some((file, line)) => {
                    Diagnostic::file_error(file.clone(), message).at(line.map(|line| Location {
                        file: file.clone(),
                        line,
                        column: 1,
                    }))
                }
                None => Diagnostic::file_error(loaded.file.clone(), message),
            }
        })
        .collect()
}

/// The bytes `(redacted)`, base64-encoded as a Secret's `data` values are.
const REDACTED_BASE64: &str = "KHJlZGFjdGVkKQ==";

fn redact_secret(mut body: Value) -> Value {
    if body["kind"] != "Secret" {
        return body;
    }
    for (field, redacted) in [("data", REDACTED_BASE64), ("stringData", "(redacted)")] {
        if let Some(values) = body.get_mut(field).and_then(Value::as_object_mut) {
            for value in values.values_mut() {
                *value = Value::String(redacted.to_string());
            }
        }
    }
    body
}

/// The first line of a template that writes `KEY:` for the last key of `field`.
fn line_of(template: &Path, field: &str) -> Option<usize> {
    let key = field
        .split_whitespace()
        .next()?
        .rsplit('.')
        .next()?
        .split('[')
        .next()?;
    let text = std::fs::read_to_string(template).ok()?;
    text.lines()
        .position(|line| {
            let line = line.trim_start().trim_start_matches("- ");
            line.starts_with(&format!("{key}:"))
        })
        .map(|index| index + 1)
}

/// What Kubernetes would refuse in `body` of a built-in kind: fields its type does not have,
/// and values of the wrong type. Kinds without a typed struct (custom resources) are not
/// checked; neither is an object whose values still hold references known only at apply.
pub fn unknown_fields(body: &Value) -> Vec<String> {
    let api = body["apiVersion"].as_str().unwrap_or_default();
    let kind = body["kind"].as_str().unwrap_or_default();
    macro_rules! typed {
        ($( ($group:literal, $name:literal, $ty:ty) ),* $(,)?) => {
            match (api, kind) {
                $( ($group, $name) => check::<$ty>(body), )*
                _ => Vec::new(),
            }
        };
    }
    use k8s_openapi::api::{apps, autoscaling, batch, core, networking, policy, rbac, storage};
    typed!(
        ("v1", "Namespace", core::v1::Namespace),
        ("v1", "Service", core::v1::Service),
        ("v1", "Secret", core::v1::Secret),
        ("v1", "ConfigMap", core::v1::ConfigMap),
        ("v1", "ServiceAccount", core::v1::ServiceAccount),
        ("v1", "Pod", core::v1::Pod),
        ("apps/v1", "Deployment", apps::v1::Deployment),
        ("apps/v1", "StatefulSet", apps::v1::StatefulSet),
        ("apps/v1", "DaemonSet", apps::v1::DaemonSet),
        ("batch/v1", "Job", batch::v1::Job),
        ("batch/v1", "CronJob", batch::v1::CronJob),
        (
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            autoscaling::v2::HorizontalPodAutoscaler
        ),
        (
            "policy/v1",
            "PodDisruptionBudget",
            policy::v1::PodDisruptionBudget
        ),
        ("networking.k8s.io/v1", "Ingress", networking::v1::Ingress),
        (
            "networking.k8s.io/v1",
            "NetworkPolicy",
            networking::v1::NetworkPolicy
        ),
        ("rbac.authorization.k8s.io/v1", "Role", rbac::v1::Role),
        (
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            rbac::v1::ClusterRole
        ),
        (
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            rbac::v1::RoleBinding
        ),
        (
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            rbac::v1::ClusterRoleBinding
        ),
        (
            "storage.k8s.io/v1",
            "StorageClass",
            storage::v1::StorageClass
        ),
    )
}

/// Reads `body` as `T` and back: a field that does not survive is one `T` does not have.
fn check<T: DeserializeOwned + Serialize>(body: &Value) -> Vec<String> {
    let pending = body.to_string().contains("${");
    let typed: T = match serde_path_to_error::deserialize(body) {
        Ok(typed) => typed,
        Err(_) if pending => return Vec::new(),
        Err(error) => {
            return vec![format!(
                "{} has the wrong type: {}",
                error.path(),
                error.inner()
            )];
        }
    };
    let Ok(back) = serde_json::to_value(&typed) else {
        return Vec::new();
    };
    let mut unknown = Vec::new();
    lost(body, &back, "", &mut unknown);
    unknown
        .into_iter()
        .map(|path| {
            format!("{path} is not a field of its kind (misspelled, or at the wrong level?)")
        })
        .collect()
}

fn lost(original: &Value, back: &Value, path: &str, found: &mut Vec<String>) {
    match (original, back) {
        (Value::Object(fields), Value::Object(kept)) => {
            for (key, value) in fields {
                let at = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match kept.get(key) {
                    None if !value.is_null() => found.push(at),
                    None => {}
                    Some(next) => lost(value, next, &at, found),
                }
            }
        }
        (Value::Array(items), Value::Array(kept)) => {
            for (index, (item, next)) in items.iter().zip(kept).enumerate() {
                lost(item, next, &format!("{path}[{index}]"), found);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelled_field_is_named_with_its_path() {
        let body = serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "web", "labels": { "any-label": "kept" } },
            "spec": {
                "replicsa": 2,
                "selector": { "matchLabels": { "app": "web" } },
                "template": { "spec": { "containers": [
                    { "name": "web", "image": "web:1", "imagePullPolcy": "Always",
                      "resources": { "limits": { "memory": "1Gi" } } }
                ]}}
            }
        });
        let found = unknown_fields(&body);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("spec.replicsa is not a field"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("spec.template.spec.containers[0].imagePullPolcy"),
            "{found:?}"
        );
    }

    #[test]
    fn a_wrong_type_is_named_and_a_custom_kind_is_not_checked() {
        let body = serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": "web" },
            "spec": { "ports": [{ "port": "eighty" }] }
        });
        let found = unknown_fields(&body);
        assert!(
            found[0].starts_with("spec.ports[0].port has the wrong type"),
            "{found:?}"
        );
        let custom = serde_json::json!({
            "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": { "name": "web" }, "spec": { "anything": 1 }
        });
        assert!(unknown_fields(&custom).is_empty());
    }

    #[test]
    fn secrets_are_redacted() {
        let body = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "s" },
            "data": { "password": "c2VjcmV0" }, "stringData": { "token": "secret" }
        });
        let redacted = redact_secret(body).to_string();
        assert!(!redacted.contains("c2VjcmV0") && !redacted.contains("\"secret\""));
    }
}
