//! What the day-one providers that speak HTTP share (OpenSearch, ClickHouse): where the server
//! is (the blueprint's cluster-internal URL or an `--endpoint` override), logging in with the
//! override's user and password (HTTP basic auth, never printed), extra CA certificates,
//! retrying only when the server does not answer, and the definition files under `templates/`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};

use super::ProviderError;
use crate::error_chain;
use crate::resources::dayone::Migration;
use crate::state::Recorded;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Attempts after the first when the server does not answer at all.
const RETRIES: usize = 4;

/// One kind of server: its endpoint name and how to reach it from outside the cluster.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    /// `--endpoint` name, also the blueprint's section: `opensearch`, `clickhouse`.
    pub endpoint: &'static str,
    /// For messages: `OpenSearch`.
    pub product: &'static str,
    /// Environment variable naming a PEM file of CA certificates to trust.
    pub ca_variable: &'static str,
    /// An example local URL for the hint, e.g. `https://USER:PASSWORD@localhost:9200`.
    pub example: &'static str,
}

/// What a provider of such a server knows for the whole run.
#[derive(Debug, Clone)]
pub struct Shared {
    /// Which kind of server.
    pub kind: Kind,
    /// Where definition files are.
    pub templates_dir: PathBuf,
    /// `--endpoint NAME=URL`, if given.
    pub endpoint: Option<String>,
    /// Addresses the run deletes.
    pub deleting: BTreeSet<String>,
}

/// One server: where, and how to log in.
pub struct Server {
    http: reqwest::Client,
    base: url::Url,
    login: Option<(String, String)>,
    /// `scheme://host:port`, for messages (never the password).
    pub shown: String,
    overridden: bool,
    kind: Kind,
}

/// What the server answered.
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// Body as text.
    pub text: String,
}

impl Shared {
    /// What a provider of `kind` knows for the run: the templates, the `--endpoint` override of
    /// its name, the addresses the run deletes.
    pub fn new(
        kind: Kind,
        templates_dir: &Path,
        endpoints: &std::collections::BTreeMap<String, String>,
        deleting: &BTreeSet<String>,
    ) -> Self {
        Self {
            kind,
            templates_dir: templates_dir.to_path_buf(),
            endpoint: endpoints.get(kind.endpoint).cloned(),
            deleting: deleting.clone(),
        }
    }

    /// The server for the blueprint's `url`, or the override.
    pub fn server(&self, url: &str) -> Result<Server, ProviderError> {
        let (text, overridden) = match &self.endpoint {
            Some(url) => (url.as_str(), true),
            None => (url, false),
        };
        let mut base = url::Url::parse(text).map_err(|error| {
            ProviderError::Invalid(if overridden {
                format!("--endpoint {}: not a URL ({error})", self.kind.endpoint)
            } else {
                format!("{}.url: not a URL ({error})", self.kind.endpoint)
            })
        })?;
        let login = (!base.username().is_empty()).then(|| {
            let user = percent_decoded(base.username());
            let password = base.password().map(percent_decoded).unwrap_or_default();
            (user, password)
        });
        // Neither can fail on a URL with a host; a URL without one fails at the request.
        let _ = base.set_username("");
        let _ = base.set_password(None);
        let shown = format!(
            "{}://{}:{}",
            base.scheme(),
            base.host_str().unwrap_or_default(),
            base.port_or_known_default().unwrap_or_default()
        );
        let mut builder = reqwest::Client::builder().timeout(REQUEST_TIMEOUT);
        if let Some(file) = std::env::var_os(self.kind.ca_variable) {
            let variable = self.kind.ca_variable;
            let shown_file = Path::new(&file).display().to_string();
            let bytes = std::fs::read(&file).map_err(|error| {
                ProviderError::Invalid(format!("{variable}={shown_file}: cannot read it ({error})"))
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&bytes).map_err(|error| {
                ProviderError::Invalid(format!(
                    "{variable}={shown_file}: not PEM certificates ({error})"
                ))
            })?;
            for certificate in certificates {
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
            kind: self.kind,
        })
    }

    /// A definition file's text, refused when it changed since the plan.
    pub fn definition(&self, definition: &Migration) -> Result<String, ProviderError> {
        let path = self.templates_dir.join(&definition.file);
        let bytes = std::fs::read(&path).map_err(|error| {
            ProviderError::Invalid(format!("cannot read {}: {error}", path.display()))
        })?;
        if digest(&bytes) != definition.digest {
            return Err(ProviderError::Conflict(format!(
                "{} changed since the plan was made; plan again",
                definition.file
            )));
        }
        String::from_utf8(bytes)
            .map_err(|_| ProviderError::Invalid(format!("{} is not UTF-8 text", definition.file)))
    }

    /// True when the run also uninstalls a release this resource depends on: the server goes
    /// with it, and so does what it holds.
    pub fn release_goes(&self, recorded: &Recorded) -> bool {
        recorded
            .depends_on
            .iter()
            .any(|address| address.starts_with("helm.release.") && self.deleting.contains(address))
    }
}

/// `sha256:...` of a file's bytes, as the plan records it.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn percent_decoded(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

impl Server {
    /// Sends one request, retrying only when the server did not answer at all.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<(&'static str, String)>,
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
            if let Some((content_type, body)) = &body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, *content_type)
                    .body(body.clone());
            }
            request.send().await
        };
        let response = attempt
            .retry(
                ExponentialBuilder::default()
                    .with_max_times(RETRIES)
                    .with_jitter(),
            )
            .when(|error: &reqwest::Error| error.is_connect() || error.is_timeout())
            .await
            .map_err(|error| ProviderError::Api {
                operation: operation.clone(),
                message: format!(
                    "no answer from {} at {}: {}{}",
                    self.kind.product,
                    self.shown,
                    error_chain(&error),
                    if self.overridden {
                        String::new()
                    } else {
                        format!(
                            "; the cluster-internal address answers only inside the cluster: \
                             forward a port and give `--endpoint {}={}`",
                            self.kind.endpoint, self.kind.example
                        )
                    }
                ),
            })?;
        let status = response.status();
        let text = response.text().await.map_err(|error| ProviderError::Api {
            operation,
            message: error_chain(&error),
        })?;
        Ok(Answer { status, text })
    }

    /// An error for an answer that is not a success: its status and `reason`, and the file.
    pub fn refused(
        &self,
        operation: &str,
        status: StatusCode,
        reason: &str,
        file: Option<&str>,
    ) -> ProviderError {
        ProviderError::Api {
            operation: operation.to_string(),
            message: format!(
                "{} at {} answered {status}: {reason}{}",
                self.kind.product,
                self.shown,
                file.map(|file| format!(" [{file}]")).unwrap_or_default()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIND: Kind = Kind {
        endpoint: "opensearch",
        product: "OpenSearch",
        ca_variable: "TRAILS_TEST_UNSET_CA",
        example: "https://USER:PASSWORD@localhost:9200",
    };

    pub fn shared(endpoint: Option<&str>) -> Shared {
        Shared {
            kind: KIND,
            templates_dir: PathBuf::from("templates"),
            endpoint: endpoint.map(String::from),
            deleting: BTreeSet::new(),
        }
    }

    #[test]
    fn the_login_comes_from_the_url_and_is_never_shown() {
        let server = shared(None)
            .server("https://admin:p%40ss%2Bw@opensearch.example:9200/")
            .expect("a server");
        assert_eq!(
            server.login,
            Some(("admin".to_string(), "p@ss+w".to_string()))
        );
        assert_eq!(server.shown, "https://opensearch.example:9200");
        assert_eq!(server.base.as_str(), "https://opensearch.example:9200/");
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
    fn deletes_are_left_to_a_release_uninstalled_in_the_same_run() {
        let mut shared = shared(None);
        let recorded = Recorded {
            kind: "opensearch.ism_policy".into(),
            id: Some("p".into()),
            attributes: serde_json::Map::new(),
            outputs: serde_json::Map::new(),
            depends_on: ["helm.release.opensearch-data".to_string()].into(),
            secret_versions: Default::default(),
        };
        assert!(!shared.release_goes(&recorded));
        shared.deleting.insert("helm.release.other".into());
        assert!(!shared.release_goes(&recorded));
        shared
            .deleting
            .insert("helm.release.opensearch-data".into());
        assert!(shared.release_goes(&recorded));
    }
}
