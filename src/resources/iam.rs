//! IAM roles with least-privilege policies, the cluster's OIDC provider and IRSA roles.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::eks::{CLUSTER, Cluster};
use super::s3::Bucket;
use super::{Kind, Spec, address, aws_tags, output};
use crate::blueprint::FieldPath;
use crate::blueprint::naming::prefix;
use crate::blueprint::schema::BucketAccess;
use crate::graph::Builder;

/// Name of the cluster's OIDC provider in addresses.
pub const OIDC: &str = "eks";

/// An IAM role with its trust policy and permissions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IamRole {
    /// Role name.
    pub name: String,
    /// Who may assume the role.
    pub assume_role_policy: Value,
    /// AWS-managed policies attached.
    pub managed_policy_arns: Vec<String>,
    /// Inline policies by name.
    pub inline_policies: BTreeMap<String, Value>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Spec for IamRole {
    const KIND: &'static Kind = &Kind {
        name: "aws.iam_role",
        summary: "IAM role",
        replace_on: &[("name", "an IAM role cannot be renamed")],
        replace_check: None,
        sensitive: &[],
        outputs: &["arn", "name"],
        sensitive_outputs: &[],
    };
}

/// The cluster's OIDC identity provider, which lets service accounts assume roles.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OidcProvider {
    /// The cluster's issuer URL.
    pub url: String,
    /// Audiences.
    pub client_ids: Vec<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Spec for OidcProvider {
    const KIND: &'static Kind = &Kind {
        name: "aws.iam_oidc_provider",
        summary: "IAM OIDC provider",
        replace_on: &[("url", "an OIDC provider's URL cannot be changed")],
        replace_check: None,
        sensitive: &[],
        outputs: &["arn", "issuer"],
        sensitive_outputs: &[],
    };
}

/// A trust policy that lets an AWS service assume a role.
pub fn assume_role_policy(service: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": service },
            "Action": "sts:AssumeRole"
        }]
    })
}

/// Expands the OIDC provider and one role per `iam.service_accounts` entry.
pub fn expand(builder: &mut Builder<'_>) {
    let loaded = builder.loaded;
    if loaded.document.eks.is_none() {
        return;
    }
    let name_prefix = prefix(loaded);
    builder.add(
        OIDC,
        &OidcProvider {
            url: output::<Cluster>(CLUSTER, "oidc_issuer"),
            client_ids: vec!["sts.amazonaws.com".to_string()],
            tags: aws_tags(loaded, &address::<OidcProvider>(OIDC), &name_prefix),
        },
        FieldPath::of("eks"),
    );
    let Some(iam) = &loaded.document.iam else {
        return;
    };
    for (name, account) in &iam.service_accounts {
        let role_name = format!("irsa-{name}");
        let full_name = format!("{name_prefix}-{role_name}");
        let issuer = output::<OidcProvider>(OIDC, "issuer");
        let trust = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": { "Federated": output::<OidcProvider>(OIDC, "arn") },
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": { "StringEquals": {
                    format!("{issuer}:sub"): format!(
                        "system:serviceaccount:{}:{}",
                        account.namespace, account.service_account
                    ),
                    format!("{issuer}:aud"): "sts.amazonaws.com"
                }}
            }]
        });
        let mut statements = Vec::new();
        for (bucket, access) in &account.buckets {
            let arn = output::<Bucket>(bucket, "arn");
            let object_actions = match access {
                BucketAccess::Read => vec!["s3:GetObject"],
                BucketAccess::ReadWrite => {
                    vec!["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
                }
            };
            statements.push(json!({
                "Effect": "Allow",
                "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
                "Resource": arn.clone()
            }));
            statements.push(json!({
                "Effect": "Allow",
                "Action": object_actions,
                "Resource": format!("{arn}/*")
            }));
        }
        let mut inline_policies = BTreeMap::new();
        if !statements.is_empty() {
            inline_policies.insert(
                "buckets".to_string(),
                json!({ "Version": "2012-10-17", "Statement": statements }),
            );
        }
        builder.add(
            &role_name,
            &IamRole {
                name: full_name.clone(),
                assume_role_policy: trust,
                managed_policy_arns: Vec::new(),
                inline_policies,
                tags: aws_tags(loaded, &address::<IamRole>(&role_name), &full_name),
            },
            FieldPath::of("iam.service_accounts").key(name.clone()),
        );
    }
}
