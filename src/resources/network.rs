//! The VPC, subnets per zone and tier, gateways, route tables, security groups, ACLs, flow logs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Kind, Spec, address, aws_tags, output};
use crate::blueprint::FieldPath;
use crate::blueprint::naming::{prefix, zone_letter, zone_name};
use crate::blueprint::schema::NatLayout;
use crate::graph::Builder;

/// Name of the blueprint's one VPC in addresses.
pub const VPC: &str = "main";

/// The VPC.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Vpc {
    /// Primary IPv4 CIDR block.
    pub cidr_block: String,
    /// Resolve AWS DNS names inside the VPC.
    pub enable_dns_support: bool,
    /// Give instances DNS host names (EKS needs it).
    pub enable_dns_hostnames: bool,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Spec for Vpc {
    const KIND: &'static Kind = &Kind {
        name: "aws.vpc",
        summary: "VPC",
        replace_on: &[("cidr_block", "a VPC's primary CIDR block cannot be changed")],
        replace_check: None,
        sensitive: &[],
        outputs: &["id", "cidr_block"],
        sensitive_outputs: &[],
    };
}

/// A subnet in one zone and tier.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Subnet {
    /// The VPC.
    pub vpc_id: String,
    /// IPv4 CIDR block.
    pub cidr_block: String,
    /// Full zone name.
    pub availability_zone: String,
    /// Public addresses for instances (public tier only).
    pub map_public_ip_on_launch: bool,
    /// Tags, including the ones the AWS load balancer controller looks for.
    pub tags: BTreeMap<String, String>,
}

impl Spec for Subnet {
    const KIND: &'static Kind = &Kind {
        name: "aws.subnet",
        summary: "subnet",
        replace_on: &[
            ("cidr_block", "a subnet's CIDR block cannot be changed"),
            ("availability_zone", "a subnet cannot move to another zone"),
            ("vpc_id", "a subnet cannot move to another VPC"),
        ],
        replace_check: None,
        sensitive: &[],
        outputs: &["id", "arn"],
        sensitive_outputs: &[],
    };
}

/// The internet gateway of the VPC.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InternetGateway {
    /// The VPC it is attached to.
    pub vpc_id: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Spec for InternetGateway {
    const KIND: &'static Kind = &Kind {
        name: "aws.internet_gateway",
        summary: "internet gateway",
        replace_on: &[],
        replace_check: None,
        sensitive: &[],
        outputs: &["id"],
        sensitive_outputs: &[],
    };
}

/// An elastic IP for a NAT gateway.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Eip {
    /// Always `vpc`.
    pub domain: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Spec for Eip {
    const KIND: &'static Kind = &Kind {
        name: "aws.eip",
        summary: "elastic IP",
        replace_on: &[],
        replace_check: None,
        sensitive: &[],
        outputs: &["id", "public_ip"],
        sensitive_outputs: &[],
    };
}

/// A NAT gateway in a public subnet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NatGateway {
    /// The public subnet it lives in.
    pub subnet_id: String,
    /// Its elastic IP.
    pub allocation_id: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Spec for NatGateway {
    const KIND: &'static Kind = &Kind {
        name: "aws.nat_gateway",
        summary: "NAT gateway",
        replace_on: &[
            ("subnet_id", "a NAT gateway cannot move to another subnet"),
            (
                "allocation_id",
                "a NAT gateway's elastic IP cannot be changed",
            ),
        ],
        replace_check: None,
        sensitive: &[],
        outputs: &["id"],
        sensitive_outputs: &[],
    };
}

/// One route of a route table; exactly one target is set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Route {
    /// Destination CIDR.
    pub destination_cidr_block: String,
    /// Internet gateway target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_id: Option<String>,
    /// NAT gateway target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat_gateway_id: Option<String>,
}

/// A route table with its routes and the subnets associated with it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RouteTable {
    /// The VPC.
    pub vpc_id: String,
    /// Routes besides the VPC-local one.
    pub routes: Vec<Route>,
    /// Associated subnets.
    pub subnet_ids: Vec<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Spec for RouteTable {
    const KIND: &'static Kind = &Kind {
        name: "aws.route_table",
        summary: "route table",
        replace_on: &[("vpc_id", "a route table cannot move to another VPC")],
        replace_check: None,
        sensitive: &[],
        outputs: &["id"],
        sensitive_outputs: &[],
    };
}

/// One security group rule; exactly one source is set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SecurityRule {
    /// Why the rule exists.
    pub description: String,
    /// `tcp`, `udp` or `-1` for all.
    pub protocol: String,
    /// First port.
    pub from_port: i32,
    /// Last port.
    pub to_port: i32,
    /// Source or destination CIDRs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cidr_blocks: Vec<String>,
    /// Source or destination security group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_group_id: Option<String>,
    /// The group itself is the source.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub self_referencing: bool,
}

/// A security group and all its rules.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SecurityGroup {
    /// Group name.
    pub name: String,
    /// Group description.
    pub description: String,
    /// The VPC.
    pub vpc_id: String,
    /// Inbound rules.
    pub ingress: Vec<SecurityRule>,
    /// Outbound rules.
    pub egress: Vec<SecurityRule>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Spec for SecurityGroup {
    const KIND: &'static Kind = &Kind {
        name: "aws.security_group",
        summary: "security group",
        replace_on: &[
            ("name", "a security group cannot be renamed"),
            (
                "description",
                "a security group's description cannot be changed",
            ),
            ("vpc_id", "a security group cannot move to another VPC"),
        ],
        replace_check: None,
        sensitive: &[],
        outputs: &["id"],
        sensitive_outputs: &[],
    };
}

/// One network ACL entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AclRule {
    /// Evaluation order.
    pub rule_number: i32,
    /// `tcp`, `udp` or `-1`.
    pub protocol: String,
    /// `allow` or `deny`.
    pub action: String,
    /// Peer CIDR.
    pub cidr_block: String,
    /// First port.
    pub from_port: i32,
    /// Last port.
    pub to_port: i32,
}

/// A network ACL for one tier.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetworkAcl {
    /// The VPC.
    pub vpc_id: String,
    /// Subnets of the tier.
    pub subnet_ids: Vec<String>,
    /// Inbound entries.
    pub ingress: Vec<AclRule>,
    /// Outbound entries.
    pub egress: Vec<AclRule>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Spec for NetworkAcl {
    const KIND: &'static Kind = &Kind {
        name: "aws.network_acl",
        summary: "network ACL",
        replace_on: &[("vpc_id", "a network ACL cannot move to another VPC")],
        replace_check: None,
        sensitive: &[],
        outputs: &["id"],
        sensitive_outputs: &[],
    };
}

/// VPC flow logs delivered to S3.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FlowLog {
    /// The VPC.
    pub vpc_id: String,
    /// `ALL`, `ACCEPT` or `REJECT`.
    pub traffic_type: String,
    /// Bucket ARN.
    pub log_destination: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Spec for FlowLog {
    const KIND: &'static Kind = &Kind {
        name: "aws.flow_log",
        summary: "VPC flow log",
        replace_on: &[
            ("traffic_type", "a flow log cannot be modified"),
            ("log_destination", "a flow log cannot be modified"),
            ("vpc_id", "a flow log cannot be modified"),
        ],
        replace_check: None,
        sensitive: &[],
        outputs: &["id"],
        sensitive_outputs: &[],
    };
}

/// The subnet name of a tier in a zone, e.g. `private-a`.
pub fn subnet_name(tier: &str, zone: &str) -> String {
    format!("{tier}-{}", zone_letter(zone))
}

/// Full zone names of the network, in the blueprint's order (invalid ones were reported).
pub fn zones(builder: &Builder<'_>) -> Vec<String> {
    let doc = &builder.loaded.document;
    doc.network
        .as_ref()
        .map(|network| {
            network
                .azs
                .iter()
                .filter_map(|zone| zone_name(&doc.region, zone))
                .collect()
        })
        .unwrap_or_default()
}

/// `${...id}` of every subnet of a tier.
pub fn subnet_ids(builder: &Builder<'_>, tier: &str) -> Vec<String> {
    subnet_names(builder, tier)
        .iter()
        .map(|name| output::<Subnet>(name, "id"))
        .collect()
}

/// Addresses of a tier's subnets.
pub fn subnet_addresses(builder: &Builder<'_>, tier: &str) -> Vec<String> {
    subnet_names(builder, tier)
        .iter()
        .map(|name| address::<Subnet>(name))
        .collect()
}

fn subnet_names(builder: &Builder<'_>, tier: &str) -> Vec<String> {
    let count = builder
        .loaded
        .document
        .network
        .as_ref()
        .map(|network| match tier {
            "public" => network.subnets.public.len(),
            "private" => network.subnets.private.len(),
            _ => network.subnets.database.len(),
        })
        .unwrap_or(0);
    zones(builder)
        .iter()
        .take(count)
        .map(|zone| subnet_name(tier, zone))
        .collect()
}

/// Security group names the other families attach to.
pub mod groups {
    /// The load balancers' group.
    pub const ALB: &str = "alb";
    /// The cluster nodes' group.
    pub const NODES: &str = "nodes";
    /// The database's group.
    pub const DATABASE: &str = "database";
    /// The cache's group.
    pub const CACHE: &str = "cache";
}

/// Expands `network` into the VPC and everything in it.
pub fn expand(builder: &mut Builder<'_>) {
    let Some(network) = builder.loaded.document.network.clone() else {
        return;
    };
    let loaded = builder.loaded;
    let name_prefix = prefix(loaded);
    let base = FieldPath::of("network");
    let vpc_id = output::<Vpc>(VPC, "id");
    let tags = |address: &str, name: &str| aws_tags(loaded, address, name);

    builder.add(
        VPC,
        &Vpc {
            cidr_block: network.cidr.clone(),
            enable_dns_support: true,
            enable_dns_hostnames: true,
            tags: tags(&address::<Vpc>(VPC), &name_prefix),
        },
        base.key("cidr"),
    );

    let zones = zones(builder);
    let tiers = [
        ("public", network.subnets.public.clone()),
        ("private", network.subnets.private.clone()),
        ("database", network.subnets.database.clone()),
    ];
    let cluster_tag = format!("kubernetes.io/cluster/{name_prefix}");
    for (tier, cidrs) in &tiers {
        for (index, (zone, cidr)) in zones.iter().zip(cidrs).enumerate() {
            let name = subnet_name(tier, zone);
            let mut subnet_tags = tags(&address::<Subnet>(&name), &format!("{name_prefix}-{name}"));
            subnet_tags.insert("trails:tier".to_string(), tier.to_string());
            match *tier {
                "public" => {
                    subnet_tags.insert("kubernetes.io/role/elb".to_string(), "1".to_string());
                    subnet_tags.insert(cluster_tag.clone(), "shared".to_string());
                }
                "private" => {
                    subnet_tags.insert(
                        "kubernetes.io/role/internal-elb".to_string(),
                        "1".to_string(),
                    );
                    subnet_tags.insert(cluster_tag.clone(), "shared".to_string());
                }
                _ => {}
            }
            builder.add(
                &name,
                &Subnet {
                    vpc_id: vpc_id.clone(),
                    cidr_block: cidr.clone(),
                    availability_zone: zone.clone(),
                    map_public_ip_on_launch: *tier == "public",
                    tags: subnet_tags,
                },
                base.key("subnets").key(*tier).index(index),
            );
        }
    }

    builder.add(
        VPC,
        &InternetGateway {
            vpc_id: vpc_id.clone(),
            tags: tags(&address::<InternetGateway>(VPC), &name_prefix),
        },
        base.clone(),
    );

    let nat_zones: Vec<String> = match network.nat {
        NatLayout::PerAz => zones.clone(),
        NatLayout::Single => zones.iter().take(1).cloned().collect(),
        NatLayout::None => Vec::new(),
    };
    for zone in &nat_zones {
        let name = format!("nat-{}", zone_letter(zone));
        builder.add(
            &name,
            &Eip {
                domain: "vpc".to_string(),
                tags: tags(&address::<Eip>(&name), &format!("{name_prefix}-{name}")),
            },
            base.key("nat"),
        );
        let gateway = zone_letter(zone);
        let nat_address = address::<NatGateway>(&gateway);
        builder.add(
            &gateway,
            &NatGateway {
                subnet_id: output::<Subnet>(&subnet_name("public", zone), "id"),
                allocation_id: output::<Eip>(&name, "id"),
                tags: tags(&nat_address, &format!("{name_prefix}-nat-{gateway}")),
            },
            base.key("nat"),
        );
        // NAT gateways need the internet gateway attached before they can become available.
        builder.depends(&nat_address, &address::<InternetGateway>(VPC));
    }

    builder.add(
        "public",
        &RouteTable {
            vpc_id: vpc_id.clone(),
            routes: vec![Route {
                destination_cidr_block: "0.0.0.0/0".to_string(),
                gateway_id: Some(output::<InternetGateway>(VPC, "id")),
                nat_gateway_id: None,
            }],
            subnet_ids: subnet_ids(builder, "public"),
            tags: tags(
                &address::<RouteTable>("public"),
                &format!("{name_prefix}-public"),
            ),
        },
        base.key("subnets").key("public"),
    );
    let private_count = network.subnets.private.len();
    for zone in zones.iter().take(private_count) {
        let name = subnet_name("private", zone);
        // Each zone's private subnets leave through their own zone's NAT when there is one,
        // otherwise through the single NAT.
        let nat = nat_zones
            .iter()
            .find(|nat_zone| *nat_zone == zone)
            .or(nat_zones.first());
        let routes = nat
            .map(|nat_zone| {
                vec![Route {
                    destination_cidr_block: "0.0.0.0/0".to_string(),
                    gateway_id: None,
                    nat_gateway_id: Some(output::<NatGateway>(&zone_letter(nat_zone), "id")),
                }]
            })
            .unwrap_or_default();
        builder.add(
            &name,
            &RouteTable {
                vpc_id: vpc_id.clone(),
                routes,
                subnet_ids: vec![output::<Subnet>(&name, "id")],
                tags: tags(
                    &address::<RouteTable>(&name),
                    &format!("{name_prefix}-{name}"),
                ),
            },
            base.key("subnets").key("private"),
        );
    }
    if !network.subnets.database.is_empty() {
        builder.add(
            "database",
            &RouteTable {
                vpc_id: vpc_id.clone(),
                routes: Vec::new(),
                subnet_ids: subnet_ids(builder, "database"),
                tags: tags(
                    &address::<RouteTable>("database"),
                    &format!("{name_prefix}-database"),
                ),
            },
            base.key("subnets").key("database"),
        );
    }

    security_groups(builder, &network.ingress_cidrs, &network.cidr);
    network_acls(builder, &network.cidr, &network.subnets.private);
}

fn rule(description: &str, protocol: &str, ports: (i32, i32)) -> SecurityRule {
    SecurityRule {
        description: description.to_string(),
        protocol: protocol.to_string(),
        from_port: ports.0,
        to_port: ports.1,
        cidr_blocks: Vec::new(),
        security_group_id: None,
        self_referencing: false,
    }
}

fn all_egress() -> Vec<SecurityRule> {
    vec![SecurityRule {
        cidr_blocks: vec!["0.0.0.0/0".to_string()],
        ..rule("all outbound", "-1", (0, 0))
    }]
}

/// The four groups of SPEC §3, each allowing only what its tier needs.
fn security_groups(builder: &mut Builder<'_>, ingress_cidrs: &[String], vpc_cidr: &str) {
    let loaded = builder.loaded;
    let name_prefix = prefix(loaded);
    let vpc_id = output::<Vpc>(VPC, "id");
    let group = |name: &str| output::<SecurityGroup>(name, "id");
    let from_group = |description: &str, ports: (i32, i32), source: &str| SecurityRule {
        security_group_id: Some(group(source)),
        ..rule(description, "tcp", ports)
    };
    let definitions = [
        (
            groups::ALB,
            "load balancers: HTTP and HTTPS from the allowed CIDRs",
            vec![
                SecurityRule {
                    cidr_blocks: ingress_cidrs.to_vec(),
                    ..rule("HTTPS", "tcp", (443, 443))
                },
                SecurityRule {
                    cidr_blocks: ingress_cidrs.to_vec(),
                    ..rule("HTTP, redirected to HTTPS", "tcp", (80, 80))
                },
            ],
            vec![SecurityRule {
                cidr_blocks: vec![vpc_cidr.to_string()],
                ..rule("to the nodes inside the VPC", "tcp", (0, 65535))
            }],
        ),
        (
            groups::NODES,
            "cluster nodes: traffic from the load balancers and between nodes",
            vec![
                from_group("from the load balancers", (0, 65535), groups::ALB),
                SecurityRule {
                    self_referencing: true,
                    ..rule("node to node", "-1", (0, 0))
                },
            ],
            all_egress(),
        ),
        (
            groups::DATABASE,
            "PostgreSQL: 5432 from the cluster nodes only",
            vec![from_group(
                "PostgreSQL from the nodes",
                (5432, 5432),
                groups::NODES,
            )],
            Vec::new(),
        ),
        (
            groups::CACHE,
            "Redis: 6379 from the cluster nodes only",
            vec![from_group(
                "Redis from the nodes",
                (6379, 6379),
                groups::NODES,
            )],
            Vec::new(),
        ),
    ];
    let needed = |name: &str| match name {
        groups::DATABASE => !loaded.document.postgres.is_empty(),
        groups::CACHE => !loaded.document.redis.is_empty(),
        _ => true,
    };
    for (name, description, ingress, egress) in definitions {
        if !needed(name) {
            continue;
        }
        let full_name = format!("{name_prefix}-{name}");
        builder.add(
            name,
            &SecurityGroup {
                name: full_name.clone(),
                description: description.to_string(),
                vpc_id: vpc_id.clone(),
                ingress,
                egress,
                tags: aws_tags(loaded, &address::<SecurityGroup>(name), &full_name),
            },
            FieldPath::of("network"),
        );
    }
}

/// Stateless filters per tier, a second fence behind the security groups.
fn network_acls(builder: &mut Builder<'_>, vpc_cidr: &str, private_cidrs: &[String]) {
    let loaded = builder.loaded;
    let name_prefix = prefix(loaded);
    let entry = |rule_number, protocol: &str, cidr: &str, ports: (i32, i32)| AclRule {
        rule_number,
        protocol: protocol.to_string(),
        action: "allow".to_string(),
        cidr_block: cidr.to_string(),
        from_port: ports.0,
        to_port: ports.1,
    };
    let everywhere = "0.0.0.0/0";
    let ephemeral = (1024, 65535);
    let public = (
        "public",
        vec![
            entry(100, "tcp", everywhere, (443, 443)),
            entry(110, "tcp", everywhere, (80, 80)),
            entry(120, "tcp", everywhere, ephemeral),
            entry(130, "-1", vpc_cidr, (0, 0)),
        ],
        vec![entry(100, "-1", everywhere, (0, 0))],
    );
    let private = (
        "private",
        vec![
            entry(100, "-1", vpc_cidr, (0, 0)),
            entry(110, "tcp", everywhere, ephemeral),
            entry(120, "udp", everywhere, ephemeral),
        ],
        vec![entry(100, "-1", everywhere, (0, 0))],
    );
    let mut database_in = Vec::new();
    let mut database_out = Vec::new();
    for (index, cidr) in private_cidrs.iter().enumerate() {
        let number = 100 + 10 * index as i32;
        database_in.push(entry(number, "tcp", cidr, (5432, 5432)));
        database_in.push(entry(number + 1, "tcp", cidr, (6379, 6379)));
        database_out.push(entry(number, "tcp", cidr, ephemeral));
    }
    let database = ("database", database_in, database_out);
    for (tier, ingress, egress) in [public, private, database] {
        let subnet_ids = subnet_ids(builder, tier);
        if subnet_ids.is_empty() {
            continue;
        }
        builder.add(
            tier,
            &NetworkAcl {
                vpc_id: output::<Vpc>(VPC, "id"),
                subnet_ids,
                ingress,
                egress,
                tags: aws_tags(
                    loaded,
                    &address::<NetworkAcl>(tier),
                    &format!("{name_prefix}-{tier}"),
                ),
            },
            FieldPath::of("network.subnets").key(tier),
        );
    }
}

/// Flow logs come after the buckets they write to.
pub fn expand_flow_logs(builder: &mut Builder<'_>) {
    let loaded = builder.loaded;
    let Some(flow_logs) = loaded
        .document
        .network
        .as_ref()
        .and_then(|network| network.flow_logs.clone())
    else {
        return;
    };
    builder.add(
        VPC,
        &FlowLog {
            vpc_id: output::<Vpc>(VPC, "id"),
            traffic_type: flow_logs.traffic.clone(),
            log_destination: output::<super::s3::Bucket>(&flow_logs.bucket, "arn"),
            tags: aws_tags(loaded, &address::<FlowLog>(VPC), &prefix(loaded)),
        },
        FieldPath::of("network.flow_logs"),
    );
}
