//! ClickHouse day-one configuration (database, tables with TTL, a materialized view) applied,
//! extended, refused and destroyed against the real ClickHouse engine: chDB behind
//! `scripts/clickhouse_http.py`, which serves it over ClickHouse's HTTP interface.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::services::free_port;
use super::{Run, repo, run_with, run_with_endpoint};

const USER: &str = "trails";
const PASSWORD: &str = "ch-S3cret+pw";

/// The python of the venv that has chDB (`scripts/test` installs it).
fn chdb_python() -> PathBuf {
    if let Some(path) = std::env::var_os("TRAILS_CHDB_PYTHON") {
        return PathBuf::from(path);
    }
    std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cache/trails/chdb-venv/bin/python"))
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// ClickHouse on a free loopback port, its data in a temporary directory.
pub struct ClickHouse {
    child: Child,
    pub port: u16,
    _data: tempfile::TempDir,
    log: PathBuf,
}

impl ClickHouse {
    /// Starts it, or panics with what to do: a test that needs it must not pass without it.
    pub fn start() -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let log = data.path().join("server.log");
        let port = free_port();
        let python = chdb_python();
        let child = Command::new(&python)
            .arg(repo("scripts/clickhouse_http.py"))
            .arg(port.to_string())
            .arg(data.path().join("engine"))
            .args([USER, PASSWORD])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run {} ({error}); run ./scripts/test, which installs chDB",
                    python.display()
                )
            });
        let mut server = Self {
            child,
            port,
            _data: data,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ping = reqwest::blocking::get(format!("http://127.0.0.1:{port}/ping"));
            if ping.is_ok_and(|answer| answer.status().is_success()) {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "the ClickHouse server exited ({status}); run ./scripts/test, which installs \
                     chDB. Its log:\n{}",
                    std::fs::read_to_string(&server.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "ClickHouse did not answer within 60s. Its log:\n{}",
                std::fs::read_to_string(&server.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The URL trails is given, with the login.
    pub fn endpoint(&self) -> String {
        format!(
            "http://{USER}:{}@127.0.0.1:{}",
            PASSWORD.replace('+', "%2B"),
            self.port
        )
    }

    /// Runs a query as the test, panicking on a refusal.
    pub fn query(&self, sql: &str) -> String {
        let answer = reqwest::blocking::Client::new()
            .post(format!("http://127.0.0.1:{}/", self.port))
            .basic_auth(USER, Some(PASSWORD))
            .body(sql.to_string())
            .send()
            .expect("ClickHouse answers");
        let status = answer.status();
        let text = answer.text().expect("body");
        assert!(status.is_success(), "{sql}: {status} {text}");
        text.trim().to_string()
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const EVENTS: &str = "-- The audit store on one node: 90-day TTL, hourly rollup.
CREATE TABLE IF NOT EXISTS audit.audit_events
(
    event_id    UUID,
    tenant_id   UUID,
    event_date  Date,
    received_at DateTime64(3, 'UTC'),
    action_name LowCardinality(String),
    payload     String CODEC(ZSTD(3))
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(event_date)
ORDER BY (tenant_id, event_date, action_name, event_id)
TTL event_date + INTERVAL 90 DAY DELETE;

CREATE TABLE IF NOT EXISTS audit.audit_events_hourly
(
    tenant_id   UUID,
    hour        DateTime('UTC'),
    action_name LowCardinality(String),
    events      UInt64
)
ENGINE = SummingMergeTree
ORDER BY (tenant_id, hour, action_name)
TTL hour + INTERVAL 90 DAY DELETE;

CREATE MATERIALIZED VIEW IF NOT EXISTS audit.audit_events_hourly_mv
TO audit.audit_events_hourly AS
SELECT tenant_id, toStartOfHour(received_at) AS hour, action_name, count() AS events
FROM audit.audit_events
GROUP BY tenant_id, hour, action_name;
";

fn blueprint(dir: &Path, migrations: &[&str]) -> PathBuf {
    let file = dir.join("analytics.yaml");
    let list = migrations
        .iter()
        .map(|m| format!("sql/clickhouse/{m}"))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        &file,
        format!(
            "blueprint: analytics\nregion: us-east-1\nclickhouse:\n  url: http://clickhouse.clickhouse.svc.cluster.local:8123\n  databases:\n    audit:\n      migrations: [{list}]\n"
        ),
    )
    .expect("write blueprint");
    file
}

fn migration(dir: &Path, name: &str, sql: &str) {
    let folder = dir.join("templates/sql/clickhouse");
    std::fs::create_dir_all(&folder).expect("migrations dir");
    std::fs::write(folder.join(name), sql).expect("write migration");
}

fn trails(file: &Path, endpoint: &str, args: &[&str]) -> Run {
    run_with_endpoint(file, "clickhouse", endpoint, args)
}

#[test]
fn apply_creates_the_database_tables_with_ttl_and_the_hourly_view_runs_each_migration_once_and_destroy_drops_it()
 {
    let server = ClickHouse::start();
    let dir = tempfile::tempdir().expect("temp dir");
    migration(dir.path(), "001_audit_events.sql", EVENTS);
    let file = blueprint(dir.path(), &["001_audit_events.sql"]);
    let login = server.endpoint();

    // A wrong password: ClickHouse's refusal, and no password printed.
    let wrong = trails(
        &file,
        &format!("http://{USER}:nope@127.0.0.1:{}", server.port),
        &["apply", "--yes"],
    );
    assert_eq!(wrong.code, 1, "{}\n{}", wrong.stdout, wrong.stderr);
    assert!(
        wrong.stderr.contains("AUTHENTICATION_FAILED"),
        "{}",
        wrong.stderr
    );
    assert!(!format!("{}{}", wrong.stdout, wrong.stderr).contains("nope"));

    let applied = trails(&file, &login, &["apply", "--yes"]);
    assert_eq!(applied.code, 0, "{}\n{}", applied.stdout, applied.stderr);
    assert!(!format!("{}{}", applied.stdout, applied.stderr).contains(PASSWORD));
    let tables = server.query(
        "SELECT name, engine FROM system.tables WHERE database = 'audit' ORDER BY name FORMAT TSV",
    );
    assert_eq!(
        tables,
        "audit_events\tMergeTree\naudit_events_hourly\tSummingMergeTree\naudit_events_hourly_mv\tMaterializedView\ntrails_migrations\tMergeTree"
    );
    let ttl = server.query(
        "SELECT engine_full FROM system.tables WHERE database = 'audit' AND name = 'audit_events' FORMAT TSV",
    );
    assert!(ttl.contains("TTL event_date + toIntervalDay(90)"), "{ttl}");
    // The view rolls events up by hour.
    server.query(
        "INSERT INTO audit.audit_events VALUES \
         (generateUUIDv4(), '00000000-0000-0000-0000-000000000001', today(), now64(3), 'login', ''), \
         (generateUUIDv4(), '00000000-0000-0000-0000-000000000001', today(), now64(3), 'login', '')",
    );
    assert_eq!(
        server
            .query("SELECT sum(events) FROM audit.audit_events_hourly WHERE action_name = 'login'"),
        "2"
    );
    assert_eq!(
        server.query("SELECT file FROM audit.trails_migrations FORMAT TSV"),
        "sql/clickhouse/001_audit_events.sql"
    );

    let again = run_with(
        None,
        &[],
        &[
            "plan",
            "--detailed-exitcode",
            "-f",
            file.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);

    // A second migration: only it runs (the events stay).
    migration(
        dir.path(),
        "002_actor.sql",
        "ALTER TABLE audit.audit_events ADD COLUMN IF NOT EXISTS actor_id String DEFAULT '';",
    );
    let file = blueprint(dir.path(), &["001_audit_events.sql", "002_actor.sql"]);
    let extended = trails(&file, &login, &["apply", "--yes"]);
    assert_eq!(extended.code, 0, "{}\n{}", extended.stdout, extended.stderr);
    assert_eq!(server.query("SELECT count() FROM audit.audit_events"), "2");
    assert_eq!(
        server.query("SELECT count() FROM audit.trails_migrations"),
        "2"
    );
    assert_eq!(
        server.query(
            "SELECT count() FROM system.columns WHERE database = 'audit' AND table = 'audit_events' AND name = 'actor_id'"
        ),
        "1"
    );

    // Read back: verify finds the database, both migrations recorded and the tables they create.
    let verified = trails(&file, &login, &["verify", "--only", "clickhouse"]);
    assert_eq!(verified.code, 0, "{}\n{}", verified.stdout, verified.stderr);
    assert!(
        verified
            .stdout
            .contains("2 of 2 migration(s) recorded, tables audit_events, audit_events_hourly"),
        "{}",
        verified.stdout
    );
    // Someone drops a table and a ledger row: verify names both; drift is the migration (an
    // update runs it again), not the table (its migration is recorded, so no update brings it
    // back).
    server.query("DROP TABLE audit.audit_events_hourly_mv SYNC");
    server.query("DROP TABLE audit.audit_events_hourly SYNC");
    server.query("DELETE FROM audit.trails_migrations WHERE file = 'sql/clickhouse/002_actor.sql'");
    let verified = trails(&file, &login, &["verify", "--only", "clickhouse"]);
    assert_eq!(verified.code, 1, "{}\n{}", verified.stdout, verified.stderr);
    assert!(
        verified
            .stdout
            .contains("migration sql/clickhouse/002_actor.sql is not recorded as run")
            && verified
                .stdout
                .contains("table audit_events_hourly is missing"),
        "{}",
        verified.stdout
    );
    let diff = trails(&file, &login, &["diff", "--detailed-exitcode"]);
    assert_eq!(diff.code, 2, "{}\n{}", diff.stdout, diff.stderr);
    assert!(
        diff.stdout
            .contains("clickhouse.database.audit: changed outside trails")
            && diff
                .stdout
                .contains("migration sql/clickhouse/002_actor.sql is not recorded as run")
            && !diff.stdout.contains("audit_events_hourly"),
        "{}",
        diff.stdout
    );
    let repaired = trails(&file, &login, &["apply", "--refresh", "--yes"]);
    assert_eq!(repaired.code, 0, "{}\n{}", repaired.stdout, repaired.stderr);
    assert_eq!(
        server.query("SELECT count() FROM audit.trails_migrations"),
        "2"
    );
    // The whole database dropped: drift; a refreshed apply makes it again, every migration run.
    server.query("DROP DATABASE audit SYNC");
    let diff = trails(&file, &login, &["diff"]);
    assert!(
        diff.stdout
            .contains("- clickhouse.database.audit: deleted outside trails"),
        "{}\n{}",
        diff.stdout,
        diff.stderr
    );
    let repaired = trails(&file, &login, &["apply", "--refresh", "--yes"]);
    assert_eq!(repaired.code, 0, "{}\n{}", repaired.stdout, repaired.stderr);
    let verified = trails(&file, &login, &["verify", "--only", "clickhouse"]);
    assert_eq!(verified.code, 0, "{}\n{}", verified.stdout, verified.stderr);

    // An applied migration edited: refused, nothing run.
    migration(
        dir.path(),
        "001_audit_events.sql",
        &EVENTS.replace("90 DAY", "30 DAY"),
    );
    let edited = trails(&file, &login, &["apply", "--yes"]);
    assert_eq!(edited.code, 1, "{}\n{}", edited.stdout, edited.stderr);
    assert!(
        edited.stderr.contains(
            "sql/clickhouse/001_audit_events.sql was applied to audit with other contents"
        ),
        "{}",
        edited.stderr
    );
    migration(dir.path(), "001_audit_events.sql", EVENTS);

    // A failing statement: ClickHouse's own message, which statement, and what stays.
    migration(
        dir.path(),
        "003_broken.sql",
        "CREATE TABLE IF NOT EXISTS audit.sessions (id UUID) ENGINE = MergeTree ORDER BY id;\nCREATE TABL audit.oops (id UUID);\n",
    );
    let file = blueprint(
        dir.path(),
        &["001_audit_events.sql", "002_actor.sql", "003_broken.sql"],
    );
    let broken = trails(&file, &login, &["apply", "--yes"]);
    assert_eq!(broken.code, 1, "{}\n{}", broken.stdout, broken.stderr);
    assert!(
        broken
            .stderr
            .contains("sql/clickhouse/003_broken.sql, statement 2 of 2")
            && broken.stderr.contains("Code: 62")
            && broken.stderr.contains("SYNTAX_ERROR")
            && broken
                .stderr
                .contains("statement(s) 1-1 of the file ran and stay"),
        "{}",
        broken.stderr
    );
    assert_eq!(
        server.query("SELECT count() FROM audit.trails_migrations"),
        "2"
    );
    // Fixed, it runs again from the start: the first statement is idempotent.
    migration(
        dir.path(),
        "003_broken.sql",
        "CREATE TABLE IF NOT EXISTS audit.sessions (id UUID) ENGINE = MergeTree ORDER BY id;\nCREATE TABLE IF NOT EXISTS audit.oops (id UUID) ENGINE = MergeTree ORDER BY id;\n",
    );
    let fixed = trails(&file, &login, &["apply", "--yes"]);
    assert_eq!(fixed.code, 0, "{}\n{}", fixed.stdout, fixed.stderr);
    assert_eq!(
        server.query("SELECT count() FROM audit.trails_migrations"),
        "3"
    );

    let destroyed = trails(&file, &login, &["destroy", "--yes"]);
    assert_eq!(
        destroyed.code, 0,
        "{}\n{}",
        destroyed.stdout, destroyed.stderr
    );
    assert_eq!(
        server.query("SELECT count() FROM system.databases WHERE name = 'audit'"),
        "0"
    );
}
