//! Providers make resources real: one implementation of [`Provider`] per resource type.
//!
//! The engine only knows this trait; adding a type's provider means adding it to a family file
//! and to [`Providers::new`].

pub mod aws;
pub mod clickhouse;
pub mod compare;
pub mod helm;
pub mod http;
pub mod kafka;
pub mod kube;
pub mod opensearch;
pub mod postgres;
pub mod secrets;
pub mod template;

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::state::{Intent, Recorded};

/// What a provider reports after creating, adopting or updating a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// Provider-side identifier.
    pub id: String,
    /// Outputs other resources may reference.
    pub outputs: Map<String, Value>,
}

/// Why a provider call failed.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The cloud refused or failed the request (after the SDK's own retries).
    #[error("{operation} failed: {message}")]
    Api {
        /// What trails asked for, e.g. `CreateVpc`.
        operation: String,
        /// What the API said.
        message: String,
    },
    /// The desired attributes do not fit the type (a bug, or a state edited by hand).
    #[error("invalid attributes: {0}")]
    Invalid(String),
    /// A resource did not reach the wanted state in time.
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        seconds: u64,
    },
    /// The resource cannot be brought to what is desired as things stand (a human must
    /// settle it).
    #[error("{0}")]
    Conflict(String),
    /// Something exists under the resource's name that is not this environment's (it lacks
    /// the mark of this blueprint, environment and address), refused before any change.
    #[error("{0}")]
    NotOurs(String),
}

impl ProviderError {
    /// An API failure with the SDK's full error context.
    pub fn api(operation: &str, error: impl std::error::Error) -> Self {
        ProviderError::Api {
            operation: operation.to_string(),
            message: crate::error_chain(&error),
        }
    }
}

/// What reading a recorded resource back from where it lives found (`plan --refresh`,
/// `trails diff`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", content = "differences", rename_all = "kebab-case")]
pub enum Observed {
    /// The provider does not read this type back yet.
    NotChecked,
    /// It is as trails left it.
    Matches,
    /// It exists; its settings are not compared yet.
    Exists,
    /// It was deleted outside trails.
    Gone,
    /// It was changed outside trails: one line per difference, e.g.
    /// `apps/v1 Deployment web/ingest: spec.replicas: 2 -> 5`.
    Changed(Vec<String>),
}

impl Observed {
    /// `Matches` without differences, `Changed` with them.
    pub fn from_differences(differences: Vec<String>) -> Self {
        if differences.is_empty() {
            Observed::Matches
        } else {
            Observed::Changed(differences)
        }
    }

    /// True when the live resource is not what trails left.
    pub fn drifted(&self) -> bool {
        matches!(self, Observed::Gone | Observed::Changed(_))
    }
}

/// What a create may take over when something already exists under the resource's name, for
/// what carries trails' mark in a label, an annotation or a comment instead of AWS tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takeover {
    /// Only what carries this resource's own mark: a create.
    Marked,
    /// Also what carries no trails mark at all: the object of a recorded resource written
    /// before trails marked what it makes, or what `trails import` names. Never what is
    /// marked for another blueprint, environment or address.
    Unmarked,
}

/// Whether an existing thing that carries the mark `found` may be taken over by the resource
/// marked `owner`; `what` names it and `id` is what `trails import` would take, for the
/// refusal.
pub fn may_take_over(
    what: &str,
    found: Option<&str>,
    owner: &str,
    takeover: Takeover,
    id: &str,
) -> Result<(), ProviderError> {
    let import = match owner.splitn(3, '/').collect::<Vec<_>>()[..] {
        [_, environment, address] => format!("trails import -e {environment} {address} {id}"),
        _ => format!("trails import ADDRESS {id}"),
    };
    match found {
        Some(found) if found == owner => Ok(()),
        None if takeover == Takeover::Unmarked => Ok(()),
        None => Err(ProviderError::NotOurs(format!(
            "{what} already exists and carries no trails mark: trails did not make it and does              not take it over. Rename it in the blueprint, delete it, or adopt it explicitly              with `{import}`"
        ))),
        Some(found) => Err(ProviderError::NotOurs(format!(
            "{what} already exists and belongs to {found}, not {owner}: rename it in the              blueprint, or delete it from the environment that made it"
        ))),
    }
}

/// Whether an existing thing that carries the mark `found` may be deleted by the resource
/// marked `owner`: only when it carries that very mark.
pub fn may_delete(
    what: &str,
    found: Option<&str>,
    owner: &str,
    address: &str,
) -> Result<(), ProviderError> {
    match found {
        Some(found) if found == owner => Ok(()),
        None => Err(ProviderError::Conflict(format!(
            "{what} carries no trails mark, so it is left in place: someone else made it, or              trails recorded it before it marked what it makes. If it is this environment's,              `trails apply` marks it (then delete again); otherwise `trails state rm {address}`              forgets it"
        ))),
        Some(found) => Err(ProviderError::Conflict(format!(
            "{what} belongs to {found}, not {owner}, so it is left in place; `trails state rm              {address}` forgets it"
        ))),
    }
}

/// What a pure [`Provider::read`] found where the resource lives.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    /// Nothing is there any more.
    Gone,
    /// It is there, with these attributes in the shape its type's spec declares: only the
    /// attributes the read can see (an empty map: it exists, its settings are not read).
    Live(Map<String, Value>),
}

/// Creates, adopts, updates and deletes resources of one type.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Reads the resource recorded at `address` from where it lives, without changing
    /// anything: only Describe/Get/List/Head calls. `None` for a type read back through
    /// [`Provider::observe`] instead.
    async fn read(
        &self,
        _address: &str,
        _recorded: &Recorded,
    ) -> Result<Option<Read>, ProviderError> {
        Ok(None)
    }
    /// The attributes of this type as they are compared for drift: what the API cannot
    /// tell apart is written one way (a security group's rules one per source, say).
    fn canonical(&self, attributes: Map<String, Value>) -> Map<String, Value> {
        attributes
    }
    /// What differs between `recorded` attributes and those a read found `live`, both in
    /// their canonical form: what `diff` reports and `verify` fails on.
    fn differences(&self, recorded: Map<String, Value>, live: Map<String, Value>) -> Vec<String> {
        compare::attribute_differences(&self.canonical(recorded), &self.canonical(live))
    }
    /// Finds a resource this environment created at `address` but did not record (an apply
    /// interrupted between the create call and the state write), so that it is adopted
    /// instead of created twice.
    async fn find(&self, address: &str, desired: &Value) -> Result<Option<Applied>, ProviderError>;
    /// [`Provider::find`] for a create an earlier run started and never recorded (its
    /// [`Intent`] is in the state): what exists under the resource's name and was made after
    /// the intent is this environment's own even without the tags that prove ownership (a run
    /// killed between the create call and the tagging), and is adopted and finished.
    async fn find_intended(
        &self,
        address: &str,
        desired: &Value,
        _intent: &Intent,
    ) -> Result<Option<Applied>, ProviderError> {
        self.find(address, desired).await
    }
    /// Deletes what an interrupted create made before the resource itself (which
    /// [`Provider::find_intended`] did not find): a Redis group's token secret, say. Only what
    /// carries this environment's mark.
    async fn discard_interrupted(
        &self,
        _address: &str,
        _desired: &Value,
    ) -> Result<(), ProviderError> {
        Ok(())
    }
    /// Creates the resource and waits until it is usable. `token` is the same for every
    /// attempt of this create (its [`Intent`]'s), for APIs that take an idempotency token:
    /// a retried call then makes nothing twice.
    async fn create(
        &self,
        address: &str,
        desired: &Value,
        token: &str,
    ) -> Result<Applied, ProviderError>;
    /// Adopts `id`, which exists without trails' mark, as the resource at `address`
    /// (`trails import`): marks it as this environment's and brings it to `desired`. Refuses
    /// what another environment marked, and an `id` that is not what the blueprint names.
    async fn import(
        &self,
        address: &str,
        _desired: &Value,
        _id: &str,
    ) -> Result<Applied, ProviderError> {
        Err(ProviderError::Invalid(format!(
            "{address}: trails cannot import this type yet"
        )))
    }
    /// Changes an existing resource in place.
    async fn update(
        &self,
        address: &str,
        recorded: &Recorded,
        desired: &Value,
    ) -> Result<Applied, ProviderError>;
    /// Deletes the resource and waits until it is gone; a resource already gone is success.
    async fn delete(&self, address: &str, recorded: &Recorded) -> Result<(), ProviderError>;
    /// Reads the resource back and says whether it is still as recorded. Only providers whose
    /// update brings back a resource deleted outside trails implement it: drift is repaired
    /// by an update.
    async fn observe(
        &self,
        _address: &str,
        _recorded: &Recorded,
    ) -> Result<Observed, ProviderError> {
        Ok(Observed::NotChecked)
    }
}

/// A provider whose one idempotent call creates, adopts and updates (an `upgrade --install`,
/// a PUT, `IF NOT EXISTS` and recorded migrations): creating again adopts what an interrupted
/// run left, so there is nothing to find first, and an update is the same call.
#[async_trait]
pub trait Converging: Send + Sync {
    /// Brings the resource to `desired`: what exists now is taken over as `takeover` allows
    /// (types that carry no mark yet, OpenSearch templates and policies and ClickHouse
    /// databases, take over whatever exists).
    async fn converge(&self, desired: &Value, takeover: Takeover)
    -> Result<Applied, ProviderError>;
    /// The name the blueprint gives what `desired` makes, as `trails import` takes it.
    fn id_of(&self, desired: &Value) -> Result<String, ProviderError>;
    /// See [`Provider::find_intended`]: for a type whose mark is not set in the same call that
    /// makes it.
    async fn find_intended(&self, _desired: &Value) -> Result<Option<Applied>, ProviderError> {
        Ok(None)
    }
    /// Deletes the resource at `address`; one already gone is success.
    async fn remove(&self, address: &str, recorded: &Recorded) -> Result<(), ProviderError>;
    /// Reads the resource back (see [`Provider::observe`]).
    async fn observe(&self, _recorded: &Recorded) -> Result<Observed, ProviderError> {
        Ok(Observed::NotChecked)
    }
}

#[async_trait]
impl<T: Converging> Provider for T {
    async fn find(
        &self,
        _address: &str,
        _desired: &Value,
    ) -> Result<Option<Applied>, ProviderError> {
        Ok(None)
    }

    async fn find_intended(
        &self,
        _address: &str,
        desired: &Value,
        _intent: &Intent,
    ) -> Result<Option<Applied>, ProviderError> {
        Converging::find_intended(self, desired).await
    }

    async fn create(
        &self,
        _address: &str,
        desired: &Value,
        _token: &str,
    ) -> Result<Applied, ProviderError> {
        self.converge(desired, Takeover::Marked).await
    }

    async fn import(
        &self,
        address: &str,
        desired: &Value,
        id: &str,
    ) -> Result<Applied, ProviderError> {
        let named = self.id_of(desired)?;
        if named != id {
            return Err(ProviderError::Invalid(format!(
                "{address} is `{named}` in the blueprint, not `{id}`"
            )));
        }
        self.converge(desired, Takeover::Unmarked).await
    }

    async fn update(
        &self,
        _address: &str,
        _recorded: &Recorded,
        desired: &Value,
    ) -> Result<Applied, ProviderError> {
        // A recorded resource is this environment's: one recorded before trails marked what
        // it makes gets its mark now.
        self.converge(desired, Takeover::Unmarked).await
    }

    async fn delete(&self, address: &str, recorded: &Recorded) -> Result<(), ProviderError> {
        self.remove(address, recorded).await
    }

    async fn observe(
        &self,
        _address: &str,
        recorded: &Recorded,
    ) -> Result<Observed, ProviderError> {
        Converging::observe(self, recorded).await
    }
}

/// Providers by resource type.
pub struct Providers {
    by_kind: HashMap<&'static str, Box<dyn Provider>>,
    secrets: secrets::Secrets,
}

impl Providers {
    /// Every provider, sharing one AWS context and one (lazily connected) cluster.
    /// `endpoints` are other ways into the data plane (`postgres.NAME` to a URL); `deleting`
    /// the addresses the run deletes.
    pub fn new(
        aws: aws::Context,
        cluster: kube::Settings,
        endpoints: std::collections::BTreeMap<String, String>,
        deleting: &std::collections::BTreeSet<String>,
    ) -> Self {
        let mut by_kind: HashMap<&'static str, Box<dyn Provider>> = HashMap::new();
        aws::register(&aws, &mut by_kind);
        kafka::register(&mut by_kind);
        postgres::register(
            &cluster.templates_dir,
            &endpoints,
            deleting,
            &aws.secrets,
            &mut by_kind,
        );
        opensearch::register(&cluster.templates_dir, &endpoints, deleting, &mut by_kind);
        clickhouse::register(&cluster.templates_dir, &endpoints, deleting, &mut by_kind);
        let cluster = kube::Cluster::new(cluster, aws.clone());
        kube::register(&cluster, &mut by_kind);
        helm::register(&cluster, &mut by_kind);
        Self {
            by_kind,
            secrets: secrets::Secrets::new(aws.secrets.clone()),
        }
    }

    /// Where sensitive outputs are read from when a change needs their values.
    pub fn secrets(&self) -> &secrets::Secrets {
        &self.secrets
    }

    /// The provider of a type, if trails can apply it yet.
    pub fn get(&self, kind: &str) -> Option<&dyn Provider> {
        self.by_kind.get(kind).map(|provider| provider.as_ref())
    }
}

/// Resource types `apply` can execute, for preflight messages and docs.
pub fn supported() -> Vec<&'static str> {
    aws::supported()
        .chain([
            "kafka.topic",
            "postgres.database",
            "opensearch.index_template",
            "opensearch.ism_policy",
            "clickhouse.database",
        ])
        .chain(kube::SUPPORTED.iter().copied())
        .chain(["helm.release"])
        .collect()
}

/// Checks, before any change runs, the tools the changed types need: a plan that installs or
/// removes Helm releases needs a working, recent enough `helm`.
pub async fn check_tools<'a>(
    kinds: impl IntoIterator<Item = &'a str>,
) -> Result<(), ProviderError> {
    let kinds: std::collections::BTreeSet<&str> = kinds.into_iter().collect();
    if kinds.contains("helm.release") {
        helm::check_version().await?;
    }
    Ok(())
}

/// Deserializes desired attributes into a type's spec.
pub fn spec<T: serde::de::DeserializeOwned>(desired: &Value) -> Result<T, ProviderError> {
    serde_json::from_value(desired.clone())
        .map_err(|error| ProviderError::Invalid(error.to_string()))
}

/// The attributes a resource was recorded with, as its type's spec.
pub fn recorded_spec<T: serde::de::DeserializeOwned>(
    recorded: &Recorded,
) -> Result<T, ProviderError> {
    spec(&Value::Object(recorded.attributes.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_own_mark_is_taken_over_or_deleted_and_unmarked_only_when_allowed() {
        let owner = "platform/dev/k8s.namespace.web";
        let other = "platform/prod/k8s.namespace.web";
        assert!(may_take_over("ns", Some(owner), owner, Takeover::Marked, "web").is_ok());
        let refused = may_take_over("ns", None, owner, Takeover::Marked, "web")
            .expect_err("unmarked is refused on create");
        assert!(
            refused
                .to_string()
                .contains("trails import -e dev k8s.namespace.web web"),
            "{refused}"
        );
        assert!(may_take_over("ns", None, owner, Takeover::Unmarked, "web").is_ok());
        for takeover in [Takeover::Marked, Takeover::Unmarked] {
            let refused = may_take_over("ns", Some(other), owner, takeover, "web")
                .expect_err("another environment's is never taken over");
            assert!(refused.to_string().contains(other), "{refused}");
        }
        assert!(may_delete("ns", Some(owner), owner, "k8s.namespace.web").is_ok());
        assert!(may_delete("ns", None, owner, "k8s.namespace.web").is_err());
        assert!(may_delete("ns", Some(other), owner, "k8s.namespace.web").is_err());
    }
}
