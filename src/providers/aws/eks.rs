//! The EKS cluster, its managed node groups and add-ons. Every change EKS runs asynchronously
//! (version upgrades, configuration updates) is followed until it finished, and creates wait
//! until the thing is ACTIVE.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_eks::client::Waiters;
use aws_sdk_eks::error::ProvideErrorMetadata;
use aws_sdk_eks::types::{
    CapacityTypes, LogSetup, LogType, Logging, NodegroupScalingConfig, ResolveConflicts,
    Taint as EksTaint, TaintEffect, UpdateLabelsPayload, UpdateStatus, UpdateTaintsPayload,
    VpcConfigRequest,
};
use serde_json::{Map, Value, json};

use super::{
    AwsProvider, Context, Registration, check_owns, gone_is_fine, is_not_found, none_if_missing,
    recorded_output, recorded_spec, tag_changes,
};
use super::{idempotency, sweep};
use crate::blueprint::schema::Taint;
use crate::providers::{Applied, ProviderError, Read, spec};
use crate::resources::Spec as _;
use crate::resources::eks::{Addon, CLUSTER, Cluster, NodeGroup};
use crate::state::Recorded;

/// The eks types, each with its provider.
pub const TYPES: &[Registration] = &[
    (Cluster::KIND, |context| {
        Box::new(ClusterProvider(context.clone()))
    }),
    (NodeGroup::KIND, |context| {
        Box::new(NodeGroupProvider(context.clone()))
    }),
    (Addon::KIND, |context| {
        Box::new(AddonProvider(context.clone()))
    }),
];

/// Every control-plane log type EKS knows; those not wanted are switched off explicitly.
const LOG_TYPES: &[&str] = &[
    "api",
    "audit",
    "authenticator",
    "controllerManager",
    "scheduler",
];

fn hash_map(tags: &BTreeMap<String, String>) -> HashMap<String, String> {
    tags.iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// EKS tags as a map, without the `aws:` ones AWS sets itself.
fn tag_map(tags: Option<&HashMap<String, String>>) -> BTreeMap<String, String> {
    tags.into_iter()
        .flatten()
        .filter(|(key, _)| !key.starts_with("aws:"))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// EKS's spelling of a taint effect (`NO_SCHEDULE`) in Kubernetes' (`NoSchedule`).
fn kubernetes_effect(effect: &TaintEffect) -> String {
    match effect {
        TaintEffect::NoSchedule => "NoSchedule".to_string(),
        TaintEffect::NoExecute => "NoExecute".to_string(),
        TaintEffect::PreferNoSchedule => "PreferNoSchedule".to_string(),
        other => other.as_str().to_string(),
    }
}

fn tag_pairs(tags: Option<&HashMap<String, String>>) -> Vec<(&str, &str)> {
    tags.into_iter()
        .flatten()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect()
}

fn int(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// A role created a moment ago is not yet visible to EKS everywhere (IAM is eventually
/// consistent): EKS then answers `InvalidParameterException` naming the role. Such calls are
/// repeated for up to about two minutes; every other error returns at once.
async fn while_role_propagates<T, E, F, Fut>(mut call: F) -> Result<T, E>
where
    E: ProvideErrorMetadata,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut delay = Duration::from_secs(2);
    for _ in 0..7 {
        match call().await {
            Err(error)
                if error.code() == Some("InvalidParameterException")
                    && error
                        .message()
                        .is_some_and(|message| message.to_lowercase().contains("role")) =>
            {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            other => return other,
        }
    }
    call().await
}

/// Follows an asynchronous EKS update until it succeeded, failed or ran out of time.
async fn follow_update(
    context: &Context,
    cluster: &str,
    nodegroup: Option<&str>,
    addon: Option<&str>,
    update_id: Option<&str>,
) -> Result<(), ProviderError> {
    let Some(update_id) = update_id else {
        return Ok(());
    };
    let deadline = Instant::now() + context.wait_timeout;
    let mut delay = Duration::from_millis(200);
    loop {
        let described = context
            .eks
            .describe_update()
            .name(cluster)
            .update_id(update_id)
            .set_nodegroup_name(nodegroup.map(str::to_string))
            .set_addon_name(addon.map(str::to_string))
            .send()
            .await
            .map_err(|e| ProviderError::api("DescribeUpdate", e))?;
        let update = described.update();
        match update.and_then(|update| update.status()) {
            Some(UpdateStatus::Successful) => return Ok(()),
            Some(status @ (UpdateStatus::Failed | UpdateStatus::Cancelled)) => {
                let reasons: Vec<String> = update
                    .map(|update| update.errors())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|error| error.error_message().map(str::to_string))
                    .collect();
                return Err(ProviderError::Api {
                    operation: format!("update {update_id} of {cluster}"),
                    message: format!("{}: {}", status.as_str(), reasons.join("; ")),
                });
            }
            _ if Instant::now() > deadline => {
                return Err(ProviderError::Timeout {
                    what: format!("update {update_id} of {cluster}"),
                    seconds: context.wait_timeout.as_secs(),
                });
            }
            _ => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(15));
            }
        }
    }
}

struct ClusterProvider(Context);

fn vpc_config(cluster: &Cluster) -> VpcConfigRequest {
    VpcConfigRequest::builder()
        .set_subnet_ids(Some(cluster.subnet_ids.clone()))
        .set_security_group_ids(Some(cluster.security_group_ids.clone()))
        .endpoint_public_access(cluster.endpoint_public_access)
        .endpoint_private_access(cluster.endpoint_private_access)
        .set_public_access_cidrs(
            (cluster.endpoint_public_access && !cluster.public_access_cidrs.is_empty())
                .then(|| cluster.public_access_cidrs.clone()),
        )
        .build()
}

fn logging(cluster: &Cluster) -> Logging {
    let (on, off): (Vec<&str>, Vec<&str>) = LOG_TYPES
        .iter()
        .partition(|kind| cluster.logging.iter().any(|wanted| wanted == *kind));
    let setup = |types: Vec<&str>, enabled: bool| {
        LogSetup::builder()
            .set_types(Some(types.into_iter().map(LogType::from).collect()))
            .enabled(enabled)
            .build()
    };
    let mut builder = Logging::builder();
    if !on.is_empty() {
        builder = builder.cluster_logging(setup(on, true));
    }
    if !off.is_empty() {
        builder = builder.cluster_logging(setup(off, false));
    }
    builder.build()
}

impl ClusterProvider {
    /// Waits until the cluster is ACTIVE and returns what in-cluster resources need.
    async fn active(&self, name: &str) -> Result<Applied, ProviderError> {
        let waited = self
            .0
            .eks
            .wait_until_cluster_active()
            .name(name)
            .wait(self.0.wait_timeout)
            .await
            .map_err(|error| ProviderError::api("waiting for ClusterActive", error))?;
        let described = waited
            .into_result()
            .map_err(|error| ProviderError::api("DescribeCluster", error))?;
        let live = described.cluster().ok_or_else(|| ProviderError::Api {
            operation: "DescribeCluster".into(),
            message: format!("{name} vanished after becoming active"),
        })?;
        let mut outputs = Map::new();
        outputs.insert("name".into(), json!(name));
        outputs.insert("arn".into(), json!(live.arn().unwrap_or_default()));
        outputs.insert(
            "endpoint".into(),
            json!(live.endpoint().unwrap_or_default()),
        );
        outputs.insert(
            "certificate_authority".into(),
            json!(
                live.certificate_authority()
                    .and_then(|ca| ca.data())
                    .unwrap_or_default()
            ),
        );
        outputs.insert(
            "oidc_issuer".into(),
            json!(
                live.identity()
                    .and_then(|identity| identity.oidc())
                    .and_then(|oidc| oidc.issuer())
                    .unwrap_or_default()
            ),
        );
        outputs.insert("version".into(), json!(live.version().unwrap_or_default()));
        Ok(Applied {
            id: name.to_string(),
            outputs,
        })
    }

    async fn describe(
        &self,
        name: &str,
    ) -> Result<Option<aws_sdk_eks::types::Cluster>, ProviderError> {
        match self.0.eks.describe_cluster().name(name).send().await {
            Ok(found) => Ok(found.cluster().cloned()),
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(ProviderError::api("DescribeCluster", error)),
        }
    }

    /// Brings every managed node group of the cluster to `version`: EKS refuses a control-plane
    /// update while a node group lags. Only this environment's node groups are touched (their
    /// `trails:blueprint` and `trails:environment` tags); another's that lags is an error that
    /// names it.
    async fn catch_up_node_groups(
        &self,
        name: &str,
        version: &str,
        ours: &BTreeMap<String, String>,
    ) -> Result<(), ProviderError> {
        let mut pages = self
            .0
            .eks
            .list_nodegroups()
            .cluster_name(name)
            .into_paginator()
            .send();
        let mut groups = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| ProviderError::api("ListNodegroups", e))?;
            groups.extend(page.nodegroups().iter().cloned());
        }
        for group in groups {
            let described = self
                .0
                .eks
                .describe_nodegroup()
                .cluster_name(name)
                .nodegroup_name(&group)
                .send()
                .await
                .map_err(|e| ProviderError::api("DescribeNodegroup", e))?;
            let Some(found) = described.nodegroup() else {
                continue;
            };
            let current = found.version().unwrap_or_default();
            if minor_of(current) == minor_of(version) {
                continue;
            }
            let tags = found.tags().cloned().unwrap_or_default();
            let environment = ["trails:blueprint", "trails:environment"]
                .iter()
                .all(|key| tags.contains_key(*key) && tags.get(*key) == ours.get(*key));
            if !environment {
                return Err(ProviderError::Conflict(format!(
                    "cannot upgrade cluster {name} past {current}: its node group {group} is on \
                     Kubernetes {current} and was not made by this environment; upgrade it to \
                     {version} first"
                )));
            }
            let started = self
                .0
                .eks
                .update_nodegroup_version()
                .cluster_name(name)
                .nodegroup_name(&group)
                .version(version)
                .send()
                .await
                .map_err(|e| ProviderError::api("UpdateNodegroupVersion", e))?;
            follow_update(
                &self.0,
                name,
                Some(&group),
                None,
                started.update().and_then(|update| update.id()),
            )
            .await?;
        }
        Ok(())
    }

    /// Upgrades one minor version at a time, as EKS requires, up to `wanted`, bringing this
    /// environment's node groups along before each step and after the last.
    async fn upgrade(
        &self,
        name: &str,
        from: &str,
        wanted: &str,
        ours: &BTreeMap<String, String>,
    ) -> Result<(), ProviderError> {
        let minor = |version: &str| -> Result<(u32, u32), ProviderError> {
            let mut parts = version.split('.');
            let major = parts.next().and_then(|part| part.parse().ok());
            let minor = parts.next().and_then(|part| part.parse().ok());
            major.zip(minor).ok_or_else(|| {
                ProviderError::Invalid(format!("Kubernetes version {version:?} is not MAJOR.MINOR"))
            })
        };
        let (major, mut current) = minor(from)?;
        let (wanted_major, wanted_minor) = minor(wanted)?;
        if wanted_major != major || wanted_minor < current {
            return Err(ProviderError::Invalid(format!(
                "cannot move {name} from Kubernetes {from} to {wanted}"
            )));
        }
        while current < wanted_minor {
            self.catch_up_node_groups(name, &format!("{major}.{current}"), ours)
                .await?;
            current += 1;
            let version = format!("{major}.{current}");
            let started = self
                .0
                .eks
                .update_cluster_version()
                .name(name)
                .version(&version)
                .send()
                .await
                .map_err(|e| ProviderError::api("UpdateClusterVersion", e))?;
            follow_update(
                &self.0,
                name,
                None,
                None,
                started.update().and_then(|update| update.id()),
            )
            .await?;
        }
        self.catch_up_node_groups(name, wanted, ours).await
    }
}

/// `1.30` of `1.30.4-eks-a737599`.
fn minor_of(version: &str) -> String {
    version.split('.').take(2).collect::<Vec<_>>().join(".")
}

#[async_trait]
impl AwsProvider for ClusterProvider {
    async fn read(
        &self,
        _address: &str,
        recorded: &Recorded,
    ) -> Result<Option<Read>, ProviderError> {
        let cluster: Cluster = recorded_spec(recorded)?;
        let Some(live) = self.describe(&cluster.name).await? else {
            return Ok(Some(Read::Gone));
        };
        let vpc = live.resources_vpc_config();
        let logging: Vec<String> = live
            .logging()
            .map(|logging| logging.cluster_logging())
            .unwrap_or_default()
            .iter()
            .filter(|setup| setup.enabled() == Some(true))
            .flat_map(|setup| setup.types())
            .map(|kind| kind.as_str().to_string())
            .collect();
        let public = vpc.is_some_and(|vpc| vpc.endpoint_public_access());
        let mut attributes = Map::new();
        attributes.insert("version".into(), json!(live.version()));
        attributes.insert("role_arn".into(), json!(live.role_arn()));
        attributes.insert(
            "subnet_ids".into(),
            json!(vpc.map(|vpc| vpc.subnet_ids()).unwrap_or_default()),
        );
        attributes.insert(
            "security_group_ids".into(),
            json!(vpc.map(|vpc| vpc.security_group_ids()).unwrap_or_default()),
        );
        attributes.insert("endpoint_public_access".into(), json!(public));
        attributes.insert(
            "endpoint_private_access".into(),
            json!(vpc.is_some_and(|vpc| vpc.endpoint_private_access())),
        );
        // EKS answers 0.0.0.0/0 for a public endpoint given no CIDRs, and keeps the list of a
        // private-only one: compare only what trails set.
        let cidrs: Vec<&str> = vpc
            .map(|vpc| vpc.public_access_cidrs())
            .unwrap_or_default()
            .iter()
            .map(String::as_str)
            .collect();
        let cidrs = if !public || (cluster.public_access_cidrs.is_empty() && cidrs == ["0.0.0.0/0"])
        {
            cluster
                .public_access_cidrs
                .iter()
                .map(String::as_str)
                .collect()
        } else {
            cidrs
        };
        attributes.insert("public_access_cidrs".into(), json!(cidrs));
        attributes.insert("logging".into(), json!(logging));
        attributes.insert("tags".into(), json!(tag_map(live.tags())));
        Ok(Some(Read::Live(attributes)))
    }

    async fn find(
        &self,
        _address: &str,
        desired: &Value,
    ) -> Result<Option<Applied>, ProviderError> {
        let cluster: Cluster = spec(desired)?;
        let Some(existing) = self.describe(&cluster.name).await? else {
            return Ok(None);
        };
        check_owns(
            tag_pairs(existing.tags()),
            &cluster.tags,
            &format!("EKS cluster {}", cluster.name),
        )?;
        Ok(Some(self.active(&cluster.name).await?))
    }

    async fn create(
        &self,
        _address: &str,
        desired: &Value,
        token: &str,
    ) -> Result<Applied, ProviderError> {
        let cluster: Cluster = spec(desired)?;
        while_role_propagates(|| {
            self.0
                .eks
                .create_cluster()
                .set_client_request_token(idempotency(token))
                .name(&cluster.name)
                .version(&cluster.version)
                .role_arn(&cluster.role_arn)
                .resources_vpc_config(vpc_config(&cluster))
                .logging(logging(&cluster))
                .set_tags(Some(hash_map(&cluster.tags)))
                .send()
        })
        .await
        .map_err(|e| ProviderError::api("CreateCluster", e))?;
        self.active(&cluster.name).await
    }

    async fn update(
        &self,
        _address: &str,
        previous: &Recorded,
        desired: &Value,
    ) -> Result<Applied, ProviderError> {
        let cluster: Cluster = spec(desired)?;
        let before: Cluster = recorded_spec(previous)?;
        if before.version != cluster.version {
            // From where the control plane is, not where the state says: an upgrade that
            // stopped half way (a step failed, cancelled or interrupted) left it further on
            // than recorded, and EKS refuses a step to the version it already runs.
            let live = self
                .describe(&cluster.name)
                .await?
                .and_then(|live| live.version().map(minor_of))
                .unwrap_or_else(|| before.version.clone());
            self.upgrade(&cluster.name, &live, &cluster.version, &cluster.tags)
                .await?;
        }
        // EKS runs one kind of configuration update at a time: network access, then logging.
        let mut updates = Vec::new();
        if before.subnet_ids != cluster.subnet_ids
            || before.security_group_ids != cluster.security_group_ids
            || before.endpoint_public_access != cluster.endpoint_public_access
            || before.endpoint_private_access != cluster.endpoint_private_access
            || before.public_access_cidrs != cluster.public_access_cidrs
        {
            updates.push(
                self.0
                    .eks
                    .update_cluster_config()
                    .name(&cluster.name)
                    .resources_vpc_config(vpc_config(&cluster)),
            );
        }
        if before.logging != cluster.logging {
            updates.push(
                self.0
                    .eks
                    .update_cluster_config()
                    .name(&cluster.name)
                    .logging(logging(&cluster)),
            );
        }
        for request in updates {
            let started = request
                .send()
                .await
                .map_err(|e| ProviderError::api("UpdateClusterConfig", e))?;
            follow_update(
                &self.0,
                &cluster.name,
                None,
                None,
                started.update().and_then(|u| u.id()),
            )
            .await?;
        }
        sync_tags(
            &self.0,
            &recorded_output(previous, "arn"),
            &before.tags,
            &cluster.tags,
        )
        .await?;
        self.active(&cluster.name).await
    }

    async fn delete(&self, address: &str, previous: &Recorded) -> Result<(), ProviderError> {
        let cluster: Cluster = recorded_spec(previous)?;
        match self.0.eks.delete_cluster().name(&cluster.name).send().await {
            Ok(_) => {
                self.0
                    .eks
                    .wait_until_cluster_deleted()
                    .name(&cluster.name)
                    .wait(self.0.wait_timeout)
                    .await
                    .map_err(|error| ProviderError::api("waiting for ClusterDeleted", error))?;
            }
            Err(error) if is_not_found(&error) => {}
            Err(error) => return Err(ProviderError::api("DeleteCluster", error)),
        }
        // What the controllers did not release before the nodes went (see the node groups'
        // delete) is removed now, so that it does not hold the subnets.
        sweep::remove(
            &self.0,
            address,
            sweep::Owner::Cluster(&cluster.name),
            sweep::Scope::Region,
        )
        .await
    }
}

/// Brings the tags of an EKS resource from `before` to `after`.
async fn sync_tags(
    context: &Context,
    arn: &str,
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Result<(), ProviderError> {
    if arn.is_empty() {
        return Ok(());
    }
    let (removed, set) = tag_changes(before, after);
    if !removed.is_empty() {
        context
            .eks
            .untag_resource()
            .resource_arn(arn)
            .set_tag_keys(Some(removed))
            .send()
            .await
            .map_err(|e| ProviderError::api("UntagResource", e))?;
    }
    if !set.is_empty() {
        context
            .eks
            .tag_resource()
            .resource_arn(arn)
            .set_tags(Some(hash_map(&set)))
            .send()
            .await
            .map_err(|e| ProviderError::api("TagResource", e))?;
    }
    Ok(())
}

/// Kubernetes' spelling of a taint effect (`NoSchedule`) in EKS's (`NO_SCHEDULE`).
fn taint_effect(effect: &str) -> Result<TaintEffect, ProviderError> {
    match effect {
        "NoSchedule" => Ok(TaintEffect::NoSchedule),
        "NoExecute" => Ok(TaintEffect::NoExecute),
        "PreferNoSchedule" => Ok(TaintEffect::PreferNoSchedule),
        other => Err(ProviderError::Invalid(format!(
            "taint effect {other:?}: expected NoSchedule, NoExecute or PreferNoSchedule"
        ))),
    }
}

fn eks_taints(taints: &[Taint]) -> Result<Vec<EksTaint>, ProviderError> {
    taints
        .iter()
        .map(|taint| {
            Ok(EksTaint::builder()
                .key(&taint.key)
                .set_value((!taint.value.is_empty()).then(|| taint.value.clone()))
                .effect(taint_effect(&taint.effect)?)
                .build())
        })
        .collect()
}

fn scaling(min: u32, max: u32, desired: u32) -> NodegroupScalingConfig {
    NodegroupScalingConfig::builder()
        .min_size(int(min))
        .max_size(int(max))
        .desired_size(int(desired))
        .build()
}

struct NodeGroupProvider(Context);

impl NodeGroupProvider {
    async fn describe(
        &self,
        group: &NodeGroup,
    ) -> Result<Option<aws_sdk_eks::types::Nodegroup>, ProviderError> {
        match self
            .0
            .eks
            .describe_nodegroup()
            .cluster_name(&group.cluster_name)
            .nodegroup_name(&group.name)
            .send()
            .await
        {
            Ok(found) => Ok(found.nodegroup().cloned()),
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(ProviderError::api("DescribeNodegroup", error)),
        }
    }

    async fn active(&self, group: &NodeGroup) -> Result<Applied, ProviderError> {
        self.0
            .eks
            .wait_until_nodegroup_active()
            .cluster_name(&group.cluster_name)
            .nodegroup_name(&group.name)
            .wait(self.0.wait_timeout)
            .await
            .map_err(|error| ProviderError::api("waiting for NodegroupActive", error))?;
        let arn = self
            .describe(group)
            .await?
            .and_then(|live| live.nodegroup_arn().map(str::to_string))
            .unwrap_or_default();
        let mut outputs = Map::new();
        outputs.insert("name".into(), json!(group.name));
        outputs.insert("arn".into(), json!(arn));
        Ok(Applied {
            id: format!("{}:{}", group.cluster_name, group.name),
            outputs,
        })
    }
}

#[async_trait]
impl AwsProvider for NodeGroupProvider {
    async fn read(
        &self,
        _address: &str,
        recorded: &Recorded,
    ) -> Result<Option<Read>, ProviderError> {
        let group: NodeGroup = recorded_spec(recorded)?;
        let Some(live) = self.describe(&group).await? else {
            return Ok(Some(Read::Gone));
        };
        let size = |size: Option<i32>| size.and_then(|size| u32::try_from(size).ok());
        let config = live.scaling_config();
        let taints: Vec<Taint> = live
            .taints()
            .iter()
            .map(|taint| Taint {
                key: taint.key().unwrap_or_default().to_string(),
                value: taint.value().unwrap_or_default().to_string(),
                effect: taint.effect().map(kubernetes_effect).unwrap_or_default(),
            })
            .collect();
        let labels: BTreeMap<String, String> = live
            .labels()
            .into_iter()
            .flatten()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let mut attributes = Map::new();
        attributes.insert("node_role_arn".into(), json!(live.node_role()));
        attributes.insert("subnet_ids".into(), json!(live.subnets()));
        attributes.insert("instance_types".into(), json!(live.instance_types()));
        attributes.insert(
            "capacity_type".into(),
            json!(live.capacity_type().map(|kind| kind.as_str())),
        );
        if let Some(disk) = live.disk_size() {
            attributes.insert("disk_size".into(), json!(disk));
        }
        attributes.insert(
            "scaling".into(),
            json!({
                "min": size(config.and_then(|c| c.min_size())),
                "max": size(config.and_then(|c| c.max_size())),
                // The cluster autoscaler owns the desired size: not drift.
                "desired": group.scaling.desired,
            }),
        );
        attributes.insert("labels".into(), json!(labels));
        attributes.insert("taints".into(), json!(taints));
        attributes.insert("tags".into(), json!(tag_map(live.tags())));
        Ok(Some(Read::Live(attributes)))
    }

    async fn find(
        &self,
        _address: &str,
        desired: &Value,
    ) -> Result<Option<Applied>, ProviderError> {
        let group: NodeGroup = spec(desired)?;
        let Some(existing) = self.describe(&group).await? else {
            return Ok(None);
        };
        check_owns(
            tag_pairs(existing.tags()),
            &group.tags,
            &format!("node group {}", group.name),
        )?;
        Ok(Some(self.active(&group).await?))
    }

    async fn create(
        &self,
        _address: &str,
        desired: &Value,
        token: &str,
    ) -> Result<Applied, ProviderError> {
        let group: NodeGroup = spec(desired)?;
        let taints = eks_taints(&group.taints)?;
        while_role_propagates(|| {
            self.0
                .eks
                .create_nodegroup()
                .set_client_request_token(idempotency(token))
                .cluster_name(&group.cluster_name)
                .nodegroup_name(&group.name)
                .node_role(&group.node_role_arn)
                .set_subnets(Some(group.subnet_ids.clone()))
                .set_instance_types(Some(group.instance_types.clone()))
                .capacity_type(CapacityTypes::from(group.capacity_type.as_str()))
                .disk_size(int(group.disk_size))
                .scaling_config(scaling(
                    group.scaling.min,
                    group.scaling.max,
                    group.scaling.desired,
                ))
                .set_labels(Some(hash_map(&group.labels)))
                .set_taints((!taints.is_empty()).then(|| taints.clone()))
                .set_tags(Some(hash_map(&group.tags)))
                .send()
        })
        .await
        .map_err(|e| ProviderError::api("CreateNodegroup", e))?;
        self.active(&group).await
    }

    async fn update(
        &self,
        _address: &str,
        previous: &Recorded,
        desired: &Value,
    ) -> Result<Applied, ProviderError> {
        let group: NodeGroup = spec(desired)?;
        let before: NodeGroup = recorded_spec(previous)?;
        let mut request = self
            .0
            .eks
            .update_nodegroup_config()
            .cluster_name(&group.cluster_name)
            .nodegroup_name(&group.name);
        let mut changed = false;
        if before.scaling != group.scaling {
            // The cluster autoscaler moves the desired size; keep its choice (within the new
            // bounds) unless the blueprint's own desired size changed.
            let desired_size = if before.scaling.desired == group.scaling.desired {
                self.describe(&group)
                    .await?
                    .and_then(|live| live.scaling_config().and_then(|s| s.desired_size()))
                    .and_then(|size| u32::try_from(size).ok())
                    .unwrap_or(group.scaling.desired)
                    .clamp(group.scaling.min, group.scaling.max)
            } else {
                group.scaling.desired
            };
            request =
                request.scaling_config(scaling(group.scaling.min, group.scaling.max, desired_size));
            changed = true;
        }
        if before.labels != group.labels {
            let (removed, set) = tag_changes(&before.labels, &group.labels);
            request = request.labels(
                UpdateLabelsPayload::builder()
                    .set_add_or_update_labels((!set.is_empty()).then(|| hash_map(&set)))
                    .set_remove_labels((!removed.is_empty()).then_some(removed))
                    .build(),
            );
            changed = true;
        }
        if before.taints != group.taints {
            let removed: Vec<Taint> = before
                .taints
                .iter()
                .filter(|taint| {
                    !group
                        .taints
                        .iter()
                        .any(|kept| kept.key == taint.key && kept.effect == taint.effect)
                })
                .cloned()
                .collect();
            request = request.taints(
                UpdateTaintsPayload::builder()
                    .set_add_or_update_taints(
                        Some(eks_taints(&group.taints)?).filter(|t| !t.is_empty()),
                    )
                    .set_remove_taints(Some(eks_taints(&removed)?).filter(|t| !t.is_empty()))
                    .build(),
            );
            changed = true;
        }
        if changed {
            let started = request
                .send()
                .await
                .map_err(|e| ProviderError::api("UpdateNodegroupConfig", e))?;
            follow_update(
                &self.0,
                &group.cluster_name,
                Some(&group.name),
                None,
                started.update().and_then(|update| update.id()),
            )
            .await?;
        }
        sync_tags(
            &self.0,
            &recorded_output(previous, "arn"),
            &before.tags,
            &group.tags,
        )
        .await?;
        self.active(&group).await
    }

    async fn delete(&self, address: &str, previous: &Recorded) -> Result<(), ProviderError> {
        let group: NodeGroup = recorded_spec(previous)?;
        if self
            .0
            .run
            .deleting
            .contains(&crate::resources::address::<Cluster>(CLUSTER))
        {
            // The controllers that delete the cluster's load balancers and volumes run on
            // these nodes: give them the chance before the nodes go.
            sweep::await_release(&self.0, address, &group.cluster_name).await?;
        }
        match self
            .0
            .eks
            .delete_nodegroup()
            .cluster_name(&group.cluster_name)
            .nodegroup_name(&group.name)
            .send()
            .await
        {
            Ok(_) => {}
            Err(error) if is_not_found(&error) => return Ok(()),
            Err(error) => return Err(ProviderError::api("DeleteNodegroup", error)),
        }
        self.0
            .eks
            .wait_until_nodegroup_deleted()
            .cluster_name(&group.cluster_name)
            .nodegroup_name(&group.name)
            .wait(self.0.wait_timeout)
            .await
            .map_err(|error| ProviderError::api("waiting for NodegroupDeleted", error))?;
        Ok(())
    }
}

struct AddonProvider(Context);

impl AddonProvider {
    async fn active(&self, addon: &Addon) -> Result<Applied, ProviderError> {
        let waited = self
            .0
            .eks
            .wait_until_addon_active()
            .cluster_name(&addon.cluster_name)
            .addon_name(&addon.name)
            .wait(self.0.wait_timeout)
            .await
            .map_err(|error| ProviderError::api("waiting for AddonActive", error))?;
        let described = waited
            .into_result()
            .map_err(|error| ProviderError::api("DescribeAddon", error))?;
        let arn = described
            .addon()
            .and_then(|live| live.addon_arn())
            .unwrap_or_default();
        let mut outputs = Map::new();
        outputs.insert("arn".into(), json!(arn));
        Ok(Applied {
            id: format!("{}:{}", addon.cluster_name, addon.name),
            outputs,
        })
    }
}

#[async_trait]
impl AwsProvider for AddonProvider {
    async fn read(
        &self,
        _address: &str,
        recorded: &Recorded,
    ) -> Result<Option<Read>, ProviderError> {
        let addon: Addon = recorded_spec(recorded)?;
        let Some(found) = none_if_missing(
            self.0
                .eks
                .describe_addon()
                .cluster_name(&addon.cluster_name)
                .addon_name(&addon.name)
                .send()
                .await,
            "DescribeAddon",
        )?
        else {
            return Ok(Some(Read::Gone));
        };
        let Some(live) = found.addon() else {
            return Ok(Some(Read::Gone));
        };
        let mut attributes = Map::new();
        // An empty version asks EKS for its default: whatever it chose is not drift.
        if !addon.version.is_empty() {
            attributes.insert("version".into(), json!(live.addon_version()));
        }
        attributes.insert("tags".into(), json!(tag_map(live.tags())));
        Ok(Some(Read::Live(attributes)))
    }

    async fn find(
        &self,
        _address: &str,
        desired: &Value,
    ) -> Result<Option<Applied>, ProviderError> {
        let addon: Addon = spec(desired)?;
        let found = match self
            .0
            .eks
            .describe_addon()
            .cluster_name(&addon.cluster_name)
            .addon_name(&addon.name)
            .send()
            .await
        {
            Ok(found) => found,
            Err(error) if is_not_found(&error) => return Ok(None),
            Err(error) => return Err(ProviderError::api("DescribeAddon", error)),
        };
        let Some(existing) = found.addon() else {
            return Ok(None);
        };
        check_owns(
            tag_pairs(existing.tags()),
            &addon.tags,
            &format!("add-on {} of {}", addon.name, addon.cluster_name),
        )?;
        Ok(Some(self.active(&addon).await?))
    }

    async fn create(
        &self,
        _address: &str,
        desired: &Value,
        token: &str,
    ) -> Result<Applied, ProviderError> {
        let addon: Addon = spec(desired)?;
        self.0
            .eks
            .create_addon()
            .set_client_request_token(idempotency(token))
            .cluster_name(&addon.cluster_name)
            .addon_name(&addon.name)
            .addon_version(&addon.version)
            // The add-on's own defaults win over settings someone changed by hand.
            .resolve_conflicts(ResolveConflicts::Overwrite)
            .set_tags(Some(hash_map(&addon.tags)))
            .send()
            .await
            .map_err(|e| ProviderError::api("CreateAddon", e))?;
        self.active(&addon).await
    }

    async fn update(
        &self,
        _address: &str,
        previous: &Recorded,
        desired: &Value,
    ) -> Result<Applied, ProviderError> {
        let addon: Addon = spec(desired)?;
        let before: Addon = recorded_spec(previous)?;
        if before.version != addon.version {
            let started = self
                .0
                .eks
                .update_addon()
                .cluster_name(&addon.cluster_name)
                .addon_name(&addon.name)
                .addon_version(&addon.version)
                .resolve_conflicts(ResolveConflicts::Overwrite)
                .send()
                .await
                .map_err(|e| ProviderError::api("UpdateAddon", e))?;
            follow_update(
                &self.0,
                &addon.cluster_name,
                None,
                Some(&addon.name),
                started.update().and_then(|update| update.id()),
            )
            .await?;
        }
        sync_tags(
            &self.0,
            &recorded_output(previous, "arn"),
            &before.tags,
            &addon.tags,
        )
        .await?;
        self.active(&addon).await
    }

    async fn delete(&self, _address: &str, previous: &Recorded) -> Result<(), ProviderError> {
        let addon: Addon = recorded_spec(previous)?;
        let deleted = self
            .0
            .eks
            .delete_addon()
            .cluster_name(&addon.cluster_name)
            .addon_name(&addon.name)
            .send()
            .await;
        let gone = matches!(&deleted, Err(error) if is_not_found(error));
        gone_is_fine(deleted, "DeleteAddon")?;
        if gone {
            return Ok(());
        }
        self.0
            .eks
            .wait_until_addon_deleted()
            .cluster_name(&addon.cluster_name)
            .addon_name(&addon.name)
            .wait(self.0.wait_timeout)
            .await
            .map_err(|error| ProviderError::api("waiting for AddonDeleted", error))?;
        Ok(())
    }
}
