//! AWS providers, one file per resource family, on the official Rust SDK. Credentials,
//! retries with backoff and jitter, waiters and pagination are the SDK's own.

pub mod cache;
pub mod described;
pub mod eks;
pub mod generated;
pub mod iam;
pub mod network;
pub mod rds;
pub mod s3;
pub mod sweep;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use serde_json::Value;

pub use super::recorded_spec;
use serde_json::Map;

use super::{Applied, Provider, ProviderError, Read};
use crate::resources::Kind;
use crate::state::{Intent, Recorded};

/// A resource type and how to make its provider from the shared clients.
pub type Registration = (&'static Kind, fn(&Context) -> Box<dyn AwsProvider>);

/// What every AWS provider implements: [`Provider`]'s methods, with `read` required, so a new
/// AWS type cannot be registered without the read that `diff`, `plan --refresh` and `verify`
/// are built on.
#[async_trait::async_trait]
pub trait AwsProvider: Send + Sync {
    /// See [`Provider::read`]; `Some` for every AWS type.
    async fn read(&self, address: &str, recorded: &Recorded)
    -> Result<Option<Read>, ProviderError>;
    /// See [`Provider::canonical`].
    fn canonical(&self, attributes: Map<String, Value>) -> Map<String, Value> {
        attributes
    }
    /// See [`Provider::find`].
    async fn find(&self, address: &str, desired: &Value) -> Result<Option<Applied>, ProviderError>;
    /// See [`Provider::find_intended`].
    async fn find_intended(
        &self,
        address: &str,
        desired: &Value,
        _intent: &Intent,
    ) -> Result<Option<Applied>, ProviderError> {
        self.find(address, desired).await
    }
    /// See [`Provider::discard_interrupted`].
    async fn discard_interrupted(
        &self,
        _address: &str,
        _desired: &Value,
    ) -> Result<(), ProviderError> {
        Ok(())
    }
    /// See [`Provider::create`].
    async fn create(
        &self,
        address: &str,
        desired: &Value,
        token: &str,
    ) -> Result<Applied, ProviderError>;
    /// See [`Provider::update`].
    async fn update(
        &self,
        address: &str,
        recorded: &Recorded,
        desired: &Value,
    ) -> Result<Applied, ProviderError>;
    /// See [`Provider::delete`].
    async fn delete(&self, address: &str, recorded: &Recorded) -> Result<(), ProviderError>;
}

/// An AWS provider as the engine sees it.
struct Aws(Box<dyn AwsProvider>);

#[async_trait::async_trait]
impl Provider for Aws {
    async fn read(
        &self,
        address: &str,
        recorded: &Recorded,
    ) -> Result<Option<Read>, ProviderError> {
        self.0.read(address, recorded).await
    }

    fn canonical(&self, attributes: Map<String, Value>) -> Map<String, Value> {
        self.0.canonical(attributes)
    }

    async fn find(&self, address: &str, desired: &Value) -> Result<Option<Applied>, ProviderError> {
        self.0.find(address, desired).await
    }

    async fn find_intended(
        &self,
        address: &str,
        desired: &Value,
        intent: &Intent,
    ) -> Result<Option<Applied>, ProviderError> {
        self.0.find_intended(address, desired, intent).await
    }

    async fn discard_interrupted(
        &self,
        address: &str,
        desired: &Value,
    ) -> Result<(), ProviderError> {
        self.0.discard_interrupted(address, desired).await
    }

    async fn create(
        &self,
        address: &str,
        desired: &Value,
        token: &str,
    ) -> Result<Applied, ProviderError> {
        self.0.create(address, desired, token).await
    }

    async fn update(
        &self,
        address: &str,
        recorded: &Recorded,
        desired: &Value,
    ) -> Result<Applied, ProviderError> {
        self.0.update(address, recorded, desired).await
    }

    async fn delete(&self, address: &str, recorded: &Recorded) -> Result<(), ProviderError> {
        self.0.delete(address, recorded).await
    }
}

/// Every AWS type trails applies: one line per type in its family's `TYPES`, and the type's
/// name is written once, in its `Kind`.
const FAMILIES: &[&[Registration]] = &[
    network::TYPES,
    rds::TYPES,
    s3::TYPES,
    iam::TYPES,
    eks::TYPES,
    cache::TYPES,
];

/// Resource types the AWS providers can apply.
pub fn supported() -> impl Iterator<Item = &'static str> {
    FAMILIES
        .iter()
        .flat_map(|family| family.iter())
        .map(|(kind, _)| kind.name)
}

/// Clients and settings shared by every AWS provider.
#[derive(Clone, Debug)]
pub struct Context {
    /// EC2 (network).
    pub ec2: aws_sdk_ec2::Client,
    /// S3.
    pub s3: aws_sdk_s3::Client,
    /// RDS.
    pub rds: aws_sdk_rds::Client,
    /// IAM.
    pub iam: aws_sdk_iam::Client,
    /// EKS.
    pub eks: aws_sdk_eks::Client,
    /// ElastiCache.
    pub elasticache: aws_sdk_elasticache::Client,
    /// Secrets Manager, where generated Redis auth tokens are kept.
    pub secrets: aws_sdk_secretsmanager::Client,
    /// Elastic Load Balancing v2: only to find and remove load balancers that controllers in
    /// the cluster created (trails creates none itself).
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    /// Classic Elastic Load Balancing: the load balancers Kubernetes' in-tree cloud provider
    /// makes for a `Service` of type `LoadBalancer` when no controller handles it.
    pub elb_classic: aws_sdk_elasticloadbalancing::Client,
    /// The credential chain, for signing requests no SDK client makes (EKS tokens).
    pub credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
    /// The blueprint's region.
    pub region: String,
    /// Longest wait for an asynchronous resource (NAT gateway, cluster, database).
    pub wait_timeout: Duration,
    /// What this run does as a whole: which addresses it deletes, whether it destroys the
    /// environment, and where providers tell the user what they did beyond the change itself.
    pub run: Run,
    /// Listings shared by the reads of one refresh (one Describe per EC2 type).
    pub snapshots: Arc<described::Snapshots>,
}

/// Receives `(address, message)` notes.
pub type Notes = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// What the run a provider call belongs to does as a whole.
#[derive(Clone, Default)]
pub struct Run {
    /// Addresses the run deletes.
    pub deleting: Arc<BTreeSet<String>>,
    /// `trails destroy`: the whole environment goes, so whatever carries its tags goes too.
    pub destroying: bool,
    /// The environment is ephemeral: volumes its cluster leaves are deleted, not kept.
    pub ephemeral: bool,
    /// Where notes go (the run's progress display); none outside apply and destroy.
    pub notes: Option<Notes>,
}

impl Run {
    /// Tells the user something about `address` beyond its change.
    pub fn note(&self, address: &str, message: &str) {
        if let Some(notes) = &self.notes {
            notes(address, message);
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("deleting", &self.deleting)
            .field("destroying", &self.destroying)
            .field("ephemeral", &self.ephemeral)
            .finish_non_exhaustive()
    }
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
            iam: aws_sdk_iam::Client::new(&shared),
            eks: aws_sdk_eks::Client::new(&shared),
            elasticache: aws_sdk_elasticache::Client::new(&shared),
            secrets: aws_sdk_secretsmanager::Client::new(&shared),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&shared),
            elb_classic: aws_sdk_elasticloadbalancing::Client::new(&shared),
            credentials: shared.credentials_provider(),
            region: region.to_string(),
            wait_timeout,
            run: Run::default(),
            snapshots: Arc::default(),
        }
    }

    /// One check before any change runs: the credentials resolve. When they do not, the error
    /// names the chain that was tried, instead of every resource failing on its own.
    pub async fn check_credentials(&self) -> Result<(), String> {
        use aws_credential_types::provider::ProvideCredentials as _;
        const CHAIN: &str = "trails tried, in order: AWS_ACCESS_KEY_ID / \
            AWS_SECRET_ACCESS_KEY, the profile (AWS_PROFILE, ~/.aws/config and credentials, SSO), \
            web identity (AWS_WEB_IDENTITY_TOKEN_FILE), the ECS container endpoint and the EC2 \
            instance metadata service";
        let Some(provider) = &self.credentials else {
            return Err(format!(
                "no AWS credentials provider is configured; {CHAIN}"
            ));
        };
        provider
            .provide_credentials()
            .await
            .map(|_| ())
            .map_err(|error| {
                format!(
                    "no AWS credentials: {}; {CHAIN}",
                    crate::error_chain(&error)
                )
            })
    }

    /// The same clients for one apply or destroy run.
    pub fn for_run(self, run: Run) -> Self {
        Self { run, ..self }
    }
}

/// Registers every AWS provider.
pub fn register(context: &Context, by_kind: &mut HashMap<&'static str, Box<dyn Provider>>) {
    for (kind, make) in FAMILIES.iter().flat_map(|family| family.iter()) {
        by_kind.insert(kind.name, Box::new(Aws(make(context))));
    }
}

/// True when the service says the thing does not exist, in any service's dialect: EC2's
/// `InvalidVpcID.NotFound`, RDS's `DBInstanceNotFound`, ElastiCache's `...NotFoundFault`,
/// EKS's and Secrets Manager's `ResourceNotFoundException`, IAM's `NoSuchEntity`.
pub fn is_not_found<E: ProvideErrorMetadata>(error: &E) -> bool {
    error.code().is_some_and(|code| {
        code.ends_with("NotFound")
            || code.ends_with("NotFoundFault")
            || code.ends_with("NotFoundException")
            || code == "NoSuchEntity"
    })
}

/// A Describe or Get answer, or `None` when the service says there is no such thing.
pub fn none_if_missing<T, E>(
    result: Result<T, E>,
    operation: &str,
) -> Result<Option<T>, ProviderError>
where
    E: ProvideErrorMetadata + std::error::Error,
{
    match result {
        Ok(answer) => Ok(Some(answer)),
        Err(error) if is_not_found(&error) => Ok(None),
        Err(error) => Err(ProviderError::api(operation, error)),
    }
}

/// A delete whose target is already gone has done its job.
pub fn gone_is_fine<T, E>(result: Result<T, E>, operation: &str) -> Result<(), ProviderError>
where
    E: ProvideErrorMetadata + std::error::Error,
{
    match result {
        Ok(_) => Ok(()),
        Err(error) if is_not_found(&error) => Ok(()),
        Err(error) => Err(ProviderError::api(operation, error)),
    }
}

/// A recorded output, or empty.
pub fn recorded_output(recorded: &Recorded, output: &str) -> String {
    recorded
        .outputs
        .get(output)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// An idempotency token for a create call (EC2 `ClientToken`, EKS `clientRequestToken`):
/// the create's intent token, so a retried call makes nothing twice; none when empty.
pub fn idempotency(token: &str) -> Option<String> {
    (!token.is_empty()).then(|| token.to_string())
}

/// True when `tags` carry the ownership tags (blueprint, environment, address) of `desired`.
pub fn owns<'a>(
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
    desired: &BTreeMap<String, String>,
) -> bool {
    let tags: Vec<(&str, &str)> = tags.into_iter().collect();
    ["trails:blueprint", "trails:environment", ADDRESS_TAG]
        .iter()
        .all(|key| {
            desired
                .get(*key)
                .is_some_and(|wanted| tags.contains(&(*key, wanted.as_str())))
        })
}

/// Refuses to adopt `what` when it lacks the ownership tags of `desired`.
pub fn check_owns<'a>(
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
    desired: &BTreeMap<String, String>,
    what: &str,
) -> Result<(), ProviderError> {
    if owns(tags, desired) {
        Ok(())
    } else {
        let address = desired.get(ADDRESS_TAG).map(String::as_str).unwrap_or("?");
        Err(ProviderError::NotOurs(format!(
            "{what} exists but was not created by trails for {address}"
        )))
    }
}

/// What changed between two tag sets: keys to remove and tags to set.
pub fn tag_changes(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> (Vec<String>, BTreeMap<String, String>) {
    let removed = before
        .keys()
        .filter(|key| !after.contains_key(*key))
        .cloned()
        .collect();
    let set = after
        .iter()
        .filter(|(key, value)| before.get(*key) != Some(*value))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    (removed, set)
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
