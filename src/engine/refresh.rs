//! Reads recorded resources back from where they live, for `plan --refresh`, `apply --refresh`
//! and `trails diff`: what was deleted or changed outside trails. Reading never writes: each
//! type's [`Provider::read`] makes only Describe/Get/List/Head calls.

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
