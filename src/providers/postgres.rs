//! PostgreSQL day-one configuration: a database inside an RDS instance, its schemas, and its
//! migrations, each run once.
//!
//! trails connects as the instance's master user (password from the RDS-managed secret, read
//! only for the change) to the live endpoint, or to `--endpoint postgres.NAME=URL` when the
//! instance is reachable only another way (RDS in private subnets, seen from outside the VPC,
//! through a tunnel). The URL's own user and password win over the master's.
//!
//! Each migration runs in its own transaction under the advisory lock the ingest service also
//! takes, and is recorded in `public.trails_migrations` with the digest of its file. A migration
//! already recorded is skipped; one recorded with another digest is an error, because an applied
//! migration is never run again: its change belongs in a new file.
//!
//! Schemas dropped from the blueprint are left in place (they may hold data). Deleting the
//! resource drops the database, which the plan shows as a delete, unless the same run deletes
//! its instance: then the instance takes the database with it (after its final snapshot, which
//! must still hold it), and no connection is needed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_postgres::{Client, Config};

use super::aws::generated::Generated;
use super::{
    Applied, Converging, Provider, ProviderError, Takeover, may_delete, may_take_over,
    recorded_spec, spec,
};
use crate::error_chain;
use crate::ingest::keys::MIGRATION_LOCK;
use crate::resources::Spec;
use crate::resources::dayone::{PostgresDatabase, PostgresRole};
use crate::resources::rds::DbInstance;
use crate::state::Recorded;

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection attempts after the first: an instance that just became available may not
/// resolve or accept connections for a few seconds.
const CONNECT_RETRIES: usize = 4;

/// Where trails records the migrations it ran.
const MIGRATIONS_TABLE: &str = "public.trails_migrations";

/// Registers the database and role providers; roles keep their passwords in `secrets`.
/// `deleting` holds the addresses this run deletes.
pub fn register(
    templates_dir: &Path,
    endpoints: &BTreeMap<String, String>,
    deleting: &BTreeSet<String>,
    secrets: &aws_sdk_secretsmanager::Client,
    by_kind: &mut HashMap<&'static str, Box<dyn Provider>>,
) {
    let server = DatabaseProvider {
        templates_dir: templates_dir.to_path_buf(),
        endpoints: endpoints.clone(),
        deleting: deleting.clone(),
    };
    by_kind.insert(
        PostgresRole::KIND.name,
        Box::new(RoleProvider {
            server: server.clone(),
            secrets: secrets.clone(),
        }),
    );
    by_kind.insert(PostgresDatabase::KIND.name, Box::new(server));
}

#[derive(Clone)]
struct DatabaseProvider {
    templates_dir: PathBuf,
    endpoints: BTreeMap<String, String>,
    deleting: BTreeSet<String>,
}

/// The instance and its master user, as a database's or a role's attributes carry them.
struct Master<'a> {
    instance: &'a str,
    host: &'a str,
    port: &'a str,
    username: &'a str,
    password: &'a str,
}

impl<'a> From<&'a PostgresDatabase> for Master<'a> {
    fn from(spec: &'a PostgresDatabase) -> Self {
        Self {
            instance: &spec.instance,
            host: &spec.host,
            port: &spec.port,
            username: &spec.username,
            password: &spec.password,
        }
    }
}

impl<'a> From<&'a PostgresRole> for Master<'a> {
    fn from(spec: &'a PostgresRole) -> Self {
        Self {
            instance: &spec.instance,
            host: &spec.host,
            port: &spec.port,
            username: &spec.username,
            password: &spec.password,
        }
    }
}

/// `name` as a quoted SQL identifier.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// How a database's comment says which resource made it.
const MARK: &str = "managed by trails: ";

/// `text` as a quoted SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A server-wide object trails marks with a comment: a database or a role.
#[derive(Clone, Copy)]
enum Shared {
    Database,
    Role,
}

/// `None` when the database or role `name` does not exist, else the mark its comment
/// carries, if any.
async fn shared_mark(
    admin: &Client,
    what: Shared,
    name: &str,
) -> Result<Option<Option<String>>, ProviderError> {
    let (sql, doing) = match what {
        Shared::Database => (
            "SELECT shobj_description(oid, 'pg_database') FROM pg_catalog.pg_database \
             WHERE datname = $1",
            "look up the database",
        ),
        Shared::Role => (
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_catalog.pg_roles \
             WHERE rolname = $1",
            "look up the role",
        ),
    };
    let row = admin
        .query_opt(sql, &[&name])
        .await
        .map_err(|error| sql_error(doing, error))?;
    Ok(row.map(|row| {
        row.get::<_, Option<String>>(0)
            .and_then(|comment| comment.strip_prefix(MARK).map(str::to_string))
    }))
}

/// `sha256:...` of a file's bytes, as the plan records it.
fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

impl DatabaseProvider {
    /// Connection settings for `dbname` and a printable `host:port` (never the password).
    fn config(
        &self,
        database: &Master<'_>,
        dbname: &str,
    ) -> Result<(Config, String), ProviderError> {
        let name = format!("postgres.{}", database.instance);
        let mut config = match self.endpoints.get(&name) {
            Some(url) => Config::from_str(url).map_err(|error| {
                ProviderError::Invalid(format!("--endpoint {name}: not a PostgreSQL URL ({error})"))
            })?,
            None => {
                let port = database.port.parse::<u16>().map_err(|_| {
                    ProviderError::Invalid(format!(
                        "port `{}` of {name} is not a port number",
                        database.port
                    ))
                })?;
                let mut config = Config::new();
                config.host(database.host).port(port);
                config
            }
        };
        if config.get_user().is_none() {
            config.user(database.username);
        }
        if config.get_password().is_none() {
            config.password(database.password);
        }
        config.dbname(dbname).connect_timeout(CONNECT_TIMEOUT);
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
            None => "localhost".to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        Ok((config, format!("{host}:{port}")))
    }

    /// A session on `dbname`, retrying connection failures (not refusals by the server).
    async fn connect(&self, database: &Master<'_>, dbname: &str) -> Result<Client, ProviderError> {
        let (mut config, place) = self.config(database, dbname)?;
        crate::pgtls::harden(&mut config);
        let tls = crate::pgtls::connector(&config).map_err(ProviderError::Invalid)?;
        let attempt = || async {
            let (client, connection) = config.connect(tls.clone()).await?;
            tokio::spawn(connection);
            Ok::<_, tokio_postgres::Error>(client)
        };
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_secs(1))
                    .with_max_delay(Duration::from_secs(8))
                    .with_max_times(CONNECT_RETRIES)
                    .with_jitter(),
            )
            // A server that answered (wrong password, no such database) will answer the same.
            // Nor will a certificate that did not verify.
            .when(|error| {
                error.code().is_none() && !crate::pgtls::is_verify_failure(&error_chain(error))
            })
            .await
            .map_err(|error| {
                let message = error_chain(&error);
                let hint = if crate::pgtls::is_verify_failure(&message) {
                    format!(" ({})", crate::pgtls::VERIFY_HINT)
                } else if error.code().is_some()
                    || self
                        .endpoints
                        .contains_key(&format!("postgres.{}", database.instance))
                {
                    String::new()
                } else {
                    format!(
                        " (an instance in private subnets answers only inside its VPC: give \
                         --endpoint postgres.{}=postgres://HOST:PORT for a tunnel)",
                        database.instance
                    )
                };
                ProviderError::Api {
                    operation: format!("connect to PostgreSQL at {place}, database {dbname}"),
                    message: format!("{message}{hint}"),
                }
            })
    }

    /// Creates what is missing, marks the database as this environment's and runs the
    /// migrations not yet run; an existing database is taken over as `takeover` allows.
    async fn apply_database(
        &self,
        database: &PostgresDatabase,
        takeover: Takeover,
    ) -> Result<Applied, ProviderError> {
        let admin = self.connect(&database.into(), "postgres").await?;
        match shared_mark(&admin, Shared::Database, &database.name).await? {
            Some(found) => may_take_over(
                &format!("PostgreSQL database {}", database.name),
                found.as_deref(),
                &database.owner,
                takeover,
                &database.name,
            )?,
            None => admin
                .batch_execute(&format!("CREATE DATABASE {}", quoted(&database.name)))
                .await
                .map_err(|error| sql_error(&format!("CREATE DATABASE {}", database.name), error))?,
        }
        // CREATE DATABASE cannot run in a transaction: a run killed before this comment
        // leaves an unmarked database, which its intent lets the next run adopt.
        admin
            .batch_execute(&format!(
                "COMMENT ON DATABASE {} IS {}",
                quoted(&database.name),
                literal(&format!("{MARK}{}", database.owner))
            ))
            .await
            .map_err(|error| sql_error(&format!("mark database {}", database.name), error))?;
        drop(admin);
        let mut client = self.connect(&database.into(), &database.name).await?;
        for schema in &database.schemas {
            client
                .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", quoted(schema)))
                .await
                .map_err(|error| sql_error(&format!("CREATE SCHEMA {schema}"), error))?;
        }
        client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (file text PRIMARY KEY, \
                 digest text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            ))
            .await
            .map_err(|error| sql_error("create the migrations table", error))?;
        for migration in &database.migrations {
            self.migrate(&mut client, &migration.file, &migration.digest)
                .await?;
        }
        Ok(Applied {
            id: database.name.clone(),
            outputs: [("name".to_string(), json!(database.name))]
                .into_iter()
                .collect(),
        })
    }

    /// Runs one migration unless it ran before.
    async fn migrate(
        &self,
        client: &mut Client,
        file: &str,
        planned: &str,
    ) -> Result<(), ProviderError> {
        let path = self.templates_dir.join(file);
        let bytes = std::fs::read(&path).map_err(|error| {
            ProviderError::Invalid(format!(
                "migration {file}: cannot read {}: {error}",
                path.display()
            ))
        })?;
        let found = digest(&bytes);
        if found != planned {
            return Err(ProviderError::Conflict(format!(
                "migration {file} changed since the plan was made ({planned}, now {found}); \
                 plan again"
            )));
        }
        let sql = String::from_utf8(bytes)
            .map_err(|_| ProviderError::Invalid(format!("migration {file} is not UTF-8")))?;
        let what = |step: &str| format!("migration {file}: {step}");
        let transaction = client
            .transaction()
            .await
            .map_err(|error| sql_error(&what("begin"), error))?;
        transaction
            .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|error| sql_error(&what("take the migration lock"), error))?;
        let recorded = transaction
            .query_opt(
                &format!("SELECT digest FROM {MIGRATIONS_TABLE} WHERE file = $1"),
                &[&file],
            )
            .await
            .map_err(|error| sql_error(&what("look up"), error))?;
        if let Some(row) = recorded {
            let applied: String = row.get(0);
            return if applied == found {
                Ok(())
            } else {
                Err(ProviderError::Conflict(format!(
                    "migration {file} ran before as {applied} and now reads {found}; an \
                     applied migration is never run again: restore it and put the change in a \
                     new file"
                )))
            };
        }
        transaction
            .batch_execute(&sql)
            .await
            .map_err(|error| sql_error(&what("run"), error))?;
        transaction
            .execute(
                &format!("INSERT INTO {MIGRATIONS_TABLE} (file, digest) VALUES ($1, $2)"),
                &[&file, &found],
            )
            .await
            .map_err(|error| sql_error(&what("record"), error))?;
        transaction
            .commit()
            .await
            .map_err(|error| sql_error(&what("commit"), error))
    }
}

/// A statement the server refused, with what trails was doing.
fn sql_error(operation: &str, error: tokio_postgres::Error) -> ProviderError {
    let message = match error.as_db_error() {
        Some(db) => {
            let position = match db.position() {
                Some(tokio_postgres::error::ErrorPosition::Original(at)) => {
                    format!(" at character {at}")
                }
                _ => String::new(),
            };
            format!("{} ({}){position}", db.message(), db.code().code())
        }
        None => error_chain(&error),
    };
    ProviderError::Api {
        operation: operation.to_string(),
        message,
    }
}

#[async_trait]
impl Converging for DatabaseProvider {
    async fn converge(
        &self,
        desired: &Value,
        takeover: Takeover,
    ) -> Result<Applied, ProviderError> {
        self.apply_database(&spec(desired)?, takeover).await
    }

    fn id_of(&self, desired: &Value) -> Result<String, ProviderError> {
        Ok(spec::<PostgresDatabase>(desired)?.name)
    }

    /// The database an interrupted create made, marked or not yet (it was killed between
    /// `CREATE DATABASE` and the comment), finished; another environment's is refused.
    async fn find_intended(&self, desired: &Value) -> Result<Option<Applied>, ProviderError> {
        let database: PostgresDatabase = spec(desired)?;
        let admin = self.connect(&(&database).into(), "postgres").await?;
        if shared_mark(&admin, Shared::Database, &database.name)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        drop(admin);
        self.apply_database(&database, Takeover::Unmarked)
            .await
            .map(Some)
    }

    async fn remove(&self, address: &str, recorded: &Recorded) -> Result<(), ProviderError> {
        // The engine put the master password back into the recorded attributes.
        let database: PostgresDatabase = recorded_spec(recorded)?;
        let instance = crate::resources::address::<DbInstance>(&database.instance);
        if self.deleting.contains(&instance) {
            return Ok(());
        }
        let admin = self.connect(&(&database).into(), "postgres").await?;
        let Some(found) = shared_mark(&admin, Shared::Database, &database.name).await? else {
            return Ok(());
        };
        may_delete(
            &format!("PostgreSQL database {}", database.name),
            found.as_deref(),
            &database.owner,
            address,
        )?;
        // FORCE ends the sessions still open on it (PostgreSQL 13 and later).
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quoted(&database.name)
            ))
            .await
            .map_err(|error| sql_error(&format!("DROP DATABASE {}", database.name), error))
    }
}

/// Login roles for applications: password generated into Secrets Manager, the role marked with
/// a comment like a database, and exactly the table privileges the blueprint lists.
struct RoleProvider {
    server: DatabaseProvider,
    secrets: aws_sdk_secretsmanager::Client,
}

/// Where a role's password is kept.
fn password_secret(role: &PostgresRole) -> Generated<'_> {
    Generated {
        name: role.secret_name.clone(),
        description: format!(
            "Password of PostgreSQL role {} on instance {}, generated by trails",
            role.name, role.instance
        ),
        tags: &role.tags,
    }
}

/// `schema.table` (or `table`, in `public`) as a quoted SQL name, and its quoted schema.
fn table_name(table: &str) -> (String, String) {
    let (schema, name) = table.split_once('.').unwrap_or(("public", table));
    (
        format!("{}.{}", quoted(schema), quoted(name)),
        quoted(schema),
    )
}

/// `REVOKE ALL` on every table of the connected database where `role` holds a privilege.
async fn revoke_tables(client: &Client, role: &str) -> Result<String, ProviderError> {
    let rows = client
        .query(
            "SELECT DISTINCT quote_ident(n.nspname) || '.' || quote_ident(c.relname) \
             FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace, \
             LATERAL aclexplode(c.relacl) AS acl \
             WHERE acl.grantee = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $1)",
            &[&role],
        )
        .await
        .map_err(|error| sql_error(&format!("read the privileges of role {role}"), error))?;
    Ok(rows
        .iter()
        .map(|row| {
            format!(
                "REVOKE ALL ON TABLE {} FROM {};",
                row.get::<_, String>(0),
                quoted(role)
            )
        })
        .collect())
}

impl RoleProvider {
    async fn apply_role(
        &self,
        role: &PostgresRole,
        takeover: Takeover,
    ) -> Result<Applied, ProviderError> {
        let what = format!("PostgreSQL role {}", role.name);
        let admin = self.server.connect(&role.into(), "postgres").await?;
        let found = shared_mark(&admin, Shared::Role, &role.name).await?;
        if let Some(found) = &found {
            may_take_over(&what, found.as_deref(), &role.owner, takeover, &role.name)?;
        }
        let (password, secret_arn) = password_secret(role).ensure(&self.secrets).await?;
        // Only the SCRAM verifier goes to the server: the password is in no statement's text.
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        let verb = if found.is_some() { "ALTER" } else { "CREATE" };
        // The master user is no superuser (RDS gives it CREATEROLE through rds_superuser): it
        // may create a role without the superuser, replication and RLS-bypass attributes, but
        // not name those attributes when altering one (only a superuser could have set them).
        let attributes = if found.is_some() {
            "LOGIN NOCREATEDB NOCREATEROLE"
        } else {
            "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
        };
        let name = quoted(&role.name);
        admin
            .batch_execute(&format!(
                "BEGIN; \
                 {verb} ROLE {name} {attributes} PASSWORD {}; \
                 COMMENT ON ROLE {name} IS {}; \
                 GRANT CONNECT ON DATABASE {} TO {name}; \
                 COMMIT;",
                literal(&verifier),
                literal(&format!("{MARK}{}", role.owner)),
                quoted(&role.database),
            ))
            .await
            .map_err(|error| sql_error(&format!("{verb} ROLE {}", role.name), error))?;
        drop(admin);
        // The privileges it holds become exactly the listed ones, in one transaction.
        let client = self.server.connect(&role.into(), &role.database).await?;
        let mut grants = revoke_tables(&client, &role.name).await?;
        let mut schemas = BTreeSet::new();
        for (table, privileges) in &role.tables {
            let (table, schema) = table_name(table);
            grants.push_str(&format!(
                "GRANT {} ON TABLE {table} TO {name};",
                privileges.join(", ")
            ));
            schemas.insert(schema);
        }
        for schema in schemas {
            grants.push_str(&format!("GRANT USAGE ON SCHEMA {schema} TO {name};"));
        }
        client
            .batch_execute(&format!("BEGIN; {grants} COMMIT;"))
            .await
            .map_err(|error| {
                sql_error(
                    &format!(
                        "grant role {} its privileges in {}",
                        role.name, role.database
                    ),
                    error,
                )
            })?;
        Ok(Applied {
            id: role.name.clone(),
            outputs: [
                ("username".to_string(), json!(role.name)),
                ("password_secret_arn".to_string(), json!(secret_arn)),
            ]
            .into_iter()
            .collect(),
        })
    }
}

#[async_trait]
impl Converging for RoleProvider {
    async fn converge(
        &self,
        desired: &Value,
        takeover: Takeover,
    ) -> Result<Applied, ProviderError> {
        self.apply_role(&spec(desired)?, takeover).await
    }

    fn id_of(&self, desired: &Value) -> Result<String, ProviderError> {
        Ok(spec::<PostgresRole>(desired)?.name)
    }

    /// Revokes what the role holds, drops it and deletes its password; a role without this
    /// resource's mark is left alone (its generated password is still deleted when tagged
    /// as this resource's).
    async fn remove(&self, address: &str, recorded: &Recorded) -> Result<(), ProviderError> {
        let role: PostgresRole = recorded_spec(recorded)?;
        let instance = crate::resources::address::<DbInstance>(&role.instance);
        if !self.server.deleting.contains(&instance) {
            let admin = self.server.connect(&(&role).into(), "postgres").await?;
            if let Some(found) = shared_mark(&admin, Shared::Role, &role.name).await? {
                may_delete(
                    &format!("PostgreSQL role {}", role.name),
                    found.as_deref(),
                    &role.owner,
                    address,
                )?;
                let name = quoted(&role.name);
                if shared_mark(&admin, Shared::Database, &role.database)
                    .await?
                    .is_some()
                {
                    let client = self.server.connect(&(&role).into(), &role.database).await?;
                    let revokes = revoke_tables(&client, &role.name).await?;
                    client
                        .batch_execute(&format!(
                            "BEGIN; {revokes} \
                             REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {name}; COMMIT;"
                        ))
                        .await
                        .map_err(|error| {
                            sql_error(
                                &format!("revoke the privileges of role {}", role.name),
                                error,
                            )
                        })?;
                    let schemas: Vec<String> = client
                        .query(
                            "SELECT quote_ident(nspname) FROM pg_catalog.pg_namespace \
                             WHERE has_schema_privilege($1, oid, 'USAGE') \
                             AND nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'",
                            &[&role.name],
                        )
                        .await
                        .map_err(|error| sql_error("read schema privileges", error))?
                        .iter()
                        .map(|row| row.get(0))
                        .collect();
                    let revokes: String = schemas
                        .iter()
                        .map(|schema| format!("REVOKE USAGE ON SCHEMA {schema} FROM {name};"))
                        .collect();
                    client
                        .batch_execute(&revokes)
                        .await
                        .map_err(|error| sql_error("revoke schema usage", error))?;
                    drop(client);
                }
                admin
                    .batch_execute(&format!(
                        "REVOKE ALL ON DATABASE {} FROM {name}; DROP ROLE IF EXISTS {name};",
                        quoted(&role.database)
                    ))
                    .await
                    .map_err(|error| sql_error(&format!("DROP ROLE {}", role.name), error))?;
            }
        }
        password_secret(&role).delete(&self.secrets).await
    }
}
