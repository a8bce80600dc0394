//! Real PostgreSQL, Redis and tansu (Kafka) servers on free loopback ports, each owned by one
//! test and stopped when dropped. A test that needs one panics with what to do when it cannot
//! start it: it must not pass without it. `scripts/test` installs all three.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nobody listens on at the moment.
/// Serves `app` on a free loopback port from its own runtime (kept by the caller, which may
/// spawn more on it); returns the runtime and `http://127.0.0.1:PORT`.
pub fn serve(app: axum::Router, what: &str, workers: usize) -> (tokio::runtime::Runtime, String) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("the {what}'s runtime does not start: {e}"));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap_or_else(|e| panic!("the {what} cannot bind a loopback port: {e}"));
    let url = format!("http://{}", listener.local_addr().expect("bound address"));
    let what = what.to_string();
    runtime.spawn(async move {
        axum::serve(listener, app)
            .await
            .unwrap_or_else(|e| panic!("the {what} stopped serving: {e}"));
    });
    (runtime, url)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

/// Waits until something accepts connections on `port`, or panics with `log`'s content.
fn wait_for_port(what: &str, port: u16, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}) while starting; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on port {port} within 60s; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spawn(what: &str, command: &mut Command, log: &Path) -> Child {
    let file = std::fs::File::create(log).expect("log file");
    let err = file.try_clone().expect("log file");
    command
        .stdout(file)
        .stderr(err)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "cannot start {what} ({error}): ./scripts/test installs it; \
                 see the README's test command"
            )
        })
}

fn stop(child: &mut Child) {
    // SIGINT: PostgreSQL's fast shutdown; Redis and tansu stop on it too.
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The directory of PostgreSQL's server binaries (`TRAILS_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin`).
fn postgres_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("TRAILS_PG_BIN") {
        return PathBuf::from(path);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin); ./scripts/test installs it"
        )
    })
}

/// A PostgreSQL server in a fresh data directory.
pub struct Postgres {
    child: Child,
    /// `postgres://trails@127.0.0.1:PORT/postgres` (with `:PASSWORD` when authenticating).
    pub url: String,
    _dir: tempfile::TempDir,
}

/// The superuser's password of [`Postgres::start_authenticating`].
pub const POSTGRES_PASSWORD: &str = "trails-superuser";

impl Postgres {
    /// A server that trusts every connection.
    pub fn start() -> Self {
        Self::launch(false, None)
    }

    /// A server that checks passwords (SCRAM) on TCP connections, as RDS does; the superuser
    /// `trails` has [`POSTGRES_PASSWORD`].
    pub fn start_authenticating() -> Self {
        Self::launch(true, None)
    }

    /// A server that, like RDS with `rds.force_ssl`, takes TCP connections only over TLS (and
    /// checks passwords), with `certificate` and `key` (PEM files).
    pub fn start_tls(certificate: &Path, key: &Path) -> Self {
        Self::launch(true, Some((certificate, key)))
    }

    /// initdb and start, as the `postgres` user when running as root (PostgreSQL refuses root).
    fn launch(authenticating: bool, tls: Option<(&Path, &Path)>) -> Self {
        let bin = postgres_bin();
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, POSTGRES_PASSWORD).expect("write the password file");
        if let Some((certificate, key)) = tls {
            std::fs::copy(certificate, dir.path().join("server.crt")).expect("copy certificate");
            std::fs::copy(key, dir.path().join("server.key")).expect("copy key");
            std::fs::set_permissions(
                dir.path().join("server.key"),
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .expect("key permissions");
        }
        let log = dir.path().join("postgres.log");
        let root = running_as_root();
        let as_owner = |program: PathBuf| {
            if root {
                let mut command = Command::new("setpriv");
                command
                    .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
                    .arg(program);
                command
            } else {
                Command::new(program)
            }
        };
        if root {
            let chowned = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(
                chowned.success(),
                "cannot hand the data directory to postgres"
            );
        }
        let mut initdb = as_owner(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "trails", "-E", "UTF8", "--no-sync"]);
        if authenticating {
            initdb
                .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
                .arg(format!("--pwfile={}", password_file.display()));
        } else {
            initdb.args(["-A", "trust"]);
        }
        let initdb = initdb.output().unwrap_or_else(|error| {
            panic!("cannot run initdb ({error}); ./scripts/test installs PostgreSQL")
        });
        assert!(
            initdb.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        let mut tls_settings = Vec::new();
        if tls.is_some() {
            let hba = "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostnossl all all 127.0.0.1/32 reject\n";
            std::fs::write(data.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
            for (name, file) in [
                ("ssl_cert_file", "server.crt"),
                ("ssl_key_file", "server.key"),
            ] {
                tls_settings.push("-c".to_string());
                tls_settings.push(format!("{name}={}", dir.path().join(file).display()));
            }
            tls_settings.extend(["-c".to_string(), "ssl=on".to_string()]);
        }
        let port = free_port();
        let mut child = spawn(
            "postgres",
            as_owner(bin.join("postgres"))
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-k"])
                .arg(dir.path())
                .args([
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ])
                .args(&tls_settings),
            &log,
        );
        wait_for_port("postgres", port, &mut child, &log);
        let user = if authenticating {
            format!("trails:{POSTGRES_PASSWORD}")
        } else {
            "trails".to_string()
        };
        Self {
            child,
            url: format!("postgres://{user}@127.0.0.1:{port}/postgres"),
            _dir: dir,
        }
    }
}

impl Postgres {
    /// Gives this server the master user of RDS instance `identifier` in moto, with the
    /// password RDS keeps in its managed secret and the CREATEDB and CREATEROLE rights RDS gives
    /// it (through `rds_superuser`; never SUPERUSER itself), so that
    /// trails can log in as it would to the instance. Returns the user and password.
    pub async fn add_master_user(
        url: &str,
        rds: &aws_sdk_rds::Client,
        secrets: &aws_sdk_secretsmanager::Client,
        identifier: &str,
    ) -> (String, String) {
        let instance = rds
            .describe_db_instances()
            .db_instance_identifier(identifier)
            .send()
            .await
            .expect("describe the instance");
        let instance = &instance.db_instances()[0];
        // The instance's master user: moto's secret names another (`admin`), RDS's the same.
        let user = instance
            .master_username()
            .expect("master username")
            .to_string();
        let arn = instance
            .master_user_secret()
            .and_then(|s| s.secret_arn())
            .expect("RDS manages the master password")
            .to_string();
        let secret = secrets
            .get_secret_value()
            .secret_id(&arn)
            .send()
            .await
            .expect("master secret");
        let secret: serde_json::Value =
            serde_json::from_str(secret.secret_string().expect("string")).expect("JSON");
        let password = secret["password"].as_str().expect("password").to_string();
        execute(
            url,
            &format!(
                "CREATE ROLE \"{user}\" LOGIN CREATEDB CREATEROLE PASSWORD '{}'",
                password.replace('\'', "''")
            ),
        )
        .await;
        (user, password)
    }
}

/// Runs `sql` on the PostgreSQL database at `url`; panics when it fails.
pub async fn execute(url: &str, sql: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| panic!("connect to {url}: {error}"));
    tokio::spawn(connection);
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
}

impl Drop for Postgres {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A Redis server without persistence.
pub struct Redis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    /// `redis://127.0.0.1:PORT`.
    pub url: String,
}

impl Redis {
    /// Starts `redis-server` on a free port.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut redis = Self {
            child: None,
            port,
            dir,
            url: format!("redis://127.0.0.1:{port}"),
        };
        redis.restart();
        redis
    }

    /// Stops the server (a test of Redis being down).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child);
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        let log = self.dir.path().join("redis.log");
        let mut child = spawn(
            "redis-server",
            Command::new("redis-server").args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ]),
            &log,
        );
        wait_for_port("redis-server", self.port, &mut child, &log);
        self.child = Some(child);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The tansu binary: `TRAILS_TANSU`, else the one `./scripts/test` installs.
fn tansu_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TRAILS_TANSU") {
        return PathBuf::from(path);
    }
    std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cache/trails/tansu/bin/tansu"))
        .filter(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from("tansu"))
}

/// A tansu broker.
pub struct Tansu {
    child: Option<Child>,
    port: u16,
    /// The port it tells clients to use, when not its own (a TLS front's).
    advertised: u16,
    dir: tempfile::TempDir,
    storage: String,
    env: Vec<(String, String)>,
    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub brokers: String,
}

impl Tansu {
    /// Starts a broker with in-memory storage (gone when it stops) on a free port.
    pub fn start() -> Self {
        Self::start_on("memory://tansu/", Vec::new())
    }

    /// Starts a broker storing in `storage` (e.g. `s3://bucket/`), with `env` for the store.
    pub fn start_on(storage: &str, env: Vec<(String, String)>) -> Self {
        let port = free_port();
        Self::launch(storage, env, port, port)
    }

    /// Starts a broker that tells its clients to connect to `advertised` (a [`TlsProxy`] in
    /// front of it), not to its own port.
    pub fn start_behind(advertised: u16) -> Self {
        Self::launch("memory://tansu/", Vec::new(), free_port(), advertised)
    }

    fn launch(storage: &str, env: Vec<(String, String)>, port: u16, advertised: u16) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut tansu = Self {
            child: None,
            port,
            advertised,
            dir,
            storage: storage.to_string(),
            env,
            brokers: format!("127.0.0.1:{port}"),
        };
        tansu.restart();
        tansu
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the broker (what it stored in memory is gone with it).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child);
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        let log = self.dir.path().join("tansu.log");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://127.0.0.1:{}", self.advertised);
        let mut child = spawn(
            "tansu",
            Command::new(tansu_binary())
                .args(["broker", "--storage-engine", &self.storage])
                .args([
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &advertised,
                ])
                .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .env("RUST_LOG", "warn"),
            &log,
        );
        wait_for_port("tansu", self.port, &mut child, &log);
        self.child = Some(child);
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TLS listener in front of a plain TCP server on this machine, as a broker's TLS-only
/// listener looks to its clients: a client that does not speak TLS fails the handshake.
pub struct TlsProxy {
    runtime: Option<tokio::runtime::Runtime>,
    /// TLS handshakes completed so far.
    pub handshakes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TlsProxy {
    /// Listens on `port` with certificate `cert` (PEM chain) and key `key`, and forwards each
    /// connection to `target`.
    pub fn start(port: u16, cert: &Path, key: &Path, target: u16) -> Self {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};

        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .expect("certificate file")
            .collect::<Result<_, _>>()
            .expect("certificates");
        let key = PrivateKeyDer::from_pem_file(key).expect("private key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
            .unwrap_or_else(|error| panic!("cannot listen on 127.0.0.1:{port}: {error}"));
        let handshakes = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&handshakes);
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, counted) = (acceptor.clone(), Arc::clone(&counted));
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    counted.fetch_add(1, Ordering::SeqCst);
                    let Ok(mut plain) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        Self {
            runtime: Some(runtime),
            handshakes,
        }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Runs openssl in `dir`; panics with its output when it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let output = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|error| panic!("cannot run openssl ({error}); ./scripts/test installs it"));
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA (`NAME-ca.pem`), and when `server` a server certificate it signed for 127.0.0.1
/// (`server.pem`, `server.key`).
pub fn certificates(dir: &Path, name: &str, server: bool) {
    let ca_key = format!("{name}-ca.key");
    let ca = format!("{name}-ca.pem");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} test CA"),
        ],
    );
    if server {
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
        )
        .expect("write extensions");
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                &ca,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
        );
    }
}
