//! Arbitrary input to the loader, validator, graph and plan: errors are fine, panics are not.

use std::path::Path;

use proptest::prelude::*;
use trails::blueprint::Source;

/// Runs everything trails does with a blueprint text, short of talking to a provider.
fn exercise(text: &str) {
    let Ok(source) = Source::parse(Path::new("fuzz.yaml"), text) else {
        return;
    };
    for environment in source.environments() {
        let Ok(loaded) = source.load(&environment) else {
            continue;
        };
        let diagnostics = trails::blueprint::validate::validate(&loaded);
        if diagnostics.iter().any(|d| d.is_error()) {
            continue;
        }
        if let Ok(graph) = trails::graph::build(&loaded, trails::resources::expand) {
            let state = trails::state::State::empty(&loaded.document.blueprint, &environment);
            let plan = trails::plan::plan(&graph, &state);
            let _ = trails::plan::render::text(&plan, "fuzz", Default::default());
        }
    }
}

/// Keys the schema knows, so that generated documents get deep into typing and validation.
const KEYS: &[&str] = &[
    "blueprint",
    "region",
    "tags",
    "variables",
    "environments",
    "overlay",
    "protect",
    "ephemeral",
    "ttl",
    "network",
    "cidr",
    "azs",
    "subnets",
    "public",
    "private",
    "database",
    "nat",
    "flow_logs",
    "bucket",
    "eks",
    "version",
    "node_pools",
    "general",
    "min",
    "max",
    "desired",
    "instance_types",
    "taints",
    "postgres",
    "main",
    "instance_class",
    "redis",
    "node_type",
    "shards",
    "buckets",
    "object_lock",
    "mode",
    "days",
    "kubernetes",
    "context",
    "namespaces",
    "secrets",
    "namespace",
    "data",
    "helm",
    "chart",
    "repository",
    "depends_on",
    "kafka",
    "topics",
    "partitions",
    "bootstrap_servers",
    "ingest",
    "image",
    "env",
    "x",
];

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("demo".to_string()),
        Just("eu-west-1".to_string()),
        Just("10.0.0.0/16".to_string()),
        Just("10.0.1.0/24".to_string()),
        Just("true".to_string()),
        Just("null".to_string()),
        Just("~".to_string()),
        Just("\"1.30\"".to_string()),
        Just("${var.x}".to_string()),
        Just("${env.name}".to_string()),
        Just("${aws.vpc.main.id}".to_string()),
        Just("${aws.db_instance.main.password}".to_string()),
        Just("[a, b]".to_string()),
        Just("{}".to_string()),
        (0u32..100_000).prop_map(|n| n.to_string()),
        "[a-z0-9.-]{0,12}",
    ]
}

fn yaml(depth: u32) -> BoxedStrategy<String> {
    let leaf = scalar().boxed();
    if depth == 0 {
        return leaf;
    }
    let key = proptest::sample::select(KEYS).prop_map(str::to_string);
    let mapping =
        proptest::collection::vec((key, yaml(depth - 1)), 0..5).prop_map(move |entries| {
            if entries.is_empty() {
                return "{}".to_string();
            }
            let indent = "  ";
            entries
                .into_iter()
                .map(|(key, value)| {
                    let nested = value.contains('\n') || value.contains(": ");
                    if nested {
                        let body = value
                            .lines()
                            .map(|l| format!("{indent}{l}"))
                            .collect::<Vec<_>>();
                        format!("{key}:\n{}", body.join("\n"))
                    } else {
                        format!("{key}: {value}")
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
        });
    let sequence = proptest::collection::vec(scalar(), 0..4)
        .prop_map(|items| format!("[{}]", items.join(", ")));
    prop_oneof![2 => leaf, 3 => mapping, 1 => sequence].boxed()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        exercise(&text);
    }

    #[test]
    fn schema_shaped_yaml_never_panics(body in yaml(4)) {
        exercise(&format!("blueprint: demo\nregion: eu-west-1\n{body}\n"));
        exercise(&body);
    }
}
