//! ElastiCache Redis: subnet group, parameter group and the replication group.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::network::{SecurityGroup, groups, subnet_ids};
use super::{Kind, Spec, address, aws_tags, major_version, output, sorted};
use crate::blueprint::FieldPath;
use crate::blueprint::naming::prefix;
use crate::graph::Builder;

/// A cache subnet group over the database subnets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SubnetGroup {
    /// Group name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Subnets.
    pub subnet_ids: Vec<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Spec for SubnetGroup {
    const KIND: &'static Kind = &Kind {
        name: "aws.elasticache_subnet_group",
        summary: "ElastiCache subnet group",
        replace_on: &[("name", "a cache subnet group cannot be renamed")],
        replace_check: None,
        sensitive: &[],
        outputs: &["name"],
        sensitive_outputs: &[],
    };
}

/// A cache parameter group.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ParameterGroup {
    /// Group name.
    pub name: String,
    /// Family, e.g. `redis7`.
    pub family: String,
    /// Description.
    pub description: String,
    /// Parameters, `maxmemory-policy` among them.
    pub parameters: BTreeMap<String, String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Spec for ParameterGroup {
    const KIND: &'static Kind = &Kind {
        name: "aws.elasticache_parameter_group",
        summary: "ElastiCache parameter group",
        replace_on: &[
            ("name", "a parameter group cannot be renamed"),
            ("family", "a parameter group's family cannot be changed"),
        ],
        replace_check: None,
        sensitive: &[],
        outputs: &["name"],
        sensitive_outputs: &[],
    };
}

/// A Redis replication group.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReplicationGroup {
    /// Replication group id.
    pub id: String,
    /// Description.
    pub description: String,
    /// Engine version.
    pub engine_version: String,
    /// Node type.
    pub node_type: String,
    /// Cluster mode (sharding).
    pub cluster_mode: bool,
    /// Shards.
    pub num_node_groups: u32,
    /// Replicas per shard.
    pub replicas_per_node_group: u32,
    /// Automatic failover.
    pub automatic_failover: bool,
    /// Spread over zones.
    pub multi_az: bool,
    /// TLS in transit.
    pub transit_encryption: bool,
    /// Encryption at rest.
    pub at_rest_encryption: bool,
    /// Subnet group.
    pub subnet_group_name: String,
    /// Parameter group.
    pub parameter_group_name: String,
    /// Security groups.
    pub security_group_ids: Vec<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Spec for ReplicationGroup {
    const KIND: &'static Kind = &Kind {
        name: "aws.elasticache_replication_group",
        summary: "ElastiCache Redis replication group",
        replace_on: &[
            ("id", "a replication group cannot be renamed"),
            (
                "at_rest_encryption",
                "encryption at rest can only be chosen when the group is created",
            ),
            (
                "cluster_mode",
                "cluster mode cannot be switched on an existing group here",
            ),
            (
                "subnet_group_name",
                "a replication group cannot change subnet group",
            ),
            (
                "transit_encryption",
                "trails does not migrate a group to or from TLS in place yet",
            ),
            (
                "num_node_groups",
                "trails does not reshard a group in place yet",
            ),
            (
                "replicas_per_node_group",
                "trails does not change a group's replica count in place yet",
            ),
        ],
        replace_check: None,
        sensitive: &[],
        outputs: &[
            "configuration_endpoint",
            "primary_endpoint",
            "port",
            "arn",
            "auth_token_secret_arn",
        ],
        sensitive_outputs: &["auth_token"],
    };
}

/// Expands `redis` into a subnet group, parameter group and replication group per entry.
pub fn expand(builder: &mut Builder<'_>) {
    let loaded = builder.loaded;
    let name_prefix = prefix(loaded);
    for (name, spec) in &loaded.document.redis {
        let base = FieldPath::of("redis").key(name.clone());
        let full_name = format!("{name_prefix}-{name}");
        let major = major_version(&spec.engine_version);
        builder.add(
            name,
            &SubnetGroup {
                name: full_name.clone(),
                description: format!("database subnets of {name_prefix}"),
                subnet_ids: subnet_ids(builder, "database"),
                tags: aws_tags(loaded, &address::<SubnetGroup>(name), &full_name),
            },
            base.clone(),
        );
        let mut parameters: BTreeMap<String, String> = sorted(&spec.parameters);
        parameters.insert(
            "maxmemory-policy".to_string(),
            spec.maxmemory_policy.clone(),
        );
        parameters.insert(
            "cluster-enabled".to_string(),
            if spec.cluster_mode { "yes" } else { "no" }.to_string(),
        );
        builder.add(
            name,
            &ParameterGroup {
                name: full_name.clone(),
                family: format!("redis{major}"),
                description: format!("parameters of {full_name}"),
                parameters,
                tags: aws_tags(loaded, &address::<ParameterGroup>(name), &full_name),
            },
            base.key("maxmemory_policy"),
        );
        builder.add(
            name,
            &ReplicationGroup {
                id: full_name.clone(),
                description: format!("Redis of {name_prefix}"),
                engine_version: spec.engine_version.clone(),
                node_type: spec.node_type.clone(),
                cluster_mode: spec.cluster_mode,
                num_node_groups: spec.shards,
                replicas_per_node_group: spec.replicas_per_shard,
                automatic_failover: spec.automatic_failover,
                multi_az: spec.automatic_failover,
                transit_encryption: spec.transit_encryption,
                at_rest_encryption: spec.at_rest_encryption,
                subnet_group_name: output::<SubnetGroup>(name, "name"),
                parameter_group_name: output::<ParameterGroup>(name, "name"),
                security_group_ids: vec![output::<SecurityGroup>(groups::CACHE, "id")],
                tags: aws_tags(loaded, &address::<ReplicationGroup>(name), &full_name),
            },
            base,
        );
    }
}
