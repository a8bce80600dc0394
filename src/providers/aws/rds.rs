//! RDS PostgreSQL: subnet group, parameter group and the instance. The master password is
//! managed by RDS in Secrets Manager (`ManageMasterUserPassword`): trails never sees it, and
//! records only the secret's ARN.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_rds::client::Waiters;
use aws_sdk_rds::types::{ApplyMethod, Parameter, Tag};
use serde_json::{Map, Value, json};

use super::{
    ADDRESS_TAG, AwsProvider, Context, Registration, is_not_found, none_if_missing,
    recorded_output, recorded_spec,
};
use crate::providers::{Applied, ProviderError, Read, spec};
use crate::resources::Spec as _;
use crate::resources::rds::{DbInstance, DbParameterGroup, DbSubnetGroup};
use crate::state::Recorded;

/// The rds types, each with its provider.
pub const TYPES: &[Registration] = &[
    (DbSubnetGroup::KIND, |context| {
        Box::new(SubnetGroupProvider(context.clone()))
    }),
    (DbParameterGroup::KIND, |context| {
        Box::new(ParameterGroupProvider(context.clone()))
    }),
    (DbInstance::KIND, |context| {
        Box::new(InstanceProvider(context.clone()))
    }),
];

fn tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect()
}

fn named(name: &str, arn: Option<&str>) -> Applied {
    let mut outputs = Map::new();
    outputs.insert("name".into(), json!(name));
    outputs.insert("arn".into(), json!(arn.unwrap_or_default()));
    Applied {
        id: name.to_string(),
        outputs,
    }
}

fn owned_by(tag_list: &[Tag], address: &str) -> bool {
    tag_list
        .iter()
        .any(|tag| tag.key() == Some(ADDRESS_TAG) && tag.value() == Some(address))
}

/// Brings a resource's tags from `before` to `after`.
async fn sync_tags(
    context: &Context,
    arn: &str,
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Result<(), ProviderError> {
    if before == after || arn.is_empty() {
        return Ok(());
    }
    let removed: Vec<String> = before
        .keys()
        .filter(|k| !after.contains_key(*k))
        .cloned()
        .collect();
    if !removed.is_empty() {
        context
            .rds
            .remove_tags_from_resource()
            .resource_name(arn)
            .set_tag_keys(Some(removed))
            .send()
            .await
            .map_err(|e| ProviderError::api("RemoveTagsFromResource", e))?;
    }
    context
        .rds
        .add_tags_to_resource()
        .resource_name(arn)
        .set_tags(Some(tags(after)))
        .send()
        .await
        .map_err(|e| ProviderError::api("AddTagsToResource", e))?;
    Ok(())
}

/// A resource's tags, as RDS lists them for its ARN.
async fn read_tags(
    context: &Context,
    arn: &str,
) -> Result<BTreeMap<String, String>, ProviderError> {
    let listed = context
        .rds
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

/// Refuses to adopt something trails did not create at `address`.
async fn check_owned(
    context: &Context,
    arn: &str,
    address: &str,
    what: &str,
) -> Result<(), ProviderError> {
    let listed = context
        .rds
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .map_err(|e| ProviderError::api("ListTagsForResource", e))?;
    if owned_by(listed.tag_list(), address) {
        Ok(())
    } else {
        Err(ProviderError::Conflict(format!(
            "{what} exists but was not created by trails for {address}"
        )))
    }
}

struct SubnetGroupProvider(Context);

#[async_trait]
impl AwsProvider for SubnetGroupProvider {
    async fn read(
        &self,
        _address: &str,
        recorded: &Recorded,
    ) -> Result<Option<Read>, ProviderError> {
        let group: DbSubnetGroup = recorded_spec(recorded)?;
        let Some(found) = none_if_missing(
            self.0
                .rds
                .describe_db_subnet_groups()
                .db_subnet_group_name(&group.name)
                .send()
                .await,
            "DescribeDBSubnetGroups",
        )?
        else {
            return Ok(Some(Read::Gone));
        };
        let Some(live) = found.db_subnet_groups().first() else {
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
            json!(live.db_subnet_group_description()),
        );
        attributes.insert("subnet_ids".into(), json!(subnets));
        if let Some(arn) = live.db_subnet_group_arn() {
            attributes.insert("tags".into(), json!(read_tags(&self.0, arn).await?));
        }
        Ok(Some(Read::Live(attributes)))
    }

    async fn find(&self, address: &str, desired: &Value) -> Result<Option<Applied>, ProviderError> {
        let group: DbSubnetGroup = spec(desired)?;
        let found = match self
            .0
            .rds
            .describe_db_subnet_groups()
            .db_subnet_group_name(&group.name)
            .send()
            .await
        {
            Ok(found) => found,
            Err(error) if is_not_found(&error) => return Ok(None),
            Err(error) => return Err(ProviderError::api("DescribeDBSubnetGroups", error)),
        };
        let Some(existing) = found.db_subnet_groups().first() else {
            return Ok(None);
        };
        let arn = existing
            .db_subnet_group_arn()
            .unwrap_or_default()
            .to_string();
        check_owned(
            &self.0,
            &arn,
            address,
            &format!("DB subnet group {}", group.name),
        )
        .await?;
        Ok(Some(named(&group.name, Some(&arn))))
    }

    async fn create(
        &self,
        _address: &str,
        desired: &Value,
        _token: &str,
    ) -> Result<Applied, ProviderError> {
        let group: DbSubnetGroup = spec(desired)?;
        let created = self
            .0
            .rds
            .create_db_subnet_group()
            .db_subnet_group_name(&group.name)
            .db_subnet_group_description(&group.description)
            .set_subnet_ids(Some(group.subnet_ids.clone()))
            .set_tags(Some(tags(&group.tags)))
            .send()
            .await
            .map_err(|e| ProviderError::api("CreateDBSubnetGroup", e))?;
        let arn = created
            .db_subnet_group()
            .and_then(|g| g.db_subnet_group_arn());
        Ok(named(&group.name, arn))
    }

    async fn update(
        &self,
        _address: &str,
        previous: &Recorded,
        desired: &Value,
    ) -> Result<Applied, ProviderError> {
        let group: DbSubnetGroup = spec(desired)?;
        let before: DbSubnetGroup = recorded_spec(previous)?;
        if before.subnet_ids != group.subnet_ids || before.description != group.description {
            self.0
                .rds
                .modify_db_subnet_group()
                .db_subnet_group_name(&group.name)
                .db_subnet_group_description(&group.description)
                .set_subnet_ids(Some(group.subnet_ids.clone()))
                .send()
                .await
                .map_err(|e| ProviderError::api("ModifyDBSubnetGroup", e))?;
        }
        let arn = recorded_output(previous, "arn");
        sync_tags(&self.0, &arn, &before.tags, &group.tags).await?;
        Ok(named(&group.name, Some(&arn)))
    }

    async fn delete(&self, _address: &str, previous: &Recorded) -> Result<(), ProviderError> {
        let group: DbSubnetGroup = recorded_spec(previous)?;
        match self
            .0
            .rds
            .delete_db_subnet_group()
            .db_subnet_group_name(&group.name)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if is_not_found(&error) => Ok(()),
            Err(error) => Err(ProviderError::api("DeleteDBSubnetGroup", error)),
        }
    }
}

struct ParameterGroupProvider(Context);

impl ParameterGroupProvider {
    /// Sets changed parameters and resets removed ones, 20 per call as RDS requires.
    async fn sync(
        &self,
        name: &str,
        before: &BTreeMap<String, String>,
        after: &BTreeMap<String, String>,
    ) -> Result<(), ProviderError> {
        let changed: Vec<Parameter> = after
            .iter()
            .filter(|(key, value)| before.get(*key) != Some(*value))
            .map(|(key, value)| {
                Parameter::builder()
                    .parameter_name(key)
                    .parameter_value(value)
                    .apply_method(ApplyMethod::Immediate)
                    .build()
            })
            .collect();
        for chunk in changed.chunks(20) {
            self.0
                .rds
                .modify_db_parameter_group()
                .db_parameter_group_name(name)
                .set_parameters(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| ProviderError::api("ModifyDBParameterGroup", e))?;
        }
        let removed: Vec<Parameter> = before
            .keys()
            .filter(|key| !after.contains_key(*key))
            .map(|key| {
                Parameter::builder()
                    .parameter_name(key)
                    .apply_method(ApplyMethod::Immediate)
                    .build()
            })
            .collect();
        for chunk in removed.chunks(20) {
            self.0
                .rds
                .reset_db_parameter_group()
                .db_parameter_group_name(name)
                .set_parameters(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| ProviderError::api("ResetDBParameterGroup", e))?;
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
        let group: DbParameterGroup = recorded_spec(recorded)?;
        let Some(found) = none_if_missing(
            self.0
                .rds
                .describe_db_parameter_groups()
                .db_parameter_group_name(&group.name)
                .send()
                .await,
            "DescribeDBParameterGroups",
        )?
        else {
            return Ok(Some(Read::Gone));
        };
        let Some(live) = found.db_parameter_groups().first() else {
            return Ok(Some(Read::Gone));
        };
        // Only the values someone set (`user`): the family's defaults are not trails' to compare.
        let mut parameters = BTreeMap::new();
        let mut pages = self
            .0
            .rds
            .describe_db_parameters()
            .db_parameter_group_name(&group.name)
            .source("user")
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| ProviderError::api("DescribeDBParameters", e))?;
            for parameter in page.parameters() {
                if let (Some(name), Some(value)) =
                    (parameter.parameter_name(), parameter.parameter_value())
                {
                    parameters.insert(name.to_string(), value.to_string());
                }
            }
        }
        let mut attributes = Map::new();
        attributes.insert("family".into(), json!(live.db_parameter_group_family()));
        attributes.insert("description".into(), json!(live.description()));
        attributes.insert("parameters".into(), json!(parameters));
        if let Some(arn) = live.db_parameter_group_arn() {
            attributes.insert("tags".into(), json!(read_tags(&self.0, arn).await?));
        }
        Ok(Some(Read::Live(attributes)))
    }

    async fn find(&self, address: &str, desired: &Value) -> Result<Option<Applied>, ProviderError> {
        let group: DbParameterGroup = spec(desired)?;
        let found = match self
            .0
            .rds
            .describe_db_parameter_groups()
            .db_parameter_group_name(&group.name)
            .send()
            .await
        {
            Ok(found) => found,
            Err(error) if is_not_found(&error) => return Ok(None),
            Err(error) => return Err(ProviderError::api("DescribeDBParameterGroups", error)),
        };
        let Some(existing) = found.db_parameter_groups().first() else {
            return Ok(None);
        };
        let arn = existing
            .db_parameter_group_arn()
            .unwrap_or_default()
            .to_string();
        check_owned(
            &self.0,
            &arn,
            address,
            &format!("DB parameter group {}", group.name),
        )
        .await?;
        self.sync(&group.name, &BTreeMap::new(), &group.parameters)
            .await?;
        Ok(Some(named(&group.name, Some(&arn))))
    }

    async fn create(
        &self,
        _address: &str,
        desired: &Value,
        _token: &str,
    ) -> Result<Applied, ProviderError> {
        let group: DbParameterGroup = spec(desired)?;
        let created = self
            .0
            .rds
            .create_db_parameter_group()
            .db_parameter_group_name(&group.name)
            .db_parameter_group_family(&group.family)
            .description(&group.description)
            .set_tags(Some(tags(&group.tags)))
            .send()
            .await
            .map_err(|e| ProviderError::api("CreateDBParameterGroup", e))?;
        self.sync(&group.name, &BTreeMap::new(), &group.parameters)
            .await?;
        let arn = created
            .db_parameter_group()
            .and_then(|g| g.db_parameter_group_arn());
        Ok(named(&group.name, arn))
    }

    async fn update(
        &self,
        _address: &str,
        previous: &Recorded,
        desired: &Value,
    ) -> Result<Applied, ProviderError> {
        let group: DbParameterGroup = spec(desired)?;
        let before: DbParameterGroup = recorded_spec(previous)?;
        self.sync(&group.name, &before.parameters, &group.parameters)
            .await?;
        let arn = recorded_output(previous, "arn");
        sync_tags(&self.0, &arn, &before.tags, &group.tags).await?;
        Ok(named(&group.name, Some(&arn)))
    }

    async fn delete(&self, _address: &str, previous: &Recorded) -> Result<(), ProviderError> {
        let group: DbParameterGroup = recorded_spec(previous)?;
        match self
            .0
            .rds
            .delete_db_parameter_group()
            .db_parameter_group_name(&group.name)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if is_not_found(&error) => Ok(()),
            Err(error) => Err(ProviderError::api("DeleteDBParameterGroup", error)),
        }
    }
}

struct InstanceProvider(Context);

impl InstanceProvider {
    async fn describe(
        &self,
        identifier: &str,
    ) -> Result<Option<aws_sdk_rds::types::DbInstance>, ProviderError> {
        match self
            .0
            .rds
            .describe_db_instances()
            .db_instance_identifier(identifier)
            .send()
            .await
        {
            Ok(found) => Ok(found.db_instances().first().cloned()),
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(ProviderError::api("DescribeDBInstances", error)),
        }
    }

    /// Waits until the instance is available and returns what others may reference.
    async fn available(&self, instance: &DbInstance) -> Result<Applied, ProviderError> {
        self.0
            .rds
            .wait_until_db_instance_available()
            .db_instance_identifier(&instance.identifier)
            .wait(self.0.wait_timeout)
            .await
            .map_err(|error| ProviderError::api("waiting for DBInstanceAvailable", error))?;
        let live =
            self.describe(&instance.identifier)
                .await?
                .ok_or_else(|| ProviderError::Api {
                    operation: "DescribeDBInstances".into(),
                    message: format!("{} vanished after becoming available", instance.identifier),
                })?;
        let address = live
            .endpoint()
            .and_then(|e| e.address())
            .unwrap_or_default();
        let port = live.endpoint().and_then(|e| e.port()).unwrap_or(5432);
        let mut outputs = Map::new();
        outputs.insert("endpoint".into(), json!(format!("{address}:{port}")));
        outputs.insert("address".into(), json!(address));
        outputs.insert("port".into(), json!(port.to_string()));
        outputs.insert(
            "arn".into(),
            json!(live.db_instance_arn().unwrap_or_default()),
        );
        outputs.insert("username".into(), json!(instance.master_username));
        outputs.insert(
            "master_user_secret_arn".into(),
            json!(
                live.master_user_secret()
                    .and_then(|s| s.secret_arn())
                    .unwrap_or_default()
            ),
        );
        Ok(Applied {
            id: instance.identifier.clone(),
            outputs,
        })
    }
}

fn storage(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

#[async_trait]
impl AwsProvider for InstanceProvider {
    async fn read(
        &self,
        _address: &str,
        recorded: &Recorded,
    ) -> Result<Option<Read>, ProviderError> {
        let instance: DbInstance = recorded_spec(recorded)?;
        let Some(live) = self.describe(&instance.identifier).await? else {
            return Ok(Some(Read::Gone));
        };
        if live.db_instance_status() == Some("deleting") {
            return Ok(Some(Read::Gone));
        }
        let size = |value: Option<i32>| value.and_then(|value| u32::try_from(value).ok());
        let tags: BTreeMap<String, String> = live
            .tag_list()
            .iter()
            .filter_map(|tag| Some((tag.key()?.to_string(), tag.value()?.to_string())))
            .filter(|(key, _)| !key.starts_with("aws:"))
            .collect();
        let security_groups: Vec<&str> = live
            .vpc_security_groups()
            .iter()
            .filter_map(|group| group.vpc_security_group_id())
            .collect();
        let parameter_group = live
            .db_parameter_groups()
            .iter()
            .find_map(|group| group.db_parameter_group_name());
        // RDS upgrades minor versions itself: `16` declared is `16.4` live, and not drift.
        let version = live.engine_version().unwrap_or_default();
        let version = if version.starts_with(&format!("{}.", instance.engine_version)) {
            instance.engine_version.as_str()
        } else {
            version
        };
        let mut attributes = Map::new();
        attributes.insert("engine".into(), json!(live.engine()));
        attributes.insert("engine_version".into(), json!(version));
        attributes.insert("instance_class".into(), json!(live.db_instance_class()));
        attributes.insert(
            "allocated_storage".into(),
            json!(size(live.allocated_storage())),
        );
        attributes.insert(
            "max_allocated_storage".into(),
            json!(size(live.max_allocated_storage())),
        );
        attributes.insert("storage_type".into(), json!(live.storage_type()));
        attributes.insert("storage_encrypted".into(), json!(live.storage_encrypted()));
        attributes.insert("multi_az".into(), json!(live.multi_az()));
        attributes.insert(
            "db_subnet_group_name".into(),
            json!(
                live.db_subnet_group()
                    .and_then(|group| group.db_subnet_group_name())
            ),
        );
        attributes.insert("parameter_group_name".into(), json!(parameter_group));
        attributes.insert("vpc_security_group_ids".into(), json!(security_groups));
        attributes.insert(
            "backup_retention_period".into(),
            json!(size(live.backup_retention_period())),
        );
        attributes.insert(
            "preferred_backup_window".into(),
            json!(live.preferred_backup_window()),
        );
        attributes.insert(
            "deletion_protection".into(),
            json!(live.deletion_protection()),
        );
        attributes.insert(
            "publicly_accessible".into(),
            json!(live.publicly_accessible()),
        );
        attributes.insert("master_username".into(), json!(live.master_username()));
        attributes.insert("tags".into(), json!(tags));
        Ok(Some(Read::Live(attributes)))
    }

    async fn find(&self, address: &str, desired: &Value) -> Result<Option<Applied>, ProviderError> {
        let instance: DbInstance = spec(desired)?;
        let Some(existing) = self.describe(&instance.identifier).await? else {
            return Ok(None);
        };
        if !owned_by(existing.tag_list(), address) {
            return Err(ProviderError::Conflict(format!(
                "DB instance {} exists but was not created by trails for {address}",
                instance.identifier
            )));
        }
        Ok(Some(self.available(&instance).await?))
    }

    async fn create(
        &self,
        _address: &str,
        desired: &Value,
        _token: &str,
    ) -> Result<Applied, ProviderError> {
        let instance: DbInstance = spec(desired)?;
        self.0
            .rds
            .create_db_instance()
            .db_instance_identifier(&instance.identifier)
            .engine(&instance.engine)
            .engine_version(&instance.engine_version)
            .db_instance_class(&instance.instance_class)
            .allocated_storage(storage(instance.allocated_storage))
            .set_max_allocated_storage(instance.max_allocated_storage.map(storage))
            .storage_type(&instance.storage_type)
            .storage_encrypted(instance.storage_encrypted)
            .multi_az(instance.multi_az)
            .db_subnet_group_name(&instance.db_subnet_group_name)
            .db_parameter_group_name(&instance.parameter_group_name)
            .set_vpc_security_group_ids(Some(instance.vpc_security_group_ids.clone()))
            .backup_retention_period(storage(instance.backup_retention_period))
            .preferred_backup_window(&instance.preferred_backup_window)
            .deletion_protection(instance.deletion_protection)
            .publicly_accessible(instance.publicly_accessible)
            .master_username(&instance.master_username)
            // RDS generates the password and keeps it in Secrets Manager.
            .manage_master_user_password(true)
            .set_tags(Some(tags(&instance.tags)))
            .send()
            .await
            .map_err(|e| ProviderError::api("CreateDBInstance", e))?;
        self.available(&instance).await
    }

    async fn update(
        &self,
        _address: &str,
        previous: &Recorded,
        desired: &Value,
    ) -> Result<Applied, ProviderError> {
        let instance: DbInstance = spec(desired)?;
        let before: DbInstance = recorded_spec(previous)?;
        let mut without_tags = before.clone();
        without_tags.tags = instance.tags.clone();
        if without_tags != instance {
            self.0
                .rds
                .modify_db_instance()
                .db_instance_identifier(&instance.identifier)
                .apply_immediately(true)
                .engine_version(&instance.engine_version)
                .allow_major_version_upgrade(
                    instance.engine_version.split('.').next()
                        != before.engine_version.split('.').next(),
                )
                .db_instance_class(&instance.instance_class)
                .allocated_storage(storage(instance.allocated_storage))
                .set_max_allocated_storage(instance.max_allocated_storage.map(storage))
                .multi_az(instance.multi_az)
                .db_parameter_group_name(&instance.parameter_group_name)
                .set_vpc_security_group_ids(Some(instance.vpc_security_group_ids.clone()))
                .backup_retention_period(storage(instance.backup_retention_period))
                .preferred_backup_window(&instance.preferred_backup_window)
                .deletion_protection(instance.deletion_protection)
                .publicly_accessible(instance.publicly_accessible)
                .send()
                .await
                .map_err(|e| ProviderError::api("ModifyDBInstance", e))?;
        }
        sync_tags(
            &self.0,
            &recorded_output(previous, "arn"),
            &before.tags,
            &instance.tags,
        )
        .await?;
        self.available(&instance).await
    }

    async fn delete(&self, _address: &str, previous: &Recorded) -> Result<(), ProviderError> {
        let instance: DbInstance = recorded_spec(previous)?;
        if instance.deletion_protection {
            return Err(ProviderError::Conflict(format!(
                "{} has deletion protection; set `deletion_protection: false`, apply, then destroy",
                instance.identifier
            )));
        }
        let mut request = self
            .0
            .rds
            .delete_db_instance()
            .db_instance_identifier(&instance.identifier)
            .skip_final_snapshot(instance.skip_final_snapshot);
        if !instance.skip_final_snapshot {
            let stamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            request = request
                .final_db_snapshot_identifier(format!("{}-final-{stamp}", instance.identifier));
        }
        match request.send().await {
            Ok(_) => {}
            Err(error) if is_not_found(&error) => return Ok(()),
            Err(error) => return Err(ProviderError::api("DeleteDBInstance", error)),
        }
        self.0
            .rds
            .wait_until_db_instance_deleted()
            .db_instance_identifier(&instance.identifier)
            .wait(self.0.wait_timeout)
            .await
            .map_err(|error| ProviderError::api("waiting for DBInstanceDeleted", error))?;
        Ok(())
    }
}
