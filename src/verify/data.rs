//! Data-plane checks: PostgreSQL, Redis, Kafka and the ingest service answer, hold what the
//! blueprint declares, and an event goes all the way through.
//!
//! Endpoints come from the live resources (the RDS endpoint, the replication group's primary
//! endpoint, the blueprint's Kafka bootstrap servers, the ingest service's public host) unless
//! `--endpoint NAME=URL` names another way in (a tunnel, a port-forward, a local stand-in).
//! Credentials come from Secrets Manager (the RDS-managed master secret, the Redis AUTH token
//! trails generated) unless the URL carries them. Passwords never appear in evidence.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{Value, json};

use super::aws::{Owner, api_error};
use super::{Chain, Check};
use crate::blueprint::Loaded;
use crate::error_chain;
use crate::graph::Graph;
use crate::providers::aws::Context;
use crate::providers::aws::cache::secret_name;
use crate::providers::{helm, kafka, kube};

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the data-plane checks need beyond the blueprint.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Endpoint overrides by name (`postgres.main`, `redis.main`, `kafka`, `ingest`).
    pub endpoints: BTreeMap<String, String>,
    /// An ingest API key with `events:write` for the end-to-end event.
    pub api_key: Option<String>,
}

/// The endpoint names this blueprint accepts, for `--endpoint` and its error message.
pub fn endpoint_names(loaded: &Loaded) -> Vec<String> {
    let document = &loaded.document;
    let mut names: Vec<String> = document
        .postgres
        .keys()
        .map(|name| format!("postgres.{name}"))
        .chain(document.redis.keys().map(|name| format!("redis.{name}")))
        .collect();
    if document.kafka.is_some() {
        names.push("kafka".to_string());
    }
    if document.opensearch.is_some() {
        names.push(crate::providers::opensearch::ENDPOINT.to_string());
    }
    if document.clickhouse.is_some() {
        names.push(crate::providers::clickhouse::ENDPOINT.to_string());
    }
    names.push("ingest".to_string());
    names
}

/// A release is deployed, at the pinned chart version.
async fn helm_check(
    cluster: std::sync::Arc<kube::Cluster>,
    name: String,
    namespace: String,
    version: String,
) -> Result<String, String> {
    let kubeconfig = cluster.kubeconfig().await.map_err(|e| error_chain(&e))?;
    let status = helm::status(&name, &namespace, &kubeconfig.args)
        .await
        .map_err(|e| error_chain(&e))?;
    let state = status
        .pointer("/info/status")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let revision = status.get("version").cloned().unwrap_or(Value::Null);
    let chart = status
        .pointer("/chart/metadata/version")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let evidence = format!("{namespace}/{name} {state}, revision {revision}, chart {chart}");
    if state != "deployed" {
        Err(format!("{evidence}; expected deployed"))
    } else if chart != version {
        Err(format!("{evidence}; the blueprint pins {version}"))
    } else {
        Ok(evidence)
    }
}

/// Every data-plane check the blueprint calls for.
pub fn checks(
    loaded: &Loaded,
    graph: &Graph,
    context: &Context,
    owner: &Owner,
    access: &Access,
    cluster: &std::sync::Arc<kube::Cluster>,
) -> Vec<Chain> {
    let document = &loaded.document;
    let mut chains = Vec::new();
    for (name, postgres) in &document.postgres {
        let identifier = literal(graph, &format!("aws.db_instance.{name}"), "identifier");
        let source = PostgresSource {
            context: context.clone(),
            identifier,
            endpoint: access.endpoints.get(&format!("postgres.{name}")).cloned(),
        };
        let mut chain = vec![Check::run(
            format!("postgres.{name}.connect"),
            postgres_connect(source.clone()),
        )];
        for (database, declared) in &postgres.databases {
            let tables = declared
                .migrations
                .iter()
                .map(|file| created_tables(&loaded.templates_dir.join(file)))
                .collect::<Result<Vec<_>, String>>()
                .map(|lists| lists.concat());
            chain.push(Check::run(
                format!("postgres.{name}.database.{database}"),
                postgres_database(
                    source.clone(),
                    database.clone(),
                    declared.schemas.clone(),
                    tables,
                ),
            ));
        }
        chains.push(chain);
    }
    for (name, redis) in &document.redis {
        let source = RedisSource {
            context: context.clone(),
            group_id: literal(
                graph,
                &format!("aws.elasticache_replication_group.{name}"),
                "id",
            ),
            tls: redis.transit_encryption,
            endpoint: access.endpoints.get(&format!("redis.{name}")).cloned(),
        };
        chains.push(vec![
            Check::run(
                format!("redis.{name}.reachable"),
                redis_ping(source.clone()),
            ),
            Check::run(
                format!("redis.{name}.maxmemory_policy"),
                redis_policy(source, redis.maxmemory_policy.clone()),
            ),
        ]);
    }
    let bootstrap = access
        .endpoints
        .get("kafka")
        .cloned()
        .or_else(|| document.kafka.as_ref().map(|k| k.bootstrap_servers.clone()));
    let kafka_tls = document
        .kafka
        .as_ref()
        .and_then(|kafka| crate::resources::dayone::kafka_tls(loaded, kafka));
    if let Some(kafka) = &document.kafka {
        let servers = bootstrap.clone().unwrap_or_default();
        for (topic, declared) in &kafka.topics {
            chains.push(vec![Check::run(
                format!("kafka.topic.{topic}"),
                topic_check(
                    servers.clone(),
                    kafka_tls.clone(),
                    topic.clone(),
                    declared.partitions as usize,
                ),
            )]);
        }
    }
    if !document.helm.is_empty() {
        for (release, declared) in &document.helm {
            chains.push(vec![Check::run(
                format!("helm.{release}"),
                helm_check(
                    std::sync::Arc::clone(cluster),
                    release.clone(),
                    declared.namespace.clone(),
                    declared.version.clone(),
                ),
            )]);
        }
    }
    // Day-one configuration over HTTP: what each resource declares is there.
    for resource in graph.resources() {
        let desired = Value::Object(resource.attributes.clone());
        let name = resource
            .address
            .rsplit_once('.')
            .map(|(_, name)| name)
            .unwrap_or_default();
        let kind = resource.kind.name;
        if let Some(definition) = crate::providers::opensearch::Definition::of(kind) {
            chains.push(vec![Check::run(
                format!("{kind}.{name}"),
                crate::providers::opensearch::verify(
                    definition,
                    desired,
                    loaded.templates_dir.clone(),
                    access.endpoints.clone(),
                ),
            )]);
        } else if kind == "clickhouse.database" {
            let tables = resource
                .attributes
                .get("migrations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|migration| migration.get("file").and_then(Value::as_str))
                .map(|file| created_tables(&loaded.templates_dir.join(file)))
                .collect::<Result<Vec<_>, String>>()
                .map(|lists| {
                    lists
                        .concat()
                        .into_iter()
                        .map(|table| {
                            let table = table.rsplit('.').next().unwrap_or_default();
                            table.trim_matches('`').to_string()
                        })
                        .collect()
                });
            let check = format!("{kind}.{name}");
            chains.push(vec![match tables {
                Ok(tables) => Check::run(
                    check,
                    crate::providers::clickhouse::verify(
                        desired,
                        tables,
                        loaded.templates_dir.clone(),
                        access.endpoints.clone(),
                    ),
                ),
                Err(error) => Check::known(check, Err(error)),
            }]);
        }
    }
    let declared_ingest = document.ingest.as_ref();
    let url = access.endpoints.get("ingest").cloned().or_else(|| {
        declared_ingest
            .and_then(|ingest| ingest.host.as_ref())
            .map(|host| format!("https://{host}"))
    });
    if declared_ingest.is_some() || url.is_some() {
        match url {
            None => {
                let reason = "the ingest service has no public `host`; pass --endpoint ingest=URL";
                chains.push(vec![
                    Check::skip("ingest.health", reason),
                    Check::skip("ingest.end_to_end", reason),
                ]);
            }
            Some(url) => {
                let topic = declared_ingest
                    .and_then(|ingest| ingest.env.get("INGEST_TOPIC").cloned())
                    .unwrap_or_else(|| crate::ingest::config::DEFAULT_TOPIC.to_string());
                let url = url.trim_end_matches('/').to_string();
                let event = EndToEnd {
                    url: url.clone(),
                    api_key: access.api_key.clone(),
                    bootstrap,
                    tls: kafka_tls,
                    topic,
                    subject: format!("{}/{}", owner.blueprint, owner.environment),
                };
                chains.push(vec![
                    Check::run("ingest.health", ingest_health(url)),
                    Check::run("ingest.end_to_end", end_to_end(event)),
                ]);
            }
        }
    }
    chains
}

/// A literal attribute of a graph resource (names are derived, never references).
fn literal(graph: &Graph, address: &str, attribute: &str) -> String {
    graph
        .get(address)
        .and_then(|resource| resource.attributes.get(attribute))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The tables a migration file creates (`CREATE TABLE [IF NOT EXISTS] name`).
fn created_tables(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read migration {}: {error}", path.display()))?;
    let words: Vec<String> = text
        .split(|c: char| c.is_whitespace() || c == '(' || c == ';')
        .filter(|word| !word.is_empty())
        .map(str::to_string)
        .collect();
    let mut tables = Vec::new();
    let mut index = 0;
    while index + 2 < words.len() {
        if words[index].eq_ignore_ascii_case("create")
            && words[index + 1].eq_ignore_ascii_case("table")
        {
            let mut name = index + 2;
            if words[name].eq_ignore_ascii_case("if") {
                name += 3;
            }
            if let Some(table) = words.get(name) {
                tables.push(table.replace('"', ""));
            }
        }
        index += 1;
    }
    Ok(tables)
}

#[derive(Clone)]
struct PostgresSource {
    context: Context,
    identifier: String,
    endpoint: Option<String>,
}

/// The password in the RDS-managed master secret, `{"username": ..., "password": ...}`.
async fn master_password(context: &Context, secret_arn: &str) -> Result<String, String> {
    let found = context
        .secrets
        .get_secret_value()
        .secret_id(secret_arn)
        .send()
        .await
        .map_err(|e| api_error("GetSecretValue", secret_arn, e))?;
    let secret: Value = serde_json::from_str(found.secret_string().unwrap_or_default())
        .map_err(|_| format!("secret {secret_arn} is not the JSON RDS writes"))?;
    let field = |name: &str| {
        secret
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("secret {secret_arn} has no {name}"))
    };
    field("password")
}

impl PostgresSource {
    /// Connection settings and a printable `host:port`.
    async fn config(&self, database: &str) -> Result<(tokio_postgres::Config, String), String> {
        let mut config = match &self.endpoint {
            Some(url) => tokio_postgres::Config::from_str(url)
                .map_err(|error| format!("--endpoint for {}: {error}", self.identifier))?,
            None => tokio_postgres::Config::new(),
        };
        let needs_live = self.endpoint.is_none() || config.get_password().is_none();
        if needs_live {
            let found = self
                .context
                .rds
                .describe_db_instances()
                .db_instance_identifier(&self.identifier)
                .send()
                .await
                .map_err(|e| api_error("DescribeDBInstances", &self.identifier, e))?;
            let live = found
                .db_instances()
                .first()
                .ok_or_else(|| format!("instance {} not found", self.identifier))?;
            if self.endpoint.is_none() {
                let endpoint = live
                    .endpoint()
                    .ok_or_else(|| format!("{} has no endpoint yet", self.identifier))?;
                config.host(endpoint.address().unwrap_or_default());
                config.port(endpoint.port().unwrap_or(5432) as u16);
            }
            let arn = live
                .master_user_secret()
                .and_then(|secret| secret.secret_arn())
                .ok_or_else(|| {
                    format!(
                        "{} has no RDS-managed master secret; give the password in --endpoint",
                        self.identifier
                    )
                })?;
            // The instance's master user, as apply logs in: on RDS the secret names the same
            // user, and moto's secret names another.
            let password = master_password(&self.context, arn).await?;
            if config.get_user().is_none() {
                config.user(live.master_username().unwrap_or_default());
            }
            config.password(password);
        }
        config.dbname(database);
        config.connect_timeout(CONNECT_TIMEOUT);
        let host = config
            .get_hosts()
            .first()
            .map(|host| match host {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".to_string());
        let port = config.get_ports().first().copied().unwrap_or(5432);
        Ok((config, format!("{host}:{port}")))
    }

    async fn connect(&self, database: &str) -> Result<(tokio_postgres::Client, String), String> {
        let (mut config, place) = self.config(database).await?;
        crate::pgtls::harden(&mut config);
        let tls = crate::pgtls::connector(&config)?;
        let (client, connection) = config.connect(tls).await.map_err(|error| {
            let message = error_chain(&error);
            let hint = if crate::pgtls::is_verify_failure(&message) {
                format!(" ({})", crate::pgtls::VERIFY_HINT)
            } else {
                String::new()
            };
            format!("cannot connect to {place} database {database}: {message}{hint}")
        })?;
        tokio::spawn(connection);
        Ok((client, place))
    }
}

async fn postgres_connect(source: PostgresSource) -> Result<String, String> {
    let started = Instant::now();
    let (client, place) = source.connect("postgres").await?;
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), current_user::text",
            &[],
        )
        .await
        .map_err(|error| format!("{place}: {}", error_chain(&error)))?;
    let (version, user): (String, String) = (row.get(0), row.get(1));
    Ok(format!(
        "connected to {place} as {user} in {} ms, PostgreSQL {version}",
        started.elapsed().as_millis()
    ))
}

async fn postgres_database(
    source: PostgresSource,
    database: String,
    schemas: Vec<String>,
    tables: Result<Vec<String>, String>,
) -> Result<String, String> {
    let tables = tables?;
    let (client, place) = source.connect(&database).await?;
    let mut missing = Vec::new();
    for schema in &schemas {
        let found = client
            .query_opt(
                "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1",
                &[schema],
            )
            .await
            .map_err(|error| format!("{place}: {}", error_chain(&error)))?;
        if found.is_none() {
            missing.push(format!("schema {schema}"));
        }
    }
    for table in &tables {
        let found: Option<String> = client
            .query_one("SELECT to_regclass($1)::text", &[table])
            .await
            .map_err(|error| format!("{place}: {}", error_chain(&error)))?
            .get(0);
        if found.is_none() {
            missing.push(format!("table {table}"));
        }
    }
    if missing.is_empty() {
        Ok(format!(
            "database {database} on {place}: schemas [{}], tables [{}]",
            schemas.join(", "),
            tables.join(", ")
        ))
    } else {
        Err(format!(
            "database {database} on {place} lacks {}",
            missing.join(", ")
        ))
    }
}

#[derive(Clone)]
struct RedisSource {
    context: Context,
    group_id: String,
    tls: bool,
    endpoint: Option<String>,
}

impl RedisSource {
    /// The AUTH token trails generated for the group, when it has one.
    async fn token(&self) -> Result<Option<String>, String> {
        if !self.tls {
            return Ok(None);
        }
        let name = secret_name(&self.group_id);
        let found = self
            .context
            .secrets
            .get_secret_value()
            .secret_id(&name)
            .send()
            .await
            .map_err(|e| api_error("GetSecretValue", &name, e))?;
        Ok(found.secret_string().map(str::to_string))
    }

    async fn connect(&self) -> Result<(redis::aio::MultiplexedConnection, String), String> {
        let mut url = match &self.endpoint {
            Some(endpoint) => url::Url::parse(endpoint)
                .map_err(|error| format!("--endpoint for {}: {error}", self.group_id))?,
            None => {
                let found = self
                    .context
                    .elasticache
                    .describe_replication_groups()
                    .replication_group_id(&self.group_id)
                    .send()
                    .await
                    .map_err(|e| api_error("DescribeReplicationGroups", &self.group_id, e))?;
                let live = found
                    .replication_groups()
                    .first()
                    .ok_or_else(|| format!("replication group {} not found", self.group_id))?;
                let endpoint = live
                    .configuration_endpoint()
                    .or_else(|| {
                        live.node_groups()
                            .first()
                            .and_then(|g| g.primary_endpoint())
                    })
                    .ok_or_else(|| format!("{} has no endpoint yet", self.group_id))?;
                let scheme = if self.tls { "rediss" } else { "redis" };
                let text = format!(
                    "{scheme}://{}:{}",
                    endpoint.address().unwrap_or_default(),
                    endpoint.port().unwrap_or(6379)
                );
                url::Url::parse(&text).map_err(|error| format!("{text}: {error}"))?
            }
        };
        if url.password().is_none()
            && let Some(token) = self.token().await?
        {
            url.set_password(Some(&token))
                .map_err(|()| format!("cannot put the AUTH token into {}", self.group_id))?;
        }
        let place = format!(
            "{}:{}",
            url.host_str().unwrap_or("?"),
            url.port().unwrap_or(6379)
        );
        let client = redis::Client::open(url.as_str())
            .map_err(|error| format!("{place}: {}", error_chain(&error)))?;
        let connection =
            tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection())
                .await
                .map_err(|_| {
                    format!(
                        "cannot connect to {place} within {}s",
                        CONNECT_TIMEOUT.as_secs()
                    )
                })?
                .map_err(|error| format!("cannot connect to {place}: {}", error_chain(&error)))?;
        Ok((connection, place))
    }
}

/// One field of `INFO` output.
fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines().find_map(|line| {
        line.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(|value| value.trim().to_string())
    })
}

async fn redis_ping(source: RedisSource) -> Result<String, String> {
    let started = Instant::now();
    let (mut connection, place) = source.connect().await?;
    let pong: String = redis::cmd("PING")
        .query_async(&mut connection)
        .await
        .map_err(|error| format!("PING {place}: {error}"))?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut connection)
        .await
        .map_err(|error| format!("INFO {place}: {error}"))?;
    Ok(format!(
        "{pong} from {place} in {} ms, Redis {}",
        started.elapsed().as_millis(),
        info_field(&info, "redis_version").unwrap_or_else(|| "?".to_string())
    ))
}

async fn redis_policy(source: RedisSource, declared: String) -> Result<String, String> {
    let (mut connection, place) = source.connect().await?;
    // ElastiCache disables CONFIG GET; INFO reports the policy everywhere.
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut connection)
        .await
        .map_err(|error| format!("INFO {place}: {error}"))?;
    let policy = info_field(&info, "maxmemory_policy")
        .ok_or_else(|| format!("{place} does not report maxmemory_policy"))?;
    if policy == declared {
        Ok(format!("{place}: maxmemory-policy {policy}"))
    } else {
        Err(format!(
            "{place}: maxmemory-policy is {policy}; the blueprint declares {declared}"
        ))
    }
}

async fn topic_check(
    servers: String,
    tls: Option<crate::kafkatls::Tls>,
    topic: String,
    declared: usize,
) -> Result<String, String> {
    let admin = kafka::admin(&servers, tls.as_ref()).map_err(|error| error.to_string())?;
    match kafka::partitions(&admin, &topic, CONNECT_TIMEOUT).await {
        Ok(Some(found)) if found == declared => {
            Ok(format!("{topic} on {servers}: {found} partitions"))
        }
        Ok(Some(found)) => Err(format!(
            "{topic} on {servers} has {found} partitions; the blueprint declares {declared}"
        )),
        Ok(None) => Err(format!("topic {topic} does not exist on {servers}")),
        // librdkafka reports a failed handshake only as a transport failure: say what TLS
        // was asked of the brokers.
        Err(error) => Err(match &tls {
            Some(tls) => format!(
                "{servers}: {error} (over TLS, the brokers' certificate verified against {}: \
                 a certificate it did not sign, or a listener in clear, fails like this)",
                tls.ca_file
                    .as_ref()
                    .map_or("the system's CA certificates".to_string(), |file| file
                        .display()
                        .to_string())
            ),
            None => format!("{servers}: {error}"),
        }),
    }
}

fn http() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(CONNECT_TIMEOUT)
        .build()
        .map_err(|error| format!("cannot build an HTTP client: {error}"))
}

/// The service answers on its public address: `GET /openapi.json` (the one route beside
/// `/v1/*` the Ingress passes) is its API document. Whether it can store events is the
/// end-to-end check's; its probes are on the admin port, which is not reachable from outside.
async fn ingest_health(url: String) -> Result<String, String> {
    let contract = format!("{url}/openapi.json");
    let response = http()?
        .get(&contract)
        .send()
        .await
        .map_err(|error| format!("GET {contract}: {}", error_chain(&error)))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let document: Option<serde_json::Value> = serde_json::from_str(&body).ok();
    let version = document
        .as_ref()
        .and_then(|document| document.get("openapi"))
        .and_then(serde_json::Value::as_str);
    match version {
        Some(version) if status.is_success() => {
            let paths = document
                .as_ref()
                .and_then(|document| document.get("paths"))
                .and_then(serde_json::Value::as_object)
                .map_or(0, serde_json::Map::len);
            Ok(format!(
                "GET {contract}: {status}, the service's OpenAPI {version} document ({paths} paths)"
            ))
        }
        _ => {
            let body: String = body.chars().take(300).collect();
            Err(format!(
                "GET {contract}: {status} {} (not the ingest service's API document)",
                body.trim()
            ))
        }
    }
}

struct EndToEnd {
    url: String,
    api_key: Option<String>,
    bootstrap: Option<String>,
    tls: Option<crate::kafkatls::Tls>,
    topic: String,
    subject: String,
}

/// A consumer positioned at the end of every partition of `topic`.
fn tail(
    servers: &str,
    tls: Option<&crate::kafkatls::Tls>,
    topic: &str,
) -> Result<BaseConsumer, String> {
    let consumer: BaseConsumer = crate::kafkatls::client(servers, tls)
        .set(
            "group.id",
            format!("trails-verify-{}", uuid::Uuid::new_v4()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(|error| format!("Kafka consumer for {servers}: {error}"))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), CONNECT_TIMEOUT)
        .map_err(|error| format!("metadata of {topic} on {servers}: {error}"))?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len())
        .filter(|count| *count > 0)
        .ok_or_else(|| format!("topic {topic} does not exist on {servers}"))?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions as i32 {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition, CONNECT_TIMEOUT)
            .map_err(|error| format!("offsets of {topic}/{partition}: {error}"))?;
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(high))
            .map_err(|error| format!("{topic}/{partition}: {error}"))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|error| format!("assign {topic}: {error}"))?;
    Ok(consumer)
}

/// Reads until a message whose `event_id` is `event_id` arrives, or `deadline`.
fn find_event(
    consumer: &BaseConsumer,
    event_id: &str,
    deadline: Instant,
) -> Result<(i32, i64), String> {
    while Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.map_err(|error| format!("reading back: {error}"))?;
        let found = message
            .payload()
            .and_then(|payload| serde_json::from_slice::<Value>(payload).ok())
            .is_some_and(|event| event["event_id"] == event_id);
        if found {
            return Ok((message.partition(), message.offset()));
        }
    }
    Err(format!("event {event_id} was accepted but never appeared"))
}

async fn end_to_end(check: EndToEnd) -> Result<String, String> {
    let api_key = check.api_key.ok_or(
        "no API key: set TRAILS_VERIFY_API_KEY to a key with events:write (create one with \
         `trails ingest create-key --tenant UUID --name trails-verify`)",
    )?;
    let servers = check
        .bootstrap
        .ok_or("no Kafka bootstrap servers to read the event back from: declare `kafka` or pass --endpoint kafka=HOST:PORT")?;
    let topic = check.topic.clone();
    let consumer = {
        let (servers, topic, tls) = (servers.clone(), topic.clone(), check.tls.clone());
        tokio::task::spawn_blocking(move || tail(&servers, tls.as_ref(), &topic))
            .await
            .map_err(|error| format!("consumer task: {error}"))??
    };
    let started = Instant::now();
    let events = format!("{}/v1/events", check.url);
    let event = json!({
        "actor": {"id": "trails-verify", "type": "service"},
        "action": {"name": "trails.verify", "category": "test"},
        "resource": {"type": "environment", "id": check.subject},
        "metadata": {"nonce": uuid::Uuid::new_v4().to_string()},
    });
    let response = http()?
        .post(&events)
        .header("X-API-Key", api_key)
        .json(&event)
        .send()
        .await
        .map_err(|error| format!("POST {events}: {}", error_chain(&error)))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.as_u16() != 202 {
        let detail = body
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| body.to_string());
        return Err(format!(
            "POST {events}: {status}, expected 202 Accepted: {detail}"
        ));
    }
    let event_id = body
        .get("event_id")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("POST {events}: 202 without an event_id: {body}"))?
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    let wanted = event_id.clone();
    let (partition, offset) =
        tokio::task::spawn_blocking(move || find_event(&consumer, &wanted, deadline))
            .await
            .map_err(|error| format!("consumer task: {error}"))??;
    Ok(format!(
        "event {event_id} accepted (202) and read back from {topic} partition {partition} \
         offset {offset} after {} ms",
        started.elapsed().as_millis()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_name_the_tables_they_create() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("001.sql");
        std::fs::write(
            &path,
            "CREATE TABLE IF NOT EXISTS api_keys (\n id uuid);\ncreate table audit.\"log\"(x int);\nCREATE INDEX i ON api_keys (id);",
        )
        .expect("write");
        assert_eq!(
            created_tables(&path).expect("readable"),
            ["api_keys", "audit.log"]
        );
        assert!(created_tables(&dir.path().join("missing.sql")).is_err());
    }

    #[test]
    fn info_fields_are_read_by_name() {
        let info = "# Memory\r\nused_memory:1\r\nmaxmemory_policy:allkeys-lru\r\n";
        assert_eq!(
            info_field(info, "maxmemory_policy").as_deref(),
            Some("allkeys-lru")
        );
        assert_eq!(info_field(info, "maxmemory"), None);
    }
}
