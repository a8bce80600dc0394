//! Recorded state: one versioned JSON document per environment.
//!
//! Sensitive attribute values are never stored: the state keeps a `sha256:` digest in their
//! place, which is enough to tell whether they changed.

pub mod edit;
pub mod lifetime;
pub mod local;
pub mod s3;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
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
    /// Creates started but not recorded yet, by address: written before the create call, so
    /// that a run killed in between finds what it made and finishes it (see [`Intent`]).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub intents: IndexMap<String, Intent>,
    /// What `trails import` named for adoption, by address: the id of something that exists
    /// without trails' mark, which the next apply adopts instead of creating.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub imports: IndexMap<String, String>,
    /// When the state was first written, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// When it was last written, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// The environment was applied as `ephemeral: true`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ephemeral: bool,
    /// When an ephemeral environment with a `ttl` expires, RFC 3339: set by its first apply,
    /// moved only by `trails env extend`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// A create trails started: recorded, durably, before the first call that makes something,
/// and cleared in the same write that records the result. On resume, what is found under the
/// address's name and was made after `started_at` is this environment's own, even when the
/// marks that prove ownership (tags) were never written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    /// Resource type, e.g. `aws.s3_bucket`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When the create started, RFC 3339.
    pub started_at: String,
    /// An idempotency token for APIs that take one (EC2 `ClientToken`, EKS
    /// `clientRequestToken`): the same for every attempt of this create.
    pub token: String,
    /// What the resource depends on, so that a destroy deletes what the create may have made
    /// before what it stands on.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub depends_on: BTreeSet<String>,
}

impl Intent {
    /// An intent to create a `kind` that depends on `depends_on`, now.
    pub fn now(kind: &str, depends_on: BTreeSet<String>) -> Self {
        Self {
            kind: kind.to_string(),
            started_at: now_rfc3339(),
            token: uuid::Uuid::new_v4().to_string(),
            depends_on,
        }
    }

    /// When the create started (`None` for a time that does not parse: a state edited by
    /// hand).
    pub fn started(&self) -> Option<std::time::SystemTime> {
        humantime::parse_rfc3339(&self.started_at).ok()
    }
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
    /// The version of each Secrets Manager secret (by ARN) whose value went into the
    /// resource when it was applied: a refresh that finds another version current (the
    /// secret was rotated) updates the resource with the new value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_versions: BTreeMap<String, String>,
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
            intents: IndexMap::new(),
            imports: IndexMap::new(),
            created_at: None,
            updated_at: None,
            ephemeral: false,
            expires_at: None,
        }
    }

    /// The next version of this state: `change` applied, a new serial, a lineage on the first
    /// write, and its times.
    pub fn next(&self, change: impl FnOnce(&mut State)) -> State {
        let mut next = self.clone();
        change(&mut next);
        next.serial += 1;
        if next.lineage.is_empty() {
            next.lineage = uuid::Uuid::new_v4().to_string();
        }
        let now = now_rfc3339();
        next.created_at.get_or_insert_with(|| now.clone());
        next.updated_at = Some(now);
        next
    }

    /// When the environment expires, if it does.
    pub fn expiry(&self) -> Option<std::time::SystemTime> {
        self.expires_at
            .as_deref()
            .and_then(|at| humantime::parse_rfc3339(at).ok())
    }

    /// True when nothing was ever written (no state yet).
    pub fn is_new(&self) -> bool {
        self.serial == 0
    }
}

/// The time now, RFC 3339 to the second.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
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
    /// A shared backend (S3) failed.
    #[error("cannot use the state {location}: {message}")]
    Backend {
        /// `s3://BUCKET/KEY`.
        location: String,
        /// What the service said.
        message: String,
    },
    /// Another run wrote the state since this one read it: its write is refused.
    #[error(
        "the state {location} was written by another run since this one read it at serial {serial}; this run stops without overwriting it (nothing it applied is lost: run `trails apply` again, it adopts what this run made)"
    )]
    Conflict {
        /// `s3://BUCKET/KEY`.
        location: String,
        /// The serial this run had read.
        serial: u64,
    },
    /// The state bucket does not keep versions.
    #[error(
        "the state bucket {bucket} does not keep object versions, so an overwritten state could not be recovered; enable versioning first: `aws s3api put-bucket-versioning --bucket {bucket} --versioning-configuration Status=Enabled`"
    )]
    Unversioned {
        /// The bucket.
        bucket: String,
    },
}

impl StateError {
    /// A failed call to a shared backend.
    pub fn backend(location: &str, error: impl std::error::Error) -> Self {
        StateError::Backend {
            location: location.to_string(),
            message: crate::error_chain(&error),
        }
    }
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
    parse(&text, path, blueprint, environment)
}

/// Parses a state document read from `location` (a file, or `s3://BUCKET/KEY`) and checks
/// that it is this blueprint's environment's.
pub fn parse(
    text: &str,
    location: &Path,
    blueprint: &str,
    environment: &str,
) -> Result<State, StateError> {
    let state = parse_any(text, location)?;
    if state.blueprint != blueprint || state.environment != environment {
        return Err(StateError::Mismatch {
            path: location.to_path_buf(),
            found_blueprint: state.blueprint,
            found_environment: state.environment,
            blueprint: blueprint.to_string(),
            environment: environment.to_string(),
        });
    }
    Ok(state)
}

/// Parses a state document of any blueprint and environment (`trails env list`).
pub fn parse_any(text: &str, location: &Path) -> Result<State, StateError> {
    let version = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|value| value.get("version").and_then(Value::as_u64));
    if let Some(found) = version
        && found > u64::from(FORMAT_VERSION)
    {
        return Err(StateError::Version {
            path: location.to_path_buf(),
            found: u32::try_from(found).unwrap_or(u32::MAX),
        });
    }
    serde_json::from_str(text).map_err(|source| StateError::Parse {
        path: location.to_path_buf(),
        source,
    })
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
