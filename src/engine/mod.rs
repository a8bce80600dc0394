//! Executes a plan: changes run concurrently up to a bound, each as soon as what it waits for
//! has succeeded; every completed change is written to the state at once, so an interrupted
//! or failed run loses nothing and the next one continues where this one stopped.

pub mod progress;
pub mod refresh;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::task::JoinSet;

use crate::graph::Graph;
use crate::plan::{Action, Change, Plan};
use crate::providers::{Applied, ProviderError, Providers};
use crate::state::store::Store;
use crate::state::{Intent, Recorded, StateError};

pub use progress::{Event, Progress};

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Most changes in flight at once.
    pub parallelism: usize,
}

/// What happened to each change.
#[derive(Debug, Default)]
pub struct Report {
    /// Changes that completed, in completion order.
    pub completed: Vec<String>,
    /// Changes that failed, with the reason.
    pub failed: Vec<(String, String)>,
    /// Changes not started because something they wait for failed, or because of an interrupt.
    pub skipped: Vec<(String, String)>,
    /// The run was interrupted (Ctrl-C); what was running finished and was recorded.
    pub interrupted: bool,
    /// Why the run stopped starting changes other than an interrupt (the state could not be
    /// written where it lives).
    pub stopped: Option<String>,
    /// A second interrupt ended the run at once: the changes still running were abandoned
    /// (listed in `skipped`); their intents are recorded, so the next run finds what they made.
    pub abandoned: bool,
}

impl Report {
    /// True when every change completed.
    pub fn succeeded(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty() && !self.interrupted
    }
}

/// Errors that stop the engine itself (as opposed to one change failing).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The plan names a resource type trails cannot apply yet.
    #[error(
        "apply cannot execute these changes yet: {0}. Supported resource types so far: {supported}",
        supported = crate::providers::supported().join(", ")
    )]
    Unsupported(String),
    /// A change's resource is not in the graph (a plan from another blueprint version).
    #[error("the plan changes {0}, which the blueprint does not declare; plan again")]
    NotInGraph(String),
    /// The state could not be written: stop before anything else is lost.
    #[error(transparent)]
    State(#[from] StateError),
}

/// What one finished task tells the scheduler.
enum Effect {
    /// The resource exists as desired; record it, with the version of each secret whose value
    /// went into it.
    Applied(Applied, BTreeMap<String, String>),
    /// The resource is gone; forget it.
    Deleted,
}

/// Refuses, before any call, a plan with resource types no provider handles yet.
pub fn preflight(plan: &Plan, providers: &Providers) -> Result<(), EngineError> {
    let missing: BTreeSet<&str> = plan
        .changes
        .iter()
        .filter(|change| change.action.is_change())
        .filter(|change| providers.get(&change.kind).is_none())
        .map(|change| change.kind.as_str())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(EngineError::Unsupported(
            missing.into_iter().collect::<Vec<_>>().join(", "),
        ))
    }
}

/// Executes the changes of `plan`; `graph` supplies desired attributes for creates and updates.
pub async fn execute(
    plan: &Plan,
    graph: &Graph,
    store: &mut Store,
    providers: Arc<Providers>,
    options: &Options,
    progress: &dyn Progress,
) -> Result<Report, EngineError> {
    let changes: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|change| change.action.is_change())
        .collect();
    for change in &changes {
        if change.action != Action::Delete && graph.get(&change.address).is_none() {
            return Err(EngineError::NotInGraph(change.address.clone()));
        }
    }
    let waits_for = prerequisites(&changes, store);
    let mut pending: BTreeSet<usize> = (0..changes.len()).collect();
    // Changes whose intent this run wrote (not an earlier run's).
    let mut fresh_intents: BTreeSet<usize> = BTreeSet::new();
    let mut done: BTreeSet<usize> = BTreeSet::new();
    let mut running: JoinSet<(usize, Duration, Result<Effect, ProviderError>)> = JoinSet::new();
    let mut report = Report::default();
    let parallelism = options.parallelism.max(1);
    let interrupt = interruption();
    tokio::pin!(interrupt);
    // Armed by the first interrupt: a second one abandons what is still running.
    let mut again: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> = None;
    let mut in_flight: BTreeSet<usize> = BTreeSet::new();

    loop {
        if !report.interrupted {
            let ready: Vec<usize> = pending
                .iter()
                .copied()
                .filter(|index| waits_for[*index].iter().all(|w| done.contains(w)))
                .take(parallelism.saturating_sub(running.len()))
                .collect();
            for index in ready {
                pending.remove(&index);
                let change = changes[index];
                let mut task = Task::new(change, graph, store)?;
                // The intent to create is durable before anything is made (an earlier run's,
                // with its older time, is kept: that run may have made it).
                if task.creates() && task.intent.is_none() {
                    let depends_on = graph
                        .get(&change.address)
                        .map(|resource| resource.depends_on.clone())
                        .unwrap_or_default();
                    let intent = Intent::now(&change.kind, depends_on);
                    task.token = intent.token.clone();
                    store
                        .update(|state| {
                            state.intents.insert(change.address.clone(), intent);
                        })
                        .await?;
                    fresh_intents.insert(index);
                }
                progress.event(&Event::Started {
                    address: change.address.clone(),
                    action: change.action,
                });
                let providers = Arc::clone(&providers);
                in_flight.insert(index);
                running.spawn(async move {
                    let started = Instant::now();
                    let result = task.run(&providers).await;
                    (index, started.elapsed(), result)
                });
            }
        }
        if running.is_empty() {
            break;
        }
        let finished = tokio::select! {
            finished = running.join_next() => finished,
            _ = &mut interrupt, if again.is_none() => {
                report.interrupted = true;
                again = Some(Box::pin(interruption()));
                progress.event(&Event::Interrupted { running: running.len() });
                continue;
            }
            _ = async {
                match again.as_mut() {
                    Some(again) => again.await,
                    None => std::future::pending().await,
                }
            }, if again.is_some() => {
                running.abort_all();
                report.abandoned = true;
                progress.event(&Event::Abandoned { running: in_flight.len() });
                for index in std::mem::take(&mut in_flight) {
                    report.skipped.push((
                        changes[index].address.clone(),
                        "abandoned while running (second interrupt); the next run finds what \
                         it made"
                            .to_string(),
                    ));
                }
                break;
            }
        };
        let Some(finished) = finished else { break };
        let (index, elapsed, result) = match finished {
            Ok(outcome) => {
                in_flight.remove(&outcome.0);
                outcome
            }
            Err(join_error) => {
                // A panicking provider is a bug; report it like a failed change.
                report
                    .failed
                    .push(("(unknown)".to_string(), join_error.to_string()));
                continue;
            }
        };
        let change = changes[index];
        match result {
            Ok(effect) => {
                record(store, graph, change, effect).await?;
                if let Some(reason) = store.stopping()
                    && !report.interrupted
                {
                    report.interrupted = true;
                    report.stopped = Some(reason);
                    progress.event(&Event::Interrupted {
                        running: running.len(),
                    });
                }
                done.insert(index);
                report.completed.push(change.address.clone());
                progress.event(&Event::Finished {
                    address: change.address.clone(),
                    action: change.action,
                    elapsed,
                });
            }
            Err(error) => {
                // Refused because what exists is not this environment's: this run's create
                // made nothing, so its intent must not make a destroy adopt what exists.
                if matches!(error, ProviderError::NotOurs(_)) && fresh_intents.contains(&index) {
                    store
                        .update(|state| {
                            state.intents.shift_remove(&change.address);
                        })
                        .await?;
                }
                let message = error.to_string();
                progress.event(&Event::Failed {
                    address: change.address.clone(),
                    error: message.clone(),
                });
                report.failed.push((change.address.clone(), message));
                // Everything that waits for this change, directly or not, cannot start.
                let mut blocked = vec![index];
                while let Some(failed) = blocked.pop() {
                    let dependents: Vec<usize> = pending
                        .iter()
                        .copied()
                        .filter(|p| waits_for[*p].contains(&failed))
                        .collect();
                    for dependent in dependents {
                        pending.remove(&dependent);
                        report.skipped.push((
                            changes[dependent].address.clone(),
                            format!("{} failed", changes[failed].address),
                        ));
                        blocked.push(dependent);
                    }
                }
            }
        }
    }
    let reason = if let Some(stopped) = &report.stopped {
        stopped.as_str()
    } else if report.interrupted {
        "interrupted"
    } else {
        "its prerequisites never completed (an ordering bug in trails; please report it)"
    };
    for index in pending {
        report
            .skipped
            .push((changes[index].address.clone(), reason.to_string()));
    }
    Ok(report)
}

/// Resolves on Ctrl-C or SIGTERM (what a cancelled CI job sends): either stops new changes
/// and lets the running ones finish and be recorded.
async fn interruption() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// For each change, the changes it must wait for.
fn prerequisites(changes: &[&Change], store: &Store) -> Vec<BTreeSet<usize>> {
    let position: BTreeMap<&str, usize> = changes
        .iter()
        .enumerate()
        .map(|(index, change)| (change.address.as_str(), index))
        .collect();
    let recorded = &store.state().resources;
    let intents = &store.state().intents;
    changes
        .iter()
        .map(|change| {
            let mut waits = BTreeSet::new();
            // Creates and updates wait for the changes of what they depend on.
            if change.action != Action::Delete {
                for dependency in &change.depends_on {
                    if let Some(&index) = position.get(dependency.as_str())
                        && changes[index].action != Action::Delete
                    {
                        waits.insert(index);
                    }
                }
            }
            // Deleting a resource waits until whatever used it has let go of it: been deleted,
            // replaced, or updated to stop referencing it. Replacing one waits only for users
            // that are deleted (users that are updated wait for the replacement instead).
            for (index, other) in changes.iter().enumerate() {
                let uses_it = other.address != change.address
                    && recorded
                        .get(&other.address)
                        .map(|r| &r.depends_on)
                        .or_else(|| intents.get(&other.address).map(|i| &i.depends_on))
                        .is_some_and(|depends_on| depends_on.contains(&change.address));
                let must_go_first = match change.action {
                    Action::Delete => true,
                    Action::Replace => other.action == Action::Delete,
                    _ => false,
                };
                if uses_it && must_go_first {
                    waits.insert(index);
                }
            }
            waits
        })
        .collect()
}

/// One change, with everything it needs to run on its own.
struct Task {
    address: String,
    kind: String,
    action: Action,
    desired: Option<Value>,
    /// Sensitive references in `desired`, read from Secrets Manager when the change runs.
    sealed: Result<Vec<crate::providers::secrets::Sealed>, ProviderError>,
    recorded: Option<Recorded>,
    /// Sensitive references in the recorded attributes, for types that need them to delete
    /// (see `secrets::restore_for_delete`).
    recorded_sealed: Result<Vec<crate::providers::secrets::Sealed>, ProviderError>,
    /// An earlier run's intent to create this resource, which it never recorded the result of.
    intent: Option<Intent>,
    /// The idempotency token of this create: its intent's.
    token: String,
    /// For a create: what `trails import` named, adopted instead of created.
    import: Option<String>,
}

impl Task {
    fn new(change: &Change, graph: &Graph, store: &Store) -> Result<Self, EngineError> {
        let state = store.state();
        let interrupted = change.action == Action::Delete
            && !state.resources.contains_key(&change.address)
            && state.intents.contains_key(&change.address);
        let desired = match change.action {
            // What an interrupted create may have made is looked for by its desired
            // attributes, when the blueprint still declares it.
            Action::Delete if interrupted => graph
                .get(&change.address)
                .and_then(|resource| crate::plan::resolved(resource, state))
                .map(Value::Object),
            Action::Delete | Action::NoOp => None,
            _ => {
                let resource = graph
                    .get(&change.address)
                    .ok_or_else(|| EngineError::NotInGraph(change.address.clone()))?;
                let attributes = crate::plan::resolved(resource, state).ok_or_else(|| {
                    EngineError::NotInGraph(format!(
                        "{} (an output it references is not recorded)",
                        change.address
                    ))
                })?;
                Some(Value::Object(attributes))
            }
        };
        let sealed = match &desired {
            Some(desired) => crate::providers::secrets::sealed(desired, state),
            None => Ok(Vec::new()),
        };
        let mut recorded = state.resources.get(&change.address).cloned();
        // A drift repair starts from what is live, so the update changes back what was
        // changed by hand (its provider compares before and after).
        if let (Some(recorded), Some(live), Action::Update) =
            (recorded.as_mut(), &change.live, change.action)
        {
            recorded.attributes = live.clone();
        }
        let deleting = matches!(change.action, Action::Delete | Action::Replace);
        let restored = match recorded.as_mut() {
            Some(recorded) if deleting => crate::providers::secrets::restore_for_delete(
                &change.kind,
                &mut recorded.attributes,
            ),
            _ => false,
        };
        let recorded_sealed = match &recorded {
            Some(recorded) if restored => crate::providers::secrets::sealed(
                &Value::Object(recorded.attributes.clone()),
                state,
            ),
            _ => Ok(Vec::new()),
        };
        Ok(Self {
            address: change.address.clone(),
            kind: change.kind.clone(),
            action: change.action,
            desired,
            sealed,
            recorded,
            recorded_sealed,
            intent: state.intents.get(&change.address).cloned(),
            token: state
                .intents
                .get(&change.address)
                .map(|intent| intent.token.clone())
                .unwrap_or_default(),
            import: change
                .import
                .clone()
                .filter(|_| change.action == Action::Create),
        })
    }

    /// True when the task makes something new (a create, or the second half of a replace).
    fn creates(&self) -> bool {
        matches!(self.action, Action::Create | Action::Replace)
    }

    async fn run(mut self, providers: &Providers) -> Result<Effect, ProviderError> {
        let provider = providers.get(&self.kind).ok_or_else(|| {
            ProviderError::Invalid(format!(
                "no provider for {} (preflight should have said)",
                self.kind
            ))
        })?;
        let mut desired = self.desired.take().unwrap_or(Value::Null);
        let sealed = std::mem::replace(&mut self.sealed, Ok(Vec::new()))?;
        let versions = providers.secrets().reveal(&mut desired, &sealed).await?;
        let recorded_sealed = std::mem::replace(&mut self.recorded_sealed, Ok(Vec::new()))?;
        let recorded = match self.recorded.take() {
            Some(mut recorded) => {
                let mut attributes = Value::Object(std::mem::take(&mut recorded.attributes));
                providers
                    .secrets()
                    .reveal(&mut attributes, &recorded_sealed)
                    .await?;
                if let Value::Object(attributes) = attributes {
                    recorded.attributes = attributes;
                }
                Some(recorded)
            }
            None => None,
        };
        Ok(match self.act(provider, desired, recorded).await? {
            Effect::Applied(applied, _) => Effect::Applied(applied, versions),
            deleted => deleted,
        })
    }

    /// Carries out the change with the secrets' values in place.
    async fn act(
        &self,
        provider: &dyn crate::providers::Provider,
        desired: Value,
        recorded: Option<Recorded>,
    ) -> Result<Effect, ProviderError> {
        match (self.action, recorded) {
            (Action::Delete, Some(recorded)) => {
                provider.delete(&self.address, &recorded).await?;
                Ok(Effect::Deleted)
            }
            (Action::Delete, None) => {
                if let (Some(intent), Value::Object(attributes)) = (&self.intent, &desired) {
                    // What exists under the name is another's (a create refused as a
                    // conflict): nothing of this environment's to delete.
                    let found = match provider
                        .find_intended(&self.address, &desired, intent)
                        .await
                    {
                        Err(ProviderError::Conflict(_) | ProviderError::NotOurs(_)) => {
                            return Ok(Effect::Deleted);
                        }
                        other => other?,
                    };
                    match found {
                        Some(found) => {
                            let made = Recorded {
                                kind: self.kind.clone(),
                                id: Some(found.id),
                                attributes: attributes.clone(),
                                outputs: found.outputs,
                                depends_on: intent.depends_on.clone(),
                                secret_versions: Default::default(),
                            };
                            provider.delete(&self.address, &made).await?;
                        }
                        None => {
                            provider
                                .discard_interrupted(&self.address, &desired)
                                .await?
                        }
                    }
                }
                Ok(Effect::Deleted)
            }
            (Action::Update, Some(recorded)) => Ok(applied(
                provider.update(&self.address, &recorded, &desired).await?,
            )),
            (Action::Replace, Some(recorded)) => {
                provider.delete(&self.address, &recorded).await?;
                // An earlier run of this replace may have made the new one already.
                if let Some(intent) = &self.intent
                    && let Some(found) = provider
                        .find_intended(&self.address, &desired, intent)
                        .await?
                {
                    return Ok(applied(found));
                }
                Ok(applied(
                    provider
                        .create(&self.address, &desired, &self.token)
                        .await?,
                ))
            }
            _ => {
                if let Some(id) = &self.import {
                    return Ok(applied(provider.import(&self.address, &desired, id).await?));
                }
                // Adopt what an interrupted run created but never recorded.
                let found = match &self.intent {
                    Some(intent) => {
                        provider
                            .find_intended(&self.address, &desired, intent)
                            .await?
                    }
                    None => provider.find(&self.address, &desired).await?,
                };
                if let Some(found) = found {
                    return Ok(applied(found));
                }
                Ok(applied(
                    provider
                        .create(&self.address, &desired, &self.token)
                        .await?,
                ))
            }
        }
    }
}

/// What a change made, before the secrets' versions are added.
fn applied(applied: Applied) -> Effect {
    Effect::Applied(applied, BTreeMap::new())
}

/// Writes a completed change to the state.
async fn record(
    store: &mut Store,
    graph: &Graph,
    change: &Change,
    effect: Effect,
) -> Result<(), StateError> {
    match effect {
        Effect::Deleted => {
            store
                .update(|state| {
                    state.resources.shift_remove(&change.address);
                    state.intents.shift_remove(&change.address);
                    state.imports.shift_remove(&change.address);
                })
                .await
        }
        Effect::Applied(applied, secret_versions) => {
            let Some(resource) = graph.get(&change.address) else {
                return Ok(());
            };
            let attributes = crate::plan::recordable(resource, store.state()).unwrap_or_default();
            let entry = Recorded {
                kind: resource.kind.name.to_string(),
                id: Some(applied.id),
                attributes,
                outputs: applied.outputs,
                depends_on: resource.depends_on.clone(),
                secret_versions,
            };
            store
                .update(|state| {
                    state.resources.insert(change.address.clone(), entry);
                    state.intents.shift_remove(&change.address);
                    state.imports.shift_remove(&change.address);
                })
                .await
        }
    }
}
