//! `trails apply` and `trails destroy` against the moto AWS emulator: what the blueprint
//! declares exists with its attributes, a second apply does nothing, an interrupted apply
//! resumes without duplicates, and destroy leaves nothing behind.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;

use super::moto::Moto;
use super::{Run, repo, run_with};

const BLUEPRINT: &str = "trails-demo";

/// A copy of the AWS fixture in its own directory (its state lands beside it).
fn workspace() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("platform.yaml");
    // Two minors behind the example's pin, so that the tests can walk EKS upgrades up to it.
    let example = std::fs::read_to_string(repo("examples/local-aws.yaml")).expect("example");
    let pinned = "kubernetes: \"1.35\"";
    assert!(
        example.contains(pinned),
        "examples/local-aws.yaml pins {pinned}"
    );
    std::fs::write(&file, example.replace(pinned, "kubernetes: \"1.33\"")).expect("copy fixture");
    (dir, file)
}

fn trails(moto: &Moto, file: &Path, args: &[&str]) -> Run {
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["-f", file.to_str().expect("utf-8 path")]);
    run_with(None, &moto.env(), &full)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("tokio runtime")
}

fn ours() -> Filter {
    Filter::builder()
        .name("tag:trails:blueprint")
        .values(BLUEPRINT)
        .build()
}

fn live() -> Filter {
    Filter::builder()
        .name("state")
        .values("pending")
        .values("available")
        .build()
}

/// How many live resources of each kind carry the blueprint's tags.
#[derive(Debug, PartialEq, Eq)]
struct Census {
    vpcs: usize,
    subnets: usize,
    internet_gateways: usize,
    elastic_ips: usize,
    nat_gateways: usize,
    route_tables: usize,
    security_groups: usize,
    network_acls: usize,
    flow_logs: usize,
    db_instances: usize,
    buckets: BTreeSet<String>,
    iam_roles: usize,
    oidc_providers: usize,
    clusters: usize,
    node_groups: usize,
    addons: usize,
    cache_subnet_groups: usize,
    cache_parameter_groups: usize,
    replication_groups: usize,
    secrets: usize,
}

const EVERYTHING: fn() -> Census = || Census {
    vpcs: 1,
    subnets: 6,
    internet_gateways: 1,
    elastic_ips: 2,
    nat_gateways: 2,
    route_tables: 4,
    security_groups: 4,
    network_acls: 3,
    flow_logs: 1,
    db_instances: 1,
    buckets: [
        "trails-demo-local-audit",
        "trails-demo-local-backups",
        "trails-demo-local-plain",
    ]
    .into_iter()
    .map(String::from)
    .collect(),
    iam_roles: 3,
    oidc_providers: 1,
    clusters: 1,
    node_groups: 2,
    addons: 1,
    cache_subnet_groups: 1,
    cache_parameter_groups: 1,
    replication_groups: 1,
    secrets: 1,
};

const NOTHING: fn() -> Census = || Census {
    vpcs: 0,
    subnets: 0,
    internet_gateways: 0,
    elastic_ips: 0,
    nat_gateways: 0,
    route_tables: 0,
    security_groups: 0,
    network_acls: 0,
    flow_logs: 0,
    db_instances: 0,
    buckets: BTreeSet::new(),
    iam_roles: 0,
    oidc_providers: 0,
    clusters: 0,
    node_groups: 0,
    addons: 0,
    cache_subnet_groups: 0,
    cache_parameter_groups: 0,
    replication_groups: 0,
    secrets: 0,
};

fn demo(name: &str) -> bool {
    name.starts_with("trails-demo-")
}

/// Counts of the IAM, EKS, ElastiCache and Secrets Manager resources of the blueprint.
async fn census_platform(moto: &Moto, census: &mut Census) {
    let roles = moto.iam().list_roles().send().await.expect("roles");
    census.iam_roles = roles.roles().iter().filter(|r| demo(r.role_name())).count();
    let providers = moto
        .iam()
        .list_open_id_connect_providers()
        .send()
        .await
        .expect("oidc providers");
    census.oidc_providers = providers.open_id_connect_provider_list().len();
    let eks = moto.eks();
    let clusters = eks.list_clusters().send().await.expect("clusters");
    for cluster in clusters.clusters().iter().filter(|c| demo(c)) {
        census.clusters += 1;
        let groups = eks
            .list_nodegroups()
            .cluster_name(cluster)
            .send()
            .await
            .expect("node groups");
        census.node_groups += groups.nodegroups().len();
        let addons = eks
            .list_addons()
            .cluster_name(cluster)
            .send()
            .await
            .expect("addons");
        census.addons += addons.addons().len();
    }
    let cache = moto.elasticache();
    let subnet_groups = cache
        .describe_cache_subnet_groups()
        .send()
        .await
        .expect("cache subnet groups");
    census.cache_subnet_groups = subnet_groups
        .cache_subnet_groups()
        .iter()
        .filter(|g| g.cache_subnet_group_name().is_some_and(demo))
        .count();
    let parameter_groups = cache
        .describe_cache_parameter_groups()
        .send()
        .await
        .expect("cache parameter groups");
    census.cache_parameter_groups = parameter_groups
        .cache_parameter_groups()
        .iter()
        .filter(|g| g.cache_parameter_group_name().is_some_and(demo))
        .count();
    let replication_groups = cache
        .describe_replication_groups()
        .send()
        .await
        .expect("replication groups");
    census.replication_groups = replication_groups
        .replication_groups()
        .iter()
        .filter(|g| g.replication_group_id().is_some_and(demo))
        .count();
    let secrets = moto.secrets().list_secrets().send().await.expect("secrets");
    census.secrets = secrets
        .secret_list()
        .iter()
        .filter(|s| {
            s.name()
                .is_some_and(|n| n.starts_with("trails/trails-demo-"))
        })
        .count();
}

async fn census(moto: &Moto) -> Census {
    let (ec2, s3) = moto.clients();
    let vpcs = ec2
        .describe_vpcs()
        .filters(ours())
        .send()
        .await
        .expect("vpcs");
    let subnets = ec2
        .describe_subnets()
        .filters(ours())
        .send()
        .await
        .expect("subnets");
    let gateways = ec2
        .describe_internet_gateways()
        .filters(ours())
        .send()
        .await
        .expect("internet gateways");
    let addresses = ec2
        .describe_addresses()
        .filters(ours())
        .send()
        .await
        .expect("eips");
    let nats = ec2
        .describe_nat_gateways()
        .filter(ours())
        .filter(live())
        .send()
        .await
        .expect("nat gateways");
    let tables = ec2
        .describe_route_tables()
        .filters(ours())
        .send()
        .await
        .expect("tables");
    let groups = ec2
        .describe_security_groups()
        .filters(ours())
        .send()
        .await
        .expect("security groups");
    let acls = ec2
        .describe_network_acls()
        .filters(ours())
        .send()
        .await
        .expect("acls");
    let flow_logs = ec2
        .describe_flow_logs()
        .filter(ours())
        .send()
        .await
        .expect("flow logs");
    let databases = moto
        .rds()
        .describe_db_instances()
        .send()
        .await
        .expect("db instances");
    let buckets = s3.list_buckets().send().await.expect("buckets");
    let mut census = Census {
        vpcs: vpcs.vpcs().len(),
        subnets: subnets.subnets().len(),
        internet_gateways: gateways.internet_gateways().len(),
        elastic_ips: addresses.addresses().len(),
        nat_gateways: nats.nat_gateways().len(),
        route_tables: tables.route_tables().len(),
        security_groups: groups.security_groups().len(),
        network_acls: acls.network_acls().len(),
        flow_logs: flow_logs.flow_logs().len(),
        db_instances: databases
            .db_instances()
            .iter()
            .filter(|db| {
                db.db_instance_identifier()
                    .is_some_and(|id| id.starts_with("trails-demo-"))
            })
            .count(),
        buckets: buckets
            .buckets()
            .iter()
            .filter_map(|b| b.name())
            .filter(|name| name.starts_with("trails-demo-"))
            .map(String::from)
            .collect(),
        ..NOTHING()
    };
    census_platform(moto, &mut census).await;
    census
}

/// Checks the attributes the blueprint declares, read back through the AWS API.
async fn check_attributes(moto: &Moto, ingress: &str, expire_days: i32) {
    let (ec2, s3) = moto.clients();
    let vpc = ec2
        .describe_vpcs()
        .filters(ours())
        .send()
        .await
        .expect("vpcs");
    assert_eq!(vpc.vpcs()[0].cidr_block(), Some("10.20.0.0/16"));

    let subnets = ec2
        .describe_subnets()
        .filters(ours())
        .send()
        .await
        .expect("subnets");
    let layout: BTreeSet<(String, String)> = subnets
        .subnets()
        .iter()
        .map(|s| {
            (
                s.cidr_block().unwrap_or_default().to_string(),
                s.availability_zone().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("10.20.0.0/24", "us-east-1a"),
        ("10.20.1.0/24", "us-east-1b"),
        ("10.20.16.0/20", "us-east-1a"),
        ("10.20.32.0/20", "us-east-1b"),
        ("10.20.64.0/24", "us-east-1a"),
        ("10.20.65.0/24", "us-east-1b"),
    ]
    .into_iter()
    .map(|(c, z)| (c.to_string(), z.to_string()))
    .collect();
    assert_eq!(layout, expected);

    // Each private table sends the internet through a NAT gateway; the database one nowhere.
    let tables = ec2
        .describe_route_tables()
        .filters(ours())
        .send()
        .await
        .expect("tables");
    for table in tables.route_tables() {
        let name = table
            .tags()
            .iter()
            .find(|t| t.key() == Some("trails:address"))
            .and_then(|t| t.value())
            .unwrap_or_default()
            .to_string();
        let default_route = table
            .routes()
            .iter()
            .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"));
        match name.as_str() {
            "aws.route_table.public" => {
                assert!(
                    default_route
                        .and_then(|r| r.gateway_id())
                        .is_some_and(|g| g.starts_with("igw-")),
                    "{table:?}"
                )
            }
            "aws.route_table.private-a" | "aws.route_table.private-b" => {
                assert!(
                    default_route.and_then(|r| r.nat_gateway_id()).is_some(),
                    "{table:?}"
                )
            }
            "aws.route_table.database" => assert!(default_route.is_none(), "{table:?}"),
            other => panic!("unexpected route table {other}"),
        }
        let associated = table
            .associations()
            .iter()
            .filter(|a| a.subnet_id().is_some())
            .count();
        let expected = if name == "aws.route_table.public" || name == "aws.route_table.database" {
            2
        } else {
            1
        };
        assert_eq!(associated, expected, "{name} subnet associations");
    }

    // The load balancers' group admits HTTPS only from the declared CIDR.
    let groups = ec2
        .describe_security_groups()
        .filters(ours())
        .filters(
            Filter::builder()
                .name("tag:trails:address")
                .values("aws.security_group.alb")
                .build(),
        )
        .send()
        .await
        .expect("alb group");
    let https: Vec<String> = groups.security_groups()[0]
        .ip_permissions()
        .iter()
        .filter(|p| p.from_port() == Some(443))
        .flat_map(|p| {
            p.ip_ranges()
                .iter()
                .filter_map(|r| r.cidr_ip().map(String::from))
        })
        .collect();
    assert_eq!(https, vec![ingress.to_string()]);

    let acls = ec2
        .describe_network_acls()
        .filters(ours())
        .send()
        .await
        .expect("acls");
    for acl in acls.network_acls() {
        assert_eq!(
            acl.associations().len(),
            2,
            "each tier ACL covers both zones: {acl:?}"
        );
    }

    // Versioning, by its effect (moto's GetBucketVersioning reply does not parse in this
    // SDK): two writes to one key leave two versions only where versioning is on.
    for (bucket, versioned) in [
        ("trails-demo-local-backups", true),
        ("trails-demo-local-plain", false),
    ] {
        for body in ["first", "second"] {
            s3.put_object()
                .bucket(bucket)
                .key("versioning-probe")
                .body(body.as_bytes().to_vec().into())
                .send()
                .await
                .expect("put object");
        }
        let listed = s3
            .list_object_versions()
            .bucket(bucket)
            .prefix("versioning-probe")
            .send()
            .await
            .expect("list versions");
        let count = listed.versions().len();
        if versioned {
            assert!(
                count >= 2,
                "{bucket} is versioned but keeps {count} version(s)"
            );
        } else {
            assert_eq!(
                count, 1,
                "{bucket} is not versioned but keeps {count} versions"
            );
        }
    }
    let lifecycle = s3
        .get_bucket_lifecycle_configuration()
        .bucket("trails-demo-local-backups")
        .send()
        .await
        .expect("lifecycle");
    assert_eq!(
        lifecycle.rules()[0].expiration().and_then(|e| e.days()),
        Some(expire_days)
    );
    let lock = s3
        .get_object_lock_configuration()
        .bucket("trails-demo-local-audit")
        .send()
        .await
        .expect("object lock");
    let retention = lock
        .object_lock_configuration()
        .and_then(|c| c.rule())
        .and_then(|r| r.default_retention())
        .expect("default retention");
    assert_eq!(retention.mode().map(|m| m.as_str()), Some("GOVERNANCE"));
    assert_eq!(retention.days(), Some(1));
    let encryption = s3
        .get_bucket_encryption()
        .bucket("trails-demo-local-plain")
        .send()
        .await
        .expect("encryption");
    let algorithm = encryption
        .server_side_encryption_configuration()
        .and_then(|c| c.rules().first())
        .and_then(|r| r.apply_server_side_encryption_by_default())
        .map(|d| d.sse_algorithm().as_str().to_string());
    assert_eq!(algorithm.as_deref(), Some("aws:kms"));
    let block = s3
        .get_public_access_block()
        .bucket("trails-demo-local-plain")
        .send()
        .await
        .expect("public access block");
    assert_eq!(
        block
            .public_access_block_configuration()
            .and_then(|c| c.block_public_policy()),
        Some(true)
    );
}

/// Checks the cluster, its roles and Redis as declared, read back through the AWS API.
async fn check_platform(moto: &Moto, kubernetes: &str, general_max: i32) {
    let eks = moto.eks();
    let cluster = eks
        .describe_cluster()
        .name("trails-demo-local")
        .send()
        .await
        .expect("cluster");
    let cluster = cluster.cluster().expect("cluster described");
    assert_eq!(cluster.version(), Some(kubernetes));
    assert_eq!(
        cluster.resources_vpc_config().map(|c| c.subnet_ids().len()),
        Some(2),
        "the control plane spans both private subnets"
    );
    let issuer = cluster
        .identity()
        .and_then(|i| i.oidc())
        .and_then(|o| o.issuer())
        .expect("oidc issuer")
        .trim_start_matches("https://")
        .to_string();

    let general = eks
        .describe_nodegroup()
        .cluster_name("trails-demo-local")
        .nodegroup_name("trails-demo-local-general")
        .send()
        .await
        .expect("general node group");
    let scaling = general
        .nodegroup()
        .and_then(|g| g.scaling_config())
        .expect("scaling");
    assert_eq!(
        (
            scaling.min_size(),
            scaling.max_size(),
            scaling.desired_size()
        ),
        (Some(1), Some(general_max), Some(1))
    );
    let stateful = eks
        .describe_nodegroup()
        .cluster_name("trails-demo-local")
        .nodegroup_name("trails-demo-local-stateful")
        .send()
        .await
        .expect("stateful node group");
    let stateful = stateful.nodegroup().expect("stateful described");
    // Node groups follow the control plane (EKS refuses the next control-plane step while
    // one lags; the moto shim does too).
    assert_eq!(
        (
            general.nodegroup().and_then(|g| g.version()),
            stateful.version()
        ),
        (Some(kubernetes), Some(kubernetes))
    );
    assert_eq!(
        stateful
            .labels()
            .and_then(|l| l.get("workload"))
            .map(String::as_str),
        Some("stateful")
    );
    let taint = &stateful.taints()[0];
    assert_eq!(
        (
            taint.key(),
            taint.value(),
            taint.effect().map(|e| e.as_str())
        ),
        (Some("workload"), Some("stateful"), Some("NO_SCHEDULE"))
    );
    let addon = eks
        .describe_addon()
        .cluster_name("trails-demo-local")
        .addon_name("coredns")
        .send()
        .await
        .expect("addon");
    assert_eq!(
        addon.addon().and_then(|a| a.addon_version()),
        Some("v1.13.2-eksbuild.4")
    );

    let iam = moto.iam();
    let attached = iam
        .list_attached_role_policies()
        .role_name("trails-demo-local-eks-cluster")
        .send()
        .await
        .expect("cluster role policies");
    let arns: Vec<&str> = attached
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn())
        .collect();
    assert_eq!(arns, ["arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"]);
    let irsa = iam
        .get_role()
        .role_name("trails-demo-local-irsa-backups")
        .send()
        .await
        .expect("irsa role");
    let trust = irsa
        .role()
        .and_then(|r| r.assume_role_policy_document())
        .expect("trust policy");
    // IAM returns the document URL-encoded; the issuer and subject survive as plain text
    // except for `/` and `:`, so compare decoded.
    let trust = trust
        .replace("%2F", "/")
        .replace("%3A", ":")
        .replace("%22", "\"");
    assert!(
        trust.contains(&format!("{issuer}:sub"))
            && trust.contains("system:serviceaccount:demo:backup"),
        "{trust}"
    );
    let inline = iam
        .get_role_policy()
        .role_name("trails-demo-local-irsa-backups")
        .policy_name("buckets")
        .send()
        .await
        .expect("inline policy");
    assert!(
        inline
            .policy_document()
            .contains("trails-demo-local-backups"),
        "{}",
        inline.policy_document()
    );

    let cache = moto.elasticache();
    let groups = cache
        .describe_replication_groups()
        .replication_group_id("trails-demo-local-main")
        .send()
        .await
        .expect("replication group");
    let group = &groups.replication_groups()[0];
    assert_eq!(group.transit_encryption_enabled(), Some(true));
    assert_eq!(group.at_rest_encryption_enabled(), Some(true));
    assert_eq!(group.auth_token_enabled(), Some(true));
    assert_eq!(
        group.automatic_failover().map(|f| f.as_str()),
        Some("enabled")
    );
    assert_eq!(
        group.member_clusters().len(),
        2,
        "a primary and one replica"
    );
    let parameters = cache
        .describe_cache_parameters()
        .cache_parameter_group_name("trails-demo-local-main")
        .send()
        .await
        .expect("cache parameters");
    let set: BTreeSet<(String, String)> = parameters
        .parameters()
        .iter()
        .map(|p| {
            (
                p.parameter_name().unwrap_or_default().to_string(),
                p.parameter_value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(
        set.contains(&("maxmemory-policy".to_string(), "allkeys-lru".to_string())),
        "{set:?}"
    );
}

/// The Redis AUTH token trails generated, read from Secrets Manager.
async fn redis_token(moto: &Moto) -> String {
    let value = moto
        .secrets()
        .get_secret_value()
        .secret_id("trails/trails-demo-local-main/auth-token")
        .send()
        .await
        .expect("auth token secret");
    value.secret_string().expect("token").to_string()
}

#[test]
fn apply_creates_everything_declared_a_second_apply_calls_nothing_and_destroy_removes_it_all() {
    let moto = Moto::start();
    let (_dir, file) = workspace();
    let rt = runtime();

    let started = Instant::now();
    let applied = trails(&moto, &file, &["apply", "--yes"]);
    assert_eq!(applied.code, 0, "{}\n{}", applied.stdout, applied.stderr);
    eprintln!(
        "apply against moto took {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(rt.block_on(census(&moto)), EVERYTHING());
    rt.block_on(check_attributes(&moto, "0.0.0.0/0", 7));
    rt.block_on(check_platform(&moto, "1.33", 3));

    // The generated Redis token is in Secrets Manager only: not in the state, not in output.
    let token = rt.block_on(redis_token(&moto));
    assert_eq!(token.len(), 64, "{} characters", token.len());
    let state = std::fs::read_to_string(file.with_file_name(".trails/local.state.json"))
        .expect("state file");
    assert!(!state.contains(&token), "the Redis token is in the state");
    assert!(
        !applied.stdout.contains(&token) && !applied.stderr.contains(&token),
        "the Redis token was printed"
    );

    let shown = trails(&moto, &file, &["state", "show", "aws.db_instance.main"]);
    assert!(
        shown.stdout.contains("master_user_secret_arn"),
        "{}",
        shown.stdout
    );
    assert!(
        !shown.stdout.to_lowercase().contains("\"password\""),
        "{}",
        shown.stdout
    );

    // A kubeconfig for the cluster, from the state alone (no AWS call): the recorded endpoint
    // and CA, and a user that runs this trails binary's `eks-token`.
    let before = moto.requests();
    let kubeconfig = trails(&moto, &file, &["output", "kubeconfig"]);
    assert_eq!(kubeconfig.code, 0, "{}", kubeconfig.stderr);
    assert_eq!(moto.requests(), before, "output kubeconfig called AWS");
    let document: serde_json::Value =
        serde_yaml::from_str(&kubeconfig.stdout).expect("a YAML kubeconfig");
    let outputs: serde_json::Value =
        serde_json::from_str(&trails(&moto, &file, &["output", "--json"]).stdout).expect("json");
    let cluster = &outputs["aws.eks_cluster.main"];
    assert_eq!(
        document["clusters"][0]["cluster"]["server"], cluster["endpoint"],
        "{document:#}"
    );
    assert_eq!(
        document["clusters"][0]["cluster"]["certificate-authority-data"],
        cluster["certificate_authority"]
    );
    assert_eq!(document["current-context"], cluster["name"]);
    let exec = &document["users"][0]["user"]["exec"];
    assert_eq!(
        exec["args"],
        serde_json::json!([
            "eks-token",
            "--cluster",
            cluster["name"],
            "--region",
            "us-east-1"
        ])
    );

    let before = moto.requests();
    let again = trails(&moto, &file, &["apply", "--yes"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stdout.contains("Nothing to do"), "{}", again.stdout);
    assert_eq!(moto.requests(), before, "a no-op apply made AWS calls");

    // Changing values in place updates only what changed.
    let edit = [
        "--var",
        "ingress=10.0.0.0/8",
        "--var",
        "expire_days=30",
        "--var",
        "kubernetes=1.35",
        "--var",
        "general_max=5",
    ];
    let mut args = vec!["apply", "--yes"];
    args.extend(edit);
    let updated = trails(&moto, &file, &args);
    assert_eq!(updated.code, 0, "{}\n{}", updated.stdout, updated.stderr);
    assert!(
        updated
            .stdout
            .contains("0 to create, 4 to update, 0 to replace"),
        "{}",
        updated.stdout
    );
    rt.block_on(check_attributes(&moto, "10.0.0.0/8", 30));
    // Two minor versions up: EKS takes one at a time, trails walks them.
    rt.block_on(check_platform(&moto, "1.35", 5));
    assert_eq!(rt.block_on(redis_token(&moto)), token, "the token changed");
    assert_eq!(rt.block_on(census(&moto)), EVERYTHING());

    // Versions in a bucket do not stop an ephemeral environment's destroy.
    let (_, s3) = moto.clients();
    for body in ["one", "two"] {
        rt.block_on(
            s3.put_object()
                .bucket("trails-demo-local-backups")
                .key("backup.tar")
                .body(body.as_bytes().to_vec().into())
                .send(),
        )
        .expect("put object");
    }

    let started = Instant::now();
    let mut args = vec!["destroy", "--yes"];
    args.extend(edit);
    let destroyed = trails(&moto, &file, &args);
    assert_eq!(
        destroyed.code, 0,
        "{}\n{}",
        destroyed.stdout, destroyed.stderr
    );
    eprintln!(
        "destroy against moto took {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(rt.block_on(census(&moto)), NOTHING());
    let listed = trails(&moto, &file, &["state", "list"]);
    assert_eq!(
        listed.stdout.trim(),
        "",
        "the state still lists {}",
        listed.stdout
    );
}

/// How many resources the state at `path` records.
fn recorded_resources(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|state| state["resources"].as_object().map(|r| r.len()))
        .unwrap_or(0)
}

/// `trails apply` of `file`, one change at a time, in the background (stderr captured).
fn apply_one_at_a_time(moto: &Moto, file: &Path) -> std::process::Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("trails"))
        .args(["apply", "--yes", "--parallelism", "1", "-f"])
        .arg(file)
        .envs(moto.env())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("trails starts")
}

/// Waits until the state at `state` records `count` resources (or the run ends).
fn run_until_recorded(child: &mut std::process::Child, state: &Path, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while recorded_resources(state) < count {
        assert!(
            Instant::now() < deadline,
            "the apply recorded nothing within 120s"
        );
        if child.try_wait().expect("child status").is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// How far apart the kill points of a loop are: `usual`, or 1 with `TRAILS_KILL_EVERY=1`.
fn kill_stride(usual: usize) -> usize {
    if std::env::var("TRAILS_KILL_EVERY").is_ok_and(|every| every == "1") {
        1
    } else {
        usual
    }
}

/// Starts an apply of the example (`extra` arguments added) that moto holds after exactly `k`
/// mutating calls, and waits until it is held.
fn apply_held_after(moto: &Moto, file: &Path, k: usize, extra: &[&str]) -> std::process::Child {
    let mut command = vec!["apply", "--yes"];
    command.extend(extra);
    held_after(moto, file, k, &command)
}

/// Starts `trails COMMAND` on the example, which moto holds after exactly `k` mutating calls,
/// and waits until it is held.
fn held_after(moto: &Moto, file: &Path, k: usize, command: &[&str]) -> std::process::Child {
    moto.close_gate_after(k);
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("trails"))
        .args(command)
        .arg("-f")
        .arg(file)
        .envs(moto.env())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("trails starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    while moto.held() == 0 {
        assert!(
            Instant::now() < deadline,
            "kill point {k}: no call was held within 120s"
        );
        let status = child.try_wait().expect("child status");
        assert!(
            status.is_none(),
            "kill point {k}: trails ended ({status:?}) before any call was held"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

/// Kills an apply of the example, one change at a time (SIGKILL, no cleanup), after exactly
/// `k` mutating calls; the next call, held at moto, runs after the kill, as AWS runs a request
/// whose caller died.
fn kill_apply_after(moto: &Moto, file: &Path, k: usize) {
    let mut child = apply_held_after(moto, file, k, &["--parallelism", "1"]);
    let _ = child.kill();
    let _ = child.wait();
    moto.open_gate();
}

/// How many mutating calls a whole apply of the example makes, one change at a time; moto is
/// left empty again.
fn mutating_calls_of_the_example(moto: &Moto) -> usize {
    let (_dir, file) = workspace();
    let before = moto.mutating_calls();
    let whole = trails(moto, &file, &["apply", "--yes", "--parallelism", "1"]);
    assert_eq!(whole.code, 0, "{}\n{}", whole.stdout, whole.stderr);
    let total = moto.mutating_calls() - before;
    assert_eq!(trails(moto, &file, &["destroy", "--yes"]).code, 0);
    assert_eq!(runtime().block_on(census(moto)), NOTHING());
    assert!(total > 50, "the example made only {total} mutating calls");
    total
}

/// Destroys the example `file` and checks that nothing is left: in moto (census) and in the
/// state (no resource, no intent).
fn destroys_clean(moto: &Moto, rt: &tokio::runtime::Runtime, file: &Path, what: &str) {
    let destroyed = trails(moto, file, &["destroy", "--yes"]);
    assert_eq!(
        destroyed.code, 0,
        "{what}: the destroy failed\n{}\n{}",
        destroyed.stdout, destroyed.stderr
    );
    assert_eq!(
        rt.block_on(census(moto)),
        NOTHING(),
        "{what}: the destroy left something\n{}",
        destroyed.stdout
    );
    super::assert_state_records_nothing(&file.with_file_name(".trails/local.state.json"), what);
}

#[test]
fn an_apply_killed_after_any_mutating_call_resumes_with_one_of_everything_and_destroys_clean() {
    let moto = Moto::start();
    let rt = runtime();
    let total = mutating_calls_of_the_example(&moto);

    // Every other kill point (every one with TRAILS_KILL_EVERY=1): after the first mutating
    // call, the third, ... up to the one before the last; the whole apply's order is fixed
    // with one change at a time. The other points are the destroy test's.
    for k in (1..total).step_by(kill_stride(2)) {
        moto.reset();
        let (dir, file) = workspace();
        kill_apply_after(&moto, &file, k);
        let resumed = trails(&moto, &file, &["apply", "--yes"]);
        assert_eq!(
            resumed.code, 0,
            "kill point {k} of {total}: the resume failed\n{}\n{}",
            resumed.stdout, resumed.stderr
        );
        assert_eq!(
            rt.block_on(census(&moto)),
            EVERYTHING(),
            "kill point {k} of {total}: not exactly one of everything"
        );
        let state = std::fs::read_to_string(dir.path().join(".trails/local.state.json"))
            .expect("state file");
        assert!(
            !state.contains("\"intents\""),
            "kill point {k}: intents left in the state:\n{state}"
        );
        let replan = trails(&moto, &file, &["plan", "--detailed-exitcode"]);
        assert_eq!(
            replan.code, 0,
            "kill point {k} of {total}: the re-plan is not clean\n{}\n{}",
            replan.stdout, replan.stderr
        );
        let destroyed = trails(&moto, &file, &["destroy", "--yes"]);
        assert_eq!(
            destroyed.code, 0,
            "kill point {k} of {total}: the destroy failed\n{}\n{}",
            destroyed.stdout, destroyed.stderr
        );
        assert_eq!(
            rt.block_on(census(&moto)),
            NOTHING(),
            "kill point {k} of {total}: the destroy left something"
        );
    }
}

#[test]
fn an_apply_killed_at_any_point_and_then_destroyed_leaves_nothing_behind() {
    let moto = Moto::start();
    let rt = runtime();
    let total = mutating_calls_of_the_example(&moto);

    // Every fourth kill point, between the resume test's (every one with
    // TRAILS_KILL_EVERY=1): what an interrupted create made, recorded or not (a bucket created
    // but never tagged), goes with the destroy that follows.
    let first = if kill_stride(4) == 1 { 1 } else { 2 };
    for k in (first..total).step_by(kill_stride(4)) {
        moto.reset();
        let (_dir, file) = workspace();
        kill_apply_after(&moto, &file, k);
        destroys_clean(&moto, &rt, &file, &format!("kill point {k} of {total}"));
    }
}

#[test]
fn a_second_interrupt_stops_at_once_and_the_next_apply_finds_what_was_abandoned() {
    let moto = Moto::start();
    let (dir, file) = workspace();
    let mut child = apply_held_after(&moto, &file, 20, &[]);
    let pid = child.id().to_string();
    let interrupt = || {
        let sent = std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success());
    };
    interrupt();
    // The first waits for the running changes, one of which moto holds.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        child.try_wait().expect("status").is_none(),
        "the first interrupt did not wait for the running changes"
    );
    interrupt();
    let started = Instant::now();
    let output = child.wait_with_output().expect("trails ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the second interrupt did not stop the run at once"
    );
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("stopped at once by a second interrupt")
            && stderr.contains("abandoned while running"),
        "{stderr}"
    );
    assert!(
        !dir.path().join(".trails/local.state.json.lock").exists(),
        "the lock was left behind"
    );
    moto.open_gate();
    let resumed = trails(&moto, &file, &["apply", "--yes"]);
    assert_eq!(resumed.code, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    assert_eq!(runtime().block_on(census(&moto)), EVERYTHING());
}

#[test]
fn a_sigtermed_apply_records_what_finished_releases_its_lock_and_resumes() {
    let moto = Moto::start();
    let (dir, file) = workspace();
    let state = dir.path().join(".trails/local.state.json");
    let lock = dir.path().join(".trails/local.state.json.lock");
    let mut child = apply_one_at_a_time(&moto, &file);
    run_until_recorded(&mut child, &state, 3);
    assert!(
        child.try_wait().expect("child status").is_none(),
        "the apply ended before it was stopped"
    );
    // What a cancelled CI job sends.
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let output = child.wait_with_output().expect("trails ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("interrupted; everything that finished is recorded"),
        "{stderr}"
    );
    assert!(!lock.exists(), "the lock was left behind");
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).expect("state")).expect("json");
    let count = recorded["resources"].as_object().map_or(0, |r| r.len());
    assert!((3..41).contains(&count), "{count} resources recorded");

    let resumed = trails(&moto, &file, &["apply", "--yes"]);
    assert_eq!(resumed.code, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    assert_eq!(runtime().block_on(census(&moto)), EVERYTHING());
}

#[test]
fn resources_created_but_not_recorded_are_adopted_by_their_tags() {
    let moto = Moto::start();
    let (dir, file) = workspace();
    assert_eq!(trails(&moto, &file, &["apply", "--yes"]).code, 0);
    let path = dir.path().join(".trails/local.state.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("state")).expect("json");
    let forgotten = [
        "aws.subnet.public-a",
        "aws.nat_gateway.a",
        "aws.s3_bucket.audit",
        "aws.network_acl.private",
        "aws.iam_role.eks-nodes",
        "aws.iam_oidc_provider.eks",
        "aws.eks_node_group.general",
        "aws.eks_addon.coredns",
        "aws.elasticache_parameter_group.main",
        "aws.elasticache_replication_group.main",
    ];
    let mut ids = Vec::new();
    for address in forgotten {
        let removed = state["resources"]
            .as_object_mut()
            .expect("resources")
            .remove(address)
            .unwrap_or_else(|| panic!("{address} was recorded"));
        ids.push(removed["id"].clone());
    }
    std::fs::write(&path, serde_json::to_string(&state).expect("json")).expect("write state");

    let resumed = trails(&moto, &file, &["apply", "--yes"]);
    assert_eq!(resumed.code, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    assert_eq!(
        runtime().block_on(census(&moto)),
        EVERYTHING(),
        "something was created twice"
    );
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("state")).expect("json");
    for (address, id) in forgotten.iter().zip(ids) {
        assert_eq!(
            state["resources"][address]["id"], id,
            "{address} was not adopted"
        );
    }
}

#[test]
fn diff_finds_aws_resources_deleted_by_hand_and_a_refreshed_apply_makes_them_again() {
    let moto = Moto::start();
    let (dir, file) = workspace();
    let rt = runtime();
    assert_eq!(trails(&moto, &file, &["apply", "--yes"]).code, 0);
    let clean = trails(&moto, &file, &["diff", "--detailed-exitcode"]);
    assert_eq!(clean.code, 0, "{}\n{}", clean.stdout, clean.stderr);
    assert!(
        clean.stdout.contains("No drift among the 41 resource(s)")
            && !clean.stdout.contains("existence only"),
        "{}",
        clean.stdout
    );

    // By hand: the flow log and the audit bucket deleted.
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(".trails/local.state.json")).expect("state"),
    )
    .expect("json");
    let resources = state["resources"].as_object().expect("resources");
    let (flow_log, recorded) = resources
        .iter()
        .find(|(address, _)| address.starts_with("aws.flow_log."))
        .expect("a flow log is recorded");
    let flow_log_id = recorded["id"].as_str().expect("flow log id").to_string();
    let bucket = resources["aws.s3_bucket.audit"]["id"]
        .as_str()
        .expect("bucket name")
        .to_string();
    let (ec2, s3) = moto.clients();
    rt.block_on(ec2.delete_flow_logs().flow_log_ids(&flow_log_id).send())
        .expect("delete the flow log by hand");
    rt.block_on(s3.delete_bucket().bucket(&bucket).send())
        .expect("delete the bucket by hand");

    let diff = trails(&moto, &file, &["diff", "--detailed-exitcode"]);
    assert_eq!(diff.code, 2, "{}\n{}", diff.stdout, diff.stderr);
    for expected in [
        format!("- {flow_log}: deleted outside trails"),
        "- aws.s3_bucket.audit: deleted outside trails".to_string(),
        "Drift: 2 of".to_string(),
    ] {
        assert!(
            diff.stdout.contains(&expected),
            "`{expected}` missing:\n{}",
            diff.stdout
        );
    }
    let plan = trails(&moto, &file, &["plan", "--refresh", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}\n{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout.contains("+ aws.s3_bucket.audit\n")
            && plan.stdout.contains(&format!("+ {flow_log}\n"))
            && plan.stdout.contains("! deleted outside trails")
            && plan
                .stdout
                .contains("Plan: 2 to create, 0 to update, 0 to replace, 0 to delete"),
        "{}",
        plan.stdout
    );
    // Without --refresh the plan trusts the state.
    let plain = trails(&moto, &file, &["plan", "--detailed-exitcode"]);
    assert_eq!(plain.code, 0, "{}\n{}", plain.stdout, plain.stderr);

    let repaired = trails(&moto, &file, &["apply", "--refresh", "--yes"]);
    assert_eq!(repaired.code, 0, "{}\n{}", repaired.stdout, repaired.stderr);
    assert_eq!(
        rt.block_on(census(&moto)),
        EVERYTHING(),
        "everything is back, nothing twice"
    );
    let clean = trails(&moto, &file, &["diff", "--detailed-exitcode"]);
    assert_eq!(clean.code, 0, "{}\n{}", clean.stdout, clean.stderr);
}

/// The mutating calls moto served after the `from`-th call.
fn writes_since(moto: &Moto, from: usize) -> Vec<String> {
    moto.calls()
        .iter()
        .skip(from)
        .filter(|call| call.mutates())
        .map(ToString::to_string)
        .collect()
}

#[test]
fn diff_reads_without_writing_names_each_setting_changed_by_hand_and_a_refreshed_apply_repairs_them()
 {
    let moto = Moto::start();
    let (dir, file) = workspace();
    let rt = runtime();
    assert_eq!(trails(&moto, &file, &["apply", "--yes"]).code, 0);

    // A fresh apply diffs clean, reading every resource's settings and writing nothing.
    let before = moto.calls().len();
    let clean = trails(&moto, &file, &["diff", "--detailed-exitcode"]);
    assert_eq!(clean.code, 0, "{}\n{}", clean.stdout, clean.stderr);
    assert!(
        clean
            .stdout
            .contains("No drift among the 41 resource(s) read back."),
        "{}",
        clean.stdout
    );
    assert!(moto.calls().len() > before, "diff read nothing");
    assert_eq!(writes_since(&moto, before), Vec::<String>::new());

    // By hand: SSH opened on the database's security group, the backups bucket's versioning
    // suspended, the general node pool resized.
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(".trails/local.state.json")).expect("state"),
    )
    .expect("json");
    let id = |address: &str| {
        state["resources"][address]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{address} has no recorded id"))
            .to_string()
    };
    let (ec2, s3) = moto.clients();
    rt.block_on(
        ec2.authorize_security_group_ingress()
            .group_id(id("aws.security_group.database"))
            .ip_permissions(
                aws_sdk_ec2::types::IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(22)
                    .to_port(22)
                    .ip_ranges(
                        aws_sdk_ec2::types::IpRange::builder()
                            .cidr_ip("0.0.0.0/0")
                            .build(),
                    )
                    .build(),
            )
            .send(),
    )
    .expect("open SSH by hand");
    rt.block_on(
        s3.put_bucket_versioning()
            .bucket(id("aws.s3_bucket.backups"))
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Suspended)
                    .build(),
            )
            .send(),
    )
    .expect("suspend versioning by hand");
    let node_group = id("aws.eks_node_group.general");
    let (cluster, group) = node_group.split_once(':').expect("CLUSTER:GROUP");
    rt.block_on(
        moto.eks()
            .update_nodegroup_config()
            .cluster_name(cluster)
            .nodegroup_name(group)
            .scaling_config(
                aws_sdk_eks::types::NodegroupScalingConfig::builder()
                    .min_size(2)
                    .max_size(6)
                    .desired_size(4)
                    .build(),
            )
            .send(),
    )
    .expect("resize the node group by hand");

    let before = moto.calls().len();
    let diff = trails(&moto, &file, &["diff", "--detailed-exitcode"]);
    assert_eq!(diff.code, 2, "{}\n{}", diff.stdout, diff.stderr);
    for expected in [
        "~ aws.security_group.database: changed outside trails\n      ingress: added \"tcp 22 0.0.0.0/0\"",
        "~ aws.s3_bucket.backups: changed outside trails\n      versioning: true -> false",
        "~ aws.eks_node_group.general: changed outside trails\n      scaling.max: 3 -> 6\n      scaling.min: 1 -> 2",
        "Drift: 3 of 41 resource(s)",
    ] {
        assert!(
            diff.stdout.contains(expected),
            "`{expected}` missing:\n{}",
            diff.stdout
        );
    }
    // The desired size belongs to the autoscaler: not drift.
    assert!(!diff.stdout.contains("desired"), "{}", diff.stdout);
    let json = trails(&moto, &file, &["diff", "--json"]);
    let document: serde_json::Value = serde_json::from_str(&json.stdout).expect("diff --json");
    assert_eq!(document["summary"]["drifted"], 3, "{}", json.stdout);
    assert_eq!(
        document["resources"]["aws.s3_bucket.backups"]["status"],
        "changed"
    );
    let plan = trails(&moto, &file, &["plan", "--refresh", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}\n{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout.contains("versioning = false -> true")
            && plan
                .stdout
                .contains("Plan: 0 to create, 3 to update, 0 to replace, 0 to delete"),
        "{}",
        plan.stdout
    );
    // A refreshed apply that is not confirmed has shown its plan and written nothing.
    let unconfirmed = trails(&moto, &file, &["apply", "--refresh"]);
    assert_eq!(
        unconfirmed.code, 1,
        "{}\n{}",
        unconfirmed.stdout, unconfirmed.stderr
    );
    assert!(
        unconfirmed.stdout.contains("3 to update"),
        "{}",
        unconfirmed.stdout
    );
    assert_eq!(
        writes_since(&moto, before),
        Vec::<String>::new(),
        "diff, plan --refresh and an unconfirmed apply --refresh wrote"
    );

    let before = moto.calls().len();
    let repaired = trails(&moto, &file, &["apply", "--refresh", "--yes"]);
    assert_eq!(repaired.code, 0, "{}\n{}", repaired.stdout, repaired.stderr);
    let writes = writes_since(&moto, before);
    assert!(
        writes
            .iter()
            .any(|call| call.contains("RevokeSecurityGroupIngress"))
            && writes
                .iter()
                .any(|call| call.starts_with("PUT /trails-demo-local-backups"))
            && writes.iter().any(|call| call.contains("/update-config")),
        "{writes:?}"
    );
    let clean = trails(&moto, &file, &["diff", "--detailed-exitcode"]);
    assert_eq!(clean.code, 0, "{}\n{}", clean.stdout, clean.stderr);
    let versioning = rt
        .block_on(
            s3.get_bucket_versioning()
                .bucket(id("aws.s3_bucket.backups"))
                .send(),
        )
        .expect("versioning");
    assert_eq!(
        versioning.status(),
        Some(&aws_sdk_s3::types::BucketVersioningStatus::Enabled)
    );
}

#[test]
fn a_failed_resource_stops_only_what_depends_on_it() {
    let moto = Moto::start();
    let (dir, file) = workspace();
    let (_, s3) = moto.clients();
    runtime()
        .block_on(s3.create_bucket().bucket("trails-demo-local-plain").send())
        .expect("a bucket someone else made");

    let applied = trails(&moto, &file, &["apply", "--yes"]);
    assert_eq!(applied.code, 1, "{}\n{}", applied.stdout, applied.stderr);
    assert!(
        applied
            .stderr
            .contains("bucket trails-demo-local-plain exists but was not created by trails"),
        "{}",
        applied.stderr
    );
    assert!(applied.stdout.contains("1 failed"), "{}", applied.stdout);
    let listed = trails(&moto, &file, &["state", "list"]);
    assert!(listed.stdout.contains("aws.vpc.main"), "{}", listed.stdout);
    assert!(
        listed.stdout.contains("aws.s3_bucket.backups"),
        "{}",
        listed.stdout
    );
    assert!(
        !listed.stdout.contains("aws.s3_bucket.plain"),
        "{}",
        listed.stdout
    );
    assert!(
        !dir.path().join(".trails/local.state.json.lock").exists(),
        "the lock was not released"
    );
}

#[test]
fn destroy_refuses_resource_types_it_cannot_execute_before_any_call() {
    // Every type a blueprint declares can be applied now; a state written by a newer trails
    // can still name one this trails does not know.
    let moto = Moto::start();
    let (dir, file) = workspace();
    let applied = trails(&moto, &file, &["apply", "--yes"]);
    assert_eq!(applied.code, 0, "{}\n{}", applied.stdout, applied.stderr);
    let path = dir.path().join(".trails/local.state.json");
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("state")).expect("json");
    state["resources"]["aws.lambda_function.hook"] = serde_json::json!({
        "type": "aws.lambda_function",
        "id": "hook",
        "attributes": {},
        "outputs": {},
        "depends_on": ["aws.vpc.main"],
    });
    std::fs::write(&path, serde_json::to_string(&state).expect("json")).expect("write state");
    let before = moto.requests();
    let result = trails(&moto, &file, &["destroy", "--yes"]);
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        result
            .stderr
            .contains("apply cannot execute these changes yet"),
        "{}",
        result.stderr
    );
    assert!(
        result.stderr.contains("aws.lambda_function"),
        "{}",
        result.stderr
    );
    assert_eq!(moto.requests(), before, "calls were made before refusing");
}

#[test]
fn destroy_refuses_a_protected_environment_without_the_override() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("protected.yaml");
    std::fs::write(
        &file,
        "blueprint: trails-demo\nregion: us-east-1\nenvironments:\n  prod: { protect: true }\nbuckets:\n  keep: {}\n",
    )
    .expect("write");
    assert_eq!(trails(&moto, &file, &["apply", "--yes"]).code, 0);
    let refused = trails(&moto, &file, &["destroy", "--yes"]);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("is protected"),
        "{}",
        refused.stderr
    );
    assert!(
        runtime()
            .block_on(census(&moto))
            .buckets
            .contains("trails-demo-prod-keep")
    );
    let forced = trails(&moto, &file, &["destroy", "--yes", "--override-protection"]);
    assert_eq!(forced.code, 0, "{}", forced.stderr);
}

#[test]
fn a_protected_environment_refuses_deletes_and_keeps_its_protection_until_turned_off_alone() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("protected.yaml");
    let write = |protect: bool, buckets: &str| {
        std::fs::write(
            &file,
            format!(
                "blueprint: trails-demo\nregion: us-east-1\nenvironments:\n  prod: {{ protect: {protect} }}\nbuckets:\n{buckets}"
            ),
        )
        .expect("write");
    };
    write(true, "  keep: {}\n  old: {}\n");
    assert_eq!(trails(&moto, &file, &["apply", "--yes"]).code, 0);

    // Dropping a bucket from a protected environment is refused before any call.
    write(true, "  keep: {}\n");
    let planned = trails(&moto, &file, &["plan"]);
    assert!(
        planned.stderr.contains("note: apply will refuse this plan"),
        "{}",
        planned.stderr
    );
    let before = moto.calls().len();
    let refused = trails(&moto, &file, &["apply", "--yes"]);
    assert_eq!(refused.code, 1, "{}\n{}", refused.stdout, refused.stderr);
    assert!(
        refused
            .stderr
            .contains("this plan would delete or replace aws.s3_bucket.old"),
        "{}",
        refused.stderr
    );
    assert_eq!(moto.calls().len(), before, "a refused apply called AWS");

    // The same edit cannot switch protection off on the way.
    write(false, "  keep: {}\n");
    let sneaky = trails(&moto, &file, &["apply", "--yes"]);
    assert_eq!(sneaky.code, 1, "{}\n{}", sneaky.stdout, sneaky.stderr);
    assert!(
        sneaky
            .stderr
            .contains("turning protection off takes an apply of that change alone"),
        "{}",
        sneaky.stderr
    );
    assert!(
        runtime()
            .block_on(census(&moto))
            .buckets
            .contains("trails-demo-prod-old")
    );

    // Turning it off alone is recorded; then the bucket can go.
    write(false, "  keep: {}\n  old: {}\n");
    let off = trails(&moto, &file, &["apply", "--yes"]);
    assert_eq!(off.code, 0, "{}\n{}", off.stdout, off.stderr);
    assert!(
        off.stdout
            .contains("Protection of environment `prod` is off"),
        "{}",
        off.stdout
    );
    write(false, "  keep: {}\n");
    let removed = trails(&moto, &file, &["apply", "--yes"]);
    assert_eq!(removed.code, 0, "{}\n{}", removed.stdout, removed.stderr);
    assert!(
        !runtime()
            .block_on(census(&moto))
            .buckets
            .contains("trails-demo-prod-old")
    );
}

#[test]
fn a_bucket_of_another_environment_is_refused_not_adopted_and_survives() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("two.yaml");
    std::fs::write(
        &file,
        "blueprint: trails-demo\nregion: us-east-1\nenvironments:\n  a: {}\n  b: {}\nbuckets:\n  shared: { name: trails-demo-shared-bucket }\n",
    )
    .expect("write");
    let applied = trails(&moto, &file, &["apply", "--yes", "-e", "a"]);
    assert_eq!(applied.code, 0, "{}\n{}", applied.stdout, applied.stderr);
    let refused = trails(&moto, &file, &["apply", "--yes", "-e", "b"]);
    assert_eq!(refused.code, 1, "{}\n{}", refused.stdout, refused.stderr);
    assert!(
        refused.stderr.contains(
            "bucket trails-demo-shared-bucket exists but was not created by trails for aws.s3_bucket.shared in this environment"
        ),
        "{}",
        refused.stderr
    );
    let destroyed = trails(&moto, &file, &["destroy", "--yes", "-e", "b"]);
    assert_eq!(
        destroyed.code, 0,
        "{}\n{}",
        destroyed.stdout, destroyed.stderr
    );
    let (_, s3) = moto.clients();
    let tags = runtime()
        .block_on(
            s3.get_bucket_tagging()
                .bucket("trails-demo-shared-bucket")
                .send(),
        )
        .expect("the bucket survives with its tags");
    assert!(
        tags.tag_set()
            .iter()
            .any(|tag| tag.key() == "trails:environment" && tag.value() == "a"),
        "{tags:?}"
    );
}

#[test]
fn a_lasting_environment_never_bypasses_governance_retention_on_destroy() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("locked.yaml");
    std::fs::write(
        &file,
        "blueprint: trails-demo\nregion: us-east-1\nenvironments:\n  keep: {}\nbuckets:\n  locked: { object_lock: { mode: governance, days: 1 }, force_destroy: true }\n",
    )
    .expect("write");
    assert_eq!(trails(&moto, &file, &["apply", "--yes"]).code, 0);
    let (_, s3) = moto.clients();
    runtime()
        .block_on(
            s3.put_object()
                .bucket("trails-demo-keep-locked")
                .key("audit.log")
                .body(b"kept".to_vec().into())
                .send(),
        )
        .expect("put an object");
    let destroyed = trails(&moto, &file, &["destroy", "--yes"]);
    assert_eq!(
        destroyed.code, 1,
        "{}\n{}",
        destroyed.stdout, destroyed.stderr
    );
    assert!(
        destroyed.stderr.contains("could not be deleted"),
        "{}",
        destroyed.stderr
    );
    let listed = runtime()
        .block_on(
            s3.list_object_versions()
                .bucket("trails-demo-keep-locked")
                .send(),
        )
        .expect("the bucket is still there");
    assert_eq!(listed.versions().len(), 1, "the locked version was deleted");
}

#[test]
fn a_saved_plan_is_applied_exactly_once_and_refused_when_stale() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("buckets.yaml");
    std::fs::write(
        &file,
        "blueprint: trails-demo\nregion: us-east-1\nenvironments:\n  dev: { ephemeral: true }\nbuckets:\n  one: {}\n",
    )
    .expect("write");
    let saved = dir.path().join("plan.json");
    let saved_arg = saved.to_str().expect("utf-8");
    assert_eq!(trails(&moto, &file, &["plan", "--out", saved_arg]).code, 0);
    let applied = trails(&moto, &file, &["apply", "--yes", "--plan", saved_arg]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    // The state moved on: the same plan must not run again.
    std::fs::write(
        &file,
        "blueprint: trails-demo\nregion: us-east-1\nenvironments:\n  dev: { ephemeral: true }\nbuckets:\n  one: {}\n  two: {}\n",
    )
    .expect("write");
    let stale = trails(&moto, &file, &["apply", "--yes", "--plan", saved_arg]);
    assert_eq!(stale.code, 1);
    assert!(
        stale.stderr.contains("was made against state serial 0"),
        "{}",
        stale.stderr
    );
    // A plan saved now, then a blueprint edited before apply: refused as well.
    assert_eq!(trails(&moto, &file, &["plan", "--out", saved_arg]).code, 0);
    std::fs::write(
        &file,
        "blueprint: trails-demo\nregion: us-east-1\nenvironments:\n  dev: { ephemeral: true }\nbuckets:\n  one: {}\n  three: {}\n",
    )
    .expect("write");
    let changed = trails(&moto, &file, &["apply", "--yes", "--plan", saved_arg]);
    assert_eq!(changed.code, 1);
    assert!(
        changed
            .stderr
            .contains("the blueprint changed since the plan"),
        "{}",
        changed.stderr
    );
    assert!(
        !runtime()
            .block_on(census(&moto))
            .buckets
            .contains("trails-demo-dev-three")
    );
}

/// Tags as EC2 takes them at creation.
fn tagged(
    kind: aws_sdk_ec2::types::ResourceType,
    tags: &[(&str, &str)],
) -> aws_sdk_ec2::types::TagSpecification {
    let mut spec = aws_sdk_ec2::types::TagSpecification::builder().resource_type(kind);
    for (key, value) in tags {
        spec = spec.tags(
            aws_sdk_ec2::types::Tag::builder()
                .key(*key)
                .value(*value)
                .build(),
        );
    }
    spec.build()
}

fn elb_tags(tags: &[(&str, &str)]) -> Vec<aws_sdk_elasticloadbalancingv2::types::Tag> {
    tags.iter()
        .map(|(key, value)| {
            aws_sdk_elasticloadbalancingv2::types::Tag::builder()
                .key(*key)
                .value(*value)
                .build()
        })
        .collect()
}

async fn subnet_at(ec2: &aws_sdk_ec2::Client, address: &str) -> String {
    let found = ec2
        .describe_subnets()
        .filters(
            Filter::builder()
                .name("tag:trails:address")
                .values(address)
                .build(),
        )
        .send()
        .await
        .expect("describe subnets");
    found.subnets()[0]
        .subnet_id()
        .expect("subnet id")
        .to_string()
}

async fn load_balancer_names(elb: &aws_sdk_elasticloadbalancingv2::Client) -> BTreeSet<String> {
    let found = elb
        .describe_load_balancers()
        .send()
        .await
        .expect("describe load balancers");
    found
        .load_balancers()
        .iter()
        .filter_map(|lb| lb.load_balancer_name().map(String::from))
        .collect()
}

/// What Kubernetes made in the platform's AWS account: a controller's load balancer, target
/// group and security group, a CSI volume, an interface the VPC CNI leaked, and things made
/// with the environment's default tags. Plus what a person made by hand in the VPC, and a
/// load balancer of another cluster elsewhere.
struct Planted {
    foreign_load_balancer: String,
    hand_made_subnet: String,
    hand_made_group: String,
    /// Another team's group the cluster only uses (`kubernetes.io/cluster/NAME: shared`).
    shared_group: String,
}

async fn plant_leftovers(moto: &Moto, cluster: &str) -> Planted {
    use aws_sdk_ec2::types::ResourceType;
    let (ec2, _) = moto.clients();
    let elb = moto.elb();
    let vpc = ec2
        .describe_vpcs()
        .filters(ours())
        .send()
        .await
        .expect("describe vpcs")
        .vpcs()[0]
        .vpc_id()
        .expect("vpc id")
        .to_string();
    let public = [
        subnet_at(&ec2, "aws.subnet.public-a").await,
        subnet_at(&ec2, "aws.subnet.public-b").await,
    ];
    let private_a = subnet_at(&ec2, "aws.subnet.private-a").await;
    let controller = [
        ("elbv2.k8s.aws/cluster", cluster),
        (
            "service.k8s.aws/stack",
            "ingress-nginx/ingress-nginx-controller",
        ),
    ];
    let environment = [
        ("trails:blueprint", BLUEPRINT),
        ("trails:environment", "local"),
    ];

    elb.create_load_balancer()
        .name("k8s-ingress-controller")
        .set_subnets(Some(public.to_vec()))
        .set_tags(Some(elb_tags(&controller)))
        .send()
        .await
        .expect("controller's load balancer");
    elb.create_target_group()
        .name("k8s-ingress-http")
        .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
        .port(80)
        .vpc_id(&vpc)
        .set_tags(Some(elb_tags(&controller)))
        .send()
        .await
        .expect("controller's target group");
    elb.create_load_balancer()
        .name("tagged-by-default-tags")
        .set_subnets(Some(public.to_vec()))
        .set_tags(Some(elb_tags(&environment)))
        .send()
        .await
        .expect("environment-tagged load balancer");
    ec2.create_volume()
        .availability_zone("us-east-1a")
        .size(10)
        .tag_specifications(tagged(
            ResourceType::Volume,
            &[
                (&format!("kubernetes.io/cluster/{cluster}"), "owned"),
                ("kubernetes.io/created-for/pvc/name", "data-redpanda-0"),
            ],
        ))
        .send()
        .await
        .expect("CSI volume");
    ec2.create_network_interface()
        .subnet_id(&private_a)
        .description("aws-K8S-i-0123456789")
        .tag_specifications(tagged(
            ResourceType::NetworkInterface,
            &[("cluster.k8s.amazonaws.com/name", cluster)],
        ))
        .send()
        .await
        .expect("CNI interface");
    ec2.create_network_interface()
        .subnet_id(&public[0])
        .description("made with the environment's tags")
        .tag_specifications(tagged(ResourceType::NetworkInterface, &environment))
        .send()
        .await
        .expect("environment-tagged interface");
    let group = ec2
        .create_security_group()
        .group_name(format!("k8s-traffic-{cluster}"))
        .description("[k8s] shared backend security group")
        .vpc_id(&vpc)
        .tag_specifications(tagged(
            ResourceType::SecurityGroup,
            &[("elbv2.k8s.aws/cluster", cluster)],
        ))
        .send()
        .await
        .expect("controller's security group");
    ec2.authorize_security_group_ingress()
        .group_id(group.group_id().expect("group id"))
        .ip_permissions(
            aws_sdk_ec2::types::IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(80)
                .to_port(80)
                .ip_ranges(
                    aws_sdk_ec2::types::IpRange::builder()
                        .cidr_ip("0.0.0.0/0")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("rule on the controller's group");

    let hand_made_subnet = ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("10.20.200.0/24")
        .availability_zone("us-east-1a")
        .send()
        .await
        .expect("hand-made subnet")
        .subnet()
        .and_then(|s| s.subnet_id())
        .expect("subnet id")
        .to_string();
    let shared_group = ec2
        .create_security_group()
        .group_name("platform-shared")
        .description("another team's group the cluster uses")
        .vpc_id(&vpc)
        .tag_specifications(tagged(
            ResourceType::SecurityGroup,
            &[(&format!("kubernetes.io/cluster/{cluster}"), "shared")],
        ))
        .send()
        .await
        .expect("shared group")
        .group_id()
        .expect("group id")
        .to_string();
    ec2.authorize_security_group_ingress()
        .group_id(&shared_group)
        .ip_permissions(
            aws_sdk_ec2::types::IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(443)
                .to_port(443)
                .ip_ranges(
                    aws_sdk_ec2::types::IpRange::builder()
                        .cidr_ip("10.0.0.0/8")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("rule on the shared group");
    let hand_made_group = ec2
        .create_security_group()
        .group_name("hand-made")
        .description("made by a person")
        .vpc_id(&vpc)
        .send()
        .await
        .expect("hand-made group")
        .group_id()
        .expect("group id")
        .to_string();

    // Another team's cluster in another VPC.
    let other = ec2
        .create_vpc()
        .cidr_block("10.99.0.0/16")
        .send()
        .await
        .expect("other vpc");
    let other_vpc = other.vpc().and_then(|v| v.vpc_id()).expect("vpc id");
    let mut other_subnets = Vec::new();
    for (cidr, zone) in [
        ("10.99.0.0/24", "us-east-1a"),
        ("10.99.1.0/24", "us-east-1b"),
    ] {
        let made = ec2
            .create_subnet()
            .vpc_id(other_vpc)
            .cidr_block(cidr)
            .availability_zone(zone)
            .send()
            .await
            .expect("other subnet");
        other_subnets.push(
            made.subnet()
                .and_then(|s| s.subnet_id())
                .expect("subnet id")
                .to_string(),
        );
    }
    elb.create_load_balancer()
        .name("someone-elses")
        .set_subnets(Some(other_subnets.clone()))
        .set_tags(Some(elb_tags(&[("elbv2.k8s.aws/cluster", "someone-else")])))
        .send()
        .await
        .expect("another cluster's load balancer");
    // Kubernetes' in-tree cloud provider makes a classic load balancer for a Service of type
    // LoadBalancer that no controller handles; another cluster's stays.
    let classic = moto.elb_classic();
    for (name, subnets, owner) in [
        ("in-tree-web", public.to_vec(), cluster),
        (
            "someone-elses-classic",
            other_subnets.clone(),
            "someone-else",
        ),
    ] {
        classic
            .create_load_balancer()
            .load_balancer_name(name)
            .set_subnets(Some(subnets))
            .listeners(
                aws_sdk_elasticloadbalancing::types::Listener::builder()
                    .protocol("TCP")
                    .load_balancer_port(80)
                    .instance_port(30080)
                    .build()
                    .expect("listener"),
            )
            .tags(
                aws_sdk_elasticloadbalancing::types::Tag::builder()
                    .key(format!("kubernetes.io/cluster/{owner}"))
                    .value("owned")
                    .build()
                    .expect("tag"),
            )
            .send()
            .await
            .expect("classic load balancer");
    }
    Planted {
        foreign_load_balancer: "someone-elses".to_string(),
        hand_made_subnet,
        hand_made_group,
        shared_group,
    }
}

#[test]
fn destroy_removes_what_the_clusters_controllers_left_and_names_what_it_leaves() {
    let moto = Moto::start();
    let (_dir, file) = workspace();
    let rt = runtime();
    let applied = trails(&moto, &file, &["apply", "--yes"]);
    assert_eq!(applied.code, 0, "{}\n{}", applied.stdout, applied.stderr);
    let clusters = rt
        .block_on(moto.eks().list_clusters().send())
        .expect("list clusters");
    let cluster = clusters.clusters()[0].clone();
    let planted = rt.block_on(plant_leftovers(&moto, &cluster));

    // The controllers never release anything here: after the wait, trails removes it.
    let first = trails(&moto, &file, &["destroy", "--yes", "--wait-timeout", "2s"]);
    assert_eq!(first.code, 1, "{}\n{}", first.stdout, first.stderr);
    let log = &first.stderr;
    for expected in [
        "waiting for the cluster's controllers to release load balancer k8s-ingress-controller",
        "still there after 2s, removed once the cluster is gone",
        "removed load balancer k8s-ingress-controller",
        "removed target group k8s-ingress-http",
        "removed volume claim data-redpanda-0",
        "removed network interface aws-K8S-i-0123456789",
        &format!("removed security group k8s-traffic-{cluster}"),
        "removed load balancer tagged-by-default-tags",
        "removed classic load balancer in-tree-web, left by the cluster",
        "removed network interface made with the environment's tags",
        "left by trails-demo/local",
    ] {
        assert!(log.contains(expected), "no `{expected}` in:\n{log}");
    }
    // What nobody tagged stays, and the error says what and why.
    let vpc_failure = log
        .lines()
        .find(|line| line.contains("aws.vpc.main") && line.contains("still holds"))
        .unwrap_or_else(|| panic!("no VPC failure in:\n{log}"));
    // A group the cluster only uses is not its to remove, and keeps its rules.
    let (ec2_check, _) = moto.clients();
    let shared = rt
        .block_on(
            ec2_check
                .describe_security_groups()
                .group_ids(&planted.shared_group)
                .send(),
        )
        .expect("the shared group is still there");
    assert_eq!(
        shared.security_groups()[0].ip_permissions().len(),
        1,
        "the shared group lost its rule: {shared:?}"
    );
    assert!(
        vpc_failure.contains(&planted.hand_made_subnet)
            && vpc_failure.contains(&planted.shared_group)
            && vpc_failure.contains(&planted.hand_made_group)
            && vpc_failure.contains("hand-made")
            && vpc_failure.contains("do not carry this environment's tags"),
        "{vpc_failure}"
    );

    let elb = moto.elb();
    assert_eq!(
        rt.block_on(load_balancer_names(&elb)),
        BTreeSet::from([planted.foreign_load_balancer.clone()]),
        "only the other cluster's load balancer may remain"
    );
    let classic = rt
        .block_on(moto.elb_classic().describe_load_balancers().send())
        .expect("describe classic load balancers");
    let classic: BTreeSet<&str> = classic
        .load_balancer_descriptions()
        .iter()
        .filter_map(|lb| lb.load_balancer_name())
        .collect();
    assert_eq!(classic, BTreeSet::from(["someone-elses-classic"]));
    let (ec2, _) = moto.clients();
    let volumes = rt
        .block_on(ec2.describe_volumes().send())
        .expect("describe volumes");
    assert!(
        volumes.volumes().iter().all(|v| !v
            .tags()
            .iter()
            .any(|t| t.key() == Some("kubernetes.io/created-for/pvc/name"))),
        "{volumes:?}"
    );
    let groups = rt
        .block_on(ec2.describe_security_groups().send())
        .expect("describe groups");
    assert!(
        !groups
            .security_groups()
            .iter()
            .any(|g| g.group_name() == Some(format!("k8s-traffic-{cluster}").as_str())),
        "the controller's security group is still there"
    );

    // Once the person's things are gone, destroy finishes.
    rt.block_on(
        ec2.delete_subnet()
            .subnet_id(&planted.hand_made_subnet)
            .send(),
    )
    .expect("delete hand-made subnet");
    rt.block_on(
        ec2.delete_security_group()
            .group_id(&planted.hand_made_group)
            .send(),
    )
    .expect("delete hand-made group");
    rt.block_on(
        ec2.delete_security_group()
            .group_id(&planted.shared_group)
            .send(),
    )
    .expect("the other team deletes its group");
    let second = trails(&moto, &file, &["destroy", "--yes"]);
    assert_eq!(second.code, 0, "{}\n{}", second.stdout, second.stderr);
    assert_eq!(rt.block_on(census(&moto)), NOTHING());
    let interfaces = rt
        .block_on(ec2.describe_network_interfaces().send())
        .expect("describe interfaces");
    // moto keeps its NAT gateways' interfaces (untagged) after they are deleted; AWS does not.
    assert!(
        interfaces
            .network_interfaces()
            .iter()
            .all(|eni| eni.tag_set().is_empty()),
        "{interfaces:?}"
    );
}

#[test]
fn a_cluster_made_right_after_its_role_waits_until_eks_can_assume_the_role() {
    let moto = Moto::start();
    let rt = runtime();
    // EKS refuses each new role for 3 s, as while IAM propagates it.
    moto.iam_propagation(3.0);
    let (_dir, file) = workspace();
    let applied = trails(&moto, &file, &["apply", "--yes"]);
    assert_eq!(applied.code, 0, "{}\n{}", applied.stdout, applied.stderr);
    let creates = moto
        .calls()
        .iter()
        .filter(|call| call.method == "POST" && call.path == "/clusters")
        .count();
    assert!(
        creates >= 2,
        "CreateCluster was not refused first and repeated ({creates} call(s))"
    );
    assert_eq!(rt.block_on(census(&moto)), EVERYTHING());
    assert_eq!(trails(&moto, &file, &["destroy", "--yes"]).code, 0);
    assert_eq!(rt.block_on(census(&moto)), NOTHING());
}

#[test]
fn destroy_waits_for_nat_gateways_to_let_go_of_their_subnet_and_address() {
    let moto = Moto::start();
    let rt = runtime();
    let (_dir, file) = workspace();
    let applied = trails(&moto, &file, &["apply", "--yes"]);
    assert_eq!(applied.code, 0, "{}\n{}", applied.stdout, applied.stderr);
    // Deleted NAT gateways hold their subnet and address for 3 s, as EC2's do while
    // `deleting`: the subnet and address deletes must come after, not fail.
    moto.linger(3.0);
    let destroyed = trails(&moto, &file, &["destroy", "--yes"]);
    assert_eq!(
        destroyed.code, 0,
        "{}\n{}",
        destroyed.stdout, destroyed.stderr
    );
    assert_eq!(rt.block_on(census(&moto)), NOTHING());
}

/// The Kubernetes minor of the example's control plane and of each node group, as EKS says.
async fn versions(moto: &Moto) -> (String, Vec<String>) {
    let eks = moto.eks();
    let cluster = eks
        .describe_cluster()
        .name("trails-demo-local")
        .send()
        .await
        .expect("cluster");
    let plane = cluster
        .cluster()
        .and_then(|c| c.version())
        .unwrap_or_default()
        .to_string();
    let mut groups = Vec::new();
    let names = eks
        .list_nodegroups()
        .cluster_name("trails-demo-local")
        .send()
        .await
        .expect("node groups");
    for name in names.nodegroups() {
        let group = eks
            .describe_nodegroup()
            .cluster_name("trails-demo-local")
            .nodegroup_name(name)
            .send()
            .await
            .expect("node group");
        groups.push(
            group
                .nodegroup()
                .and_then(|g| g.version())
                .unwrap_or_default()
                .to_string(),
        );
    }
    (plane, groups)
}

/// The control plane and both node groups on `version`, as [`versions`] reads them.
fn everything_on(version: &str) -> (String, Vec<String>) {
    (version.to_string(), vec![version.to_string(); 2])
}

#[test]
fn a_failed_or_cancelled_eks_upgrade_stops_with_its_error_and_the_next_apply_finishes_it() {
    let moto = Moto::start();
    let rt = runtime();
    let (_dir, file) = workspace();
    assert_eq!(trails(&moto, &file, &["apply", "--yes"]).code, 0);
    let to = |version: &str| format!("kubernetes={version}");

    // The control plane's update fails: nothing moved, the error is EKS's, the plan still
    // holds the upgrade.
    moto.eks_updates_end("cluster", Some("Failed"));
    let v134 = to("1.34");
    let failed = trails(&moto, &file, &["apply", "--yes", "--var", &v134]);
    assert_eq!(failed.code, 1, "{}\n{}", failed.stdout, failed.stderr);
    assert!(
        failed.stderr.contains("Failed: the update was failed"),
        "{}",
        failed.stderr
    );
    assert_eq!(rt.block_on(versions(&moto)), everything_on("1.33"));
    let replan = trails(
        &moto,
        &file,
        &["plan", "--detailed-exitcode", "--var", &v134],
    );
    assert_eq!(replan.code, 2, "{}\n{}", replan.stdout, replan.stderr);
    assert!(
        replan.stdout.contains("~ aws.eks_cluster.main"),
        "{}",
        replan.stdout
    );

    // Two steps: the control plane reaches 1.34, then the node groups' update to follow it is
    // cancelled. The walk stops there, half done.
    moto.eks_updates_end("nodegroup", Some("Cancelled"));
    let v135 = to("1.35");
    let cancelled = trails(&moto, &file, &["apply", "--yes", "--var", &v135]);
    assert_eq!(
        cancelled.code, 1,
        "{}\n{}",
        cancelled.stdout, cancelled.stderr
    );
    assert!(
        cancelled
            .stderr
            .contains("Cancelled: the update was cancelled"),
        "{}",
        cancelled.stderr
    );
    assert_eq!(rt.block_on(versions(&moto)).0, "1.34");

    // Once EKS lets updates through, the next apply goes on from where the cluster is (1.34),
    // not from the 1.33 the state still records.
    moto.eks_updates_end("nodegroup", None);
    let resumed = trails(&moto, &file, &["apply", "--yes", "--var", &v135]);
    assert_eq!(resumed.code, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    assert_eq!(rt.block_on(versions(&moto)), everything_on("1.35"));
    let clean = trails(
        &moto,
        &file,
        &["plan", "--detailed-exitcode", "--var", &v135],
    );
    assert_eq!(clean.code, 0, "{}\n{}", clean.stdout, clean.stderr);
    assert_eq!(trails(&moto, &file, &["destroy", "--yes"]).code, 0);
}

#[test]
fn a_destroy_killed_after_any_mutating_call_is_finished_by_the_next_one() {
    let moto = Moto::start();
    let rt = runtime();
    let one_at_a_time = ["destroy", "--yes", "--parallelism", "1"];
    let total = {
        let (_dir, file) = workspace();
        assert_eq!(trails(&moto, &file, &["apply", "--yes"]).code, 0);
        let before = moto.mutating_calls();
        let destroyed = trails(&moto, &file, &one_at_a_time);
        assert_eq!(destroyed.code, 0, "{}", destroyed.stderr);
        moto.mutating_calls() - before
    };
    assert!(total > 30, "the destroy made only {total} mutating calls");

    // Every third point (every one with TRAILS_KILL_EVERY=1): killed with SIGKILL after the
    // k-th mutating call of a destroy, one change at a time; the held call runs after the kill.
    // The next destroy must finish the job from what the state and the tags say.
    for k in (1..total).step_by(kill_stride(3)) {
        moto.reset();
        let (_dir, file) = workspace();
        let applied = trails(&moto, &file, &["apply", "--yes"]);
        assert_eq!(applied.code, 0, "kill point {k}: {}", applied.stderr);
        let mut child = held_after(&moto, &file, k, &one_at_a_time);
        let _ = child.kill();
        let _ = child.wait();
        moto.open_gate();
        destroys_clean(&moto, &rt, &file, &format!("kill point {k} of {total}"));
    }
}
