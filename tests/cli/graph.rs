//! `trails graph`.

use super::{repo, run};

#[test]
fn dot_and_mermaid_draw_dependency_edges() {
    let file = repo("examples/minimal.yaml");
    let dot = run(&["graph", "-f", file.to_str().expect("utf-8")]);
    assert_eq!(dot.code, 0, "{}", dot.stderr);
    assert!(dot.stdout.starts_with("digraph trails {"), "{}", dot.stdout);
    assert!(
        dot.stdout
            .contains("\"aws.vpc.main\" -> \"aws.subnet.public-a\";"),
        "{}",
        dot.stdout
    );
    assert!(
        dot.stdout
            .contains("\"aws.eip.nat-a\" -> \"aws.nat_gateway.a\";"),
        "{}",
        dot.stdout
    );
    let mermaid = run(&[
        "graph",
        "-f",
        file.to_str().expect("utf-8"),
        "--format",
        "mermaid",
    ]);
    assert_eq!(mermaid.code, 0, "{}", mermaid.stderr);
    assert!(
        mermaid.stdout.starts_with("flowchart LR"),
        "{}",
        mermaid.stdout
    );
    assert!(
        mermaid
            .stdout
            .contains("aws_vpc_main --> aws_subnet_public_a"),
        "{}",
        mermaid.stdout
    );
}

#[test]
fn the_ingest_pod_mounts_the_brokers_ca_only_after_cert_manager_issued_it() {
    let file = repo("blueprints/turia-trails.yaml");
    let dot = run(&["graph", "-f", file.to_str().expect("utf-8"), "-e", "prod"]);
    assert_eq!(dot.code, 0, "{}", dot.stderr);
    // cert-manager, then the platform CA, then the brokers' certificates (Redpanda) and the
    // ingest namespace's copy of the CA, then the Deployment that mounts it.
    for edge in [
        "\"helm.release.cert-manager\" -> \"k8s.manifest.internal-ca\";",
        "\"k8s.manifest.internal-ca\" -> \"helm.release.redpanda\";",
        "\"k8s.manifest.internal-ca\" -> \"k8s.manifest.kafka-trust\";",
        "\"k8s.manifest.kafka-trust\" -> \"k8s.manifest.ingest-deployment\";",
    ] {
        assert!(dot.stdout.contains(edge), "no {edge} in:\n{}", dot.stdout);
    }
    let rendered = run(&["render", "-f", file.to_str().expect("utf-8"), "-e", "prod"]);
    assert_eq!(rendered.code, 0, "{}", rendered.stderr);
    assert!(
        rendered
            .stdout
            .contains("value: /etc/trails/trust/kafka-ca/ca.crt")
            && rendered.stdout.contains("secretName: kafka-ca")
            && rendered.stdout.contains("name: KAFKA_TLS_CA_FILE"),
        "{}",
        rendered.stdout
    );
}
