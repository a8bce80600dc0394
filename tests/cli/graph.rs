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
