//! How every Kafka client of trails reaches the brokers (apply's admin client, `verify`, the
//! ingest service's producer): in clear, or over TLS with the brokers' certificate and host name
//! verified (librdkafka's `ssl.endpoint.identification.algorithm=https`) against the CA
//! certificates of a PEM file, or against the system's when no file is named.

use std::path::PathBuf;

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

/// TLS to the brokers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tls {
    /// PEM file of the CA certificates that sign the brokers' certificates; `None`: the
    /// system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// Client settings for `bootstrap_servers`, over TLS when `tls` is given.
pub fn client(bootstrap_servers: &str, tls: Option<&Tls>) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap_servers);
    if let Some(tls) = tls {
        config
            .set("security.protocol", "ssl")
            .set("ssl.endpoint.identification.algorithm", "https");
        if let Some(ca_file) = &tls.ca_file {
            config.set("ssl.ca.location", ca_file.to_string_lossy());
        }
    }
    config
}
