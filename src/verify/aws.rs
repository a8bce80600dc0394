//! Checks of the live AWS resources: found by their ownership tags (EC2) or their names (EKS,
//! RDS, ElastiCache, S3), compared with what the blueprint declares.

use std::collections::HashMap;

use aws_sdk_ec2::types::{Filter, NatGatewayState, RouteState, Tag, VpcState};
use aws_sdk_eks::types::{AddonStatus, ClusterStatus, NodegroupStatus};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use std::sync::Arc;

use super::{Chain, Check};
use crate::blueprint::expression::{self, Expression};
use crate::error_chain;
use crate::graph::{Graph, Resource};
use crate::providers::aws::{ADDRESS_TAG, Context};
use crate::providers::kube;
use crate::providers::{Provider, Read, aws, spec};
use crate::resources::cache::ReplicationGroup;
use crate::resources::eks::{Addon, Cluster, NodeGroup};
use crate::resources::network::{NatGateway, RouteTable, Vpc};
use crate::resources::rds::DbInstance;
use crate::resources::{Kind, Spec};
use crate::state::{Recorded, State};

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

/// Every AWS check the blueprint's resources call for: one per resource comparing its type's
/// read with the blueprint (named by its address), and the runtime facts only verify needs
/// (NAT available, routes active, cluster, node pools and add-ons ACTIVE, nodes Ready,
/// databases and caches available).
pub async fn checks(
    graph: &Graph,
    state: &State,
    context: &Context,
    owner: &Owner,
    cluster: &Arc<kube::Cluster>,
    policy: &Arc<LivePolicy>,
) -> Vec<Chain> {
    let network = |kind: &Kind| [Vpc::KIND, NatGateway::KIND, RouteTable::KIND].contains(&kind);
    // One read of the whole network, and none for a blueprint without one.
    let ec2 = if graph.resources().any(|resource| network(resource.kind)) {
        read_ec2(context, owner).await
    } else {
        Err("the blueprint declares no network".to_string())
    };
    let mut readers: HashMap<&'static str, Box<dyn Provider>> = HashMap::new();
    aws::register(context, &mut readers);
    let readers = Arc::new(readers);
    let mut chains = Vec::new();
    for resource in graph.resources() {
        let mut checks = Vec::new();
        if readers.contains_key(resource.kind.name) {
            let read = SharedRead::new(resource, state, Arc::clone(&readers));
            checks.push(settings_check(&resource.address, read.clone()));
            if crate::policy::rules::applies_to(resource.kind) {
                checks.push(policy_check(resource, Arc::clone(policy), read));
            }
        }
        let kind = resource.kind;
        if network(kind) {
            let name = network_check_name(resource);
            let result = match &ec2 {
                Ok(ec2) => network_check(graph, ec2, resource),
                Err(error) => Err(format!("cannot read the network: {error}")),
            };
            checks.push(Check::known(name, result));
        } else if kind == Cluster::KIND {
            checks.push(cluster_check(context, resource));
        } else if kind == NodeGroup::KIND {
            checks.extend(node_group_checks(context, graph, resource, cluster));
        } else if kind == Addon::KIND {
            checks.push(addon_check(context, graph, resource));
        } else if kind == DbInstance::KIND {
            checks.push(database_check(context, resource));
        } else if kind == ReplicationGroup::KIND {
            checks.push(cache_check(context, resource));
        }
        // Each check stands alone: a setting changed by hand says nothing about whether the
        // resource runs.
        chains.extend(checks.into_iter().map(|check| vec![check]));
    }
    chains
}

/// What the blueprint declares (references resolved) and what the read found.
type Declared = (Map<String, Value>, Read);

/// One resource's read, made once for both its settings check and its policy check: what is
/// declared (references resolved from the state) and what its type's read found.
#[derive(Clone)]
struct SharedRead {
    cell: Arc<tokio::sync::OnceCell<Result<Declared, String>>>,
    readers: Arc<HashMap<&'static str, Box<dyn Provider>>>,
    address: String,
    kind: &'static str,
    recorded: Option<Recorded>,
    declared: Option<Map<String, Value>>,
}

impl SharedRead {
    fn new(
        resource: &Resource,
        state: &State,
        readers: Arc<HashMap<&'static str, Box<dyn Provider>>>,
    ) -> Self {
        Self {
            cell: Arc::default(),
            readers,
            address: resource.address.clone(),
            kind: resource.kind.name,
            recorded: state.resources.get(&resource.address).cloned(),
            declared: crate::plan::resolved(resource, state),
        }
    }

    fn reader(&self) -> Result<&dyn Provider, String> {
        self.readers
            .get(self.kind)
            .map(AsRef::as_ref)
            .ok_or_else(|| format!("no reader for {}", self.kind))
    }

    /// The read, made by whichever check asks first.
    async fn get(&self) -> Result<&Declared, String> {
        self.cell
            .get_or_init(|| async {
                let reader = self.reader()?;
                let Some(recorded) = &self.recorded else {
                    return Err(
                        "not in the state: trails has not applied it here yet (run `trails apply`)"
                            .to_string(),
                    );
                };
                let declared = self.declared.clone().ok_or_else(|| {
                    "an output it references is not recorded: run `trails apply`".to_string()
                })?;
                let asked = Recorded {
                    attributes: declared.clone(),
                    ..recorded.clone()
                };
                match reader
                    .read(&self.address, &asked)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    None => Err(format!("{} is not read back", self.kind)),
                    Some(found) => Ok((declared, found)),
                }
            })
            .await
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// The resource's type's read compared with what the blueprint declares (references resolved
/// from the state): every attribute the read returns, so anything changed or removed behind
/// trails' back fails this one check, named by the address.
fn settings_check(address: &str, read: SharedRead) -> Check {
    Check::run(address.to_string(), async move {
        let (declared, found) = read.get().await?;
        match found {
            Read::Gone => Err("does not exist: deleted outside trails".to_string()),
            Read::Live(live) => {
                let differences = read.reader()?.differences(declared.clone(), live.clone());
                if differences.is_empty() {
                    let compared: Vec<&str> = live.keys().map(String::as_str).collect();
                    Ok(format!("as declared: {}", compared.join(", ")))
                } else {
                    Err(format!(
                        "differs from the blueprint (declared -> live): {}",
                        differences.join("; ")
                    ))
                }
            }
        }
    })
}

/// What the live policy checks need: the blueprint (its waivers, its environment's
/// protection) and the day waivers are judged on.
#[derive(Debug, Clone)]
pub struct LivePolicy {
    /// The loaded blueprint.
    pub loaded: crate::blueprint::Loaded,
    /// Today.
    pub today: chrono::NaiveDate,
}

/// The built-in policy rules on what is live (the declared attributes with what the read
/// found laid over them), from the settings check's read: `policy.ADDRESS` fails on an
/// unwaived error finding, named by its rule id.
fn policy_check(resource: &Resource, policy: Arc<LivePolicy>, read: SharedRead) -> Check {
    let address = resource.address.clone();
    let kind = resource.kind;
    let origin = resource.origin.clone();
    let name = format!("policy.{address}");
    Check::run(name, async move {
        let (declared, found) = read.get().await?;
        let Read::Live(live) = found else {
            return Err("does not exist: deleted outside trails".to_string());
        };
        let mut attributes = declared.clone();
        attributes.extend(live.clone());
        let subject = crate::policy::rules::Subject {
            address: &address,
            kind,
            attributes: &attributes,
            origin: Some(&origin),
        };
        let report = crate::policy::waive_findings(
            &policy.loaded,
            crate::policy::rules::check_subjects(&policy.loaded, &[subject]),
            policy.today,
        );
        let gating = report.gating(crate::policy::Severity::Error);
        if gating.is_empty() {
            let shown: Vec<String> = report
                .findings
                .iter()
                .map(|finding| {
                    let state = if finding.counts() {
                        "warning"
                    } else {
                        "waived"
                    };
                    format!("{} ({state})", finding.rule)
                })
                .collect();
            Ok(if shown.is_empty() {
                "no built-in rule finds anything in what is live".to_string()
            } else {
                format!(
                    "no unwaived error in what is live; also found: {}",
                    shown.join(", ")
                )
            })
        } else {
            let listed: Vec<String> = gating
                .iter()
                .map(|finding| {
                    format!(
                        "{}: {} (fix: {})",
                        finding.rule, finding.message, finding.fix
                    )
                })
                .collect();
            Err(listed.join("; "))
        }
    })
}

fn network_check_name(resource: &Resource) -> String {
    let group = if resource.kind == Vpc::KIND {
        "vpc"
    } else if resource.kind == NatGateway::KIND {
        "nat_gateway"
    } else {
        "routes"
    };
    format!("network.{group}.{}", short(&resource.address))
}

fn not_found(what: &str, address: &str) -> String {
    format!("no {what} tagged {ADDRESS_TAG}={address} exists")
}

fn network_check(graph: &Graph, ec2: &Ec2, resource: &Resource) -> Result<String, String> {
    let resolver = Resolver { graph, ec2 };
    let address = resource.address.as_str();
    if resource.kind == Vpc::KIND {
        let _: Vpc = typed(resource)?;
        let live = ec2
            .vpcs
            .get(address)
            .ok_or_else(|| not_found("VPC", address))?;
        let id = live.vpc_id().unwrap_or_default();
        if live.state() != Some(&VpcState::Available) {
            return Err(format!("{id} is {:?}, not available", live.state()));
        }
        Ok(format!("{id} available"))
    } else if resource.kind == NatGateway::KIND {
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
    } else {
        let table: RouteTable = typed(resource)?;
        let live = ec2
            .route_tables
            .get(address)
            .ok_or_else(|| not_found("route table", address))?;
        route_table_check(&resolver, &table, live)
    }
}

/// Whether the declared routes carry traffic: each is active (not blackholed) and a NAT
/// gateway it goes through is available. Which routes and subnets the table has is the
/// settings check's (`aws.route_table.NAME`).
fn route_table_check(
    resolver: &Resolver<'_>,
    table: &RouteTable,
    live: &aws_sdk_ec2::types::RouteTable,
) -> Result<String, String> {
    let id = live.route_table_id().unwrap_or_default();
    let mut found = Vec::new();
    let mut wrong = Vec::new();
    for route in &table.routes {
        let destination = route.destination_cidr_block.as_str();
        let Some(live_route) = live
            .routes()
            .iter()
            .find(|r| r.destination_cidr_block() == Some(destination))
        else {
            continue;
        };
        let target = live_route
            .nat_gateway_id()
            .or(live_route.gateway_id())
            .unwrap_or("nothing")
            .to_string();
        if live_route.state() != Some(&RouteState::Active) {
            wrong.push(format!("{destination} → {target} is blackholed"));
            continue;
        }
        if route.nat_gateway_id.is_some() {
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
    if !wrong.is_empty() {
        return Err(format!("{id}: {}", wrong.join("; ")));
    }
    if found.is_empty() {
        found.push("no active route out of the VPC".to_string());
    }
    Ok(format!("{id}: {}", found.join(", ")))
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
            Some(ClusterStatus::Active) => {
                Ok(format!("{} ACTIVE, Kubernetes {version}", cluster.name))
            }
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
        let live_sizes = format!(
            "min {} max {} desired {}",
            size(scaling.and_then(|s| s.min_size())),
            size(scaling.and_then(|s| s.max_size())),
            size(scaling.and_then(|s| s.desired_size()))
        );
        let mut wrong = Vec::new();
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
                Some(AddonStatus::Active) => Ok(format!("{} {version} ACTIVE", addon.name)),
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

/// An API error as evidence: what was asked, about what, and what AWS said.
pub fn api_error(operation: &str, subject: &str, error: impl std::error::Error) -> String {
    format!("{operation} {subject}: {}", error_chain(&error))
}
