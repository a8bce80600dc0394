//! Day-one configuration that runs once its component is up: Kafka topics, PostgreSQL
//! databases and schemas, ClickHouse databases, OpenSearch index templates and ISM policies.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::helm::Release;
use super::rds::DbInstance;
use super::{Kind, Spec, address, file_digest, output, sorted};
use crate::blueprint::FieldPath;
use crate::blueprint::naming::address_name;
use crate::graph::Builder;

/// A Kafka topic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Topic {
    /// Topic name.
    pub name: String,
    /// Partitions.
    pub partitions: u32,
    /// Replication factor.
    pub replication_factor: u32,
    /// Topic configuration.
    pub config: BTreeMap<String, String>,
    /// Bootstrap servers.
    pub bootstrap_servers: String,
    /// TLS to them (absent: in clear).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::kafkatls::Tls>,
}

impl Spec for Topic {
    const KIND: &'static Kind = &Kind {
        name: "kafka.topic",
        summary: "Kafka topic",
        replace_on: &[("name", "a topic cannot be renamed")],
        replace_check: Some(topic_replacement),
        sensitive: &[],
        outputs: &["name", "partitions"],
        sensitive_outputs: &[],
    };
}

/// The blueprint's Kafka TLS, its CA file relative to the blueprint's directory.
pub fn kafka_tls(
    loaded: &crate::blueprint::load::Loaded,
    kafka: &crate::blueprint::schema::Kafka,
) -> Option<crate::kafkatls::Tls> {
    let base = loaded.file.parent().unwrap_or(std::path::Path::new("."));
    kafka.tls.as_ref().map(|tls| crate::kafkatls::Tls {
        ca_file: tls.ca_file.as_ref().map(|file| base.join(file)),
    })
}

fn topic_replacement(attribute: &str, before: &Value, after: &Value) -> Option<String> {
    match attribute {
        "partitions" if after.as_u64() < before.as_u64() => Some(
            "Kafka cannot remove partitions; the topic and its data would be recreated".to_string(),
        ),
        "replication_factor" => Some(
            "trails does not reassign partitions; the topic and its data would be recreated"
                .to_string(),
        ),
        _ => None,
    }
}

/// A migration file and the digest of its content.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Migration {
    /// Path relative to the templates directory.
    pub file: String,
    /// `sha256:...` of the content.
    pub digest: String,
}

/// A PostgreSQL database with schemas and migrations, inside an RDS instance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PostgresDatabase {
    /// The blueprint's name of the instance (`postgres.NAME`), for `--endpoint postgres.NAME=URL`.
    pub instance: String,
    /// Instance host.
    pub host: String,
    /// Instance port.
    pub port: String,
    /// Master user.
    pub username: String,
    /// Master password (a reference, never a value in the blueprint).
    pub password: String,
    /// Database name.
    pub name: String,
    /// Schemas.
    pub schemas: Vec<String>,
    /// Migrations in order.
    pub migrations: Vec<Migration>,
    /// trails' mark: `BLUEPRINT/ENVIRONMENT/ADDRESS` (empty in a state written before marks).
    #[serde(default)]
    pub owner: String,
}

impl Spec for PostgresDatabase {
    const KIND: &'static Kind = &Kind {
        name: "postgres.database",
        summary: "PostgreSQL database, schemas and migrations",
        replace_on: &[("name", "a database cannot be renamed")],
        replace_check: None,
        sensitive: &["password"],
        outputs: &["name"],
        sensitive_outputs: &[],
    };
}

/// A login role of a PostgreSQL database, for an application: its password is generated and
/// kept in Secrets Manager, and it holds only the table privileges listed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PostgresRole {
    /// trails' mark: `BLUEPRINT/ENVIRONMENT/ADDRESS`.
    #[serde(default)]
    pub owner: String,
    /// The blueprint's name of the instance (`postgres.NAME`), for `--endpoint postgres.NAME=URL`.
    pub instance: String,
    /// Instance host.
    pub host: String,
    /// Instance port.
    pub port: String,
    /// Master user, who creates the role.
    pub username: String,
    /// Master password (a reference, never a value in the blueprint).
    pub password: String,
    /// The database whose tables it may use.
    pub database: String,
    /// Role name.
    pub name: String,
    /// Privileges by table.
    pub tables: BTreeMap<String, Vec<String>>,
    /// Where its password is kept in Secrets Manager.
    pub secret_name: String,
    /// Tags of that secret (trails' ownership tags among them).
    pub tags: BTreeMap<String, String>,
}

impl Spec for PostgresRole {
    const KIND: &'static Kind = &Kind {
        name: "postgres.role",
        summary: "PostgreSQL login role with generated password and table privileges",
        replace_on: &[
            ("name", "a role cannot be renamed"),
            ("instance", "a role cannot move to another instance"),
        ],
        replace_check: None,
        sensitive: &["password"],
        outputs: &["username", "password_secret_arn"],
        sensitive_outputs: &["password"],
    };
}

/// Privileges a role may be given on a table.
pub const TABLE_PRIVILEGES: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
];

/// A ClickHouse database with migrations.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClickHouseDatabase {
    /// HTTP endpoint.
    pub url: String,
    /// Database name.
    pub name: String,
    /// Migrations in order.
    pub migrations: Vec<Migration>,
}

impl Spec for ClickHouseDatabase {
    const KIND: &'static Kind = &Kind {
        name: "clickhouse.database",
        summary: "ClickHouse database and migrations",
        replace_on: &[("name", "a database cannot be renamed")],
        replace_check: None,
        sensitive: &[],
        outputs: &["name"],
        sensitive_outputs: &[],
    };
}

/// An OpenSearch index template.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IndexTemplate {
    /// HTTP endpoint.
    pub url: String,
    /// Template name.
    pub name: String,
    /// Definition file and digest.
    pub definition: Migration,
}

impl Spec for IndexTemplate {
    const KIND: &'static Kind = &Kind {
        name: "opensearch.index_template",
        summary: "OpenSearch index template",
        replace_on: &[],
        replace_check: None,
        sensitive: &[],
        outputs: &["name"],
        sensitive_outputs: &[],
    };
}

/// An OpenSearch ISM policy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IsmPolicy {
    /// HTTP endpoint.
    pub url: String,
    /// Policy id.
    pub name: String,
    /// Definition file and digest.
    pub definition: Migration,
}

impl Spec for IsmPolicy {
    const KIND: &'static Kind = &Kind {
        name: "opensearch.ism_policy",
        summary: "OpenSearch ISM policy",
        replace_on: &[],
        replace_check: None,
        sensitive: &[],
        outputs: &["name"],
        sensitive_outputs: &[],
    };
}

fn migration(builder: &Builder<'_>, file: &str) -> Migration {
    Migration {
        file: file.to_string(),
        digest: file_digest(builder.loaded, file),
    }
}

fn migrations(builder: &Builder<'_>, files: &[String]) -> Vec<Migration> {
    files.iter().map(|file| migration(builder, file)).collect()
}

/// Makes a day-one resource wait for the Helm release that runs its component.
fn after_release(builder: &mut Builder<'_>, dependent: &str, release: &Option<String>) {
    if let Some(release) = release {
        builder.depends(dependent, &address::<Release>(release));
    }
}

/// Expands `kafka`, the databases of `postgres`, `clickhouse` and `opensearch`.
pub fn expand(builder: &mut Builder<'_>) {
    let loaded = builder.loaded;
    let doc = &loaded.document;
    if let Some(kafka) = &doc.kafka {
        for (name, topic) in &kafka.topics {
            let address = builder.add(
                &address_name(name),
                &Topic {
                    name: name.clone(),
                    partitions: topic.partitions,
                    replication_factor: topic.replication_factor,
                    config: sorted(&topic.config),
                    bootstrap_servers: kafka.bootstrap_servers.clone(),
                    tls: kafka_tls(loaded, kafka),
                },
                FieldPath::of("kafka.topics").key(name.clone()),
            );
            after_release(builder, &address, &kafka.release);
        }
    }
    for (instance, spec) in &doc.postgres {
        for (database, db) in &spec.databases {
            let migrations = migrations(builder, &db.migrations);
            let name = format!("{instance}-{}", address_name(database));
            builder.add(
                &name,
                &PostgresDatabase {
                    owner: builder.owner::<PostgresDatabase>(&name),
                    instance: instance.clone(),
                    host: output::<DbInstance>(instance, "address"),
                    port: output::<DbInstance>(instance, "port"),
                    username: output::<DbInstance>(instance, "username"),
                    password: output::<DbInstance>(instance, "password"),
                    name: database.clone(),
                    schemas: db.schemas.clone(),
                    migrations,
                },
                FieldPath::of("postgres")
                    .key(instance.clone())
                    .key("databases")
                    .key(database.clone()),
            );
            let database_address = address::<PostgresDatabase>(&name);
            for (role, declared) in &db.roles {
                let role_name = format!("{instance}-{}", address_name(role));
                let prefix = crate::blueprint::naming::prefix(loaded);
                let role_address = builder.add(
                    &role_name,
                    &PostgresRole {
                        owner: builder.owner::<PostgresRole>(&role_name),
                        instance: instance.clone(),
                        host: output::<DbInstance>(instance, "address"),
                        port: output::<DbInstance>(instance, "port"),
                        username: output::<DbInstance>(instance, "username"),
                        password: output::<DbInstance>(instance, "password"),
                        database: database.clone(),
                        name: role.clone(),
                        tables: declared
                            .tables
                            .iter()
                            .map(|(table, privileges)| {
                                let mut privileges: Vec<String> =
                                    privileges.iter().map(|p| p.to_uppercase()).collect();
                                privileges.sort();
                                privileges.dedup();
                                (table.clone(), privileges)
                            })
                            .collect(),
                        secret_name: format!("trails/{prefix}-{instance}/postgres-role/{role}"),
                        tags: super::aws_tags(
                            loaded,
                            &address::<PostgresRole>(&role_name),
                            &format!("{prefix}-{instance}-{role}"),
                        ),
                    },
                    FieldPath::of("postgres")
                        .key(instance.clone())
                        .key("databases")
                        .key(database.clone())
                        .key("roles")
                        .key(role.clone()),
                );
                // Its privileges are on tables the database's migrations make.
                builder.depends(&role_address, &database_address);
            }
        }
    }
    if let Some(clickhouse) = &doc.clickhouse {
        for (name, database) in &clickhouse.databases {
            let migrations = migrations(builder, &database.migrations);
            let address = builder.add(
                &address_name(name),
                &ClickHouseDatabase {
                    url: clickhouse.url.clone(),
                    name: name.clone(),
                    migrations,
                },
                FieldPath::of("clickhouse.databases").key(name.clone()),
            );
            after_release(builder, &address, &clickhouse.release);
        }
    }
    if let Some(opensearch) = &doc.opensearch {
        for (name, file) in &opensearch.index_templates {
            let definition = migration(builder, file);
            let address = builder.add(
                &address_name(name),
                &IndexTemplate {
                    url: opensearch.url.clone(),
                    name: name.clone(),
                    definition,
                },
                FieldPath::of("opensearch.index_templates").key(name.clone()),
            );
            after_release(builder, &address, &opensearch.release);
        }
        for (name, file) in &opensearch.ism_policies {
            let definition = migration(builder, file);
            let address = builder.add(
                &address_name(name),
                &IsmPolicy {
                    url: opensearch.url.clone(),
                    name: name.clone(),
                    definition,
                },
                FieldPath::of("opensearch.ism_policies").key(name.clone()),
            );
            after_release(builder, &address, &opensearch.release);
        }
    }
}
