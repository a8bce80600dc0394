//! S3 buckets: versioning, encryption, public access block, lifecycle, Object Lock, tags.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketLocationConstraint, BucketVersioningStatus,
    CreateBucketConfiguration, DefaultRetention, ExpirationStatus, LifecycleExpiration,
    LifecycleRuleFilter, NoncurrentVersionExpiration, ObjectIdentifier, ObjectLockConfiguration,
    ObjectLockEnabled, ObjectLockRetentionMode, ObjectLockRule, PublicAccessBlockConfiguration,
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
    ServerSideEncryptionRule, Tagging, TransitionStorageClass, VersioningConfiguration,
};
use serde_json::{Map, Value, json};

use super::{ADDRESS_TAG, AwsProvider, Context, Registration, owns};
use crate::blueprint::schema::{LifecycleRule, ObjectLock, ObjectLockMode, Transition};
use crate::providers::{Applied, ProviderError, Read, recorded_spec, spec};
use crate::resources::Spec as _;
use crate::resources::s3::Bucket;
use crate::state::{Intent, Recorded};

/// The s3 types, each with its provider.
pub const TYPES: &[Registration] = &[(Bucket::KIND, |context| {
    Box::new(BucketProvider(context.clone()))
})];

struct BucketProvider(Context);

fn applied(name: &str) -> Applied {
    let outputs: Map<String, Value> = [
        ("arn", json!(format!("arn:aws:s3:::{name}"))),
        ("bucket", json!(name)),
        ("domain_name", json!(format!("{name}.s3.amazonaws.com"))),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value))
    .collect();
    Applied {
        id: name.to_string(),
        outputs,
    }
}

fn build_error(what: &str, error: impl std::error::Error) -> ProviderError {
    ProviderError::Invalid(format!("{what}: {error}"))
}

/// How far the local clock may be ahead of S3's when a bucket's creation date is compared
/// with the time of an intent.
const CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(300);

impl BucketProvider {
    /// The bucket's tags: `None` when there is no such bucket, empty when it has none.
    async fn tags(&self, name: &str) -> Result<Option<Vec<(String, String)>>, ProviderError> {
        match self.0.s3.get_bucket_tagging().bucket(name).send().await {
            Ok(tags) => Ok(Some(
                tags.tag_set()
                    .iter()
                    .map(|tag| (tag.key().to_string(), tag.value().to_string()))
                    .collect(),
            )),
            Err(error) if matches!(error.code(), Some("NoSuchBucket") | Some("NotFound")) => {
                Ok(None)
            }
            Err(error) if error.code() == Some("NoSuchTagSet") => Ok(Some(Vec::new())),
            Err(error) => Err(ProviderError::api("GetBucketTagging", error)),
        }
    }

    /// Adopts a tagged bucket if its tags say it is this address's in this environment, and
    /// brings its configuration to the blueprint's.
    async fn adopt(
        &self,
        address: &str,
        bucket: &Bucket,
        tags: &[(String, String)],
    ) -> Result<Applied, ProviderError> {
        // The blueprint, environment and address must all be this one's: two environments
        // may give a bucket the same name, and neither may take the other's.
        let ours = owns(
            tags.iter()
                .map(|(key, value)| (key.as_str(), value.as_str())),
            &bucket.tags,
        );
        if !ours {
            return Err(ProviderError::NotOurs(format!(
                "bucket {} exists but was not created by trails for {address} in this \
                 environment (its trails:blueprint, trails:environment and {ADDRESS_TAG} tags \
                 say otherwise); choose another name or delete it",
                bucket.bucket
            )));
        }
        self.configure(bucket, None).await?;
        Ok(applied(&bucket.bucket))
    }

    /// When this account made the bucket (`ListBuckets` lists the caller's own only); `None`
    /// when it is not this account's.
    async fn created_at(&self, name: &str) -> Result<Option<std::time::SystemTime>, ProviderError> {
        let mut pages = self.0.s3.list_buckets().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|error| ProviderError::api("ListBuckets", error))?;
            if let Some(found) = page.buckets().iter().find(|b| b.name() == Some(name)) {
                return Ok(found
                    .creation_date()
                    .and_then(|date| std::time::SystemTime::try_from(*date).ok()));
            }
        }
        Ok(None)
    }
}

impl BucketProvider {
    /// Applies every setting of the bucket; each call is idempotent.
    async fn configure(
        &self,
        bucket: &Bucket,
        before: Option<&Bucket>,
    ) -> Result<(), ProviderError> {
        let s3 = &self.0.s3;
        let name = bucket.bucket.as_str();
        if before.map(|b| b.block_public_access) != Some(bucket.block_public_access) {
            let flag = bucket.block_public_access;
            s3.put_public_access_block()
                .bucket(name)
                .public_access_block_configuration(
                    PublicAccessBlockConfiguration::builder()
                        .block_public_acls(flag)
                        .ignore_public_acls(flag)
                        .block_public_policy(flag)
                        .restrict_public_buckets(flag)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| ProviderError::api("PutPublicAccessBlock", e))?;
        }
        if before.map(|b| b.encryption.as_str()) != Some(bucket.encryption.as_str()) {
            let algorithm = ServerSideEncryption::from(bucket.encryption.as_str());
            let default = ServerSideEncryptionByDefault::builder()
                .sse_algorithm(algorithm)
                .build()
                .map_err(|e| build_error("encryption", e))?;
            let configuration = ServerSideEncryptionConfiguration::builder()
                .rules(
                    ServerSideEncryptionRule::builder()
                        .apply_server_side_encryption_by_default(default)
                        .build(),
                )
                .build()
                .map_err(|e| build_error("encryption", e))?;
            s3.put_bucket_encryption()
                .bucket(name)
                .server_side_encryption_configuration(configuration)
                .send()
                .await
                .map_err(|e| ProviderError::api("PutBucketEncryption", e))?;
        }
        let versioning_before = before.map(|b| b.versioning);
        if versioning_before != Some(bucket.versioning) && (bucket.versioning || before.is_some()) {
            let status = if bucket.versioning {
                BucketVersioningStatus::Enabled
            } else {
                BucketVersioningStatus::Suspended
            };
            s3.put_bucket_versioning()
                .bucket(name)
                .versioning_configuration(VersioningConfiguration::builder().status(status).build())
                .send()
                .await
                .map_err(|e| ProviderError::api("PutBucketVersioning", e))?;
        }
        if before.map(|b| &b.object_lock) != Some(&bucket.object_lock)
            && let Some(lock) = &bucket.object_lock
        {
            let mode = match lock.mode {
                ObjectLockMode::Compliance => ObjectLockRetentionMode::Compliance,
                ObjectLockMode::Governance => ObjectLockRetentionMode::Governance,
            };
            let days = i32::try_from(lock.days).unwrap_or(i32::MAX);
            s3.put_object_lock_configuration()
                .bucket(name)
                .object_lock_configuration(
                    ObjectLockConfiguration::builder()
                        .object_lock_enabled(ObjectLockEnabled::Enabled)
                        .rule(
                            ObjectLockRule::builder()
                                .default_retention(
                                    DefaultRetention::builder().mode(mode).days(days).build(),
                                )
                                .build(),
                        )
                        .build(),
                )
                .send()
                .await
                .map_err(|e| ProviderError::api("PutObjectLockConfiguration", e))?;
        }
        if before.map(|b| &b.lifecycle_rules) != Some(&bucket.lifecycle_rules) {
            if bucket.lifecycle_rules.is_empty() {
                if before.is_some() {
                    s3.delete_bucket_lifecycle()
                        .bucket(name)
                        .send()
                        .await
                        .map_err(|e| ProviderError::api("DeleteBucketLifecycle", e))?;
                }
            } else {
                let mut rules = Vec::new();
                for rule in &bucket.lifecycle_rules {
                    let mut builder = aws_sdk_s3::types::LifecycleRule::builder()
                        .id(&rule.id)
                        .status(ExpirationStatus::Enabled)
                        .filter(LifecycleRuleFilter::builder().prefix(&rule.prefix).build());
                    if let Some(days) = rule.expire_days {
                        builder = builder.expiration(
                            LifecycleExpiration::builder()
                                .days(i32::try_from(days).unwrap_or(i32::MAX))
                                .build(),
                        );
                    }
                    if let Some(days) = rule.noncurrent_expire_days {
                        builder = builder.noncurrent_version_expiration(
                            NoncurrentVersionExpiration::builder()
                                .noncurrent_days(i32::try_from(days).unwrap_or(i32::MAX))
                                .build(),
                        );
                    }
                    for transition in &rule.transitions {
                        builder = builder.transitions(
                            aws_sdk_s3::types::Transition::builder()
                                .days(i32::try_from(transition.days).unwrap_or(i32::MAX))
                                .storage_class(TransitionStorageClass::from(
                                    transition.storage_class.as_str(),
                                ))
                                .build(),
                        );
                    }
                    rules.push(
                        builder
                            .build()
                            .map_err(|e| build_error("lifecycle rule", e))?,
                    );
                }
                s3.put_bucket_lifecycle_configuration()
                    .bucket(name)
                    .lifecycle_configuration(
                        BucketLifecycleConfiguration::builder()
                            .set_rules(Some(rules))
                            .build()
                            .map_err(|e| build_error("lifecycle", e))?,
                    )
                    .send()
                    .await
                    .map_err(|e| ProviderError::api("PutBucketLifecycleConfiguration", e))?;
            }
        }
        if before.map(|b| &b.tags) != Some(&bucket.tags) {
            let mut tag_set = Vec::new();
            for (key, value) in &bucket.tags {
                tag_set.push(
                    aws_sdk_s3::types::Tag::builder()
                        .key(key)
                        .value(value)
                        .build()
                        .map_err(|e| build_error("tag", e))?,
                );
            }
            s3.put_bucket_tagging()
                .bucket(name)
                .tagging(
                    Tagging::builder()
                        .set_tag_set(Some(tag_set))
                        .build()
                        .map_err(|e| build_error("tags", e))?,
                )
                .send()
                .await
                .map_err(|e| ProviderError::api("PutBucketTagging", e))?;
        }
        Ok(())
    }

    /// Deletes every object version and delete marker, page by page.
    async fn empty(&self, name: &str) -> Result<(), ProviderError> {
        // ListObjectVersions pages by key and version markers; the SDK has no paginator for it.
        let mut key_marker: Option<String> = None;
        let mut version_marker: Option<String> = None;
        loop {
            let page = match self
                .0
                .s3
                .list_object_versions()
                .bucket(name)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
            {
                Ok(page) => page,
                // Already gone: there is nothing to empty.
                Err(error) if error.code() == Some("NoSuchBucket") => return Ok(()),
                Err(error) => return Err(ProviderError::api("ListObjectVersions", error)),
            };
            let mut doomed = Vec::new();
            let versions = page
                .versions()
                .iter()
                .map(|v| (v.key(), v.version_id()))
                .chain(
                    page.delete_markers()
                        .iter()
                        .map(|m| (m.key(), m.version_id())),
                );
            for (key, version) in versions {
                let Some(key) = key else { continue };
                doomed.push(
                    ObjectIdentifier::builder()
                        .key(key)
                        .set_version_id(version.map(str::to_string))
                        .build()
                        .map_err(|e| build_error("object identifier", e))?,
                );
            }
            if !doomed.is_empty() {
                self.delete_versions(name, doomed).await?;
            }
            if !page.is_truncated().unwrap_or(false) {
                return Ok(());
            }
            key_marker = page.next_key_marker().map(str::to_string);
            version_marker = page.next_version_id_marker().map(str::to_string);
        }
    }

    async fn delete_versions(
        &self,
        name: &str,
        doomed: Vec<ObjectIdentifier>,
    ) -> Result<(), ProviderError> {
        let request = aws_sdk_s3::types::Delete::builder()
            .set_objects(Some(doomed))
            .quiet(true)
            .build()
            .map_err(|e| build_error("delete request", e))?;
        let response = self
            .0
            .s3
            .delete_objects()
            .bucket(name)
            .delete(request)
            // Governance-mode retention is what ephemeral environments may lift on destroy
            // (compliance mode cannot be bypassed and is refused for them at plan time); a
            // lasting environment's locked versions stay until their retention ends.
            .bypass_governance_retention(self.0.run.ephemeral)
            .send()
            .await
            .map_err(|e| ProviderError::api("DeleteObjects", e))?;
        if let Some(error) = response.errors().first() {
            return Err(ProviderError::Api {
                operation: "DeleteObjects".to_string(),
                message: format!(
                    "{} object version(s) could not be deleted, e.g. {}: {}",
                    response.errors().len(),
                    error.key().unwrap_or("?"),
                    error.message().unwrap_or("no reason given")
                ),
            });
        }
        Ok(())
    }
}

/// A lifecycle rule as the blueprint declares it, from what S3 returns.
fn declared_rule(rule: &aws_sdk_s3::types::LifecycleRule) -> LifecycleRule {
    let days = |days: Option<i32>| days.and_then(|days| u32::try_from(days).ok());
    let prefix = rule
        .filter()
        .and_then(|filter| filter.prefix())
        .unwrap_or_default();
    LifecycleRule {
        id: rule.id().unwrap_or_default().to_string(),
        prefix: prefix.to_string(),
        transitions: rule
            .transitions()
            .iter()
            .map(|transition| Transition {
                days: days(transition.days()).unwrap_or_default(),
                storage_class: transition
                    .storage_class()
                    .map(|class| class.as_str().to_string())
                    .unwrap_or_default(),
            })
            .collect(),
        expire_days: days(rule.expiration().and_then(|expiration| expiration.days())),
        noncurrent_expire_days: days(
            rule.noncurrent_version_expiration()
                .and_then(|expiration| expiration.noncurrent_days()),
        ),
    }
}

/// A Get* answer, or `missing` when S3 says the setting was never made (its error code).
fn or_missing<T, E>(
    result: Result<T, aws_sdk_s3::error::SdkError<E>>,
    missing: &str,
    operation: &str,
) -> Result<Option<T>, ProviderError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(answer) => Ok(Some(answer)),
        Err(error) if error.code() == Some(missing) => Ok(None),
        Err(error) => Err(ProviderError::api(operation, error)),
    }
}

impl BucketProvider {
    /// Every setting trails makes on a bucket, read with one Get per setting (S3 has no call
    /// that returns them together); `None` when the bucket is gone.
    async fn read_bucket(
        &self,
        name: &str,
        recorded: &Bucket,
    ) -> Result<Option<Map<String, Value>>, ProviderError> {
        let s3 = &self.0.s3;
        let tagging = match s3.get_bucket_tagging().bucket(name).send().await {
            Err(error) if matches!(error.code(), Some("NoSuchBucket") | Some("NotFound")) => {
                return Ok(None);
            }
            other => or_missing(other, "NoSuchTagSet", "GetBucketTagging")?,
        };
        let (versioning, encryption, public_access, lifecycle, lock) = futures_util::join!(
            s3.get_bucket_versioning().bucket(name).send(),
            s3.get_bucket_encryption().bucket(name).send(),
            s3.get_public_access_block().bucket(name).send(),
            s3.get_bucket_lifecycle_configuration().bucket(name).send(),
            async {
                // A bucket made without Object Lock can only have it later through support;
                // reading it for every bucket would double nothing but the calls.
                match recorded.object_lock {
                    Some(_) => Some(s3.get_object_lock_configuration().bucket(name).send().await),
                    None => None,
                }
            },
        );
        let versioning = versioning.map_err(|e| ProviderError::api("GetBucketVersioning", e))?;
        let encryption = or_missing(
            encryption,
            "ServerSideEncryptionConfigurationNotFoundError",
            "GetBucketEncryption",
        )?;
        let public_access = or_missing(
            public_access,
            "NoSuchPublicAccessBlockConfiguration",
            "GetPublicAccessBlock",
        )?;
        let lifecycle = or_missing(
            lifecycle,
            "NoSuchLifecycleConfiguration",
            "GetBucketLifecycleConfiguration",
        )?;
        let tags: BTreeMap<String, String> = tagging
            .iter()
            .flat_map(|tagging| tagging.tag_set())
            .map(|tag| (tag.key().to_string(), tag.value().to_string()))
            .collect();
        let algorithm = encryption
            .as_ref()
            .and_then(|answer| answer.server_side_encryption_configuration())
            .and_then(|configuration| configuration.rules().first())
            .and_then(|rule| rule.apply_server_side_encryption_by_default())
            .map(|default| default.sse_algorithm().as_str().to_string())
            .unwrap_or_default();
        let blocked = public_access
            .as_ref()
            .and_then(|answer| answer.public_access_block_configuration())
            .is_some_and(|block| {
                [
                    block.block_public_acls(),
                    block.ignore_public_acls(),
                    block.block_public_policy(),
                    block.restrict_public_buckets(),
                ]
                .iter()
                .all(|flag| *flag == Some(true))
            });
        let rules: Vec<LifecycleRule> = lifecycle
            .as_ref()
            .map(|answer| answer.rules().iter().map(declared_rule).collect())
            .unwrap_or_default();
        let mut live = Map::new();
        live.insert("bucket".into(), json!(name));
        live.insert(
            "versioning".into(),
            json!(versioning.status() == Some(&BucketVersioningStatus::Enabled)),
        );
        live.insert("encryption".into(), json!(algorithm));
        live.insert("block_public_access".into(), json!(blocked));
        live.insert("lifecycle_rules".into(), json!(rules));
        if let Some(lock) = lock {
            let lock = or_missing(
                lock,
                "ObjectLockConfigurationNotFoundError",
                "GetObjectLockConfiguration",
            )?;
            let retention = lock
                .as_ref()
                .and_then(|answer| answer.object_lock_configuration())
                .and_then(|configuration| configuration.rule())
                .and_then(|rule| rule.default_retention());
            let declared = retention.and_then(|retention| {
                let mode = match retention.mode()? {
                    ObjectLockRetentionMode::Compliance => ObjectLockMode::Compliance,
                    _ => ObjectLockMode::Governance,
                };
                Some(ObjectLock {
                    mode,
                    days: u32::try_from(retention.days()?).ok()?,
                })
            });
            live.insert("object_lock".into(), json!(declared));
        }
        live.insert("tags".into(), json!(tags));
        Ok(Some(live))
    }
}

#[async_trait]
impl AwsProvider for BucketProvider {
    async fn read(
        &self,
        _address: &str,
        recorded: &Recorded,
    ) -> Result<Option<Read>, ProviderError> {
        let bucket: Bucket = recorded_spec(recorded)?;
        Ok(Some(
            match self.read_bucket(&bucket.bucket, &bucket).await? {
                Some(live) => Read::Live(live),
                None => Read::Gone,
            },
        ))
    }

    async fn find(&self, address: &str, desired: &Value) -> Result<Option<Applied>, ProviderError> {
        let bucket: Bucket = spec(desired)?;
        let Some(tags) = self.tags(&bucket.bucket).await? else {
            return Ok(None);
        };
        if tags.is_empty() {
            return Err(ProviderError::NotOurs(format!(
                "bucket {} exists but was not created by trails for {address}; \
                 choose another name or delete it",
                bucket.bucket
            )));
        }
        self.adopt(address, &bucket, &tags).await.map(Some)
    }

    async fn find_intended(
        &self,
        address: &str,
        desired: &Value,
        intent: &Intent,
    ) -> Result<Option<Applied>, ProviderError> {
        let bucket: Bucket = spec(desired)?;
        let Some(tags) = self.tags(&bucket.bucket).await? else {
            return Ok(None);
        };
        if !tags.is_empty() {
            return self.adopt(address, &bucket, &tags).await.map(Some);
        }
        // Untagged: the run that recorded the intent was killed between CreateBucket and
        // the tagging, if the bucket is this account's and was made after the intent.
        let made = self.created_at(&bucket.bucket).await?;
        let after = match (made, intent.started()) {
            (Some(made), Some(started)) => made + CLOCK_SKEW >= started,
            _ => false,
        };
        if !after {
            return Err(ProviderError::Conflict(format!(
                "bucket {} exists without tags and was not made by the interrupted create of \
                 {address} (it is older than that run, or in another account); choose another \
                 name or delete it",
                bucket.bucket
            )));
        }
        self.configure(&bucket, None).await?;
        Ok(Some(applied(&bucket.bucket)))
    }

    async fn create(
        &self,
        _address: &str,
        desired: &Value,
        _token: &str,
    ) -> Result<Applied, ProviderError> {
        let bucket: Bucket = spec(desired)?;
        let mut request = self
            .0
            .s3
            .create_bucket()
            .bucket(&bucket.bucket)
            .object_lock_enabled_for_bucket(bucket.object_lock.is_some());
        // us-east-1 is the one region that must not be named as a location constraint.
        if self.0.region != "us-east-1" {
            request = request.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.0.region.as_str()))
                    .build(),
            );
        }
        request
            .send()
            .await
            .map_err(|e| ProviderError::api("CreateBucket", e))?;
        self.configure(&bucket, None).await?;
        Ok(applied(&bucket.bucket))
    }

    async fn update(
        &self,
        _address: &str,
        recorded: &Recorded,
        desired: &Value,
    ) -> Result<Applied, ProviderError> {
        let bucket: Bucket = spec(desired)?;
        let before: Bucket = spec(&Value::Object(recorded.attributes.clone()))?;
        self.configure(&bucket, Some(&before)).await?;
        Ok(applied(&bucket.bucket))
    }

    async fn delete(&self, _address: &str, recorded: &Recorded) -> Result<(), ProviderError> {
        let bucket: Bucket = spec(&Value::Object(recorded.attributes.clone()))?;
        if bucket.force_destroy {
            self.empty(&bucket.bucket).await?;
        }
        match self
            .0
            .s3
            .delete_bucket()
            .bucket(&bucket.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if error.code() == Some("NoSuchBucket") => Ok(()),
            Err(error) if error.code() == Some("BucketNotEmpty") => {
                Err(ProviderError::Conflict(format!(
                    "bucket {} is not empty and `force_destroy` is off; empty it or set \
                     `force_destroy: true` (ephemeral environments always empty their buckets)",
                    bucket.bucket
                )))
            }
            Err(error) => Err(ProviderError::api("DeleteBucket", error)),
        }
    }
}
