//! Helm releases, by running the `helm` binary: `upgrade --install` with a pinned chart version,
//! rolled back on failure and waited for; `uninstall --wait` on destroy.
//!
//! The layer is deliberately thin: it renders the values template to a private temporary file
//! (values may carry credentials, so they never go on a command line), builds the arguments and
//! reports helm's own error. `upgrade --install` is idempotent, which is also how a run
//! interrupted during an install resumes. `TRAILS_HELM` names another binary.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use tokio::process::Command;

use super::kube::Cluster;
use super::{
    Applied, Converging, Observed, Provider, ProviderError, Takeover, may_delete, may_take_over,
    recorded_spec, spec, template,
};
use crate::resources::helm::Release;
use crate::state::Recorded;

/// The oldest helm trails drives: release labels (`--labels`), which carry trails' mark, came
/// in 3.13 (`uninstall --wait` in 3.7, stable OCI charts in 3.8).
pub const MINIMUM: (u64, u64, u64) = (3, 13, 0);

/// Registers the release provider.
pub fn register(cluster: &Arc<Cluster>, by_kind: &mut HashMap<&'static str, Box<dyn Provider>>) {
    by_kind.insert(
        "helm.release",
        Box::new(ReleaseProvider {
            cluster: Arc::clone(cluster),
        }),
    );
}

/// The helm binary: `TRAILS_HELM`, or `helm` on the `PATH`.
pub fn binary() -> OsString {
    std::env::var_os("TRAILS_HELM").unwrap_or_else(|| OsString::from("helm"))
}

/// Checks that helm runs and is recent enough; returns its version.
pub async fn check_version() -> Result<(u64, u64, u64), ProviderError> {
    let helm = binary();
    let output = Command::new(&helm)
        .args(["version", "--template", "{{.Version}}"])
        .output()
        .await
        .map_err(|error| {
            ProviderError::Invalid(format!(
                "the blueprint has Helm releases, but `{}` cannot be run ({error}); install \
                 helm {}.{}.{} or newer, or set TRAILS_HELM to its path",
                helm.to_string_lossy(),
                MINIMUM.0,
                MINIMUM.1,
                MINIMUM.2
            ))
        })?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let version = parse_version(&text)
        .filter(|_| output.status.success())
        .ok_or_else(|| {
            ProviderError::Invalid(format!(
                "`{} version` answered {:?}{}, not a version such as v3.16.2",
                helm.to_string_lossy(),
                text,
                stderr_note(&output.stderr)
            ))
        })?;
    if version < MINIMUM {
        return Err(ProviderError::Invalid(format!(
            "helm v{}.{}.{} is too old: trails needs {}.{}.{} or newer",
            version.0, version.1, version.2, MINIMUM.0, MINIMUM.1, MINIMUM.2
        )));
    }
    if version.0 > 4 {
        return Err(ProviderError::Invalid(format!(
            "helm v{}.{}.{} is newer than trails knows (3 and 4)",
            version.0, version.1, version.2
        )));
    }
    Ok(version)
}

fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let core = text.strip_prefix('v').unwrap_or(text);
    let core = core.split(['+', '-']).next()?;
    let mut parts = core.split('.').map(|part| part.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

fn stderr_note(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(" (stderr: {text})")
    }
}

/// helm's `--timeout`: the release's `timeout_minutes`, but never longer than the apply's
/// `--wait-timeout` (helm waits for readiness, which that flag bounds for everything else).
fn timeout(timeout_minutes: u32, wait: Duration) -> String {
    let minutes = Duration::from_secs(u64::from(timeout_minutes) * 60);
    format!("{}s", minutes.min(wait).as_secs().max(1))
}

/// The arguments of `helm upgrade --install` for one release; `values` is the rendered values
/// file, `cluster` the arguments that reach the cluster, `wait` the apply's `--wait-timeout`.
pub fn install_args(
    release: &Release,
    values: &Path,
    cluster: &[String],
    create_namespace: bool,
    major: u64,
    wait: Duration,
) -> Vec<String> {
    let mut args: Vec<String> = vec!["upgrade".into(), "--install".into(), release.name.clone()];
    if release.repository.starts_with("oci://") {
        args.push(format!(
            "{}/{}",
            release.repository.trim_end_matches('/'),
            release.chart
        ));
    } else {
        args.extend([
            release.chart.clone(),
            "--repo".into(),
            release.repository.clone(),
        ]);
    }
    args.extend([
        "--version".into(),
        release.version.clone(),
        "--namespace".into(),
        release.namespace.clone(),
    ]);
    if create_namespace {
        args.push("--create-namespace".into());
    }
    // Helm 4 renamed --atomic.
    args.push(
        if major >= 4 {
            "--rollback-on-failure"
        } else {
            "--atomic"
        }
        .into(),
    );
    args.extend([
        "--wait".into(),
        "--timeout".into(),
        timeout(release.timeout_minutes, wait),
        "--values".into(),
        values.display().to_string(),
    ]);
    if let Some(labels) = labels(&release.owner) {
        args.extend(["--labels".into(), labels]);
    }
    args.extend(cluster.iter().cloned());
    args
}

/// The release labels that carry trails' mark `BLUEPRINT/ENVIRONMENT/helm.release.NAME`:
/// one label per part, as label values allow no `/` and at most 63 characters. `None` for an
/// owner of another shape (a state written before marks).
fn labels(owner: &str) -> Option<String> {
    let (blueprint, environment, name) = owner_parts(owner)?;
    Some(format!(
        "{BLUEPRINT_LABEL}={blueprint},{ENVIRONMENT_LABEL}={environment},{RESOURCE_LABEL}={name}"
    ))
}

fn owner_parts(owner: &str) -> Option<(&str, &str, &str)> {
    let mut parts = owner.splitn(3, '/');
    let (blueprint, environment, address) = (parts.next()?, parts.next()?, parts.next()?);
    Some((
        blueprint,
        environment,
        address.strip_prefix("helm.release.")?,
    ))
}

const BLUEPRINT_LABEL: &str = "trails-blueprint";
const ENVIRONMENT_LABEL: &str = "trails-environment";
const RESOURCE_LABEL: &str = "trails-resource";

/// `None` when no release `name` exists in `namespace`; else the mark it carries: `owner`
/// when its labels are that owner's, another trails owner's, or none.
async fn mark_of(
    name: &str,
    namespace: &str,
    owner: &str,
    cluster: &[String],
) -> Result<Option<Option<String>>, ProviderError> {
    match status(name, namespace, cluster).await {
        Ok(_) => {}
        Err(ProviderError::Api { message, .. }) if message.contains("not found") => {
            return Ok(None);
        }
        Err(error) => return Err(error),
    }
    let listed = |selector: String| async move {
        let mut args: Vec<String> = vec![
            "list".into(),
            "--namespace".into(),
            namespace.to_string(),
            "--all".into(),
            "--filter".into(),
            format!("^{}$", name.replace('.', "\\.")),
            "--selector".into(),
            selector,
            "--output".into(),
            "json".into(),
        ];
        args.extend(cluster.iter().cloned());
        let text = run(&format!("helm list {name}"), &args).await?;
        let found: Value = serde_json::from_str(&text).map_err(|error| ProviderError::Api {
            operation: format!("helm list {name}"),
            message: format!("answered something that is not JSON: {error}"),
        })?;
        Ok::<bool, ProviderError>(found.as_array().is_some_and(|found| !found.is_empty()))
    };
    if let Some(labels) = labels(owner)
        && listed(labels).await?
    {
        return Ok(Some(Some(owner.to_string())));
    }
    Ok(Some(listed(ENVIRONMENT_LABEL.to_string()).await?.then(
        || "another trails blueprint or environment".to_string(),
    )))
}

/// The arguments of `helm uninstall` for one release.
pub fn uninstall_args(release: &Installed, cluster: &[String], wait: Duration) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "uninstall".into(),
        release.name.clone(),
        "--namespace".into(),
        release.namespace.clone(),
        "--wait".into(),
        "--timeout".into(),
        timeout(release.timeout_minutes, wait),
    ];
    args.extend(cluster.iter().cloned());
    args
}

/// What removing a recorded release needs: where it is, whose it is, how long helm may wait.
/// Read without its values, which the state keeps as a digest when they carry a secret.
#[derive(Debug, serde::Deserialize)]
pub struct Installed {
    /// Release name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// trails' mark (empty in a state written before marks).
    #[serde(default)]
    pub owner: String,
    /// Minutes helm may wait.
    #[serde(default = "default_timeout_minutes")]
    pub timeout_minutes: u32,
}

fn default_timeout_minutes() -> u32 {
    10
}

struct ReleaseProvider {
    cluster: Arc<Cluster>,
}

/// `helm status NAME --output json`: what helm knows of a release.
pub async fn status(
    name: &str,
    namespace: &str,
    cluster: &[String],
) -> Result<Value, ProviderError> {
    json_of("status", name, namespace, cluster).await
}

/// `helm history NAME -o json`: the release's revisions, oldest first.
async fn history(name: &str, namespace: &str, cluster: &[String]) -> Result<Value, ProviderError> {
    json_of("history", name, namespace, cluster).await
}

/// `helm COMMAND NAME --namespace NAMESPACE --output json`, parsed.
async fn json_of(
    command: &str,
    name: &str,
    namespace: &str,
    cluster: &[String],
) -> Result<Value, ProviderError> {
    let mut args: Vec<String> = vec![
        command.into(),
        name.to_string(),
        "--namespace".into(),
        namespace.to_string(),
        "--output".into(),
        "json".into(),
    ];
    args.extend(cluster.iter().cloned());
    let operation = format!("helm {command} {name}");
    let text = run(&operation, &args).await?;
    serde_json::from_str(&text).map_err(|error| ProviderError::Api {
        operation,
        message: format!("answered something that is not JSON: {error}"),
    })
}

/// True when every revision after `recorded` is helm's own undoing of a failed change: a
/// failed upgrade, and the rollback `--atomic` made to `recorded` ("Rollback to N"). Such a
/// release is as trails left it, whatever its revision number.
fn only_rolled_back_since(recorded: u64, history: &Value) -> bool {
    let later: Vec<&Value> = history
        .as_array()
        .map(|revisions| {
            revisions
                .iter()
                .filter(|entry| entry.get("revision").and_then(Value::as_u64) > Some(recorded))
                .collect()
        })
        .unwrap_or_default();
    let rollback = format!("Rollback to {recorded}");
    !later.is_empty()
        && later.iter().all(|entry| {
            entry.get("status").and_then(Value::as_str) == Some("failed")
                || entry.get("description").and_then(Value::as_str) == Some(rollback.as_str())
        })
        && later
            .last()
            .and_then(|entry| entry.get("description"))
            .and_then(Value::as_str)
            == Some(rollback.as_str())
}

/// Runs helm; its stdout, or its last lines of error output as the failure.
async fn run(operation: &str, args: &[String]) -> Result<String, ProviderError> {
    let mut command = Command::new(binary());
    command.args(args).kill_on_drop(true);
    // Its own process group: a Ctrl-C at the terminal reaches trails, which lets a running
    // upgrade finish and be recorded, instead of killing helm half way (a release left
    // `pending-upgrade`).
    #[cfg(unix)]
    command.process_group(0);
    let output = command.output().await.map_err(|error| ProviderError::Api {
        operation: operation.to_string(),
        message: format!("cannot run {}: {error}", binary().to_string_lossy()),
    })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(ProviderError::Api {
            operation: operation.to_string(),
            message: last_lines(&output.stderr, &output.stdout),
        })
    }
}

impl ReleaseProvider {
    async fn install(&self, desired: &Value, takeover: Takeover) -> Result<Applied, ProviderError> {
        let release: Release = spec(desired)?;
        let major = check_version().await?.0;
        let rendered = match &release.values_template {
            Some(path) => template::render(
                &self.cluster.settings().templates_dir,
                path,
                &release.values,
            )?,
            None => String::new(),
        };
        // Private to this user and removed when dropped: values may carry credentials.
        let mut file = tempfile::Builder::new()
            .prefix("trails-values-")
            .suffix(".yaml")
            .tempfile()
            .map_err(|error| {
                ProviderError::Invalid(format!("cannot write helm values: {error}"))
            })?;
        file.write_all(rendered.as_bytes()).map_err(|error| {
            ProviderError::Invalid(format!("cannot write helm values: {error}"))
        })?;
        let kubeconfig = self.cluster.kubeconfig().await?;
        if let Some(found) = mark_of(
            &release.name,
            &release.namespace,
            &release.owner,
            &kubeconfig.args,
        )
        .await?
        {
            may_take_over(
                &format!("helm release {}/{}", release.namespace, release.name),
                found.as_deref(),
                &release.owner,
                takeover,
                &format!("{}/{}", release.namespace, release.name),
            )?;
        }
        refuse_pending(&release, &kubeconfig.args).await?;
        let args = install_args(
            &release,
            file.path(),
            &kubeconfig.args,
            !release.namespace_managed,
            major,
            self.cluster.settings().timeout,
        );
        run(&format!("helm upgrade --install {}", release.name), &args)
            .await
            .map_err(|error| match error {
                ProviderError::Api { operation, message } => ProviderError::Api {
                    operation,
                    message: format!(
                        "{message} (rolled back by helm to the release as it was before)"
                    ),
                },
                other => other,
            })?;
        let status = status(&release.name, &release.namespace, &kubeconfig.args).await?;
        let mut outputs = Map::new();
        outputs.insert("name".into(), json!(release.name));
        outputs.insert("namespace".into(), json!(release.namespace));
        outputs.insert(
            "status".into(),
            status
                .pointer("/info/status")
                .cloned()
                .unwrap_or(json!("unknown")),
        );
        outputs.insert(
            "revision".into(),
            status.get("version").cloned().unwrap_or(Value::Null),
        );
        Ok(Applied {
            id: format!("{}/{}", release.namespace, release.name),
            outputs,
        })
    }
}

/// A release left `pending-install`, `pending-upgrade` or `pending-rollback` (a helm killed
/// half way, or one still running) makes helm refuse any other operation on it. trails cannot
/// tell an interrupted helm from a running one, so it says what to run instead of guessing.
async fn refuse_pending(release: &Release, cluster: &[String]) -> Result<(), ProviderError> {
    let Ok(status) = status(&release.name, &release.namespace, cluster).await else {
        // Not installed yet (or unreadable): `upgrade --install` says what is wrong.
        return Ok(());
    };
    let Some(pending) = status
        .pointer("/info/status")
        .and_then(Value::as_str)
        .filter(|status| status.starts_with("pending-"))
    else {
        return Ok(());
    };
    let (name, namespace) = (&release.name, &release.namespace);
    let remedy = if pending == "pending-install" {
        format!("`helm uninstall {name} --namespace {namespace}` (it never finished installing)")
    } else {
        format!(
            "`helm rollback {name} --namespace {namespace}` (back to its last deployed revision)"
        )
    };
    Err(ProviderError::Conflict(format!(
        "helm release {namespace}/{name} is {pending}: a helm operation on it was interrupted or \
         is still running, and helm refuses another until it ends. If none is running, run \
         {remedy}, then run trails again"
    )))
}

/// What helm reports of a release trails installed, against what it recorded; `history` is
/// read only when the revision moved, to tell helm's own rollback of a failed upgrade from a
/// change made outside trails.
fn release_differences(
    recorded: &Recorded,
    status: &Value,
    history: Option<&Value>,
) -> Vec<String> {
    let text = |value: Option<&Value>| {
        value
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string()
    };
    let mut differences = Vec::new();
    let live = text(status.pointer("/info/status"));
    if live != "deployed" {
        differences.push(format!("status: deployed -> {live}"));
    }
    let version = text(recorded.attributes.get("version"));
    let live = text(status.pointer("/chart/metadata/version"));
    if live != version {
        differences.push(format!("chart version: {version} -> {live}"));
    }
    let revision = recorded.outputs.get("revision").and_then(Value::as_u64);
    let live = status.get("version").and_then(Value::as_u64);
    if let (Some(revision), Some(live)) = (revision, live)
        && revision != live
        && !history.is_some_and(|history| only_rolled_back_since(revision, history))
    {
        differences.push(format!(
            "revision: {revision} -> {live} (upgraded or rolled back outside trails)"
        ));
    }
    differences
}

/// The end of helm's error output: the line that says what went wrong is last.
fn last_lines(stderr: &[u8], stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(if stderr.is_empty() { stdout } else { stderr });
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    let start = lines.len().saturating_sub(5);
    if lines.is_empty() {
        "helm failed without a message".to_string()
    } else {
        lines[start..].join(" | ")
    }
}

#[async_trait]
impl Converging for ReleaseProvider {
    async fn converge(
        &self,
        desired: &Value,
        takeover: Takeover,
    ) -> Result<Applied, ProviderError> {
        self.install(desired, takeover).await
    }

    fn id_of(&self, desired: &Value) -> Result<String, ProviderError> {
        let release: Release = spec(desired)?;
        Ok(format!("{}/{}", release.namespace, release.name))
    }

    async fn remove(&self, address: &str, recorded: &Recorded) -> Result<(), ProviderError> {
        let release: Installed = recorded_spec(recorded)?;
        let kubeconfig = self.cluster.kubeconfig().await?;
        let Some(found) = mark_of(
            &release.name,
            &release.namespace,
            &release.owner,
            &kubeconfig.args,
        )
        .await?
        else {
            return Ok(());
        };
        may_delete(
            &format!("helm release {}/{}", release.namespace, release.name),
            found.as_deref(),
            &release.owner,
            address,
        )?;
        let args = uninstall_args(&release, &kubeconfig.args, self.cluster.settings().timeout);
        match run(&format!("helm uninstall {}", release.name), &args).await {
            Ok(_) => Ok(()),
            // Already gone is what a delete wants.
            Err(ProviderError::Api { message, .. }) if message.contains("not found") => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn observe(&self, recorded: &Recorded) -> Result<Observed, ProviderError> {
        // Only where it is: the recorded values may be a digest (they carry a secret).
        let Installed {
            name, namespace, ..
        } = recorded_spec(recorded)?;
        let kubeconfig = self.cluster.kubeconfig().await?;
        match status(&name, &namespace, &kubeconfig.args).await {
            Ok(status) => {
                let moved = recorded.outputs.get("revision").and_then(Value::as_u64)
                    != status.get("version").and_then(Value::as_u64);
                let history = if moved {
                    Some(history(&name, &namespace, &kubeconfig.args).await?)
                } else {
                    None
                };
                Ok(Observed::from_differences(release_differences(
                    recorded,
                    &status,
                    history.as_ref(),
                )))
            }
            Err(ProviderError::Api { message, .. }) if message.contains("not found") => {
                Ok(Observed::Gone)
            }
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helms_own_rollback_of_a_failed_upgrade_is_not_drift_but_any_other_revision_is() {
        let entry = |revision: u64, status: &str, description: &str| json!({"revision": revision, "status": status, "description": description});
        let rolled_back = json!([
            entry(1, "superseded", "Install complete"),
            entry(
                2,
                "failed",
                "Upgrade \"x\" failed: context deadline exceeded"
            ),
            entry(3, "deployed", "Rollback to 1"),
        ]);
        assert!(only_rolled_back_since(1, &rolled_back));
        let upgraded = json!([
            entry(1, "superseded", "Install complete"),
            entry(2, "deployed", "Upgrade complete"),
        ]);
        assert!(!only_rolled_back_since(1, &upgraded));
        let rolled_elsewhere = json!([
            entry(1, "superseded", "Install complete"),
            entry(2, "superseded", "Upgrade complete"),
            entry(3, "deployed", "Rollback to 2"),
        ]);
        assert!(!only_rolled_back_since(1, &rolled_elsewhere));
        assert!(!only_rolled_back_since(
            1,
            &json!([entry(1, "deployed", "Install complete")])
        ));
    }
    use std::collections::BTreeMap;

    fn release(repository: &str) -> Release {
        Release {
            owner: "platform/prod/helm.release.cert-manager".into(),
            name: "cert-manager".into(),
            chart: "cert-manager".into(),
            repository: repository.into(),
            version: "v1.16.1".into(),
            namespace: "cert-manager".into(),
            namespace_managed: true,
            values_template: None,
            values_template_digest: None,
            values: BTreeMap::new(),
            timeout_minutes: 10,
        }
    }

    #[test]
    fn versions_parse_with_or_without_suffixes() {
        assert_eq!(parse_version("v3.16.2"), Some((3, 16, 2)));
        assert_eq!(parse_version("v3.8.0+g1234"), Some((3, 8, 0)));
        assert_eq!(parse_version("3.14.0-rc.1"), Some((3, 14, 0)));
        assert_eq!(parse_version("Client: v2.17.0"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn install_pins_the_version_and_rolls_back_on_failure() {
        let args = install_args(
            &release("https://charts.jetstack.io"),
            Path::new("/tmp/v.yaml"),
            &["--kube-context".into(), "kind".into()],
            false,
            3,
            Duration::from_secs(1800),
        );
        assert_eq!(
            args.join(" "),
            "upgrade --install cert-manager cert-manager --repo https://charts.jetstack.io \
             --version v1.16.1 --namespace cert-manager --atomic --wait --timeout 600s \
             --values /tmp/v.yaml --labels trails-blueprint=platform,trails-environment=prod,\
             trails-resource=cert-manager --kube-context kind"
        );
        let oci = install_args(
            &release("oci://registry.example/charts/"),
            Path::new("v"),
            &[],
            true,
            4,
            Duration::from_secs(90),
        );
        assert_eq!(oci[3], "oci://registry.example/charts/cert-manager");
        assert!(oci.contains(&"--create-namespace".to_string()));
        assert!(oci.contains(&"--rollback-on-failure".to_string()));
        assert!(!oci.contains(&"--atomic".to_string()));
        // A shorter --wait-timeout bounds helm's wait too.
        assert!(oci.join(" ").contains("--wait --timeout 90s"));
    }

    #[test]
    fn failures_keep_helms_last_lines() {
        assert_eq!(
            last_lines(b"\nwarning: x\nError: UPGRADE FAILED: timed out\n", b""),
            "warning: x | Error: UPGRADE FAILED: timed out"
        );
        assert_eq!(last_lines(b"", b""), "helm failed without a message");
    }
}
