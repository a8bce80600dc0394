//! What the cluster's controllers leave behind: load balancers (AWS Load Balancer Controller,
//! the cloud provider), EBS volumes (the EBS CSI driver), network interfaces (the VPC CNI) and
//! security groups. trails never created them, so no resource in the state stands for them,
//! yet they keep the subnets and the VPC from being deleted and cost money.
//!
//! Before a cluster's node pools go, destroy waits for the controllers to release what they
//! made (they delete it when the Service, Ingress or volume claim that asked for it goes); once
//! the cluster is gone it removes what still carries the cluster's tags; and `trails destroy`
//! removes from the subnets and the VPC whatever still carries the environment's tags.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, Instant};

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    Filter, IpPermission, NetworkInterfaceStatus, UserIdGroupPair, VolumeState,
};
use aws_sdk_elasticloadbalancingv2::client::Waiters;

use super::{Context, gone_is_fine};
use crate::providers::ProviderError;

/// How often the AWS side is asked again while waiting.
const POLL: Duration = Duration::from_secs(5);

/// Longest wait for the controllers before trails removes what they made itself.
const CONTROLLER_GRACE: Duration = Duration::from_secs(600);

/// Whose leftovers are looked for.
#[derive(Debug, Clone, Copy)]
pub enum Owner<'a> {
    /// Made inside this EKS cluster, as its controllers tag what they create.
    Cluster(&'a str),
    /// Carrying the environment's tags (controllers configured with default tags, or a
    /// resource trails created but never recorded).
    Environment {
        /// `trails:blueprint`.
        blueprint: &'a str,
        /// `trails:environment`.
        environment: &'a str,
    },
}

impl Owner<'_> {
    /// True when the tags mark the thing as this owner's.
    pub fn owns<'t>(&self, tags: impl IntoIterator<Item = (&'t str, &'t str)>) -> bool {
        let tags: Vec<(&str, &str)> = tags.into_iter().collect();
        match self {
            // `kubernetes.io/cluster/NAME: shared` marks what the cluster only uses (a VPC's
            // subnets, another team's group): only `owned` is the cluster's own.
            Owner::Cluster(name) => tags.iter().any(|(key, value)| {
                (key.strip_prefix("kubernetes.io/cluster/") == Some(name) && *value == "owned")
                    || (matches!(
                        *key,
                        "elbv2.k8s.aws/cluster"
                            | "cluster.k8s.amazonaws.com/name"
                            | "KubernetesCluster"
                    ) && value == name)
            }),
            Owner::Environment {
                blueprint,
                environment,
            } => {
                tags.contains(&("trails:blueprint", blueprint))
                    && tags.contains(&("trails:environment", environment))
            }
        }
    }

    /// EC2 filter sets that each find some of this owner's candidates (checked again with
    /// [`Owner::owns`]). One query per tag rather than one filter with several `tag-key`
    /// values: exact filters are understood alike by AWS and its emulators.
    fn ec2_queries(&self) -> Vec<Vec<Filter>> {
        let tag = |key: &str, value: &str| {
            Filter::builder()
                .name(format!("tag:{key}"))
                .values(value)
                .build()
        };
        match self {
            Owner::Cluster(name) => vec![
                vec![
                    Filter::builder()
                        .name("tag-key")
                        .values(format!("kubernetes.io/cluster/{name}"))
                        .build(),
                ],
                vec![tag("elbv2.k8s.aws/cluster", name)],
                vec![tag("cluster.k8s.amazonaws.com/name", name)],
                vec![tag("KubernetesCluster", name)],
            ],
            Owner::Environment {
                blueprint,
                environment,
            } => vec![vec![
                tag("trails:blueprint", blueprint),
                tag("trails:environment", environment),
            ]],
        }
    }
}

impl fmt::Display for Owner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Cluster(name) => write!(f, "the cluster {name}"),
            Owner::Environment {
                blueprint,
                environment,
            } => write!(f, "{blueprint}/{environment}"),
        }
    }
}

/// Where leftovers are looked for.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Anywhere in the region (a cluster's tags are specific enough).
    Region,
    /// In one VPC: load balancers, target groups, interfaces, security groups.
    Vpc(&'a str),
    /// In one subnet: load balancers with a leg in it, interfaces.
    Subnet(&'a str),
}

/// One thing found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// What it is, for messages: "load balancer", "volume", ...
    pub what: &'static str,
    /// Its id or ARN, for the API.
    pub id: String,
    /// Its name or description, for the user.
    pub name: String,
}

impl fmt::Display for Leftover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() || self.name == self.id {
            write!(f, "{} {}", self.what, self.id)
        } else {
            write!(f, "{} {} ({})", self.what, self.name, self.id)
        }
    }
}

/// Lists leftovers for messages: "load balancer a (arn), volume vol-1".
pub fn list(leftovers: &[Leftover]) -> String {
    leftovers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every load balancer (v2: application, network, gateway) of the region.
async fn all_load_balancers(
    context: &Context,
) -> Result<Vec<aws_sdk_elasticloadbalancingv2::types::LoadBalancer>, ProviderError> {
    context
        .elb
        .describe_load_balancers()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| ProviderError::api("DescribeLoadBalancers", e))
}

/// What a classic load balancer is called in messages; its id is its name.
const CLASSIC: &str = "classic load balancer";

/// Every classic load balancer of the region.
async fn all_classic_load_balancers(
    context: &Context,
) -> Result<Vec<aws_sdk_elasticloadbalancing::types::LoadBalancerDescription>, ProviderError> {
    context
        .elb_classic
        .describe_load_balancers()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| ProviderError::api("DescribeLoadBalancers (classic)", e))
}

/// Classic load balancers of `owner` within `scope`.
async fn classic_load_balancers(
    context: &Context,
    owner: Owner<'_>,
    scope: Scope<'_>,
) -> Result<Vec<Leftover>, ProviderError> {
    let candidates: Vec<String> = all_classic_load_balancers(context)
        .await?
        .iter()
        .filter(|lb| match scope {
            Scope::Region => true,
            Scope::Vpc(vpc) => lb.vpc_id() == Some(vpc),
            Scope::Subnet(subnet) => lb.subnets().iter().any(|id| id == subnet),
        })
        .filter_map(|lb| lb.load_balancer_name().map(str::to_string))
        .collect();
    let mut owned = Vec::new();
    // DescribeTags takes at most 20 names a call.
    for chunk in candidates.chunks(20) {
        let described = context
            .elb_classic
            .describe_tags()
            .set_load_balancer_names(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| ProviderError::api("DescribeTags (classic)", e))?;
        for description in described.tag_descriptions() {
            let tags = description
                .tags()
                .iter()
                .map(|tag| (tag.key(), tag.value().unwrap_or_default()));
            if owner.owns(tags)
                && let Some(name) = description.load_balancer_name()
            {
                owned.push(leftover(CLASSIC, name, None));
            }
        }
    }
    Ok(owned)
}

/// Load balancers of `owner` within `scope`: application, network and gateway ones (ids are
/// ARNs) and classic ones (ids are names).
pub async fn load_balancers(
    context: &Context,
    owner: Owner<'_>,
    scope: Scope<'_>,
) -> Result<Vec<Leftover>, ProviderError> {
    let mut found = balancers_v2(context, owner, scope).await?;
    found.extend(classic_load_balancers(context, owner, scope).await?);
    Ok(found)
}

async fn balancers_v2(
    context: &Context,
    owner: Owner<'_>,
    scope: Scope<'_>,
) -> Result<Vec<Leftover>, ProviderError> {
    let candidates = all_load_balancers(context)
        .await?
        .iter()
        .filter(|lb| match scope {
            Scope::Region => true,
            Scope::Vpc(vpc) => lb.vpc_id() == Some(vpc),
            Scope::Subnet(subnet) => lb
                .availability_zones()
                .iter()
                .any(|zone| zone.subnet_id() == Some(subnet)),
        })
        .filter_map(|lb| Some((lb.load_balancer_arn()?, lb.load_balancer_name())))
        .map(|(arn, name)| leftover("load balancer", arn, name))
        .collect();
    elb_owned(context, owner, candidates).await
}

/// Target groups of `owner` in a VPC (they outlive their load balancer).
async fn target_groups(
    context: &Context,
    owner: Owner<'_>,
    vpc: Option<&str>,
) -> Result<Vec<Leftover>, ProviderError> {
    let all: Vec<_> = context
        .elb
        .describe_target_groups()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| ProviderError::api("DescribeTargetGroups", e))?;
    let candidates = all
        .iter()
        .filter(|group| vpc.is_none() || group.vpc_id() == vpc)
        .filter_map(|group| Some((group.target_group_arn()?, group.target_group_name())))
        .map(|(arn, name)| leftover("target group", arn, name))
        .collect();
    elb_owned(context, owner, candidates).await
}

fn leftover(what: &'static str, id: &str, name: Option<&str>) -> Leftover {
    Leftover {
        what,
        id: id.to_string(),
        name: name.unwrap_or_default().to_string(),
    }
}

/// The candidates (ids are ARNs) whose Elastic Load Balancing tags mark them as `owner`'s.
async fn elb_owned(
    context: &Context,
    owner: Owner<'_>,
    candidates: Vec<Leftover>,
) -> Result<Vec<Leftover>, ProviderError> {
    let mut owned = Vec::new();
    // DescribeTags takes at most 20 ARNs a call.
    for chunk in candidates.chunks(20) {
        let described = context
            .elb
            .describe_tags()
            .set_resource_arns(Some(chunk.iter().map(|c| c.id.clone()).collect()))
            .send()
            .await
            .map_err(|e| ProviderError::api("DescribeTags", e))?;
        for description in described.tag_descriptions() {
            let tags = description
                .tags()
                .iter()
                .filter_map(|tag| Some((tag.key()?, tag.value().unwrap_or_default())));
            if owner.owns(tags) {
                owned.extend(
                    chunk
                        .iter()
                        .filter(|c| Some(c.id.as_str()) == description.resource_arn())
                        .cloned(),
                );
            }
        }
    }
    Ok(owned)
}

/// Runs one EC2 listing per query of `owner` (with `extra` filters added) and keeps each
/// resource once.
async fn by_queries<T, F, Fut>(
    owner: Owner<'_>,
    extra: Vec<Filter>,
    list: F,
    id: impl Fn(&T) -> Option<&str>,
) -> Result<Vec<T>, ProviderError>
where
    F: Fn(Vec<Filter>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, ProviderError>>,
{
    let mut all = Vec::new();
    for mut filters in owner.ec2_queries() {
        filters.extend(extra.iter().cloned());
        all.extend(list(filters).await?);
    }
    all.sort_by(|a, b| id(a).cmp(&id(b)));
    all.dedup_by(|a, b| id(a) == id(b));
    Ok(all)
}

/// EBS volumes of a cluster (the CSI driver and the in-tree provisioner tag them).
pub async fn volumes(context: &Context, owner: Owner<'_>) -> Result<Vec<Leftover>, ProviderError> {
    let all = by_queries(
        owner,
        Vec::new(),
        |filters| async {
            context
                .ec2
                .describe_volumes()
                .set_filters(Some(filters))
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| ProviderError::api("DescribeVolumes", e))
        },
        |volume| volume.volume_id(),
    )
    .await?;
    Ok(all
        .iter()
        .filter(|volume| volume.state() != Some(&VolumeState::Deleted))
        .filter(|volume| owner.owns(ec2_tags(volume.tags())))
        .filter_map(|volume| {
            let claim = volume
                .tags()
                .iter()
                .find(|tag| tag.key() == Some("kubernetes.io/created-for/pvc/name"))
                .and_then(|tag| tag.value());
            Some(Leftover {
                what: "volume",
                id: volume.volume_id()?.to_string(),
                name: claim.map(|c| format!("claim {c}")).unwrap_or_default(),
            })
        })
        .collect())
}

/// Network interfaces of `owner` nothing uses any more (status `available`), except those a
/// service manages itself (requester-managed: it deletes them with their load balancer).
async fn interfaces(
    context: &Context,
    owner: Owner<'_>,
    scope: Scope<'_>,
) -> Result<Vec<Leftover>, ProviderError> {
    // Status is checked below rather than filtered: not every EC2 implementation filters it.
    let extra = match scope {
        Scope::Region => Vec::new(),
        Scope::Vpc(vpc) => vec![Filter::builder().name("vpc-id").values(vpc).build()],
        Scope::Subnet(subnet) => vec![Filter::builder().name("subnet-id").values(subnet).build()],
    };
    let all = by_queries(
        owner,
        extra,
        |filters| async {
            context
                .ec2
                .describe_network_interfaces()
                .set_filters(Some(filters))
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| ProviderError::api("DescribeNetworkInterfaces", e))
        },
        |eni| eni.network_interface_id(),
    )
    .await?;
    Ok(all
        .iter()
        .filter(|eni| eni.status() == Some(&NetworkInterfaceStatus::Available))
        .filter(|eni| eni.requester_managed() != Some(true))
        .filter(|eni| owner.owns(ec2_tags(eni.tag_set())))
        .filter_map(|eni| {
            Some(Leftover {
                what: "network interface",
                id: eni.network_interface_id()?.to_string(),
                name: eni.description().unwrap_or_default().to_string(),
            })
        })
        .collect())
}

/// Security groups of `owner` (never a VPC's default group).
async fn security_groups(
    context: &Context,
    owner: Owner<'_>,
    vpc: Option<&str>,
) -> Result<Vec<aws_sdk_ec2::types::SecurityGroup>, ProviderError> {
    let extra = vpc
        .map(|vpc| vec![Filter::builder().name("vpc-id").values(vpc).build()])
        .unwrap_or_default();
    let all = by_queries(
        owner,
        extra,
        |filters| async {
            context
                .ec2
                .describe_security_groups()
                .set_filters(Some(filters))
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| ProviderError::api("DescribeSecurityGroups", e))
        },
        |group| group.group_id(),
    )
    .await?;
    Ok(all
        .into_iter()
        .filter(|group| group.group_name() != Some("default"))
        .filter(|group| owner.owns(ec2_tags(group.tags())))
        .collect())
}

fn ec2_tags(tags: &[aws_sdk_ec2::types::Tag]) -> impl Iterator<Item = (&str, &str)> {
    tags.iter()
        .filter_map(|tag| Some((tag.key()?, tag.value().unwrap_or_default())))
}

/// Before a cluster's node pools go: waits until the controllers have released the load
/// balancers (and, in an ephemeral environment, the volumes) they made for the cluster, at most the wait timeout (and at most
/// ten minutes: a controller that has not let go by then will not). What is still there is
/// left for [`remove`] once the cluster is gone, and said so.
pub async fn await_release(
    context: &Context,
    address: &str,
    cluster: &str,
) -> Result<(), ProviderError> {
    let owner = Owner::Cluster(cluster);
    let grace = context.wait_timeout.min(CONTROLLER_GRACE);
    let started = Instant::now();
    let mut announced = false;
    loop {
        let mut held = load_balancers(context, owner, Scope::Region).await?;
        if context.run.ephemeral {
            // Elsewhere volumes are kept, and one a retained claim left would be waited for
            // in vain.
            held.extend(volumes(context, owner).await?);
        }
        if held.is_empty() {
            if announced {
                context
                    .run
                    .note(address, "the cluster's controllers released everything");
            }
            return Ok(());
        }
        let waited = started.elapsed();
        if waited >= grace {
            context.run.note(
                address,
                &format!(
                    "still there after {}s, removed once the cluster is gone: {}",
                    waited.as_secs(),
                    list(&held)
                ),
            );
            return Ok(());
        }
        if !announced {
            context.run.note(
                address,
                &format!(
                    "waiting for the cluster's controllers to release {}",
                    list(&held)
                ),
            );
            announced = true;
        }
        tokio::time::sleep(POLL.min(grace - waited)).await;
    }
}

/// Removes what `owner` left within `scope`: load balancers (and waits until they are gone),
/// target groups, unused volumes and network interfaces, then security groups (retried while
/// something still uses them, up to the wait timeout). Each removal is noted under `address`.
/// A volume still attached is not detached: it is named in the error.
pub async fn remove(
    context: &Context,
    address: &str,
    owner: Owner<'_>,
    scope: Scope<'_>,
) -> Result<(), ProviderError> {
    let note = |leftover: &Leftover| {
        context
            .run
            .note(address, &format!("removed {leftover}, left by {owner}"));
    };
    let (classic, balancers): (Vec<Leftover>, Vec<Leftover>) =
        load_balancers(context, owner, scope)
            .await?
            .into_iter()
            .partition(|balancer| balancer.what == CLASSIC);
    for balancer in &balancers {
        gone_is_fine(
            context
                .elb
                .delete_load_balancer()
                .load_balancer_arn(&balancer.id)
                .send()
                .await,
            "DeleteLoadBalancer",
        )?;
    }
    if !balancers.is_empty() {
        context
            .elb
            .wait_until_load_balancers_deleted()
            .set_load_balancer_arns(Some(balancers.iter().map(|b| b.id.clone()).collect()))
            .wait(context.wait_timeout)
            .await
            .map_err(|e| ProviderError::api("waiting for LoadBalancersDeleted", e))?;
        balancers.iter().for_each(note);
    }
    // A classic load balancer's delete is done when it answers; its interfaces go a little
    // later, which the interface and security group removals below wait out.
    for balancer in &classic {
        gone_is_fine(
            context
                .elb_classic
                .delete_load_balancer()
                .load_balancer_name(&balancer.id)
                .send()
                .await,
            "DeleteLoadBalancer (classic)",
        )?;
        note(balancer);
    }
    let vpc = match scope {
        Scope::Region => None,
        Scope::Vpc(vpc) => Some(vpc),
        Scope::Subnet(_) => return remove_interfaces(context, owner, scope, note).await,
    };
    for group in target_groups(context, owner, vpc).await? {
        gone_is_fine(
            context
                .elb
                .delete_target_group()
                .target_group_arn(&group.id)
                .send()
                .await,
            "DeleteTargetGroup",
        )?;
        note(&group);
    }
    if let Owner::Cluster(_) = owner {
        let volumes = volumes(context, owner).await?;
        if !context.run.ephemeral && !volumes.is_empty() {
            context.run.note(
                address,
                &format!(
                    "kept {} (they may hold data and the environment is not ephemeral)",
                    list(&volumes)
                ),
            );
        }
        let mut attached = Vec::new();
        for volume in volumes.into_iter().filter(|_| context.run.ephemeral) {
            match context
                .ec2
                .delete_volume()
                .volume_id(&volume.id)
                .send()
                .await
            {
                Ok(_) => note(&volume),
                Err(error) if super::is_not_found(&error) => {}
                Err(error) if error.code() == Some("VolumeInUse") => attached.push(volume),
                Err(error) => return Err(ProviderError::api("DeleteVolume", error)),
            }
        }
        if !attached.is_empty() {
            return Err(ProviderError::Conflict(format!(
                "{} made for the cluster still attached to an instance outside its node pools; \
                 detach and delete, then run again",
                list(&attached)
            )));
        }
    }
    remove_interfaces(context, owner, scope, note).await?;
    remove_security_groups(context, owner, vpc, note).await
}

async fn remove_interfaces(
    context: &Context,
    owner: Owner<'_>,
    scope: Scope<'_>,
    note: impl Fn(&Leftover),
) -> Result<(), ProviderError> {
    for interface in interfaces(context, owner, scope).await? {
        gone_is_fine(
            context
                .ec2
                .delete_network_interface()
                .network_interface_id(&interface.id)
                .send()
                .await,
            "DeleteNetworkInterface",
        )?;
        note(&interface);
    }
    Ok(())
}

/// Security groups go last and may have to wait: a deleted load balancer's interfaces hold its
/// groups for a few minutes. Rules are revoked first, since groups that refer to each other
/// cannot be deleted one by one.
async fn remove_security_groups(
    context: &Context,
    owner: Owner<'_>,
    vpc: Option<&str>,
    note: impl Fn(&Leftover),
) -> Result<(), ProviderError> {
    let groups = security_groups(context, owner, vpc).await?;
    let doomed: BTreeSet<&str> = groups.iter().filter_map(|group| group.group_id()).collect();
    for group in &groups {
        let Some(id) = group.group_id() else { continue };
        let ingress = references_to(group.ip_permissions(), &doomed);
        if !ingress.is_empty() {
            gone_is_fine(
                context
                    .ec2
                    .revoke_security_group_ingress()
                    .group_id(id)
                    .set_ip_permissions(Some(ingress))
                    .send()
                    .await,
                "RevokeSecurityGroupIngress",
            )?;
        }
        let egress = references_to(group.ip_permissions_egress(), &doomed);
        if !egress.is_empty() {
            gone_is_fine(
                context
                    .ec2
                    .revoke_security_group_egress()
                    .group_id(id)
                    .set_ip_permissions(Some(egress))
                    .send()
                    .await,
                "RevokeSecurityGroupEgress",
            )?;
        }
    }
    let started = Instant::now();
    for group in &groups {
        let Some(id) = group.group_id() else { continue };
        let leftover = Leftover {
            what: "security group",
            id: id.to_string(),
            name: group.group_name().unwrap_or_default().to_string(),
        };
        loop {
            match context
                .ec2
                .delete_security_group()
                .group_id(id)
                .send()
                .await
            {
                Ok(_) => {
                    note(&leftover);
                    break;
                }
                Err(error) if super::is_not_found(&error) => break,
                Err(error)
                    if error.code() == Some("DependencyViolation")
                        && started.elapsed() < context.wait_timeout =>
                {
                    tokio::time::sleep(POLL).await;
                }
                Err(error) => {
                    return Err(ProviderError::api(
                        &format!("DeleteSecurityGroup of {leftover}"),
                        error,
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The parts of `permissions` that name one of the `doomed` groups as their peer: what keeps
/// groups that refer to each other from being deleted one by one. Nothing else is revoked, so
/// a group that then cannot be deleted still allows what it allowed.
fn references_to(permissions: &[IpPermission], doomed: &BTreeSet<&str>) -> Vec<IpPermission> {
    permissions
        .iter()
        .filter_map(|permission| {
            let pairs: Vec<UserIdGroupPair> = permission
                .user_id_group_pairs()
                .iter()
                .filter(|pair| pair.group_id().is_some_and(|id| doomed.contains(id)))
                .cloned()
                .collect();
            (!pairs.is_empty()).then(|| {
                IpPermission::builder()
                    .set_ip_protocol(permission.ip_protocol().map(str::to_string))
                    .set_from_port(permission.from_port())
                    .set_to_port(permission.to_port())
                    .set_user_id_group_pairs(Some(pairs))
                    .build()
            })
        })
        .collect()
}

/// What is still in a VPC that DeleteVpc refused: for the error, so the user knows what to
/// remove (trails leaves what does not carry the environment's tags).
pub async fn remaining_in_vpc(context: &Context, vpc: &str) -> Vec<Leftover> {
    let in_vpc = Filter::builder().name("vpc-id").values(vpc).build();
    let mut found = Vec::new();
    if let Ok(interfaces) = context
        .ec2
        .describe_network_interfaces()
        .filters(in_vpc.clone())
        .send()
        .await
    {
        found.extend(interfaces.network_interfaces().iter().filter_map(|eni| {
            Some(Leftover {
                what: "network interface",
                id: eni.network_interface_id()?.to_string(),
                name: eni.description().unwrap_or_default().to_string(),
            })
        }));
    }
    if let Ok(groups) = context
        .ec2
        .describe_security_groups()
        .filters(in_vpc.clone())
        .send()
        .await
    {
        found.extend(
            groups
                .security_groups()
                .iter()
                .filter(|group| group.group_name() != Some("default"))
                .filter_map(|group| {
                    Some(Leftover {
                        what: "security group",
                        id: group.group_id()?.to_string(),
                        name: group.group_name().unwrap_or_default().to_string(),
                    })
                }),
        );
    }
    if let Ok(subnets) = context.ec2.describe_subnets().filters(in_vpc).send().await {
        found.extend(subnets.subnets().iter().filter_map(|subnet| {
            Some(Leftover {
                what: "subnet",
                id: subnet.subnet_id()?.to_string(),
                name: String::new(),
            })
        }));
    }
    if let Ok(balancers) = load_balancers_in(context, vpc).await {
        found.extend(balancers);
    }
    found
}

async fn load_balancers_in(context: &Context, vpc: &str) -> Result<Vec<Leftover>, ProviderError> {
    let mut found: Vec<Leftover> = all_load_balancers(context)
        .await?
        .iter()
        .filter(|lb| lb.vpc_id() == Some(vpc))
        .filter_map(|lb| {
            Some(leftover(
                "load balancer",
                lb.load_balancer_arn()?,
                lb.load_balancer_name(),
            ))
        })
        .collect();
    found.extend(
        all_classic_load_balancers(context)
            .await?
            .iter()
            .filter(|lb| lb.vpc_id() == Some(vpc))
            .filter_map(|lb| Some(leftover(CLASSIC, lb.load_balancer_name()?, None))),
    );
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_owns_what_its_controllers_tag() {
        let cluster = Owner::Cluster("turia-prod");
        assert!(cluster.owns([("kubernetes.io/cluster/turia-prod", "owned")]));
        assert!(cluster.owns([("elbv2.k8s.aws/cluster", "turia-prod")]));
        assert!(cluster.owns([("cluster.k8s.amazonaws.com/name", "turia-prod")]));
        assert!(cluster.owns([("KubernetesCluster", "turia-prod")]));
        assert!(!cluster.owns([("kubernetes.io/cluster/turia-prod-2", "owned")]));
        assert!(!cluster.owns([("kubernetes.io/cluster/turia-prod", "shared")]));
        assert!(!cluster.owns([("elbv2.k8s.aws/cluster", "other")]));
        assert!(!cluster.owns([("Name", "turia-prod")]));
    }

    #[test]
    fn an_environment_owns_what_carries_both_its_tags() {
        let env = Owner::Environment {
            blueprint: "turia",
            environment: "preview",
        };
        assert!(env.owns([
            ("trails:blueprint", "turia"),
            ("trails:environment", "preview")
        ]));
        assert!(!env.owns([("trails:blueprint", "turia")]));
        assert!(!env.owns([
            ("trails:blueprint", "turia"),
            ("trails:environment", "prod")
        ]));
    }

    #[test]
    fn leftovers_are_named_for_people() {
        let leftovers = [
            Leftover {
                what: "volume",
                id: "vol-1".into(),
                name: "claim data-redpanda-0".into(),
            },
            Leftover {
                what: "network interface",
                id: "eni-1".into(),
                name: String::new(),
            },
        ];
        assert_eq!(
            list(&leftovers),
            "volume claim data-redpanda-0 (vol-1), network interface eni-1"
        );
    }
}
