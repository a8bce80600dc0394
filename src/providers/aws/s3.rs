//! S3 buckets: versioning, encryption, public access block, lifecycle, Object Lock, tags.

use std::collections::HashMap;

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

use super::{ADDRESS_TAG, Context};
use crate::blueprint::schema::ObjectLockMode;
use crate::providers::{Applied, Provider, ProviderError, spec};
use crate::resources::s3::Bucket;
use crate::state::Recorded;

/// Registers the bucket provider.
pub fn register(context: &Context, by_kind: &mut HashMap<&'static str, Box<dyn Provider>>) {
    by_kind.insert("aws.s3_bucket", Box::new(BucketProvider(context.clone())));
}

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
            let page = self
                .0
                .s3
                .list_object_versions()
                .bucket(name)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|e| ProviderError::api("ListObjectVersions", e))?;
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
            // Governance-mode retention is what ephemeral environments may lift on destroy;
            // compliance mode cannot be bypassed and is refused for them at plan time.
            .bypass_governance_retention(true)
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

#[async_trait]
impl Provider for BucketProvider {
    async fn find(&self, address: &str, desired: &Value) -> Result<Option<Applied>, ProviderError> {
        let bucket: Bucket = spec(desired)?;
        let tagging = self
            .0
            .s3
            .get_bucket_tagging()
            .bucket(&bucket.bucket)
            .send()
            .await;
        let tags = match tagging {
            Ok(tags) => tags,
            Err(error) if matches!(error.code(), Some("NoSuchBucket") | Some("NotFound")) => {
                return Ok(None);
            }
            Err(error) if error.code() == Some("NoSuchTagSet") => {
                return Err(ProviderError::Conflict(format!(
                    "bucket {} exists but was not created by trails for {address}; \
                     choose another name or delete it",
                    bucket.bucket
                )));
            }
            Err(error) => return Err(ProviderError::api("GetBucketTagging", error)),
        };
        let ours = tags
            .tag_set()
            .iter()
            .any(|tag| tag.key() == ADDRESS_TAG && tag.value() == address);
        if !ours {
            return Err(ProviderError::Conflict(format!(
                "bucket {} exists but belongs to something else (its {ADDRESS_TAG} tag is not {address})",
                bucket.bucket
            )));
        }
        self.configure(&bucket, None).await?;
        Ok(Some(applied(&bucket.bucket)))
    }

    async fn create(&self, _address: &str, desired: &Value) -> Result<Applied, ProviderError> {
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
            match self.empty(&bucket.bucket).await {
                Err(ProviderError::Api { message, .. }) if message.contains("NoSuchBucket") => {
                    return Ok(());
                }
                other => other?,
            }
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
