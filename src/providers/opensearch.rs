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
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Applied, Provider, ProviderError, recorded_spec, spec};
use crate::error_chain;
use crate::resources::dayone::{IndexTemplate, IsmPolicy, Migration};
use crate::state::Recorded;

/// The endpoint override's name.
pub const ENDPOINT: &str = "opensearch";

/// The environment variable naming a PEM file of CA certificates to trust.
pub const CA_VARIABLE: &str = "TRAILS_OPENSEARCH_CA";

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Attempts after the first when the server does not answer at all.
const RETRIES: usize = 4;

/// Registers the index template and ISM policy providers.
pub fn register(
    templates_dir: &Path,
    endpoints: &BTreeMap<String, String>,
    deleting: &BTreeSet<String>,
    by_kind: &mut HashMap<&'static str, Box<dyn Provider>>,
) {
    let shared = Shared {
        templates_dir: templates_dir.to_path_buf(),
        endpoint: endpoints.get(ENDPOINT).cloned(),
        deleting: deleting.clone(),
    };
    by_kind.insert(
        "opensearch.index_template",
        Box::new(TemplateProvider(shared.clone())),
    );
    by_kind.insert("opensearch.ism_policy", Box::new(PolicyProvider(shared)));
}

#[derive(Clone)]
struct Shared {
    templates_dir: PathBuf,
    endpoint: Option<String>,
    deleting: BTreeSet<String>,
}

/// One OpenSearch server: where, and how to log in.
struct Server {
    http: reqwest::Client,
    base: url::Url,
    login: Option<(String, String)>,
    /// `scheme://host:port`, for messages (never the password).
    shown: String,
    overridden: bool,
}

/// What the server answered.
struct Answer {
    status: StatusCode,
    body: Value,
}

impl Shared {
    fn server(&self, url: &str) -> Result<Server, ProviderError> {
        let (text, overridden) = match &self.endpoint {
            Some(url) => (url.as_str(), true),
            None => (url, false),
        };
        let mut base = url::Url::parse(text).map_err(|error| {
            ProviderError::Invalid(format!(
                "{}: not a URL ({error})",
                if overridden {
                    "--endpoint opensearch"
                } else {
                    "opensearch.url"
                }
            ))
        })?;
        let login = (!base.username().is_empty()).then(|| {
            let user = percent_decoded(base.username());
            let password = base.password().map(percent_decoded).unwrap_or_default();
            (user, password)
        });
        // Neither part can fail on a URL with a host; a URL without one fails at the request.
        let _ = base.set_username("");
        let _ = base.set_password(None);
        let shown = format!(
            "{}://{}:{}",
            base.scheme(),
            base.host_str().unwrap_or_default(),
            base.port_or_known_default().unwrap_or_default()
        );
        let mut builder = reqwest::Client::builder().timeout(REQUEST_TIMEOUT);
        if let Some(file) = std::env::var_os(CA_VARIABLE) {
            let bytes = std::fs::read(&file).map_err(|error| {
                ProviderError::Invalid(format!(
                    "{CA_VARIABLE}={}: cannot read it ({error})",
                    Path::new(&file).display()
                ))
            })?;
            for certificate in reqwest::Certificate::from_pem_bundle(&bytes).map_err(|error| {
                ProviderError::Invalid(format!(
                    "{CA_VARIABLE}={}: not PEM certificates ({error})",
                    Path::new(&file).display()
                ))
            })? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .build()
            .map_err(|error| ProviderError::Invalid(format!("HTTP client: {error}")))?;
        Ok(Server {
            http,
            base,
            login,
            shown,
            overridden,
        })
    }

    /// The definition file's JSON, refused when it changed since the plan.
    fn definition(&self, definition: &Migration) -> Result<Value, ProviderError> {
        let path = self.templates_dir.join(&definition.file);
        let bytes = std::fs::read(&path).map_err(|error| {
            ProviderError::Invalid(format!("cannot read {}: {error}", path.display()))
        })?;
        if format!("sha256:{:x}", Sha256::digest(&bytes)) != definition.digest {
            return Err(ProviderError::Conflict(format!(
                "{} changed since the plan was made; plan again",
                definition.file
            )));
        }
        serde_json::from_slice(&bytes).map_err(|error| {
            ProviderError::Invalid(format!("{} is not JSON: {error}", definition.file))
        })
    }

    /// True when the run also uninstalls a release this resource depends on.
    fn release_goes(&self, recorded: &Recorded) -> bool {
        recorded
            .depends_on
            .iter()
            .any(|address| address.starts_with("helm.release.") && self.deleting.contains(address))
    }
}

fn percent_decoded(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

impl Server {
    /// Sends one request, retrying only when the server did not answer at all.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Answer, ProviderError> {
        let mut url = self.base.clone();
        url.set_path(&format!("{}{path}", self.base.path().trim_end_matches('/')));
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let operation = format!("{method} {path}");
        let attempt = || async {
            let mut request = self.http.request(method.clone(), url.clone());
            if let Some((user, password)) = &self.login {
                request = request.basic_auth(user, Some(password));
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            request.send().await
        };
        let response = attempt
            .retry(ExponentialBuilder::default().with_max_times(RETRIES).with_jitter())
            .when(|error: &reqwest::Error| error.is_connect() || error.is_timeout())
            .await
            .map_err(|error| ProviderError::Api {
                operation: operation.clone(),
                message: format!(
                    "no answer from OpenSearch at {}: {}{}",
                    self.shown,
                    error_chain(&error),
                    if self.overridden {
                        ""
                    } else {
                        "; the cluster-internal address answers only inside the cluster: \
                         forward a port and give `--endpoint opensearch=https://USER:PASSWORD@localhost:9200`"
                    }
                ),
            })?;
        let status = response.status();
        let text = response.text().await.map_err(|error| ProviderError::Api {
            operation: operation.clone(),
            message: error_chain(&error),
        })?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Answer { status, body })
    }

    /// The answer if its status is a success, else an error with OpenSearch's reason.
    fn expect(
        &self,
        operation: &str,
        answer: Answer,
        file: Option<&str>,
    ) -> Result<Value, ProviderError> {
        if answer.status.is_success() {
            return Ok(answer.body);
        }
        let reason = answer
            .body
            .pointer("/error/reason")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| answer.body.as_str().map(|text| text.trim().to_string()))
            .unwrap_or_else(|| answer.body.to_string());
        let kind = answer
            .body
            .pointer("/error/type")
            .and_then(Value::as_str)
            .map(|kind| format!(" ({kind})"))
            .unwrap_or_default();
        Err(ProviderError::Api {
            operation: operation.to_string(),
            message: format!(
                "OpenSearch at {} answered {}: {reason}{kind}{}",
                self.shown,
                answer.status,
                file.map(|file| format!(" [{file}]")).unwrap_or_default()
            ),
        })
    }

    /// Deletes `path`; a 404 means it is gone already.
    async fn delete(&self, path: &str) -> Result<(), ProviderError> {
        let answer = self.send(Method::DELETE, path, &[], None).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        self.expect(&format!("DELETE {path}"), answer, None)
            .map(|_| ())
    }
}

fn applied(name: &str) -> Applied {
    Applied {
        id: name.to_string(),
        outputs: [("name".to_string(), json!(name))].into_iter().collect(),
    }
}

fn template_path(name: &str) -> String {
    format!("/_index_template/{name}")
}

fn policy_path(name: &str) -> String {
    format!("/_plugins/_ism/policies/{name}")
}

struct TemplateProvider(Shared);

impl TemplateProvider {
    async fn put(&self, desired: &Value) -> Result<Applied, ProviderError> {
        let template: IndexTemplate = spec(desired)?;
        let body = self.0.definition(&template.definition)?;
        let server = self.0.server(&template.url)?;
        let path = template_path(&template.name);
        let answer = server.send(Method::PUT, &path, &[], Some(&body)).await?;
        server.expect(
            &format!("PUT {path}"),
            answer,
            Some(&template.definition.file),
        )?;
        Ok(applied(&template.name))
    }
}

#[async_trait]
impl Provider for TemplateProvider {
    async fn find(
        &self,
        _address: &str,
        _desired: &Value,
    ) -> Result<Option<Applied>, ProviderError> {
        // PUT creates or replaces: creating again is adopting.
        Ok(None)
    }

    async fn create(&self, _address: &str, desired: &Value) -> Result<Applied, ProviderError> {
        self.put(desired).await
    }

    async fn update(
        &self,
        _address: &str,
        _recorded: &Recorded,
        desired: &Value,
    ) -> Result<Applied, ProviderError> {
        self.put(desired).await
    }

    async fn delete(&self, _address: &str, recorded: &Recorded) -> Result<(), ProviderError> {
        if self.0.release_goes(recorded) {
            return Ok(());
        }
        let template: IndexTemplate = recorded_spec(recorded)?;
        self.0
            .server(&template.url)?
            .delete(&template_path(&template.name))
            .await
    }
}

struct PolicyProvider(Shared);

impl PolicyProvider {
    async fn put(&self, desired: &Value) -> Result<Applied, ProviderError> {
        let policy: IsmPolicy = spec(desired)?;
        let body = self.0.definition(&policy.definition)?;
        let server = self.0.server(&policy.url)?;
        let path = policy_path(&policy.name);
        let current = server.send(Method::GET, &path, &[], None).await?;
        let query = if current.status == StatusCode::NOT_FOUND {
            Vec::new()
        } else {
            let current = server.expect(&format!("GET {path}"), current, None)?;
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
        let answer = server.send(Method::PUT, &path, &query, Some(&body)).await?;
        if answer.status == StatusCode::CONFLICT {
            return Err(ProviderError::Conflict(format!(
                "the ISM policy {} changed on {} while trails updated it; run apply again",
                policy.name, server.shown
            )));
        }
        server.expect(
            &format!("PUT {path}"),
            answer,
            Some(&policy.definition.file),
        )?;
        Ok(applied(&policy.name))
    }
}

#[async_trait]
impl Provider for PolicyProvider {
    async fn find(
        &self,
        _address: &str,
        _desired: &Value,
    ) -> Result<Option<Applied>, ProviderError> {
        // A policy that exists is updated in place by create: creating again is adopting.
        Ok(None)
    }

    async fn create(&self, _address: &str, desired: &Value) -> Result<Applied, ProviderError> {
        self.put(desired).await
    }

    async fn update(
        &self,
        _address: &str,
        _recorded: &Recorded,
        desired: &Value,
    ) -> Result<Applied, ProviderError> {
        self.put(desired).await
    }

    async fn delete(&self, _address: &str, recorded: &Recorded) -> Result<(), ProviderError> {
        if self.0.release_goes(recorded) {
            return Ok(());
        }
        let policy: IsmPolicy = recorded_spec(recorded)?;
        self.0
            .server(&policy.url)?
            .delete(&policy_path(&policy.name))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(endpoint: Option<&str>) -> Shared {
        Shared {
            templates_dir: PathBuf::from("templates"),
            endpoint: endpoint.map(String::from),
            deleting: BTreeSet::new(),
        }
    }

    #[test]
    fn the_login_comes_from_the_url_and_is_never_shown() {
        let server = shared(None)
            .server("https://admin:p%40ss@opensearch.example:9200/")
            .expect("a server");
        assert_eq!(
            server.login,
            Some(("admin".to_string(), "p@ss".to_string()))
        );
        assert_eq!(server.shown, "https://opensearch.example:9200");
        assert_eq!(server.base.as_str(), "https://opensearch.example:9200/");
    }

    #[test]
    fn deletes_are_left_to_a_release_uninstalled_in_the_same_run() {
        let mut shared = shared(None);
        let recorded = Recorded {
            kind: "opensearch.ism_policy".into(),
            id: Some("p".into()),
            attributes: serde_json::Map::new(),
            outputs: serde_json::Map::new(),
            depends_on: ["helm.release.opensearch-data".to_string()].into(),
        };
        assert!(!shared.release_goes(&recorded));
        shared.deleting.insert("helm.release.other".into());
        assert!(!shared.release_goes(&recorded));
        shared
            .deleting
            .insert("helm.release.opensearch-data".into());
        assert!(shared.release_goes(&recorded));
    }

    #[test]
    fn the_endpoint_override_wins_and_a_bad_one_is_named() {
        let server = shared(Some("http://127.0.0.1:9201"))
            .server("https://opensearch.svc:9200")
            .expect("a server");
        assert_eq!(server.shown, "http://127.0.0.1:9201");
        assert!(server.overridden);
        let error = shared(Some("not a url"))
            .server("https://opensearch.svc:9200")
            .err()
            .expect("refused");
        assert!(
            error.to_string().contains("--endpoint opensearch"),
            "{error}"
        );
    }

    #[test]
    fn errors_carry_opensearch_reason_type_and_file() {
        let server = shared(None)
            .server("http://localhost:9200")
            .expect("server");
        let error = server
            .expect(
                "PUT /_index_template/x",
                Answer {
                    status: StatusCode::BAD_REQUEST,
                    body: json!({"error": {"type": "action_request_validation_exception",
                        "reason": "Validation Failed: 1: index patterns are missing;"}, "status": 400}),
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
