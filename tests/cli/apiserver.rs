//! A Kubernetes API-server test double: no real kube-apiserver can be installed on these
//! machines. It follows the documented behaviour trails relies on, over real HTTP:
//!
//! - discovery: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/GROUP/VERSION`;
//! - server-side apply (`PATCH` with `application/apply-patch+yaml`, `fieldManager`, `force`):
//!   creates or updates; fields the same manager applied before and now omits are removed,
//!   fields of other managers kept; lists Kubernetes declares as maps (`containers`, `env`,
//!   `volumes` by `name`, container `ports` by `containerPort`, Service `ports` by `port`,
//!   `volumeMounts` by `mountPath`) merge item by item, each item owned field by field, so an
//!   env var another manager added stays (the "Merge strategy" section of the server-side apply
//!   documentation); other lists are atomic, replaced whole; a field another manager (an apply, or a `PUT` as
//!   `kubectl-edit`) set to a different value is a 409 conflict unless `force=true`, which
//!   takes it over; `uid`, `resourceVersion` (bumped only on a real change),
//!   `generation` (bumped on a spec change), `managedFields` with each manager's fields in
//!   `fieldsV1` form (`f:`, `k:{…}`, `.`), `Apply` or `Update` (a `PUT`, labels and
//!   annotations included);
//! - namespaced objects need their namespace (404), and a terminating one takes no new
//!   objects (403);
//! - `GET` one object, `LIST` with `labelSelector` (`k=v`, `k!=v`, `k`, `!k`), `PUT` with
//!   optimistic concurrency (409 on a stale `resourceVersion`);
//! - `DELETE`: objects with finalizers stay with a `deletionTimestamp` until the finalizers are
//!   removed; a namespace turns `Terminating`, its content is deleted, and it goes when empty,
//!   reporting `NamespaceContentRemaining`/`NamespaceFinalizersRemaining` meanwhile;
//! - CRDs: their kinds become discoverable, and the CRD `Established`, a moment after apply;
//!   deleting one deletes every object of its kind and stops serving it;
//!   for 1.5 s more, applying an object of the kind fails with the 500 `InternalError` of an
//!   admission webhook that is not up yet ("failed calling webhook"), as cert-manager's does;
//! - Deployments: a controller reports `observedGeneration` and ready replicas a moment later;
//!   one whose image cannot be pulled (its name contains `unpullable`) never has a ready
//!   replica, as with ImagePullBackOff, and says so in its `Available` condition.
//!
//! - the kubeconfig's bearer token is required (401 without it);
//! - an apply patch of a built-in kind with a field its schema does not declare (or a value
//!   of the wrong type) is a 400, as server-side apply always refuses one;
//! - a gate can hold mutating requests after the first N (kill-point tests): a held request
//!   runs to its end once the gate opens, even if its caller died.
//!
//! Every create, update and delete is appended to an event log file, which the fake helm
//! writes to as well, so a test can check the order of everything an apply did.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// The bearer token of the kubeconfig the double hands out; any other is refused (401).
pub const TOKEN: &str = "not-a-secret";

/// How long a CRD takes to be served and a Deployment to become ready.
const CONTROLLER_DELAY: Duration = Duration::from_millis(300);

/// How long after a CRD is served its operator's admission webhook still refuses connections
/// (cert-manager's is the known case: its first Certificate or ClusterIssuer gets a 500).
const WEBHOOK_DELAY: Duration = Duration::from_millis(1500);

#[derive(Clone, Debug)]
struct ResourceType {
    group: String,
    version: String,
    plural: String,
    kind: String,
    namespaced: bool,
}

impl ResourceType {
    fn new(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            kind: kind.into(),
            namespaced,
        }
    }

    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

fn built_in() -> Vec<ResourceType> {
    let t = ResourceType::new;
    vec![
        t("", "v1", "namespaces", "Namespace", false),
        t("", "v1", "nodes", "Node", false),
        t("", "v1", "secrets", "Secret", true),
        t("", "v1", "configmaps", "ConfigMap", true),
        t("", "v1", "services", "Service", true),
        t("", "v1", "serviceaccounts", "ServiceAccount", true),
        t("apps", "v1", "deployments", "Deployment", true),
        t("apps", "v1", "statefulsets", "StatefulSet", true),
        t(
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "RoleBinding",
            true,
        ),
        t(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
        ),
        t(
            "storage.k8s.io",
            "v1",
            "storageclasses",
            "StorageClass",
            false,
        ),
        t(
            "autoscaling",
            "v2",
            "horizontalpodautoscalers",
            "HorizontalPodAutoscaler",
            true,
        ),
        t(
            "policy",
            "v1",
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            true,
        ),
        t("networking.k8s.io", "v1", "ingresses", "Ingress", true),
        t(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
        ),
    ]
}

/// One stored object and what the controllers need to know about it.
#[derive(Clone, Debug)]
struct Stored {
    object: Value,
    /// Last configuration each field manager applied.
    applied: BTreeMap<String, Value>,
    /// The manager of each field set by apply or update: a path to a scalar or an atomic list,
    /// where an item of a list-map is `[KEY=VALUE]` (see [`list_key`]).
    owners: BTreeMap<String, String>,
    /// When the object last changed (controllers act a moment later).
    changed: Instant,
}

/// Key: (group, plural, namespace or "", name).
type Key = (String, String, String, String);

struct Inner {
    types: Vec<ResourceType>,
    /// CRD types not served yet, with when they will be.
    pending_types: Vec<(ResourceType, Instant)>,
    /// When each custom kind's admission webhook starts answering, by (group, kind).
    webhooks: BTreeMap<(String, String), Instant>,
    objects: BTreeMap<Key, Stored>,
    resource_version: u64,
    events: PathBuf,
    gate: Gate,
}

/// Holds mutating requests after a number of them, for kill-point tests: a held request waits
/// until the gate opens and then runs to the end even if its caller died, as a request that
/// reached a real API server does.
#[derive(Default)]
struct Gate {
    /// Mutating requests let through before the gate holds the rest; `None` when open.
    allowed: Option<usize>,
    /// Mutating requests seen since the gate was last set.
    seen: usize,
    /// Requests held and not yet run.
    held: usize,
}

/// The running double.
pub struct ApiServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    _runtime: tokio::runtime::Runtime,
}

impl ApiServer {
    /// Starts on a free loopback port; events are appended to `events`.
    pub fn start(events: PathBuf) -> Self {
        let mut objects = BTreeMap::new();
        for name in ["default", "kube-system", "kube-public"] {
            let object = json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "uid": uuid::Uuid::new_v4().to_string(), "resourceVersion": "1"},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
            objects.insert(
                (
                    String::new(),
                    "namespaces".into(),
                    String::new(),
                    name.into(),
                ),
                Stored {
                    object,
                    applied: BTreeMap::new(),
                    owners: BTreeMap::new(),
                    changed: Instant::now(),
                },
            );
        }
        let inner = Arc::new(Mutex::new(Inner {
            types: built_in(),
            pending_types: Vec::new(),
            webhooks: BTreeMap::new(),
            objects,
            resource_version: 1,
            events,
            gate: Gate::default(),
        }));
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&inner));
        let (runtime, url) = super::services::serve(app, "API-server double", 2);
        let controllers = Arc::clone(&inner);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                reconcile(&mut controllers.lock().expect("state lock"));
            }
        });
        Self {
            url,
            inner,
            _runtime: runtime,
        }
    }

    /// A kubeconfig with one context, `double`, pointing here.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: double\nclusters:\n- name: double\n  cluster:\n    server: {}\nusers:\n- name: tester\n  user:\n    token: {TOKEN}\ncontexts:\n- name: double\n  context:\n    cluster: double\n    user: tester\n",
            self.url
        )
    }

    /// A copy of one object, if it exists.
    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let inner = self.inner.lock().expect("state lock");
        let found = inner
            .types
            .iter()
            .find(|t| t.api_version() == api_version && t.kind == kind)?;
        let key = (
            found.group.clone(),
            found.plural.clone(),
            namespace.unwrap_or_default().to_string(),
            name.to_string(),
        );
        inner.objects.get(&key).map(|stored| stored.object.clone())
    }

    /// A node registering or reporting its status, as a kubelet does: `labels` and a `Ready`
    /// condition that is `True` or `False` (with reason `KubeletNotReady`).
    pub fn node(&self, name: &str, labels: &[(&str, &str)], ready: bool) {
        let mut inner = self.inner.lock().expect("state lock");
        inner.resource_version += 1;
        let labels: Map<String, Value> = labels
            .iter()
            .map(|(key, value)| (key.to_string(), json!(value)))
            .collect();
        let condition = if ready {
            json!({"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status"})
        } else {
            json!({"type": "Ready", "status": "False", "reason": "KubeletNotReady",
                "message": "container runtime network not ready"})
        };
        let object = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "uid": uuid::Uuid::new_v4().to_string(),
                "resourceVersion": inner.resource_version.to_string(), "labels": labels},
            "status": {"conditions": [condition]}});
        inner.objects.insert(
            (String::new(), "nodes".into(), String::new(), name.into()),
            Stored {
                object,
                applied: BTreeMap::new(),
                owners: BTreeMap::new(),
                changed: Instant::now(),
            },
        );
    }

    /// Holds every mutating request after the next `allowed` ones (see [`Gate`]).
    pub fn close_gate_after(&self, allowed: usize) {
        let mut inner = self.inner.lock().expect("state lock");
        inner.gate = Gate {
            allowed: Some(allowed),
            ..Gate::default()
        };
    }

    /// Requests held at the gate now.
    pub fn held(&self) -> usize {
        self.inner.lock().expect("state lock").gate.held
    }

    /// Mutating requests seen since the gate was last set.
    pub fn mutations(&self) -> usize {
        self.inner.lock().expect("state lock").gate.seen
    }

    /// Opens the gate and returns once every held request has run.
    pub fn open_gate(&self) {
        self.inner.lock().expect("state lock").gate.allowed = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.held() > 0 {
            assert!(Instant::now() < deadline, "held requests did not run");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `api_version kind namespace/name` of every object, sorted.
    pub fn inventory(&self) -> Vec<String> {
        let inner = self.inner.lock().expect("state lock");
        let mut all: Vec<String> = inner
            .objects
            .values()
            .map(|stored| describe(&stored.object))
            .collect();
        all.sort();
        all
    }
}

fn describe(object: &Value) -> String {
    let text = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let namespace = text("/metadata/namespace");
    let name = text("/metadata/name");
    let object_name = if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}/{name}")
    };
    format!("{} {} {object_name}", text("/apiVersion"), text("/kind"))
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16()});
    (code, axum::Json(body)).into_response()
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// What a request path names.
struct Target {
    resource: ResourceType,
    namespace: Option<String>,
    name: Option<String>,
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Every request carries the kubeconfig's bearer token, as a real server requires.
    let bearer = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok());
    if bearer != Some(&format!("Bearer {TOKEN}")) {
        return status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized".to_string(),
        );
    }
    if !matches!(method, Method::PATCH | Method::PUT | Method::DELETE) {
        return serve(
            &mut inner.lock().expect("state lock"),
            method,
            uri,
            query,
            headers,
            body,
        );
    }
    // A request that reached the server runs to the end even if its caller goes away.
    let task = tokio::spawn(async move {
        let mut holding = false;
        loop {
            {
                let mut inner = inner.lock().expect("state lock");
                let gate = &mut inner.gate;
                if !holding {
                    gate.seen += 1;
                    holding = gate.allowed.is_some_and(|allowed| gate.seen > allowed);
                    if holding {
                        gate.held += 1;
                    }
                }
                if !holding || gate.allowed.is_none() {
                    let response = serve(&mut inner, method, uri, query, headers, body);
                    if holding {
                        inner.gate.held -= 1;
                    }
                    return response;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    task.await.unwrap_or_else(|error| {
        status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            format!("the double failed: {error}"),
        )
    })
}

fn serve(
    inner: &mut Inner,
    method: Method,
    uri: Uri,
    query: BTreeMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    reconcile(inner);
    let path = uri.path().trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (method.clone(), segments.as_slice()) {
        (Method::GET, ["version"]) => {
            return ok(json!({"major": "1", "minor": "30", "gitVersion": "v1.30.0-double"}));
        }
        (Method::GET, ["api"]) => return ok(json!({"kind": "APIVersions", "versions": ["v1"]})),
        (Method::GET, ["apis"]) => return ok(group_list(inner)),
        (Method::GET, ["api", "v1"]) => return resource_list(inner, "", "v1"),
        (Method::GET, ["apis", group, version]) => return resource_list(inner, group, version),
        _ => {}
    }
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("no route {path}"),
            );
        }
    };
    let find = |plural: &str| {
        inner
            .types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    };
    let target = match rest {
        ["namespaces", namespace, plural, more @ ..]
            if find(plural).is_some_and(|t| t.namespaced) && more.len() <= 1 =>
        {
            Target {
                resource: find(plural).expect("checked"),
                namespace: Some(namespace.to_string()),
                name: more.first().map(|s| s.to_string()),
            }
        }
        [plural, more @ ..] if find(plural).is_some() && more.len() <= 1 => Target {
            resource: find(plural).expect("checked"),
            namespace: None,
            name: more.first().map(|s| s.to_string()),
        },
        _ => {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("the server could not find the requested resource ({path})"),
            );
        }
    };
    match (method, &target.name) {
        (Method::GET, Some(name)) => match inner.objects.get(&key(&target, name)) {
            Some(stored) => ok(stored.object.clone()),
            None => not_found(&target.resource, name),
        },
        (Method::GET, None) => list(inner, &target, query.get("labelSelector")),
        (Method::PATCH, Some(name)) => apply(inner, &target, name, &query, &headers, &body),
        (Method::PUT, Some(name)) => replace(inner, &target, name, &query, &body),
        (Method::DELETE, Some(name)) => delete(inner, &target, name),
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the double does not serve this verb".into(),
        ),
    }
}

fn key(target: &Target, name: &str) -> Key {
    (
        target.resource.group.clone(),
        target.resource.plural.clone(),
        target.namespace.clone().unwrap_or_default(),
        name.to_string(),
    )
}

fn not_found(resource: &ResourceType, name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{} \"{name}\" not found", resource.plural),
    )
}

fn group_list(inner: &Inner) -> Value {
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for t in inner.types.iter().filter(|t| !t.group.is_empty()) {
        let versions = groups.entry(&t.group).or_default();
        if !versions.contains(&t.version.as_str()) {
            versions.push(&t.version);
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(name, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
                .collect();
            json!({"name": name, "versions": versions, "preferredVersion": versions[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(inner: &Inner, group: &str, version: &str) -> Response {
    let resources: Vec<Value> = inner
        .types
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .map(|t| {
            json!({"name": t.plural, "singularName": t.kind.to_lowercase(), "namespaced": t.namespaced,
                "kind": t.kind, "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]})
        })
        .collect();
    if resources.is_empty() {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the server could not find the requested resource ({group}/{version})"),
        );
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    ok(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    )
}

/// Whether an object's labels match a selector such as `a=b,c!=d,e,!f`.
pub fn matches(labels: &Map<String, Value>, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            labels.get(k.trim()).and_then(Value::as_str) != Some(v.trim())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            labels.get(k.trim()).and_then(Value::as_str) == Some(v.trim())
        } else if let Some(k) = term.strip_prefix('!') {
            !labels.contains_key(k.trim())
        } else {
            labels.contains_key(term.trim())
        }
    })
}

fn list(inner: &Inner, target: &Target, selector: Option<&String>) -> Response {
    let empty = Map::new();
    let items: Vec<Value> = inner
        .objects
        .iter()
        .filter(|((group, plural, namespace, _), _)| {
            *group == target.resource.group
                && *plural == target.resource.plural
                && target.namespace.as_ref().is_none_or(|ns| ns == namespace)
        })
        .map(|(_, stored)| &stored.object)
        .filter(|object| {
            let labels = object
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            selector.is_none_or(|selector| matches(labels, selector))
        })
        .cloned()
        .collect();
    ok(
        json!({"kind": format!("{}List", target.resource.kind), "apiVersion": target.resource.api_version(),
        "metadata": {"resourceVersion": inner.resource_version.to_string()}, "items": items}),
    )
}

fn event(inner: &Inner, what: &str, object: &Value) {
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&inner.events)
    {
        let _ = writeln!(file, "kube {what} {}", describe(object));
    }
}

/// Namespaced objects need an active namespace.
fn namespace_refuses(inner: &Inner, target: &Target) -> Option<Response> {
    let namespace = target.namespace.as_ref()?;
    let key = (
        String::new(),
        "namespaces".to_string(),
        String::new(),
        namespace.clone(),
    );
    match inner.objects.get(&key) {
        None => Some(status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("namespaces \"{namespace}\" not found"),
        )),
        Some(stored)
            if stored
                .object
                .pointer("/metadata/deletionTimestamp")
                .is_some() =>
        {
            Some(status(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!(
                    "unable to create new content in namespace {namespace} because it is being terminated"
                ),
            ))
        }
        Some(_) => None,
    }
}

fn apply(
    inner: &mut Inner,
    target: &Target,
    name: &str,
    query: &BTreeMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type != "application/apply-patch+yaml" {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("the double serves only server-side apply patches, not {content_type}"),
        );
    }
    let Some(manager) = query.get("fieldManager") else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "fieldManager is required for apply requests".into(),
        );
    };
    let Ok(config) = serde_json::from_slice::<Value>(body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body is not JSON".into(),
        );
    };
    if config.pointer("/metadata/name").and_then(Value::as_str) != Some(name) {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the name of the object does not match the name on the URL".into(),
        );
    }
    if config.get("apiVersion").and_then(Value::as_str) != Some(&target.resource.api_version())
        || config.get("kind").and_then(Value::as_str) != Some(&target.resource.kind)
    {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "apiVersion and kind must match the URL".into(),
        );
    }
    // An apply patch must fit its kind's schema: an undeclared field is a 400 whatever the
    // fieldValidation (server-side apply needs a typed object; kubernetes#105916, #119178).
    // Built-in kinds are typed from k8s-openapi; custom resources here preserve unknown fields.
    let undeclared = trails::render::unknown_fields(&config);
    if !undeclared.is_empty() {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "failed to create typed patch object ({}, Kind={}) {}/{name}: {}",
                target.resource.api_version(),
                target.resource.kind,
                target.namespace.as_deref().unwrap_or_default(),
                undeclared.join("; ")
            ),
        );
    }
    if let Some(refused) = namespace_refuses(inner, target) {
        return refused;
    }
    let webhook = (target.resource.group.clone(), target.resource.kind.clone());
    if inner
        .webhooks
        .get(&webhook)
        .is_some_and(|ready| Instant::now() < *ready)
    {
        return status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            format!(
                "Internal error occurred: failed calling webhook \"webhook.{}\": failed to call \
                 webhook: Post \"https://webhook.svc:443/validate\": dial tcp 10.0.0.1:443: \
                 connect: connection refused",
                target.resource.group
            ),
        );
    }
    let key = key(target, name);
    let existing = inner.objects.get(&key).cloned();
    let mut stored = match existing {
        Some(stored) => {
            if stored
                .object
                .pointer("/metadata/deletionTimestamp")
                .is_some()
            {
                return status(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!("{} \"{name}\" is being deleted", target.resource.plural),
                );
            }
            stored
        }
        None => {
            let mut metadata = json!({"name": name, "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": "2026-11-23T00:00:00Z", "generation": 0});
            if let Some(namespace) = &target.namespace {
                metadata["namespace"] = json!(namespace);
            }
            let mut object = json!({"apiVersion": target.resource.api_version(),
                "kind": target.resource.kind, "metadata": metadata});
            if target.resource.kind == "Namespace" {
                object["spec"] = json!({"finalizers": ["kubernetes"]});
                object["status"] = json!({"phase": "Active"});
            }
            Stored {
                object,
                applied: BTreeMap::new(),
                owners: BTreeMap::new(),
                changed: Instant::now(),
            }
        }
    };
    // A field another manager set to a different value is a conflict, unless forced: then it
    // changes hands (the Kubernetes server-side apply documentation, "Conflicts").
    let force = query.get("force").map(String::as_str) == Some("true");
    let fields = leaves(&config);
    let conflicts: Vec<String> = fields
        .iter()
        .filter(|(field, value)| {
            !field.starts_with("/metadata/name")
                && stored
                    .owners
                    .get(field)
                    .is_some_and(|owner| owner != manager)
                && lookup(&stored.object, field) != Some(value)
        })
        .map(|(field, _)| {
            format!(
                "conflict with \"{}\": {}",
                stored.owners[field],
                field.replace('/', ".")
            )
        })
        .collect();
    if !conflicts.is_empty() && !force {
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Apply failed with {} conflicts: {}",
                conflicts.len(),
                conflicts.join(", ")
            ),
        );
    }
    if let Some(previous) = stored.applied.get(manager) {
        for (field, _) in leaves(previous) {
            if stored.owners.get(&field) == Some(manager) {
                stored.owners.remove(&field);
            }
        }
    }
    for (field, _) in &fields {
        stored.owners.insert(field.clone(), manager.clone());
    }
    let before = stored.object.clone();
    // Fields this manager applied before and no longer applies are removed (an item of a
    // list-map only when no other manager owns a field in it).
    if let Some(previous) = stored.applied.get(manager) {
        remove_missing(&mut stored.object, previous, &config, "", &stored.owners);
    }
    merge(&mut stored.object, &config, "");
    stored.applied.insert(manager.clone(), config);
    let created = before.pointer("/metadata/resourceVersion").is_none();
    if stored.object != before || created {
        if created || before.get("spec") != stored.object.get("spec") {
            let generation = stored
                .object
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            stored.object["metadata"]["generation"] = json!(generation + 1);
        }
        inner.resource_version += 1;
        stored.object["metadata"]["resourceVersion"] = json!(inner.resource_version.to_string());
        stored.object["metadata"]["managedFields"] = managed_fields(&stored);
        stored.changed = Instant::now();
        event(
            inner,
            if created { "create" } else { "update" },
            &stored.object,
        );
        if target.resource.kind == "CustomResourceDefinition" {
            register_crd(inner, &stored.object);
        }
    }
    let object = stored.object.clone();
    inner.objects.insert(key, stored);
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (code, axum::Json(object)).into_response()
}

/// `metadata.managedFields` as Kubernetes shows it: one entry per manager, `Apply` for one
/// that applied and `Update` for one that only updated, its fields as `fieldsV1` (`f:FIELD`
/// for a field, `k:{"KEY":VALUE}` for an item of a list-map, `.` for the item itself).
fn managed_fields(stored: &Stored) -> Value {
    let mut by_manager: BTreeMap<&str, Value> = BTreeMap::new();
    for (path, manager) in &stored.owners {
        if [
            "/metadata/name",
            "/metadata/namespace",
            "/apiVersion",
            "/kind",
        ]
        .contains(&path.as_str())
        {
            continue;
        }
        let mut node = by_manager.entry(manager).or_insert_with(|| json!({}));
        for segment in path.split('/').skip(1) {
            let name = match segment.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                Some(selector) => {
                    let (key, value) = selector.split_once('=').unwrap_or((selector, ""));
                    let value = serde_json::from_str::<Value>(value)
                        .ok()
                        .filter(Value::is_number)
                        .unwrap_or_else(|| json!(value));
                    let item = format!("k:{}", json!({ key: value }));
                    node[&item]["."] = json!({});
                    item
                }
                None => format!("f:{}", segment.replace("~1", "/").replace("~0", "~")),
            };
            node = &mut node[&name];
            if node.is_null() {
                *node = json!({});
            }
        }
    }
    let api_version = stored
        .object
        .get("apiVersion")
        .cloned()
        .unwrap_or(Value::Null);
    Value::Array(
        by_manager
            .into_iter()
            .map(|(manager, fields)| {
                let operation = if stored.applied.contains_key(manager) {
                    "Apply"
                } else {
                    "Update"
                };
                json!({"manager": manager, "operation": operation, "apiVersion": api_version,
                    "time": "2026-11-23T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": fields})
            })
            .collect(),
    )
}

/// The key field of a list Kubernetes declares as a map (`x-kubernetes-list-type: map`), by
/// the list's field name, when every item has it.
fn list_key(field: &str, items: &[Value]) -> Option<&'static str> {
    let key = match field {
        "containers" | "initContainers" | "env" | "volumes" | "imagePullSecrets" => "name",
        "volumeMounts" => "mountPath",
        // A container's ports are keyed by containerPort, a Service's by port.
        "ports" if items.iter().all(|item| item.get("containerPort").is_some()) => "containerPort",
        "ports" => "port",
        _ => return None,
    };
    (!items.is_empty() && items.iter().all(|item| item.get(key).is_some())).then_some(key)
}

/// The path segment of a list-map item.
fn item_segment(key: &str, item: &Value) -> String {
    let value = match &item[key] {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    format!("[{key}={value}]")
}

/// The value at a path of [`leaves`].
fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = value;
    for segment in path.split('/').skip(1) {
        node = match (
            segment.strip_prefix('[').and_then(|s| s.strip_suffix(']')),
            node,
        ) {
            (Some(selector), Value::Array(items)) => {
                let (key, _) = selector.split_once('=')?;
                items
                    .iter()
                    .find(|item| item_segment(key, item) == format!("[{selector}]"))?
            }
            _ => node.get(segment.replace("~1", "/").replace("~0", "~"))?,
        };
    }
    Some(node)
}

/// Every scalar and atomic list of `value` by path (objects and list-map items are walked
/// into).
fn leaves(value: &Value) -> Vec<(String, Value)> {
    fn walk(value: &Value, field: &str, path: String, out: &mut Vec<(String, Value)>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    let escaped = key.replace('~', "~0").replace('/', "~1");
                    walk(child, key, format!("{path}/{escaped}"), out);
                }
            }
            Value::Array(items) => match list_key(field, items) {
                Some(key) => {
                    for item in items {
                        walk(item, "", format!("{path}/{}", item_segment(key, item)), out);
                    }
                }
                None => out.push((path, value.clone())),
            },
            other => out.push((path, other.clone())),
        }
    }
    let mut out = Vec::new();
    walk(value, "", String::new(), &mut out);
    out
}

/// Deep merge: objects key by key, list-maps item by item; other lists and scalars replaced.
fn merge(live: &mut Value, config: &Value, field: &str) {
    match (live, config) {
        (Value::Object(live), Value::Object(config)) => {
            for (k, v) in config {
                match live.get_mut(k) {
                    Some(existing)
                        if (existing.is_object() && v.is_object())
                            || (existing.is_array() && v.is_array()) =>
                    {
                        merge(existing, v, k)
                    }
                    _ => {
                        live.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(have), Value::Array(wanted)) => match list_key(field, wanted) {
            Some(key) if list_key(field, have) == Some(key) || have.is_empty() => {
                for item in wanted {
                    match have.iter_mut().find(|live| live.get(key) == item.get(key)) {
                        Some(existing) => merge(existing, item, ""),
                        None => have.push(item.clone()),
                    }
                }
            }
            _ => *have = wanted.clone(),
        },
        (live, config) => *live = config.clone(),
    }
}

/// Removes from `live` the fields `previous` set that `config` no longer sets; an item of a
/// list-map goes only when no other manager owns a field inside it.
fn remove_missing(
    live: &mut Value,
    previous: &Value,
    config: &Value,
    path: &str,
    owners: &BTreeMap<String, String>,
) {
    let (Value::Object(live), Value::Object(previous)) = (live, previous) else {
        return;
    };
    for (k, old) in previous {
        let child = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
        match config.get(k) {
            None => {
                live.remove(k);
            }
            Some(new) => {
                if let Some(value) = live.get_mut(k) {
                    if let (Value::Array(have), Value::Array(old), Value::Array(new)) =
                        (&mut *value, old, new)
                        && let Some(key) = list_key(k, old)
                    {
                        remove_items(have, old, new, key, &child, owners);
                    } else {
                        remove_missing(value, old, new, &child, owners);
                    }
                }
            }
        }
    }
}

fn remove_items(
    have: &mut Vec<Value>,
    old: &[Value],
    new: &[Value],
    key: &str,
    path: &str,
    owners: &BTreeMap<String, String>,
) {
    for item in old {
        let at = format!("{path}/{}", item_segment(key, item));
        match new.iter().find(|wanted| wanted.get(key) == item.get(key)) {
            Some(wanted) => {
                if let Some(live) = have.iter_mut().find(|live| live.get(key) == item.get(key)) {
                    remove_missing(live, item, wanted, &at, owners);
                }
            }
            None => {
                // Owners were already updated for this apply: any left inside are others'.
                let others = owners
                    .keys()
                    .any(|field| field.starts_with(&format!("{at}/")));
                if !others {
                    have.retain(|live| live.get(key) != item.get(key));
                }
            }
        }
    }
}

fn register_crd(inner: &mut Inner, crd: &Value) {
    let text = |pointer: &str| {
        crd.pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let namespaced = text("/spec/scope") == "Namespaced";
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for version in versions {
        if version.get("served") == Some(&json!(false)) {
            continue;
        }
        let resource = ResourceType::new(
            &text("/spec/group"),
            version.get("name").and_then(Value::as_str).unwrap_or("v1"),
            &text("/spec/names/plural"),
            &text("/spec/names/kind"),
            namespaced,
        );
        let known = inner
            .types
            .iter()
            .chain(inner.pending_types.iter().map(|(t, _)| t))
            .any(|t| {
                t.group == resource.group
                    && t.version == resource.version
                    && t.plural == resource.plural
            });
        if !known {
            inner
                .pending_types
                .push((resource, Instant::now() + CONTROLLER_DELAY));
        }
    }
}

fn replace(
    inner: &mut Inner,
    target: &Target,
    name: &str,
    query: &BTreeMap<String, String>,
    body: &[u8],
) -> Response {
    let Ok(object) = serde_json::from_slice::<Value>(body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body is not JSON".into(),
        );
    };
    let key = key(target, name);
    let Some(stored) = inner.objects.get(&key).cloned() else {
        return not_found(&target.resource, name);
    };
    let live_version = stored.object.pointer("/metadata/resourceVersion").cloned();
    let sent_version = object.pointer("/metadata/resourceVersion").cloned();
    if sent_version.is_some() && sent_version != live_version {
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                target.resource.plural
            ),
        );
    }
    let mut updated = object;
    // Identity and deletion state are the server's.
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "namespace",
        "generation",
    ] {
        match stored.object["metadata"].get(field) {
            Some(value) => updated["metadata"][field] = value.clone(),
            None => {
                if let Some(metadata) = updated["metadata"].as_object_mut() {
                    metadata.remove(field);
                }
            }
        }
    }
    // An update takes the fields it changed from whoever managed them (`kubectl edit` is the
    // manager `kubectl-edit`).
    let manager = query
        .get("fieldManager")
        .cloned()
        .unwrap_or_else(|| "kubectl-edit".to_string());
    let mut owners = stored.owners.clone();
    for (field, value) in leaves(&updated) {
        let metadata = field.starts_with("/metadata/")
            && !field.starts_with("/metadata/labels/")
            && !field.starts_with("/metadata/annotations/");
        if metadata || field.starts_with("/status") {
            continue;
        }
        if lookup(&stored.object, &field) != Some(&value) {
            owners.insert(field, manager.clone());
        }
    }
    inner.resource_version += 1;
    updated["metadata"]["resourceVersion"] = json!(inner.resource_version.to_string());
    let mut replaced = Stored {
        object: updated,
        applied: stored.applied,
        owners,
        changed: Instant::now(),
    };
    replaced.object["metadata"]["managedFields"] = managed_fields(&replaced);
    let updated = replaced.object.clone();
    event(inner, "update", &updated);
    inner.objects.insert(key, replaced);
    ok(updated)
}

fn delete(inner: &mut Inner, target: &Target, name: &str) -> Response {
    let key = key(target, name);
    let Some(stored) = inner.objects.get_mut(&key) else {
        return not_found(&target.resource, name);
    };
    let finalizers = stored
        .object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if target.resource.kind == "Namespace" || finalizers {
        if stored
            .object
            .pointer("/metadata/deletionTimestamp")
            .is_none()
        {
            stored.object["metadata"]["deletionTimestamp"] = json!("2026-11-23T00:00:01Z");
            if target.resource.kind == "Namespace" {
                stored.object["status"]["phase"] = json!("Terminating");
            }
            stored.changed = Instant::now();
        }
        let object = stored.object.clone();
        event(inner, "terminate", &object);
        return ok(object);
    }
    let removed = inner.objects.remove(&key).expect("present");
    event(inner, "delete", &removed.object);
    if target.resource.kind == "CustomResourceDefinition" {
        forget_kind(inner, &removed.object);
    }
    ok(removed.object)
}

/// A deleted CRD takes every object of its kind with it, and the kind is served no more (the
/// "Delete a CustomResourceDefinition" section of the Kubernetes documentation).
fn forget_kind(inner: &mut Inner, crd: &Value) {
    let text = |pointer: &str| crd.pointer(pointer).and_then(Value::as_str).unwrap_or("");
    let (group, plural) = (text("/spec/group").to_string(), text("/spec/names/plural"));
    let plural = plural.to_string();
    let gone: Vec<Key> = inner
        .objects
        .keys()
        .filter(|(g, p, _, _)| *g == group && *p == plural)
        .cloned()
        .collect();
    for key in gone {
        if let Some(removed) = inner.objects.remove(&key) {
            event(inner, "delete", &removed.object);
        }
    }
    inner
        .types
        .retain(|t| !(t.group == group && t.plural == plural));
    inner
        .pending_types
        .retain(|(t, _)| !(t.group == group && t.plural == plural));
}

/// What the controllers do: serve established CRDs, report Deployments ready, finish
/// deletions whose finalizers are gone, and empty terminating namespaces.
fn reconcile(inner: &mut Inner) {
    let now = Instant::now();
    let (ready, waiting): (Vec<_>, Vec<_>) = inner
        .pending_types
        .drain(..)
        .partition(|(_, at)| *at <= now);
    inner.pending_types = waiting;
    let served: Vec<ResourceType> = ready.into_iter().map(|(t, _)| t).collect();
    for kind in &served {
        inner
            .webhooks
            .insert((kind.group.clone(), kind.kind.clone()), now + WEBHOOK_DELAY);
    }
    inner.types.extend(served);
    let types = inner.types.clone();
    let mut bumps = 0;
    // The horizontal pod autoscaler keeps its Deployment's replicas within its bounds, through
    // the scale subresource (which changes spec.replicas and so the generation).
    let scalings: Vec<(Key, i64, i64)> = inner
        .objects
        .iter()
        .filter(|((group, plural, _, _), stored)| {
            group == "autoscaling"
                && plural == "horizontalpodautoscalers"
                && stored.changed + CONTROLLER_DELAY <= now
        })
        .filter_map(|((_, _, namespace, _), stored)| {
            let spec = stored.object.get("spec")?;
            if spec.pointer("/scaleTargetRef/kind")? != "Deployment" {
                return None;
            }
            let target = spec.pointer("/scaleTargetRef/name")?.as_str()?;
            let min = spec.get("minReplicas").and_then(Value::as_i64).unwrap_or(1);
            let max = spec.get("maxReplicas")?.as_i64()?;
            let key = (
                "apps".to_string(),
                "deployments".to_string(),
                namespace.clone(),
                target.to_string(),
            );
            Some((key, min, max))
        })
        .collect();
    for (key, min, max) in scalings {
        let Some(stored) = inner.objects.get_mut(&key) else {
            continue;
        };
        let current = stored
            .object
            .pointer("/spec/replicas")
            .and_then(Value::as_i64);
        let wanted = current.unwrap_or(1).clamp(min, max);
        if current != Some(wanted) {
            stored.object["spec"]["replicas"] = json!(wanted);
            let generation = stored
                .object
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            stored.object["metadata"]["generation"] = json!(generation + 1);
            stored.changed = now;
            bumps += 1;
        }
    }
    for ((group, plural, _, _), stored) in inner.objects.iter_mut() {
        if stored.changed + CONTROLLER_DELAY > now {
            continue;
        }
        if group == "apps" && (plural == "deployments" || plural == "statefulsets") {
            let generation = stored
                .object
                .pointer("/metadata/generation")
                .cloned()
                .unwrap_or(json!(1));
            let replicas = stored
                .object
                .pointer("/spec/replicas")
                .cloned()
                .unwrap_or(json!(1));
            let pullable = stored
                .object
                .pointer("/spec/template/spec/containers")
                .and_then(Value::as_array)
                .is_none_or(|containers| {
                    containers.iter().all(|container| {
                        container
                            .get("image")
                            .and_then(Value::as_str)
                            .is_none_or(|image| !image.contains("unpullable"))
                    })
                });
            let status = if pullable {
                json!({"observedGeneration": generation, "replicas": replicas,
                    "updatedReplicas": replicas, "readyReplicas": replicas,
                    "availableReplicas": replicas})
            } else {
                json!({"observedGeneration": generation, "replicas": replicas,
                    "updatedReplicas": replicas, "readyReplicas": 0, "availableReplicas": 0,
                    "unavailableReplicas": replicas,
                    "conditions": [{"type": "Available", "status": "False",
                        "reason": "MinimumReplicasUnavailable",
                        "message": "Deployment does not have minimum availability."}]})
            };
            if stored.object.get("status") != Some(&status) {
                stored.object["status"] = status;
                bumps += 1;
            }
        }
        if plural == "customresourcedefinitions" {
            let group = stored
                .object
                .pointer("/spec/group")
                .and_then(Value::as_str)
                .unwrap_or("");
            let kind = stored
                .object
                .pointer("/spec/names/kind")
                .and_then(Value::as_str)
                .unwrap_or("");
            let established = types.iter().any(|t| t.group == group && t.kind == kind);
            let condition = json!({"conditions": [{"type": "Established", "status": if established {"True"} else {"False"}}]});
            if established && stored.object.get("status") != Some(&condition) {
                stored.object["status"] = condition;
                bumps += 1;
            }
        }
    }
    inner.resource_version += bumps;
    // Terminating namespaces: delete their content, report what remains, go when empty.
    let terminating: Vec<String> = inner
        .objects
        .iter()
        .filter(|((_, plural, _, _), stored)| {
            plural == "namespaces"
                && stored
                    .object
                    .pointer("/metadata/deletionTimestamp")
                    .is_some()
        })
        .map(|((_, _, _, name), _)| name.clone())
        .collect();
    for namespace in terminating {
        let inside: Vec<Key> = inner
            .objects
            .keys()
            .filter(|(_, _, ns, _)| *ns == namespace)
            .cloned()
            .collect();
        let mut held = Vec::new();
        for key in &inside {
            let Some(stored) = inner.objects.get_mut(key) else {
                continue;
            };
            let finalizers: Vec<String> = stored
                .object
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .map(|f| {
                    f.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if finalizers.is_empty() {
                let removed = inner.objects.remove(key).expect("present");
                event(inner, "delete", &removed.object);
            } else {
                if stored
                    .object
                    .pointer("/metadata/deletionTimestamp")
                    .is_none()
                {
                    stored.object["metadata"]["deletionTimestamp"] = json!("2026-11-23T00:00:01Z");
                }
                held.push((key.1.clone(), finalizers));
            }
        }
        let ns_key = (
            String::new(),
            "namespaces".to_string(),
            String::new(),
            namespace.clone(),
        );
        if held.is_empty() {
            if let Some(removed) = inner.objects.remove(&ns_key) {
                event(inner, "delete", &removed.object);
            }
        } else if let Some(stored) = inner.objects.get_mut(&ns_key) {
            let resources: Vec<String> = held
                .iter()
                .map(|(plural, _)| format!("{plural} has 1 resource instances"))
                .collect();
            let finalizers: Vec<String> = held.iter().flat_map(|(_, f)| f.clone()).collect();
            stored.object["status"]["conditions"] = json!([
                {"type": "NamespaceContentRemaining", "status": "True",
                 "message": format!("Some resources are remaining: {}", resources.join(", "))},
                {"type": "NamespaceFinalizersRemaining", "status": "True",
                 "message": format!("Some content in the namespace has finalizers remaining: {}", finalizers.join(", "))},
            ]);
        }
    }
    // Objects marked for deletion whose finalizers are gone.
    let finished: Vec<Key> = inner
        .objects
        .iter()
        .filter(|((_, plural, _, _), stored)| {
            plural != "namespaces"
                && stored
                    .object
                    .pointer("/metadata/deletionTimestamp")
                    .is_some()
                && stored
                    .object
                    .pointer("/metadata/finalizers")
                    .and_then(Value::as_array)
                    .is_none_or(|f| f.is_empty())
        })
        .map(|(key, _)| key.clone())
        .collect();
    for key in finished {
        if let Some(removed) = inner.objects.remove(&key) {
            event(inner, "delete", &removed.object);
        }
    }
}

#[test]
fn label_selectors_follow_the_documented_forms() {
    let labels = json!({"app": "ingest", "tier": "web"});
    let labels = labels.as_object().expect("object");
    assert!(matches(labels, "app=ingest"));
    assert!(matches(labels, "app==ingest,tier"));
    assert!(matches(labels, "app!=other,!missing"));
    assert!(!matches(labels, "app=other"));
    assert!(!matches(labels, "!tier"));
    assert!(!matches(labels, "missing"));
}

#[test]
fn apply_conflicts_with_another_managers_field_unless_forced_and_a_token_is_required() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = ApiServer::start(dir.path().join("events.log"));
    let http = reqwest::blocking::Client::new();
    let url = format!(
        "{}/api/v1/namespaces/default/configmaps/settings",
        server.url
    );
    let apply = |manager: &str, force: bool, level: &str| {
        http.patch(format!("{url}?fieldManager={manager}&force={force}"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/apply-patch+yaml")
            .body(
                json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "settings", "namespace": "default"},
                    "data": {"level": level}})
                .to_string(),
            )
            .send()
            .expect("apply")
    };
    assert_eq!(apply("trails", false, "info").status(), StatusCode::CREATED);
    // The same manager changes its own field freely.
    assert_eq!(apply("trails", false, "warn").status(), StatusCode::OK);

    // Someone edits the field by hand (`kubectl edit` is an update by manager kubectl-edit).
    let mut edited = server
        .get("v1", "ConfigMap", Some("default"), "settings")
        .expect("the object");
    edited["data"]["level"] = json!("debug");
    let put = http
        .put(&url)
        .bearer_auth(TOKEN)
        .body(edited.to_string())
        .send()
        .expect("put");
    assert_eq!(put.status(), StatusCode::OK);
    // managedFields say who owns what, in fieldsV1 form: the edited field is kubectl-edit's.
    let live = server
        .get("v1", "ConfigMap", Some("default"), "settings")
        .expect("the object");
    assert_eq!(
        live["metadata"]["managedFields"],
        json!([{"manager": "kubectl-edit", "operation": "Update", "apiVersion": "v1",
            "time": "2026-11-23T00:00:00Z", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {"f:level": {}}}}])
    );

    // Applying the old value back without force is a conflict that names the field and owner.
    let refused = apply("trails", false, "warn");
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let message = refused.text().expect("body");
    assert!(
        message.contains("conflict with \\\"kubectl-edit\\\": .data.level"),
        "{message}"
    );
    // Applying the value it already has is no conflict; forcing takes the field back.
    assert_eq!(apply("trails", false, "debug").status(), StatusCode::OK);
    let forced = apply("trails", true, "warn");
    assert_eq!(forced.status(), StatusCode::OK);
    let live = server
        .get("v1", "ConfigMap", Some("default"), "settings")
        .expect("the object");
    assert_eq!(live["data"]["level"], "warn");
    assert_eq!(apply("trails", false, "error").status(), StatusCode::OK);

    // Without the kubeconfig's token nothing is served.
    let anonymous = http.get(&url).send().expect("get");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let wrong = http.get(&url).bearer_auth("stolen").send().expect("get");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn an_apply_with_a_field_its_kind_does_not_declare_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = ApiServer::start(dir.path().join("events.log"));
    let http = reqwest::blocking::Client::new();
    let apply = |spec: Value| {
        http.patch(format!(
            "{}/apis/apps/v1/namespaces/default/deployments/web?fieldManager=test",
            server.url
        ))
        .bearer_auth(TOKEN)
        .header("content-type", "application/apply-patch+yaml")
        .body(
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
            .to_string(),
        )
        .send()
        .expect("apply")
    };
    let refused = apply(json!({"replica": 2}));
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let message = refused.text().expect("body");
    assert!(message.contains("spec.replica"), "{message}");
    let wrong_type = apply(json!({"replicas": "two"}));
    assert_eq!(wrong_type.status(), StatusCode::BAD_REQUEST);
    assert!(
        server
            .get("apps/v1", "Deployment", Some("default"), "web")
            .is_none()
    );
    assert_eq!(apply(json!({"replicas": 2})).status(), StatusCode::CREATED);
}

#[test]
fn a_new_kinds_webhook_refuses_its_objects_for_a_moment_after_the_crd_is_served() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = ApiServer::start(dir.path().join("events.log"));
    let http = reqwest::blocking::Client::new();
    let apply = |path: &str, body: Value| {
        http.patch(format!("{}{path}?fieldManager=test", server.url))
            .bearer_auth(TOKEN)
            .header("content-type", "application/apply-patch+yaml")
            .body(body.to_string())
            .send()
            .expect("apply")
    };
    let crd = apply(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Cluster",
                "names": {"kind": "Widget", "plural": "widgets"},
                "versions": [{"name": "v1", "served": true, "storage": true}]}}),
    );
    assert_eq!(crd.status(), StatusCode::CREATED);
    let widget = || {
        apply(
            "/apis/example.com/v1/widgets/one",
            json!({"apiVersion": "example.com/v1", "kind": "Widget",
                "metadata": {"name": "one"}}),
        )
    };
    // Served once its controller delay has passed...
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut refused = widget();
    while refused.status() == StatusCode::NOT_FOUND && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        refused = widget();
    }
    // ...but its webhook is not up yet: a 500 a client must retry.
    assert_eq!(refused.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let message = refused.text().expect("body");
    assert!(
        message.contains("failed calling webhook") && message.contains("InternalError"),
        "{message}"
    );
    std::thread::sleep(WEBHOOK_DELAY);
    assert_eq!(widget().status(), StatusCode::CREATED);
}

#[test]
fn list_maps_merge_item_by_item_and_keep_other_managers_items() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = ApiServer::start(dir.path().join("events.log"));
    let http = reqwest::blocking::Client::new();
    let url = format!(
        "{}/apis/apps/v1/namespaces/default/deployments/web",
        server.url
    );
    let apply = |manager: &str, containers: Value| {
        let response = http
            .patch(format!("{url}?fieldManager={manager}"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/apply-patch+yaml")
            .body(
                json!({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "web", "namespace": "default"},
                    "spec": {"template": {"spec": {"containers": containers}}}})
                .to_string(),
            )
            .send()
            .expect("apply");
        assert!(response.status().is_success(), "{:?}", response.text());
    };
    let env = || {
        let live = server
            .get("apps/v1", "Deployment", Some("default"), "web")
            .expect("the object");
        let names: Vec<String> = live["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item["name"].as_str().map(str::to_string))
            .collect();
        (live, names)
    };
    let var = |name: &str| json!({"name": name, "value": "1"});
    apply(
        "trails",
        json!([{"name": "web", "image": "web:1", "env": [var("A"), var("B")]}]),
    );
    // Another manager adds one variable: merged by name, the container's image untouched.
    apply(
        "kubectl-set",
        json!([{"name": "web", "env": [var("DEBUG")]}]),
    );
    let (live, names) = env();
    assert_eq!(names, ["A", "B", "DEBUG"]);
    // Each manager owns its own items, keyed as fieldsV1 keys them.
    let owned = |manager: &str| {
        live["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|entry| entry["manager"] == manager)
            .map(|entry| entry["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"].clone())
            .unwrap_or_default()
    };
    assert_eq!(
        owned("kubectl-set"),
        json!({".": {}, "f:env": {"k:{\"name\":\"DEBUG\"}": {".": {}, "f:name": {}, "f:value": {}}}, "f:name": {}})
    );
    assert_eq!(owned("trails")["f:image"], json!({}));
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"][0]["image"],
        "web:1"
    );
    // trails stops applying B: its item goes, the other manager's stays.
    apply(
        "trails",
        json!([{"name": "web", "image": "web:2", "env": [var("A")]}]),
    );
    let (live, names) = env();
    assert_eq!(names, ["A", "DEBUG"]);
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"][0]["image"],
        "web:2"
    );
    // An atomic list (args) is replaced whole by whoever applies it.
    apply(
        "trails",
        json!([{"name": "web", "image": "web:2", "args": ["a", "b"], "env": [var("A")]}]),
    );
    apply(
        "trails",
        json!([{"name": "web", "image": "web:2", "args": ["c"], "env": [var("A")]}]),
    );
    let (live, _) = env();
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"][0]["args"],
        json!(["c"])
    );
}
