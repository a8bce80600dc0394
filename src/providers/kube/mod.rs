//! In-cluster resources through the Kubernetes API (kube-rs): namespaces, storage classes, role
//! bindings, secrets and templated manifests.
//!
//! Every object is applied with server-side apply under the `trails` field manager, so applying
//! is idempotent (which is also how an interrupted run resumes) and fields other managers own are
//! left alone. Each resource records the objects it applied, so an edit that drops an object from
//! a template deletes it, and destroy deletes exactly those. Kinds are resolved by discovery, and
//! a kind that is not served yet (a CRD applied a moment ago) is asked for again until it is.

pub mod connect;
pub mod objects;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
};
use kube::discovery::Scope;
use serde_json::{Map, Value, json};
use tokio::sync::OnceCell;

pub use connect::{Target, eks_token};
use objects::ObjectRef;

use super::{Applied, Observed, Provider, ProviderError, Takeover, aws, may_delete, may_take_over};
use crate::state::Recorded;

/// The field manager that owns what trails applies.
pub const FIELD_MANAGER: &str = "trails";

/// Resource types the Kubernetes provider applies.
pub const SUPPORTED: &[&str] = &[
    "k8s.namespace",
    "k8s.storage_class",
    "k8s.role_binding",
    "k8s.secret",
    "k8s.manifest",
];

/// Where the cluster is and how long to wait for it.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Which cluster.
    pub target: Target,
    /// Directory of the blueprint's templates.
    pub templates_dir: PathBuf,
    /// Longest wait for an object to become ready or to be gone.
    pub timeout: Duration,
}

impl Settings {
    /// The blueprint's cluster: the kubeconfig context it names, else the EKS cluster it
    /// declares, else the kubeconfig's current context.
    pub fn for_blueprint(loaded: &crate::blueprint::Loaded, timeout: Duration) -> Self {
        let context = loaded
            .document
            .kubernetes
            .as_ref()
            .and_then(|k| k.context.clone());
        let target = match (context, &loaded.document.eks) {
            (Some(context), _) => Target::Context(Some(context)),
            (None, Some(_)) => Target::Eks(crate::blueprint::naming::prefix(loaded)),
            (None, None) => Target::Context(None),
        };
        Self {
            target,
            templates_dir: loaded.templates_dir.clone(),
            timeout,
        }
    }
}

/// A lazily connected cluster shared by every in-cluster provider: the EKS cluster may not
/// exist when the apply starts.
pub struct Cluster {
    settings: Settings,
    aws: aws::Context,
    client: OnceCell<kube::Client>,
}

impl Cluster {
    /// A cluster that connects on first use.
    pub fn new(settings: Settings, aws: aws::Context) -> Arc<Self> {
        Arc::new(Self {
            settings,
            aws,
            client: OnceCell::new(),
        })
    }

    /// Settings it was made with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The client, connecting on first use.
    pub async fn client(&self) -> Result<kube::Client, ProviderError> {
        self.client
            .get_or_try_init(|| connect::client(&self.settings.target, &self.aws))
            .await
            .cloned()
    }

    /// A kubeconfig for tools that need one (helm), and the context to use in it.
    pub async fn kubeconfig(&self) -> Result<connect::Kubeconfig, ProviderError> {
        connect::kubeconfig(&self.settings.target, &self.aws).await
    }

    /// The API of one object's kind, waiting until discovery serves the kind; `None` when the
    /// kind is not served and `wait` is false.
    async fn api(
        &self,
        object: &ObjectRef,
        wait: bool,
    ) -> Result<Option<Api<DynamicObject>>, ProviderError> {
        let client = self.client().await?;
        let gvk = object.gvk();
        let started = Instant::now();
        let (resource, scope) = loop {
            match kube::discovery::pinned_kind(&client, &gvk).await {
                Ok((resource, capabilities)) => break (resource, capabilities.scope),
                Err(error) if !wait && not_served(&error) => return Ok(None),
                Err(error) if started.elapsed() < self.settings.timeout && not_served(&error) => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(error) if not_served(&error) => {
                    return Err(ProviderError::Timeout {
                        what: format!(
                            "the API server to serve {} {} (is its CRD installed?)",
                            object.api_version, object.kind
                        ),
                        seconds: self.settings.timeout.as_secs(),
                    });
                }
                Err(error) => return Err(ProviderError::api("API discovery", error)),
            }
        };
        Ok(Some(scoped(client, &resource, scope, object)))
    }

    /// Applies one object and waits until it is ready.
    async fn apply(&self, object: &ObjectRef, body: &Value) -> Result<(), ProviderError> {
        let api = self.api(object, true).await?.ok_or_else(|| {
            ProviderError::Invalid(format!(
                "{} {} is not served",
                object.api_version, object.kind
            ))
        })?;
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let patch = Patch::Apply(body);
        let attempt = || api.patch(&object.name, &params, &patch);
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(250))
                    .with_max_delay(Duration::from_secs(5))
                    .with_total_delay(Some(self.settings.timeout))
                    .without_max_times()
                    .with_jitter(),
            )
            // A server error is passing: an operator's admission webhook that is not up yet
            // right after its chart (cert-manager's), an API server restarting. What the server
            // refused on its merits (4xx) it will refuse again.
            .when(|error| matches!(error, kube::Error::Api(status) if status.code >= 500))
            .notify(|error, after| {
                tracing::info!(%object, %error, "server error on apply; retrying in {after:?}");
            })
            .await
            .map_err(|error| {
                ProviderError::api(&format!("server-side apply of {object}"), error)
            })?;
        self.wait_ready(&api, object).await
    }

    /// Waits until a Deployment has its replicas ready, a CRD is established, a namespace
    /// is active; other kinds are ready when applied.
    async fn wait_ready(
        &self,
        api: &Api<DynamicObject>,
        object: &ObjectRef,
    ) -> Result<(), ProviderError> {
        let started = Instant::now();
        loop {
            let live = api
                .get(&object.name)
                .await
                .map_err(|error| ProviderError::api(&format!("read {object}"), error))?;
            let live = serde_json::to_value(&live)
                .map_err(|error| ProviderError::Invalid(error.to_string()))?;
            let waiting = objects::not_ready(&object.kind, &live);
            let Some(reason) = waiting else {
                return Ok(());
            };
            if started.elapsed() >= self.settings.timeout {
                return Err(ProviderError::Timeout {
                    what: format!("{object} to be ready ({reason})"),
                    seconds: self.settings.timeout.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The live object, or `None` when it (or its kind) is gone.
    async fn read(&self, object: &ObjectRef) -> Result<Option<Value>, ProviderError> {
        let Some(api) = self.api(object, false).await? else {
            return Ok(None);
        };
        match api.get(&object.name).await {
            Ok(live) => serde_json::to_value(&live)
                .map(Some)
                .map_err(|error| ProviderError::Invalid(error.to_string())),
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(ProviderError::api(&format!("read {object}"), error)),
        }
    }

    /// Deletes one object and waits until it is gone; gone already is fine.
    async fn delete(&self, object: &ObjectRef) -> Result<(), ProviderError> {
        // A kind no longer served (its CRD went first) has no objects left to delete.
        let Some(api) = self.api(object, false).await? else {
            return Ok(());
        };
        match api.delete(&object.name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(error) if is_not_found(&error) => return Ok(()),
            Err(error) => return Err(ProviderError::api(&format!("delete {object}"), error)),
        }
        let started = Instant::now();
        loop {
            let live = match api.get(&object.name).await {
                Ok(live) => live,
                Err(error) if is_not_found(&error) => return Ok(()),
                Err(error) => return Err(ProviderError::api(&format!("read {object}"), error)),
            };
            if started.elapsed() >= self.settings.timeout {
                let live = serde_json::to_value(&live).unwrap_or(Value::Null);
                return Err(ProviderError::Timeout {
                    what: format!(
                        "{object} to be deleted: it is still terminating, {}. Remove what \
                         holds it or wait, then run the command again",
                        objects::what_holds(&live)
                    ),
                    seconds: self.settings.timeout.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn scoped(
    client: kube::Client,
    resource: &ApiResource,
    scope: Scope,
    object: &ObjectRef,
) -> Api<DynamicObject> {
    match (scope, &object.namespace) {
        (Scope::Namespaced, Some(namespace)) => Api::namespaced_with(client, namespace, resource),
        (Scope::Namespaced, None) => Api::default_namespaced_with(client, resource),
        (Scope::Cluster, _) => Api::all_with(client, resource),
    }
}

fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(response) if response.code == 404)
}

/// Discovery's answer for a kind or group the server does not serve (yet).
fn not_served(error: &kube::Error) -> bool {
    is_not_found(error) || matches!(error, kube::Error::Discovery(_))
}

/// Registers the in-cluster providers.
pub fn register(cluster: &Arc<Cluster>, by_kind: &mut HashMap<&'static str, Box<dyn Provider>>) {
    for kind in SUPPORTED {
        by_kind.insert(
            kind,
            Box::new(ObjectsProvider {
                kind,
                cluster: Arc::clone(cluster),
            }),
        );
    }
}

/// Applies the objects one resource stands for.
struct ObjectsProvider {
    kind: &'static str,
    cluster: Arc<Cluster>,
}

impl ObjectsProvider {
    /// Applies the objects of `desired`: one that exists already is taken over only if it
    /// carries this resource's mark, if it is one of the `previous` objects the resource
    /// recorded, or as `takeover` allows. Every object is checked before any is applied.
    async fn converge(
        &self,
        address: &str,
        desired: &Value,
        previous: &[ObjectRef],
        takeover: Takeover,
    ) -> Result<Applied, ProviderError> {
        let wanted = objects::build(self.kind, address, desired, self.cluster.settings())?;
        let owner = objects::owner(desired);
        for (object, _) in &wanted {
            if let Some(live) = self.cluster.read(object).await? {
                let takeover = if previous.contains(object) {
                    Takeover::Unmarked
                } else {
                    takeover
                };
                may_take_over(
                    &object.to_string(),
                    objects::mark_of(&live),
                    owner,
                    takeover,
                    &object.name,
                )?;
            }
        }
        for (object, body) in &wanted {
            self.cluster.apply(object, body).await?;
        }
        // Objects the resource no longer renders go, last first.
        for stale in previous.iter().rev() {
            if !wanted.iter().any(|(object, _)| object == stale) {
                self.delete_own(stale, owner, address).await?;
            }
        }
        let refs: Vec<&ObjectRef> = wanted.iter().map(|(object, _)| object).collect();
        let mut outputs = Map::new();
        if let Some((first, _)) = wanted.first() {
            outputs.insert("name".into(), json!(first.name));
        }
        outputs.insert(
            "objects".into(),
            Value::Array(refs.iter().map(|r| json!(r.to_string())).collect()),
        );
        Ok(Applied {
            id: refs
                .first()
                .map(|r| r.to_string())
                .unwrap_or_else(|| address.to_string()),
            outputs,
        })
    }
}

impl ObjectsProvider {
    /// Deletes `object` if it carries the mark `owner`; one already gone is fine.
    async fn delete_own(
        &self,
        object: &ObjectRef,
        owner: &str,
        address: &str,
    ) -> Result<(), ProviderError> {
        let Some(live) = self.cluster.read(object).await? else {
            return Ok(());
        };
        may_delete(&object.to_string(), objects::mark_of(&live), owner, address)?;
        self.cluster.delete(object).await
    }
}

/// The objects a recorded resource applied.
fn recorded_objects(recorded: &Recorded) -> Result<Vec<ObjectRef>, ProviderError> {
    let Some(list) = recorded.outputs.get("objects").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    list.iter()
        .map(|item| {
            item.as_str()
                .ok_or_else(|| {
                    ProviderError::Invalid(format!("recorded object {item} is not text"))
                })
                .and_then(ObjectRef::parse)
        })
        .collect()
}

#[async_trait]
impl Provider for ObjectsProvider {
    async fn find(
        &self,
        _address: &str,
        _desired: &Value,
    ) -> Result<Option<Applied>, ProviderError> {
        // Server-side apply adopts what an interrupted run left, so create does the finding.
        Ok(None)
    }

    async fn create(
        &self,
        address: &str,
        desired: &Value,
        _token: &str,
    ) -> Result<Applied, ProviderError> {
        self.converge(address, desired, &[], Takeover::Marked).await
    }

    /// `id` is the name of the resource's first object (a namespace's name, say), or that
    /// object as the state records it (`v1 Namespace web`).
    async fn import(
        &self,
        address: &str,
        desired: &Value,
        id: &str,
    ) -> Result<Applied, ProviderError> {
        let wanted = objects::build(self.kind, address, desired, self.cluster.settings())?;
        let Some((first, _)) = wanted.first() else {
            return Err(ProviderError::Invalid(format!("{address} makes no object")));
        };
        if first.name != id && first.to_string() != id {
            return Err(ProviderError::Invalid(format!(
                "{address} is `{}` in the blueprint, not `{id}`",
                first.name
            )));
        }
        self.converge(address, desired, &[], Takeover::Unmarked)
            .await
    }

    async fn update(
        &self,
        address: &str,
        recorded: &Recorded,
        desired: &Value,
    ) -> Result<Applied, ProviderError> {
        self.converge(
            address,
            desired,
            &recorded_objects(recorded)?,
            Takeover::Marked,
        )
        .await
    }

    /// Deletes only what carries the recorded mark; one without it is left, and said.
    async fn delete(&self, address: &str, recorded: &Recorded) -> Result<(), ProviderError> {
        let owner = recorded
            .attributes
            .get("owner")
            .and_then(Value::as_str)
            .unwrap_or_default();
        for object in recorded_objects(recorded)?.iter().rev() {
            self.delete_own(object, owner, address).await?;
        }
        Ok(())
    }

    /// Each applied object read back: gone, being deleted, or a field trails set that has
    /// another value now. An update applies them all again, which repairs any of it.
    async fn observe(&self, address: &str, recorded: &Recorded) -> Result<Observed, ProviderError> {
        let applied = recorded_objects(recorded)?;
        let expected = objects::expected(
            self.kind,
            address,
            &recorded.attributes,
            self.cluster.settings(),
        );
        let mut differences = Vec::new();
        let mut gone = 0;
        for object in &applied {
            let Some(live) = self.cluster.read(object).await? else {
                gone += 1;
                differences.push(format!("{object}: deleted outside trails"));
                continue;
            };
            if live.pointer("/metadata/deletionTimestamp").is_some() {
                differences.push(format!("{object}: being deleted outside trails"));
                continue;
            }
            let body = expected
                .iter()
                .flatten()
                .find(|(built, _)| built == object)
                .map(|(_, body)| body);
            if let Some(body) = body {
                differences.extend(
                    objects::differences(body, &live, FIELD_MANAGER)
                        .into_iter()
                        .map(|difference| format!("{object}: {difference}")),
                );
            }
        }
        Ok(if !applied.is_empty() && gone == applied.len() {
            Observed::Gone
        } else {
            Observed::from_differences(differences)
        })
    }
}

impl ObjectRef {
    fn gvk(&self) -> GroupVersionKind {
        let (group, version) = match self.api_version.split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", self.api_version.as_str()),
        };
        GroupVersionKind::gvk(group, version, &self.kind)
    }
}
