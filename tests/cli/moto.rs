//! A moto server (the AWS emulator) on a free loopback port, owned by one test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running moto server; killed when dropped.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    log: PathBuf,
    calls: PathBuf,
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
        let python = moto_python();
        let script = crate::repo("scripts/moto_server.py");
        let child = Command::new(&python)
            .arg(&script)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("TRAILS_MOTO_CALL_LOG", &calls)
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
