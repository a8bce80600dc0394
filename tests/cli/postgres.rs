//! PostgreSQL day-one configuration: `trails apply` creates the database inside the RDS
//! instance (moto) on a real PostgreSQL that checks passwords, runs each migration once,
//! refuses to re-run an edited one, drops the database when it leaves the blueprint, and leaves
//! it to the instance when `trails destroy` deletes both.

use std::path::{Path, PathBuf};

use super::moto::Moto;
use super::services::{Postgres, certificates};
use super::{Run, repo, run_with};

const INSTANCE: &str = "trails-local-local-main";

struct Setup {
    moto: Moto,
    postgres: Postgres,
    runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

impl Setup {
    fn templates(&self) -> PathBuf {
        self.dir.path().join("templates")
    }

    fn trails(&self, file: &str, args: &[&str]) -> Run {
        let mut full: Vec<&str> = args.to_vec();
        let path = self.dir.path().join(file);
        full.extend(["-f", path.to_str().expect("utf-8 path")]);
        run_with(None, &self.moto.env(), &full)
    }

    /// `--endpoint` to the local server without credentials: the master user's come from
    /// Secrets Manager.
    fn endpoint(&self) -> String {
        let port = self
            .postgres
            .url
            .rsplit(':')
            .next()
            .and_then(|tail| tail.split('/').next())
            .expect("port");
        format!("postgres.main=postgres://127.0.0.1:{port}")
    }

    fn query(&self, database: &str, sql: &str) -> Vec<String> {
        let url = self
            .postgres
            .url
            .replace("/postgres", &format!("/{database}"));
        let sql = sql.to_string();
        self.runtime.block_on(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(connection);
            client
                .query(&sql, &[])
                .await
                .expect("query")
                .iter()
                .map(|row| row.get::<_, String>(0))
                .collect()
        })
    }

    /// Writes `trails.yaml` with these `databases` of the instance.
    fn write_blueprint(&self, databases: &str) {
        std::fs::write(
            self.dir.path().join("trails.yaml"),
            blueprint(&self.templates(), databases),
        )
        .expect("write blueprint");
    }

    fn write_migration(&self, name: &str, sql: &str) {
        std::fs::write(self.templates().join("sql/postgres").join(name), sql)
            .expect("write migration");
    }
}

fn blueprint(templates: &Path, databases: &str) -> String {
    let local = std::fs::read_to_string(repo("examples/local.yaml")).expect("examples/local.yaml");
    // Kafka is not part of this test.
    let without_kafka = local.split("\nkafka:").next().expect("text").to_string();
    let with_templates = without_kafka.replace(
        "templates: ../templates",
        &format!("templates: {}", templates.display()),
    );
    let with_databases = with_templates.replace(
        "    backup_retention_days: 1\n",
        &format!("    backup_retention_days: 1\n{databases}"),
    );
    assert!(
        databases.is_empty() || with_databases != with_templates,
        "the fixture's postgres section moved"
    );
    with_databases
}

/// moto and a password-checking PostgreSQL; the bare instance applied from `examples/local.yaml`
/// with the repository's first migration copied under the test's templates, and the master user
/// added to the local server standing in for it. Returns the setup, that user and its password.
fn started() -> (Setup, String, String) {
    let setup = Setup {
        moto: Moto::start(),
        postgres: Postgres::start_authenticating(),
        runtime: tokio::runtime::Runtime::new().expect("runtime"),
        dir: tempfile::tempdir().expect("temp dir"),
    };
    let migrations = setup.templates().join("sql/postgres");
    std::fs::create_dir_all(&migrations).expect("templates");
    std::fs::copy(
        repo("templates/sql/postgres/001_api_keys.sql"),
        migrations.join("001_api_keys.sql"),
    )
    .expect("copy migration");
    std::fs::write(
        setup.dir.path().join("bare.yaml"),
        blueprint(&setup.templates(), ""),
    )
    .expect("write");
    // The instance first, then its master user on the local server standing in for it.
    let bare = setup.trails("bare.yaml", &["apply", "--yes", "-q"]);
    assert_eq!(bare.code, 0, "apply failed:\n{}", bare.stderr);
    let (rds, secrets) = (setup.moto.rds(), setup.moto.secrets());
    let url = setup.postgres.url.clone();
    let (master, password) = setup
        .runtime
        .block_on(async move { Postgres::add_master_user(&url, &rds, &secrets, INSTANCE).await });
    (setup, master, password)
}

#[test]
fn apply_creates_the_database_runs_each_migration_once_and_drops_it_when_removed() {
    let (setup, master, password) = started();
    setup.write_migration(
        "002_alerts.sql",
        "CREATE TABLE alerts.rules (id bigint PRIMARY KEY, name text NOT NULL);\n\
         INSERT INTO alerts.rules VALUES (1, 'disk');\n",
    );
    let databases = "    databases:\n      turia_trails:\n        schemas: [public, auth, alerts]\n        migrations: [sql/postgres/001_api_keys.sql, sql/postgres/002_alerts.sql]\n";
    setup.write_blueprint(databases);

    let mut config: tokio_postgres::Config = setup.postgres.url.parse().expect("URL");
    config.user(&master).password(&password);
    let (_client, _connection) = setup
        .runtime
        .block_on(config.connect(tokio_postgres::NoTls))
        .expect("the master user logs in with the secret's password");

    // --endpoint with a wrong user and password: the server refuses at once (no retries), and
    // the message says where trails connected.
    let port_only = setup.endpoint();
    let wrong = port_only.replace("postgres://", "postgres://nobody:not-the-password@");
    // A password never goes on the command line, where every user of the machine can read it.
    let on_command_line = setup.trails("trails.yaml", &["apply", "--yes", "--endpoint", &wrong]);
    assert_eq!(on_command_line.code, 1, "{}", on_command_line.stdout);
    assert!(
        on_command_line.stderr.contains("the URL holds a password")
            && on_command_line.stderr.contains("TRAILS_ENDPOINTS")
            && !on_command_line.stderr.contains("not-the-password"),
        "{}",
        on_command_line.stderr
    );
    let mut env = setup.moto.env();
    env.push(("TRAILS_ENDPOINTS", wrong.clone()));
    let path = setup.dir.path().join("trails.yaml");
    let refused = run_with(
        None,
        &env,
        &["apply", "--yes", "-f", path.to_str().expect("utf-8 path")],
    );
    assert_eq!(refused.code, 1, "{}", refused.stdout);
    let output = format!("{}{}", refused.stdout, refused.stderr);
    assert!(
        output.contains("connect to PostgreSQL at 127.0.0.1")
            && output.contains("password authentication failed for user \"nobody\""),
        "{output}"
    );
    assert!(!output.contains(&password), "the master password leaked");

    let applied = setup.trails("trails.yaml", &["apply", "--yes", "--endpoint", &port_only]);
    assert_eq!(applied.code, 0, "apply failed:\n{}", applied.stderr);
    let all = format!("{}{}", applied.stdout, applied.stderr);
    assert!(!all.contains(&password), "the master password leaked");
    let state =
        std::fs::read_to_string(setup.dir.path().join(".trails/local.state.json")).expect("state");
    assert!(
        !state.contains(&password),
        "the master password is in the state"
    );

    assert_eq!(
        setup.query(
            "postgres",
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = 'turia_trails'"
        ),
        std::slice::from_ref(&master),
        "the database belongs to the master user"
    );
    assert_eq!(
        setup.query(
            "turia_trails",
            "SELECT nspname::text FROM pg_namespace WHERE nspname IN ('auth', 'alerts', 'public') ORDER BY 1"
        ),
        ["alerts", "auth", "public"]
    );
    assert_eq!(
        setup.query(
            "turia_trails",
            "SELECT file FROM public.trails_migrations ORDER BY file"
        ),
        [
            "sql/postgres/001_api_keys.sql",
            "sql/postgres/002_alerts.sql"
        ]
    );
    assert_eq!(
        setup.query("turia_trails", "SELECT to_regclass('api_keys')::text"),
        ["api_keys"]
    );

    // Nothing changed: no change is planned.
    let again = setup.trails("trails.yaml", &["plan", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);

    // The database carries trails' mark; one made by someone else is refused, not adopted,
    // until `trails import` names it.
    let mark = |name: &str| {
        setup.query(
            "postgres",
            &format!(
                "SELECT coalesce(shobj_description(oid, 'pg_database'), '(none)') \
                 FROM pg_database WHERE datname = '{name}'"
            ),
        )
    };
    assert_eq!(
        mark("turia_trails"),
        ["managed by trails: trails-local/local/postgres.database.main-turia-trails"]
    );
    // Made by hand by the master user (a database only its owner may mark).
    setup.query(
        "postgres",
        &format!("CREATE DATABASE legacy_reports OWNER \"{master}\""),
    );
    setup.write_blueprint(&format!(
        "{databases}      legacy_reports:\n        schemas: [public]\n"
    ));
    let refused = setup.trails("trails.yaml", &["apply", "--yes", "--endpoint", &port_only]);
    assert_eq!(refused.code, 1, "{}", refused.stdout);
    let output = format!("{}{}", refused.stdout, refused.stderr);
    assert!(
        output.contains(
            "PostgreSQL database legacy_reports already exists and carries no trails mark"
        ) && output.contains(
            "trails import -e local postgres.database.main-legacy-reports legacy_reports"
        ),
        "{output}"
    );
    assert_eq!(mark("legacy_reports"), ["(none)"], "it was not touched");
    let import = setup.trails(
        "trails.yaml",
        &[
            "import",
            "postgres.database.main-legacy-reports",
            "legacy_reports",
        ],
    );
    assert_eq!(import.code, 0, "{}{}", import.stdout, import.stderr);
    let adopted = setup.trails("trails.yaml", &["apply", "--yes", "--endpoint", &port_only]);
    assert_eq!(adopted.code, 0, "{}{}", adopted.stdout, adopted.stderr);
    assert_eq!(
        mark("legacy_reports"),
        ["managed by trails: trails-local/local/postgres.database.main-legacy-reports"]
    );

    // An applied migration edited in place is planned (its digest changed) but never re-run.
    setup.write_migration(
        "002_alerts.sql",
        "CREATE TABLE alerts.rules (id bigint PRIMARY KEY);\n",
    );
    let edited = setup.trails("trails.yaml", &["apply", "--yes", "--endpoint", &port_only]);
    assert_eq!(edited.code, 1, "{}", edited.stdout);
    let output = format!("{}{}", edited.stdout, edited.stderr);
    assert!(
        output.contains("migration sql/postgres/002_alerts.sql ran before as sha256:")
            && output.contains("put the change in a new file"),
        "{output}"
    );
    assert_eq!(
        setup.query("turia_trails", "SELECT name FROM alerts.rules"),
        ["disk"],
        "the edited migration ran again"
    );

    // Restored, and the change put in a new file: only that file runs.
    setup.write_migration(
        "002_alerts.sql",
        "CREATE TABLE alerts.rules (id bigint PRIMARY KEY, name text NOT NULL);\n\
         INSERT INTO alerts.rules VALUES (1, 'disk');\n",
    );
    setup.write_migration(
        "003_more_alerts.sql",
        "INSERT INTO alerts.rules VALUES (2, 'memory');\n",
    );
    setup.write_blueprint(&databases.replace(
        "002_alerts.sql]",
        "002_alerts.sql, sql/postgres/003_more_alerts.sql]",
    ));
    let grown = setup.trails("trails.yaml", &["apply", "--yes", "--endpoint", &port_only]);
    assert_eq!(grown.code, 0, "apply failed:\n{}", grown.stderr);
    assert_eq!(
        setup.query("turia_trails", "SELECT name FROM alerts.rules ORDER BY id"),
        ["disk", "memory"]
    );

    // A broken migration fails with the server's message and leaves nothing half done.
    setup.write_migration(
        "004_broken.sql",
        "CREATE TABLE alerts.x (id bigint);\nSELEC 1;\n",
    );
    setup.write_blueprint(&databases.replace(
        "002_alerts.sql]",
        "002_alerts.sql, sql/postgres/003_more_alerts.sql, sql/postgres/004_broken.sql]",
    ));
    let broken = setup.trails("trails.yaml", &["apply", "--yes", "--endpoint", &port_only]);
    assert_eq!(broken.code, 1, "{}", broken.stdout);
    let output = format!("{}{}", broken.stdout, broken.stderr);
    assert!(
        output.contains("migration sql/postgres/004_broken.sql: run")
            && output.contains("syntax error at or near \"SELEC\""),
        "{output}"
    );
    assert_eq!(
        setup.query(
            "turia_trails",
            "SELECT coalesce(to_regclass('alerts.x')::text, 'none')"
        ),
        ["none"],
        "the failed migration's first statement stayed"
    );

    // Taken out of the blueprint, the database is dropped: that logs in as the master user
    // again, whose password the state keeps only as a reference.
    setup.write_blueprint("");
    let removed = setup.trails("trails.yaml", &["apply", "--yes", "--endpoint", &port_only]);
    assert_eq!(removed.code, 0, "apply failed:\n{}", removed.stderr);
    assert!(
        removed
            .stdout
            .contains("postgres.database.main-turia-trails"),
        "{}",
        removed.stdout
    );
    assert!(
        setup
            .query("postgres", "SELECT datname::text FROM pg_database")
            .iter()
            .all(|name| name != "turia_trails"),
        "the database is still there"
    );

    // Destroying the instance too leaves its databases to it (and to its final snapshot):
    // no connection is needed, so no --endpoint.
    setup.write_blueprint(databases);
    let again = setup.trails(
        "trails.yaml",
        &["apply", "--yes", "-q", "--endpoint", &port_only],
    );
    assert_eq!(again.code, 0, "apply failed:\n{}", again.stderr);
    let destroyed = setup.trails("trails.yaml", &["destroy", "--yes", "-q"]);
    assert_eq!(destroyed.code, 0, "destroy failed:\n{}", destroyed.stderr);
    let left = setup.trails("trails.yaml", &["state", "list"]);
    assert_eq!(left.stdout.trim(), "", "still recorded: {}", left.stdout);
}

impl Setup {
    /// What `sql` answers (first column, as text) or the server's refusal, logged in as `user`.
    fn query_as(&self, user: &str, password: &str, sql: &str) -> Result<Vec<String>, String> {
        let mut config: tokio_postgres::Config = self
            .postgres
            .url
            .replace("/postgres", "/turia_trails")
            .parse()
            .expect("URL");
        config.user(user).password(password);
        let sql = sql.to_string();
        self.runtime.block_on(async move {
            let message = |error: tokio_postgres::Error| {
                error
                    .as_db_error()
                    .map_or_else(|| error.to_string(), |db| db.message().to_string())
            };
            let (client, connection) = config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(message)?;
            tokio::spawn(connection);
            let rows = client.simple_query(&sql).await.map_err(message)?;
            Ok(rows
                .iter()
                .filter_map(|message| match message {
                    tokio_postgres::SimpleQueryMessage::Row(row) => {
                        Some(row.get(0).unwrap_or("NULL").to_string())
                    }
                    _ => None,
                })
                .collect())
        })
    }

    /// The password trails generated for role `role`, from Secrets Manager.
    fn role_password(&self, role: &str) -> Option<String> {
        let secrets = self.moto.secrets();
        let name = format!("trails/{INSTANCE}/postgres-role/{role}");
        self.runtime.block_on(async move {
            secrets
                .get_secret_value()
                .secret_id(name)
                .send()
                .await
                .ok()
                .and_then(|value| value.secret_string().map(str::to_string))
        })
    }
}

#[test]
fn a_role_logs_in_with_its_generated_password_holds_only_its_grants_and_goes_when_removed() {
    let (setup, _master, master_password) = started();
    let port_only = setup.endpoint();
    let with_roles = |roles: &str| {
        format!(
            "    databases:\n      turia_trails:\n        schemas: [public]\n        \
             migrations: [sql/postgres/001_api_keys.sql]\n        roles:\n{roles}"
        )
    };
    setup.write_blueprint(&with_roles(
        "          ingest: { tables: { api_keys: [select] } }\n",
    ));
    let applied = setup.trails("trails.yaml", &["apply", "--yes", "--endpoint", &port_only]);
    assert_eq!(applied.code, 0, "{}{}", applied.stdout, applied.stderr);
    assert!(
        applied.stdout.contains("postgres.role.main-ingest"),
        "{}",
        applied.stdout
    );

    // Its password was generated and kept in Secrets Manager; it is in no output and no state.
    let password = setup.role_password("ingest").expect("the role's secret");
    assert_eq!(password.len(), 64, "a 256-bit password");
    let state =
        std::fs::read_to_string(setup.dir.path().join(".trails/local.state.json")).expect("state");
    let all = format!("{}{}", applied.stdout, applied.stderr);
    for secret in [&password, &master_password] {
        assert!(
            !state.contains(secret.as_str()),
            "a password is in the state"
        );
        assert!(!all.contains(secret.as_str()), "a password was printed");
    }
    // Only the SCRAM verifier reached the server.
    assert_eq!(
        setup.query(
            "postgres",
            "SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = 'ingest'"
        ),
        ["SCRAM-SHA-256$"]
    );

    // It logs in with that password, reads api_keys, and can do nothing else.
    assert_eq!(
        setup.query_as("ingest", &password, "SELECT count(*) FROM api_keys"),
        Ok(vec!["0".to_string()])
    );
    assert!(
        setup
            .query_as("ingest", "not-the-password", "SELECT 1")
            .is_err_and(|error| error.contains("password authentication failed")),
        "a wrong password was accepted: {:?}",
        setup.query_as("ingest", "not-the-password", "SELECT 1")
    );
    let refusals = [
        "INSERT INTO api_keys (id, key_hash, tenant_id) VALUES (gen_random_uuid(), 'x', gen_random_uuid())",
        "DELETE FROM api_keys",
        "CREATE TABLE mine (id int)",
        "SELECT count(*) FROM trails_migrations",
        "CREATE ROLE other LOGIN",
        "CREATE DATABASE other",
    ];
    for sql in refusals {
        let answer = setup.query_as("ingest", &password, sql);
        assert!(
            answer
                .as_ref()
                .is_err_and(|error| error.contains("permission denied")),
            "`{sql}` was not refused: {answer:?}"
        );
    }
    assert_eq!(
        setup.query(
            "postgres",
            "SELECT rolsuper::text || rolcreatedb::text || rolcreaterole::text \
             || coalesce(shobj_description(oid, 'pg_authid'), '(none)') \
             FROM pg_roles WHERE rolname = 'ingest'"
        ),
        ["falsefalsefalsemanaged by trails: trails-local/local/postgres.role.main-ingest"]
    );
    // The ingest service starts as this role: its own migration finds the table and stops.
    let port = setup.endpoint();
    let port = port.rsplit(':').next().expect("port");
    let url = format!("postgres://ingest:{password}@127.0.0.1:{port}/turia_trails");
    setup
        .runtime
        .block_on(async move {
            let pool = trails::ingest::pool(&url)?;
            trails::ingest::migrate(&pool).await
        })
        .expect("the ingest service's migration as the least-privilege role");

    // Nothing changed: nothing is planned, and a second apply keeps the password.
    let again = setup.trails("trails.yaml", &["plan", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);

    // Privileges become exactly the listed ones: widened, then narrowed again.
    setup.write_blueprint(&with_roles(
        "          ingest: { tables: { api_keys: [SELECT, INSERT] } }\n",
    ));
    let widened = setup.trails("trails.yaml", &["apply", "--yes", "--endpoint", &port_only]);
    assert_eq!(widened.code, 0, "{}{}", widened.stdout, widened.stderr);
    assert_eq!(setup.role_password("ingest").as_ref(), Some(&password));
    assert_eq!(
        setup.query_as("ingest", &password, refusals[0]),
        Ok(Vec::new())
    );
    setup.write_blueprint(&with_roles(
        "          ingest: { tables: { api_keys: [SELECT] } }\n",
    ));
    let narrowed = setup.trails("trails.yaml", &["apply", "--yes", "--endpoint", &port_only]);
    assert_eq!(narrowed.code, 0, "{}{}", narrowed.stdout, narrowed.stderr);
    assert!(
        setup
            .query_as("ingest", &password, refusals[0])
            .is_err_and(|error| error.contains("permission denied")),
        "INSERT survived its removal from the blueprint"
    );

    // A role someone made by hand is refused, not taken over, and keeps its password.
    setup.query("postgres", "CREATE ROLE reporting LOGIN PASSWORD 'by-hand'");
    setup.write_blueprint(&with_roles(
        "          ingest: { tables: { api_keys: [SELECT] } }\n          \
         reporting: { tables: { api_keys: [SELECT] } }\n",
    ));
    let refused = setup.trails("trails.yaml", &["apply", "--yes", "--endpoint", &port_only]);
    assert_eq!(refused.code, 1, "{}", refused.stdout);
    let output = format!("{}{}", refused.stdout, refused.stderr);
    assert!(
        output.contains("PostgreSQL role reporting already exists and carries no trails mark"),
        "{output}"
    );
    assert_eq!(
        setup.query_as("reporting", "by-hand", "SELECT 1"),
        Ok(vec!["1".to_string()]),
        "the hand-made role was changed"
    );
    assert_eq!(setup.role_password("reporting"), None, "a secret was made");

    // Out of the blueprint, trails' role is dropped and its secret deleted; the other stays.
    setup.write_blueprint(&with_roles("          {}\n"));
    let removed = setup.trails("trails.yaml", &["apply", "--yes", "--endpoint", &port_only]);
    assert_eq!(removed.code, 0, "{}{}", removed.stdout, removed.stderr);
    assert_eq!(
        setup.query(
            "postgres",
            "SELECT rolname::text FROM pg_roles WHERE rolname IN ('ingest', 'reporting')"
        ),
        ["reporting"]
    );
    assert_eq!(
        setup.role_password("ingest"),
        None,
        "the secret is still there"
    );
}

#[test]
fn postgres_connections_use_tls_and_verify_the_certificate_against_pgsslrootcert() {
    let dir = tempfile::tempdir().expect("temp dir");
    certificates(dir.path(), "right", true);
    certificates(dir.path(), "wrong", false);
    let postgres = Postgres::start_tls(
        &dir.path().join("server.pem"),
        &dir.path().join("server.key"),
    );
    // `trails ingest create-key` migrates and inserts a key: a real round trip.
    let create_key = |url: &str, root: Option<&str>| {
        let mut env = vec![("DATABASE_URL", url.to_string())];
        if let Some(root) = root {
            env.push(("PGSSLROOTCERT", dir.path().join(root).display().to_string()));
        }
        run_with(
            None,
            &env,
            &[
                "ingest",
                "create-key",
                "--tenant",
                "0190c2a1-0000-7000-8000-00000000feed",
                "--name",
                "tls",
            ],
        )
    };
    let url = postgres.url.clone();

    // The server offers TLS and trails takes it, but with no CA to check against no
    // certificate verifies.
    let unverified = create_key(&url, None);
    assert_eq!(unverified.code, 1, "{}", unverified.stdout);
    assert!(
        unverified.stderr.contains("invalid peer certificate"),
        "{}",
        unverified.stderr
    );
    // Verified against the CA that signed it.
    let verified = create_key(&url, Some("right-ca.pem"));
    assert_eq!(verified.code, 0, "{}", verified.stderr);
    assert!(verified.stdout.trim().len() >= 32, "{}", verified.stdout);
    // Another CA: refused.
    let wrong = create_key(&url, Some("wrong-ca.pem"));
    assert_eq!(wrong.code, 1, "{}", wrong.stdout);
    assert!(
        wrong.stderr.contains("invalid peer certificate"),
        "{}",
        wrong.stderr
    );
    // With a CA named, a server (or anyone in the path) answering without TLS is refused: the
    // password is never sent in clear.
    let plain = Postgres::start();
    let downgraded = create_key(&plain.url, Some("right-ca.pem"));
    assert_eq!(downgraded.code, 1, "{}", downgraded.stdout);
    assert!(
        downgraded.stderr.to_lowercase().contains("tls"),
        "{}",
        downgraded.stderr
    );
    // sslmode=require without a CA: encrypted, not verified (libpq's meaning, for tunnels).
    let required = create_key(&format!("{url}?sslmode=require"), None);
    assert_eq!(required.code, 0, "{}", required.stderr);
    // In clear: the server refuses, as RDS with rds.force_ssl does.
    let clear = create_key(&format!("{url}?sslmode=disable"), None);
    assert_eq!(clear.code, 1, "{}", clear.stdout);
    assert!(clear.stderr.contains("no encryption"), "{}", clear.stderr);
    // A root file that is not PEM is named.
    std::fs::write(dir.path().join("junk.pem"), "not a certificate").expect("write");
    let junk = create_key(&url, Some("junk.pem"));
    assert_eq!(junk.code, 1, "{}", junk.stdout);
    assert!(
        junk.stderr.contains("PGSSLROOTCERT") && junk.stderr.contains("junk.pem"),
        "{}",
        junk.stderr
    );
}
