//! Checks of the live AWS resources: found by their ownership tags (EC2) or their names (EKS,
//! RDS, ElastiCache, S3), compared with what the blueprint declares.

use std::collections::{BTreeSet, HashMap};

use aws_sdk_ec2::types::{Filter, NatGatewayState, RouteState, Tag, VpcState};
use aws_sdk_eks::types::{AddonStatus, ClusterStatus, NodegroupStatus};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{BucketVersioningStatus, ExpirationStatus, ObjectLockEnabled};
use serde::de::DeserializeOwned;
use serde_json::Value;

use std::sync::Arc;

use super::{Chain, Check};
use crate::blueprint::expression::{self, Expression};
use crate::blueprint::schema::{LifecycleRule, ObjectLockMode, Transition};
use crate::error_chain;
use crate::graph::{Graph, Resource};
use crate::providers::aws::network::{RuleKey, desired_keys, live_keys};
use crate::providers::aws::{ADDRESS_TAG, Context};
use crate::providers::kube;
use crate::providers::spec;
use crate::resources::cache::ReplicationGroup;
use crate::resources::eks::{Addon, Cluster, NodeGroup};
use crate::resources::network::{NatGateway, RouteTable, SecurityGroup, Subnet, Vpc};
use crate::resources::rds::DbInstance;
use crate::resources::s3::Bucket;

/// Whose resources to look at.
#[derive(Debug, Clone)]
pub struct Owner {
    /// Blueprint name (`trails:blueprint` tag).
    pub blueprint: String,
    /// Environment name (`trails:environment` tag).
    pub environment: String,
}

/// The environment's EC2 resources by address, read once for every network check.
#[derive(Default)]
struct Ec2 {
    vpcs: HashMap<String, aws_sdk_ec2::types::Vpc>,
    subnets: HashMap<String, aws_sdk_ec2::types::Subnet>,
    nat_gateways: HashMap<String, aws_sdk_ec2::types::NatGateway>,
    route_tables: HashMap<String, aws_sdk_ec2::types::RouteTable>,
    security_groups: HashMap<String, aws_sdk_ec2::types::SecurityGroup>,
    internet_gateways: HashMap<String, aws_sdk_ec2::types::InternetGateway>,
}

impl Ec2 {
    /// The live id of the EC2 resource at `address`.
    fn id(&self, address: &str) -> Option<String> {
        let found = self
            .vpcs
            .get(address)
            .and_then(|v| v.vpc_id())
            .or_else(|| self.subnets.get(address).and_then(|s| s.subnet_id()))
            .or_else(|| {
                self.nat_gateways
                    .get(address)
                    .and_then(|n| n.nat_gateway_id())
            })
            .or_else(|| {
                self.route_tables
                    .get(address)
                    .and_then(|t| t.route_table_id())
            })
            .or_else(|| self.security_groups.get(address).and_then(|g| g.group_id()))
            .or_else(|| {
                self.internet_gateways
                    .get(address)
                    .and_then(|g| g.internet_gateway_id())
            });
        found.map(str::to_string)
    }

    /// The address of the live EC2 resource `id`, for evidence.
    fn address_of(&self, id: &str) -> Option<String> {
        let addresses = self
            .vpcs
            .keys()
            .chain(self.subnets.keys())
            .chain(self.nat_gateways.keys())
            .chain(self.route_tables.keys())
            .chain(self.security_groups.keys())
            .chain(self.internet_gateways.keys());
        addresses
            .into_iter()
            .find(|address| self.id(address).as_deref() == Some(id))
            .cloned()
    }
}

/// The `trails:address` of a resource tagged for `owner`.
fn owned_address(tags: &[Tag], owner: &Owner) -> Option<String> {
    let tag = |key: &str| {
        tags.iter()
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value())
    };
    (tag("trails:blueprint") == Some(owner.blueprint.as_str())
        && tag("trails:environment") == Some(owner.environment.as_str()))
    .then(|| tag(ADDRESS_TAG).map(str::to_string))
    .flatten()
}

fn owner_filters(owner: &Owner) -> Vec<Filter> {
    [
        ("tag:trails:blueprint", &owner.blueprint),
        ("tag:trails:environment", &owner.environment),
    ]
    .into_iter()
    .map(|(name, value)| Filter::builder().name(name).values(value).build())
    .collect()
}

fn by_address<T>(
    items: Vec<T>,
    tags: impl Fn(&T) -> &[Tag],
    owner: &Owner,
    prefer: impl Fn(&T) -> bool,
) -> HashMap<String, T> {
    let mut found: HashMap<String, T> = HashMap::new();
    for item in items {
        let Some(address) = owned_address(tags(&item), owner) else {
            continue;
        };
        // A deleted NAT gateway stays visible for an hour; a live one with the same tags wins.
        if found.get(&address).is_some_and(&prefer) && !prefer(&item) {
            continue;
        }
        found.insert(address, item);
    }
    found
}

async fn read_ec2(context: &Context, owner: &Owner) -> Result<Ec2, String> {
    let ec2 = &context.ec2;
    let filters = owner_filters(owner);
    let api = |operation: &str, error: &dyn std::fmt::Display| format!("{operation}: {error}");
    let (vpcs, subnets, nats, tables, groups, gateways) = tokio::join!(
        ec2.describe_vpcs()
            .set_filters(Some(filters.clone()))
            .into_paginator()
            .items()
            .send()
            .try_collect(),
        ec2.describe_subnets()
            .set_filters(Some(filters.clone()))
            .into_paginator()
            .items()
            .send()
            .try_collect(),
        ec2.describe_nat_gateways()
            .set_filter(Some(filters.clone()))
            .into_paginator()
            .items()
            .send()
            .try_collect(),
        ec2.describe_route_tables()
            .set_filters(Some(filters.clone()))
            .into_paginator()
            .items()
            .send()
            .try_collect(),
        ec2.describe_security_groups()
            .set_filters(Some(filters.clone()))
            .into_paginator()
            .items()
            .send()
            .try_collect(),
        ec2.describe_internet_gateways()
            .set_filters(Some(filters.clone()))
            .into_paginator()
            .items()
            .send()
            .try_collect(),
    );
    Ok(Ec2 {
        vpcs: by_address(
            vpcs.map_err(|e| api("DescribeVpcs", &e))?,
            |v| v.tags(),
            owner,
            |_| true,
        ),
        subnets: by_address(
            subnets.map_err(|e| api("DescribeSubnets", &e))?,
            |s| s.tags(),
            owner,
            |_| true,
        ),
        nat_gateways: by_address(
            nats.map_err(|e| api("DescribeNatGateways", &e))?,
            |n| n.tags(),
            owner,
            |n| n.state() != Some(&NatGatewayState::Deleted),
        ),
        route_tables: by_address(
            tables.map_err(|e| api("DescribeRouteTables", &e))?,
            |t| t.tags(),
            owner,
            |_| true,
        ),
        security_groups: by_address(
            groups.map_err(|e| api("DescribeSecurityGroups", &e))?,
            |g| g.tags(),
            owner,
            |_| true,
        ),
        internet_gateways: by_address(
            gateways.map_err(|e| api("DescribeInternetGateways", &e))?,
            |g| g.tags(),
            owner,
            |_| true,
        ),
    })
}

/// Resolves `${ADDRESS.id}` (the live id of an EC2 resource) and `${ADDRESS.name}` (a literal
/// `name` attribute in the blueprint) in one attribute.
struct Resolver<'a> {
    graph: &'a Graph,
    ec2: &'a Ec2,
}

impl Resolver<'_> {
    fn text(&self, text: &str) -> Result<String, String> {
        let parts = expression::parse(text)?;
        let mut out = String::new();
        for part in parts {
            match part {
                Expression::Literal(literal) => out.push_str(&literal),
                Expression::Reference(reference) => {
                    let value = match reference.output.as_str() {
                        "id" => self.ec2.id(&reference.address),
                        "name" => self
                            .graph
                            .get(&reference.address)
                            .and_then(|r| r.attributes.get("name"))
                            .and_then(Value::as_str)
                            .filter(|name| !name.contains("${"))
                            .map(str::to_string),
                        _ => None,
                    };
                    let Some(value) = value else {
                        return Err(format!("{} was not found", reference.address));
                    };
                    out.push_str(&value);
                }
                Expression::Variable(_) | Expression::Environment(_) => {
                    return Err(format!("unresolved expression in {text}"));
                }
            }
        }
        Ok(out)
    }
}

fn typed<T: DeserializeOwned>(resource: &Resource) -> Result<T, String> {
    spec(&Value::Object(resource.attributes.clone()))
        .map_err(|error| format!("{}: {error}", resource.address))
}

/// The last part of an address: `aws.subnet.private-a` → `private-a`.
fn short(address: &str) -> &str {
    address.rsplit('.').next().unwrap_or(address)
}

/// Every AWS check the blueprint's resources call for.
pub async fn checks(
    graph: &Graph,
    context: &Context,
    owner: &Owner,
    cluster: &Arc<kube::Cluster>,
) -> Vec<Chain> {
    const NETWORK: [&str; 5] = [
        "aws.vpc",
        "aws.subnet",
        "aws.nat_gateway",
        "aws.route_table",
        "aws.security_group",
    ];
    // One read of the whole network, and none for a blueprint without one.
    let ec2 = if graph
        .resources()
        .any(|resource| NETWORK.contains(&resource.kind.name))
    {
        read_ec2(context, owner).await
    } else {
        Err("the blueprint declares no network".to_string())
    };
    let mut chains = Vec::new();
    for resource in graph.resources() {
        let checks = match resource.kind.name {
            "aws.vpc" | "aws.subnet" | "aws.nat_gateway" | "aws.route_table"
            | "aws.security_group" => {
                let name = network_check_name(resource);
                let result = match &ec2 {
                    Ok(ec2) => network_check(graph, ec2, resource),
                    Err(error) => Err(format!("cannot read the network: {error}")),
                };
                vec![Check::known(name, result)]
            }
            "aws.eks_cluster" => vec![cluster_check(context, resource)],
            "aws.eks_node_group" => node_group_checks(context, graph, resource, cluster),
            "aws.eks_addon" => vec![addon_check(context, graph, resource)],
            "aws.db_instance" => vec![database_check(context, resource)],
            "aws.elasticache_replication_group" => vec![cache_check(context, resource)],
            "aws.s3_bucket" => bucket_checks(context, resource),
            _ => continue,
        };
        // Each check stands alone: a broken bucket setting says nothing about the next one.
        chains.extend(checks.into_iter().map(|check| vec![check]));
    }
    chains
}

fn network_check_name(resource: &Resource) -> String {
    let group = match resource.kind.name {
        "aws.vpc" => "vpc",
        "aws.subnet" => "subnet",
        "aws.nat_gateway" => "nat_gateway",
        "aws.route_table" => "routes",
        _ => "security_group",
    };
    format!("network.{group}.{}", short(&resource.address))
}

fn not_found(what: &str, address: &str) -> String {
    format!("no {what} tagged {ADDRESS_TAG}={address} exists")
}

fn network_check(graph: &Graph, ec2: &Ec2, resource: &Resource) -> Result<String, String> {
    let resolver = Resolver { graph, ec2 };
    let address = resource.address.as_str();
    match resource.kind.name {
        "aws.vpc" => {
            let vpc: Vpc = typed(resource)?;
            let live = ec2
                .vpcs
                .get(address)
                .ok_or_else(|| not_found("VPC", address))?;
            let id = live.vpc_id().unwrap_or_default();
            let cidr = live.cidr_block().unwrap_or_default();
            if cidr != vpc.cidr_block {
                return Err(format!(
                    "{id} has CIDR {cidr}; the blueprint declares {}",
                    vpc.cidr_block
                ));
            }
            if live.state() != Some(&VpcState::Available) {
                return Err(format!("{id} is {:?}, not available", live.state()));
            }
            Ok(format!("{id} {cidr} available"))
        }
        "aws.subnet" => {
            let subnet: Subnet = typed(resource)?;
            let live = ec2
                .subnets
                .get(address)
                .ok_or_else(|| not_found("subnet", address))?;
            let id = live.subnet_id().unwrap_or_default();
            let cidr = live.cidr_block().unwrap_or_default();
            let zone = live.availability_zone().unwrap_or_default();
            let vpc = resolver.text(&subnet.vpc_id)?;
            let mut wrong = Vec::new();
            if cidr != subnet.cidr_block {
                wrong.push(format!("CIDR {cidr}, declared {}", subnet.cidr_block));
            }
            if zone != subnet.availability_zone {
                wrong.push(format!(
                    "zone {zone}, declared {}",
                    subnet.availability_zone
                ));
            }
            if live.vpc_id() != Some(vpc.as_str()) {
                wrong.push(format!(
                    "in {}, not in {vpc}",
                    live.vpc_id().unwrap_or("no VPC")
                ));
            }
            if wrong.is_empty() {
                Ok(format!("{id} {cidr} in {zone}"))
            } else {
                Err(format!("{id}: {}", wrong.join("; ")))
            }
        }
        "aws.nat_gateway" => {
            let _: NatGateway = typed(resource)?;
            let live = ec2
                .nat_gateways
                .get(address)
                .ok_or_else(|| not_found("NAT gateway", address))?;
            let id = live.nat_gateway_id().unwrap_or_default();
            match live.state() {
                Some(NatGatewayState::Available) => Ok(format!(
                    "{id} available in {}",
                    live.subnet_id().unwrap_or("?")
                )),
                state => Err(format!(
                    "{id} is {}, not available",
                    state.map_or("unknown", |s| s.as_str())
                )),
            }
        }
        "aws.route_table" => {
            let table: RouteTable = typed(resource)?;
            let live = ec2
                .route_tables
                .get(address)
                .ok_or_else(|| not_found("route table", address))?;
            route_table_check(&resolver, &table, live)
        }
        _ => {
            let group: SecurityGroup = typed(resource)?;
            let live = ec2
                .security_groups
                .get(address)
                .ok_or_else(|| not_found("security group", address))?;
            security_group_check(&resolver, &group, live)
        }
    }
}

fn route_table_check(
    resolver: &Resolver<'_>,
    table: &RouteTable,
    live: &aws_sdk_ec2::types::RouteTable,
) -> Result<String, String> {
    let id = live.route_table_id().unwrap_or_default();
    let mut found = Vec::new();
    let mut wrong = Vec::new();
    let mut declared = BTreeSet::new();
    for route in &table.routes {
        let destination = route.destination_cidr_block.as_str();
        declared.insert(destination.to_string());
        let (target, nat) = match (&route.gateway_id, &route.nat_gateway_id) {
            (Some(gateway), _) => (resolver.text(gateway)?, false),
            (None, Some(nat)) => (resolver.text(nat)?, true),
            (None, None) => continue,
        };
        let Some(live_route) = live
            .routes()
            .iter()
            .find(|r| r.destination_cidr_block() == Some(destination))
        else {
            wrong.push(format!(
                "no route for {destination} (declared through {target})"
            ));
            continue;
        };
        let live_target = live_route
            .nat_gateway_id()
            .or(live_route.gateway_id())
            .unwrap_or("nothing");
        if live_target != target {
            wrong.push(format!(
                "{destination} goes to {live_target}, declared {target}"
            ));
            continue;
        }
        if live_route.state() != Some(&RouteState::Active) {
            wrong.push(format!("{destination} → {target} is blackholed"));
            continue;
        }
        if nat {
            let gateway = resolver
                .ec2
                .nat_gateways
                .values()
                .find(|n| n.nat_gateway_id() == Some(target.as_str()));
            match gateway.and_then(|g| g.state()) {
                Some(NatGatewayState::Available) => {
                    found.push(format!("{destination} → {target} (NAT, available)"))
                }
                state => wrong.push(format!(
                    "{destination} → {target}, a NAT gateway that is {}",
                    state.map_or("missing", |s| s.as_str())
                )),
            }
        } else {
            found.push(format!("{destination} → {target}"));
        }
    }
    for route in live.routes() {
        let destination = route.destination_cidr_block().unwrap_or_default();
        let local = route.gateway_id() == Some("local");
        if !local && !destination.is_empty() && !declared.contains(destination) {
            let target = route.nat_gateway_id().or(route.gateway_id()).unwrap_or("?");
            wrong.push(format!("undeclared route {destination} → {target}"));
        }
    }
    let associated: BTreeSet<&str> = live
        .associations()
        .iter()
        .filter_map(|a| a.subnet_id())
        .collect();
    for subnet in &table.subnet_ids {
        let subnet = resolver.text(subnet)?;
        if !associated.contains(subnet.as_str()) {
            let name = resolver.ec2.address_of(&subnet).unwrap_or(subnet.clone());
            wrong.push(format!("{name} is not associated"));
        }
    }
    if !wrong.is_empty() {
        return Err(format!("{id}: {}", wrong.join("; ")));
    }
    if found.is_empty() {
        found.push("no route out of the VPC, as declared".to_string());
    }
    Ok(format!(
        "{id}: {}; {} subnet(s) associated",
        found.join(", "),
        table.subnet_ids.len()
    ))
}

fn describe_rule(key: &RuleKey, ec2: &Ec2) -> String {
    let ports = match (key.protocol.as_str(), key.from_port, key.to_port) {
        ("-1", _, _) => "all traffic".to_string(),
        (protocol, from, to) if from == to => format!("{protocol} {from}"),
        (protocol, from, to) => format!("{protocol} {from}-{to}"),
    };
    let source = match (&key.cidr, &key.group) {
        (Some(cidr), _) => cidr.clone(),
        (None, Some(group)) => ec2.address_of(group).unwrap_or(group.clone()),
        (None, None) => "?".to_string(),
    };
    format!("{ports} from {source}")
}

fn security_group_check(
    resolver: &Resolver<'_>,
    group: &SecurityGroup,
    live: &aws_sdk_ec2::types::SecurityGroup,
) -> Result<String, String> {
    let id = live.group_id().unwrap_or_default();
    let mut rules = group.ingress.clone();
    for rule in &mut rules {
        if let Some(source) = &rule.security_group_id {
            rule.security_group_id = Some(resolver.text(source)?);
        }
    }
    let declared: BTreeSet<RuleKey> = desired_keys(&rules, id).into_keys().collect();
    let open = live_keys(live.ip_permissions());
    let beyond: Vec<String> = open
        .difference(&declared)
        .map(|key| describe_rule(key, resolver.ec2))
        .collect();
    let missing: Vec<String> = declared
        .difference(&open)
        .map(|key| describe_rule(key, resolver.ec2))
        .collect();
    let mut wrong = Vec::new();
    if !beyond.is_empty() {
        wrong.push(format!("open beyond the blueprint: {}", beyond.join(", ")));
    }
    if !missing.is_empty() {
        wrong.push(format!("declared but missing: {}", missing.join(", ")));
    }
    if wrong.is_empty() {
        Ok(format!(
            "{id}: {} ingress rule(s), all declared",
            open.len()
        ))
    } else {
        Err(format!("{id}: {}", wrong.join("; ")))
    }
}

fn cluster_check(context: &Context, resource: &Resource) -> Check {
    let eks = context.eks.clone();
    let cluster = typed::<Cluster>(resource);
    Check::run("eks.cluster", async move {
        let cluster = cluster?;
        let found = eks
            .describe_cluster()
            .name(&cluster.name)
            .send()
            .await
            .map_err(|e| api_error("DescribeCluster", &cluster.name, e))?;
        let live = found
            .cluster()
            .ok_or_else(|| format!("cluster {} not found", cluster.name))?;
        let version = live.version().unwrap_or("?");
        match live.status() {
            Some(ClusterStatus::Active) if version == cluster.version => {
                Ok(format!("{} ACTIVE, Kubernetes {version}", cluster.name))
            }
            Some(ClusterStatus::Active) => Err(format!(
                "{} runs Kubernetes {version}; the blueprint declares {}",
                cluster.name, cluster.version
            )),
            status => Err(format!(
                "{} is {}, not ACTIVE",
                cluster.name,
                status.map_or("unknown", |s| s.as_str())
            )),
        }
    })
}

fn node_group_checks(
    context: &Context,
    graph: &Graph,
    resource: &Resource,
    cluster: &Arc<kube::Cluster>,
) -> Vec<Check> {
    let eks = context.eks.clone();
    let pool = short(&resource.address).to_string();
    let group = typed::<NodeGroup>(resource).and_then(|mut group| {
        group.cluster_name = cluster_name(graph, &group.cluster_name)?;
        Ok(group)
    });
    let nodes = Check::run(
        format!("kubernetes.nodes.{pool}"),
        nodes_ready(
            Arc::clone(cluster),
            group.clone().map(|group| (group.name, group.scaling.min)),
        ),
    );
    let check = Check::run(format!("eks.node_pool.{pool}"), async move {
        let group = group?;
        let found = eks
            .describe_nodegroup()
            .cluster_name(&group.cluster_name)
            .nodegroup_name(&group.name)
            .send()
            .await
            .map_err(|e| api_error("DescribeNodegroup", &group.name, e))?;
        let live = found
            .nodegroup()
            .ok_or_else(|| format!("node group {} not found", group.name))?;
        let status = live.status().map_or("unknown", |s| s.as_str());
        if live.status() != Some(&NodegroupStatus::Active) {
            return Err(format!("{} is {status}, not ACTIVE", group.name));
        }
        let scaling = live.scaling_config();
        let size = |value: Option<i32>| value.map_or("?".to_string(), |v| v.to_string());
        let (min, max, desired) = (
            scaling.and_then(|s| s.min_size()),
            scaling.and_then(|s| s.max_size()),
            scaling.and_then(|s| s.desired_size()),
        );
        let declared = (group.scaling.min as i32, group.scaling.max as i32);
        let live_sizes = format!(
            "min {} max {} desired {}",
            size(min),
            size(max),
            size(desired)
        );
        let mut wrong = Vec::new();
        if (min, max) != (Some(declared.0), Some(declared.1)) {
            wrong.push(format!(
                "scaling is {live_sizes}; the blueprint declares min {} max {}",
                declared.0, declared.1
            ));
        } else if !desired.is_some_and(|d| d >= declared.0 && d <= declared.1) {
            wrong.push(format!(
                "desired size {} is outside the declared {}..{}",
                size(desired),
                declared.0,
                declared.1
            ));
        }
        let issues: Vec<String> = live
            .health()
            .map(|h| h.issues())
            .unwrap_or_default()
            .iter()
            .map(|issue| {
                format!(
                    "{}: {}",
                    issue.code().map_or("issue", |c| c.as_str()),
                    issue.message().unwrap_or_default()
                )
            })
            .collect();
        if !issues.is_empty() {
            wrong.push(format!("health issues: {}", issues.join("; ")));
        }
        if wrong.is_empty() {
            Ok(format!("{} ACTIVE, {live_sizes}", group.name))
        } else {
            Err(format!("{}: {}", group.name, wrong.join("; ")))
        }
    });
    vec![check, nodes]
}

/// The label EKS puts on every node of a managed node group.
const NODEGROUP_LABEL: &str = "eks.amazonaws.com/nodegroup";

/// Every node of the node group is Ready, and at least its minimum size are.
async fn nodes_ready(
    cluster: Arc<kube::Cluster>,
    group: Result<(String, u32), String>,
) -> Result<String, String> {
    use k8s_openapi::api::core::v1::Node;
    let (group, min) = group?;
    let client = cluster.client().await.map_err(|e| error_chain(&e))?;
    let selector = format!("{NODEGROUP_LABEL}={group}");
    let nodes = ::kube::Api::<Node>::all(client)
        .list(&::kube::api::ListParams::default().labels(&selector))
        .await
        .map_err(|e| format!("listing nodes {selector}: {}", error_chain(&e)))?;
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    for node in &nodes.items {
        let name = node.metadata.name.clone().unwrap_or_default();
        let condition = node
            .status
            .as_ref()
            .and_then(|status| status.conditions.as_ref())
            .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Ready"));
        match condition {
            Some(c) if c.status == "True" => ready.push(name),
            Some(c) => not_ready.push(format!(
                "{name} ({}: {})",
                c.reason.as_deref().unwrap_or("not ready"),
                c.message.as_deref().unwrap_or("")
            )),
            None => not_ready.push(format!("{name} (no Ready condition yet)")),
        }
    }
    let total = nodes.items.len();
    if total == 0 {
        return Err(format!("no node carries {selector}"));
    }
    let evidence = format!("{} of {total} nodes Ready", ready.len());
    if !not_ready.is_empty() {
        Err(format!("{evidence}; not ready: {}", not_ready.join(", ")))
    } else if ready.len() < min as usize {
        Err(format!("{evidence}; the pool's minimum is {min}"))
    } else {
        Ok(format!("{evidence} ({})", ready.join(", ")))
    }
}

/// The cluster a node group or add-on names: `${aws.eks_cluster.main.name}` is the cluster's
/// literal name in the blueprint, no live lookup needed.
fn cluster_name(graph: &Graph, text: &str) -> Result<String, String> {
    let ec2 = Ec2::default();
    Resolver { graph, ec2: &ec2 }.text(text)
}

fn addon_check(context: &Context, graph: &Graph, resource: &Resource) -> Check {
    let eks = context.eks.clone();
    let addon = typed::<Addon>(resource).and_then(|mut addon| {
        addon.cluster_name = cluster_name(graph, &addon.cluster_name)?;
        Ok(addon)
    });
    Check::run(
        format!("eks.addon.{}", short(&resource.address)),
        async move {
            let addon = addon?;
            let found = eks
                .describe_addon()
                .cluster_name(&addon.cluster_name)
                .addon_name(&addon.name)
                .send()
                .await
                .map_err(|e| api_error("DescribeAddon", &addon.name, e))?;
            let live = found
                .addon()
                .ok_or_else(|| format!("add-on {} not found", addon.name))?;
            let version = live.addon_version().unwrap_or("?");
            match live.status() {
                Some(AddonStatus::Active) if version == addon.version => {
                    Ok(format!("{} {version} ACTIVE", addon.name))
                }
                Some(AddonStatus::Active) => Err(format!(
                    "{} runs {version}; the blueprint declares {}",
                    addon.name, addon.version
                )),
                status => Err(format!(
                    "{} is {}, not ACTIVE",
                    addon.name,
                    status.map_or("unknown", |s| s.as_str())
                )),
            }
        },
    )
}

fn database_check(context: &Context, resource: &Resource) -> Check {
    let rds = context.rds.clone();
    let instance = typed::<DbInstance>(resource);
    Check::run(format!("rds.{}", short(&resource.address)), async move {
        let instance = instance?;
        let found = rds
            .describe_db_instances()
            .db_instance_identifier(&instance.identifier)
            .send()
            .await
            .map_err(|e| api_error("DescribeDBInstances", &instance.identifier, e))?;
        let live = found
            .db_instances()
            .first()
            .ok_or_else(|| format!("instance {} not found", instance.identifier))?;
        let status = live.db_instance_status().unwrap_or("unknown");
        let encrypted = live.storage_encrypted().unwrap_or(false);
        let multi_az = live.multi_az().unwrap_or(false);
        let mut wrong = Vec::new();
        if status != "available" {
            wrong.push(format!("status {status}, not available"));
        }
        if encrypted != instance.storage_encrypted {
            wrong.push(format!(
                "storage encrypted {encrypted}; declared {}",
                instance.storage_encrypted
            ));
        }
        if multi_az != instance.multi_az {
            wrong.push(format!(
                "Multi-AZ {multi_az}; declared {}",
                instance.multi_az
            ));
        }
        if wrong.is_empty() {
            Ok(format!(
                "{} available, PostgreSQL {}, encrypted {encrypted}, Multi-AZ {multi_az}",
                instance.identifier,
                live.engine_version().unwrap_or("?")
            ))
        } else {
            Err(format!("{}: {}", instance.identifier, wrong.join("; ")))
        }
    })
}

fn cache_check(context: &Context, resource: &Resource) -> Check {
    let elasticache = context.elasticache.clone();
    let group = typed::<ReplicationGroup>(resource);
    Check::run(format!("redis.{}", short(&resource.address)), async move {
        let group = group?;
        let found = elasticache
            .describe_replication_groups()
            .replication_group_id(&group.id)
            .send()
            .await
            .map_err(|e| api_error("DescribeReplicationGroups", &group.id, e))?;
        let live = found
            .replication_groups()
            .first()
            .ok_or_else(|| format!("replication group {} not found", group.id))?;
        let status = live.status().unwrap_or("unknown");
        let transit = live.transit_encryption_enabled().unwrap_or(false);
        let at_rest = live.at_rest_encryption_enabled().unwrap_or(false);
        let auth = live.auth_token_enabled().unwrap_or(false);
        let mut wrong = Vec::new();
        if status != "available" {
            wrong.push(format!("status {status}, not available"));
        }
        if transit != group.transit_encryption {
            wrong.push(format!(
                "TLS {transit}; declared {}",
                group.transit_encryption
            ));
        }
        if at_rest != group.at_rest_encryption {
            wrong.push(format!(
                "at-rest encryption {at_rest}; declared {}",
                group.at_rest_encryption
            ));
        }
        if group.transit_encryption && !auth {
            wrong.push("no AUTH token".to_string());
        }
        if wrong.is_empty() {
            Ok(format!(
                "{} available, TLS {transit}, at-rest encryption {at_rest}, AUTH {auth}",
                group.id
            ))
        } else {
            Err(format!("{}: {}", group.id, wrong.join("; ")))
        }
    })
}

fn bucket_checks(context: &Context, resource: &Resource) -> Vec<Check> {
    let name = short(&resource.address).to_string();
    let bucket = match typed::<Bucket>(resource) {
        Ok(bucket) => bucket,
        Err(error) => return vec![Check::known(format!("s3.{name}"), Err(error))],
    };
    let s3 = context.s3.clone();
    let check = |aspect: &str| format!("s3.{name}.{aspect}");
    let (client, declared) = (s3.clone(), bucket.clone());
    let versioning = Check::run(check("versioning"), async move {
        let found = client
            .get_bucket_versioning()
            .bucket(&declared.bucket)
            .send()
            .await
            .map_err(|e| api_error("GetBucketVersioning", &declared.bucket, e))?;
        let status = found.status().map_or("never enabled", |s| s.as_str());
        let enabled = found.status() == Some(&BucketVersioningStatus::Enabled);
        let wanted = if declared.versioning {
            "Enabled"
        } else {
            "not enabled"
        };
        if enabled == declared.versioning {
            Ok(format!("{}: versioning {status}", declared.bucket))
        } else {
            Err(format!(
                "{}: versioning is {status}; the blueprint declares {wanted}",
                declared.bucket
            ))
        }
    });
    let (client, declared) = (s3.clone(), bucket.clone());
    let encryption = Check::run(check("encryption"), async move {
        let found = client
            .get_bucket_encryption()
            .bucket(&declared.bucket)
            .send()
            .await
            .map_err(|e| api_error("GetBucketEncryption", &declared.bucket, e))?;
        let algorithm = found
            .server_side_encryption_configuration()
            .and_then(|c| c.rules().first())
            .and_then(|r| r.apply_server_side_encryption_by_default())
            .map(|d| d.sse_algorithm().as_str().to_string())
            .unwrap_or_else(|| "none".to_string());
        if algorithm == declared.encryption {
            Ok(format!(
                "{}: default encryption {algorithm}",
                declared.bucket
            ))
        } else {
            Err(format!(
                "{}: default encryption {algorithm}; the blueprint declares {}",
                declared.bucket, declared.encryption
            ))
        }
    });
    let (client, declared) = (s3.clone(), bucket.clone());
    let public_access = Check::run(check("public_access"), async move {
        let found = client
            .get_public_access_block()
            .bucket(&declared.bucket)
            .send()
            .await;
        let settings = match found {
            Ok(found) => found.public_access_block_configuration().map(|c| {
                [
                    ("BlockPublicAcls", c.block_public_acls()),
                    ("IgnorePublicAcls", c.ignore_public_acls()),
                    ("BlockPublicPolicy", c.block_public_policy()),
                    ("RestrictPublicBuckets", c.restrict_public_buckets()),
                ]
            }),
            Err(error) if error.code() == Some("NoSuchPublicAccessBlockConfiguration") => None,
            Err(error) => {
                return Err(api_error("GetPublicAccessBlock", &declared.bucket, error));
            }
        };
        let off: Vec<&str> = match &settings {
            Some(settings) => settings
                .iter()
                .filter(|(_, on)| *on != Some(true))
                .map(|(name, _)| *name)
                .collect(),
            None => vec!["the whole public access block"],
        };
        match (declared.block_public_access, off.is_empty()) {
            (true, true) => Ok(format!("{}: all public access blocked", declared.bucket)),
            (true, false) => Err(format!(
                "{}: {} off; the blueprint blocks all public access",
                declared.bucket,
                off.join(", ")
            )),
            (false, _) => Ok(format!(
                "{}: public access not blocked, as declared",
                declared.bucket
            )),
        }
    });
    let (client, declared) = (s3.clone(), bucket.clone());
    let lifecycle = Check::run(check("lifecycle"), async move {
        let found = client
            .get_bucket_lifecycle_configuration()
            .bucket(&declared.bucket)
            .send()
            .await;
        let live: Vec<LifecycleRule> = match found {
            Ok(found) => found
                .rules()
                .iter()
                .filter(|rule| rule.status() == &ExpirationStatus::Enabled)
                .map(|rule| LifecycleRule {
                    id: rule.id().unwrap_or_default().to_string(),
                    prefix: rule
                        .filter()
                        .and_then(|f| f.prefix())
                        .or(
                            #[allow(deprecated)]
                            rule.prefix(),
                        )
                        .unwrap_or_default()
                        .to_string(),
                    transitions: rule
                        .transitions()
                        .iter()
                        .map(|t| Transition {
                            days: t.days().unwrap_or(0).max(0) as u32,
                            storage_class: t
                                .storage_class()
                                .map(|c| c.as_str().to_string())
                                .unwrap_or_default(),
                        })
                        .collect(),
                    expire_days: rule
                        .expiration()
                        .and_then(|e| e.days())
                        .map(|d| d.max(0) as u32),
                    noncurrent_expire_days: rule
                        .noncurrent_version_expiration()
                        .and_then(|e| e.noncurrent_days())
                        .map(|d| d.max(0) as u32),
                })
                .collect(),
            Err(error) if error.code() == Some("NoSuchLifecycleConfiguration") => Vec::new(),
            Err(error) => {
                return Err(api_error(
                    "GetBucketLifecycleConfiguration",
                    &declared.bucket,
                    error,
                ));
            }
        };
        let describe = |rules: &[LifecycleRule]| -> BTreeSet<String> {
            rules.iter().map(describe_lifecycle).collect()
        };
        let (wanted, have) = (describe(&declared.lifecycle_rules), describe(&live));
        if wanted == have {
            if have.is_empty() {
                Ok(format!(
                    "{}: no lifecycle rules, as declared",
                    declared.bucket
                ))
            } else {
                Ok(format!(
                    "{}: {}",
                    declared.bucket,
                    have.into_iter().collect::<Vec<_>>().join("; ")
                ))
            }
        } else {
            let missing: Vec<&String> = wanted.difference(&have).collect();
            let extra: Vec<&String> = have.difference(&wanted).collect();
            let list = |rules: Vec<&String>| {
                rules
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let mut wrong = Vec::new();
            if !missing.is_empty() {
                wrong.push(format!(
                    "declared rules missing or different: {}",
                    list(missing)
                ));
            }
            if !extra.is_empty() {
                wrong.push(format!("live rules not declared: {}", list(extra)));
            }
            Err(format!("{}: {}", declared.bucket, wrong.join("; ")))
        }
    });
    let (client, declared) = (s3, bucket);
    let object_lock = Check::run(check("object_lock"), async move {
        let found = client
            .get_object_lock_configuration()
            .bucket(&declared.bucket)
            .send()
            .await;
        let live = match found {
            Ok(found) => found.object_lock_configuration().and_then(|c| {
                (c.object_lock_enabled() == Some(&ObjectLockEnabled::Enabled)).then(|| {
                    let retention = c.rule().and_then(|r| r.default_retention());
                    (
                        retention
                            .and_then(|r| r.mode())
                            .map(|m| m.as_str().to_lowercase()),
                        retention.and_then(|r| r.days()),
                    )
                })
            }),
            Err(error) if error.code() == Some("ObjectLockConfigurationNotFoundError") => None,
            Err(error) => {
                return Err(api_error(
                    "GetObjectLockConfiguration",
                    &declared.bucket,
                    error,
                ));
            }
        };
        let bucket = &declared.bucket;
        match (&declared.object_lock, live) {
            (None, None) => Ok(format!("{bucket}: no Object Lock, as declared")),
            (None, Some(_)) => Err(format!(
                "{bucket}: Object Lock is enabled; the blueprint declares none"
            )),
            (Some(lock), None) => Err(format!(
                "{bucket}: Object Lock is off; the blueprint declares {} for {} days",
                mode_name(lock.mode),
                lock.days
            )),
            (Some(lock), Some((mode, days))) => {
                let wanted_mode = mode_name(lock.mode);
                let live_mode = mode.unwrap_or_else(|| "no default retention".to_string());
                let live_days = days.map_or("?".to_string(), |d| d.to_string());
                if live_mode == wanted_mode && days == Some(lock.days as i32) {
                    Ok(format!(
                        "{bucket}: Object Lock {live_mode}, {live_days} days"
                    ))
                } else {
                    Err(format!(
                        "{bucket}: Object Lock {live_mode}, {live_days} days; the blueprint \
                         declares {wanted_mode}, {} days",
                        lock.days
                    ))
                }
            }
        }
    });
    vec![
        versioning,
        encryption,
        public_access,
        lifecycle,
        object_lock,
    ]
}

fn mode_name(mode: ObjectLockMode) -> &'static str {
    match mode {
        ObjectLockMode::Compliance => "compliance",
        ObjectLockMode::Governance => "governance",
    }
}

fn describe_lifecycle(rule: &LifecycleRule) -> String {
    let mut parts = Vec::new();
    if !rule.prefix.is_empty() {
        parts.push(format!("prefix {}", rule.prefix));
    }
    for transition in &rule.transitions {
        parts.push(format!(
            "to {} after {} days",
            transition.storage_class, transition.days
        ));
    }
    if let Some(days) = rule.expire_days {
        parts.push(format!("expire after {days} days"));
    }
    if let Some(days) = rule.noncurrent_expire_days {
        parts.push(format!("old versions expire after {days} days"));
    }
    format!("rule {}: {}", rule.id, parts.join(", "))
}

/// An API error as evidence: what was asked, about what, and what AWS said.
pub fn api_error(operation: &str, subject: &str, error: impl std::error::Error) -> String {
    format!("{operation} {subject}: {}", error_chain(&error))
}
