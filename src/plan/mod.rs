//! Desired (graph) against recorded (state): the ordered changes, with what changes and why.

pub mod protect;
pub mod render;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::blueprint::expression::{self, Expression};
use crate::graph::{Graph, Resource};
use crate::providers::Observed;
use crate::resources;
use crate::state::{Recorded, State};

/// What will happen to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// It does not exist yet.
    Create,
    /// It exists and changes without being recreated.
    Update,
    /// It must be deleted and created again.
    Replace,
    /// It exists but is no longer declared (or everything is being destroyed).
    Delete,
    /// It exists as declared.
    NoOp,
}

impl Action {
    /// True for every action except no-op.
    pub fn is_change(self) -> bool {
        self != Action::NoOp
    }
}

/// The change of one attribute. Values are absent when sensitive; `after` is absent when it
/// is only known once a dependency has been created.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributeChange {
    /// Value recorded in the state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// Desired value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    /// The desired value depends on outputs not known before apply.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unknown: bool,
    /// The values are secrets and not shown.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
    /// Why this change needs a replacement, when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forces_replacement: Option<String>,
}

/// One planned change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// Resource address.
    pub address: String,
    /// Resource type.
    #[serde(rename = "type")]
    pub kind: String,
    /// What happens.
    pub action: Action,
    /// Why a replacement is needed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// Addresses that must be done first (for a delete: that must be deleted first).
    pub depends_on: Vec<String>,
    /// Attributes that change (all attributes for a create, none for a no-op or delete).
    pub attributes: indexmap::IndexMap<String, AttributeChange>,
    /// What a refresh found deleted or changed outside trails (this change repairs it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
    /// The attributes a refresh found live, laid over the recorded ones: what the repairing
    /// update starts from, so it changes back what was changed by hand.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<serde_json::Map<String, Value>>,
    /// For a create: the id `trails import` named, adopted instead of created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import: Option<String>,
    /// The address the state records it at, which the blueprint's `moved:` renames to this
    /// one: the apply moves the record first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_from: Option<String>,
}

/// What a refresh found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Refreshed {
    /// What each recorded resource looks like now, by address.
    pub observed: BTreeMap<String, Observed>,
    /// For resources changed outside trails whose type reads its attributes: the recorded
    /// attributes with what is live laid over them, where a repairing update starts from.
    pub live: BTreeMap<String, Map<String, Value>>,
}

/// Counts per action.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Resources to create.
    pub create: usize,
    /// Resources to update in place.
    pub update: usize,
    /// Resources to replace.
    pub replace: usize,
    /// Resources to delete.
    pub delete: usize,
    /// Resources left as they are.
    pub no_op: usize,
    /// Records moved to a new address (`moved:`), whatever else happens to them.
    #[serde(skip_serializing_if = "is_zero")]
    pub moved: usize,
}

fn is_zero(count: &usize) -> bool {
    *count == 0
}

/// The ordered changes for one environment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Version of this document's format.
    pub format_version: u32,
    /// Blueprint name.
    pub blueprint: String,
    /// Environment name.
    pub environment: String,
    /// True for a plan that removes everything.
    pub destroy: bool,
    /// True when live resources were read back (`--refresh`), so drift is part of the plan.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub refreshed: bool,
    /// Lineage of the state the plan was made against (empty for no state yet).
    pub state_lineage: String,
    /// Serial of that state; applying a saved plan against another serial is refused.
    pub state_serial: u64,
    /// Changes in an order that respects dependencies: deletions first (dependents before
    /// what they depend on), then everything else (dependencies before dependents).
    pub changes: Vec<Change>,
    /// Counts per action.
    pub summary: Summary,
}

/// Version of the plan document format.
pub const FORMAT_VERSION: u32 = 1;

impl Plan {
    /// True when applying would change something (a moved record is a change of the state).
    pub fn has_changes(&self) -> bool {
        self.changes
            .iter()
            .any(|change| change.action.is_change() || change.moved_from.is_some())
    }

    /// The records to move before anything runs, as (from, to).
    pub fn moves(&self) -> Vec<(String, String)> {
        self.changes
            .iter()
            .filter_map(|change| {
                let from = change.moved_from.clone()?;
                Some((from, change.address.clone()))
            })
            .collect()
    }

    fn new(state: &State, destroy: bool, changes: Vec<Change>) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            blueprint: state.blueprint.clone(),
            environment: state.environment.clone(),
            destroy,
            refreshed: false,
            state_lineage: state.lineage.clone(),
            state_serial: state.serial,
            summary: summarize(&changes),
            changes,
        }
    }

    /// The plan with what a refresh found, each drifted change saying why: one changed outside
    /// trails is updated (its provider's update brings it back to the blueprint).
    fn with_drift(mut self, refreshed: &Refreshed) -> Self {
        self.refreshed = true;
        for change in &mut self.changes {
            if change.action == Action::Delete {
                continue;
            }
            if change.action == Action::Update {
                change.live = refreshed.live.get(&change.address).cloned();
            }
            match refreshed.observed.get(&change.address) {
                Some(Observed::Gone) => change.drift.push("deleted outside trails".to_string()),
                Some(Observed::Changed(differences)) => change.drift.extend(
                    differences
                        .iter()
                        .map(|difference| format!("changed outside trails: {difference}")),
                ),
                _ => continue,
            }
            if change.action == Action::NoOp {
                change.action = Action::Update;
            }
        }
        self.summary = summarize(&self.changes);
        self
    }
}

fn summarize(changes: &[Change]) -> Summary {
    let mut summary = Summary::default();
    for change in changes {
        match change.action {
            Action::Create => summary.create += 1,
            Action::Update => summary.update += 1,
            Action::Replace => summary.replace += 1,
            Action::Delete => summary.delete += 1,
            Action::NoOp => summary.no_op += 1,
        }
        if change.moved_from.is_some() {
            summary.moved += 1;
        }
    }
    summary
}

/// A desired attribute after references were resolved as far as the state allows.
#[derive(Debug, Clone, PartialEq)]
enum Resolved {
    Known(Value),
    Unknown,
}

/// What a planned resource will expose to its dependents.
enum Outputs<'s> {
    /// Recorded outputs stay valid (no-op or update in place).
    Recorded(&'s Recorded),
    /// New outputs only known after apply (create or replace).
    Unknown,
}

/// `state` with the records the blueprint renames (`moved:`) at their new addresses: each
/// whose old address is recorded and new one is not. Returns the moves followed.
pub fn follow_moves(graph: &Graph, state: &State) -> (State, Vec<(String, String)>) {
    let mut moved = state.clone();
    let mut followed = Vec::new();
    for (from, to) in graph.moves() {
        if state.resources.contains_key(from)
            && !state.resources.contains_key(to)
            && crate::state::edit::rename(&mut moved, from, to).is_ok()
        {
            followed.push((from.clone(), to.clone()));
        }
    }
    (moved, followed)
}

/// Plans the changes that make the recorded state match the graph; a record the blueprint
/// renames is planned at its new address, as moved.
pub fn plan(graph: &Graph, state: &State) -> Plan {
    let (state, moves) = follow_moves(graph, state);
    let mut plan = plan_moved(graph, &state);
    for change in &mut plan.changes {
        change.moved_from = moves
            .iter()
            .find(|(_, to)| *to == change.address)
            .map(|(from, _)| from.clone());
    }
    plan.summary = summarize(&plan.changes);
    plan
}

fn plan_moved(graph: &Graph, state: &State) -> Plan {
    let mut outputs: HashMap<&str, Outputs<'_>> = HashMap::new();
    let mut changes = deletions(state, |address| graph.get(address).is_none());
    for resource in graph.resources() {
        let recorded = state
            .resources
            .get(&resource.address)
            .filter(|recorded| recorded.kind == resource.kind.name);
        let change = match recorded {
            None => Change {
                import: state.imports.get(&resource.address).cloned(),
                ..creation(resource, &outputs)
            },
            Some(recorded) => comparison(resource, recorded, &outputs),
        };
        let exposed = match (change.action, recorded) {
            (Action::NoOp | Action::Update, Some(recorded)) => Outputs::Recorded(recorded),
            _ => Outputs::Unknown,
        };
        outputs.insert(resource.address.as_str(), exposed);
        changes.push(change);
    }
    Plan::new(state, false, changes)
}

/// Plans against what a refresh found: a declared resource deleted outside trails is created
/// again (and what uses its outputs follows), one changed outside trails is updated; each
/// drifted change says why. One no longer declared is deleted as usual (gone is fine).
pub fn plan_refreshed(graph: &Graph, state: &State, refreshed: &Refreshed) -> Plan {
    // What was read back is by the recorded addresses; a moved record's is under its new one.
    let mut refreshed = refreshed.clone();
    for (from, to) in follow_moves(graph, state).1 {
        if let Some(observed) = refreshed.observed.remove(&from) {
            refreshed.observed.insert(to.clone(), observed);
        }
        if let Some(live) = refreshed.live.remove(&from) {
            refreshed.live.insert(to, live);
        }
    }
    let refreshed = &refreshed;
    let mut live = state.clone();
    live.resources.retain(|address, _| {
        refreshed.observed.get(address) != Some(&Observed::Gone) || graph.get(address).is_none()
    });
    // What was changed by hand is planned from what is live: the attributes show `live ->
    // desired`, and an update whose only difference is the drift is not a no-op.
    for (address, attributes) in &refreshed.live {
        if let Some(resource) = live.resources.get_mut(address) {
            resource.attributes = attributes.clone();
        }
    }
    plan(graph, &live).with_drift(refreshed)
}

/// Plans the removal of everything recorded, dependents first.
pub fn plan_destroy(state: &State) -> Plan {
    Plan::new(state, true, deletions(state, |_| true))
}

/// Deletions of recorded resources selected by `doomed`, dependents before dependencies.
fn deletions(state: &State, doomed: impl Fn(&str) -> bool) -> Vec<Change> {
    // An interrupted create (an intent, no record) may have made something: it is deleted
    // too, if the engine finds what it made.
    let interrupted: Vec<(String, Recorded)> = state
        .intents
        .iter()
        .filter(|(address, _)| !state.resources.contains_key(*address))
        .map(|(address, intent)| {
            let recorded = Recorded {
                kind: intent.kind.clone(),
                id: None,
                attributes: serde_json::Map::new(),
                outputs: serde_json::Map::new(),
                depends_on: intent.depends_on.clone(),
                secret_versions: Default::default(),
            };
            (address.clone(), recorded)
        })
        .collect();
    let selected: Vec<(&String, &Recorded)> = state
        .resources
        .iter()
        .chain(
            interrupted
                .iter()
                .map(|(address, recorded)| (address, recorded)),
        )
        .filter(|(address, _)| doomed(address))
        .collect();
    let order = reverse_dependency_order(&selected);
    order
        .into_iter()
        .map(|position| {
            let (address, recorded) = selected[position];
            // For a deletion, what must go first are the resources that depend on this one.
            let dependents: Vec<String> = selected
                .iter()
                .filter(|(_, other)| other.depends_on.contains(address.as_str()))
                .map(|(other, _)| (*other).clone())
                .collect();
            let reasons = if recorded.id.is_none() && state.intents.contains_key(address) {
                vec!["an interrupted create: what it made is deleted if found".to_string()]
            } else {
                Vec::new()
            };
            Change {
                address: address.clone(),
                kind: recorded.kind.clone(),
                action: Action::Delete,
                reasons,
                depends_on: dependents,
                attributes: indexmap::IndexMap::new(),
                drift: Vec::new(),
                live: None,
                import: None,
                moved_from: None,
            }
        })
        .collect()
}

/// Positions of `items` ordered so that every resource comes before those it depends on.
/// A state edited into a cycle still yields every item (the cycle's members last).
fn reverse_dependency_order(items: &[(&String, &Recorded)]) -> Vec<usize> {
    let position: HashMap<&str, usize> = items
        .iter()
        .enumerate()
        .map(|(i, (address, _))| (address.as_str(), i))
        .collect();
    // dependents[i]: items that depend on i, which must be deleted before i.
    let mut remaining_dependents = vec![0usize; items.len()];
    for (_, recorded) in items {
        for dependency in &recorded.depends_on {
            if let Some(&i) = position.get(dependency.as_str()) {
                remaining_dependents[i] += 1;
            }
        }
    }
    let mut ready: BTreeSet<usize> = (0..items.len())
        .filter(|&i| remaining_dependents[i] == 0)
        .collect();
    let mut order = Vec::with_capacity(items.len());
    let mut done = vec![false; items.len()];
    while let Some(next) = ready.pop_last() {
        order.push(next);
        done[next] = true;
        for dependency in &items[next].1.depends_on {
            if let Some(&i) = position.get(dependency.as_str()) {
                remaining_dependents[i] -= 1;
                if remaining_dependents[i] == 0 {
                    ready.insert(i);
                }
            }
        }
    }
    order.extend((0..items.len()).filter(|&i| !done[i]));
    order
}

fn creation(resource: &Resource, outputs: &HashMap<&str, Outputs<'_>>) -> Change {
    let attributes = resource
        .attributes
        .iter()
        .map(|(name, value)| {
            let sensitive = is_sensitive(resource, name, value);
            let resolved = resolve(value, outputs);
            let change = AttributeChange {
                before: None,
                after: match (&resolved, sensitive) {
                    (Resolved::Known(value), false) => Some(value.clone()),
                    _ => None,
                },
                unknown: resolved == Resolved::Unknown,
                sensitive,
                forces_replacement: None,
            };
            (name.clone(), change)
        })
        .collect();
    Change {
        address: resource.address.clone(),
        kind: resource.kind.name.to_string(),
        action: Action::Create,
        reasons: Vec::new(),
        depends_on: resource.depends_on.iter().cloned().collect(),
        attributes,
        drift: Vec::new(),
        live: None,
        import: None,
        moved_from: None,
    }
}

fn comparison(
    resource: &Resource,
    recorded: &Recorded,
    outputs: &HashMap<&str, Outputs<'_>>,
) -> Change {
    let mut attributes = indexmap::IndexMap::new();
    let mut reasons = Vec::new();
    let names: Vec<&String> = resource
        .attributes
        .keys()
        .chain(
            recorded
                .attributes
                .keys()
                .filter(|name| !resource.attributes.contains_key(*name)),
        )
        .collect();
    for name in names {
        let desired = resource.attributes.get(name).unwrap_or(&Value::Null);
        let before = recorded.attributes.get(name).unwrap_or(&Value::Null);
        let sensitive = is_sensitive(resource, name, desired);
        let resolved = resolve(desired, outputs);
        let changed = match &resolved {
            Resolved::Unknown => true,
            Resolved::Known(after) if sensitive => &Value::String(digest(after)) != before,
            Resolved::Known(after) => after != before,
        };
        if !changed {
            continue;
        }
        let forces_replacement = match &resolved {
            Resolved::Known(after) => resource.kind.replacement_reason(name, before, after),
            // Only fixed rules apply when the new value is not known yet.
            Resolved::Unknown => resource
                .kind
                .replace_on
                .iter()
                .find(|(attribute, _)| attribute == name)
                .map(|(_, reason)| (*reason).to_string()),
        };
        if let Some(reason) = &forces_replacement
            && !reasons.contains(reason)
        {
            reasons.push(reason.clone());
        }
        attributes.insert(
            name.clone(),
            AttributeChange {
                before: (!sensitive).then(|| before.clone()),
                after: match (&resolved, sensitive) {
                    (Resolved::Known(after), false) => Some(after.clone()),
                    _ => None,
                },
                unknown: resolved == Resolved::Unknown,
                sensitive,
                forces_replacement,
            },
        );
    }
    let action = if !reasons.is_empty() {
        Action::Replace
    } else if attributes.is_empty() {
        Action::NoOp
    } else {
        Action::Update
    };
    Change {
        address: resource.address.clone(),
        kind: resource.kind.name.to_string(),
        action,
        reasons,
        depends_on: resource.depends_on.iter().cloned().collect(),
        attributes,
        drift: Vec::new(),
        live: None,
        import: None,
        moved_from: None,
    }
}

/// The attributes of `resource` as the state records them once it is applied: references
/// resolved from recorded outputs, sensitive attributes replaced by their digest. `None` while
/// an output it references is not recorded yet.
pub fn recordable(resource: &Resource, state: &State) -> Option<Map<String, Value>> {
    let mut attributes = resolved(resource, state)?;
    for (name, value) in attributes.iter_mut() {
        let written = resource.attributes.get(name).unwrap_or(&Value::Null);
        if is_sensitive(resource, name, written) {
            *value = Value::String(digest(value));
        }
    }
    Some(attributes)
}

/// The attributes of `resource` with every reference resolved from recorded outputs: what a
/// provider is asked to make real. `None` while an output it references is not recorded yet.
pub fn resolved(resource: &Resource, state: &State) -> Option<Map<String, Value>> {
    let outputs: HashMap<&str, Outputs<'_>> = state
        .resources
        .iter()
        .map(|(address, recorded)| (address.as_str(), Outputs::Recorded(recorded)))
        .collect();
    let mut attributes = Map::new();
    for (name, value) in &resource.attributes {
        let Resolved::Known(resolved) = resolve(value, &outputs) else {
            return None;
        };
        attributes.insert(name.clone(), resolved);
    }
    Some(attributes)
}

/// An attribute is sensitive when its type says so, a sensitive variable reaches it, or it
/// references a secret output.
fn is_sensitive(resource: &Resource, name: &str, value: &Value) -> bool {
    if resource.kind.sensitive.contains(&name) || resource.sensitive.contains(name) {
        return true;
    }
    let mut secret = false;
    crate::graph::visit_strings(value, &mut |text| {
        if let Ok(references) = expression::references(text) {
            secret |= references.iter().any(|reference| {
                reference
                    .address
                    .rsplit_once('.')
                    .and_then(|(kind, _)| resources::kind(kind))
                    .is_some_and(|kind| kind.sensitive_outputs.contains(&reference.output.as_str()))
            });
        }
    });
    secret
}

/// The digest the state keeps in place of a sensitive value.
pub fn digest(value: &Value) -> String {
    format!("sha256:{:x}", Sha256::digest(value.to_string().as_bytes()))
}

/// Replaces references with recorded outputs; unknown when any output is not known yet.
/// References to secret outputs stay as written: the value is never read at plan time.
fn resolve(value: &Value, outputs: &HashMap<&str, Outputs<'_>>) -> Resolved {
    match value {
        Value::String(text) => match resolve_text(text, outputs) {
            Some(text) => Resolved::Known(Value::String(text)),
            None => Resolved::Unknown,
        },
        Value::Array(items) => {
            let mut resolved = Vec::with_capacity(items.len());
            for item in items {
                match resolve(item, outputs) {
                    Resolved::Known(value) => resolved.push(value),
                    Resolved::Unknown => return Resolved::Unknown,
                }
            }
            Resolved::Known(Value::Array(resolved))
        }
        Value::Object(entries) => {
            let mut resolved = Map::new();
            for (key, item) in entries {
                let Some(key) = resolve_text(key, outputs) else {
                    return Resolved::Unknown;
                };
                match resolve(item, outputs) {
                    Resolved::Known(value) => {
                        resolved.insert(key, value);
                    }
                    Resolved::Unknown => return Resolved::Unknown,
                }
            }
            Resolved::Known(Value::Object(resolved))
        }
        other => Resolved::Known(other.clone()),
    }
}

fn resolve_text(text: &str, outputs: &HashMap<&str, Outputs<'_>>) -> Option<String> {
    if !text.contains("${") {
        return Some(text.to_string());
    }
    let parts = expression::parse(text).ok()?;
    let mut resolved = String::new();
    for part in parts {
        match part {
            Expression::Literal(literal) => resolved.push_str(&literal),
            Expression::Reference(reference) => {
                let kind = reference
                    .address
                    .rsplit_once('.')
                    .and_then(|(kind, _)| resources::kind(kind));
                if kind
                    .is_some_and(|kind| kind.sensitive_outputs.contains(&reference.output.as_str()))
                {
                    resolved.push_str(&reference.to_string());
                    continue;
                }
                match outputs.get(reference.address.as_str())? {
                    Outputs::Recorded(recorded) => match recorded.outputs.get(&reference.output)? {
                        Value::String(value) => resolved.push_str(value),
                        other => resolved.push_str(&other.to_string()),
                    },
                    Outputs::Unknown => return None,
                }
            }
            // Variables were substituted when the blueprint was loaded.
            Expression::Variable(_) | Expression::Environment(_) => return None,
        }
    }
    Some(resolved)
}
