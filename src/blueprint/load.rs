//! Reading a blueprint file: YAML with positions, the environment overlay, variables, typing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{LoadError, LoaderOptions, Marker, Node};

use super::diagnostic::{Diagnostic, Diagnostics, FieldPath, Location, Segment};
use super::expression::{self, Expression};
use super::schema::{Document, EnvironmentSettings, Map};

/// The name of the environment of a blueprint that declares none.
pub const IMPLICIT_ENVIRONMENT: &str = "default";

/// A blueprint loaded for one environment: typed, with its overlay merged and variables resolved.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The blueprint file.
    pub file: PathBuf,
    /// Directory that template and migration paths are relative to.
    pub templates_dir: PathBuf,
    /// Selected environment.
    pub environment: String,
    /// Settings of the selected environment.
    pub settings: EnvironmentSettings,
    /// The typed document.
    pub document: Document,
    /// The merged YAML tree, kept to point diagnostics at lines.
    pub tree: Node,
    /// The values of the variables declared `sensitive`: every attribute one reaches is
    /// sensitive.
    pub sensitive: Sensitive,
    /// The first and last line of the selected environment's overlay, if it has one: a
    /// problem found there is the environment's, and says so.
    pub overlay_lines: Option<(usize, usize)>,
    /// Entries the overlay adds beside a near namesake in the document (a typo that would make
    /// a second database, say), for validation to report.
    pub overlay_warnings: Vec<Diagnostic>,
}

/// The values of sensitive variables; `Debug` never shows them.
#[derive(Clone, Default)]
pub struct Sensitive(Vec<String>);

impl Sensitive {
    /// Whether `text` carries one of the values.
    pub fn in_text(&self, text: &str) -> bool {
        self.0.iter().any(|value| text.contains(value.as_str()))
    }

    /// `text` with every value replaced by `(sensitive)`.
    pub fn redact(&self, text: &str) -> String {
        self.0
            .iter()
            .filter(|value| !value.is_empty())
            .fold(text.to_string(), |text, value| {
                text.replace(value.as_str(), "(sensitive)")
            })
    }
}

impl std::fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sensitive({} value(s), not shown)", self.0.len())
    }
}

impl Loaded {
    /// The position of a field, for diagnostics found after typing.
    pub fn locate(&self, path: &FieldPath) -> Option<Location> {
        locate(&self.tree, path, &self.file)
    }

    /// The first field at or below `under` whose text contains `needle`: where a user wrote
    /// a reference that a derived resource carries.
    pub fn find(&self, under: &FieldPath, needle: &str) -> Option<FieldPath> {
        let mut node = &self.tree;
        for segment in &under.0 {
            node = match (segment, node) {
                (Segment::Key(key), Node::Mapping(map)) => map.get_node(key.as_str())?,
                (Segment::Index(index), Node::Sequence(items)) => items.get(*index)?,
                _ => return None,
            };
        }
        find_text(node, under, needle)
    }
}

fn find_text(node: &Node, path: &FieldPath, needle: &str) -> Option<FieldPath> {
    match node {
        Node::Scalar(scalar) => scalar.as_str().contains(needle).then(|| path.clone()),
        Node::Sequence(items) => items
            .iter()
            .enumerate()
            .find_map(|(index, item)| find_text(item, &path.index(index), needle)),
        Node::Mapping(entries) => entries
            .iter()
            .find_map(|(key, value)| find_text(value, &path.key(key.as_str()), needle)),
    }
}

/// The file, parsed, with its environments listed; the start of every load.
#[derive(Debug, Clone)]
pub struct Source {
    file: PathBuf,
    root: MarkedMappingNode,
    /// The `environments` entry as written, kept only to point diagnostics at lines.
    environments_node: Option<(MarkedScalarNode, Node)>,
    environments: Map<(EnvironmentSettings, Option<Node>)>,
}

impl Source {
    /// Reads and parses a blueprint file and the settings of every environment in it.
    pub fn read(file: &Path) -> Result<Self, Diagnostics> {
        let text = std::fs::read_to_string(file).map_err(|error| {
            Diagnostics(vec![Diagnostic::file_error(
                file.to_path_buf(),
                format!("cannot read the blueprint: {error}"),
            )])
        })?;
        Self::parse(file, &text)
    }

    /// Parses blueprint text; `file` is only used to name positions.
    pub fn parse(file: &Path, text: &str) -> Result<Self, Diagnostics> {
        if let Some(line) = second_document(text) {
            return Err(Diagnostics(vec![
                Diagnostic::file_error(
                    file.to_path_buf(),
                    "a second YAML document starts here (`---`), and trails reads one: move \
                     its keys into the first document, or into a blueprint of its own",
                )
                .at(Some(Location {
                    file: file.to_path_buf(),
                    line,
                    column: 1,
                })),
            ]));
        }
        let options = LoaderOptions::default().error_on_duplicate_keys(true);
        let node = marked_yaml::parse_yaml_with_options(0, text, options)
            .map_err(|error| Diagnostics(vec![load_error(file, &error)]))?;
        let Node::Mapping(mut root) = node else {
            return Err(Diagnostics(vec![Diagnostic::file_error(
                file.to_path_buf(),
                "the blueprint must be a YAML mapping with at least `blueprint` and `region`",
            )]));
        };
        if root.is_empty() {
            return Err(Diagnostics(vec![Diagnostic::file_error(
                file.to_path_buf(),
                "the blueprint is empty: it needs at least `blueprint` and `region`",
            )]));
        }
        let environments_node = root
            .iter()
            .find(|(key, _)| key.as_str() == "environments")
            .map(|(key, value)| (key.clone(), value.clone()));
        let mut diagnostics = Vec::new();
        let mut environments = Map::new();
        match root.remove("environments") {
            None => {
                environments.insert(
                    IMPLICIT_ENVIRONMENT.to_string(),
                    (EnvironmentSettings::default(), None),
                );
            }
            Some(Node::Mapping(declared)) => {
                for (name, node) in declared.iter() {
                    let path = FieldPath::of("environments").key(name.as_str());
                    match split_environment(file, &path, node) {
                        Ok(entry) => {
                            environments.insert(name.as_str().to_string(), entry);
                        }
                        Err(diagnostic) => diagnostics.push(diagnostic),
                    }
                }
                if declared.is_empty() {
                    diagnostics.push(located(
                        file,
                        FieldPath::of("environments"),
                        declared.span().start(),
                        "declares no environment; add one (e.g. `dev: {}`) or remove the key",
                    ));
                }
            }
            Some(other) => diagnostics.push(located(
                file,
                FieldPath::of("environments"),
                other.span().start(),
                "must be a mapping from environment name to its settings",
            )),
        }
        if diagnostics.is_empty() {
            Ok(Self {
                file: file.to_path_buf(),
                root,
                environments_node,
                environments,
            })
        } else {
            Err(Diagnostics(diagnostics))
        }
    }

    /// Names of the declared environments, in the file's order.
    pub fn environments(&self) -> Vec<String> {
        self.environments.keys().cloned().collect()
    }

    /// The environment to use when the user named one, or the only one when there is one.
    pub fn select(&self, requested: Option<&str>) -> Result<String, Diagnostics> {
        let names = self.environments();
        let chosen = match requested {
            Some(name) if self.environments.contains_key(name) => name.to_string(),
            Some(name) => {
                return Err(self.file_error(format!(
                    "no environment `{name}` in the blueprint; it declares: {}",
                    names.join(", ")
                )));
            }
            None if names.len() == 1 => names[0].clone(),
            None => {
                return Err(self.file_error(format!(
                    "the blueprint declares several environments ({}); choose one with -e",
                    names.join(", ")
                )));
            }
        };
        Ok(chosen)
    }

    fn file_error(&self, message: String) -> Diagnostics {
        Diagnostics(vec![Diagnostic::file_error(self.file.clone(), message)])
    }

    /// Merges the environment's overlay, resolves variables and types the document.
    pub fn load(&self, environment: &str) -> Result<Loaded, Diagnostics> {
        self.load_with(environment, &Map::new())
    }

    /// Like [`Source::load`], with variable values given on the command line, which win over
    /// the environment's and the document's.
    pub fn load_with(
        &self,
        environment: &str,
        overrides: &Map<String>,
    ) -> Result<Loaded, Diagnostics> {
        let (settings, overlay) = self
            .environments
            .get(environment)
            .ok_or_else(|| self.file_error(format!("no environment `{environment}`")))?;
        let mut tree = Node::Mapping(self.root.clone());
        let mut overlay_warnings = Vec::new();
        if let Some(overlay) = overlay {
            additions(
                &self.file,
                &tree,
                overlay,
                &FieldPath::root(),
                &mut overlay_warnings,
            );
            merge(&mut tree, overlay.clone());
        }
        let mut diagnostics = Vec::new();
        let declared = self.variables(&tree, environment, settings, &mut diagnostics);
        let mut variables = declared.values;
        for (name, value) in overrides {
            if !declared.names.contains(name) {
                diagnostics.push(Diagnostic::file_error(
                    self.file.clone(),
                    format!(
                        "--var {name}: the blueprint declares no variable `{name}`; declared: {}",
                        declared
                            .names
                            .iter()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
                continue;
            }
            variables.insert(name.clone(), value.clone());
        }
        substitute(
            &mut tree,
            &FieldPath::root(),
            &Scope {
                environment,
                variables: &variables,
                declared: &declared.names,
            },
            &self.file,
            &mut diagnostics,
        );
        let sensitive = Sensitive(
            declared
                .sensitive
                .iter()
                .filter_map(|name| variables.get(name))
                .filter(|value| !value.is_empty())
                .cloned()
                .collect(),
        );
        if !diagnostics.is_empty() {
            return Err(Diagnostics(diagnostics));
        }
        let overlay_lines = overlay.as_ref().and_then(lines_of);
        let document = type_document(&self.file, &tree)
            .map_err(|Diagnostics(found)| Diagnostics(blame(found, environment, overlay_lines)))?;
        if let (Some((key, value)), Node::Mapping(map)) = (&self.environments_node, &mut tree) {
            map.insert(key.clone(), value.clone());
        }
        let templates_dir = self
            .file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
            .join(&document.templates);
        Ok(Loaded {
            file: self.file.clone(),
            templates_dir,
            environment: environment.to_string(),
            settings: settings.clone(),
            document,
            tree,
            sensitive,
            overlay_lines,
            overlay_warnings,
        })
    }

    /// Document variables, overridden by the environment's; their own `${env.*}` resolved.
    fn variables(
        &self,
        tree: &Node,
        environment: &str,
        settings: &EnvironmentSettings,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Declared {
        let mut declared = Declared::default();
        if let Some(Node::Mapping(entries)) =
            tree.as_mapping().and_then(|m| m.get_node("variables"))
        {
            for (name, value) in entries.iter() {
                let path = FieldPath::of("variables").key(name.as_str());
                let name = name.as_str().to_string();
                declared.names.insert(name.clone());
                match value {
                    Node::Scalar(scalar) => {
                        declared.values.insert(name, scalar.as_str().to_string());
                    }
                    Node::Mapping(long) => {
                        for (key, item) in long.iter() {
                            let scalar = item.as_scalar().map(|s| s.as_str().to_string());
                            let here = |message: String| {
                                located(
                                    &self.file,
                                    path.key(key.as_str()),
                                    item.span().start(),
                                    message,
                                )
                            };
                            match (key.as_str(), scalar) {
                                ("value", Some(text)) => {
                                    declared.values.insert(name.clone(), text);
                                }
                                ("sensitive", Some(flag)) if flag == "true" => {
                                    declared.sensitive.insert(name.clone());
                                }
                                ("sensitive", Some(flag)) if flag == "false" => {}
                                ("sensitive", _) => diagnostics
                                    .push(here("`sensitive` is `true` or `false`".to_string())),
                                ("description", Some(_)) => {}
                                ("value" | "description", None) => diagnostics.push(here(format!(
                                    "`{}` must be a single value",
                                    key.as_str()
                                ))),
                                (other, _) => diagnostics.push(here(format!(
                                    "unknown field `{other}` of a variable; expected one of \
                                     `value`, `sensitive`, `description`"
                                ))),
                            }
                        }
                    }
                    other => diagnostics.push(located(
                        &self.file,
                        path,
                        other.span().start(),
                        "a variable is a single string, number or boolean, or a mapping of \
                         `value`, `sensitive` and `description`",
                    )),
                }
            }
        }
        for (name, value) in &settings.variables {
            declared.names.insert(name.clone());
            declared.values.insert(name.clone(), value.clone());
        }
        let no_variables = Map::new();
        let scope = Scope {
            environment,
            variables: &no_variables,
            declared: &declared.names,
        };
        for (name, value) in declared.values.iter_mut() {
            let path = FieldPath::of("variables").key(name.as_str());
            match scope.resolve(value) {
                Ok(resolved) => *value = resolved,
                Err(message) => diagnostics.push(Diagnostic::error(
                    &path,
                    format!("{message} (a variable may use `${{env.name}}` but no other variable)"),
                )),
            }
        }
        declared
    }
}

/// The variables a blueprint declares, with the values known so far.
#[derive(Default)]
struct Declared {
    names: BTreeSet<String>,
    values: Map<String>,
    sensitive: BTreeSet<String>,
}

/// Loads one environment of a blueprint file: read, select, merge, type.
pub fn load(
    file: &Path,
    environment: Option<&str>,
    overrides: &Map<String>,
) -> Result<Loaded, Diagnostics> {
    let source = Source::read(file)?;
    let chosen = source.select(environment)?;
    source.load_with(&chosen, overrides)
}

/// Takes an environment entry apart into its settings and its overlay.
fn split_environment(
    file: &Path,
    path: &FieldPath,
    node: &Node,
) -> Result<(EnvironmentSettings, Option<Node>), Diagnostic> {
    let Node::Mapping(entry) = node else {
        if node.as_scalar().is_some_and(|s| s.as_str().is_empty()) {
            return Ok((EnvironmentSettings::default(), None));
        }
        return Err(located(
            file,
            path.clone(),
            node.span().start(),
            "an environment must be a mapping (`protect`, `ephemeral`, `ttl`, `budget`, `variables`, `overlay`)",
        ));
    };
    let mut entry = entry.clone();
    let overlay = entry.remove("overlay");
    if let Some(overlay) = &overlay
        && overlay.as_mapping().is_none()
    {
        return Err(located(
            file,
            path.key("overlay"),
            overlay.span().start(),
            "an overlay must be a mapping of blueprint sections to merge over the defaults",
        ));
    }
    let settings = marked_yaml::from_node(&Node::Mapping(entry))
        .map_err(|error| from_node_error(file, &error, Some(path)))?;
    Ok((settings, overlay))
}

/// Deep-merges `overlay` into `base`: mappings merge key by key, anything else replaces,
/// and a `null` in the overlay removes the key.
fn merge(base: &mut Node, overlay: Node) {
    match (base, overlay) {
        (Node::Mapping(base), Node::Mapping(overlay)) => {
            for (key, value) in overlay.iter() {
                if is_null(value) {
                    base.remove(key.as_str());
                } else if let Some(existing) = base.get_mut(key.as_str()) {
                    merge(existing, value.clone());
                } else {
                    base.insert(key.clone(), value.clone());
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

fn is_null(node: &Node) -> bool {
    node.as_scalar()
        .is_some_and(|s| s.may_coerce() && matches!(s.as_str(), "~" | "null" | "Null" | "NULL"))
}

/// What `${...}` may name while loading.
struct Scope<'a> {
    environment: &'a str,
    variables: &'a Map<String>,
    /// Every declared name, with or without a value.
    declared: &'a BTreeSet<String>,
}

impl Scope<'_> {
    /// Replaces `${var.*}` and `${env.*}`; resource references stay for the graph to resolve.
    fn resolve(&self, text: &str) -> Result<String, String> {
        let parts = expression::parse(text)?;
        let mut resolved = String::new();
        for part in parts {
            match part {
                Expression::Literal(literal) => resolved.push_str(&expression::escape(&literal)),
                Expression::Variable(name) => match self.variables.get(&name) {
                    Some(value) => resolved.push_str(value),
                    None if self.declared.contains(&name) => {
                        return Err(format!(
                            "variable `{name}` has no value: give it with `--var {name}=VALUE`, \
                             `--var-file`, `TRAILS_VAR_{name}` or the environment's `variables`"
                        ));
                    }
                    None => {
                        let known = self.variables.keys().cloned().collect::<Vec<_>>();
                        return Err(format!(
                            "unknown variable `{name}`; declared: {}",
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        ));
                    }
                },
                Expression::Environment(field) => match field.as_str() {
                    "name" => resolved.push_str(self.environment),
                    other => {
                        return Err(format!(
                            "unknown `${{env.{other}}}`; only `${{env.name}}` is available"
                        ));
                    }
                },
                Expression::Reference(reference) => resolved.push_str(&reference.to_string()),
            }
        }
        Ok(resolved)
    }
}

fn substitute(
    node: &mut Node,
    path: &FieldPath,
    scope: &Scope<'_>,
    file: &Path,
    diagnostics: &mut Vec<Diagnostic>,
) {
    match node {
        Node::Scalar(scalar) => {
            if !scalar.as_str().contains("${") {
                return;
            }
            match scope.resolve(scalar.as_str()) {
                Ok(resolved) => {
                    let mut replaced = MarkedScalarNode::new(*scalar.span(), resolved);
                    replaced.set_coerce(scalar.may_coerce());
                    *scalar = replaced;
                }
                Err(message) => {
                    diagnostics.push(located(file, path.clone(), scalar.span().start(), message))
                }
            }
        }
        Node::Sequence(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                substitute(item, &path.index(index), scope, file, diagnostics);
            }
        }
        Node::Mapping(entries) => {
            for (key, value) in entries.iter_mut() {
                substitute(value, &path.key(key.as_str()), scope, file, diagnostics);
            }
        }
    }
}

fn located(
    file: &Path,
    path: FieldPath,
    marker: Option<&Marker>,
    message: impl Into<String>,
) -> Diagnostic {
    let mut diagnostic = Diagnostic::error(&path, message);
    diagnostic.location = marker.map(|m| location(file, m));
    diagnostic
}

fn location(file: &Path, marker: &Marker) -> Location {
    Location {
        file: file.to_path_buf(),
        line: marker.line(),
        column: marker.column(),
    }
}

fn load_error(file: &Path, error: &LoadError) -> Diagnostic {
    let (marker, message) = match error {
        LoadError::TopLevelMustBeMapping(m) => (
            Some(*m),
            "the blueprint must be a YAML mapping with at least `blueprint` and `region`"
                .to_string(),
        ),
        LoadError::TopLevelMustBeSequence(m) => (Some(*m), "unexpected top level".to_string()),
        LoadError::UnexpectedAnchor(m) => (
            Some(*m),
            "YAML anchors and aliases are not supported; use environment overlays or variables"
                .to_string(),
        ),
        LoadError::MappingKeyMustBeScalar(m) => {
            (Some(*m), "mapping keys must be plain strings".to_string())
        }
        LoadError::UnexpectedTag(m) => {
            (Some(*m), "YAML tags (`!tag`) are not supported".to_string())
        }
        LoadError::ScanError(m, scan) => (Some(*m), format!("invalid YAML: {scan}")),
        LoadError::DuplicateKey(inner) => (
            inner.key.span().start().copied(),
            format!(
                "duplicate key `{}` (first defined at line {})",
                inner.key.as_str(),
                inner
                    .prev_key
                    .span()
                    .start()
                    .map(|m| m.line().to_string())
                    .unwrap_or_else(|| "?".to_string())
            ),
        ),
    };
    let mut diagnostic = Diagnostic::file_error(file.to_path_buf(), message);
    diagnostic.location = marker.map(|m| location(file, &m));
    diagnostic
}

/// Warns of each entry `overlay` adds where the document has a near namesake (`ap` beside
/// `app`): merged, it is a second entry, not a change to the first. Only entries that are
/// mappings count (a database, a bucket, a release), so an added scalar setting never warns.
fn additions(
    file: &Path,
    base: &Node,
    overlay: &Node,
    path: &FieldPath,
    out: &mut Vec<Diagnostic>,
) {
    let (Some(base), Some(overlay)) = (base.as_mapping(), overlay.as_mapping()) else {
        return;
    };
    for (key, value) in overlay.iter() {
        let here = path.key(key.as_str());
        if let Some(existing) = base.get(key.as_str()) {
            additions(file, existing, value, &here, out);
            continue;
        }
        if value.as_mapping().is_none() {
            continue;
        }
        let entries = base
            .iter()
            .filter(|(_, entry)| entry.as_mapping().is_some())
            .map(|(name, _)| name.as_str());
        if let Some(near) = super::diagnostic::nearest(key.as_str(), entries) {
            let mut warning = located(
                file,
                here,
                key.span().start(),
                format!(
                    "adds a new entry `{}` beside the document's `{near}`, not a change to it; \
                     did you mean `{near}`?",
                    key.as_str()
                ),
            );
            warning.severity = super::diagnostic::Severity::Warning;
            out.push(warning);
        }
    }
}

/// The first and last line any part of `node` is on.
fn lines_of(node: &Node) -> Option<(usize, usize)> {
    fn walk(node: &Node, lines: &mut Vec<usize>) {
        lines.push(node.span().start().map(|mark| mark.line()).unwrap_or(0));
        match node {
            Node::Mapping(map) => {
                for (key, value) in map.iter() {
                    lines.push(key.span().start().map(|mark| mark.line()).unwrap_or(0));
                    walk(value, lines);
                }
            }
            Node::Sequence(items) => items.iter().for_each(|item| walk(item, lines)),
            Node::Scalar(_) => {}
        }
    }
    let mut lines = Vec::new();
    walk(node, &mut lines);
    lines.retain(|line| *line > 0);
    Some((*lines.iter().min()?, *lines.iter().max()?))
}

/// Marks each problem that lies in `environment`'s overlay (`lines`) as that environment's:
/// the field path alone reads as the shared document's.
pub fn blame(
    diagnostics: Vec<Diagnostic>,
    environment: &str,
    lines: Option<(usize, usize)>,
) -> Vec<Diagnostic> {
    let Some((first, last)) = lines else {
        return diagnostics;
    };
    diagnostics
        .into_iter()
        .map(|mut diagnostic| {
            let inside = diagnostic
                .location
                .as_ref()
                .is_some_and(|at| (first..=last).contains(&at.line));
            if inside {
                diagnostic.message = format!(
                    "{} (set by environment `{environment}`'s overlay)",
                    diagnostic.message
                );
            }
            diagnostic
        })
        .collect()
}

/// Types the merged document, reporting every schema error at once rather than the first:
/// after each error the value it is about is set aside and the rest typed again, and an error
/// that setting a value aside causes (a required field now missing, at a path above one
/// already reported) is not reported.
fn type_document(file: &Path, tree: &Node) -> Result<Document, Diagnostics> {
    let mut error = match marked_yaml::from_node::<Document>(tree) {
        Ok(document) => return Ok(document),
        Err(error) => error,
    };
    // Only a document with errors is copied, to set its values aside one by one.
    let mut remaining = tree.clone();
    let mut found: Vec<Diagnostic> = Vec::new();
    let mut reported: Vec<Vec<String>> = Vec::new();
    for _ in 0..64 {
        let path = segments(error.path().unwrap_or_default());
        if !reported.iter().any(|earlier| earlier.starts_with(&path)) {
            found.push(from_node_error(file, &error, None));
            reported.push(path.clone());
        }
        if path.is_empty() || !set_aside(&mut remaining, &path) {
            break;
        }
        match marked_yaml::from_node::<Document>(&remaining) {
            Ok(_) => break,
            Err(next) => error = next,
        }
    }
    Err(Diagnostics(found))
}

/// `buckets.logs.lifecycle[0].days` as `["buckets", "logs", "lifecycle", "[0]", "days"]`.
fn segments(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|part| !part.is_empty()) {
        let (name, rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !name.is_empty() {
            out.push(name.to_string());
        }
        out.extend(
            rest.split_inclusive(']')
                .filter(|index| !index.is_empty())
                .map(str::to_string),
        );
    }
    out
}

/// Removes the value at `path` from `tree`; false when the path leads nowhere.
fn set_aside(tree: &mut Node, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = tree;
    for segment in parents {
        let next = match segment.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            Some(index) => index
                .parse::<usize>()
                .ok()
                .and_then(|index| node.as_sequence_mut()?.get_mut(index)),
            None => node
                .as_mapping_mut()
                .and_then(|map| map.get_mut(segment.as_str())),
        };
        match next {
            Some(next) => node = next,
            None => return false,
        }
    }
    match last.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        Some(index) => match (index.parse::<usize>(), node.as_sequence_mut()) {
            (Ok(index), Some(items)) if index < items.len() => {
                items.remove(index);
                true
            }
            _ => false,
        },
        None => node
            .as_mapping_mut()
            .is_some_and(|map| map.remove(last.as_str()).is_some()),
    }
}

fn from_node_error(
    file: &Path,
    error: &marked_yaml::FromNodeError,
    prefix: Option<&FieldPath>,
) -> Diagnostic {
    let inner: &marked_yaml::Error = error;
    let message = match inner {
        marked_yaml::Error::NotBoolean(_) => "expected `true` or `false`".to_string(),
        marked_yaml::Error::IntegerParseFailure(parse, _) => {
            format!("expected a whole non-negative number ({parse})")
        }
        marked_yaml::Error::FloatParseFailure(parse, _) => format!("expected a number ({parse})"),
        other => {
            let text = other.to_string();
            let mut chars = text.chars();
            let text: String = match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => text,
            };
            super::diagnostic::plain(&text)
        }
    };
    let path_text = match (prefix, error.path()) {
        (Some(prefix), Some(path)) if !path.is_empty() && path != "." => {
            format!("{prefix}.{path}")
        }
        (Some(prefix), _) => prefix.to_string(),
        (None, Some(path)) if !path.is_empty() && path != "." => path.to_string(),
        (None, _) => "(document)".to_string(),
    };
    Diagnostic {
        severity: super::diagnostic::Severity::Error,
        message,
        path: Some(path_text),
        location: inner.start_mark().map(|m| location(file, &m)),
        file: Some(file.to_path_buf()),
    }
}

/// The position of the value at `path`, or of the deepest part of it that exists.
/// Keys point at the key itself, which is where a reader looks.
pub fn locate(tree: &Node, path: &FieldPath, file: &Path) -> Option<Location> {
    let mut node = tree;
    let mut best = tree.span().start().copied();
    for segment in &path.0 {
        match (segment, node) {
            (Segment::Key(key), Node::Mapping(map)) => {
                let Some((found_key, value)) = map.iter().find(|(k, _)| k.as_str() == key) else {
                    break;
                };
                best = found_key.span().start().copied().or(best);
                node = value;
            }
            (Segment::Index(index), Node::Sequence(items)) => {
                let Some(item) = items.get(*index) else {
                    break;
                };
                best = item.span().start().copied().or(best);
                node = item;
            }
            _ => break,
        }
    }
    best.map(|m| location(file, &m))
}

/// Reads a variables file (`--var-file`): a YAML mapping of variable names to single values.
pub fn read_variables(file: &Path) -> Result<Map<String>, Diagnostics> {
    let text = std::fs::read_to_string(file).map_err(|error| {
        Diagnostics(vec![Diagnostic::file_error(
            file.to_path_buf(),
            format!("cannot read the variables file: {error}"),
        )])
    })?;
    let options = LoaderOptions::default().error_on_duplicate_keys(true);
    let node = marked_yaml::parse_yaml_with_options(0, &text, options)
        .map_err(|error| Diagnostics(vec![load_error(file, &error)]))?;
    let Node::Mapping(root) = node else {
        return Err(Diagnostics(vec![Diagnostic::file_error(
            file.to_path_buf(),
            "a variables file is a YAML mapping of variable names to values, e.g. `vpc_cidr: \
             10.0.0.0/16`",
        )]));
    };
    let mut variables = Map::new();
    let mut problems = Vec::new();
    for (name, value) in root.iter() {
        match value {
            Node::Scalar(scalar) => {
                variables.insert(name.as_str().to_string(), scalar.as_str().to_string());
            }
            _ => {
                let start = name.span().start();
                problems.push(
                    Diagnostic::file_error(
                        file.to_path_buf(),
                        format!(
                            "`{}`: a variable's value is one value (text, a number, true or \
                             false), not a list or a mapping",
                            name.as_str()
                        ),
                    )
                    .at(start.map(|start| Location {
                        file: file.to_path_buf(),
                        line: start.line(),
                        column: start.column(),
                    })),
                );
            }
        }
    }
    if problems.is_empty() {
        Ok(variables)
    } else {
        Err(Diagnostics(problems))
    }
}

/// The line (from 1) of a `---` that starts a second document: one after any content. Block
/// scalars are indented, so a `---` at the start of a line always ends what came before.
fn second_document(text: &str) -> Option<usize> {
    let mut content = false;
    for (index, line) in text.lines().enumerate() {
        let marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if marker && content {
            return Some(index + 1);
        }
        let trimmed = line.trim();
        if !marker && !trimmed.is_empty() && !trimmed.starts_with('#') && trimmed != "..." {
            content = true;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_document_is_an_error_at_its_line_and_a_leading_marker_is_fine() {
        let Err(error) = source("blueprint: demo\nregion: eu-west-1\n---\nbuckets: {}\n") else {
            panic!("two documents were accepted");
        };
        let text = error.to_string();
        assert!(text.contains("test.yaml:3:1"), "{text}");
        assert!(text.contains("second YAML document"), "{text}");
        assert_eq!(second_document("# c\n---\nblueprint: x\n"), None);
        assert_eq!(second_document("a: |\n  ---\n  b\n"), None);
    }

    fn source(text: &str) -> Result<Source, Diagnostics> {
        Source::parse(Path::new("test.yaml"), text)
    }

    const BASE: &str = "blueprint: demo\nregion: eu-west-1\nvariables:\n  size: small\nbuckets:\n  logs:\n    versioning: true\n  scratch: {}\nenvironments:\n  dev:\n    overlay:\n      buckets:\n        logs:\n          versioning: false\n        scratch: null\n  prod:\n    protect: true\n    variables:\n      size: large\n";

    #[test]
    fn overlay_merges_deeply_and_null_removes() {
        let loaded = source(BASE).and_then(|s| s.load("dev")).expect("dev loads");
        let logs = &loaded.document.buckets["logs"];
        assert!(!logs.versioning, "overlay turned versioning off");
        assert!(!loaded.document.buckets.contains_key("scratch"));
        let prod = source(BASE)
            .and_then(|s| s.load("prod"))
            .expect("prod loads");
        assert!(prod.document.buckets["logs"].versioning);
        assert!(prod.settings.protect);
    }

    #[test]
    fn environment_must_be_chosen_when_there_are_several() {
        let source = source(BASE).expect("parses");
        let error = source.select(None).expect_err("two environments");
        assert!(error.to_string().contains("dev, prod"), "{error}");
        let error = source.select(Some("qa")).expect_err("unknown environment");
        assert!(error.to_string().contains("no environment `qa`"), "{error}");
    }

    #[test]
    fn variables_resolve_per_environment() {
        let text = format!("{BASE}tags:\n  size: ${{var.size}}\n  env: ${{env.name}}\n");
        let prod = source(&text).and_then(|s| s.load("prod")).expect("loads");
        assert_eq!(prod.document.tags["size"], "large");
        assert_eq!(prod.document.tags["env"], "prod");
    }

    #[test]
    fn command_line_variables_win_and_must_be_declared() {
        let text = format!("{BASE}tags:\n  size: ${{var.size}}\n");
        let mut overrides = Map::new();
        overrides.insert("size".to_string(), "tiny".to_string());
        let prod = source(&text)
            .and_then(|s| s.load_with("prod", &overrides))
            .expect("loads");
        assert_eq!(prod.document.tags["size"], "tiny");
        overrides.insert("colour".to_string(), "red".to_string());
        let error = source(&text)
            .and_then(|s| s.load_with("prod", &overrides))
            .expect_err("undeclared variable");
        assert!(
            error.to_string().contains("no variable `colour`"),
            "{error}"
        );
    }

    #[test]
    fn unknown_variable_names_the_field_and_line() {
        let text = "blueprint: demo\nregion: eu-west-1\ntags:\n  owner: ${var.team}\n";
        let error = source(text)
            .and_then(|s| s.load(IMPLICIT_ENVIRONMENT))
            .expect_err("unknown variable");
        let rendered = error.to_string();
        assert!(rendered.contains("test.yaml:4:10"), "{rendered}");
        assert!(rendered.contains("tags.owner"), "{rendered}");
        assert!(rendered.contains("unknown variable `team`"), "{rendered}");
    }

    #[test]
    fn unknown_field_names_the_allowed_ones() {
        let text = "blueprint: demo\nregion: eu-west-1\nbuckets:\n  logs:\n    versionning: true\n";
        let error = source(text)
            .and_then(|s| s.load(IMPLICIT_ENVIRONMENT))
            .expect_err("typo");
        let rendered = error.to_string();
        assert!(rendered.contains("versionning"), "{rendered}");
        assert!(rendered.contains("`versioning`"), "{rendered}");
        assert!(rendered.contains("test.yaml:5:"), "{rendered}");
    }
}
