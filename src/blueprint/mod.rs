//! Blueprints: the YAML schema, loading with environment overlays and variables, and validation.

pub mod diagnostic;
pub mod expression;
pub mod format;
pub mod load;
pub mod naming;
pub mod reference;
pub mod schema;
pub mod validate;

use std::path::Path;

pub use diagnostic::{Diagnostic, Diagnostics, FieldPath};
pub use load::{Loaded, Source};

/// Templates the ingest service's deployment is rendered from, under `ingest/` in the templates directory.
pub const INGEST_TEMPLATES: &[&str] = &[
    "deployment.yaml",
    "service.yaml",
    "hpa.yaml",
    "pdb.yaml",
    "ingress.yaml",
    "servicemonitor.yaml",
];

/// Loads one environment and runs every semantic check; errors fail, warnings are returned.
pub fn load_checked(
    file: &Path,
    environment: Option<&str>,
    variables: &schema::Map<String>,
) -> Result<Checked, Diagnostics> {
    let loaded = load::load(file, environment, variables)?;
    let diagnostics = validate::validate(&loaded);
    if diagnostics.iter().any(Diagnostic::is_error) {
        return Err(Diagnostics(diagnostics));
    }
    Ok(Checked {
        loaded,
        warnings: diagnostics,
    })
}

/// A blueprint that passed validation, with the warnings it produced.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The loaded blueprint.
    pub loaded: Loaded,
    /// Problems that do not stop trails.
    pub warnings: Vec<Diagnostic>,
}
