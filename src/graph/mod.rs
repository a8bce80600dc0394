//! The resource graph: every resource with a stable address, typed attributes and its
//! dependencies (structural, declared with `depends_on`, and inferred from `${...}` references).

pub mod kind;
pub mod render;

use std::collections::{BTreeSet, HashMap};

use indexmap::IndexMap;
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use serde_json::{Map, Value};

use crate::blueprint::expression::{self, Reference};
use crate::blueprint::{Diagnostic, Diagnostics, FieldPath, Loaded};
use kind::{Kind, Spec};

/// One resource in the graph.
#[derive(Debug, Clone)]
pub struct Resource {
    /// Stable address, `PROVIDER.TYPE.NAME`.
    pub address: String,
    /// Its type.
    pub kind: &'static Kind,
    /// Desired attributes; strings may hold `${ADDRESS.OUTPUT}` references.
    pub attributes: Map<String, Value>,
    /// Addresses this resource needs to exist first.
    pub depends_on: BTreeSet<String>,
    /// The blueprint field it came from, for diagnostics.
    pub origin: FieldPath,
    /// Attributes a sensitive variable reaches: shown `(sensitive)`, recorded as a digest.
    pub sensitive: BTreeSet<String>,
}

impl Resource {
    /// Every `${...}` reference in the attributes (keys included), in a stable order.
    pub fn references(&self) -> BTreeSet<Reference> {
        let mut found = BTreeSet::new();
        visit_strings(&Value::Object(self.attributes.clone()), &mut |text| {
            if let Ok(references) = expression::references(text) {
                found.extend(references);
            }
        });
        found
    }
}

/// Calls `visit` with every string in a JSON value, object keys included.
pub fn visit_strings(value: &Value, visit: &mut impl FnMut(&str)) {
    match value {
        Value::String(text) => visit(text),
        Value::Array(items) => items.iter().for_each(|item| visit_strings(item, visit)),
        Value::Object(entries) => {
            for (key, item) in entries {
                visit(key);
                visit_strings(item, visit);
            }
        }
        _ => {}
    }
}

/// Collects resources while the blueprint is expanded.
pub struct Builder<'a> {
    /// The blueprint being expanded.
    pub loaded: &'a Loaded,
    resources: IndexMap<String, Resource>,
    declared: Vec<(String, String, FieldPath)>,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Builder<'a> {
    fn new(loaded: &'a Loaded) -> Self {
        Self {
            loaded,
            resources: IndexMap::new(),
            declared: Vec::new(),
            diagnostics: Vec::new(),
        }
    }

    /// trails' mark on the resource of type `S` named `name`, for what carries no AWS tags
    /// (Kubernetes objects, Helm releases, databases): `BLUEPRINT/ENVIRONMENT/ADDRESS`. What
    /// exists without it is not this environment's to adopt, change or delete.
    pub fn owner<S: Spec>(&self, name: &str) -> String {
        format!(
            "{}/{}/{}.{name}",
            self.loaded.document.blueprint,
            self.loaded.environment,
            S::KIND.name
        )
    }

    /// Adds a resource of type `S` named `name`; returns its address.
    pub fn add<S: Spec>(&mut self, name: &str, spec: &S, origin: FieldPath) -> String {
        let address = format!("{}.{name}", S::KIND.name);
        let attributes = match serde_json::to_value(spec) {
            Ok(Value::Object(attributes)) => attributes,
            Ok(_) | Err(_) => {
                let location = self.loaded.locate(&origin);
                self.diagnostics.push(
                    Diagnostic::error(
                        &origin,
                        format!("internal: {address} did not serialize to a mapping"),
                    )
                    .at(location),
                );
                Map::new()
            }
        };
        if self.resources.contains_key(&address) {
            let location = self.loaded.locate(&origin);
            self.diagnostics.push(
                Diagnostic::error(
                    &origin,
                    format!("two resources would have the address {address}; rename one"),
                )
                .at(location),
            );
            return address;
        }
        let sensitive = attributes
            .iter()
            .filter(|(_, value)| {
                let mut carries = false;
                visit_strings(value, &mut |text| {
                    carries |= self.loaded.sensitive.in_text(text);
                });
                carries
            })
            .map(|(name, _)| name.clone())
            .collect();
        self.resources.insert(
            address.clone(),
            Resource {
                address: address.clone(),
                kind: S::KIND,
                attributes,
                depends_on: BTreeSet::new(),
                origin,
                sensitive,
            },
        );
        address
    }

    /// Records a structural dependency trails itself knows about.
    pub fn depends(&mut self, dependent: &str, dependency: &str) {
        if let Some(resource) = self.resources.get_mut(dependent)
            && dependent != dependency
        {
            resource.depends_on.insert(dependency.to_string());
        }
    }

    /// Records `depends_on` addresses a user wrote; they are checked once everything exists.
    pub fn depends_on_declared(&mut self, dependent: &str, addresses: &[String], path: &FieldPath) {
        for (index, dependency) in addresses.iter().enumerate() {
            self.declared
                .push((dependent.to_string(), dependency.clone(), path.index(index)));
        }
    }

    fn error(&mut self, path: &FieldPath, message: String) {
        let location = self.loaded.locate(path);
        self.diagnostics
            .push(Diagnostic::error(path, message).at(location));
    }
}

/// The resources of one environment in an order where every resource follows its dependencies.
#[derive(Debug, Clone)]
pub struct Graph {
    resources: IndexMap<String, Resource>,
    moves: Vec<(String, String)>,
}

impl Graph {
    /// The blueprint's renames (`moved:`), as (old address, declared address).
    pub fn moves(&self) -> &[(String, String)] {
        &self.moves
    }

    /// Resources in dependency order.
    pub fn resources(&self) -> impl Iterator<Item = &Resource> {
        self.resources.values()
    }

    /// A resource by address.
    pub fn get(&self, address: &str) -> Option<&Resource> {
        self.resources.get(address)
    }

    /// Number of resources.
    pub fn len(&self) -> usize {
        self.resources.len()
    }

    /// True when the blueprint declares nothing.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }
}

/// Expands a checked blueprint into its graph with `expand` (which adds every resource it
/// declares: `crate::resources::expand`), resolving references and rejecting cycles.
pub fn build(loaded: &Loaded, expand: fn(&mut Builder<'_>)) -> Result<Graph, Diagnostics> {
    let mut builder = Builder::new(loaded);
    expand(&mut builder);
    link_references(&mut builder);
    link_declared(&mut builder);
    let moves = check_moves(&mut builder);
    // Order even when something is already wrong, so that a cycle is reported with the rest.
    match (order(builder.resources, loaded), builder.diagnostics) {
        (Ok(resources), diagnostics) if diagnostics.is_empty() => Ok(Graph { resources, moves }),
        (Ok(_), diagnostics) => Err(Diagnostics(diagnostics)),
        (Err(Diagnostics(cycles)), mut diagnostics) => {
            diagnostics.extend(cycles);
            Err(Diagnostics(diagnostics))
        }
    }
}

/// Turns every `${ADDRESS.OUTPUT}` into a dependency, reporting unknown addresses and outputs.
fn link_references(builder: &mut Builder<'_>) {
    let mut edges = Vec::new();
    let mut problems = Vec::new();
    for resource in builder.resources.values() {
        let mut malformed = Vec::new();
        visit_strings(&Value::Object(resource.attributes.clone()), &mut |text| {
            if let Err(message) = expression::references(text) {
                malformed.push(message);
            }
        });
        for message in malformed {
            problems.push((resource.origin.clone(), message));
        }
        for reference in resource.references() {
            let written = reference.to_string();
            let origin = builder
                .loaded
                .find(&resource.origin, &written)
                .unwrap_or_else(|| resource.origin.clone());
            match builder.resources.get(&reference.address) {
                None => problems.push((
                    origin,
                    format!(
                        "{} references {reference}, but no resource has the address {}{}",
                        resource.address,
                        reference.address,
                        suggestion(&reference.address, builder.resources.keys())
                    ),
                )),
                Some(target) if !target.kind.has_output(&reference.output) => {
                    let outputs: Vec<&str> = target
                        .kind
                        .outputs
                        .iter()
                        .chain(target.kind.sensitive_outputs)
                        .copied()
                        .collect();
                    let near = crate::blueprint::diagnostic::nearest(
                        &reference.output,
                        outputs.iter().copied(),
                    )
                    .map(|near| format!(" (did you mean `{near}`?)"))
                    .unwrap_or_default();
                    problems.push((
                        origin,
                        format!(
                            "{} references {reference}, but a {} has no output `{}`{near}; it \
                             has: {}",
                            resource.address,
                            target.kind.name,
                            reference.output,
                            outputs.join(", ")
                        ),
                    ));
                }
                Some(_) => edges.push((resource.address.clone(), reference.address.clone())),
            }
        }
    }
    for (path, message) in problems {
        builder.error(&path, message);
    }
    for (dependent, dependency) in edges {
        builder.depends(&dependent, &dependency);
    }
}

fn link_declared(builder: &mut Builder<'_>) {
    for (dependent, dependency, path) in std::mem::take(&mut builder.declared) {
        if dependent == dependency {
            builder.error(
                &path,
                format!("`{dependency}` cannot depend on itself; remove this entry"),
            );
        } else if builder.resources.contains_key(&dependency) {
            builder.depends(&dependent, &dependency);
        } else {
            let hint = suggestion(&dependency, builder.resources.keys());
            builder.error(
                &path,
                format!("`{dependency}` is not the address of any resource{hint}"),
            );
        }
    }
}

/// The `moved:` entries that can be followed: `to` declared, `from` not (a resource cannot be
/// both), the same type, each address in one entry only. Every other is an error at its line.
fn check_moves(builder: &mut Builder<'_>) -> Vec<(String, String)> {
    let mut moves: Vec<(String, String)> = Vec::new();
    for (index, moved) in builder.loaded.document.moved.iter().enumerate() {
        let path = FieldPath::root().key("moved").index(index);
        let problem = match builder.resources.get(&moved.to) {
            None => Some((
                path.key("to"),
                format!(
                    "`{}` is not the address of any resource{}",
                    moved.to,
                    suggestion(&moved.to, builder.resources.keys())
                ),
            )),
            Some(_) if builder.resources.contains_key(&moved.from) => Some((
                path.key("from"),
                format!(
                    "`{}` is still declared: a resource moved away from it must not be; remove \
                     the declaration or this entry",
                    moved.from
                ),
            )),
            Some(target)
                if moved
                    .from
                    .strip_prefix(target.kind.name)
                    .and_then(|rest| rest.strip_prefix('.'))
                    .is_none_or(|name| name.is_empty() || name.contains('.')) =>
            {
                Some((
                    path.key("from"),
                    format!(
                        "`{}` is not an address of `{}`'s type: expected `{}.NAME` (a resource \
                         cannot change its type by a move)",
                        moved.from, moved.to, target.kind.name
                    ),
                ))
            }
            Some(_)
                if moves.iter().any(|(from, to)| {
                    *from == moved.from || *to == moved.to || *to == moved.from
                }) =>
            {
                Some((
                    path.clone(),
                    format!(
                        "`{}` -> `{}` repeats an address of an earlier entry: each address may be \
                         moved from or to once (write the last name as `to` of one entry)",
                        moved.from, moved.to
                    ),
                ))
            }
            Some(_) => None,
        };
        match problem {
            Some((at, message)) => builder.error(&at, message),
            None => moves.push((moved.from.clone(), moved.to.clone())),
        }
    }
    moves
}

/// " (did you mean X?)" for the address `wanted` most likely meant: one of the same name whose
/// type starts as written (`helm.podinfo` → `helm.release.podinfo`), else the closest by
/// spelling; failing both, the resources of its type.
fn suggestion<'k>(wanted: &str, known: impl Iterator<Item = &'k String> + Clone) -> String {
    let (written_type, name) = wanted.rsplit_once('.').unwrap_or(("", wanted));
    let same_name: Vec<&String> = known
        .clone()
        .filter(|address| {
            address
                .rsplit_once('.')
                .is_some_and(|(kind, last)| last == name && kind.starts_with(written_type))
        })
        .collect();
    if let [only] = same_name.as_slice() {
        return format!(" (did you mean `{only}`?)");
    }
    // Whole addresses share long prefixes, so they are compared by edits, not by prefix.
    let near = known
        .clone()
        .map(|address| {
            (
                strsim::normalized_damerau_levenshtein(wanted, address),
                address,
            )
        })
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((_, near)) = near {
        return format!(" (did you mean `{near}`?)");
    }
    let wanted_type = wanted
        .rsplit_once('.')
        .map(|(kind, _)| kind)
        .unwrap_or(wanted);
    let same_type: Vec<&String> = known
        .filter(|address| {
            address
                .rsplit_once('.')
                .is_some_and(|(kind, _)| kind == wanted_type)
        })
        .collect();
    match same_type.as_slice() {
        [] => String::new(),
        addresses => format!(
            " (resources of that type: {})",
            addresses
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Sorts resources so each follows its dependencies, keeping the blueprint's order where the
/// graph allows (Kahn's algorithm, always taking the earliest ready resource).
fn order(
    resources: IndexMap<String, Resource>,
    loaded: &Loaded,
) -> Result<IndexMap<String, Resource>, Diagnostics> {
    let mut graph: DiGraph<usize, ()> = DiGraph::new();
    let nodes: Vec<NodeIndex> = (0..resources.len()).map(|i| graph.add_node(i)).collect();
    let index: HashMap<&str, usize> = resources
        .keys()
        .enumerate()
        .map(|(i, address)| (address.as_str(), i))
        .collect();
    for (position, resource) in resources.values().enumerate() {
        for dependency in &resource.depends_on {
            if let Some(&from) = index.get(dependency.as_str()) {
                graph.add_edge(nodes[from], nodes[position], ());
            }
        }
    }

    let cycles: Vec<Vec<NodeIndex>> = tarjan_scc(&graph)
        .into_iter()
        .filter(|component| component.len() > 1)
        .collect();
    if !cycles.is_empty() {
        let diagnostics = cycles
            .iter()
            .map(|component| {
                let chain = cycle_chain(&graph, component)
                    .into_iter()
                    .map(|node| resources[graph[node]].address.clone())
                    .collect::<Vec<_>>();
                let first = &resources[graph[component[0]]];
                let origin = chain
                    .first()
                    .and_then(|address| resources.get(address))
                    .unwrap_or(first);
                Diagnostic::error(
                    &origin.origin,
                    format!(
                        "dependency cycle: {} (each depends on the next); remove one of these \
                         references or depends_on entries",
                        chain.join(" -> ")
                    ),
                )
                .at(loaded.locate(&origin.origin))
            })
            .collect();
        return Err(Diagnostics(diagnostics));
    }

    let mut waiting: Vec<usize> = nodes
        .iter()
        .map(|&node| {
            graph
                .neighbors_directed(node, petgraph::Direction::Incoming)
                .count()
        })
        .collect();
    let mut ready: BTreeSet<usize> = (0..resources.len()).filter(|&i| waiting[i] == 0).collect();
    let mut sorted = Vec::with_capacity(resources.len());
    while let Some(next) = ready.pop_first() {
        sorted.push(next);
        for dependent in graph.neighbors_directed(nodes[next], petgraph::Direction::Outgoing) {
            let position = graph[dependent];
            waiting[position] -= 1;
            if waiting[position] == 0 {
                ready.insert(position);
            }
        }
    }
    let mut slots: Vec<Option<(String, Resource)>> = resources.into_iter().map(Some).collect();
    Ok(sorted
        .into_iter()
        .filter_map(|position| slots[position].take())
        .collect())
}

/// One cycle through a strongly connected component, closed and read as "depends on":
/// `[a, b, a]` means a depends on b, which depends on a.
fn cycle_chain(graph: &DiGraph<usize, ()>, component: &[NodeIndex]) -> Vec<NodeIndex> {
    let members: BTreeSet<NodeIndex> = component.iter().copied().collect();
    let Some(&start) = component.iter().min_by_key(|node| graph[**node]) else {
        return Vec::new();
    };
    // Walk edges inside the component until a node repeats; the repeat closes the cycle.
    let mut path = vec![start];
    let mut current = start;
    loop {
        let next = graph
            .neighbors_directed(current, petgraph::Direction::Incoming)
            .filter(|node| members.contains(node))
            .min_by_key(|node| graph[*node]);
        let Some(next) = next else {
            return path;
        };
        if let Some(position) = path.iter().position(|node| *node == next) {
            let mut cycle = path.split_off(position);
            cycle.push(next);
            return cycle;
        }
        path.push(next);
        current = next;
    }
}
