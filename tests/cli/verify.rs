//! `trails verify` against a freshly applied environment: moto for AWS, PostgreSQL and Redis
//! standing in for RDS and ElastiCache (with the credentials trails keeps in Secrets Manager),
//! tansu for Kafka and the real ingest service. The environment verifies clean; then each fault
//! injected behind trails' back fails exactly the check that names it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{Filter, IpPermission, IpRange};
use aws_sdk_eks::types::NodegroupScalingConfig;
use aws_sdk_s3::types::{
    BucketVersioningStatus, PublicAccessBlockConfiguration, VersioningConfiguration,
};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use serde_json::Value;

use super::moto::Moto;
use super::services::{Postgres, Redis, Tansu, free_port};
use super::{Run, repo, run_with};

const GROUP: &str = "trails-local-local-main";
const DLQ: &str = "audit.events.dlq";

/// Everything a verify run talks to, applied and running.
struct Platform {
    moto: Moto,
    postgres: Postgres,
    redis: Redis,
    tansu: Tansu,
    ingest: Option<Child>,
    ingest_url: String,
    redis_token: String,
    api_key: String,
    runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

fn port_of(url: &str) -> &str {
    url.rsplit(':')
        .next()
        .and_then(|tail| tail.split('/').next())
        .expect("URL with a port")
}

impl Platform {
    fn start() -> Self {
        let moto = Moto::start();
        let postgres = Postgres::start_authenticating();
        let redis = Redis::start();
        let tansu = Tansu::start();
        let dir = tempfile::tempdir().expect("temp dir");
        let templates = repo("templates");
        let fixture = std::fs::read_to_string(repo("examples/local.yaml"))
            .expect("examples/local.yaml")
            .replace(
                "templates: ../templates",
                &format!("templates: {}", templates.display()),
            );
        std::fs::write(dir.path().join("platform.yaml"), &fixture).expect("write blueprint");
        // The same blueprint with the database the ingest service uses: applied once the local
        // PostgreSQL has the instance's master user, which trails creates the database as.
        let with_database = fixture.replace(
            "    backup_retention_days: 1\n",
            "    backup_retention_days: 1\n    databases:\n      trails:\n        schemas: [audit]\n        migrations: [sql/postgres/001_api_keys.sql]\n",
        );
        assert_ne!(
            with_database, fixture,
            "the fixture's postgres section moved"
        );
        std::fs::write(dir.path().join("verify.yaml"), with_database).expect("write blueprint");
        let mut platform = Self {
            moto,
            postgres,
            redis,
            tansu,
            ingest: None,
            ingest_url: String::new(),
            redis_token: String::new(),
            api_key: String::new(),
            runtime: tokio::runtime::Runtime::new().expect("runtime"),
            dir,
        };
        let applied = platform.trails(
            "platform.yaml",
            &["apply", "--yes", "-q", "--var", &platform.brokers_var()],
        );
        assert_eq!(applied.code, 0, "apply failed:\n{}", applied.stderr);
        platform.stand_in_for_rds_and_elasticache();
        let endpoint = platform.postgres_endpoint();
        let applied = platform.trails(
            "verify.yaml",
            &[
                "apply",
                "--yes",
                "-q",
                "--var",
                &platform.brokers_var(),
                "--endpoint",
                &endpoint,
            ],
        );
        assert_eq!(applied.code, 0, "day-one apply failed:\n{}", applied.stderr);
        platform.launch_ingest();
        platform
    }

    fn brokers_var(&self) -> String {
        format!("kafka_brokers={}", self.tansu.brokers)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn trails(&self, file: &str, args: &[&str]) -> Run {
        let mut full: Vec<&str> = args.to_vec();
        let path = self.file(file);
        full.extend(["-f", path.to_str().expect("utf-8 path")]);
        let mut env = self.moto.env();
        if !self.api_key.is_empty() {
            env.push(("TRAILS_VERIFY_API_KEY", self.api_key.clone()));
        }
        run_with(None, &env, &full)
    }

    /// The local PostgreSQL gets the master user and password RDS keeps in its managed secret;
    /// the local Redis requires the AUTH token trails generated and uses the declared policy.
    fn stand_in_for_rds_and_elasticache(&mut self) {
        let (rds, secrets) = (self.moto.rds(), self.moto.secrets());
        let pg_url = self.postgres.url.clone();
        let redis_url = self.redis.url.clone();
        self.redis_token = self.runtime.block_on(async move {
            Postgres::add_master_user(&pg_url, &rds, &secrets, GROUP).await;
            let token = secrets
                .get_secret_value()
                .secret_id(format!("trails/{GROUP}/auth-token"))
                .send()
                .await
                .expect("the Redis AUTH token trails keeps")
                .secret_string()
                .expect("token")
                .to_string();
            let client = redis::Client::open(redis_url.as_str()).expect("redis URL");
            let mut connection = client
                .get_multiplexed_async_connection()
                .await
                .expect("connect to redis");
            let _: () = redis::cmd("CONFIG")
                .arg("SET")
                .arg(&["maxmemory-policy", "allkeys-lru"])
                .query_async(&mut connection)
                .await
                .expect("set the policy");
            let _: () = redis::cmd("CONFIG")
                .arg("SET")
                .arg(&["requirepass", token.as_str()])
                .query_async(&mut connection)
                .await
                .expect("require the token");
            token
        });
    }

    /// `--endpoint` for the local PostgreSQL, without credentials: trails logs in as the
    /// master user with the password RDS keeps in Secrets Manager.
    fn postgres_endpoint(&self) -> String {
        format!(
            "postgres.main=postgres://127.0.0.1:{}",
            port_of(&self.postgres.url)
        )
    }

    fn database_url(&self) -> String {
        self.postgres.url.replace("/postgres", "/trails")
    }

    fn redis_with_token(&self) -> String {
        self.redis
            .url
            .replace("redis://", &format!("redis://:{}@", self.redis_token))
    }

    /// Starts `trails ingest serve` on the stand-ins and creates the verify key.
    fn launch_ingest(&mut self) {
        let port = free_port();
        let admin = free_port();
        self.ingest_url = format!("http://127.0.0.1:{port}");
        let log = std::fs::File::create(self.file("ingest.log")).expect("log");
        let child = Command::new(assert_cmd::cargo::cargo_bin("trails"))
            .args(["ingest", "serve"])
            .env("INGEST_LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("INGEST_ADMIN_ADDR", format!("127.0.0.1:{admin}"))
            .env("DATABASE_URL", self.database_url())
            .env("REDIS_URL", self.redis_with_token())
            .env("KAFKA_BROKERS", &self.tansu.brokers)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("trails ingest serve starts");
        self.ingest = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        let ready = format!("http://127.0.0.1:{admin}/ready");
        loop {
            let answered = self
                .runtime
                .block_on(reqwest::get(&ready))
                .is_ok_and(|r| r.status().is_success());
            if answered {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the ingest service was not ready within 60s:\n{}",
                std::fs::read_to_string(self.file("ingest.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let created = run_with(
            None,
            &[("DATABASE_URL", self.database_url())],
            &[
                "ingest",
                "create-key",
                "--tenant",
                "0190c2a1-0000-7000-8000-00000000feed",
                "--name",
                "trails-verify",
            ],
        );
        assert_eq!(created.code, 0, "create-key failed: {}", created.stderr);
        self.api_key = created.stdout.trim().to_string();
        assert!(
            self.api_key.starts_with("tt_"),
            "not a key: {}",
            self.api_key
        );
    }

    fn stop_ingest(&mut self) {
        if let Some(mut child) = self.ingest.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `trails verify --json` with every data-plane endpoint pointed at the stand-ins.
    fn verify(&self, extra: &[&str]) -> (Run, Value) {
        let postgres = self.postgres_endpoint();
        let redis = format!("redis.main={}", self.redis.url);
        let ingest = format!("ingest={}", self.ingest_url);
        let junit = self.file("junit.xml");
        let brokers = self.brokers_var();
        let mut args = vec![
            "verify",
            "--json",
            "--var",
            &brokers,
            "--endpoint",
            &postgres,
            "--endpoint",
            &redis,
            "--endpoint",
            &ingest,
            "--junit",
            junit.to_str().expect("utf-8 path"),
            // moto has no Kubernetes API server behind its EKS clusters.
            "--skip",
            "kubernetes.nodes",
        ];
        args.extend(extra);
        let run = self.trails("verify.yaml", &args);
        let report: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|error| {
            panic!(
                "verify printed no JSON ({error}):\n{}\n{}",
                run.stdout, run.stderr
            )
        });
        (run, report)
    }

    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.stop_ingest();
    }
}

fn checks_with(report: &Value, status: &str) -> Vec<String> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|check| check["status"] == status)
        .map(|check| check["name"].as_str().expect("name").to_string())
        .collect()
}

fn evidence<'a>(report: &'a Value, name: &str) -> &'a str {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|check| check["name"] == name)
        .and_then(|check| check["evidence"].as_str())
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

/// Runs verify and asserts that exactly `name` failed, with evidence containing `says`.
fn assert_only_failure(platform: &Platform, fault: &str, name: &str, says: &str) {
    assert_failures(platform, fault, &[(name, says)]);
}

/// Exactly these checks fail, each with evidence that says what it should.
fn assert_failures(platform: &Platform, fault: &str, expected: &[(&str, &str)]) {
    let (run, report) = platform.verify(&[]);
    assert_eq!(run.code, 1, "{fault}: verify must exit 1:\n{report:#}");
    let names: Vec<&str> = expected.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        checks_with(&report, "failed"),
        names,
        "{fault}: exactly {names:?} must fail:\n{report:#}"
    );
    for (name, says) in expected {
        assert!(
            evidence(&report, name).contains(says),
            "{fault}: the evidence of {name} must say {says:?}: {}",
            evidence(&report, name)
        );
    }
}

fn assert_clean(platform: &Platform, when: &str) -> Value {
    let (run, report) = platform.verify(&[]);
    assert_eq!(
        checks_with(&report, "failed"),
        Vec::<String>::new(),
        "{when}: nothing may fail:\n{report:#}"
    );
    assert_eq!(run.code, 0, "{when}: verify must exit 0:\n{}", run.stderr);
    report
}

fn tagged(address: &str) -> Vec<Filter> {
    vec![
        Filter::builder()
            .name("tag:trails:blueprint")
            .values("trails-local")
            .build(),
        Filter::builder()
            .name("tag:trails:address")
            .values(address)
            .build(),
    ]
}

fn junit_cases(path: &Path) -> (usize, usize) {
    let xml = std::fs::read_to_string(path).expect("JUnit report written");
    let mut reader = quick_xml::Reader::from_str(&xml);
    let (mut cases, mut failures) = (0, 0);
    loop {
        match reader.read_event().expect("well-formed JUnit XML") {
            quick_xml::events::Event::Start(e) if e.name().as_ref() == b"testcase" => cases += 1,
            quick_xml::events::Event::Start(e) if e.name().as_ref() == b"failure" => failures += 1,
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    (cases, failures)
}

#[test]
fn a_fresh_environment_verifies_clean_and_each_fault_fails_only_its_check() {
    let mut platform = Platform::start();

    let before = platform.moto.calls().len();
    let report = assert_clean(&platform, "freshly applied");
    let writes: Vec<String> = platform.moto.calls()[before..]
        .iter()
        .filter(|call| call.mutates())
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        writes,
        Vec::<String>::new(),
        "verify made mutating AWS calls"
    );
    let passed = checks_with(&report, "passed");
    for name in [
        "network.vpc.main",
        "aws.subnet.private-a",
        "network.routes.private-a",
        "network.routes.database",
        "aws.security_group.nodes",
        "aws.s3_bucket.audit-cold",
        "aws.s3_bucket.backups",
        "eks.cluster",
        "eks.node_pool.general",
        "rds.main",
        "redis.main",
        "postgres.main.connect",
        "postgres.main.database.trails",
        "redis.main.reachable",
        "redis.main.maxmemory_policy",
        "kafka.topic.audit.events.v1",
        "ingest.health",
        "ingest.end_to_end",
    ] {
        assert!(
            passed.contains(&name.to_string()),
            "{name} did not pass:\n{report:#}"
        );
    }
    assert!(
        checks_with(&report, "skipped").is_empty(),
        "nothing is skipped but what --skip leaves out:\n{report:#}"
    );
    assert!(evidence(&report, "ingest.end_to_end").contains("read back from audit.events.v1"));
    assert!(evidence(&report, "postgres.main.database.trails").contains("api_keys"));
    assert!(evidence(&report, "aws.s3_bucket.audit-cold").contains("object_lock"));
    let total = report["checks"].as_array().expect("checks").len();
    assert_eq!(junit_cases(&platform.file("junit.xml")), (total, 0));
    let text = platform.trails(
        "verify.yaml",
        &[
            "verify",
            "--var",
            &platform.brokers_var(),
            "--only",
            "network.routes",
        ],
    );
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(
        text.stdout.contains("✓ passed  network.routes.private-a"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("verify passed: 4 checks, 4 passed, 0 failed, 0 skipped")
    );
    for secret in [&platform.redis_token, &platform.api_key] {
        assert!(
            !text.stdout.contains(secret.as_str()) && !report.to_string().contains(secret.as_str())
        );
    }

    // Without an endpoint override, verify goes to the live endpoint and says it cannot.
    let direct = platform.trails(
        "verify.yaml",
        &[
            "verify",
            "--json",
            "--var",
            &platform.brokers_var(),
            "--only",
            "redis.main.reachable",
        ],
    );
    assert_eq!(direct.code, 1);
    let direct: Value = serde_json::from_str(&direct.stdout).expect("JSON");
    assert!(
        evidence(&direct, "redis.main.reachable").contains(&format!("master.{GROUP}")),
        "{direct:#}"
    );
    let unknown = platform.trails(
        "verify.yaml",
        &[
            "verify",
            "--var",
            &platform.brokers_var(),
            "--endpoint",
            "mysql.main=x",
        ],
    );
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("--endpoint mysql.main: this blueprint has no such endpoint; it has postgres.main, redis.main, kafka, ingest"),
        "{}",
        unknown.stderr
    );

    let (ec2, s3) = platform.moto.clients();
    let eks = platform.moto.eks();

    // A private subnet loses its way out.
    let table = platform.block_on(async {
        ec2.describe_route_tables()
            .set_filters(Some(tagged("aws.route_table.private-a")))
            .send()
            .await
            .expect("route tables")
            .route_tables()[0]
            .clone()
    });
    let table_id = table.route_table_id().expect("id").to_string();
    let nat = table
        .routes()
        .iter()
        .find_map(|r| r.nat_gateway_id())
        .expect("a NAT route")
        .to_string();
    platform.block_on(async {
        ec2.delete_route()
            .route_table_id(&table_id)
            .destination_cidr_block("0.0.0.0/0")
            .send()
            .await
            .expect("delete the route")
    });
    assert_only_failure(
        &platform,
        "route removed",
        "aws.route_table.private-a",
        "routes: removed {\"destination_cidr_block\":\"0.0.0.0/0\"",
    );
    platform.block_on(async {
        ec2.create_route()
            .route_table_id(&table_id)
            .destination_cidr_block("0.0.0.0/0")
            .nat_gateway_id(&nat)
            .send()
            .await
            .expect("restore the route")
    });

    // Someone opens SSH to the world on the nodes.
    let group = platform.block_on(async {
        ec2.describe_security_groups()
            .set_filters(Some(tagged("aws.security_group.nodes")))
            .send()
            .await
            .expect("groups")
            .security_groups()[0]
            .group_id()
            .expect("id")
            .to_string()
    });
    let ssh = IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(22)
        .to_port(22)
        .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
        .build();
    platform.block_on(async {
        ec2.authorize_security_group_ingress()
            .group_id(&group)
            .ip_permissions(ssh.clone())
            .send()
            .await
            .expect("open SSH")
    });
    // The settings check sees the drift; the policy check, the same rule `plan` applies.
    assert_failures(
        &platform,
        "SSH opened",
        &[
            (
                "aws.security_group.nodes",
                "ingress: added \"tcp 22 0.0.0.0/0\"",
            ),
            (
                "policy.aws.security_group.nodes",
                "network.open-ingress: any address on the internet may reach port 22",
            ),
        ],
    );
    platform.block_on(async {
        ec2.revoke_security_group_ingress()
            .group_id(&group)
            .ip_permissions(ssh)
            .send()
            .await
            .expect("close SSH")
    });

    // Versioning of the backups bucket is suspended.
    let versioning = |status| VersioningConfiguration::builder().status(status).build();
    platform.block_on(async {
        s3.put_bucket_versioning()
            .bucket("trails-local-local-backups")
            .versioning_configuration(versioning(BucketVersioningStatus::Suspended))
            .send()
            .await
            .expect("suspend versioning")
    });
    assert_only_failure(
        &platform,
        "versioning suspended",
        "aws.s3_bucket.backups",
        "versioning: true -> false",
    );
    platform.block_on(async {
        s3.put_bucket_versioning()
            .bucket("trails-local-local-backups")
            .versioning_configuration(versioning(BucketVersioningStatus::Enabled))
            .send()
            .await
            .expect("enable versioning")
    });

    // Someone lifts the backups bucket's public access block.
    let public_access = |blocked: bool| {
        PublicAccessBlockConfiguration::builder()
            .block_public_acls(blocked)
            .ignore_public_acls(blocked)
            .block_public_policy(blocked)
            .restrict_public_buckets(blocked)
            .build()
    };
    platform.block_on(async {
        s3.put_public_access_block()
            .bucket("trails-local-local-backups")
            .public_access_block_configuration(public_access(false))
            .send()
            .await
            .expect("lift the public access block")
    });
    assert_failures(
        &platform,
        "bucket opened",
        &[
            (
                "aws.s3_bucket.backups",
                "block_public_access: true -> false",
            ),
            (
                "policy.aws.s3_bucket.backups",
                "s3.public-access-block: a bucket policy or ACL could make objects public",
            ),
        ],
    );
    platform.block_on(async {
        s3.put_public_access_block()
            .bucket("trails-local-local-backups")
            .public_access_block_configuration(public_access(true))
            .send()
            .await
            .expect("block public access again")
    });

    // The general node pool is scaled below its declared minimum.
    let scale = |min: i32, desired: i32| {
        NodegroupScalingConfig::builder()
            .min_size(min)
            .max_size(3)
            .desired_size(desired)
            .build()
    };
    platform.block_on(async {
        eks.update_nodegroup_config()
            .cluster_name("trails-local-local")
            .nodegroup_name("trails-local-local-general")
            .scaling_config(scale(0, 0))
            .send()
            .await
            .expect("scale down")
    });
    assert_only_failure(
        &platform,
        "node pool scaled down",
        "aws.eks_node_group.general",
        "scaling.min: 1 -> 0",
    );
    platform.block_on(async {
        eks.update_nodegroup_config()
            .cluster_name("trails-local-local")
            .nodegroup_name("trails-local-local-general")
            .scaling_config(scale(1, 1))
            .send()
            .await
            .expect("scale back")
    });

    // The cluster's role loses its managed policy.
    let iam = platform.moto.iam();
    let cluster_policy = "arn:aws:iam::aws:policy/AmazonEKSClusterPolicy";
    platform.block_on(async {
        iam.detach_role_policy()
            .role_name("trails-local-local-eks-cluster")
            .policy_arn(cluster_policy)
            .send()
            .await
            .expect("detach the policy")
    });
    assert_only_failure(
        &platform,
        "policy detached",
        "aws.iam_role.eks-cluster",
        &format!("managed_policy_arns: removed \"{cluster_policy}\""),
    );
    platform.block_on(async {
        iam.attach_role_policy()
            .role_name("trails-local-local-eks-cluster")
            .policy_arn(cluster_policy)
            .send()
            .await
            .expect("attach the policy again")
    });

    // The private subnets' network ACL lets SSH in.
    let acl = platform.block_on(async {
        ec2.describe_network_acls()
            .set_filters(Some(tagged("aws.network_acl.private")))
            .send()
            .await
            .expect("ACLs")
            .network_acls()[0]
            .network_acl_id()
            .expect("id")
            .to_string()
    });
    platform.block_on(async {
        ec2.create_network_acl_entry()
            .network_acl_id(&acl)
            .rule_number(99)
            .protocol("6")
            .rule_action(aws_sdk_ec2::types::RuleAction::Allow)
            .egress(false)
            .cidr_block("0.0.0.0/0")
            .port_range(
                aws_sdk_ec2::types::PortRange::builder()
                    .from(22)
                    .to(22)
                    .build(),
            )
            .send()
            .await
            .expect("add an ACL entry")
    });
    assert_only_failure(
        &platform,
        "ACL entry added",
        "aws.network_acl.private",
        "ingress: added \"#99 allow tcp 22-22 0.0.0.0/0\"",
    );
    platform.block_on(async {
        ec2.delete_network_acl_entry()
            .network_acl_id(&acl)
            .rule_number(99)
            .egress(false)
            .send()
            .await
            .expect("remove the ACL entry")
    });

    // The VPC's flow log is deleted; a refreshed apply makes it again.
    let flow_log = platform.block_on(async {
        ec2.describe_flow_logs()
            .set_filter(Some(tagged("aws.flow_log.main")))
            .send()
            .await
            .expect("flow logs")
            .flow_logs()[0]
            .flow_log_id()
            .expect("id")
            .to_string()
    });
    platform.block_on(async {
        ec2.delete_flow_logs()
            .flow_log_ids(&flow_log)
            .send()
            .await
            .expect("delete the flow log")
    });
    assert_only_failure(
        &platform,
        "flow log deleted",
        "aws.flow_log.main",
        "does not exist",
    );
    let repaired = platform.trails(
        "verify.yaml",
        &[
            "apply",
            "--refresh",
            "--yes",
            "-q",
            "--var",
            &platform.brokers_var(),
        ],
    );
    assert_eq!(repaired.code, 0, "{}\n{}", repaired.stdout, repaired.stderr);

    // Redis evicts nothing any more.
    let redis_policy = |policy: &str| {
        let url = platform.redis_with_token();
        let policy = policy.to_string();
        platform.block_on(async move {
            let client = redis::Client::open(url.as_str()).expect("redis URL");
            let mut connection = client
                .get_multiplexed_async_connection()
                .await
                .expect("connect to redis");
            let _: () = redis::cmd("CONFIG")
                .arg("SET")
                .arg(&["maxmemory-policy", policy.as_str()])
                .query_async(&mut connection)
                .await
                .expect("set the policy");
        })
    };
    redis_policy("noeviction");
    assert_only_failure(
        &platform,
        "Redis policy changed",
        "redis.main.maxmemory_policy",
        "maxmemory-policy is noeviction; the blueprint declares allkeys-lru",
    );
    redis_policy("allkeys-lru");

    // The dead-letter topic is deleted.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &platform.tansu.brokers)
        .create()
        .expect("admin client");
    let results = platform.block_on(admin.delete_topics(&[DLQ], &AdminOptions::new()));
    assert!(results.expect("delete").iter().all(Result::is_ok));
    assert_only_failure(
        &platform,
        "topic deleted",
        "kafka.topic.audit.events.dlq",
        "topic audit.events.dlq does not exist",
    );
    // diff finds it deleted; a refreshed apply creates it again.
    let brokers = platform.brokers_var();
    let diff = platform.trails(
        "verify.yaml",
        &["diff", "--detailed-exitcode", "--var", &brokers],
    );
    assert_eq!(diff.code, 2, "{}\n{}", diff.stdout, diff.stderr);
    assert!(
        diff.stdout
            .contains("- kafka.topic.audit-events-dlq: deleted outside trails")
            && diff.stdout.contains("Drift: 1 of"),
        "{}",
        diff.stdout
    );
    let repaired = platform.trails(
        "verify.yaml",
        &["apply", "--refresh", "--yes", "-q", "--var", &brokers],
    );
    assert_eq!(repaired.code, 0, "{}\n{}", repaired.stdout, repaired.stderr);

    // The schema the service's tables live in is dropped.
    let database = platform.database_url();
    let drop_schema = |sql: &'static str| {
        let url = database.clone();
        platform.block_on(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(connection);
            client.batch_execute(sql).await.expect("schema change");
        })
    };
    drop_schema("DROP SCHEMA audit");
    assert_only_failure(
        &platform,
        "schema dropped",
        "postgres.main.database.trails",
        "lacks schema audit",
    );
    drop_schema("CREATE SCHEMA audit");

    assert_clean(&platform, "every fault repaired");

    // The ingest service stops: its health fails and the end-to-end event is not attempted.
    platform.stop_ingest();
    let (run, report) = platform.verify(&[]);
    assert_eq!(run.code, 1);
    assert_eq!(
        checks_with(&report, "failed"),
        ["ingest.health"],
        "{report:#}"
    );
    assert!(
        evidence(&report, "ingest.health")
            .contains(&format!("GET {}/openapi.json", platform.ingest_url))
    );
    assert_eq!(
        evidence(&report, "ingest.end_to_end"),
        "not run: ingest.health failed"
    );
    let (cases, failures) = junit_cases(&platform.file("junit.xml"));
    assert_eq!((cases, failures), (total, 1));

    // Destroy removes the topics trails created along with the AWS resources (the database
    // goes with its instance, so no --endpoint is needed).
    let destroyed = platform.trails(
        "verify.yaml",
        &["destroy", "--yes", "-q", "--var", &platform.brokers_var()],
    );
    assert_eq!(destroyed.code, 0, "destroy failed:\n{}", destroyed.stderr);
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let left: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
    assert!(
        !left.contains(&"audit.events.v1") && !left.contains(&DLQ),
        "topics left after destroy: {left:?}"
    );
}
