//! Kafka topics read back by `trails diff` against a real broker (tansu): a fresh apply with a
//! topic configuration diffs clean, a topic deleted by hand is drift that a refreshed apply
//! repairs.

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;

use super::run_in;
use super::services::Tansu;

#[test]
fn a_configured_topic_diffs_clean_and_one_deleted_by_hand_is_drift_a_refreshed_apply_repairs() {
    let tansu = Tansu::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("topics.yaml");
    std::fs::write(
        &file,
        format!(
            "blueprint: topics\nregion: us-east-1\nenvironments: {{ dev: {{}} }}\nkafka:\n  \
             bootstrap_servers: {}\n  topics:\n    audit.events.v1: {{ partitions: 3, \
             replication_factor: 1, config: {{ retention.ms: \"86400000\" }} }}\n    \
             audit.events.dlq: {{ partitions: 1, replication_factor: 1 }}\n",
            tansu.brokers
        ),
    )
    .expect("write blueprint");
    let path = file.to_str().expect("utf-8 path");
    let trails = |args: &[&str]| {
        let mut full = args.to_vec();
        full.extend(["-f", path]);
        run_in(None, &full)
    };
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
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("topics.yaml");
    std::fs::write(
        &file,
        format!(
            "blueprint: topics\nregion: us-east-1\nenvironments: {{ dev: {{}} }}\nkafka:\n  \
             bootstrap_servers: {}\n  topics:\n    billing.v1: {{ partitions: 2, \
             replication_factor: 1 }}\n    audit.events.v1: {{ partitions: 1, \
             replication_factor: 1 }}\n",
            tansu.brokers
        ),
    )
    .expect("write blueprint");
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
    let path = file.to_str().expect("utf-8 path");
    let trails = |args: &[&str]| {
        let mut full = args.to_vec();
        full.extend(["-f", path]);
        run_in(None, &full)
    };

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
