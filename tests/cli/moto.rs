//! A moto server (the AWS emulator) on a free loopback port, owned by one test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bucket tests keep shared states in: its calls pass the gate uncounted.
pub const STATE_BUCKET: &str = "trails-state";

/// A running moto server; killed when dropped.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    log: PathBuf,
    calls: PathBuf,
    gate: PathBuf,
    _dir: tempfile::TempDir,
}

/// One AWS request moto served, from its call log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// The operation for query and JSON APIs (`DescribeVpcs`); empty for REST APIs.
    pub operation: String,
}

impl Call {
    /// True for anything but a Describe/Get/List/Head: an operation named otherwise, or a
    /// REST request (S3, EKS) whose method is not GET or HEAD.
    pub fn mutates(&self) -> bool {
        if self.operation.is_empty() {
            !matches!(self.method.as_str(), "GET" | "HEAD")
        } else {
            !["Describe", "Get", "List", "Head"]
                .iter()
                .any(|read| self.operation.starts_with(read))
        }
    }
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.method, self.path, self.operation)
    }
}

/// The python of the venv that has moto; it runs `scripts/moto_server.py`, moto plus the few
/// operations trails needs that moto lacks.
fn moto_python() -> PathBuf {
    if let Some(path) = std::env::var_os("TRAILS_MOTO_PYTHON") {
        return PathBuf::from(path);
    }
    let cached = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cache/trails/venv/bin/python"));
    if let Some(cached) = cached.filter(|path| path.is_file()) {
        return cached;
    }
    PathBuf::from("python3")
}

impl Moto {
    /// Starts moto, or panics with what to do: a test that needs it must not pass without it.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .expect("a free loopback port");
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("moto.log");
        let log_file = std::fs::File::create(&log).expect("moto log file");
        let calls = dir.path().join("calls.log");
        let gate = dir.path().join("gate");
        let python = moto_python();
        let script = crate::repo("scripts/moto_server.py");
        let child = Command::new(&python)
            .arg(&script)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("TRAILS_MOTO_CALL_LOG", &calls)
            .env("TRAILS_MOTO_GATE", &gate)
            .env("TRAILS_MOTO_GATE_PASSES", format!("/{STATE_BUCKET}"))
            .env("TRAILS_MOTO_FAILING", dir.path().join("failing"))
            .env(
                "TRAILS_MOTO_IAM_PROPAGATION",
                dir.path().join("iam-propagation"),
            )
            .env("TRAILS_MOTO_LINGER", dir.path().join("linger"))
            .env("TRAILS_MOTO_EKS_FAILING", dir.path().join("eks-failing"))
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start {} {} ({error}): these tests need the moto server; \
                     ./scripts/test installs it, or set TRAILS_MOTO_PYTHON to a python that has moto",
                    python.display(),
                    script.display()
                )
            });
        let moto = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            calls,
            gate,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !moto.answers(port) {
            assert!(
                Instant::now() < deadline,
                "moto did not answer on port {port} within 60s; its log:\n{}",
                std::fs::read_to_string(&moto.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    fn answers(&self, port: u16) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let request = "GET /moto-api/ HTTP/1.0\r\nHost: localhost\r\n\r\n";
        let mut response = String::new();
        stream.write_all(request.as_bytes()).is_ok()
            && stream.read_to_string(&mut response).is_ok()
            && response.starts_with("HTTP/1.")
            && response.contains(" 200 ")
    }

    /// AWS requests moto has served so far (its access log, minus its own API).
    pub fn requests(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains(" HTTP/1.1\" ") && !line.contains("/moto-api"))
            .count()
    }

    /// Every AWS request served so far, in order, from the call log.
    pub fn calls(&self) -> Vec<Call> {
        std::fs::read_to_string(&self.calls)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let mut parts = line.splitn(3, ' ');
                let method = parts.next()?.to_string();
                let path = parts.next()?.to_string();
                let operation = parts.next().unwrap_or("-");
                Some(Call {
                    method,
                    path,
                    operation: if operation == "-" {
                        String::new()
                    } else {
                        operation.to_string()
                    },
                })
            })
            .collect()
    }

    /// How many mutating calls the gate has counted so far (those to the state bucket pass
    /// uncounted).
    pub fn mutating_calls(&self) -> usize {
        let state = format!("/{STATE_BUCKET}");
        self.calls()
            .iter()
            .filter(|call| call.mutates() && !call.path.starts_with(&state))
            .count()
    }

    /// Makes requests whose path starts with `prefix` fail with 503, as from an S3 that
    /// cannot be reached; `None` makes everything reachable again.
    pub fn unreachable(&self, prefix: Option<&str>) {
        let failing = self._dir.path().join("failing");
        match prefix {
            Some(prefix) => std::fs::write(failing, prefix).expect("write the failing list"),
            None => {
                let _ = std::fs::remove_file(failing);
            }
        }
    }

    /// Makes EKS refuse a role for `seconds` after it was created, as while IAM propagates a
    /// new role (zero: at once).
    pub fn iam_propagation(&self, seconds: f64) {
        std::fs::write(
            self._dir.path().join("iam-propagation"),
            seconds.to_string(),
        )
        .expect("write the IAM propagation delay");
    }

    /// Makes a deleted NAT gateway hold its interface and address for `seconds`, as EC2's do
    /// while `deleting` (zero: gone at once).
    pub fn linger(&self, seconds: f64) {
        std::fs::write(self._dir.path().join("linger"), seconds.to_string())
            .expect("write the linger");
    }

    /// Makes the next EKS version updates of `target` (`cluster` or `nodegroup`) end with
    /// `status` (`Failed`, `Cancelled`); `None` lets them succeed again.
    pub fn eks_updates_end(&self, target: &str, status: Option<&str>) {
        let file = self._dir.path().join("eks-failing");
        match status {
            Some(status) => std::fs::write(file, format!("{target} {status}\n"))
                .expect("write the EKS failures"),
            None => {
                let _ = std::fs::remove_file(file);
            }
        }
    }

    /// Lets `more` mutating calls through, then holds every further one until
    /// [`Moto::open_gate`]: a client killed meanwhile dies after exactly that many.
    pub fn close_gate_after(&self, more: usize) {
        let ceiling = self.mutating_calls() + more;
        std::fs::write(&self.gate, ceiling.to_string()).expect("write the gate");
    }

    /// How many mutating calls the gate holds now.
    pub fn held(&self) -> usize {
        std::fs::read_to_string(self.gate.with_extension("held"))
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Lets every held call run (as AWS runs a request whose caller died) and waits until they
    /// have.
    pub fn open_gate(&self) {
        let _ = std::fs::remove_file(&self.gate);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.held() > 0 {
            assert!(
                Instant::now() < deadline,
                "held calls did not finish within 30s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Forgets every resource (moto's own reset; the call log and the gate's count go on), so
    /// that a loop of runs does not slow down as moto's state grows.
    pub fn reset(&self) {
        let address = self.url.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).expect("moto answers");
        let request = format!(
            "POST /moto-api/reset HTTP/1.0\r\nHost: {address}\r\nContent-Length: 0\r\n\r\n"
        );
        let mut response = String::new();
        stream
            .write_all(request.as_bytes())
            .and_then(|()| stream.read_to_string(&mut response))
            .expect("reset moto");
        assert!(
            response.contains(" 200 "),
            "moto refused the reset: {response}"
        );
    }

    /// Environment for a process that should talk to this moto.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.url.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ]
    }

    /// The shared SDK configuration of a client pointed at this moto.
    fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(
                aws_sdk_ec2::config::Credentials::new("testing", "testing", None, None, "test"),
            ))
            .endpoint_url(&self.url)
            .build()
    }

    /// SDK clients pointed at this moto, for checking what trails did.
    pub fn clients(&self) -> (aws_sdk_ec2::Client, aws_sdk_s3::Client) {
        let shared = self.sdk_config();
        let s3 = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(true)
            .build();
        (
            aws_sdk_ec2::Client::new(&shared),
            aws_sdk_s3::Client::from_conf(s3),
        )
    }

    /// An RDS client pointed at this moto.
    pub fn rds(&self) -> aws_sdk_rds::Client {
        aws_sdk_rds::Client::new(&self.sdk_config())
    }

    /// An IAM client pointed at this moto.
    pub fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&self.sdk_config())
    }

    /// An EKS client pointed at this moto.
    pub fn eks(&self) -> aws_sdk_eks::Client {
        aws_sdk_eks::Client::new(&self.sdk_config())
    }

    /// An ElastiCache client pointed at this moto.
    pub fn elasticache(&self) -> aws_sdk_elasticache::Client {
        aws_sdk_elasticache::Client::new(&self.sdk_config())
    }

    /// An Elastic Load Balancing v2 client pointed at this moto.
    pub fn elb(&self) -> aws_sdk_elasticloadbalancingv2::Client {
        aws_sdk_elasticloadbalancingv2::Client::new(&self.sdk_config())
    }

    /// A classic Elastic Load Balancing client pointed at this moto.
    pub fn elb_classic(&self) -> aws_sdk_elasticloadbalancing::Client {
        aws_sdk_elasticloadbalancing::Client::new(&self.sdk_config())
    }

    /// A Secrets Manager client pointed at this moto.
    pub fn secrets(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&self.sdk_config())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shims' strictness, each in a test of its own so that it cannot silently relax.
mod strictness {
    use super::Moto;

    /// Creates a role that `service` may assume; its ARN.
    async fn role(moto: &Moto, name: &str, service: &str) -> String {
        let trust = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": { "Service": service },
                "Action": "sts:AssumeRole"
            }]
        });
        moto.iam()
            .create_role()
            .role_name(name)
            .assume_role_policy_document(trust.to_string())
            .send()
            .await
            .expect("create the role")
            .role()
            .map(|role| role.arn().to_string())
            .expect("the role's ARN")
    }

    async fn create_cluster(moto: &Moto, name: &str, role_arn: &str) -> Result<(), String> {
        moto.eks()
            .create_cluster()
            .name(name)
            .version("1.30")
            .role_arn(role_arn)
            .resources_vpc_config(
                aws_sdk_eks::types::VpcConfigRequest::builder()
                    .subnet_ids("subnet-1")
                    .build(),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|error| format!("{:?}", error.into_service_error()))
    }

    #[test]
    fn eks_refuses_a_role_that_is_missing_trusts_another_service_or_has_not_propagated() {
        let moto = Moto::start();
        let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
        runtime.block_on(async {
            let assumed = "could not be assumed because it does not exist or the trusted entity";
            let missing = create_cluster(&moto, "a", "arn:aws:iam::123456789012:role/nobody").await;
            assert!(
                missing.as_ref().is_err_and(|e| e.contains(assumed)),
                "{missing:?}"
            );
            let nodes = role(&moto, "nodes", "ec2.amazonaws.com").await;
            let wrong = create_cluster(&moto, "b", &nodes).await;
            assert!(
                wrong.as_ref().is_err_and(|e| e.contains(assumed)),
                "{wrong:?}"
            );
            moto.iam_propagation(30.0);
            let fresh = role(&moto, "cluster", "eks.amazonaws.com").await;
            let early = create_cluster(&moto, "c", &fresh).await;
            assert!(
                early
                    .as_ref()
                    .is_err_and(|e| e.contains("InvalidParameterException") && e.contains(assumed)),
                "{early:?}"
            );
            moto.iam_propagation(0.0);
            create_cluster(&moto, "c", &fresh)
                .await
                .expect("the same role once it has propagated");
            let early_nodes = moto
                .eks()
                .create_nodegroup()
                .cluster_name("c")
                .nodegroup_name("pool")
                .node_role(&fresh)
                .subnets("subnet-1")
                .send()
                .await;
            assert!(
                early_nodes.is_err(),
                "a node role must trust ec2.amazonaws.com, not eks.amazonaws.com"
            );
        });
    }

    #[test]
    fn eks_refuses_a_control_plane_upgrade_while_a_node_group_lags() {
        let moto = Moto::start();
        let eks = moto.eks();
        let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
        runtime.block_on(async {
            let cluster_role = role(&moto, "cluster", "eks.amazonaws.com").await;
            let node_role = role(&moto, "nodes", "ec2.amazonaws.com").await;
            eks.create_cluster()
                .name("strict")
                .version("1.30")
                .role_arn(&cluster_role)
                .resources_vpc_config(
                    aws_sdk_eks::types::VpcConfigRequest::builder()
                        .subnet_ids("subnet-1")
                        .build(),
                )
                .send()
                .await
                .expect("create the cluster");
            let group = eks
                .create_nodegroup()
                .cluster_name("strict")
                .nodegroup_name("pool")
                .node_role(&node_role)
                .subnets("subnet-1")
                .send()
                .await
                .expect("create the node group");
            assert_eq!(
                group.nodegroup().and_then(|g| g.version()),
                Some("1.30"),
                "a node group without a version gets its cluster's"
            );
            eks.update_cluster_version()
                .name("strict")
                .version("1.31")
                .send()
                .await
                .expect("the first step, nodes level with the control plane");
            let refused = eks
                .update_cluster_version()
                .name("strict")
                .version("1.32")
                .send()
                .await
                .expect_err("nodes one minor behind");
            let message = format!("{:?}", refused.into_service_error());
            assert!(
                message.contains("Nodegroup pool is on Kubernetes 1.30"),
                "{message}"
            );
            let beyond = eks
                .update_nodegroup_version()
                .cluster_name("strict")
                .nodegroup_name("pool")
                .version("1.32")
                .send()
                .await;
            assert!(beyond.is_err(), "a node group past its cluster");
            eks.update_nodegroup_version()
                .cluster_name("strict")
                .nodegroup_name("pool")
                .send()
                .await
                .expect("node group to the cluster's version");
            eks.update_cluster_version()
                .name("strict")
                .version("1.32")
                .send()
                .await
                .expect("the next step once the nodes caught up");
        });
    }

    /// The error code of an EC2 call that must fail.
    fn code<T: std::fmt::Debug, E: aws_sdk_ec2::error::ProvideErrorMetadata + std::fmt::Debug>(
        result: Result<T, E>,
    ) -> String {
        result
            .expect_err("EC2 must refuse this")
            .code()
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn ec2_refuses_to_delete_what_an_interface_or_a_rule_still_uses_and_nat_gateways_linger() {
        let moto = Moto::start();
        let (ec2, _) = moto.clients();
        let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
        runtime.block_on(async {
            let vpc = ec2
                .create_vpc()
                .cidr_block("10.9.0.0/16")
                .send()
                .await
                .expect("vpc");
            let vpc = vpc
                .vpc()
                .and_then(|v| v.vpc_id())
                .expect("vpc id")
                .to_string();
            let subnet = ec2
                .create_subnet()
                .vpc_id(&vpc)
                .cidr_block("10.9.0.0/24")
                .send()
                .await
                .expect("subnet");
            let subnet = subnet
                .subnet()
                .and_then(|s| s.subnet_id())
                .expect("id")
                .to_string();
            let group = |name: &'static str| {
                let ec2 = ec2.clone();
                let vpc = vpc.clone();
                async move {
                    ec2.create_security_group()
                        .group_name(name)
                        .description(name)
                        .vpc_id(vpc)
                        .send()
                        .await
                        .expect("group")
                        .group_id()
                        .expect("group id")
                        .to_string()
                }
            };
            let used = group("used").await;
            let named = group("named").await;
            let naming = group("naming").await;
            ec2.authorize_security_group_ingress()
                .group_id(&naming)
                .ip_permissions(
                    aws_sdk_ec2::types::IpPermission::builder()
                        .ip_protocol("tcp")
                        .from_port(5432)
                        .to_port(5432)
                        .user_id_group_pairs(
                            aws_sdk_ec2::types::UserIdGroupPair::builder()
                                .group_id(&named)
                                .build(),
                        )
                        .build(),
                )
                .send()
                .await
                .expect("a rule naming a group");
            let eni = ec2
                .create_network_interface()
                .subnet_id(&subnet)
                .groups(&used)
                .send()
                .await
                .expect("interface");
            let eni = eni
                .network_interface()
                .and_then(|n| n.network_interface_id())
                .expect("eni id")
                .to_string();
            let delete_subnet = || ec2.delete_subnet().subnet_id(&subnet).send();
            let delete_group = |id: &str| ec2.delete_security_group().group_id(id).send();
            assert_eq!(code(delete_subnet().await), "DependencyViolation");
            assert_eq!(code(delete_group(&used).await), "DependencyViolation");
            assert_eq!(code(delete_group(&named).await), "DependencyViolation");
            delete_group(&naming).await.expect("a group nothing uses");
            delete_group(&named)
                .await
                .expect("no rule names it any more");
            ec2.delete_network_interface()
                .network_interface_id(&eni)
                .send()
                .await
                .expect("delete the interface");
            delete_group(&used)
                .await
                .expect("no interface uses it any more");

            // A NAT gateway being deleted holds its interface and address a while.
            moto.linger(1.5);
            let address = ec2
                .allocate_address()
                .domain(aws_sdk_ec2::types::DomainType::Vpc)
                .send()
                .await
                .expect("address");
            let allocation = address.allocation_id().expect("allocation").to_string();
            let gateway = ec2
                .create_nat_gateway()
                .subnet_id(&subnet)
                .allocation_id(&allocation)
                .send()
                .await
                .expect("nat gateway");
            let gateway = gateway
                .nat_gateway()
                .and_then(|g| g.nat_gateway_id())
                .expect("gateway id")
                .to_string();
            let release = || ec2.release_address().allocation_id(&allocation).send();
            assert_eq!(code(release().await), "InvalidIPAddress.InUse");
            ec2.delete_nat_gateway()
                .nat_gateway_id(&gateway)
                .send()
                .await
                .expect("delete the gateway");
            let state = || async {
                ec2.describe_nat_gateways()
                    .nat_gateway_ids(&gateway)
                    .send()
                    .await
                    .expect("describe")
                    .nat_gateways()[0]
                    .state()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default()
            };
            assert_eq!(state().await, "deleting");
            assert_eq!(code(release().await), "InvalidIPAddress.InUse");
            assert_eq!(code(delete_subnet().await), "DependencyViolation");
            tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
            assert_eq!(state().await, "deleted");
            release()
                .await
                .expect("the address, once the gateway is gone");
            delete_subnet()
                .await
                .expect("the subnet, once the gateway is gone");
        });
    }
}
