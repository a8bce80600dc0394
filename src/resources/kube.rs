//! In-cluster resources: namespaces, storage classes, role bindings, secrets, templated manifests.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::eks::cluster_addresses;
use super::{Kind, Spec, address, file_digest, sorted};
use crate::blueprint::FieldPath;
use crate::graph::Builder;

/// A namespace.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Namespace {
    /// Namespace name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// trails' mark: `BLUEPRINT/ENVIRONMENT/ADDRESS` (empty in a state written before marks).
    #[serde(default)]
    pub owner: String,
}

impl Spec for Namespace {
    const KIND: &'static Kind = &Kind {
        name: "k8s.namespace",
        summary: "Kubernetes namespace",
        replace_on: &[("name", "a namespace cannot be renamed")],
        replace_check: None,
        sensitive: &[],
        outputs: &["name"],
        sensitive_outputs: &[],
    };
}

/// A storage class; Kubernetes makes most of its fields immutable.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StorageClass {
    /// Class name.
    pub name: String,
    /// CSI provisioner.
    pub provisioner: String,
    /// Provisioner parameters.
    pub parameters: BTreeMap<String, String>,
    /// `Delete` or `Retain`.
    pub reclaim_policy: String,
    /// Binding mode.
    pub volume_binding_mode: String,
    /// Allow PVCs to grow.
    pub allow_volume_expansion: bool,
    /// Cluster default.
    pub default: bool,
    /// trails' mark: `BLUEPRINT/ENVIRONMENT/ADDRESS` (empty in a state written before marks).
    #[serde(default)]
    pub owner: String,
}

impl Spec for StorageClass {
    const KIND: &'static Kind = &Kind {
        name: "k8s.storage_class",
        summary: "Kubernetes storage class",
        replace_on: &[
            ("provisioner", "a storage class's provisioner is immutable"),
            ("parameters", "a storage class's parameters are immutable"),
            (
                "reclaim_policy",
                "a storage class's reclaim policy is immutable",
            ),
            (
                "volume_binding_mode",
                "a storage class's binding mode is immutable",
            ),
        ],
        replace_check: None,
        sensitive: &[],
        outputs: &["name"],
        sensitive_outputs: &[],
    };
}

/// A (cluster) role binding of a group to a cluster role.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RoleBinding {
    /// Binding name.
    pub name: String,
    /// Namespace, or cluster-wide when absent.
    pub namespace: Option<String>,
    /// Group.
    pub group: String,
    /// Cluster role.
    pub cluster_role: String,
    /// trails' mark: `BLUEPRINT/ENVIRONMENT/ADDRESS` (empty in a state written before marks).
    #[serde(default)]
    pub owner: String,
}

impl Spec for RoleBinding {
    const KIND: &'static Kind = &Kind {
        name: "k8s.role_binding",
        summary: "Kubernetes role binding",
        replace_on: &[
            ("cluster_role", "a binding's role reference is immutable"),
            ("namespace", "a binding cannot move to another namespace"),
        ],
        replace_check: None,
        sensitive: &[],
        outputs: &["name"],
        sensitive_outputs: &[],
    };
}

/// A secret; its data is never shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Secret {
    /// Secret name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Keys and values.
    pub data: BTreeMap<String, String>,
    /// trails' mark: `BLUEPRINT/ENVIRONMENT/ADDRESS` (empty in a state written before marks).
    #[serde(default)]
    pub owner: String,
}

impl Spec for Secret {
    const KIND: &'static Kind = &Kind {
        name: "k8s.secret",
        summary: "Kubernetes secret",
        replace_on: &[("namespace", "a secret cannot move to another namespace")],
        replace_check: None,
        sensitive: &["data"],
        outputs: &["name"],
        sensitive_outputs: &[],
    };
}

/// Objects rendered from a tera template and applied with server-side apply.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Template path, relative to the templates directory.
    pub template: String,
    /// Digest of the template, so edits show in the plan.
    pub template_digest: String,
    /// Namespace of the objects.
    pub namespace: Option<String>,
    /// Template values.
    pub values: BTreeMap<String, Value>,
    /// trails' mark: `BLUEPRINT/ENVIRONMENT/ADDRESS` (empty in a state written before marks).
    #[serde(default)]
    pub owner: String,
}

impl Spec for Manifest {
    const KIND: &'static Kind = &Kind {
        name: "k8s.manifest",
        summary: "Kubernetes objects from a template",
        replace_on: &[],
        replace_check: None,
        sensitive: &[],
        outputs: &["name"],
        sensitive_outputs: &[],
    };
}

/// Makes an in-cluster resource wait for the cluster, its node pools and its namespace.
pub fn in_cluster(builder: &mut Builder<'_>, dependent: &str, namespace: Option<&str>) {
    for cluster in cluster_addresses(builder) {
        builder.depends(dependent, &cluster);
    }
    if let Some(namespace) = namespace {
        let declared = builder
            .loaded
            .document
            .kubernetes
            .as_ref()
            .is_some_and(|k| k.namespaces.contains_key(namespace));
        if declared {
            builder.depends(dependent, &address::<Namespace>(namespace));
        }
    }
}

/// Expands `kubernetes`.
pub fn expand(builder: &mut Builder<'_>) {
    let loaded = builder.loaded;
    let Some(kubernetes) = &loaded.document.kubernetes else {
        return;
    };
    let base = FieldPath::of("kubernetes");
    for (name, namespace) in &kubernetes.namespaces {
        let address = builder.add(
            name,
            &Namespace {
                owner: builder.owner::<Namespace>(name),
                name: name.clone(),
                labels: sorted(&namespace.labels),
            },
            base.key("namespaces").key(name.clone()),
        );
        in_cluster(builder, &address, None);
    }
    for (name, class) in &kubernetes.storage_classes {
        let address = builder.add(
            name,
            &StorageClass {
                owner: builder.owner::<StorageClass>(name),
                name: name.clone(),
                provisioner: class.provisioner.clone(),
                parameters: sorted(&class.parameters),
                reclaim_policy: class.reclaim_policy.clone(),
                volume_binding_mode: class.volume_binding_mode.clone(),
                allow_volume_expansion: class.allow_volume_expansion,
                default: class.default,
            },
            base.key("storage_classes").key(name.clone()),
        );
        in_cluster(builder, &address, None);
    }
    for (name, binding) in &kubernetes.rbac {
        let address = builder.add(
            name,
            &RoleBinding {
                owner: builder.owner::<RoleBinding>(name),
                name: name.clone(),
                namespace: binding.namespace.clone(),
                group: binding.group.clone(),
                cluster_role: binding.cluster_role.clone(),
            },
            base.key("rbac").key(name.clone()),
        );
        in_cluster(builder, &address, binding.namespace.as_deref());
    }
    for (name, secret) in &kubernetes.secrets {
        let address = builder.add(
            name,
            &Secret {
                owner: builder.owner::<Secret>(name),
                name: name.clone(),
                namespace: secret.namespace.clone(),
                data: sorted(&secret.data),
            },
            base.key("secrets").key(name.clone()),
        );
        in_cluster(builder, &address, Some(&secret.namespace));
    }
    for (name, manifest) in &kubernetes.manifests {
        let path = base.key("manifests").key(name.clone());
        let address = builder.add(
            name,
            &Manifest {
                owner: builder.owner::<Manifest>(name),
                template: manifest.template.clone(),
                template_digest: file_digest(loaded, &manifest.template),
                namespace: manifest.namespace.clone(),
                values: manifest
                    .values
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            },
            path.clone(),
        );
        in_cluster(builder, &address, manifest.namespace.as_deref());
        builder.depends_on_declared(&address, &manifest.depends_on, &path.key("depends_on"));
    }
}
