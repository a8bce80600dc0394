//! ClickHouse day-one configuration: a database and its migrations (tables with TTL,
//! materialized views), each migration run once, over ClickHouse's HTTP interface.
//!
//! trails talks to the blueprint's `clickhouse.url` (cluster-internal), or to
//! `--endpoint clickhouse=URL` from outside the cluster; the override's user and password log in
//! (HTTP basic auth) and are never printed. `TRAILS_CLICKHOUSE_CA` names extra CA certificates
//! for `https`.
//!
//! The HTTP interface takes one statement per request, so a migration file is split at its
//! top-level semicolons (not those in strings, quoted names or comments). ClickHouse has no
//! transactions: when a statement fails, the ones before it stay applied and the migration is
//! not recorded, so migrations must be written to run again (`IF NOT EXISTS`), as ClickHouse's
//! own guidance for DDL has it. Applied migrations are recorded in `DATABASE.trails_migrations`
//! with their file's digest; an applied migration whose file changed is refused.
//!
//! Deleting the resource drops the database, unless the same run uninstalls the release that
//! runs ClickHouse.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value, json};

use super::http::{self, Server, Shared};
use super::{
    Applied, Converging, Observed, Provider, ProviderError, Takeover, recorded_spec, spec,
};
use crate::resources::dayone::ClickHouseDatabase;
use crate::state::Recorded;

/// The endpoint override's name.
pub const ENDPOINT: &str = "clickhouse";

const KIND: http::Kind = http::Kind {
    endpoint: ENDPOINT,
    product: "ClickHouse",
    ca_variable: "TRAILS_CLICKHOUSE_CA",
    example: "http://USER:PASSWORD@localhost:8123",
};

/// Where trails records the migrations it ran, inside the database.
const LEDGER: &str = "trails_migrations";

/// Registers the database provider.
pub fn register(
    templates_dir: &Path,
    endpoints: &BTreeMap<String, String>,
    deleting: &BTreeSet<String>,
    by_kind: &mut HashMap<&'static str, Box<dyn Provider>>,
) {
    by_kind.insert(
        "clickhouse.database",
        Box::new(DatabaseProvider(Shared::new(
            KIND,
            templates_dir,
            endpoints,
            deleting,
        ))),
    );
}

/// The rows of a `FORMAT JSONEachRow` answer.
fn json_rows(text: &str, what: &str) -> Result<Vec<Value>, ProviderError> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).map_err(|error| {
                ProviderError::Invalid(format!("{what} holds a row trails cannot read: {error}"))
            })
        })
        .collect()
}

/// One text column of JSON rows.
fn column(rows: &[Value], name: &str) -> BTreeSet<String> {
    rows.iter()
        .filter_map(|row| row.get(name).and_then(Value::as_str))
        .map(str::to_string)
        .collect()
}

/// What the database holds: `None` when it does not exist, else its migrations recorded (file
/// to digest) and its tables.
struct Live {
    migrations: BTreeMap<String, String>,
    tables: BTreeSet<String>,
}

async fn read_back(server: &Server, name: &str) -> Result<Option<Live>, ProviderError> {
    let exists = run_own(
        server,
        None,
        "reading system.databases",
        &format!(
            "SELECT name FROM system.databases WHERE name = {} FORMAT JSONEachRow",
            literal(name)
        ),
    )
    .await?;
    if json_rows(&exists, "system.databases")?.is_empty() {
        return Ok(None);
    }
    let tables = run_own(
        server,
        None,
        "reading system.tables",
        &format!(
            "SELECT name FROM system.tables WHERE database = {} FORMAT JSONEachRow",
            literal(name)
        ),
    )
    .await?;
    let tables = column(&json_rows(&tables, "system.tables")?, "name");
    let mut migrations = BTreeMap::new();
    if tables.contains(LEDGER) {
        let ledger = format!("{}.{LEDGER}", quoted(name));
        let rows = run_own(
            server,
            None,
            "reading the migrations ledger",
            &format!("SELECT file, digest FROM {ledger} FORMAT JSONEachRow"),
        )
        .await?;
        for row in json_rows(&rows, &ledger)? {
            if let (Some(file), Some(digest)) = (
                row.get("file").and_then(Value::as_str),
                row.get("digest").and_then(Value::as_str),
            ) {
                migrations.insert(file.to_string(), digest.to_string());
            }
        }
    }
    Ok(Some(Live { migrations, tables }))
}

/// Migrations of `database` the ledger does not record as run with their digest.
fn not_recorded(database: &ClickHouseDatabase, live: &Live) -> Vec<String> {
    database
        .migrations
        .iter()
        .filter(|migration| live.migrations.get(&migration.file) != Some(&migration.digest))
        .map(|migration| format!("migration {} is not recorded as run", migration.file))
        .collect()
}

/// `verify`: the database exists, its ledger records every migration, and it has `tables`
/// (those its migrations create). `Ok` evidence or `Err` what is wrong.
pub async fn verify(
    desired: Value,
    tables: Vec<String>,
    templates_dir: PathBuf,
    endpoints: BTreeMap<String, String>,
) -> Result<String, String> {
    let shared = Shared::new(KIND, &templates_dir, &endpoints, &BTreeSet::new());
    let database: ClickHouseDatabase = spec(&desired).map_err(|e| e.to_string())?;
    let server = shared.server(&database.url).map_err(|e| e.to_string())?;
    let name = &database.name;
    let live = read_back(&server, name)
        .await
        .map_err(|e| crate::error_chain(&e))?
        .ok_or_else(|| format!("database {name} does not exist at {}", server.shown))?;
    let mut problems = not_recorded(&database, &live);
    problems.extend(
        tables
            .iter()
            .filter(|table| !live.tables.contains(*table))
            .map(|table| format!("table {table} is missing")),
    );
    if problems.is_empty() {
        Ok(format!(
            "database {name} at {}: {} of {} migration(s) recorded, tables {}",
            server.shown,
            database.migrations.len(),
            database.migrations.len(),
            tables.join(", ")
        ))
    } else {
        Err(format!(
            "database {name} at {}: {}",
            server.shown,
            problems.join("; ")
        ))
    }
}

struct DatabaseProvider(Shared);

/// `name` as a quoted ClickHouse identifier.
fn quoted(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

/// `text` as a ClickHouse string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Runs one statement, in `database` when given. `Err(Ok(text))` is ClickHouse's refusal
/// (`Code: N. DB::Exception: ...`), `Err(Err(_))` a transport failure.
async fn run(
    server: &Server,
    database: Option<&str>,
    statement: &str,
) -> Result<Result<String, String>, ProviderError> {
    let query: Vec<(&str, String)> = database
        .map(|database| vec![("database", database.to_string())])
        .unwrap_or_default();
    let answer = server
        .send(
            Method::POST,
            "/",
            &query,
            Some(("text/plain; charset=UTF-8", statement.to_string())),
        )
        .await?;
    Ok(if answer.status.is_success() {
        Ok(answer.text)
    } else {
        Err(format!("{}: {}", answer.status, answer.text.trim()))
    })
}

/// Runs a statement of trails' own: a refusal is an error naming the statement's purpose.
async fn run_own(
    server: &Server,
    database: Option<&str>,
    what: &str,
    statement: &str,
) -> Result<String, ProviderError> {
    run(server, database, statement)
        .await?
        .map_err(|refusal| ProviderError::Api {
            operation: what.to_string(),
            message: format!("ClickHouse at {} answered {refusal}", server.shown),
        })
}

impl DatabaseProvider {
    async fn apply_database(&self, desired: &Value) -> Result<Applied, ProviderError> {
        let database: ClickHouseDatabase = spec(desired)?;
        let server = self.0.server(&database.url)?;
        let name = database.name.as_str();
        run_own(
            &server,
            None,
            "CREATE DATABASE",
            &format!("CREATE DATABASE IF NOT EXISTS {}", quoted(name)),
        )
        .await?;
        let ledger = format!("{}.{LEDGER}", quoted(name));
        run_own(
            &server,
            Some(name),
            "creating the migrations ledger",
            &format!(
                "CREATE TABLE IF NOT EXISTS {ledger} (file String, digest String, \
                 applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = MergeTree ORDER BY file"
            ),
        )
        .await?;
        let applied = read_back(&server, name)
            .await?
            .map(|live| live.migrations)
            .unwrap_or_default();
        for migration in &database.migrations {
            match applied.get(&migration.file) {
                Some(digest) if *digest == migration.digest => continue,
                Some(_) => {
                    return Err(ProviderError::Conflict(format!(
                        "{} was applied to {name} with other contents; an applied migration is \
                         never run again: restore it and put the change in a new file",
                        migration.file
                    )));
                }
                None => {}
            }
            let text = self.0.definition(migration)?;
            let statements = statements(&text);
            for (index, statement) in statements.iter().enumerate() {
                if let Err(refusal) = run(&server, Some(name), statement).await? {
                    let kept = if index == 0 {
                        String::new()
                    } else {
                        format!(
                            "; statement(s) 1-{index} of the file ran and stay (ClickHouse has no \
                             transactions): the migration is not recorded and runs again from the \
                             start, so keep its statements idempotent (IF NOT EXISTS)"
                        )
                    };
                    return Err(ProviderError::Api {
                        operation: format!(
                            "{}, statement {} of {}",
                            migration.file,
                            index + 1,
                            statements.len()
                        ),
                        message: format!("ClickHouse at {} answered {refusal}{kept}", server.shown),
                    });
                }
            }
            run_own(
                &server,
                Some(name),
                "recording the migration",
                &format!(
                    "INSERT INTO {ledger} (file, digest) VALUES ({}, {})",
                    literal(&migration.file),
                    literal(&migration.digest)
                ),
            )
            .await?;
        }
        Ok(Applied {
            id: name.to_string(),
            outputs: [("name".to_string(), json!(name))].into_iter().collect(),
        })
    }
}

#[async_trait]
impl Converging for DatabaseProvider {
    // Not marked yet: what exists under the name is taken over (see the trait).
    async fn converge(
        &self,
        desired: &Value,
        _takeover: Takeover,
    ) -> Result<Applied, ProviderError> {
        self.apply_database(desired).await
    }

    fn id_of(&self, desired: &Value) -> Result<String, ProviderError> {
        Ok(spec::<ClickHouseDatabase>(desired)?.name)
    }

    async fn remove(&self, _address: &str, recorded: &Recorded) -> Result<(), ProviderError> {
        if self.0.release_goes(recorded) {
            return Ok(());
        }
        let database: ClickHouseDatabase = recorded_spec(recorded)?;
        let server = self.0.server(&database.url)?;
        run_own(
            &server,
            None,
            "DROP DATABASE",
            &format!("DROP DATABASE IF EXISTS {} SYNC", quoted(&database.name)),
        )
        .await
        .map(|_| ())
    }

    /// Dropped, or a migration no longer recorded (its ledger row deleted): an update creates
    /// the database and runs what is not recorded. Tables dropped by hand are `verify`'s to
    /// find: an update would not bring them back (their migration is recorded).
    async fn observe(&self, recorded: &Recorded) -> Result<Observed, ProviderError> {
        let database: ClickHouseDatabase = recorded_spec(recorded)?;
        let server = self.0.server(&database.url)?;
        Ok(match read_back(&server, &database.name).await? {
            None => Observed::Gone,
            Some(live) => Observed::from_differences(not_recorded(&database, &live)),
        })
    }
}

/// The statements of a SQL file: split at semicolons outside strings, quoted names and
/// comments; pieces with nothing but comments and blanks are dropped.
pub fn statements(sql: &str) -> Vec<String> {
    #[derive(PartialEq)]
    enum In {
        Code,
        Quoted(char),
        LineComment,
        BlockComment,
    }
    let mut found = Vec::new();
    let mut current = String::new();
    let mut has_code = false;
    let mut state = In::Code;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match state {
            In::Code => match c {
                ';' => {
                    if has_code {
                        found.push(current.trim().to_string());
                    }
                    current.clear();
                    has_code = false;
                    continue;
                }
                '\'' | '"' | '`' => {
                    state = In::Quoted(c);
                    has_code = true;
                }
                '-' if chars.peek() == Some(&'-') => state = In::LineComment,
                '/' if chars.peek() == Some(&'*') => state = In::BlockComment,
                c if !c.is_whitespace() => has_code = true,
                _ => {}
            },
            In::Quoted(quote) => {
                if c == '\\' {
                    current.push(c);
                    if let Some(escaped) = chars.next() {
                        current.push(escaped);
                    }
                    continue;
                }
                if c == quote {
                    state = In::Code;
                }
            }
            In::LineComment => {
                if c == '\n' {
                    state = In::Code;
                }
            }
            In::BlockComment => {
                if c == '*' && chars.peek() == Some(&'/') {
                    current.push(c);
                    if let Some(slash) = chars.next() {
                        current.push(slash);
                    }
                    state = In::Code;
                    continue;
                }
            }
        }
        current.push(c);
    }
    if has_code {
        found.push(current.trim().to_string());
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_at_top_level_semicolons_only() {
        let sql = "-- header; with a semicolon\nCREATE TABLE a (s String DEFAULT 'x;y') ENGINE = Memory;\n\
                   /* block; comment */ CREATE VIEW `v;w` AS SELECT \"c;d\" FROM a;\n\
                   SELECT 'it\\'s; fine';\n-- trailing comment only\n";
        let found = statements(sql);
        assert_eq!(found.len(), 3, "{found:#?}");
        assert!(found[0].starts_with("-- header; with a semicolon\nCREATE TABLE a"));
        assert!(found[0].ends_with("DEFAULT 'x;y') ENGINE = Memory"));
        assert!(found[1].contains("`v;w`") && found[1].contains("\"c;d\""));
        assert_eq!(found[2], "SELECT 'it\\'s; fine'");
    }

    #[test]
    fn a_file_without_a_final_semicolon_keeps_its_last_statement() {
        assert_eq!(statements("SELECT 1; SELECT 2"), ["SELECT 1", "SELECT 2"]);
        assert!(statements("  -- nothing\n/* at all */ ;; ").is_empty());
    }

    #[test]
    fn names_and_strings_are_quoted_for_clickhouse() {
        assert_eq!(quoted("audit"), "`audit`");
        assert_eq!(quoted("a`b"), "`a\\`b`");
        assert_eq!(literal("it's"), "'it\\'s'");
    }
}
