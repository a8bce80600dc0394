//! Renders the blueprint's tera templates (Kubernetes manifests, Helm values) at apply time,
//! when the outputs their values reference are known.
//!
//! Every text a `{{ ... }}` inserts is escaped for YAML: a value YAML reads back as the same
//! plain scalar is inserted as it is (so `replicas: {{ values.replicas }}` stays a number), any
//! other becomes a double-quoted string, so that a value holding a newline, `: `, `#` or a quote
//! cannot add keys or documents. Inside a quoted string in a template such a value makes the
//! YAML invalid (an error) instead of changing its meaning; `| safe` inserts text unescaped.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::ProviderError;

/// Renders `relative` (under `templates_dir`) with `values` available as `values.NAME`.
pub fn render(
    templates_dir: &Path,
    relative: &str,
    values: &BTreeMap<String, Value>,
) -> Result<String, ProviderError> {
    let path = templates_dir.join(relative);
    let text = std::fs::read_to_string(&path).map_err(|error| {
        ProviderError::Invalid(format!("cannot read template {}: {error}", path.display()))
    })?;
    let mut tera = tera::Tera::default();
    // Every template, whatever its name ends with.
    tera.autoescape_on(vec![""]);
    tera.set_escape_fn(yaml_scalar);
    let name = path.display().to_string();
    tera.add_raw_template(&name, &text).map_err(|error| {
        ProviderError::Invalid(format!(
            "template {name} does not parse: {}",
            crate::error_chain(&error)
        ))
    })?;
    let mut context = tera::Context::new();
    context.insert("values", values);
    tera.render(&name, &context).map_err(|error| {
        ProviderError::Invalid(format!(
            "template {name} does not render: {}",
            crate::error_chain(&error)
        ))
    })
}

/// `text` as it may stand in YAML: itself when YAML reads it back as the same plain scalar,
/// else a double-quoted string (JSON's quoting is YAML's).
fn yaml_scalar(text: &str) -> String {
    if plain(text) {
        text.to_string()
    } else {
        serde_json::to_string(text).unwrap_or_default()
    }
}

/// A plain scalar YAML reads back unchanged wherever a value may stand: letters, digits and
/// a few punctuation marks that never start a structure, and nothing that ends a key (`: `)
/// or starts a comment (` #`).
fn plain(text: &str) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    (first.is_alphanumeric() || "./~+-_$".contains(first))
        && text.trim() == text
        && text
            .chars()
            .all(|c| c.is_alphanumeric() || " -_./:+=,@~()$%^".contains(c))
        && !text.contains(": ")
        && !text.ends_with(':')
        && !text.contains(" #")
        && !text.starts_with("- ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_values_and_names_the_file_on_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("ok.yaml"),
            "replicas: {{ values.replicas }}\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("bad.yaml"), "x: {{ values.missing }}\n").expect("write");
        let values = BTreeMap::from([("replicas".to_string(), json!(3))]);
        assert_eq!(
            render(dir.path(), "ok.yaml", &values).expect("renders"),
            "replicas: 3\n"
        );
        let error = render(dir.path(), "bad.yaml", &values)
            .expect_err("missing value")
            .to_string();
        assert!(
            error.contains("bad.yaml") && error.contains("missing"),
            "{error}"
        );
        // A value cannot add keys: it is quoted unless it reads back as itself.
        std::fs::write(
            dir.path().join("values.yaml"),
            "image: {{ values.image }}\nreplicas: {{ values.replicas }}\nnote: {{ values.note }}\n\
             arn: {{ values.arn }}\n",
        )
        .expect("write");
        let hostile = "x\nprivileged: true\n---\nkind: ClusterRoleBinding # \"q\" 'q'";
        let values = BTreeMap::from([
            ("image".to_string(), json!("ghcr.io/turia/trails:0.1.0")),
            ("replicas".to_string(), json!(3)),
            ("note".to_string(), json!(hostile)),
            ("arn".to_string(), json!("arn:aws:iam::123456789012:role/x")),
        ]);
        let text = render(dir.path(), "values.yaml", &values).expect("renders");
        let parsed: serde_json::Value = serde_yaml::from_str(&text).expect("one YAML document");
        assert_eq!(
            parsed,
            json!({"image": "ghcr.io/turia/trails:0.1.0", "replicas": 3, "note": hostile,
                   "arn": "arn:aws:iam::123456789012:role/x"})
        );
        for unsafe_text in [
            "a: b", "a #b", "- x", "[x]", "{x}", "*x", "&x", "!x", "|", "'q'", "",
        ] {
            assert!(!plain(unsafe_text), "{unsafe_text:?} must be quoted");
        }
        let error = render(dir.path(), "absent.yaml", &values)
            .expect_err("absent file")
            .to_string();
        assert!(error.contains("absent.yaml"), "{error}");
    }
}
