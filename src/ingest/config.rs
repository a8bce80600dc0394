//! The service's configuration, from the environment (twelve-factor). Every bad value names its
//! variable and what was expected.

use std::net::SocketAddr;
use std::time::Duration;

/// The topic accepted events go to unless `INGEST_TOPIC` says otherwise.
pub const DEFAULT_TOPIC: &str = "audit.events.v1";

/// Where the service listens and what it talks to.
#[derive(Clone)]
pub struct Config {
    /// `INGEST_LISTEN_ADDR`, host:port (default `0.0.0.0:8080`): the API (`/v1/*`,
    /// `/openapi.json`).
    pub listen_addr: SocketAddr,
    /// `INGEST_ADMIN_ADDR`, host:port (default `0.0.0.0:9090`): `/health`, `/ready` and
    /// `/metrics`, for the cluster's probes and Prometheus, never routed from outside.
    pub admin_addr: SocketAddr,
    /// `DATABASE_URL`: PostgreSQL holding `api_keys`.
    pub database_url: String,
    /// `REDIS_URL`: rate-limit counters.
    pub redis_url: String,
    /// `KAFKA_BROKERS`: comma-separated bootstrap servers.
    pub kafka_brokers: String,
    /// TLS to the brokers: `KAFKA_TLS_CA_FILE` (a PEM file of the CA certificates that sign the
    /// brokers'), or `KAFKA_TLS=true` to verify against the system's; in clear otherwise.
    pub kafka_tls: Option<crate::kafkatls::Tls>,
    /// `INGEST_TOPIC` (default `audit.events.v1`).
    pub topic: String,
    /// `INGEST_DLQ_TOPIC` (default `audit.events.dlq`).
    pub dlq_topic: String,
    /// `INGEST_NODE_NAME`, else `HOSTNAME`, else `unknown`: stamped on every event.
    pub node_name: String,
    /// `INGEST_MAX_EVENT_BYTES` (default 1 MiB): body limit of `POST /v1/events`.
    pub max_event_bytes: usize,
    /// `INGEST_MAX_BATCH_BYTES` (default 10 MiB): body limit of `POST /v1/events/batch`.
    pub max_batch_bytes: usize,
    /// `INGEST_KEY_CACHE_SECONDS` (default 30): how long a looked-up key is trusted, and so the
    /// longest a revoked key keeps working.
    pub key_cache_ttl: Duration,
    /// `INGEST_PRODUCE_TIMEOUT_MS` (default 10000): how long the producer keeps retrying one
    /// event before it goes to the dead-letter topic.
    pub produce_timeout: Duration,
    /// `INGEST_PRODUCE_LINGER_MS` (default 1): how long the producer waits for more events
    /// before it sends a batch. Every request waits for its event's acknowledgement, so this
    /// is added to every answer; under load, events that arrive while a batch is on its way
    /// are batched anyway.
    pub produce_linger: Duration,
    /// `INGEST_DEFAULT_RATE_LIMIT` (default 10000): requests per minute for keys without one.
    pub default_rate_limit: u64,
    /// `INGEST_MAX_IN_FLIGHT` (default 1024): requests served at once by this replica; one more
    /// is answered 503 with `Retry-After` before its body is read.
    pub max_in_flight: usize,
    /// `INGEST_REQUEST_TIMEOUT_MS` (default 30000): a request served longer is answered 408.
    pub request_timeout: Duration,
    /// `INGEST_HEADER_READ_TIMEOUT_MS` (default 10000): a client that has not sent its request
    /// headers by then is disconnected.
    pub header_read_timeout: Duration,
    /// `INGEST_SHED_QUEUE` (default 50000): with this many events waiting for the broker, new
    /// requests are answered 503 with `Retry-After` at once instead of queueing behind them.
    pub shed_queue: usize,
    /// `INGEST_FAILED_AUTH_LIMIT` (default 20): failed authentications per minute from one
    /// client address before it is answered 429 without a key lookup (0: no limit).
    pub failed_auth_limit: u32,
    /// `INGEST_MAX_KEY_LOOKUPS` (default 32): API keys not in the cache looked up in PostgreSQL
    /// at once; one more is answered 503 with `Retry-After` instead of waiting, so a flood of
    /// unknown keys cannot fill every in-flight slot while it waits for the database.
    pub max_key_lookups: usize,
    /// `INGEST_TRUST_PROXY` (`true`/`false`, default false): the client's address is the last
    /// `X-Forwarded-For` entry, as a proxy in front (Traefik, ingress-nginx) appends it.
    pub trust_proxy: bool,
}

impl std::fmt::Debug for Config {
    // URLs may carry passwords: show only where they point.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen_addr", &self.listen_addr)
            .field("admin_addr", &self.admin_addr)
            .field("database", &redact(&self.database_url))
            .field("redis", &redact(&self.redis_url))
            .field("kafka_brokers", &self.kafka_brokers)
            .field("kafka_tls", &self.kafka_tls)
            .field("topic", &self.topic)
            .field("dlq_topic", &self.dlq_topic)
            .field("node_name", &self.node_name)
            .finish_non_exhaustive()
    }
}

/// A URL without its user information (`postgres://u:p@h/db` → `postgres://h/db`); a
/// key=value connection string (`host=h password=p`) without its password.
pub fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://{}", &url[at + 1..]),
        (Some(_), None) => url.to_string(),
        (None, _) => {
            let mut shown = Vec::new();
            let mut in_quoted_password = false;
            for word in url.split_whitespace() {
                if in_quoted_password {
                    in_quoted_password = !word.ends_with('\'');
                    continue;
                }
                match word.split_once('=') {
                    Some((key, value)) if key.trim().eq_ignore_ascii_case("password") => {
                        in_quoted_password =
                            value.starts_with('\'') && (value.len() == 1 || !value.ends_with('\''));
                        shown.push("password=(redacted)".to_string());
                    }
                    _ => shown.push(word.to_string()),
                }
            }
            shown.join(" ")
        }
    }
}

/// A configuration problem.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    /// The environment variable.
    pub variable: &'static str,
    /// What was wrong and what was expected.
    pub message: String,
}

impl Config {
    /// Reads the configuration through `lookup` (the process environment in production).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |variable: &'static str, example: &str| {
            lookup(variable)
                .filter(|value| !value.trim().is_empty())
                .ok_or_else(|| ConfigError {
                    variable,
                    message: format!("is required, e.g. {example}"),
                })
        };
        let number = |variable: &'static str, default: u64| -> Result<u64, ConfigError> {
            match lookup(variable) {
                None => Ok(default),
                Some(value) => value.trim().parse().map_err(|_| ConfigError {
                    variable,
                    message: format!("`{value}` is not a whole number"),
                }),
            }
        };
        let positive = |variable: &'static str, default: u64| -> Result<u64, ConfigError> {
            match number(variable, default)? {
                0 => Err(ConfigError {
                    variable,
                    message: "must be more than 0".to_string(),
                }),
                value => Ok(value),
            }
        };
        let boolean = |variable: &'static str| -> Result<bool, ConfigError> {
            match lookup(variable).as_deref() {
                None | Some("" | "false") => Ok(false),
                Some("true") => Ok(true),
                Some(other) => Err(ConfigError {
                    variable,
                    message: format!("`{other}` is neither true nor false"),
                }),
            }
        };
        let address = |variable: &'static str, default: &str| -> Result<SocketAddr, ConfigError> {
            let text = lookup(variable).unwrap_or_else(|| default.to_string());
            text.parse().map_err(|_| ConfigError {
                variable,
                message: format!("`{text}` is not host:port, e.g. {default}"),
            })
        };
        let listen_addr = address("INGEST_LISTEN_ADDR", "0.0.0.0:8080")?;
        let admin_addr = address("INGEST_ADMIN_ADDR", "0.0.0.0:9090")?;
        if admin_addr.port() == listen_addr.port() && admin_addr.port() != 0 {
            return Err(ConfigError {
                variable: "INGEST_ADMIN_ADDR",
                message: format!(
                    "`{admin_addr}` uses the API's port {}: the probes and metrics need a port \
                     of their own",
                    listen_addr.port()
                ),
            });
        }
        Ok(Self {
            listen_addr,
            admin_addr,
            database_url: required("DATABASE_URL", "postgres://ingest@db:5432/turia_trails")?,
            redis_url: required("REDIS_URL", "redis://cache:6379")?,
            kafka_brokers: required("KAFKA_BROKERS", "broker-0:9092,broker-1:9092")?,
            kafka_tls: match (boolean("KAFKA_TLS")?, lookup("KAFKA_TLS_CA_FILE")) {
                (_, Some(file)) if !file.is_empty() => Some(crate::kafkatls::Tls {
                    ca_file: Some(file.into()),
                }),
                (false, _) => None,
                (true, _) => Some(crate::kafkatls::Tls::default()),
            },
            topic: lookup("INGEST_TOPIC").unwrap_or_else(|| DEFAULT_TOPIC.to_string()),
            dlq_topic: lookup("INGEST_DLQ_TOPIC").unwrap_or_else(|| "audit.events.dlq".to_string()),
            node_name: lookup("INGEST_NODE_NAME")
                .or_else(|| lookup("HOSTNAME"))
                .unwrap_or_else(|| "unknown".to_string()),
            max_event_bytes: usize::try_from(number("INGEST_MAX_EVENT_BYTES", 1 << 20)?)
                .unwrap_or(usize::MAX),
            max_batch_bytes: usize::try_from(number("INGEST_MAX_BATCH_BYTES", 10 << 20)?)
                .unwrap_or(usize::MAX),
            key_cache_ttl: Duration::from_secs(number("INGEST_KEY_CACHE_SECONDS", 30)?),
            // librdkafka reads 0 as "retry forever": a request would never be answered.
            produce_timeout: Duration::from_millis(positive("INGEST_PRODUCE_TIMEOUT_MS", 10_000)?),
            produce_linger: Duration::from_millis(match number("INGEST_PRODUCE_LINGER_MS", 1)? {
                linger @ 0..=1000 => linger,
                _ => {
                    return Err(ConfigError {
                        variable: "INGEST_PRODUCE_LINGER_MS",
                        message: "must be at most 1000: every answer waits this long".to_string(),
                    });
                }
            }),
            default_rate_limit: number("INGEST_DEFAULT_RATE_LIMIT", 10_000)?,
            max_in_flight: usize::try_from(positive("INGEST_MAX_IN_FLIGHT", 1024)?)
                .unwrap_or(usize::MAX),
            request_timeout: Duration::from_millis(positive("INGEST_REQUEST_TIMEOUT_MS", 30_000)?),
            header_read_timeout: Duration::from_millis(positive(
                "INGEST_HEADER_READ_TIMEOUT_MS",
                10_000,
            )?),
            shed_queue: usize::try_from(positive("INGEST_SHED_QUEUE", 50_000)?)
                .unwrap_or(usize::MAX),
            failed_auth_limit: u32::try_from(number("INGEST_FAILED_AUTH_LIMIT", 20)?)
                .unwrap_or(u32::MAX),
            max_key_lookups: usize::try_from(positive("INGEST_MAX_KEY_LOOKUPS", 32)?)
                .unwrap_or(usize::MAX),
            trust_proxy: boolean("INGEST_TRUST_PROXY")?,
        })
    }

    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        }
    }

    #[test]
    fn missing_and_malformed_settings_name_their_variable() {
        let error = Config::from_lookup(lookup(&[])).unwrap_err();
        assert_eq!(error.variable, "DATABASE_URL");
        let error = Config::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://x"),
            ("REDIS_URL", "redis://x"),
            ("KAFKA_BROKERS", "k:9092"),
            ("INGEST_LISTEN_ADDR", "nowhere"),
        ]))
        .unwrap_err();
        assert_eq!(error.variable, "INGEST_LISTEN_ADDR");
        let error = Config::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://x"),
            ("REDIS_URL", "redis://x"),
            ("KAFKA_BROKERS", "k:9092"),
            ("INGEST_ADMIN_ADDR", "0.0.0.0:8080"),
        ]))
        .unwrap_err();
        assert_eq!(error.variable, "INGEST_ADMIN_ADDR");
        assert!(error.to_string().contains("uses the API's port 8080"));
        let error = Config::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://x"),
            ("REDIS_URL", "redis://x"),
            ("KAFKA_BROKERS", "k:9092"),
            ("INGEST_KEY_CACHE_SECONDS", "soon"),
        ]))
        .unwrap_err();
        assert!(error.to_string().contains("`soon` is not a whole number"));
        let error = Config::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://x"),
            ("REDIS_URL", "redis://x"),
            ("KAFKA_BROKERS", "k:9092"),
            ("KAFKA_TLS", "yes"),
        ]))
        .unwrap_err();
        assert_eq!(error.variable, "KAFKA_TLS");
    }

    #[test]
    fn kafka_tls_follows_its_two_variables() {
        let tls = |pairs: &'static [(&'static str, &'static str)]| {
            Config::from_lookup(lookup(pairs)).expect("valid").kafka_tls
        };
        const BASE: [(&str, &str); 3] = [
            ("DATABASE_URL", "postgres://x"),
            ("REDIS_URL", "redis://x"),
            ("KAFKA_BROKERS", "k:9092"),
        ];
        assert_eq!(tls(&BASE), None);
        assert_eq!(
            tls(&[BASE[0], BASE[1], BASE[2], ("KAFKA_TLS", "false")]),
            None
        );
        assert_eq!(
            tls(&[BASE[0], BASE[1], BASE[2], ("KAFKA_TLS", "true")]),
            Some(crate::kafkatls::Tls::default())
        );
        assert_eq!(
            tls(&[BASE[0], BASE[1], BASE[2], ("KAFKA_TLS_CA_FILE", "/ca.pem")]),
            Some(crate::kafkatls::Tls {
                ca_file: Some("/ca.pem".into())
            })
        );
    }

    #[test]
    fn a_key_value_connection_string_loses_its_password() {
        assert_eq!(
            redact("host=db user=ingest password=hunter2 dbname=app"),
            "host=db user=ingest password=(redacted) dbname=app"
        );
        assert_eq!(
            redact("host=db password='two words' dbname=app"),
            "host=db password=(redacted) dbname=app"
        );
        assert_eq!(redact("postgres://db/app"), "postgres://db/app");
    }

    #[test]
    fn produce_settings_out_of_range_are_refused() {
        let error = Config::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://x"),
            ("REDIS_URL", "redis://x"),
            ("KAFKA_BROKERS", "k:9092"),
            ("INGEST_PRODUCE_TIMEOUT_MS", "0"),
        ]))
        .unwrap_err();
        assert_eq!(error.variable, "INGEST_PRODUCE_TIMEOUT_MS");
        let error = Config::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://x"),
            ("REDIS_URL", "redis://x"),
            ("KAFKA_BROKERS", "k:9092"),
            ("INGEST_PRODUCE_LINGER_MS", "1001"),
        ]))
        .unwrap_err();
        assert_eq!(error.variable, "INGEST_PRODUCE_LINGER_MS");
        assert!(error.to_string().contains("at most 1000"), "{error}");
        let config = Config::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://x"),
            ("REDIS_URL", "redis://x"),
            ("KAFKA_BROKERS", "k:9092"),
            ("INGEST_PRODUCE_LINGER_MS", "0"),
        ]))
        .expect("a linger of 0 sends at once");
        assert_eq!(config.produce_linger, Duration::ZERO);
    }

    #[test]
    fn debug_output_hides_credentials_in_urls() {
        let config = Config::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://ingest:hunter2@db:5432/app"),
            ("REDIS_URL", "rediss://:tok3n@cache:6379"),
            ("KAFKA_BROKERS", "k:9092"),
        ]))
        .expect("valid");
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("tok3n"),
            "{shown}"
        );
        assert!(shown.contains("postgres://db:5432/app"), "{shown}");
    }
}
