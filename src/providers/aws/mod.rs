//! AWS providers, one file per resource family, on the official Rust SDK. Credentials,
//! retries with backoff and jitter, waiters and pagination are the SDK's own.

pub mod network;
pub mod rds;
pub mod s3;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;

use super::Provider;

/// Resource types the AWS providers can apply so far.
pub const SUPPORTED: &[&str] = &[
    "aws.vpc",
    "aws.subnet",
    "aws.internet_gateway",
    "aws.eip",
    "aws.nat_gateway",
    "aws.route_table",
    "aws.security_group",
    "aws.network_acl",
    "aws.flow_log",
    "aws.s3_bucket",
    "aws.db_subnet_group",
    "aws.db_parameter_group",
    "aws.db_instance",
];

/// Clients and settings shared by every AWS provider.
#[derive(Clone, Debug)]
pub struct Context {
    /// EC2 (network).
    pub ec2: aws_sdk_ec2::Client,
    /// S3.
    pub s3: aws_sdk_s3::Client,
    /// RDS.
    pub rds: aws_sdk_rds::Client,
    /// The blueprint's region.
    pub region: String,
    /// Longest wait for an asynchronous resource (NAT gateway, cluster, database).
    pub wait_timeout: Duration,
}

impl Context {
    /// Loads the standard credential chain and endpoint settings (`AWS_PROFILE`,
    /// `AWS_ENDPOINT_URL`, ...) for the blueprint's region.
    pub async fn load(region: &str, wait_timeout: Duration) -> Self {
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_string()))
            .retry_config(RetryConfig::standard().with_max_attempts(6))
            .load()
            .await;
        let mut s3 = aws_sdk_s3::config::Builder::from(&shared);
        if shared.endpoint_url().is_some() {
            // Emulators and gateways serve buckets by path, not by host name.
            s3 = s3.force_path_style(true);
        }
        Self {
            ec2: aws_sdk_ec2::Client::new(&shared),
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
            rds: aws_sdk_rds::Client::new(&shared),
            region: region.to_string(),
            wait_timeout,
        }
    }
}

/// Registers every AWS provider.
pub fn register(context: &Context, by_kind: &mut HashMap<&'static str, Box<dyn Provider>>) {
    network::register(context, by_kind);
    rds::register(context, by_kind);
    s3::register(context, by_kind);
}

/// The tag trails finds its resources by.
pub const ADDRESS_TAG: &str = "trails:address";

/// Tags as EC2 wants them.
pub fn ec2_tags(tags: &BTreeMap<String, String>) -> Vec<aws_sdk_ec2::types::Tag> {
    tags.iter()
        .map(|(key, value)| {
            aws_sdk_ec2::types::Tag::builder()
                .key(key)
                .value(value)
                .build()
        })
        .collect()
}

/// A tag specification for an EC2 create call.
pub fn tag_specification(
    resource_type: aws_sdk_ec2::types::ResourceType,
    tags: &BTreeMap<String, String>,
) -> aws_sdk_ec2::types::TagSpecification {
    aws_sdk_ec2::types::TagSpecification::builder()
        .resource_type(resource_type)
        .set_tags(Some(ec2_tags(tags)))
        .build()
}

/// Filters that find what one environment created at one address.
pub fn ownership_filters(tags: &BTreeMap<String, String>) -> Vec<aws_sdk_ec2::types::Filter> {
    ["trails:blueprint", "trails:environment", ADDRESS_TAG]
        .iter()
        .filter_map(|key| {
            tags.get(*key).map(|value| {
                aws_sdk_ec2::types::Filter::builder()
                    .name(format!("tag:{key}"))
                    .values(value)
                    .build()
            })
        })
        .collect()
}
