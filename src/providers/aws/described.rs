//! What EC2 says exists, read once per type and shared by every read of that type in one
//! refresh: one paginated Describe of everything carrying the environment's tags, instead of
//! one call per resource. A resource not in it (its tags removed by hand, say) is described by
//! its id on its own. Every call here is a Describe: reading never writes.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};

use aws_sdk_ec2::types::{Filter, Tag};
use serde_json::{Map, Value, json};
use tokio::sync::OnceCell;

use super::Context;
pub use super::none_if_missing;
use crate::providers::{ProviderError, Read};
use crate::resources::network::{AclRule, Route, SecurityRule};

type Shared = Arc<dyn Any + Send + Sync>;

/// Listings made once per run and kept for its other reads, by what they list.
#[derive(Default)]
pub struct Snapshots {
    cells: Mutex<HashMap<String, Arc<OnceCell<Shared>>>>,
}

impl std::fmt::Debug for Snapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshots").finish_non_exhaustive()
    }
}

impl Snapshots {
    /// The listing under `key`, made by `load` the first time it is asked for; concurrent
    /// askers wait for the one load.
    pub async fn get<T, F, Fut>(&self, key: String, load: F) -> Result<Arc<T>, ProviderError>
    where
        T: Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let cell = {
            // A poisoned lock only means another reader panicked; the map is still whole.
            let mut cells = self
                .cells
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            cells.entry(key.clone()).or_default().clone()
        };
        let value = cell
            .get_or_try_init(|| async { load().await.map(|value| Arc::new(value) as Shared) })
            .await?
            .clone();
        value.downcast::<T>().map_err(|_| {
            ProviderError::Invalid(format!("the listing {key} was kept as another type"))
        })
    }
}

/// Live attributes by resource id.
pub type ById = HashMap<String, Map<String, Value>>;

/// EC2 tags as a map, without the `aws:` ones AWS sets itself.
pub fn tags(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|tag| Some((tag.key()?.to_string(), tag.value()?.to_string())))
        .filter(|(key, _)| !key.starts_with("aws:"))
        .collect()
}

/// Filters on the environment's tags, taken from a recorded resource's tags.
fn environment_filters(recorded: &Map<String, Value>) -> Vec<Filter> {
    ["trails:blueprint", "trails:environment"]
        .iter()
        .filter_map(|key| {
            let value = recorded.get("tags")?.get(*key)?.as_str()?;
            Some(
                Filter::builder()
                    .name(format!("tag:{key}"))
                    .values(value)
                    .build(),
            )
        })
        .collect()
}

fn environment_key(kind: &str, recorded: &Map<String, Value>) -> String {
    let tag = |key: &str| {
        recorded
            .get("tags")
            .and_then(|tags| tags.get(key))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    format!(
        "{kind}/{}/{}",
        tag("trails:blueprint"),
        tag("trails:environment")
    )
}

/// Reads one EC2 resource: from the type's shared listing when it is there, else by its id.
pub async fn read<L, LF, O, OF>(
    context: &Context,
    kind: &str,
    id: &str,
    recorded: &Map<String, Value>,
    list: L,
    one: O,
) -> Result<Read, ProviderError>
where
    L: FnOnce(Vec<Filter>) -> LF,
    LF: Future<Output = Result<ById, ProviderError>>,
    O: FnOnce() -> OF,
    OF: Future<Output = Result<Option<Map<String, Value>>, ProviderError>>,
{
    let filters = environment_filters(recorded);
    let listing = context
        .snapshots
        .get(environment_key(kind, recorded), || list(filters))
        .await?;
    if let Some(live) = listing.get(id) {
        return Ok(Read::Live(live.clone()));
    }
    Ok(match one().await? {
        Some(live) => Read::Live(live),
        None => Read::Gone,
    })
}

/// A VPC's attributes (its DNS settings come from [`vpc_dns`]).
pub fn vpc(vpc: &aws_sdk_ec2::types::Vpc) -> Map<String, Value> {
    attributes([
        ("cidr_block", json!(vpc.cidr_block())),
        ("tags", json!(tags(vpc.tags()))),
    ])
}

/// A subnet's attributes.
pub fn subnet(subnet: &aws_sdk_ec2::types::Subnet) -> Map<String, Value> {
    attributes([
        ("vpc_id", json!(subnet.vpc_id())),
        ("cidr_block", json!(subnet.cidr_block())),
        ("availability_zone", json!(subnet.availability_zone())),
        (
            "map_public_ip_on_launch",
            json!(subnet.map_public_ip_on_launch().unwrap_or(false)),
        ),
        ("tags", json!(tags(subnet.tags()))),
    ])
}

/// An internet gateway's attributes: the VPC it is attached to (empty when detached).
pub fn internet_gateway(gateway: &aws_sdk_ec2::types::InternetGateway) -> Map<String, Value> {
    let attached = gateway
        .attachments()
        .iter()
        .filter(|attachment| {
            attachment
                .state()
                .is_some_and(|state| state.as_str() == "available" || state.as_str() == "attached")
        })
        .find_map(|attachment| attachment.vpc_id())
        .unwrap_or_default();
    attributes([
        ("vpc_id", json!(attached)),
        ("tags", json!(tags(gateway.tags()))),
    ])
}

/// An elastic IP's attributes.
pub fn eip(address: &aws_sdk_ec2::types::Address) -> Map<String, Value> {
    attributes([
        ("domain", json!(address.domain().map(|d| d.as_str()))),
        ("tags", json!(tags(address.tags()))),
    ])
}

/// A NAT gateway's attributes; `None` once it is deleted (EC2 lists deleted ones for an hour).
pub fn nat_gateway(gateway: &aws_sdk_ec2::types::NatGateway) -> Option<Map<String, Value>> {
    let state = gateway.state().map(|state| state.as_str()).unwrap_or("");
    if state == "deleted" || state == "deleting" || state == "failed" {
        return None;
    }
    let allocation = gateway
        .nat_gateway_addresses()
        .iter()
        .find_map(|address| address.allocation_id())
        .unwrap_or_default();
    Some(attributes([
        ("subnet_id", json!(gateway.subnet_id())),
        ("allocation_id", json!(allocation)),
        ("tags", json!(tags(gateway.tags()))),
    ]))
}

/// A route table's attributes: routes besides the VPC-local one, associated subnets.
pub fn route_table(table: &aws_sdk_ec2::types::RouteTable) -> Map<String, Value> {
    let routes: Vec<Route> = table
        .routes()
        .iter()
        .filter(|route| route.gateway_id() != Some("local"))
        .filter_map(|route| {
            Some(Route {
                destination_cidr_block: route.destination_cidr_block()?.to_string(),
                gateway_id: route.gateway_id().map(str::to_string),
                nat_gateway_id: route.nat_gateway_id().map(str::to_string),
            })
        })
        .collect();
    let subnets: Vec<&str> = table
        .associations()
        .iter()
        .filter(|association| !association.main().unwrap_or(false))
        .filter_map(|association| association.subnet_id())
        .collect();
    attributes([
        ("vpc_id", json!(table.vpc_id())),
        ("routes", json!(routes)),
        ("subnet_ids", json!(subnets)),
        ("tags", json!(tags(table.tags()))),
    ])
}

/// A security group's attributes, one rule per source; the group as its own source is
/// `self_referencing`, as the blueprint says it.
pub fn security_group(group: &aws_sdk_ec2::types::SecurityGroup) -> Map<String, Value> {
    let own = group.group_id().unwrap_or_default();
    let rules = |permissions: &[aws_sdk_ec2::types::IpPermission]| -> Vec<SecurityRule> {
        let mut rules = Vec::new();
        for permission in permissions {
            let protocol = permission.ip_protocol().unwrap_or("-1").to_string();
            let (from_port, to_port) = if protocol == "-1" {
                (-1, -1)
            } else {
                (
                    permission.from_port().unwrap_or(-1),
                    permission.to_port().unwrap_or(-1),
                )
            };
            let rule = |description: Option<&str>| SecurityRule {
                description: description.unwrap_or_default().to_string(),
                protocol: protocol.clone(),
                from_port,
                to_port,
                cidr_blocks: Vec::new(),
                security_group_id: None,
                self_referencing: false,
            };
            for range in permission.ip_ranges() {
                rules.push(SecurityRule {
                    cidr_blocks: range.cidr_ip().map(str::to_string).into_iter().collect(),
                    ..rule(range.description())
                });
            }
            for range in permission.ipv6_ranges() {
                rules.push(SecurityRule {
                    cidr_blocks: range.cidr_ipv6().map(str::to_string).into_iter().collect(),
                    ..rule(range.description())
                });
            }
            for pair in permission.user_id_group_pairs() {
                let group_id = pair.group_id().unwrap_or_default();
                rules.push(if group_id == own {
                    SecurityRule {
                        self_referencing: true,
                        ..rule(pair.description())
                    }
                } else {
                    SecurityRule {
                        security_group_id: Some(group_id.to_string()),
                        ..rule(pair.description())
                    }
                });
            }
        }
        rules
    };
    attributes([
        ("name", json!(group.group_name())),
        ("description", json!(group.description())),
        ("vpc_id", json!(group.vpc_id())),
        ("ingress", json!(rules(group.ip_permissions()))),
        ("egress", json!(rules(group.ip_permissions_egress()))),
        ("tags", json!(tags(group.tags()))),
    ])
}

/// Security group rules as they are compared: one line per protocol, port range and source,
/// descriptions aside (they do not change what is allowed).
pub fn rule_lines(rules: &Value) -> Value {
    let Ok(rules) = serde_json::from_value::<Vec<SecurityRule>>(rules.clone()) else {
        return rules.clone();
    };
    let mut lines = Vec::new();
    for rule in &rules {
        let ports = if rule.protocol == "-1" {
            "all traffic".to_string()
        } else if rule.from_port == rule.to_port {
            format!("{} {}", rule.protocol, rule.from_port)
        } else {
            format!("{} {}-{}", rule.protocol, rule.from_port, rule.to_port)
        };
        for cidr in &rule.cidr_blocks {
            lines.push(json!(format!("{ports} {cidr}")));
        }
        if let Some(group) = &rule.security_group_id {
            lines.push(json!(format!("{ports} {group}")));
        }
        if rule.self_referencing {
            lines.push(json!(format!("{ports} (the group itself)")));
        }
    }
    Value::Array(lines)
}

/// `attributes` with the `ingress` and `egress` lists written as `lines` writes them.
pub fn both_directions(
    mut attributes: Map<String, Value>,
    lines: fn(&Value) -> Value,
) -> Map<String, Value> {
    for direction in ["ingress", "egress"] {
        if let Some(list) = attributes.get_mut(direction) {
            *list = lines(list);
        }
    }
    attributes
}

/// EC2's protocol numbers in ACL entries, as the blueprint names them.
fn protocol_name(number: &str) -> &str {
    match number {
        "6" => "tcp",
        "17" => "udp",
        "1" => "icmp",
        other => other,
    }
}

/// A network ACL's attributes: entries besides the implicit deny-all, associated subnets.
pub fn network_acl(acl: &aws_sdk_ec2::types::NetworkAcl) -> Map<String, Value> {
    let entries = |egress: bool| -> Vec<AclRule> {
        acl.entries()
            .iter()
            // 32767 is the implicit deny-all every ACL has.
            .filter(|entry| entry.rule_number() != Some(32767))
            .filter(|entry| entry.egress().unwrap_or(false) == egress)
            .map(|entry| {
                let protocol = protocol_name(entry.protocol().unwrap_or("-1")).to_string();
                let (from_port, to_port) = entry
                    .port_range()
                    .filter(|_| protocol != "-1")
                    .map(|range| (range.from().unwrap_or(0), range.to().unwrap_or(0)))
                    .unwrap_or((0, 0));
                AclRule {
                    rule_number: entry.rule_number().unwrap_or(0),
                    protocol,
                    action: entry
                        .rule_action()
                        .map(|action| action.as_str().to_string())
                        .unwrap_or_default(),
                    cidr_block: entry.cidr_block().unwrap_or_default().to_string(),
                    from_port,
                    to_port,
                }
            })
            .collect()
    };
    let subnets: Vec<&str> = acl
        .associations()
        .iter()
        .filter_map(|association| association.subnet_id())
        .collect();
    attributes([
        ("vpc_id", json!(acl.vpc_id())),
        ("subnet_ids", json!(subnets)),
        ("ingress", json!(entries(false))),
        ("egress", json!(entries(true))),
        ("tags", json!(tags(acl.tags()))),
    ])
}

/// ACL entries as they are compared: ports of all-traffic entries do not matter.
pub fn acl_lines(entries: &Value) -> Value {
    let Ok(entries) = serde_json::from_value::<Vec<AclRule>>(entries.clone()) else {
        return entries.clone();
    };
    Value::Array(
        entries
            .iter()
            .map(|entry| {
                let ports = if entry.protocol == "-1" {
                    "all traffic".to_string()
                } else {
                    format!("{} {}-{}", entry.protocol, entry.from_port, entry.to_port)
                };
                json!(format!(
                    "#{} {} {ports} {}",
                    entry.rule_number, entry.action, entry.cidr_block
                ))
            })
            .collect(),
    )
}

/// A flow log's attributes.
pub fn flow_log(log: &aws_sdk_ec2::types::FlowLog) -> Map<String, Value> {
    attributes([
        ("vpc_id", json!(log.resource_id())),
        (
            "traffic_type",
            json!(log.traffic_type().map(|traffic| traffic.as_str())),
        ),
        ("log_destination", json!(log.log_destination())),
        ("tags", json!(tags(log.tags()))),
    ])
}

fn attributes<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect()
}

/// Every resource of one EC2 type that carries the environment's tags, by id: one paginated
/// Describe. `$item` turns one into its attributes, `None` for one that no longer counts.
macro_rules! listing {
    ($context:expr, $describe:ident . $filters:ident, $items:ident, $id:ident, $operation:literal, $item:expr) => {
        |filters| async move {
            let mut by_id = $crate::providers::aws::described::ById::new();
            let mut pages = $context
                .ec2
                .$describe()
                .$filters(Some(filters))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page =
                    page.map_err(|e| $crate::providers::ProviderError::api($operation, e))?;
                for item in page.$items() {
                    if let (Some(id), Some(live)) = (item.$id(), $item(item)) {
                        by_id.insert(id.to_string(), live);
                    }
                }
            }
            Ok(by_id)
        }
    };
}

/// One EC2 resource described by its id; `None` when EC2 says there is no such id.
macro_rules! by_id {
    ($context:expr, $describe:ident . $ids:ident, $id:expr, $items:ident, $operation:literal, $item:expr) => {
        || async move {
            let answer = $crate::providers::aws::described::none_if_missing(
                $context.ec2.$describe().$ids($id).send().await,
                $operation,
            )?;
            Ok(answer.and_then(|answer| answer.$items().first().and_then($item)))
        }
    };
}

/// The `read` of an EC2 type whose resources are found as they are listed: from the type's
/// shared listing, else by the recorded id.
macro_rules! ec2_read {
    ($context:expr, $recorded:expr, $kind:literal, $describe:ident . $filters:ident / $ids:ident, $items:ident, $id:ident, $operation:literal, $item:expr) => {{
        let id = recorded_id($recorded)?;
        let context = &$context;
        described::read(
            context,
            $kind,
            id,
            &$recorded.attributes,
            listing!(context, $describe.$filters, $items, $id, $operation, $item),
            by_id!(context, $describe.$ids, id, $items, $operation, $item),
        )
        .await
        .map(Some)
    }};
}

pub(crate) use {by_id, ec2_read, listing};
