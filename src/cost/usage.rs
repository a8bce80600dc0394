//! What each resource type is billed for, all in this one file: the components of one
//! resource's attributes (chosen by its [`Kind`], never by name), each a product of the
//! Price List and a monthly quantity.

use serde_json::Value;

use super::prices::Selector;
use crate::blueprint::naming::{self, EksSupport};
use crate::resources::{Kind, Spec, cache, eks, helm, network, rds, s3};

/// Hours in a month, as AWS's pricing pages count them.
pub const HOURS: f64 = 730.0;

/// Charts whose controller Service of type LoadBalancer makes AWS create a load balancer.
const INGRESS_CONTROLLER_CHARTS: &[&str] = &["traefik", "ingress-nginx"];

/// One billed part of a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    /// What it is (`control plane`, `3 × m6i.large on demand`).
    pub name: String,
    /// Its product; `None` when the Price List cannot price it (spot prices move).
    pub product: Option<Selector>,
    /// Units a month.
    pub quantity: f64,
    /// The unit the quantity counts (`Hrs`, `GB-Mo`).
    pub unit: &'static str,
    /// The assumption behind the quantity, or why it is not priced.
    pub note: Option<String>,
}

impl Component {
    /// With the assumption behind it, or why it is not priced.
    fn noted(self, note: impl Into<String>) -> Self {
        Self {
            note: Some(note.into()),
            ..self
        }
    }
}

fn hours(name: String, product: Selector, count: f64) -> Component {
    Component {
        name,
        product: Some(product),
        quantity: HOURS * count,
        unit: "Hrs",
        note: None,
    }
}

fn selector(
    offer: &'static str,
    family: Option<&'static str>,
    usage: Option<&str>,
    attributes: Vec<(&'static str, String)>,
) -> Selector {
    Selector {
        offer,
        family,
        usage: usage.map(str::to_string),
        attributes,
    }
}

fn text<'a>(attributes: &'a serde_json::Map<String, Value>, name: &str) -> &'a str {
    attributes.get(name).and_then(Value::as_str).unwrap_or("")
}

fn number(attributes: &serde_json::Map<String, Value>, name: &str) -> f64 {
    attributes.get(name).and_then(Value::as_f64).unwrap_or(0.0)
}

fn flag(attributes: &serde_json::Map<String, Value>, name: &str) -> bool {
    attributes
        .get(name)
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// The billed components of one resource, from its attributes (desired or recorded). Types
/// AWS does not bill for (a VPC, a subnet, a role) and in-cluster objects have none.
/// `today` (`YYYY-MM-DD`) places an EKS version in its support.
pub fn components(
    kind: &Kind,
    attributes: &serde_json::Map<String, Value>,
    today: &str,
) -> Vec<Component> {
    if kind == eks::Cluster::KIND {
        vec![control_plane(text(attributes, "version"), today)]
    } else if kind == eks::NodeGroup::KIND {
        node_group(attributes)
    } else if kind == network::NatGateway::KIND {
        vec![
            hours(
                "gateway hours".into(),
                selector(
                    "AmazonEC2",
                    Some("NAT Gateway"),
                    Some("NatGateway-Hours"),
                    vec![],
                ),
                1.0,
            )
            .noted("data processed is billed per GB on top, not estimated"),
        ]
    } else if kind == network::Eip::KIND {
        vec![hours(
            "public IPv4 address".into(),
            selector("AmazonVPC", None, Some("PublicIPv4:InUseAddress"), vec![]),
            1.0,
        )]
    } else if kind == rds::DbInstance::KIND {
        database(attributes)
    } else if kind == cache::ReplicationGroup::KIND {
        let shards = number(attributes, "num_node_groups").max(1.0);
        let nodes = shards * (number(attributes, "replicas_per_node_group") + 1.0);
        let node_type = text(attributes, "node_type");
        vec![hours(
            format!("{nodes} × {node_type} nodes"),
            selector(
                "AmazonElastiCache",
                Some("Cache Instance"),
                None,
                vec![
                    ("instanceType", node_type.to_string()),
                    ("cacheEngine", "Redis".into()),
                ],
            ),
            nodes,
        )]
    } else if kind == s3::Bucket::KIND {
        vec![Component {
            name: "Standard storage".into(),
            product: Some(selector(
                "AmazonS3",
                None,
                Some("TimedStorage-ByteHrs"),
                vec![("volumeType", "Standard".into())],
            )),
            quantity: 0.0,
            unit: "GB-Mo",
            note: Some("billed per GB stored; assumes an empty bucket".into()),
        }]
    } else if kind == helm::Release::KIND
        && INGRESS_CONTROLLER_CHARTS.contains(&text(attributes, "chart"))
    {
        // The controller's Service of type LoadBalancer makes the cloud provider create a
        // load balancer that no resource of the blueprint names.
        vec![
            hours(
                "network load balancer its Service implies".into(),
                selector(
                    "AWSELB",
                    Some("Load Balancer-Network"),
                    Some("LoadBalancerUsage"),
                    vec![],
                ),
                1.0,
            )
            .noted("capacity units (LCUs) are billed on top, not estimated"),
        ]
    } else {
        Vec::new()
    }
}

/// The control plane's hours, at the standard or the extended-support price by where its
/// version stands on `today`.
fn control_plane(version: &str, today: &str) -> Component {
    let plane = |usage: &str, name: String, note: String| {
        hours(name, selector("AmazonEKS", None, Some(usage), vec![]), 1.0).noted(note)
    };
    match naming::eks_support(version, today) {
        EksSupport::Standard => plane(
            "AmazonEKS-Hours:perCluster",
            "control plane".into(),
            format!("Kubernetes {version}, in standard support"),
        ),
        EksSupport::Extended(until) => plane(
            "AmazonEKS-Hours:extendedSupport",
            "control plane in extended support".into(),
            format!("Kubernetes {version} is in EKS's extended support until {until}"),
        ),
        EksSupport::Unknown => plane(
            "AmazonEKS-Hours:perCluster",
            "control plane".into(),
            format!(
                "Kubernetes {version} is not on trails' EKS calendar; priced as in standard \
                 support"
            ),
        ),
        EksSupport::Ended(on) => Component {
            name: "control plane".into(),
            product: None,
            quantity: HOURS,
            unit: "Hrs",
            note: Some(format!(
                "EKS's support of Kubernetes {version} ended on {on}: no price applies, EKS \
                 upgrades such a cluster itself"
            )),
        },
    }
}

fn node_group(attributes: &serde_json::Map<String, Value>) -> Vec<Component> {
    let desired = attributes
        .get("scaling")
        .and_then(|scaling| scaling.get("desired"))
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let instance = attributes
        .get("instance_types")
        .and_then(Value::as_array)
        .and_then(|types| types.first())
        .and_then(Value::as_str)
        .unwrap_or("");
    let name = format!("{desired} × {instance} (desired size)");
    if text(attributes, "capacity_type").eq_ignore_ascii_case("SPOT") {
        return vec![Component {
            name,
            product: None,
            quantity: HOURS * desired,
            unit: "Hrs",
            note: Some("spot prices move by the hour; the Price List has none".into()),
        }];
    }
    let instances = hours(
        name,
        selector(
            "AmazonEC2",
            Some("Compute Instance"),
            None,
            vec![
                ("instanceType", instance.to_string()),
                ("operatingSystem", "Linux".into()),
                ("tenancy", "Shared".into()),
                ("preInstalledSw", "NA".into()),
                ("capacitystatus", "Used".into()),
            ],
        ),
        desired,
    );
    vec![instances.noted("on demand; the nodes' EBS volumes are not estimated")]
}

fn database(attributes: &serde_json::Map<String, Value>) -> Vec<Component> {
    let multi_az = flag(attributes, "multi_az");
    let deployment = if multi_az { "Multi-AZ" } else { "Single-AZ" };
    let class = text(attributes, "instance_class");
    let storage = text(attributes, "storage_type").to_ascii_uppercase();
    let usage = if multi_az {
        format!("RDS:Multi-AZ-{storage}-Storage")
    } else {
        format!("RDS:{storage}-Storage")
    };
    vec![
        hours(
            format!("{class} {deployment}"),
            selector(
                "AmazonRDS",
                Some("Database Instance"),
                None,
                vec![
                    ("instanceType", class.to_string()),
                    ("databaseEngine", "PostgreSQL".into()),
                    ("deploymentOption", deployment.into()),
                ],
            ),
            1.0,
        ),
        Component {
            name: format!(
                "{} GB {} storage",
                number(attributes, "allocated_storage"),
                storage.to_ascii_lowercase()
            ),
            product: Some(selector(
                "AmazonRDS",
                Some("Database Storage"),
                Some(&usage),
                vec![],
            )),
            quantity: number(attributes, "allocated_storage"),
            unit: "GB-Mo",
            note: Some("allocated storage; backups beyond its size are not estimated".into()),
        },
    ]
}
