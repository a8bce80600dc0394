//! Reads recorded resources back from where they live, for `plan --refresh`, `apply --refresh`
//! and `trails diff`: what was deleted or changed outside trails. Reading never writes: each
//! type's [`Provider::read`] makes only Describe/Get/List/Head calls. A resource that holds a
//! copy of a secret (a Kubernetes Secret with the RDS master password) has drifted when the
//! secret was rotated since: its recorded version is no longer the current one.

use futures_util::stream::{self, StreamExt};
use serde_json::{Map, Value};

pub use crate::plan::Refreshed;
use crate::providers::{Observed, Provider, ProviderError, Providers, Read, compare};
use crate::state::{Recorded, State};

/// Reading some resources back failed: the refresh is incomplete, so nothing is planned on it.
#[derive(Debug, thiserror::Error)]
#[error("could not read back {}", failures.iter().map(|(address, error)| format!("{address}: {error}")).collect::<Vec<_>>().join("; "))]
pub struct RefreshError {
    /// Address and error of each resource that could not be read.
    pub failures: Vec<(String, ProviderError)>,
}

/// Reads every recorded resource back, `parallelism` at a time. Types whose provider does not
/// read back are [`Observed::NotChecked`].
pub async fn observe(
    state: &State,
    providers: &Providers,
    parallelism: usize,
) -> Result<Refreshed, RefreshError> {
    let results: Vec<(String, Result<Found, ProviderError>)> = stream::iter(state.resources.iter())
        .map(|(address, recorded)| async move {
            let found = match providers.get(&recorded.kind) {
                Some(provider) => read_back(provider, address, recorded).await,
                None => Ok((Observed::NotChecked, None)),
            };
            let found = match found {
                Ok(found) if !recorded.secret_versions.is_empty() => providers
                    .secrets()
                    .rotated(&recorded.secret_versions)
                    .await
                    .map(|rotated| with_rotated(found, rotated)),
                other => other,
            };
            (address.clone(), found)
        })
        .buffer_unordered(parallelism.max(1))
        .collect()
        .await;
    let mut refreshed = Refreshed::default();
    let mut failures = Vec::new();
    for (address, result) in results {
        match result {
            Ok((observed, live)) => {
                if let Some(live) = live {
                    refreshed.live.insert(address.clone(), live);
                }
                refreshed.observed.insert(address, observed);
            }
            Err(error) => failures.push((address, error)),
        }
    }
    if failures.is_empty() {
        Ok(refreshed)
    } else {
        failures.sort_by(|a, b| a.0.cmp(&b.0));
        Err(RefreshError { failures })
    }
}

/// What one resource looks like, and the attributes to repair it from when it drifted.
type Found = (Observed, Option<Map<String, Value>>);

/// `found` with the secrets rotated since the resource was applied: a resource that holds an
/// old copy of a secret's value has drifted, and its update copies the current one.
fn with_rotated((observed, live): Found, rotated: Vec<String>) -> Found {
    if rotated.is_empty() {
        return (observed, live);
    }
    let observed = match observed {
        Observed::Gone => Observed::Gone,
        Observed::Changed(mut differences) => {
            differences.extend(rotated);
            Observed::Changed(differences)
        }
        Observed::NotChecked | Observed::Matches | Observed::Exists => Observed::Changed(rotated),
    };
    (observed, live)
}

async fn read_back(
    provider: &dyn Provider,
    address: &str,
    recorded: &Recorded,
) -> Result<Found, ProviderError> {
    match provider.read(address, recorded).await? {
        None => Ok((provider.observe(address, recorded).await?, None)),
        Some(Read::Gone) => Ok((Observed::Gone, None)),
        Some(Read::Live(live)) if live.is_empty() => Ok((Observed::Exists, None)),
        Some(Read::Live(live)) => {
            let differences = provider.differences(recorded.attributes.clone(), live.clone());
            if differences.is_empty() {
                Ok((Observed::Matches, None))
            } else {
                let merged = compare::merge_live(&recorded.attributes, &live);
                Ok((Observed::Changed(differences), Some(merged)))
            }
        }
    }
}
