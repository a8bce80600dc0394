//! ElastiCache Redis: subnet group, parameter group and the replication group. With TLS on,
//! the group's AUTH token is generated here, handed to ElastiCache and kept in Secrets Manager
//! (`trails/GROUP/auth-token`); the state records only the secret's ARN, never the token.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_elasticache::client::Waiters;
use aws_sdk_elasticache::types::{ParameterNameValue, Tag};
use serde_json::{Map, Value, json};

use super::generated::Generated;
use super::{
    AwsProvider, Context, Registration, check_owns, gone_is_fine, is_not_found, none_if_missing,
    recorded_output, recorded_spec, tag_changes,
};
use crate::providers::{Applied, ProviderError, Read, spec};
use crate::resources::Spec as _;
use crate::resources::cache::{ParameterGroup, ReplicationGroup, SubnetGroup};
use crate::state::Recorded;

/// The cache types, each with its provider.
pub const TYPES: &[Registration] = &[
    (SubnetGroup::KIND, |context| {
        Box::new(SubnetGroupProvider(context.clone()))
    }),
    (ParameterGroup::KIND, |context| {
        Box::new(ParameterGroupProvider(context.clone()))
    }),
    (ReplicationGroup::KIND, |context| {
        Box::new(ReplicationGroupProvider(context.clone()))
    }),
];

fn tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect()
}

fn named(name: &str, arn: &str) -> Applied {
    let mut outputs = Map::new();
    outputs.insert("name".into(), json!(name));
    outputs.insert("arn".into(), json!(arn));
    Applied {
        id: name.to_string(),
        outputs,
    }
}

/// The tags ElastiCache lists for `arn`.
async fn read_tags(
    context: &Context,
    arn: &str,
) -> Result<BTreeMap<String, String>, ProviderError> {
    let listed = context
        .elasticache
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .map_err(|e| ProviderError::api("ListTagsForResource", e))?;
    Ok(listed
        .tag_list()
        .iter()
        .filter_map(|tag| Some((tag.key()?.to_string(), tag.value()?.to_string())))
        .filter(|(key, _)| !key.starts_with("aws:"))
        .collect())
}

/// Refuses to adopt what trails did not create, by the tags ElastiCache lists for `arn`.
async fn check_owned(
    context: &Context,
    arn: &str,
    desired: &BTreeMap<String, String>,
    what: &str,
) -> Result<(), ProviderError> {
    let listed = context
        .elasticache
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .map_err(|e| ProviderError::api("ListTagsForResource", e))?;
    check_owns(
        listed
            .tag_list()
            .iter()
            .filter_map(|tag| tag.key().zip(tag.value())),
        desired,
        what,
    )
}

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
            .elasticache
            .remove_tags_from_resource()
            .resource_name(arn)
            .set_tag_keys(Some(removed))
            .send()
            .await
            .map_err(|e| ProviderError::api("RemoveTagsFromResource", e))?;
    }
    if !set.is_empty() {
        context
            .elasticache
            .add_tags_to_resource()
            .resource_name(arn)
            .set_tags(Some(tags(&set)))
            .send()
            .await
            .map_err(|e| ProviderError::api("AddTagsToResource", e))?;
    }
    Ok(())
}

struct SubnetGroupProvider(Context);

#[async_trait]
impl AwsProvider for SubnetGroupProvider {
    async fn read(
        &self,
        _address: &str,
        recorded: &Recorded,
    ) -> Result<Option<Read>, ProviderError> {
        let group: SubnetGroup = recorded_spec(recorded)?;
        let Some(found) = none_if_missing(
            self.0
                .elasticache
                .describe_cache_subnet_groups()
                .cache_subnet_group_name(&group.name)
                .send()
                .await,
            "DescribeCacheSubnetGroups",
        )?
        else {
            return Ok(Some(Read::Gone));
        };
        let Some(live) = found.cache_subnet_groups().first() else {
            return Ok(Some(Read::Gone));
        };
        let subnets: Vec<&str> = live
            .subnets()
            .iter()
            .filter_map(|subnet| subnet.subnet_identifier())
            .collect();
        let mut attributes = Map::new();
        attributes.insert(
            "description".into(),
            json!(live.cache_subnet_group_description()),
        );
        attributes.insert("subnet_ids".into(), json!(subnets));
        if let Some(arn) = live.arn() {
            attributes.insert("tags".into(), json!(read_tags(&self.0, arn).await?));
        }
        Ok(Some(Read::Live(attributes)))
    }

    async fn find(
        &self,
        _address: &str,
        desired: &Value,
    ) -> Result<Option<Applied>, ProviderError> {
        let group: SubnetGroup = spec(desired)?;
        let found = match self
            .0
            .elasticache
            .describe_cache_subnet_groups()
            .cache_subnet_group_name(&group.name)
            .send()
            .await
        {
            Ok(found) => found,
            Err(error) if is_not_found(&error) => return Ok(None),
            Err(error) => return Err(ProviderError::api("DescribeCacheSubnetGroups", error)),
        };
        let Some(arn) = found
            .cache_subnet_groups()
            .first()
            .map(|existing| existing.arn().unwrap_or_default().to_string())
        else {
            return Ok(None);
        };
        let what = format!("cache subnet group {}", group.name);
        check_owned(&self.0, &arn, &group.tags, &what).await?;
        Ok(Some(named(&group.name, &arn)))
    }

    async fn create(
        &self,
        _address: &str,
        desired: &Value,
        _token: &str,
    ) -> Result<Applied, ProviderError> {
        let group: SubnetGroup = spec(desired)?;
        let created = self
            .0
            .elasticache
            .create_cache_subnet_group()
            .cache_subnet_group_name(&group.name)
            .cache_subnet_group_description(&group.description)
            .set_subnet_ids(Some(group.subnet_ids.clone()))
            .set_tags(Some(tags(&group.tags)))
            .send()
            .await
            .map_err(|e| ProviderError::api("CreateCacheSubnetGroup", e))?;
        let arn = created
            .cache_subnet_group()
            .and_then(|created| created.arn())
            .unwrap_or_default();
        Ok(named(&group.name, arn))
    }

    async fn update(
        &self,
        _address: &str,
        previous: &Recorded,
        desired: &Value,
    ) -> Result<Applied, ProviderError> {
        let group: SubnetGroup = spec(desired)?;
        let before: SubnetGroup = recorded_spec(previous)?;
        if before.subnet_ids != group.subnet_ids || before.description != group.description {
            self.0
                .elasticache
                .modify_cache_subnet_group()
                .cache_subnet_group_name(&group.name)
                .cache_subnet_group_description(&group.description)
                .set_subnet_ids(Some(group.subnet_ids.clone()))
                .send()
                .await
                .map_err(|e| ProviderError::api("ModifyCacheSubnetGroup", e))?;
        }
        let arn = recorded_output(previous, "arn");
        sync_tags(&self.0, &arn, &before.tags, &group.tags).await?;
        Ok(named(&group.name, &arn))
    }

    async fn delete(&self, _address: &str, previous: &Recorded) -> Result<(), ProviderError> {
        let group: SubnetGroup = recorded_spec(previous)?;
        gone_is_fine(
            self.0
                .elasticache
                .delete_cache_subnet_group()
                .cache_subnet_group_name(&group.name)
                .send()
                .await,
            "DeleteCacheSubnetGroup",
        )
    }
}

struct ParameterGroupProvider(Context);

impl ParameterGroupProvider {
    /// Sets changed parameters and resets removed ones, 20 per call as ElastiCache requires.
    async fn sync(
        &self,
        name: &str,
        before: &BTreeMap<String, String>,
        after: &BTreeMap<String, String>,
    ) -> Result<(), ProviderError> {
        let (removed, changed) = tag_changes(before, after);
        let changed: Vec<ParameterNameValue> = changed
            .iter()
            .map(|(key, value)| {
                ParameterNameValue::builder()
                    .parameter_name(key)
                    .parameter_value(value)
                    .build()
            })
            .collect();
        for chunk in changed.chunks(20) {
            self.0
                .elasticache
                .modify_cache_parameter_group()
                .cache_parameter_group_name(name)
                .set_parameter_name_values(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| ProviderError::api("ModifyCacheParameterGroup", e))?;
        }
        let removed: Vec<ParameterNameValue> = removed
            .iter()
            .map(|key| ParameterNameValue::builder().parameter_name(key).build())
            .collect();
        for chunk in removed.chunks(20) {
            self.0
                .elasticache
                .reset_cache_parameter_group()
                .cache_parameter_group_name(name)
                .reset_all_parameters(false)
                .set_parameter_name_values(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| ProviderError::api("ResetCacheParameterGroup", e))?;
        }
        Ok(())
    }
}

#[async_trait]
impl AwsProvider for ParameterGroupProvider {
    async fn read(
        &self,
        _address: &str,
        recorded: &Recorded,
    ) -> Result<Option<Read>, ProviderError> {
        let group: ParameterGroup = recorded_spec(recorded)?;
        let Some(found) = none_if_missing(
            self.0
                .elasticache
                .describe_cache_parameter_groups()
                .cache_parameter_group_name(&group.name)
                .send()
                .await,
            "DescribeCacheParameterGroups",
        )?
        else {
            return Ok(Some(Read::Gone));
        };
        let Some(live) = found.cache_parameter_groups().first() else {
            return Ok(Some(Read::Gone));
        };
        // Only the values someone set (`user`): the family's defaults are not trails' to compare.
        let mut parameters = BTreeMap::new();
        let mut pages = self
            .0
            .elasticache
            .describe_cache_parameters()
            .cache_parameter_group_name(&group.name)
            .source("user")
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| ProviderError::api("DescribeCacheParameters", e))?;
            for parameter in page.parameters() {
                if let (Some(name), Some(value)) =
                    (parameter.parameter_name(), parameter.parameter_value())
                {
                    parameters.insert(name.to_string(), value.to_string());
                }
            }
        }
        let mut attributes = Map::new();
        attributes.insert("family".into(), json!(live.cache_parameter_group_family()));
        attributes.insert("description".into(), json!(live.description()));
        attributes.insert("parameters".into(), json!(parameters));
        if let Some(arn) = live.arn() {
            attributes.insert("tags".into(), json!(read_tags(&self.0, arn).await?));
        }
        Ok(Some(Read::Live(attributes)))
    }

    async fn find(
        &self,
        _address: &str,
        desired: &Value,
    ) -> Result<Option<Applied>, ProviderError> {
        let group: ParameterGroup = spec(desired)?;
        let found = match self
            .0
            .elasticache
            .describe_cache_parameter_groups()
            .cache_parameter_group_name(&group.name)
            .send()
            .await
        {
            Ok(found) => found,
            Err(error) if is_not_found(&error) => return Ok(None),
            Err(error) => return Err(ProviderError::api("DescribeCacheParameterGroups", error)),
        };
        let Some(arn) = found
            .cache_parameter_groups()
            .first()
            .map(|existing| existing.arn().unwrap_or_default().to_string())
        else {
            return Ok(None);
        };
        let what = format!("cache parameter group {}", group.name);
        check_owned(&self.0, &arn, &group.tags, &what).await?;
        // The create may have stopped before its parameters were set.
        self.sync(&group.name, &BTreeMap::new(), &group.parameters)
            .await?;
        Ok(Some(named(&group.name, &arn)))
    }

    async fn create(
        &self,
        _address: &str,
        desired: &Value,
        _token: &str,
    ) -> Result<Applied, ProviderError> {
        let group: ParameterGroup = spec(desired)?;
        let created = self
            .0
            .elasticache
            .create_cache_parameter_group()
            .cache_parameter_group_name(&group.name)
            .cache_parameter_group_family(&group.family)
            .description(&group.description)
            .set_tags(Some(tags(&group.tags)))
            .send()
            .await
            .map_err(|e| ProviderError::api("CreateCacheParameterGroup", e))?;
        self.sync(&group.name, &BTreeMap::new(), &group.parameters)
            .await?;
        let arn = created
            .cache_parameter_group()
            .and_then(|created| created.arn())
            .unwrap_or_default();
        Ok(named(&group.name, arn))
    }

    async fn update(
        &self,
        _address: &str,
        previous: &Recorded,
        desired: &Value,
    ) -> Result<Applied, ProviderError> {
        let group: ParameterGroup = spec(desired)?;
        let before: ParameterGroup = recorded_spec(previous)?;
        self.sync(&group.name, &before.parameters, &group.parameters)
            .await?;
        let arn = recorded_output(previous, "arn");
        sync_tags(&self.0, &arn, &before.tags, &group.tags).await?;
        Ok(named(&group.name, &arn))
    }

    async fn delete(&self, _address: &str, previous: &Recorded) -> Result<(), ProviderError> {
        let group: ParameterGroup = recorded_spec(previous)?;
        gone_is_fine(
            self.0
                .elasticache
                .delete_cache_parameter_group()
                .cache_parameter_group_name(&group.name)
                .send()
                .await,
            "DeleteCacheParameterGroup",
        )
    }
}

struct ReplicationGroupProvider(Context);

/// Where a group's AUTH token is kept.
pub fn secret_name(group_id: &str) -> String {
    format!("trails/{group_id}/auth-token")
}

/// The secret that keeps a group's AUTH token (64 hex characters: within ElastiCache's 16 to
/// 128 printable characters and free of those it forbids).
fn token_secret(group: &ReplicationGroup) -> Generated<'_> {
    Generated {
        name: secret_name(&group.id),
        description: format!("AUTH token of the Redis replication group {}", group.id),
        tags: &group.tags,
    }
}

impl ReplicationGroupProvider {
    /// The group's token and the ARN of the secret that keeps it: an existing secret of this
    /// group (an apply interrupted after storing it) is reused, otherwise one is created.
    async fn token(&self, group: &ReplicationGroup) -> Result<(String, String), ProviderError> {
        token_secret(group).ensure(&self.0.secrets).await
    }

    async fn secret_arn(&self, group: &ReplicationGroup) -> Result<String, ProviderError> {
        if !group.transit_encryption {
            return Ok(String::new());
        }
        match self
            .0
            .secrets
            .describe_secret()
            .secret_id(secret_name(&group.id))
            .send()
            .await
        {
            Ok(existing) => Ok(existing.arn().unwrap_or_default().to_string()),
            Err(error) if is_not_found(&error) => Ok(String::new()),
            Err(error) => Err(ProviderError::api("DescribeSecret", error)),
        }
    }

    async fn describe(
        &self,
        id: &str,
    ) -> Result<Option<aws_sdk_elasticache::types::ReplicationGroup>, ProviderError> {
        match self
            .0
            .elasticache
            .describe_replication_groups()
            .replication_group_id(id)
            .send()
            .await
        {
            Ok(found) => Ok(found.replication_groups().first().cloned()),
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(ProviderError::api("DescribeReplicationGroups", error)),
        }
    }

    /// Waits until the group is available and returns its endpoints.
    async fn available(
        &self,
        group: &ReplicationGroup,
        secret_arn: String,
    ) -> Result<Applied, ProviderError> {
        self.0
            .elasticache
            .wait_until_replication_group_available()
            .replication_group_id(&group.id)
            .wait(self.0.wait_timeout)
            .await
            .map_err(|error| ProviderError::api("waiting for ReplicationGroupAvailable", error))?;
        let live = self
            .describe(&group.id)
            .await?
            .ok_or_else(|| ProviderError::Api {
                operation: "DescribeReplicationGroups".into(),
                message: format!("{} vanished after becoming available", group.id),
            })?;
        let configuration = live.configuration_endpoint();
        let primary = live
            .node_groups()
            .first()
            .and_then(|node_group| node_group.primary_endpoint());
        let port = configuration
            .or(primary)
            .and_then(|endpoint| endpoint.port())
            .unwrap_or(6379);
        let mut outputs = Map::new();
        outputs.insert(
            "configuration_endpoint".into(),
            json!(
                configuration
                    .and_then(|endpoint| endpoint.address())
                    .unwrap_or_default()
            ),
        );
        outputs.insert(
            "primary_endpoint".into(),
            json!(
                primary
                    .and_then(|endpoint| endpoint.address())
                    .unwrap_or_default()
            ),
        );
        outputs.insert("port".into(), json!(port.to_string()));
        outputs.insert("arn".into(), json!(live.arn().unwrap_or_default()));
        outputs.insert("auth_token_secret_arn".into(), json!(secret_arn));
        Ok(Applied {
            id: group.id.clone(),
            outputs,
        })
    }
}

fn int(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

#[async_trait]
impl AwsProvider for ReplicationGroupProvider {
    async fn read(
        &self,
        _address: &str,
        recorded: &Recorded,
    ) -> Result<Option<Read>, ProviderError> {
        let group: ReplicationGroup = recorded_spec(recorded)?;
        let Some(live) = self.describe(&group.id).await? else {
            return Ok(Some(Read::Gone));
        };
        if live.status() == Some("deleting") {
            return Ok(Some(Read::Gone));
        }
        let enabled = |status: Option<&str>| matches!(status, Some("enabled" | "enabling"));
        let mut attributes = Map::new();
        attributes.insert("description".into(), json!(live.description()));
        attributes.insert("node_type".into(), json!(live.cache_node_type()));
        attributes.insert(
            "automatic_failover".into(),
            json!(enabled(
                live.automatic_failover().map(|status| status.as_str())
            )),
        );
        attributes.insert(
            "multi_az".into(),
            json!(enabled(live.multi_az().map(|status| status.as_str()))),
        );
        attributes.insert(
            "transit_encryption".into(),
            json!(live.transit_encryption_enabled().unwrap_or(false)),
        );
        attributes.insert(
            "at_rest_encryption".into(),
            json!(live.at_rest_encryption_enabled().unwrap_or(false)),
        );
        if let Some(arn) = live.arn() {
            attributes.insert("tags".into(), json!(read_tags(&self.0, arn).await?));
        }
        Ok(Some(Read::Live(attributes)))
    }

    async fn find(
        &self,
        _address: &str,
        desired: &Value,
    ) -> Result<Option<Applied>, ProviderError> {
        let group: ReplicationGroup = spec(desired)?;
        let Some(existing) = self.describe(&group.id).await? else {
            return Ok(None);
        };
        let what = format!("replication group {}", group.id);
        check_owned(
            &self.0,
            existing.arn().unwrap_or_default(),
            &group.tags,
            &what,
        )
        .await?;
        let secret_arn = self.secret_arn(&group).await?;
        Ok(Some(self.available(&group, secret_arn).await?))
    }

    async fn discard_interrupted(
        &self,
        _address: &str,
        desired: &Value,
    ) -> Result<(), ProviderError> {
        // The create stores the token before it creates the group: a run killed in between
        // leaves the secret alone. Deleted only if it carries this group's ownership tags.
        let group: ReplicationGroup = spec(desired)?;
        token_secret(&group).delete(&self.0.secrets).await
    }

    async fn create(
        &self,
        _address: &str,
        desired: &Value,
        _token: &str,
    ) -> Result<Applied, ProviderError> {
        let group: ReplicationGroup = spec(desired)?;
        let (token, secret_arn) = if group.transit_encryption {
            let (token, arn) = self.token(&group).await?;
            (Some(token), arn)
        } else {
            // ElastiCache accepts an AUTH token only together with TLS.
            (None, String::new())
        };
        let mut request = self
            .0
            .elasticache
            .create_replication_group()
            .replication_group_id(&group.id)
            .replication_group_description(&group.description)
            .engine("redis")
            .engine_version(&group.engine_version)
            .cache_node_type(&group.node_type)
            .automatic_failover_enabled(group.automatic_failover)
            .multi_az_enabled(group.multi_az)
            .transit_encryption_enabled(group.transit_encryption)
            .at_rest_encryption_enabled(group.at_rest_encryption)
            .set_auth_token(token)
            .cache_subnet_group_name(&group.subnet_group_name)
            .cache_parameter_group_name(&group.parameter_group_name)
            .set_security_group_ids(Some(group.security_group_ids.clone()))
            .set_tags(Some(tags(&group.tags)));
        request = if group.cluster_mode {
            request
                .num_node_groups(int(group.num_node_groups))
                .replicas_per_node_group(int(group.replicas_per_node_group))
        } else {
            request.num_cache_clusters(int(group.replicas_per_node_group.saturating_add(1)))
        };
        request
            .send()
            .await
            .map_err(|e| ProviderError::api("CreateReplicationGroup", e))?;
        self.available(&group, secret_arn).await
    }

    async fn update(
        &self,
        _address: &str,
        previous: &Recorded,
        desired: &Value,
    ) -> Result<Applied, ProviderError> {
        let group: ReplicationGroup = spec(desired)?;
        let before: ReplicationGroup = recorded_spec(previous)?;
        let mut request = self
            .0
            .elasticache
            .modify_replication_group()
            .replication_group_id(&group.id)
            .apply_immediately(true);
        // ElastiCache refuses a modification that changes nothing: send only what changed.
        let mut changed = false;
        if before.description != group.description {
            request = request.replication_group_description(&group.description);
            changed = true;
        }
        if before.engine_version != group.engine_version {
            request = request.engine_version(&group.engine_version);
            changed = true;
        }
        if before.node_type != group.node_type {
            request = request.cache_node_type(&group.node_type);
            changed = true;
        }
        if before.automatic_failover != group.automatic_failover {
            request = request.automatic_failover_enabled(group.automatic_failover);
            changed = true;
        }
        if before.multi_az != group.multi_az {
            request = request.multi_az_enabled(group.multi_az);
            changed = true;
        }
        if before.parameter_group_name != group.parameter_group_name {
            request = request.cache_parameter_group_name(&group.parameter_group_name);
            changed = true;
        }
        if before.security_group_ids != group.security_group_ids {
            request = request.set_security_group_ids(Some(group.security_group_ids.clone()));
            changed = true;
        }
        if changed {
            request
                .send()
                .await
                .map_err(|e| ProviderError::api("ModifyReplicationGroup", e))?;
        }
        sync_tags(
            &self.0,
            &recorded_output(previous, "arn"),
            &before.tags,
            &group.tags,
        )
        .await?;
        self.available(&group, recorded_output(previous, "auth_token_secret_arn"))
            .await
    }

    async fn delete(&self, _address: &str, previous: &Recorded) -> Result<(), ProviderError> {
        let group: ReplicationGroup = recorded_spec(previous)?;
        let deleted = self
            .0
            .elasticache
            .delete_replication_group()
            .replication_group_id(&group.id)
            .send()
            .await;
        let gone = matches!(&deleted, Err(error) if is_not_found(error));
        gone_is_fine(deleted, "DeleteReplicationGroup")?;
        if !gone {
            self.0
                .elasticache
                .wait_until_replication_group_deleted()
                .replication_group_id(&group.id)
                .wait(self.0.wait_timeout)
                .await
                .map_err(|error| {
                    ProviderError::api("waiting for ReplicationGroupDeleted", error)
                })?;
        }
        // The token is worth nothing once its group is gone.
        token_secret(&group).delete(&self.0.secrets).await
    }
}
