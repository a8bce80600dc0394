//! Reads recorded resources back from where they live, for `plan --refresh`, `apply --refresh`
//! and `trails diff`: what was deleted or changed outside trails.

use std::collections::BTreeMap;

use futures_util::stream::{self, StreamExt};

use crate::providers::{Observed, ProviderError, Providers};
use crate::state::State;

/// Reading some resources back failed: the refresh is incomplete, so nothing is planned on it.
#[derive(Debug, thiserror::Error)]
#[error("could not read back {}", failures.iter().map(|(address, error)| format!("{address}: {error}")).collect::<Vec<_>>().join("; "))]
pub struct RefreshError {
    /// Address and error of each resource that could not be read.
    pub failures: Vec<(String, ProviderError)>,
}

/// What every recorded resource looks like now, by address, reading `parallelism` at a time.
/// Types whose provider does not read back are [`Observed::NotChecked`].
pub async fn observe(
    state: &State,
    providers: &Providers,
    parallelism: usize,
) -> Result<BTreeMap<String, Observed>, RefreshError> {
    let results: Vec<(String, Result<Observed, ProviderError>)> =
        stream::iter(state.resources.iter())
            .map(|(address, recorded)| async move {
                let observed = match providers.get(&recorded.kind) {
                    Some(provider) => provider.observe(address, recorded).await,
                    None => Ok(Observed::NotChecked),
                };
                (address.clone(), observed)
            })
            .buffer_unordered(parallelism.max(1))
            .collect()
            .await;
    let mut observed = BTreeMap::new();
    let mut failures = Vec::new();
    for (address, result) in results {
        match result {
            Ok(found) => {
                observed.insert(address, found);
            }
            Err(error) => failures.push((address, error)),
        }
    }
    if failures.is_empty() {
        Ok(observed)
    } else {
        failures.sort_by(|a, b| a.0.cmp(&b.0));
        Err(RefreshError { failures })
    }
}
