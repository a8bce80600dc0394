//! OpenSearch day-one configuration (index templates, ISM policies) applied, updated and
//! destroyed against an OpenSearch test double.
//!
//! No OpenSearch server can be installed on these machines (it is a JVM distribution outside
//! the package registries reached here), so the double below follows the documented REST API
//! for the calls trails makes: HTTP basic auth (401 with `WWW-Authenticate`), `_index_template`
//! PUT/GET/DELETE with the validation error real servers give for a template without
//! `index_patterns`, and `_plugins/_ism/policies` where creating an existing policy is a 409
//! and an update must carry the current `if_seq_no` / `if_primary_term` (409 otherwise).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Run, repo, run_with, run_with_endpoint};

const USER: &str = "admin";
const PASSWORD: &str = "Sup3r+secret/pw";

#[derive(Default)]
struct Inner {
    templates: BTreeMap<String, Value>,
    /// Policy id → (document, seq_no, primary_term, version).
    policies: BTreeMap<String, (Value, u64, u64, u64)>,
    seq_no: u64,
    /// `METHOD path?query` of every authenticated request.
    log: Vec<String>,
}

/// The OpenSearch double on a free loopback port.
pub struct OpenSearch {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    runtime: Option<tokio::runtime::Runtime>,
}

fn error(status: StatusCode, kind: &str, reason: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason},
            "status": status.as_u16(),
        })),
    )
        .into_response()
}

fn authorized(headers: &HeaderMap) -> bool {
    use base64::Engine as _;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        == Some(expected.as_str())
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Basic realm=\"OpenSearch Security\"")],
            "Unauthorized",
        )
            .into_response();
    }
    let mut inner = inner.lock().expect("double lock");
    inner.log.push(format!(
        "{method} {}",
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("")
    ));
    let body: Option<Value> = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice(&body) {
            Ok(value) => Some(value),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "parse_exception",
                    &format!("request body is not JSON: {e}"),
                );
            }
        }
    };
    let segments: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (Method::PUT, ["_index_template", name]) => {
            let Some(body) = body else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "parse_exception",
                    "request body is required",
                );
            };
            let patterns = body.get("index_patterns").and_then(Value::as_array);
            if patterns.is_none_or(|p| p.is_empty()) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "action_request_validation_exception",
                    "Validation Failed: 1: index patterns are missing;",
                );
            }
            inner.templates.insert(name.to_string(), body);
            axum::Json(json!({"acknowledged": true})).into_response()
        }
        (Method::GET, ["_index_template", name]) => match inner.templates.get(*name) {
            Some(template) => axum::Json(json!({"index_templates": [
                {"name": name, "index_template": template}]}))
            .into_response(),
            None => error(
                StatusCode::NOT_FOUND,
                "resource_not_found_exception",
                &format!("index template matching [{name}] not found"),
            ),
        },
        (Method::DELETE, ["_index_template", name]) => match inner.templates.remove(*name) {
            Some(_) => axum::Json(json!({"acknowledged": true})).into_response(),
            None => error(
                StatusCode::NOT_FOUND,
                "index_template_missing_exception",
                &format!("index_template [{name}] missing"),
            ),
        },
        (Method::PUT, ["_plugins", "_ism", "policies", id]) => {
            let Some(policy) = body.as_ref().and_then(|b| b.get("policy")) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "illegal_argument_exception",
                    "Required [policy] is missing",
                );
            };
            if !policy.get("states").is_some_and(Value::is_array) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "illegal_argument_exception",
                    "Policy must have states",
                );
            }
            let policy = policy.clone();
            let wanted = (
                query.get("if_seq_no").and_then(|v| v.parse::<u64>().ok()),
                query
                    .get("if_primary_term")
                    .and_then(|v| v.parse::<u64>().ok()),
            );
            let existing = inner.policies.get(*id).cloned();
            inner.seq_no += 1;
            let seq_no = inner.seq_no;
            let (status, version) = match (existing, wanted) {
                (Some((_, _, _, version)), (None, None)) => {
                    return error(
                        StatusCode::CONFLICT,
                        "version_conflict_engine_exception",
                        &format!(
                            "[{id}]: version conflict, document already exists (current version [{version}])"
                        ),
                    );
                }
                (None, (None, None)) => (StatusCode::CREATED, 1),
                (Some((_, current_seq, term, version)), (Some(seq), Some(wanted_term)))
                    if current_seq == seq && term == wanted_term =>
                {
                    (StatusCode::OK, version + 1)
                }
                _ => {
                    return error(
                        StatusCode::CONFLICT,
                        "version_conflict_engine_exception",
                        &format!("[{id}]: version conflict, required seqNo does not match"),
                    );
                }
            };
            inner
                .policies
                .insert(id.to_string(), (policy.clone(), seq_no, 1, version));
            (
                status,
                axum::Json(json!({"_id": id, "_version": version, "_primary_term": 1,
                    "_seq_no": seq_no, "policy": {"policy": policy}})),
            )
                .into_response()
        }
        (Method::GET, ["_plugins", "_ism", "policies", id]) => match inner.policies.get(*id) {
            Some((policy, seq_no, term, version)) => axum::Json(json!({"_id": id,
                "_version": version, "_seq_no": seq_no, "_primary_term": term,
                "policy": policy}))
            .into_response(),
            None => error(
                StatusCode::NOT_FOUND,
                "status_exception",
                "Policy not found",
            ),
        },
        (Method::DELETE, ["_plugins", "_ism", "policies", id]) => {
            match inner.policies.remove(*id) {
                Some(_) => axum::Json(json!({"_id": id, "result": "deleted"})).into_response(),
                None => (
                    StatusCode::NOT_FOUND,
                    axum::Json(json!({"_id": id, "result": "not_found"})),
                )
                    .into_response(),
            }
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            "illegal_argument_exception",
            "no handler found for uri",
        ),
    }
}

impl OpenSearch {
    pub fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&inner));
        let (runtime, url) = super::services::serve(app, "OpenSearch double", 1);
        Self {
            url,
            inner,
            runtime: Some(runtime),
        }
    }

    fn template(&self, name: &str) -> Option<Value> {
        self.inner
            .lock()
            .expect("lock")
            .templates
            .get(name)
            .cloned()
    }

    fn policy(&self, id: &str) -> Option<(Value, u64)> {
        self.inner
            .lock()
            .expect("lock")
            .policies
            .get(id)
            .map(|(policy, seq_no, _, _)| (policy.clone(), *seq_no))
    }

    /// Someone edits or deletes a template behind trails' back.
    fn set_template(&self, name: &str, template: Option<Value>) {
        let mut inner = self.inner.lock().expect("lock");
        match template {
            Some(template) => inner.templates.insert(name.to_string(), template),
            None => inner.templates.remove(name),
        };
    }

    fn remove_policy(&self, id: &str) {
        self.inner.lock().expect("lock").policies.remove(id);
    }

    fn log(&self) -> Vec<String> {
        self.inner.lock().expect("lock").log.clone()
    }

    /// Someone changes the policy behind trails' back (its sequence number moves).
    fn touch_policy(&self, id: &str) {
        let mut inner = self.inner.lock().expect("lock");
        inner.seq_no += 1;
        let seq_no = inner.seq_no;
        if let Some(entry) = inner.policies.get_mut(id) {
            entry.1 = seq_no;
            entry.3 += 1;
        }
    }

    fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn blueprint(dir: &Path, url: &str) -> std::path::PathBuf {
    let templates = dir.join("templates/opensearch");
    std::fs::create_dir_all(&templates).expect("templates dir");
    for file in ["audit-events-template.json", "audit-events-ism.json"] {
        std::fs::copy(
            repo("templates/opensearch").join(file),
            templates.join(file),
        )
        .expect("copy template");
    }
    let file = dir.join("search.yaml");
    std::fs::write(
        &file,
        format!(
            "blueprint: search-demo\nregion: us-east-1\nopensearch:\n  url: {url}\n  index_templates:\n    audit-events: opensearch/audit-events-template.json\n  ism_policies:\n    audit-events-retention: opensearch/audit-events-ism.json\n"
        ),
    )
    .expect("write blueprint");
    file
}

fn trails(file: &Path, endpoint: &str, args: &[&str]) -> Run {
    run_with_endpoint(file, "opensearch", endpoint, args)
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).expect("read");
    assert!(text.contains(from), "{from} not in {}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).expect("write");
}

#[test]
fn index_templates_and_ism_policies_are_put_updated_with_sequence_numbers_and_deleted() {
    let mut server = OpenSearch::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let address = server.url.trim_start_matches("http://").to_string();
    let file = blueprint(
        dir.path(),
        "https://opensearch.opensearch.svc.cluster.local:9200",
    );
    let login = format!(
        "http://{USER}:{}@{address}",
        PASSWORD.replace('+', "%2B").replace('/', "%2F")
    );
    let templates = dir.path().join("templates/opensearch");

    // A password in the blueprint's URL would be recorded: refused at validation, and not
    // repeated in the message, even when the URL does not parse (an unescaped `/`).
    let leaky = blueprint(
        &dir.path().join("leaky"),
        &format!("http://{USER}:hunter2@{address}"),
    );
    let refused = run_with(
        None,
        &[],
        &["validate", "-f", leaky.to_str().expect("utf-8")],
    );
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("opensearch.url") && refused.stderr.contains("TRAILS_ENDPOINTS"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains("hunter2"), "{}", refused.stderr);
    let broken = blueprint(
        &dir.path().join("broken"),
        &format!("http://{USER}:{PASSWORD}@{address}"),
    );
    let refused = run_with(
        None,
        &[],
        &["validate", "-f", broken.to_str().expect("utf-8")],
    );
    assert_ne!(refused.code, 0);
    assert!(
        refused
            .stderr
            .contains("opensearch.url: expected an http(s) URL"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains(PASSWORD), "{}", refused.stderr);

    // The wrong password: OpenSearch's 401, and the password is not printed.
    let wrong = trails(
        &file,
        &format!("http://{USER}:nope@{address}"),
        &["apply", "--yes"],
    );
    assert_eq!(wrong.code, 1, "{}\n{}", wrong.stdout, wrong.stderr);
    assert!(
        wrong.stderr.contains("401 Unauthorized"),
        "{}",
        wrong.stderr
    );
    assert!(!wrong.stderr.contains("nope") && !wrong.stdout.contains("nope"));

    let applied = trails(&file, &login, &["apply", "--yes"]);
    assert_eq!(applied.code, 0, "{}\n{}", applied.stdout, applied.stderr);
    let both = format!("{}{}", applied.stdout, applied.stderr);
    assert!(!both.contains(PASSWORD), "the password was printed");
    let state = std::fs::read_to_string(dir.path().join(".trails/default.state.json"))
        .or_else(|_| {
            let dir = dir.path().join(".trails");
            let entry = std::fs::read_dir(&dir)
                .expect("state dir")
                .filter_map(Result::ok)
                .find(|e| e.file_name().to_string_lossy().ends_with(".state.json"))
                .expect("a state file");
            std::fs::read_to_string(entry.path())
        })
        .expect("state");
    assert!(!state.contains(PASSWORD), "the password is in the state");
    let template = server.template("audit-events").expect("template PUT");
    assert_eq!(template["index_patterns"], json!(["audit-events-*"]));
    assert_eq!(template["template"]["settings"]["number_of_shards"], 3);
    let (policy, _) = server.policy("audit-events-retention").expect("policy PUT");
    assert_eq!(policy["default_state"], "hot");

    let again = trails(&file, "", &["plan", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);

    // Read back: verify and diff find both as their files define them...
    let verified = trails(&file, &login, &["verify", "--json", "--only", "opensearch"]);
    assert_eq!(verified.code, 0, "{}\n{}", verified.stdout, verified.stderr);
    let checks = super::verdicts(&verified);
    assert_eq!(checks.len(), 2, "{checks:?}");
    assert!(
        checks.iter().any(|(name, status, evidence)| name
            == "opensearch.index_template.audit-events"
            && status == "passed"
            && evidence.contains("is as opensearch/audit-events-template.json defines it")),
        "{checks:?}"
    );
    let diff = trails(&file, &login, &["diff", "--detailed-exitcode"]);
    assert_eq!(diff.code, 0, "{}\n{}", diff.stdout, diff.stderr);
    // ...then someone loosens the mapping and deletes the policy.
    let mut loosened = server.template("audit-events").expect("template");
    loosened["template"]["mappings"]["dynamic"] = json!(true);
    server.set_template("audit-events", Some(loosened));
    server.remove_policy("audit-events-retention");
    let diff = trails(&file, &login, &["diff", "--detailed-exitcode"]);
    assert_eq!(diff.code, 2, "{}\n{}", diff.stdout, diff.stderr);
    for expected in [
        "opensearch.index_template.audit-events: changed outside trails",
        "template.mappings.dynamic: \"strict\" -> true",
        "opensearch.ism_policy.audit-events-retention: deleted outside trails",
    ] {
        assert!(
            diff.stdout.contains(expected),
            "`{expected}` missing: {}",
            diff.stdout
        );
    }
    let verified = trails(&file, &login, &["verify", "--json", "--only", "opensearch"]);
    assert_eq!(verified.code, 1, "{}\n{}", verified.stdout, verified.stderr);
    let failed: Vec<String> = super::verdicts(&verified)
        .into_iter()
        .filter(|(_, status, _)| status == "failed")
        .map(|(_, _, evidence)| evidence)
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(
        failed
            .iter()
            .any(|e| e.contains("ISM policy audit-events-retention is missing")),
        "{failed:?}"
    );
    assert!(
        failed.iter().any(
            |e| e.contains("differs from opensearch/audit-events-template.json")
                && e.contains("template.mappings.dynamic")
        ),
        "{failed:?}"
    );
    let repaired = trails(&file, &login, &["apply", "--refresh", "--yes"]);
    assert_eq!(repaired.code, 0, "{}\n{}", repaired.stdout, repaired.stderr);
    assert_eq!(
        server.template("audit-events").expect("template")["template"]["mappings"]["dynamic"],
        json!("strict")
    );
    assert!(server.policy("audit-events-retention").is_some());
    let verified = trails(&file, &login, &["verify", "--only", "opensearch"]);
    assert_eq!(verified.code, 0, "{}\n{}", verified.stdout, verified.stderr);
    let (_, first_seq) = server.policy("audit-events-retention").expect("policy PUT");

    // The template file changes: only the template is PUT again.
    edit(
        &templates.join("audit-events-template.json"),
        "\"number_of_shards\": 3",
        "\"number_of_shards\": 2",
    );
    let calls = server.log().len();
    let updated = trails(&file, &login, &["apply", "--yes"]);
    assert_eq!(updated.code, 0, "{}\n{}", updated.stdout, updated.stderr);
    assert_eq!(
        server.template("audit-events").expect("template")["template"]["settings"]["number_of_shards"],
        2
    );
    assert_eq!(
        server.log()[calls..],
        ["PUT /_index_template/audit-events".to_string()]
    );
    assert_eq!(
        server.policy("audit-events-retention").expect("policy").1,
        first_seq
    );

    // The policy changes, after someone else touched it: trails reads the current sequence
    // number and updates with it.
    server.touch_policy("audit-events-retention");
    let (_, touched_seq) = server.policy("audit-events-retention").expect("policy");
    edit(
        &templates.join("audit-events-ism.json"),
        "\"90d\"",
        "\"30d\"",
    );
    let calls = server.log().len();
    let updated = trails(&file, &login, &["apply", "--yes"]);
    assert_eq!(updated.code, 0, "{}\n{}", updated.stdout, updated.stderr);
    let (policy, _) = server.policy("audit-events-retention").expect("policy");
    assert_eq!(
        policy["states"][0]["transitions"][0]["conditions"]["min_index_age"],
        "30d"
    );
    assert_eq!(
        server.log()[calls..],
        [
            "GET /_plugins/_ism/policies/audit-events-retention".to_string(),
            format!(
                "PUT /_plugins/_ism/policies/audit-events-retention?if_seq_no={touched_seq}&if_primary_term=1"
            ),
        ]
    );

    // A template OpenSearch refuses: its reason, and the file.
    edit(
        &templates.join("audit-events-template.json"),
        "\"index_patterns\"",
        "\"index_pattern\"",
    );
    let refused = trails(&file, &login, &["apply", "--yes"]);
    assert_eq!(refused.code, 1, "{}\n{}", refused.stdout, refused.stderr);
    assert!(
        refused.stderr.contains("index patterns are missing")
            && refused
                .stderr
                .contains("[opensearch/audit-events-template.json]"),
        "{}",
        refused.stderr
    );
    edit(
        &templates.join("audit-events-template.json"),
        "\"index_pattern\"",
        "\"index_patterns\"",
    );
    // A file that is not JSON: named with the line.
    std::fs::write(
        templates.join("audit-events-template.json"),
        "{\n  \"a\": \n",
    )
    .expect("w");
    let broken = trails(&file, &login, &["apply", "--yes"]);
    assert_eq!(broken.code, 1, "{}\n{}", broken.stdout, broken.stderr);
    assert!(
        broken
            .stderr
            .contains("opensearch/audit-events-template.json is not JSON")
            && broken.stderr.contains("line 3"),
        "{}",
        broken.stderr
    );
    std::fs::copy(
        repo("templates/opensearch/audit-events-template.json"),
        templates.join("audit-events-template.json"),
    )
    .expect("restore");

    let destroyed = trails(&file, &login, &["destroy", "--yes"]);
    assert_eq!(
        destroyed.code, 0,
        "{}\n{}",
        destroyed.stdout, destroyed.stderr
    );
    assert!(server.template("audit-events").is_none());
    assert!(server.policy("audit-events-retention").is_none());

    // No server at all: said with where trails looked, after its retries.
    let applied = trails(&file, &login, &["apply", "--yes"]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    server.stop();
    let gone = trails(&file, &login, &["destroy", "--yes"]);
    assert_eq!(gone.code, 1, "{}\n{}", gone.stdout, gone.stderr);
    assert!(
        gone.stderr
            .contains(&format!("no answer from OpenSearch at http://{address}")),
        "{}",
        gone.stderr
    );
}
