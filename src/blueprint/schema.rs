//! The blueprint's typed schema: what a user may write, with defaults that keep small blueprints short.
//!
//! Every struct denies unknown fields, so a typo is an error that names the field and lists the
//! allowed ones. Maps are `IndexMap`s so that the order a user wrote is the order trails reports.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// A string-keyed map that keeps the order of the blueprint.
pub type Map<T> = IndexMap<String, T>;

/// The whole document after the selected environment's overlay was merged in.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// Name of the platform; prefixes every AWS name and tags every resource.
    pub blueprint: String,
    /// AWS region, e.g. `eu-west-1`.
    pub region: String,
    /// Tags added to every AWS resource (besides the `trails:*` tags trails adds itself).
    #[serde(default)]
    pub tags: Map<String>,
    /// Directory of templates and migration files, relative to the blueprint file.
    #[serde(default = "default_templates")]
    pub templates: String,
    /// Values for `${var.NAME}` references; environments may override them. Each is a value,
    /// or `{ value, sensitive, description }` (a sensitive one's value never shows in a plan
    /// or the state).
    // Read from the YAML while loading, where each gets its own diagnostics.
    #[serde(default)]
    #[schemars(with = "Map<Variable>")]
    pub variables: serde::de::IgnoredAny,
    /// The VPC and everything inside it.
    pub network: Option<Network>,
    /// Service-account roles (IRSA); cluster and node roles are derived from `eks`.
    pub iam: Option<Iam>,
    /// The EKS cluster and its node pools.
    pub eks: Option<Eks>,
    /// RDS PostgreSQL instances by name.
    #[serde(default)]
    pub postgres: Map<Postgres>,
    /// ElastiCache Redis replication groups by name.
    #[serde(default)]
    pub redis: Map<Redis>,
    /// S3 buckets by short name (the AWS name is derived unless given).
    #[serde(default)]
    pub buckets: Map<Bucket>,
    /// Namespaces, RBAC, storage classes, secrets and manifests inside the cluster.
    pub kubernetes: Option<Kubernetes>,
    /// Helm releases by release name.
    #[serde(default)]
    pub helm: Map<HelmRelease>,
    /// Kafka (Redpanda) topics created once the brokers run.
    pub kafka: Option<Kafka>,
    /// ClickHouse databases and migrations.
    pub clickhouse: Option<ClickHouse>,
    /// OpenSearch index templates and ISM policies.
    pub opensearch: Option<OpenSearch>,
    /// The platform's own ingest service.
    pub ingest: Option<Ingest>,
    /// Where the environments' states live; a file beside the blueprint when absent.
    pub state: Option<StateBackend>,
    /// User policies (Rego) and waivers of findings; the built-in rules always run.
    pub policy: Option<Policy>,
    /// Renames: a resource recorded at `from` is the one now declared at `to`, so a rename
    /// is planned as a move of the record, not a delete and a create. Keep an entry until
    /// every environment has been applied once after the rename.
    #[serde(default)]
    pub moved: Vec<Moved>,
}

/// One rename of a resource's address.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Moved {
    /// The old address, e.g. `aws.s3_bucket.logs`.
    pub from: String,
    /// The new address, of the same type, declared in the blueprint: `aws.s3_bucket.audit`.
    pub to: String,
}

// For the reference only: loading reads variables from the YAML itself, each with its own
// diagnostics.
/// A variable: a single value, or the long form.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum Variable {
    /// The value (a string, number or boolean, read as a string).
    Value(Scalar),
    /// The long form.
    Long(LongVariable),
}

/// A single YAML value: a string, number or boolean.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum Scalar {
    /// Text.
    Text(String),
    /// A number.
    Number(f64),
    /// `true` or `false`.
    Flag(bool),
}

/// A variable with its flags.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct LongVariable {
    /// The value; an environment's `variables` may give it instead.
    pub value: Option<Scalar>,
    /// A sensitive value never shows in a plan or the state, and every attribute it reaches
    /// is recorded as a digest.
    #[serde(default)]
    pub sensitive: bool,
    /// What it is for.
    pub description: Option<String>,
}

// For the reference only: loading takes the overlay apart from the settings.
/// An environment: its settings, and the overlay merged over the document.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct Environment {
    /// The environment's settings.
    #[serde(flatten)]
    pub settings: EnvironmentSettings,
    /// Blueprint sections merged over the document for this environment: mappings merge key
    /// by key, anything else replaces, and `null` removes a key.
    pub overlay: Option<serde_json::Map<String, serde_json::Value>>,
}

/// What the plan is checked against besides the built-in rules, and what is accepted.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Rego files, or directories of them, relative to the blueprint: conftest-style
    /// `deny`/`warn` rules over the policy input (see README).
    #[serde(default)]
    pub paths: Vec<String>,
    /// Findings accepted until a date, each with its reason.
    #[serde(default)]
    pub waive: Vec<Waiver>,
}

/// One accepted finding.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Waiver {
    /// The rule's id, e.g. `s3.versioning` or a Rego rule's `PACKAGE.deny`.
    pub rule: String,
    /// The address it is accepted for; `*` matches any run of characters.
    pub address: String,
    /// Why it is accepted.
    pub reason: String,
    /// The last day (`YYYY-MM-DD`, UTC) it is accepted; after it the finding counts again.
    pub expires: String,
}

/// The shared place for every environment's state.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateBackend {
    /// A versioned S3 bucket: each environment's state at `PREFIX/BLUEPRINT/ENV.state.json`.
    pub s3: Option<S3Backend>,
}

/// The S3 state backend.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3Backend {
    /// The bucket (it must keep versions).
    pub bucket: String,
    /// Key prefix under which the blueprint's states live.
    pub prefix: Option<String>,
    /// The bucket's region, when it is not the blueprint's.
    pub region: Option<String>,
    /// A KMS key (id, ARN or alias) for SSE-KMS; SSE-S3 (AES-256) without one.
    pub kms_key: Option<String>,
}

fn default_templates() -> String {
    "templates".to_string()
}

/// Per-environment settings; the `overlay` part is merged into the document before typing.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentSettings {
    /// A protected environment is never destroyed without an explicit override.
    #[serde(default)]
    pub protect: bool,
    /// An ephemeral (preview) environment: no final snapshots, buckets emptied, TTL tag.
    #[serde(default)]
    pub ephemeral: bool,
    /// Time to live of an ephemeral environment, e.g. `72h`.
    pub ttl: Option<String>,
    /// The most the environment may cost a month, e.g. `1500 USD/month`: `plan` exits 1 and
    /// `apply` refuses when the estimate exceeds it.
    pub budget: Option<String>,
    /// Variable values for this environment, over the document's `variables`.
    #[serde(default)]
    pub variables: Map<String>,
}

/// A `budget` such as `1500 USD/month` (or `1500`): the USD amount, or what is wrong with it.
pub fn parse_budget(text: &str) -> Result<f64, String> {
    let mut words = text.split_whitespace();
    let amount = words.next().unwrap_or_default();
    let unit = words.next();
    let rest = words.next();
    let amount: f64 = amount
        .trim_start_matches('$')
        .replace(',', "")
        .parse()
        .map_err(|_| format!("`{text}` is not an amount such as `1500 USD/month`"))?;
    if !amount.is_finite() || amount < 0.0 {
        return Err(format!("`{text}`: the amount must be zero or more"));
    }
    match (unit, rest) {
        (None, None) | (Some("USD" | "USD/month"), None) => Ok(amount),
        _ => Err(format!(
            "`{text}`: expected `AMOUNT USD/month`; prices are in USD, for a month"
        )),
    }
}

/// How NAT gateways are laid out.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum NatLayout {
    /// One NAT gateway per availability zone (highly available).
    #[default]
    PerAz,
    /// One NAT gateway for all zones (cheap environments).
    Single,
    /// No NAT: private subnets have no route to the internet.
    None,
}

/// The VPC, its subnets and the network plumbing trails derives from them.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// The VPC's IPv4 CIDR block.
    pub cidr: String,
    /// Availability zones, as suffixes (`a`) or full names (`eu-west-1a`).
    pub azs: Vec<String>,
    /// One CIDR per zone for each tier.
    pub subnets: Subnets,
    /// NAT gateway layout.
    #[serde(default)]
    pub nat: NatLayout,
    /// CIDRs allowed to reach the load balancer on 80/443.
    #[serde(default = "default_ingress_cidrs")]
    pub ingress_cidrs: Vec<String>,
    /// VPC flow logs, delivered to one of the blueprint's buckets.
    pub flow_logs: Option<FlowLogs>,
}

fn default_ingress_cidrs() -> Vec<String> {
    vec!["0.0.0.0/0".to_string()]
}

/// Subnet CIDRs per tier, one per availability zone in the order of `azs`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Subnets {
    /// Load balancers and NAT gateways.
    pub public: Vec<String>,
    /// Cluster nodes.
    pub private: Vec<String>,
    /// RDS and ElastiCache; no route to the internet at all.
    #[serde(default)]
    pub database: Vec<String>,
}

/// Where VPC flow logs go.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowLogs {
    /// Short name of a bucket declared under `buckets`.
    pub bucket: String,
    /// `ALL`, `ACCEPT` or `REJECT`.
    #[serde(default = "default_traffic")]
    pub traffic: String,
}

fn default_traffic() -> String {
    "ALL".to_string()
}

/// IAM beyond the cluster and node roles.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Iam {
    /// Roles for Kubernetes service accounts (IRSA), by name.
    #[serde(default)]
    pub service_accounts: Map<ServiceAccountRole>,
}

/// Access a service account gets to a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BucketAccess {
    /// List and get.
    Read,
    /// List, get, put and delete.
    ReadWrite,
}

/// An IAM role that one Kubernetes service account may assume through the cluster's OIDC provider.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountRole {
    /// Namespace of the service account.
    pub namespace: String,
    /// Name of the service account.
    pub service_account: String,
    /// Buckets (short names) and the access granted to each; nothing else is allowed.
    #[serde(default)]
    pub buckets: Map<BucketAccess>,
}

/// The EKS cluster.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Eks {
    /// Kubernetes version, pinned (e.g. `"1.30"`).
    pub version: String,
    /// Whether the API endpoint is reachable from the internet.
    #[serde(default = "yes")]
    pub public_endpoint: bool,
    /// CIDRs allowed to reach a public endpoint.
    #[serde(default = "default_ingress_cidrs")]
    pub public_access_cidrs: Vec<String>,
    /// Control-plane log types to enable.
    #[serde(default = "default_cluster_logs")]
    pub logging: Vec<String>,
    /// EKS add-ons and their pinned versions.
    #[serde(default)]
    pub addons: Map<String>,
    /// Managed node groups by name.
    pub node_pools: Map<NodePool>,
}

fn yes() -> bool {
    true
}

fn default_cluster_logs() -> Vec<String> {
    ["api", "audit", "authenticator"]
        .into_iter()
        .map(String::from)
        .collect()
}

/// A managed node group.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodePool {
    /// EC2 instance types.
    pub instance_types: Vec<String>,
    /// Autoscaling lower bound.
    pub min: u32,
    /// Autoscaling upper bound.
    pub max: u32,
    /// Initial size; defaults to `min`.
    pub desired: Option<u32>,
    /// Root volume size in GiB.
    #[serde(default = "default_disk_gb")]
    pub disk_gb: u32,
    /// `ON_DEMAND` or `SPOT`.
    #[serde(default = "default_capacity_type")]
    pub capacity_type: String,
    /// Kubernetes labels on the nodes.
    #[serde(default)]
    pub labels: Map<String>,
    /// Kubernetes taints on the nodes.
    #[serde(default)]
    pub taints: Vec<Taint>,
}

fn default_disk_gb() -> u32 {
    50
}

fn default_capacity_type() -> String {
    "ON_DEMAND".to_string()
}

/// A node taint.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Taint {
    /// Taint key.
    pub key: String,
    /// Taint value.
    #[serde(default)]
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

/// An RDS PostgreSQL instance and the database trails prepares inside it.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Postgres {
    /// Engine version, e.g. `"16.4"`.
    #[serde(default = "default_pg_version")]
    pub engine_version: String,
    /// Instance class, e.g. `db.r6g.large`.
    pub instance_class: String,
    /// Allocated storage in GiB.
    #[serde(default = "default_storage_gb")]
    pub storage_gb: u32,
    /// Storage autoscaling ceiling in GiB.
    pub max_storage_gb: Option<u32>,
    /// Standby in a second zone.
    #[serde(default)]
    pub multi_az: bool,
    /// Days of automated backups (0 disables them).
    #[serde(default = "default_backup_days")]
    pub backup_retention_days: u32,
    /// Daily backup window (UTC), `hh:mm-hh:mm`.
    #[serde(default = "default_backup_window")]
    pub backup_window: String,
    /// Refuse deletion at the AWS level.
    #[serde(default)]
    pub deletion_protection: bool,
    /// Master user name; its password is generated and never shown.
    #[serde(default = "default_master_username")]
    pub master_username: String,
    /// Parameter group settings.
    #[serde(default)]
    pub parameters: Map<String>,
    /// Databases trails creates once the instance answers, with their schemas and migrations.
    #[serde(default)]
    pub databases: Map<PostgresDatabase>,
}

fn default_pg_version() -> String {
    "16.4".to_string()
}
fn default_storage_gb() -> u32 {
    20
}
fn default_backup_days() -> u32 {
    7
}
fn default_backup_window() -> String {
    "03:00-04:00".to_string()
}
fn default_master_username() -> String {
    "trails_admin".to_string()
}

/// A database inside a PostgreSQL instance.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresDatabase {
    /// Schemas to create.
    #[serde(default)]
    pub schemas: Vec<String>,
    /// SQL files under `templates/`, applied in order, each once.
    #[serde(default)]
    pub migrations: Vec<String>,
    /// Login roles for applications, by name: each gets a password trails generates and keeps
    /// in Secrets Manager, and only the privileges listed here (never the master user's).
    #[serde(default)]
    pub roles: Map<PostgresRole>,
}

/// A least-privilege login role of one database.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresRole {
    /// Privileges by table (`api_keys`, `schema.table`): `SELECT`, `INSERT`, `UPDATE`,
    /// `DELETE`, `TRUNCATE`, `REFERENCES`, `TRIGGER`. A table made by a migration.
    #[serde(default)]
    pub tables: Map<Vec<String>>,
}

/// An ElastiCache Redis replication group.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Redis {
    /// Engine version, e.g. `"7.1"`.
    #[serde(default = "default_redis_version")]
    pub engine_version: String,
    /// Node type, e.g. `cache.r6g.large`.
    pub node_type: String,
    /// Cluster mode (sharding).
    #[serde(default = "yes")]
    pub cluster_mode: bool,
    /// Number of shards (node groups); 1 without cluster mode.
    #[serde(default = "one")]
    pub shards: u32,
    /// Replicas per shard.
    #[serde(default = "one")]
    pub replicas_per_shard: u32,
    /// Promote a replica automatically when a primary fails.
    #[serde(default = "yes")]
    pub automatic_failover: bool,
    /// TLS between clients and Redis.
    #[serde(default = "yes")]
    pub transit_encryption: bool,
    /// Encryption of data at rest.
    #[serde(default = "yes")]
    pub at_rest_encryption: bool,
    /// `maxmemory-policy` of the parameter group.
    #[serde(default = "default_maxmemory_policy")]
    pub maxmemory_policy: String,
    /// Further parameter group settings.
    #[serde(default)]
    pub parameters: Map<String>,
}

fn default_redis_version() -> String {
    "7.1".to_string()
}
fn one() -> u32 {
    1
}
fn default_maxmemory_policy() -> String {
    "allkeys-lru".to_string()
}

/// Object Lock retention mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ObjectLockMode {
    /// Nobody, not even root, can delete a locked version before it expires.
    Compliance,
    /// Users with a special permission can bypass the lock.
    Governance,
}

/// Object Lock default retention.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectLock {
    /// Retention mode.
    pub mode: ObjectLockMode,
    /// Default retention in days.
    pub days: u32,
}

/// An S3 bucket.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Bucket {
    /// Full AWS name; defaults to `BLUEPRINT-ENV-SHORTNAME`.
    pub name: Option<String>,
    /// Keep every version of every object.
    #[serde(default = "yes")]
    pub versioning: bool,
    /// `AES256` or `aws:kms`.
    #[serde(default = "default_encryption")]
    pub encryption: String,
    /// Block every form of public access.
    #[serde(default = "yes")]
    pub block_public_access: bool,
    /// Lifecycle rules.
    #[serde(default)]
    pub lifecycle: Vec<LifecycleRule>,
    /// WORM retention; compliance mode is refused for ephemeral environments.
    pub object_lock: Option<ObjectLock>,
    /// Allow `trails destroy` to delete every object version before deleting the bucket.
    #[serde(default)]
    pub force_destroy: bool,
}

fn default_encryption() -> String {
    "AES256".to_string()
}

/// One lifecycle rule of a bucket.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LifecycleRule {
    /// Rule identifier.
    pub id: String,
    /// Key prefix the rule applies to (all objects when empty).
    #[serde(default)]
    pub prefix: String,
    /// Move objects to another storage class after some days.
    #[serde(default)]
    pub transitions: Vec<Transition>,
    /// Delete current versions after this many days.
    pub expire_days: Option<u32>,
    /// Delete non-current versions after this many days.
    pub noncurrent_expire_days: Option<u32>,
}

/// A lifecycle transition.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    /// Days after creation.
    pub days: u32,
    /// Target storage class, e.g. `GLACIER_IR`.
    pub storage_class: String,
}

/// In-cluster resources.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Kubernetes {
    /// Kubeconfig context of an existing cluster; without it the blueprint's EKS cluster is used.
    pub context: Option<String>,
    /// Namespaces by name.
    #[serde(default)]
    pub namespaces: Map<Namespace>,
    /// Storage classes by name.
    #[serde(default)]
    pub storage_classes: Map<StorageClass>,
    /// Role bindings that give a group a cluster role, by name.
    #[serde(default)]
    pub rbac: Map<RoleBinding>,
    /// Secrets by name; values may reference other resources' outputs.
    #[serde(default)]
    pub secrets: Map<Secret>,
    /// Arbitrary manifests rendered from tera templates, by name.
    #[serde(default)]
    pub manifests: Map<Manifest>,
}

/// A namespace.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Namespace {
    /// Labels on the namespace.
    #[serde(default)]
    pub labels: Map<String>,
}

/// A storage class.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StorageClass {
    /// CSI provisioner, e.g. `ebs.csi.aws.com`.
    pub provisioner: String,
    /// Provisioner parameters.
    #[serde(default)]
    pub parameters: Map<String>,
    /// Mark as the cluster's default class.
    #[serde(default)]
    pub default: bool,
    /// `Delete` or `Retain`.
    #[serde(default = "default_reclaim")]
    pub reclaim_policy: String,
    /// `WaitForFirstConsumer` or `Immediate`.
    #[serde(default = "default_binding_mode")]
    pub volume_binding_mode: String,
    /// Allow PVCs to grow.
    #[serde(default = "yes")]
    pub allow_volume_expansion: bool,
}

fn default_reclaim() -> String {
    "Delete".to_string()
}
fn default_binding_mode() -> String {
    "WaitForFirstConsumer".to_string()
}

/// A binding of a group to a cluster role, in one namespace or cluster-wide.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleBinding {
    /// Namespace; cluster-wide when absent.
    pub namespace: Option<String>,
    /// Group name as the authenticator reports it.
    pub group: String,
    /// Cluster role to bind, e.g. `edit` or `view`.
    pub cluster_role: String,
}

/// A secret; every value is sensitive.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    /// Namespace of the secret.
    pub namespace: String,
    /// Keys and values; values may be references such as `${aws.db_instance.main.password}`.
    pub data: Map<String>,
}

/// A manifest rendered from a tera template.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Template path, relative to the `templates` directory.
    pub template: String,
    /// Namespace the objects go to.
    pub namespace: Option<String>,
    /// Values passed to the template; may reference other resources' outputs.
    #[serde(default)]
    pub values: Map<String>,
    /// Addresses this manifest must wait for beyond what its values reference.
    #[serde(default)]
    pub depends_on: Vec<String>,
}

/// A Helm release.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HelmRelease {
    /// Chart name in the repository.
    pub chart: String,
    /// Chart repository URL.
    pub repository: String,
    /// Pinned chart version.
    pub version: String,
    /// Namespace the release goes to (created by trails if declared under `kubernetes`).
    pub namespace: String,
    /// Tera template for the release's values, relative to the `templates` directory.
    pub values_template: Option<String>,
    /// Values passed to the template; may reference other resources' outputs.
    #[serde(default)]
    pub values: Map<String>,
    /// Addresses this release must wait for beyond what its values reference.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Minutes helm may wait for the release to become ready.
    #[serde(default = "default_helm_timeout")]
    pub timeout_minutes: u32,
}

fn default_helm_timeout() -> u32 {
    10
}

/// Kafka topics.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Kafka {
    /// Helm release that runs the brokers (topics wait for it).
    pub release: Option<String>,
    /// Bootstrap servers, `host:port,...`.
    pub bootstrap_servers: String,
    /// TLS to the brokers (every trails client: apply, verify): absent means in clear.
    #[serde(default)]
    pub tls: Option<KafkaTls>,
    /// Topics by name.
    pub topics: Map<Topic>,
}

/// TLS to the Kafka brokers; `tls: {}` verifies them against the system's CA certificates.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaTls {
    /// PEM file of the CA certificates that sign the brokers' certificates, relative to the
    /// blueprint's directory.
    #[serde(default)]
    pub ca_file: Option<String>,
}

/// A Kafka topic.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Topic {
    /// Number of partitions (can only grow).
    pub partitions: u32,
    /// Replication factor.
    #[serde(default = "default_rf")]
    pub replication_factor: u32,
    /// Topic configuration, e.g. `retention.ms`.
    #[serde(default)]
    pub config: Map<String>,
}

fn default_rf() -> u32 {
    3
}

/// ClickHouse databases.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClickHouse {
    /// Helm release that runs ClickHouse.
    pub release: Option<String>,
    /// HTTP endpoint, e.g. `http://clickhouse.turia-trails:8123`.
    pub url: String,
    /// Databases by name, each with migration files applied in order.
    pub databases: Map<ClickHouseDatabase>,
}

/// A ClickHouse database.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseDatabase {
    /// SQL files under `templates/`, applied in order, each once.
    #[serde(default)]
    pub migrations: Vec<String>,
}

/// OpenSearch day-one configuration.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenSearch {
    /// Helm release that runs OpenSearch.
    pub release: Option<String>,
    /// HTTP endpoint.
    pub url: String,
    /// Index templates by name, each a JSON template file.
    #[serde(default)]
    pub index_templates: Map<String>,
    /// ISM policies by name, each a JSON template file.
    #[serde(default)]
    pub ism_policies: Map<String>,
}

/// The ingest service deployment.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ingest {
    /// Container image with a pinned tag or digest.
    pub image: String,
    /// Namespace to deploy into.
    pub namespace: String,
    /// Replicas when autoscaling is off; with autoscaling the HPA sets them (from `min` up).
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// Autoscaling bounds.
    pub autoscaling: Option<Autoscaling>,
    /// Container resources.
    #[serde(default)]
    pub resources: Resources,
    /// Public hostname with TLS; no Ingress when absent.
    pub host: Option<String>,
    /// cert-manager cluster issuer for the certificate.
    #[serde(default = "default_issuer")]
    pub tls_issuer: String,
    /// Environment of the service; values may reference other resources' outputs.
    #[serde(default)]
    pub env: Map<String>,
    /// CA certificates the service trusts, by the environment variable that names the file:
    /// each a Secret in the service's namespace whose `ca.crt` is mounted read-only there
    /// (e.g. `KAFKA_TLS_CA_FILE: kafka-ca`).
    #[serde(default)]
    pub trust: Map<String>,
    /// Addresses the Deployment must wait for beyond what its values reference, such as the
    /// Certificate whose Secret a `trust` entry mounts.
    #[serde(default)]
    pub depends_on: Vec<String>,
}

fn default_replicas() -> u32 {
    3
}
fn default_issuer() -> String {
    "letsencrypt".to_string()
}

/// Horizontal pod autoscaler bounds.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Autoscaling {
    /// Fewest replicas.
    pub min: u32,
    /// Most replicas.
    pub max: u32,
    /// Target average CPU utilisation.
    #[serde(default = "default_cpu_target")]
    pub cpu_percent: u32,
}

fn default_cpu_target() -> u32 {
    70
}

/// Container resource requests and limits.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU request, e.g. `500m`.
    #[serde(default = "default_cpu_request")]
    pub cpu_request: String,
    /// Memory request, e.g. `512Mi`.
    #[serde(default = "default_memory_request")]
    pub memory_request: String,
    /// CPU limit.
    #[serde(default = "default_cpu_limit")]
    pub cpu_limit: String,
    /// Memory limit.
    #[serde(default = "default_memory_limit")]
    pub memory_limit: String,
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            cpu_request: default_cpu_request(),
            memory_request: default_memory_request(),
            cpu_limit: default_cpu_limit(),
            memory_limit: default_memory_limit(),
        }
    }
}

fn default_cpu_request() -> String {
    "500m".to_string()
}
fn default_memory_request() -> String {
    "512Mi".to_string()
}
fn default_cpu_limit() -> String {
    "2".to_string()
}
fn default_memory_limit() -> String {
    "1Gi".to_string()
}
