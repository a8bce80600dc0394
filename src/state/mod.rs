//! Recorded state: one versioned JSON document per environment.
//!
//! Sensitive attribute values are never stored: the state keeps a `sha256:` digest in their
//! place, which is enough to tell whether they changed.

pub mod local;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Version of the state document format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// The recorded state of one environment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Format version of the document.
    pub version: u32,
    /// Incremented on every write; a saved plan names the serial it was made against.
    pub serial: u64,
    /// Random identity given when the state is first written; never changes afterwards.
    pub lineage: String,
    /// Blueprint the state belongs to.
    pub blueprint: String,
    /// Environment the state belongs to.
    pub environment: String,
    /// Resources by address, in the order they were recorded.
    pub resources: IndexMap<String, Recorded>,
    /// The environment was applied as `protect: true`: this wins over a blueprint that drops
    /// the flag, until an apply of that change alone records it off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub protected: bool,
}

/// What trails recorded about one resource after creating or updating it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Recorded {
    /// Resource type, e.g. `aws.vpc`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Provider-side identifier (VPC id, ARN, name...).
    pub id: Option<String>,
    /// Attributes as applied, references resolved, sensitive ones as digests.
    pub attributes: Map<String, Value>,
    /// Outputs other resources may reference (sensitive outputs are not stored).
    #[serde(default)]
    pub outputs: Map<String, Value>,
    /// Addresses it depended on when applied, for ordering its deletion.
    #[serde(default)]
    pub depends_on: BTreeSet<String>,
}

impl State {
    /// The empty state of an environment that was never applied.
    pub fn empty(blueprint: &str, environment: &str) -> Self {
        Self {
            version: FORMAT_VERSION,
            serial: 0,
            lineage: String::new(),
            blueprint: blueprint.to_string(),
            environment: environment.to_string(),
            resources: IndexMap::new(),
            protected: false,
        }
    }
}

/// Problems reading a state file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file exists but cannot be read.
    #[error("cannot read state {path}: {source}")]
    Read {
        /// The state file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a state document.
    #[error("state {path} is not a valid trails state document: {source}")]
    Parse {
        /// The state file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// The file is from a newer trails.
    #[error(
        "state {path} has format version {found}; this trails reads version {FORMAT_VERSION}: upgrade trails"
    )]
    Version {
        /// The state file.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// The file belongs to another blueprint or environment.
    #[error(
        "state {path} belongs to blueprint `{found_blueprint}` environment `{found_environment}`, not `{blueprint}` `{environment}`; pass --state to use another file"
    )]
    Mismatch {
        /// The state file.
        path: PathBuf,
        /// Blueprint recorded in the file.
        found_blueprint: String,
        /// Environment recorded in the file.
        found_environment: String,
        /// Blueprint asked for.
        blueprint: String,
        /// Environment asked for.
        environment: String,
    },
}

/// Default location of an environment's state: `.trails/ENV.state.json` beside the blueprint.
pub fn default_path(blueprint_file: &Path, environment: &str) -> PathBuf {
    blueprint_file
        .parent()
        .unwrap_or(Path::new("."))
        .join(".trails")
        .join(format!("{environment}.state.json"))
}

/// Reads a local state file; a missing file is the empty state.
pub fn read_local(path: &Path, blueprint: &str, environment: &str) -> Result<State, StateError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(State::empty(blueprint, environment));
        }
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let version = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|value| value.get("version").and_then(Value::as_u64));
    if let Some(found) = version
        && found > u64::from(FORMAT_VERSION)
    {
        return Err(StateError::Version {
            path: path.to_path_buf(),
            found: u32::try_from(found).unwrap_or(u32::MAX),
        });
    }
    let state: State = serde_json::from_str(&text).map_err(|source| StateError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    if state.blueprint != blueprint || state.environment != environment {
        return Err(StateError::Mismatch {
            path: path.to_path_buf(),
            found_blueprint: state.blueprint,
            found_environment: state.environment,
            blueprint: blueprint.to_string(),
            environment: environment.to_string(),
        });
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_state_is_empty_and_foreign_state_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("dev.state.json");
        let state = read_local(&path, "demo", "dev").expect("missing file is empty state");
        assert!(state.resources.is_empty());

        let mut foreign = State::empty("other", "dev");
        foreign.serial = 3;
        std::fs::write(&path, serde_json::to_string(&foreign).expect("serializes")).expect("write");
        let error = read_local(&path, "demo", "dev").expect_err("other blueprint");
        assert!(
            error.to_string().contains("belongs to blueprint `other`"),
            "{error}"
        );
    }

    #[test]
    fn newer_format_and_garbage_are_explained() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("dev.state.json");
        std::fs::write(&path, r#"{"version": 9}"#).expect("write");
        let error = read_local(&path, "demo", "dev").expect_err("newer");
        assert!(error.to_string().contains("upgrade trails"), "{error}");
        std::fs::write(&path, "not json").expect("write");
        let error = read_local(&path, "demo", "dev").expect_err("garbage");
        assert!(
            error.to_string().contains("not a valid trails state"),
            "{error}"
        );
    }
}
