//! Kafka topics against a real broker (tansu): read back by `trails diff` (a fresh apply with a
//! topic configuration diffs clean, a topic deleted by hand is drift that a refreshed apply
//! repairs), refused when made outside trails, and reached over TLS through a TLS-only listener.

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;

use super::services::{Tansu, TlsProxy, certificates, free_port};
use super::{Run, run_in};

/// A blueprint of Kafka topics alone, `topics.yaml` in a temporary directory.
struct Topics {
    dir: tempfile::TempDir,
}

impl Topics {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Writes the blueprint with this `kafka:` section (its lines indented two spaces).
    fn write(&self, kafka: &str) {
        std::fs::write(
            self.dir.path().join("topics.yaml"),
            format!(
                "blueprint: topics\nregion: us-east-1\nenvironments: {{ dev: {{}} }}\nkafka:\n{kafka}"
            ),
        )
        .expect("write blueprint");
    }

    /// `trails ARGS -f topics.yaml`.
    fn trails(&self, args: &[&str]) -> Run {
        let path = self.dir.path().join("topics.yaml");
        let mut full = args.to_vec();
        full.extend(["-f", path.to_str().expect("utf-8 path")]);
        run_in(None, &full)
    }
}

#[test]
fn a_configured_topic_diffs_clean_and_one_deleted_by_hand_is_drift_a_refreshed_apply_repairs() {
    let tansu = Tansu::start();
    let topics = Topics::new();
    topics.write(&format!(
        "  bootstrap_servers: {}\n  topics:\n    audit.events.v1: {{ partitions: 3, \
         replication_factor: 1, config: {{ retention.ms: \"86400000\" }} }}\n    \
         audit.events.dlq: {{ partitions: 1, replication_factor: 1 }}\n",
        tansu.brokers
    ));
    let trails = |args: &[&str]| topics.trails(args);
    let applied = trails(&["apply", "--yes"]);
    assert_eq!(applied.code, 0, "{}\n{}", applied.stdout, applied.stderr);

    let clean = trails(&["diff", "--detailed-exitcode"]);
    assert_eq!(clean.code, 0, "{}\n{}", clean.stdout, clean.stderr);
    assert!(
        clean
            .stdout
            .contains("No drift among the 2 resource(s) read back."),
        "{}",
        clean.stdout
    );

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &tansu.brokers)
        .create()
        .expect("admin client");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let deleted = runtime
        .block_on(admin.delete_topics(&["audit.events.dlq"], &AdminOptions::new()))
        .expect("delete the topic by hand");
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");

    let drift = trails(&["diff", "--detailed-exitcode"]);
    assert_eq!(drift.code, 2, "{}\n{}", drift.stdout, drift.stderr);
    assert!(
        drift
            .stdout
            .contains("- kafka.topic.audit-events-dlq: deleted outside trails")
            && drift.stdout.contains("Drift: 1 of 2"),
        "{}",
        drift.stdout
    );
    let repaired = trails(&["apply", "--refresh", "--yes"]);
    assert_eq!(repaired.code, 0, "{}\n{}", repaired.stdout, repaired.stderr);
    let clean = trails(&["diff", "--detailed-exitcode"]);
    assert_eq!(clean.code, 0, "{}\n{}", clean.stdout, clean.stderr);
}

#[test]
fn a_topic_made_outside_trails_is_refused_survives_destroy_and_import_adopts_it() {
    use rdkafka::admin::{NewTopic, TopicReplication};
    let tansu = Tansu::start();
    let topics = Topics::new();
    topics.write(&format!(
        "  bootstrap_servers: {}\n  topics:\n    billing.v1: {{ partitions: 2, \
         replication_factor: 1 }}\n    audit.events.v1: {{ partitions: 1, \
         replication_factor: 1 }}\n",
        tansu.brokers
    ));
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &tansu.brokers)
        .create()
        .expect("admin client");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let made = runtime
        .block_on(admin.create_topics(
            &[NewTopic::new("billing.v1", 2, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ))
        .expect("a topic made by hand");
    assert!(made.iter().all(Result::is_ok), "{made:?}");
    let exists = |name: &str| {
        let metadata = admin
            .inner()
            .fetch_metadata(Some(name), std::time::Duration::from_secs(10))
            .expect("metadata");
        metadata
            .topics()
            .iter()
            .any(|topic| topic.name() == name && topic.error().is_none())
    };
    let trails = |args: &[&str]| topics.trails(args);

    let refused = trails(&["apply", "--yes"]);
    assert_eq!(refused.code, 1, "{}\n{}", refused.stdout, refused.stderr);
    let said = format!("{}{}", refused.stdout, refused.stderr);
    assert!(
        said.contains("Kafka topic billing.v1 already exists")
            && said.contains("trails import kafka.topic.billing-v1 billing.v1"),
        "{said}"
    );
    let destroyed = trails(&["destroy", "--yes"]);
    assert_eq!(
        destroyed.code, 0,
        "{}\n{}",
        destroyed.stdout, destroyed.stderr
    );
    assert!(exists("billing.v1"), "their topic survives the destroy");
    assert!(!exists("audit.events.v1"), "trails' own topic is deleted");

    let imported = trails(&["import", "kafka.topic.billing-v1", "billing.v1"]);
    assert_eq!(imported.code, 0, "{}\n{}", imported.stdout, imported.stderr);
    let adopted = trails(&["apply", "--yes"]);
    assert_eq!(adopted.code, 0, "{}\n{}", adopted.stdout, adopted.stderr);
    let listed = trails(&["state", "list"]);
    assert!(
        listed.stdout.contains("kafka.topic.billing-v1"),
        "{}",
        listed.stdout
    );
    let destroyed = trails(&["destroy", "--yes"]);
    assert_eq!(
        destroyed.code, 0,
        "{}\n{}",
        destroyed.stdout, destroyed.stderr
    );
    assert!(!exists("billing.v1"), "imported, it is trails' to delete");
}

#[test]
fn a_tls_only_listener_is_reached_by_apply_verify_and_the_ingest_producer() {
    let topics = Topics::new();
    let dir = topics.dir.path();
    certificates(dir, "kafka", true);
    certificates(dir, "other", false);
    // The broker is reachable only through the TLS front, which it advertises.
    let front = free_port();
    let tansu = Tansu::start_behind(front);
    let proxy = TlsProxy::start(
        front,
        &dir.join("server.pem"),
        &dir.join("server.key"),
        tansu.port(),
    );
    let write = |tls: &str| {
        topics.write(&format!(
            "  bootstrap_servers: 127.0.0.1:{front}\n{tls}  topics:\n    \
             audit.events.v1: {{ partitions: 2, replication_factor: 1 }}\n"
        ));
    };
    let trails = |args: &[&str]| topics.trails(args);

    // Verified against the CA that signed the listener's certificate (relative to the
    // blueprint), everything works.
    write("  tls: { ca_file: kafka-ca.pem }\n");
    let applied = trails(&["apply", "--yes"]);
    assert_eq!(applied.code, 0, "{}\n{}", applied.stdout, applied.stderr);
    assert!(
        proxy.handshakes.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "apply never completed a TLS handshake"
    );
    let clean = trails(&["diff", "--detailed-exitcode"]);
    assert_eq!(clean.code, 0, "{}\n{}", clean.stdout, clean.stderr);
    let verified = trails(&["verify"]);
    assert_eq!(verified.code, 0, "{}\n{}", verified.stdout, verified.stderr);
    assert!(
        verified.stdout.contains("2 partitions"),
        "{}",
        verified.stdout
    );

    // The ingest service's producer, over TLS, delivers to the topic.
    // `Ok(true)`: the broker answered over TLS and the event reached the topic itself.
    let producer = |env: Vec<(&str, String)>| -> Result<bool, String> {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let brokers = format!("127.0.0.1:{front}");
        let lookup = move |name: &str| {
            env.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.clone())
                .or_else(|| match name {
                    "DATABASE_URL" => Some("postgres://unused".to_string()),
                    "REDIS_URL" => Some("redis://unused".to_string()),
                    "KAFKA_BROKERS" => Some(brokers.clone()),
                    _ => None,
                })
        };
        let config = trails::ingest::config::Config::from_lookup(lookup).expect("config");
        runtime.block_on(async move {
            let producer = trails::ingest::produce::EventProducer::new(
                &config.kafka_brokers,
                config.kafka_tls.as_ref(),
                "audit.events.v1",
                "audit.events.v1",
                std::time::Duration::from_secs(5),
                config.produce_linger,
            )
            .map_err(|error| error.to_string())?;
            producer.check().await?;
            Ok(matches!(
                producer.store("tls-test", b"{}").await,
                trails::ingest::produce::Stored::Topic
            ))
        })
    };
    let ca = dir.join("kafka-ca.pem").display().to_string();
    assert_eq!(producer(vec![("KAFKA_TLS_CA_FILE", ca)]), Ok(true));

    // In clear, or against a CA that did not sign the certificate, nothing gets through, and
    // the error says why.
    let other = dir.join("other-ca.pem").display().to_string();
    assert!(producer(vec![("KAFKA_TLS_CA_FILE", other)]).is_err());
    assert!(producer(Vec::new()).is_err());
    write("  tls: { ca_file: other-ca.pem }\n");
    let refused = trails(&["verify"]);
    assert_eq!(refused.code, 1, "{}\n{}", refused.stdout, refused.stderr);
    assert!(
        refused
            .stdout
            .contains("over TLS, the brokers' certificate verified against")
            && refused.stdout.contains("other-ca.pem"),
        "{}\n{}",
        refused.stdout,
        refused.stderr
    );
}
