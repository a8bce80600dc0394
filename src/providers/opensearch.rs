//! OpenSearch day-one configuration: index templates and ISM policies, each PUT from its JSON
//! file in `templates/` once the release that runs OpenSearch is up.
//!
//! trails talks to the blueprint's `opensearch.url`, or to `--endpoint opensearch=URL` when the
//! cluster-internal address is not reachable from where trails runs (a port-forward). A user
//! and password in the URL are sent as HTTP basic auth and never printed. An `https` server's
//! certificate is checked against the system's roots plus the PEM file `TRAILS_OPENSEARCH_CA`
//! names (the chart's own CA, usually).
//!
//! An ISM policy is updated with the `if_seq_no` / `if_primary_term` OpenSearch requires, read
//! just before. When the same run uninstalls the release that runs OpenSearch, deleting its
//! templates and policies is left to it: nothing would be left to hold them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::http::{self, Answer, Server, Shared};
use super::{
    Applied, Converging, Observed, Provider, ProviderError, Takeover, recorded_spec, spec,
};
use crate::resources::dayone::{IndexTemplate, IsmPolicy, Migration};
use crate::state::Recorded;

/// The endpoint override's name.
pub const ENDPOINT: &str = "opensearch";

const KIND: http::Kind = http::Kind {
    endpoint: ENDPOINT,
    product: "OpenSearch",
    ca_variable: "TRAILS_OPENSEARCH_CA",
    example: "https://USER:PASSWORD@localhost:9200",
};

/// Registers the index template and ISM policy providers.
pub fn register(
    templates_dir: &Path,
    endpoints: &BTreeMap<String, String>,
    deleting: &BTreeSet<String>,
    by_kind: &mut HashMap<&'static str, Box<dyn Provider>>,
) {
    let shared = Shared::new(KIND, templates_dir, endpoints, deleting);
    by_kind.insert(
        "opensearch.index_template",
        Box::new(TemplateProvider(shared.clone())),
    );
    by_kind.insert("opensearch.ism_policy", Box::new(PolicyProvider(shared)));
}

/// A definition file's JSON.
fn definition(shared: &Shared, definition: &Migration) -> Result<String, ProviderError> {
    let text = shared.definition(definition)?;
    serde_json::from_str::<Value>(&text).map_err(|error| {
        ProviderError::Invalid(format!("{} is not JSON: {error}", definition.file))
    })?;
    Ok(text)
}

/// The answer's JSON if its status is a success, else an error with OpenSearch's reason.
fn expect(
    server: &Server,
    operation: &str,
    answer: Answer,
    file: Option<&str>,
) -> Result<Value, ProviderError> {
    let body: Value =
        serde_json::from_str(&answer.text).unwrap_or_else(|_| Value::String(answer.text.clone()));
    if answer.status.is_success() {
        return Ok(body);
    }
    let reason = body
        .pointer("/error/reason")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| answer.text.trim().to_string());
    let kind = body
        .pointer("/error/type")
        .and_then(Value::as_str)
        .map(|kind| format!(" ({kind})"))
        .unwrap_or_default();
    Err(server.refused(operation, answer.status, &format!("{reason}{kind}"), file))
}

/// Deletes `path`; a 404 means it is gone already.
async fn delete(server: &Server, path: &str) -> Result<(), ProviderError> {
    let answer = server.send(Method::DELETE, path, &[], None).await?;
    if answer.status == StatusCode::NOT_FOUND {
        return Ok(());
    }
    expect(server, &format!("DELETE {path}"), answer, None).map(|_| ())
}

const JSON: &str = "application/json";

fn applied(name: &str) -> Applied {
    Applied {
        id: name.to_string(),
        outputs: [("name".to_string(), json!(name))].into_iter().collect(),
    }
}

/// A name as one URL path segment: validation allows only safe names, and a state edited by
/// hand must still not turn a delete into another path (`../../logs-*`).
fn segment(name: &str) -> percent_encoding::PercentEncode<'_> {
    // `.` is encoded too, so that no name is ever the segment `..`.
    const SEGMENT: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_');
    percent_encoding::utf8_percent_encode(name, SEGMENT)
}

fn template_path(name: &str) -> String {
    format!("/_index_template/{}", segment(name))
}

fn policy_path(name: &str) -> String {
    format!("/_plugins/_ism/policies/{}", segment(name))
}

/// An index template or an ISM policy: where it lives and what of its file OpenSearch keeps
/// as given (it rewrites settings, so those are not compared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Definition {
    /// `opensearch.index_template`: its index patterns and mappings.
    IndexTemplate,
    /// `opensearch.ism_policy`: its default state and states.
    IsmPolicy,
}

impl Definition {
    /// The definition type of a resource type.
    pub fn of(kind: &str) -> Option<Self> {
        match kind {
            "opensearch.index_template" => Some(Definition::IndexTemplate),
            "opensearch.ism_policy" => Some(Definition::IsmPolicy),
            _ => None,
        }
    }

    fn path(self, name: &str) -> String {
        match self {
            Definition::IndexTemplate => template_path(name),
            Definition::IsmPolicy => policy_path(name),
        }
    }

    /// The compared part of the file, shaped like the compared part of OpenSearch's answer.
    fn compared(self, file: &Value) -> Value {
        match self {
            Definition::IndexTemplate => json!({
                "index_patterns": file.get("index_patterns"),
                "template": { "mappings": file.pointer("/template/mappings") },
            }),
            Definition::IsmPolicy => json!({
                "default_state": file.pointer("/policy/default_state"),
                "states": file.pointer("/policy/states"),
            }),
        }
    }

    /// The definition in a GET answer.
    fn live(self, answer: &Value) -> Option<Value> {
        match self {
            Definition::IndexTemplate => answer.pointer("/index_templates/0/index_template"),
            Definition::IsmPolicy => answer.get("policy"),
        }
        .cloned()
    }
}

/// Reads a definition back: `None` when OpenSearch does not have it, else how it differs from
/// its file (not compared when the file changed since it was applied: the plan updates it).
async fn read_back(
    shared: &Shared,
    definition: Definition,
    url: &str,
    name: &str,
    file: &Migration,
) -> Result<Option<Vec<String>>, ProviderError> {
    let server = shared.server(url)?;
    let path = definition.path(name);
    let answer = server.send(Method::GET, &path, &[], None).await?;
    if answer.status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let answer = expect(&server, &format!("GET {path}"), answer, None)?;
    let Some(live) = definition.live(&answer) else {
        return Ok(None);
    };
    let wanted = shared
        .definition(file)
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok());
    Ok(Some(match wanted {
        Some(wanted) => super::compare::differences(&definition.compared(&wanted), &live, false),
        None => Vec::new(),
    }))
}

/// The name, URL and file of a recorded or desired template or policy.
fn identity(attributes: &Value) -> Result<(String, String, Migration), ProviderError> {
    let text = |key: &str| {
        attributes
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ProviderError::Invalid(format!("no `{key}` recorded")))
    };
    let file: Migration = spec(attributes.get("definition").unwrap_or(&Value::Null))?;
    Ok((text("name")?, text("url")?, file))
}

async fn observe(
    shared: &Shared,
    definition: Definition,
    recorded: &Recorded,
) -> Result<Observed, ProviderError> {
    let (name, url, file) = identity(&Value::Object(recorded.attributes.clone()))?;
    Ok(
        match read_back(shared, definition, &url, &name, &file).await? {
            None => Observed::Gone,
            Some(differences) => Observed::from_differences(differences),
        },
    )
}

/// `verify`: the template or policy a graph resource declares is in OpenSearch as its file
/// defines it. `Ok` evidence or `Err` what is wrong.
pub async fn verify(
    definition: Definition,
    desired: Value,
    templates_dir: PathBuf,
    endpoints: BTreeMap<String, String>,
) -> Result<String, String> {
    let shared = Shared::new(KIND, &templates_dir, &endpoints, &BTreeSet::new());
    let (name, url, file) = identity(&desired).map_err(|e| e.to_string())?;
    let what = match definition {
        Definition::IndexTemplate => "index template",
        Definition::IsmPolicy => "ISM policy",
    };
    let shown = shared.server(&url).map_err(|e| e.to_string())?.shown;
    match read_back(&shared, definition, &url, &name, &file).await {
        Ok(None) => Err(format!("{what} {name} is missing at {shown}")),
        Ok(Some(differences)) if differences.is_empty() => Ok(format!(
            "{what} {name} at {shown} is as {} defines it",
            file.file
        )),
        Ok(Some(differences)) => Err(format!(
            "{what} {name} at {shown} differs from {}: {}",
            file.file,
            differences.join("; ")
        )),
        Err(error) => Err(crate::error_chain(&error)),
    }
}

struct TemplateProvider(Shared);

impl TemplateProvider {
    async fn put(&self, desired: &Value) -> Result<Applied, ProviderError> {
        let template: IndexTemplate = spec(desired)?;
        let body = definition(&self.0, &template.definition)?;
        let server = self.0.server(&template.url)?;
        let path = template_path(&template.name);
        let answer = server
            .send(Method::PUT, &path, &[], Some((JSON, body)))
            .await?;
        expect(
            &server,
            &format!("PUT {path}"),
            answer,
            Some(&template.definition.file),
        )?;
        Ok(applied(&template.name))
    }
}

#[async_trait]
impl Converging for TemplateProvider {
    // Not marked yet: what exists under the name is taken over (see the trait).
    async fn converge(
        &self,
        desired: &Value,
        _takeover: Takeover,
    ) -> Result<Applied, ProviderError> {
        self.put(desired).await
    }

    fn id_of(&self, desired: &Value) -> Result<String, ProviderError> {
        Ok(spec::<IndexTemplate>(desired)?.name)
    }

    async fn remove(&self, _address: &str, recorded: &Recorded) -> Result<(), ProviderError> {
        if self.0.release_goes(recorded) {
            return Ok(());
        }
        let template: IndexTemplate = recorded_spec(recorded)?;
        delete(
            &self.0.server(&template.url)?,
            &template_path(&template.name),
        )
        .await
    }

    async fn observe(&self, recorded: &Recorded) -> Result<Observed, ProviderError> {
        observe(&self.0, Definition::IndexTemplate, recorded).await
    }
}

struct PolicyProvider(Shared);

impl PolicyProvider {
    async fn put(&self, desired: &Value) -> Result<Applied, ProviderError> {
        let policy: IsmPolicy = spec(desired)?;
        let body = definition(&self.0, &policy.definition)?;
        let server = self.0.server(&policy.url)?;
        let path = policy_path(&policy.name);
        let current = server.send(Method::GET, &path, &[], None).await?;
        let query = if current.status == StatusCode::NOT_FOUND {
            Vec::new()
        } else {
            let current = expect(&server, &format!("GET {path}"), current, None)?;
            let number = |key: &str| {
                current.get(key).and_then(Value::as_u64).ok_or_else(|| {
                    ProviderError::Invalid(format!(
                        "OpenSearch at {} answered GET {path} without `{key}`",
                        server.shown
                    ))
                })
            };
            vec![
                ("if_seq_no", number("_seq_no")?.to_string()),
                ("if_primary_term", number("_primary_term")?.to_string()),
            ]
        };
        let answer = server
            .send(Method::PUT, &path, &query, Some((JSON, body)))
            .await?;
        if answer.status == StatusCode::CONFLICT {
            return Err(ProviderError::Conflict(format!(
                "the ISM policy {} changed on {} while trails updated it; run apply again",
                policy.name, server.shown
            )));
        }
        expect(
            &server,
            &format!("PUT {path}"),
            answer,
            Some(&policy.definition.file),
        )?;
        Ok(applied(&policy.name))
    }
}

#[async_trait]
impl Converging for PolicyProvider {
    // Not marked yet: what exists under the name is taken over (see the trait).
    async fn converge(
        &self,
        desired: &Value,
        _takeover: Takeover,
    ) -> Result<Applied, ProviderError> {
        self.put(desired).await
    }

    fn id_of(&self, desired: &Value) -> Result<String, ProviderError> {
        Ok(spec::<IsmPolicy>(desired)?.name)
    }

    async fn remove(&self, _address: &str, recorded: &Recorded) -> Result<(), ProviderError> {
        if self.0.release_goes(recorded) {
            return Ok(());
        }
        let policy: IsmPolicy = recorded_spec(recorded)?;
        delete(&self.0.server(&policy.url)?, &policy_path(&policy.name)).await
    }

    async fn observe(&self, recorded: &Recorded) -> Result<Observed, ProviderError> {
        observe(&self.0, Definition::IsmPolicy, recorded).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_opensearch_reason_type_and_file() {
        let shared = Shared {
            kind: KIND,
            templates_dir: "templates".into(),
            endpoint: None,
            deleting: BTreeSet::new(),
        };
        let server = shared.server("http://localhost:9200").expect("server");
        let error = expect(
            &server,
            "PUT /_index_template/x",
            Answer {
                status: StatusCode::BAD_REQUEST,
                text: json!({"error": {"type": "action_request_validation_exception",
                    "reason": "Validation Failed: 1: index patterns are missing;"}, "status": 400})
                .to_string(),
            },
            Some("opensearch/x.json"),
        )
        .expect_err("a 400 fails");
        let text = error.to_string();
        assert!(text.contains("400 Bad Request"), "{text}");
        assert!(text.contains("index patterns are missing"), "{text}");
        assert!(
            text.contains("action_request_validation_exception"),
            "{text}"
        );
        assert!(text.contains("[opensearch/x.json]"), "{text}");
    }
}
