//! Helm releases as graph nodes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::kube::{StorageClass, in_cluster};
use super::{Kind, Spec, address, file_digest};
use crate::blueprint::FieldPath;
use crate::graph::Builder;

/// A Helm release with pinned chart version and templated values.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Release {
    /// Release name.
    pub name: String,
    /// Chart name.
    pub chart: String,
    /// Chart repository.
    pub repository: String,
    /// Pinned chart version.
    pub version: String,
    /// Namespace.
    pub namespace: String,
    /// Whether trails creates the namespace (declared under `kubernetes.namespaces`); helm
    /// creates it otherwise.
    pub namespace_managed: bool,
    /// Values template, relative to the templates directory.
    pub values_template: Option<String>,
    /// Digest of the values template, so edits show in the plan.
    pub values_template_digest: Option<String>,
    /// Values passed to the template.
    pub values: BTreeMap<String, Value>,
    /// Minutes helm may wait for readiness.
    pub timeout_minutes: u32,
    /// trails' mark: `BLUEPRINT/ENVIRONMENT/ADDRESS` (empty in a state written before marks).
    #[serde(default)]
    pub owner: String,
}

impl Spec for Release {
    const KIND: &'static Kind = &Kind {
        name: "helm.release",
        summary: "Helm release",
        replace_on: &[
            ("name", "a release cannot be renamed"),
            ("namespace", "a release cannot move to another namespace"),
        ],
        replace_check: None,
        sensitive: &[],
        outputs: &["name", "namespace", "status"],
        sensitive_outputs: &[],
    };
}

/// Expands `helm`.
pub fn expand(builder: &mut Builder<'_>) {
    let loaded = builder.loaded;
    let storage_classes: Vec<String> = loaded
        .document
        .kubernetes
        .as_ref()
        .map(|k| {
            k.storage_classes
                .keys()
                .map(|name| address::<StorageClass>(name))
                .collect()
        })
        .unwrap_or_default();
    for (name, release) in &loaded.document.helm {
        let path = FieldPath::of("helm").key(name.clone());
        let address = builder.add(
            name,
            &Release {
                owner: builder.owner::<Release>(name),
                name: name.clone(),
                chart: release.chart.clone(),
                repository: release.repository.clone(),
                version: release.version.clone(),
                namespace: release.namespace.clone(),
                namespace_managed: loaded
                    .document
                    .kubernetes
                    .as_ref()
                    .is_some_and(|k| k.namespaces.contains_key(&release.namespace)),
                values_template: release.values_template.clone(),
                values_template_digest: release
                    .values_template
                    .as_deref()
                    .map(|template| file_digest(loaded, template)),
                values: release
                    .values
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
                timeout_minutes: release.timeout_minutes,
            },
            path.clone(),
        );
        in_cluster(builder, &address, Some(&release.namespace));
        // Charts with persistent volumes need their storage classes first.
        for class in &storage_classes {
            builder.depends(&address, class);
        }
        builder.depends_on_declared(&address, &release.depends_on, &path.key("depends_on"));
    }
}
