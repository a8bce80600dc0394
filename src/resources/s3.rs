//! S3 buckets with versioning, encryption, public access block, lifecycle and Object Lock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Kind, Spec, address, aws_tags};
use crate::blueprint::FieldPath;
use crate::blueprint::naming::bucket_name;
use crate::blueprint::schema::{LifecycleRule, ObjectLock};
use crate::graph::Builder;

/// A bucket and its settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Bucket {
    /// The AWS bucket name.
    pub bucket: String,
    /// Keep every version.
    pub versioning: bool,
    /// `AES256` or `aws:kms`.
    pub encryption: String,
    /// Block all public access.
    pub block_public_access: bool,
    /// Lifecycle rules.
    pub lifecycle_rules: Vec<LifecycleRule>,
    /// Object Lock default retention, when enabled.
    pub object_lock: Option<ObjectLock>,
    /// Empty the bucket (all versions) before deleting it.
    pub force_destroy: bool,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Spec for Bucket {
    const KIND: &'static Kind = &Kind {
        name: "aws.s3_bucket",
        summary: "S3 bucket",
        replace_on: &[("bucket", "a bucket cannot be renamed")],
        replace_check: Some(object_lock_cannot_be_removed),
        sensitive: &[],
        outputs: &["arn", "bucket", "domain_name"],
        sensitive_outputs: &[],
    };
}

fn object_lock_cannot_be_removed(
    attribute: &str,
    before: &serde_json::Value,
    after: &serde_json::Value,
) -> Option<String> {
    (attribute == "object_lock" && !before.is_null() && after.is_null())
        .then(|| "Object Lock cannot be turned off on an existing bucket".to_string())
}

/// Expands `buckets`.
pub fn expand(builder: &mut Builder<'_>) {
    let loaded = builder.loaded;
    let ephemeral = loaded.settings.ephemeral;
    for (short, bucket) in &loaded.document.buckets {
        let name = bucket_name(loaded, short, bucket.name.as_deref());
        builder.add(
            short,
            &Bucket {
                bucket: name.clone(),
                versioning: bucket.versioning,
                encryption: bucket.encryption.clone(),
                block_public_access: bucket.block_public_access,
                lifecycle_rules: bucket.lifecycle.clone(),
                object_lock: bucket.object_lock.clone(),
                // Ephemeral environments must leave nothing behind.
                force_destroy: bucket.force_destroy || ephemeral,
                tags: aws_tags(loaded, &address::<Bucket>(short), &name),
            },
            FieldPath::of("buckets").key(short.clone()),
        );
    }
}
