//! RDS PostgreSQL: subnet group, parameter group and the instance.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::network::{SecurityGroup, groups, subnet_ids};
use super::{Kind, Spec, address, aws_tags, major_version, output, sorted};
use crate::blueprint::FieldPath;
use crate::blueprint::naming::prefix;
use crate::graph::Builder;

/// A DB subnet group over the database subnets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DbSubnetGroup {
    /// Group name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Database subnets.
    pub subnet_ids: Vec<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Spec for DbSubnetGroup {
    const KIND: &'static Kind = &Kind {
        name: "aws.db_subnet_group",
        summary: "RDS subnet group",
        replace_on: &[("name", "a DB subnet group cannot be renamed")],
        replace_check: None,
        sensitive: &[],
        outputs: &["name", "arn"],
        sensitive_outputs: &[],
    };
}

/// A DB parameter group.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DbParameterGroup {
    /// Group name.
    pub name: String,
    /// Parameter group family, e.g. `postgres16`.
    pub family: String,
    /// Description.
    pub description: String,
    /// Parameters.
    pub parameters: BTreeMap<String, String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Spec for DbParameterGroup {
    const KIND: &'static Kind = &Kind {
        name: "aws.db_parameter_group",
        summary: "RDS parameter group",
        replace_on: &[
            ("name", "a parameter group cannot be renamed"),
            ("family", "a parameter group's family cannot be changed"),
        ],
        replace_check: None,
        sensitive: &[],
        outputs: &["name", "arn"],
        sensitive_outputs: &[],
    };
}

/// A PostgreSQL instance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DbInstance {
    /// Instance identifier.
    pub identifier: String,
    /// Always `postgres`.
    pub engine: String,
    /// Engine version.
    pub engine_version: String,
    /// Instance class.
    pub instance_class: String,
    /// Allocated storage in GiB.
    pub allocated_storage: u32,
    /// Storage autoscaling ceiling in GiB.
    pub max_allocated_storage: Option<u32>,
    /// Storage type.
    pub storage_type: String,
    /// Encryption at rest.
    pub storage_encrypted: bool,
    /// Standby in another zone.
    pub multi_az: bool,
    /// Subnet group.
    pub db_subnet_group_name: String,
    /// Parameter group.
    pub parameter_group_name: String,
    /// Security groups.
    pub vpc_security_group_ids: Vec<String>,
    /// Days of automated backups.
    pub backup_retention_period: u32,
    /// Backup window.
    pub preferred_backup_window: String,
    /// Refuse deletion.
    pub deletion_protection: bool,
    /// Never reachable from the internet.
    pub publicly_accessible: bool,
    /// Master user; the password is generated at creation and never shown.
    pub master_username: String,
    /// Skip the final snapshot on deletion (ephemeral environments only).
    pub skip_final_snapshot: bool,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Spec for DbInstance {
    const KIND: &'static Kind = &Kind {
        name: "aws.db_instance",
        summary: "RDS PostgreSQL instance",
        replace_on: &[
            (
                "identifier",
                "an instance identifier is its name here; renaming is a replacement",
            ),
            ("engine", "the engine of an instance cannot be changed"),
            (
                "storage_encrypted",
                "encryption cannot be turned on or off for an existing instance",
            ),
            ("master_username", "the master user name cannot be changed"),
        ],
        replace_check: None,
        sensitive: &[],
        outputs: &[
            "endpoint",
            "address",
            "port",
            "arn",
            "username",
            "master_user_secret_arn",
        ],
        // The password itself lives in Secrets Manager; it is read only where it is used.
        sensitive_outputs: &["password"],
    };
}

/// Expands `postgres` into a subnet group, parameter group and instance per entry.
pub fn expand(builder: &mut Builder<'_>) {
    let loaded = builder.loaded;
    let name_prefix = prefix(loaded);
    for (name, spec) in &loaded.document.postgres {
        let base = FieldPath::of("postgres").key(name.clone());
        let full_name = format!("{name_prefix}-{name}");
        let major = major_version(&spec.engine_version);
        builder.add(
            name,
            &DbSubnetGroup {
                name: full_name.clone(),
                description: format!("database subnets of {name_prefix}"),
                subnet_ids: subnet_ids(builder, "database"),
                tags: aws_tags(loaded, &address::<DbSubnetGroup>(name), &full_name),
            },
            base.clone(),
        );
        builder.add(
            name,
            &DbParameterGroup {
                name: full_name.clone(),
                family: format!("postgres{major}"),
                description: format!("parameters of {full_name}"),
                parameters: sorted(&spec.parameters),
                tags: aws_tags(loaded, &address::<DbParameterGroup>(name), &full_name),
            },
            base.key("parameters"),
        );
        builder.add(
            name,
            &DbInstance {
                identifier: full_name.clone(),
                engine: "postgres".to_string(),
                engine_version: spec.engine_version.clone(),
                instance_class: spec.instance_class.clone(),
                allocated_storage: spec.storage_gb,
                max_allocated_storage: spec.max_storage_gb,
                storage_type: "gp3".to_string(),
                storage_encrypted: true,
                multi_az: spec.multi_az,
                db_subnet_group_name: output::<DbSubnetGroup>(name, "name"),
                parameter_group_name: output::<DbParameterGroup>(name, "name"),
                vpc_security_group_ids: vec![output::<SecurityGroup>(groups::DATABASE, "id")],
                backup_retention_period: spec.backup_retention_days,
                preferred_backup_window: spec.backup_window.clone(),
                deletion_protection: spec.deletion_protection,
                publicly_accessible: false,
                master_username: spec.master_username.clone(),
                skip_final_snapshot: loaded.settings.ephemeral,
                tags: aws_tags(loaded, &address::<DbInstance>(name), &full_name),
            },
            base,
        );
    }
}
