//! `trails render`: what would be applied inside the cluster, as YAML, with secrets redacted.

use serde::Deserialize;

use super::{repo, run, run_with};

fn documents(text: &str) -> Vec<serde_json::Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|document| serde_json::Value::deserialize(document).expect("each document is YAML"))
        .filter(|value| !value.is_null())
        .collect()
}

#[test]
fn the_shipped_blueprint_renders_objects_kubernetes_knows_with_secrets_redacted() {
    let file = repo("blueprints/turia-trails.yaml");
    let rendered = run(&["render", "-f", file.to_str().expect("utf-8"), "-e", "prod"]);
    assert_eq!(rendered.code, 0, "{}", rendered.stderr);
    let objects: Vec<_> = documents(&rendered.stdout)
        .into_iter()
        .filter(|document| document.get("kind").is_some())
        .collect();
    let kinds: std::collections::BTreeSet<&str> = objects
        .iter()
        .filter_map(|object| object["kind"].as_str())
        .collect();
    for kind in [
        "Namespace",
        "Secret",
        "Deployment",
        "Service",
        "Ingress",
        "RoleBinding",
    ] {
        assert!(kinds.contains(kind), "no {kind} in {kinds:?}");
    }
    for object in &objects {
        let refused = trails::render::unknown_fields(object);
        assert!(
            refused.is_empty(),
            "{}: {refused:?}",
            object["metadata"]["name"]
        );
        if object["kind"] == "Secret" {
            for value in object["data"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(_, v)| v)
            {
                assert_eq!(value, "KHJlZGFjdGVkKQ==", "a Secret value shows: {object}");
            }
        }
    }
    assert!(
        rendered
            .stdout
            .contains("# Source: helm.release.redpanda (Helm values)"),
        "Helm values are rendered too"
    );
}

#[test]
fn render_out_writes_a_file_per_resource_and_redacts_sensitive_variables() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("templates")).expect("templates");
    std::fs::write(
        dir.path().join("templates/values.yaml"),
        "auth:\n  password: {{ values.password }}\n",
    )
    .expect("template");
    let file = dir.path().join("blueprint.yaml");
    std::fs::write(
        &file,
        "blueprint: render\nregion: eu-west-1\n\
         variables:\n  password: { sensitive: true, value: hunter2-not-shown }\n\
         kubernetes:\n  context: test\n  namespaces:\n    app: {}\n\
         helm:\n  app:\n    chart: app\n    repository: https://charts.example.com\n    version: 1.2.3\n    namespace: app\n    values_template: values.yaml\n    values: { password: \"${var.password}\" }\n",
    )
    .expect("blueprint");
    let out = dir.path().join("rendered");
    let result = run_with(
        None,
        &[],
        &[
            "render",
            "-f",
            file.to_str().expect("utf-8"),
            "--out",
            out.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(result.code, 0, "{}", result.stderr);
    let values =
        std::fs::read_to_string(out.join("helm.release.app.values.yaml")).expect("values file");
    assert!(values.contains("password: (sensitive)"), "{values}");
    assert!(!values.contains("hunter2"), "{values}");
    let namespace =
        std::fs::read_to_string(out.join("k8s.namespace.app.yaml")).expect("namespace file");
    assert!(namespace.contains("kind: Namespace"), "{namespace}");
}
