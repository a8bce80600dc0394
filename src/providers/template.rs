//! Renders the blueprint's tera templates (Kubernetes manifests, Helm values) at apply time,
//! when the outputs their values reference are known.

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
        let error = render(dir.path(), "absent.yaml", &values)
            .expect_err("absent file")
            .to_string();
        assert!(error.contains("absent.yaml"), "{error}");
    }
}
