//! Resource types: each is a plain struct of desired attributes plus a static [`Kind`] that says
//! what it outputs, what is secret, and which changes force a replacement.
//!
//! Adding a type means adding its struct and `Kind` to a family file, expanding it from the
//! blueprint there, and listing the `Kind` in [`KINDS`]; the graph, plan and engine never change.

pub mod cache;
pub mod dayone;
pub mod eks;
pub mod helm;
pub mod iam;
pub mod ingest;
pub mod kube;
pub mod network;
pub mod rds;
pub mod s3;

use std::collections::BTreeMap;

use crate::blueprint::Loaded;
use crate::graph::Builder;

pub use crate::graph::kind::{Kind, ReplaceCheck, Spec};

/// Every resource type trails knows.
pub static KINDS: &[&Kind] = &[
    network::Vpc::KIND,
    network::Subnet::KIND,
    network::InternetGateway::KIND,
    network::Eip::KIND,
    network::NatGateway::KIND,
    network::RouteTable::KIND,
    network::SecurityGroup::KIND,
    network::NetworkAcl::KIND,
    network::FlowLog::KIND,
    iam::IamRole::KIND,
    iam::OidcProvider::KIND,
    eks::Cluster::KIND,
    eks::NodeGroup::KIND,
    eks::Addon::KIND,
    rds::DbSubnetGroup::KIND,
    rds::DbParameterGroup::KIND,
    rds::DbInstance::KIND,
    cache::SubnetGroup::KIND,
    cache::ParameterGroup::KIND,
    cache::ReplicationGroup::KIND,
    s3::Bucket::KIND,
    kube::Namespace::KIND,
    kube::StorageClass::KIND,
    kube::RoleBinding::KIND,
    kube::Secret::KIND,
    kube::Manifest::KIND,
    helm::Release::KIND,
    dayone::Topic::KIND,
    dayone::PostgresDatabase::KIND,
    dayone::PostgresRole::KIND,
    dayone::ClickHouseDatabase::KIND,
    dayone::IndexTemplate::KIND,
    dayone::IsmPolicy::KIND,
];

/// Looks a type up by name.
pub fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().copied().find(|kind| kind.name == name)
}

/// Expands every section of the blueprint into resources, in dependency-friendly order.
pub fn expand(builder: &mut Builder<'_>) {
    network::expand(builder);
    s3::expand(builder);
    network::expand_flow_logs(builder);
    eks::expand(builder);
    iam::expand(builder);
    rds::expand(builder);
    cache::expand(builder);
    kube::expand(builder);
    helm::expand(builder);
    dayone::expand(builder);
    ingest::expand(builder);
}

/// Tags every AWS resource carries: the user's, then trails' own (which win).
pub fn aws_tags(loaded: &Loaded, address: &str, name: &str) -> BTreeMap<String, String> {
    let mut tags: BTreeMap<String, String> = loaded
        .document
        .tags
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    tags.insert("Name".to_string(), name.to_string());
    tags.insert(
        "trails:blueprint".to_string(),
        loaded.document.blueprint.clone(),
    );
    tags.insert("trails:environment".to_string(), loaded.environment.clone());
    tags.insert("trails:address".to_string(), address.to_string());
    if loaded.settings.ephemeral {
        tags.insert(
            "trails:ttl".to_string(),
            loaded
                .settings
                .ttl
                .clone()
                .unwrap_or_else(|| DEFAULT_TTL.to_string()),
        );
    }
    tags
}

/// `sha256:HEX` of a file under the templates directory, so that editing a template or a
/// migration shows up in the plan; `unreadable` when it cannot be read (validation said why).
pub fn file_digest(loaded: &Loaded, relative: &str) -> String {
    template_digest(&loaded.templates_dir, relative)
}

/// [`file_digest`] of a file under `templates_dir`.
pub fn template_digest(templates_dir: &std::path::Path, relative: &str) -> String {
    use sha2::{Digest, Sha256};
    match std::fs::read(templates_dir.join(relative)) {
        Ok(bytes) => format!("sha256:{:x}", Sha256::digest(&bytes)),
        Err(_) => "unreadable".to_string(),
    }
}

/// A blueprint map in sorted order, as resources store it (stable diffs, stable JSON).
pub fn sorted(map: &crate::blueprint::schema::Map<String>) -> BTreeMap<String, String> {
    map.iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// The major part of an engine version: `16` of `16.4`.
pub fn major_version(version: &str) -> &str {
    version.split('.').next().unwrap_or(version)
}

/// Time to live of an ephemeral environment that does not set one.
pub const DEFAULT_TTL: &str = "24h";

/// `${ADDRESS.OUTPUT}` for a resource of type `S`.
pub fn output<S: Spec>(name: &str, output: &str) -> String {
    debug_assert!(
        S::KIND.has_output(output),
        "{} has no output {output}",
        S::KIND.name
    );
    format!("${{{}.{name}.{output}}}", S::KIND.name)
}

/// The address of a resource of type `S`.
pub fn address<S: Spec>(name: &str) -> String {
    format!("{}.{name}", S::KIND.name)
}
