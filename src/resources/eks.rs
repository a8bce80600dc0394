//! The EKS cluster, its managed node groups and add-ons, with the cluster and node roles.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::iam::{IamRole, assume_role_policy};
use super::network::{SecurityGroup, groups, subnet_addresses, subnet_ids};
use super::{Kind, Spec, address, aws_tags, output, sorted};
use crate::blueprint::FieldPath;
use crate::blueprint::naming::prefix;
use crate::blueprint::schema::Taint;
use crate::graph::Builder;

/// Name of the blueprint's one cluster in addresses.
pub const CLUSTER: &str = "main";
/// Role the control plane assumes.
pub const CLUSTER_ROLE: &str = "eks-cluster";
/// Role the nodes assume.
pub const NODE_ROLE: &str = "eks-nodes";

/// The cluster.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cluster {
    /// Cluster name.
    pub name: String,
    /// Kubernetes version.
    pub version: String,
    /// Control-plane role.
    pub role_arn: String,
    /// Subnets for the control plane's network interfaces.
    pub subnet_ids: Vec<String>,
    /// Extra security groups.
    pub security_group_ids: Vec<String>,
    /// API reachable from the internet.
    pub endpoint_public_access: bool,
    /// API reachable from inside the VPC.
    pub endpoint_private_access: bool,
    /// Who may reach a public API.
    pub public_access_cidrs: Vec<String>,
    /// Control-plane log types.
    pub logging: Vec<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Spec for Cluster {
    const KIND: &'static Kind = &Kind {
        name: "aws.eks_cluster",
        summary: "EKS cluster",
        replace_on: &[
            ("name", "a cluster cannot be renamed"),
            ("role_arn", "a cluster's role cannot be changed"),
        ],
        replace_check: Some(version_cannot_go_down),
        sensitive: &[],
        outputs: &[
            "name",
            "arn",
            "endpoint",
            "certificate_authority",
            "oidc_issuer",
            "version",
        ],
        sensitive_outputs: &[],
    };
}

fn version_cannot_go_down(
    attribute: &str,
    before: &serde_json::Value,
    after: &serde_json::Value,
) -> Option<String> {
    let minor = |value: &serde_json::Value| {
        value
            .as_str()
            .and_then(|v| v.split_once('.'))
            .and_then(|(_, minor)| minor.parse::<u32>().ok())
    };
    match (attribute, minor(before), minor(after)) {
        ("version", Some(before), Some(after)) if after < before => {
            Some("EKS cannot downgrade a cluster".to_string())
        }
        _ => None,
    }
}

/// Autoscaling bounds of a node group.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Scaling {
    /// Lower bound.
    pub min: u32,
    /// Upper bound.
    pub max: u32,
    /// Initial size.
    pub desired: u32,
}

/// A managed node group.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeGroup {
    /// The cluster.
    pub cluster_name: String,
    /// Node group name.
    pub name: String,
    /// Node role.
    pub node_role_arn: String,
    /// Subnets the nodes run in.
    pub subnet_ids: Vec<String>,
    /// Instance types.
    pub instance_types: Vec<String>,
    /// `ON_DEMAND` or `SPOT`.
    pub capacity_type: String,
    /// Root volume size in GiB.
    pub disk_size: u32,
    /// Sizes.
    pub scaling: Scaling,
    /// Node labels.
    pub labels: BTreeMap<String, String>,
    /// Node taints.
    pub taints: Vec<Taint>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Spec for NodeGroup {
    const KIND: &'static Kind = &Kind {
        name: "aws.eks_node_group",
        summary: "EKS managed node group",
        replace_on: &[
            (
                "cluster_name",
                "a node group cannot move to another cluster",
            ),
            ("name", "a node group cannot be renamed"),
            ("node_role_arn", "a node group's role cannot be changed"),
            ("subnet_ids", "a node group's subnets cannot be changed"),
            (
                "instance_types",
                "a node group's instance types cannot be changed",
            ),
            (
                "capacity_type",
                "a node group's capacity type cannot be changed",
            ),
            ("disk_size", "a node group's disk size cannot be changed"),
        ],
        replace_check: None,
        sensitive: &[],
        outputs: &["name", "arn"],
        sensitive_outputs: &[],
    };
}

/// An EKS add-on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Addon {
    /// The cluster.
    pub cluster_name: String,
    /// Add-on name, e.g. `vpc-cni`.
    pub name: String,
    /// Pinned add-on version.
    pub version: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Spec for Addon {
    const KIND: &'static Kind = &Kind {
        name: "aws.eks_addon",
        summary: "EKS add-on",
        replace_on: &[("name", "an add-on cannot be renamed")],
        replace_check: None,
        sensitive: &[],
        outputs: &["arn"],
        sensitive_outputs: &[],
    };
}

/// AWS managed policies an add-on's pods need, given to the node role when the add-on is
/// declared: without `AmazonEBSCSIDriverPolicy` the EBS CSI driver runs but every volume claim
/// stays Pending (AWS's "Store Kubernetes volumes with Amazon EBS" names the policy).
const ADDON_NODE_POLICIES: &[(&str, &str)] = &[(
    "aws-ebs-csi-driver",
    "service-role/AmazonEBSCSIDriverPolicy",
)];

/// Expands `eks` into the roles, the cluster, its node groups and add-ons.
pub fn expand(builder: &mut Builder<'_>) {
    let loaded = builder.loaded;
    let Some(eks) = loaded.document.eks.clone() else {
        return;
    };
    let base = FieldPath::of("eks");
    let name = prefix(loaded);
    let role = |builder: &mut Builder<'_>, role: &str, service: &str, policies: &[&str]| {
        let full_name = format!("{name}-{role}");
        builder.add(
            role,
            &IamRole {
                name: full_name.clone(),
                assume_role_policy: assume_role_policy(service),
                managed_policy_arns: policies
                    .iter()
                    .map(|policy| format!("arn:aws:iam::aws:policy/{policy}"))
                    .collect(),
                inline_policies: BTreeMap::new(),
                tags: aws_tags(loaded, &address::<IamRole>(role), &full_name),
            },
            base.clone(),
        );
    };
    role(
        builder,
        CLUSTER_ROLE,
        "eks.amazonaws.com",
        &["AmazonEKSClusterPolicy"],
    );
    let mut node_policies = vec![
        "AmazonEKSWorkerNodePolicy",
        "AmazonEKS_CNI_Policy",
        "AmazonEC2ContainerRegistryReadOnly",
    ];
    node_policies.extend(
        ADDON_NODE_POLICIES
            .iter()
            .filter(|(addon, _)| eks.addons.contains_key(*addon))
            .map(|(_, policy)| *policy),
    );
    role(builder, NODE_ROLE, "ec2.amazonaws.com", &node_policies);

    let private_subnets = subnet_ids(builder, "private");
    builder.add(
        CLUSTER,
        &Cluster {
            name: name.clone(),
            version: eks.version.clone(),
            role_arn: output::<IamRole>(CLUSTER_ROLE, "arn"),
            subnet_ids: private_subnets.clone(),
            security_group_ids: vec![output::<SecurityGroup>(groups::NODES, "id")],
            endpoint_public_access: eks.public_endpoint,
            endpoint_private_access: true,
            public_access_cidrs: if eks.public_endpoint {
                eks.public_access_cidrs.clone()
            } else {
                Vec::new()
            },
            logging: eks.logging.clone(),
            tags: aws_tags(loaded, &address::<Cluster>(CLUSTER), &name),
        },
        base.key("version"),
    );
    // The load balancers the cluster's controllers create live in the public subnets: those
    // go only after the cluster (and so after everything in it).
    let cluster = address::<Cluster>(CLUSTER);
    for subnet in subnet_addresses(builder, "public") {
        builder.depends(&cluster, &subnet);
    }

    for (pool, spec) in &eks.node_pools {
        let full_name = format!("{name}-{pool}");
        builder.add(
            pool,
            &NodeGroup {
                cluster_name: output::<Cluster>(CLUSTER, "name"),
                name: full_name.clone(),
                node_role_arn: output::<IamRole>(NODE_ROLE, "arn"),
                subnet_ids: private_subnets.clone(),
                instance_types: spec.instance_types.clone(),
                capacity_type: spec.capacity_type.clone(),
                disk_size: spec.disk_gb,
                scaling: Scaling {
                    min: spec.min,
                    max: spec.max,
                    desired: spec.desired.unwrap_or(spec.min),
                },
                labels: sorted(&spec.labels),
                taints: spec.taints.clone(),
                tags: aws_tags(loaded, &address::<NodeGroup>(pool), &full_name),
            },
            base.key("node_pools").key(pool.clone()),
        );
    }

    for (addon, version) in &eks.addons {
        builder.add(
            addon,
            &Addon {
                cluster_name: output::<Cluster>(CLUSTER, "name"),
                name: addon.clone(),
                version: version.clone(),
                tags: aws_tags(loaded, &address::<Addon>(addon), addon),
            },
            base.key("addons").key(addon.clone()),
        );
        // Add-ons such as CoreDNS only become healthy once nodes can run their pods.
        for pool in eks.node_pools.keys() {
            builder.depends(&address::<Addon>(addon), &address::<NodeGroup>(pool));
        }
    }
}

/// Addresses of the cluster and its node groups: what every in-cluster resource waits for.
pub fn cluster_addresses(builder: &Builder<'_>) -> Vec<String> {
    let Some(eks) = &builder.loaded.document.eks else {
        return Vec::new();
    };
    std::iter::once(address::<Cluster>(CLUSTER))
        .chain(eks.node_pools.keys().map(|pool| address::<NodeGroup>(pool)))
        .collect()
}
