//! Problems found in a blueprint, each tied to a file position and a field path.

use std::fmt;
use std::path::PathBuf;

/// One step of a field path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// Where a value sits in the blueprint, e.g. `network.subnets.private[1]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(pub Vec<Segment>);

impl FieldPath {
    /// The document root.
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// A path from dot-separated keys; only for keys that contain no dot themselves.
    pub fn of(dotted: &str) -> Self {
        Self(
            dotted
                .split('.')
                .filter(|part| !part.is_empty())
                .map(|part| Segment::Key(part.to_string()))
                .collect(),
        )
    }

    /// This path extended by a key.
    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Key(key.into()));
        next
    }

    /// This path extended by an index.
    pub fn index(&self, index: usize) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Index(index));
        next
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(document)");
        }
        for (position, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if key.contains('.') || key.is_empty() => write!(f, "[{key:?}]")?,
                Segment::Key(key) if position == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A position in a source file, 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub file: PathBuf,
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// A deserializer's message in the blueprint's words: Rust type names become what a YAML
/// author writes (`u32` → a whole number, `sequence` → a list), and an unknown field or value
/// gets the nearest allowed one as "did you mean".
pub fn plain(message: &str) -> String {
    if let Some(rest) = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))
        && let Some((wrong, allowed)) = rest.split_once('`')
    {
        let options: Vec<&str> = allowed.split('`').skip(1).step_by(2).collect();
        return match nearest(wrong, options.iter().copied()) {
            Some(near) => format!("{message}; did you mean `{near}`?"),
            None => message.to_string(),
        };
    }
    if let Some(rest) = message.strip_prefix("invalid type: ")
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        return format!("expected {}, found {}", words(expected), words(found));
    }
    message.to_string()
}

fn words(rust: &str) -> String {
    let rust = rust.trim();
    let (head, quoted) = match rust.split_once(' ') {
        Some((head, rest)) if rest.starts_with('"') || rest.starts_with('`') => (head, rest),
        _ => (rust, ""),
    };
    let plain = match head {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole non-negative number",
        "i8" | "i16" | "i32" | "i64" | "isize" | "integer" => "a whole number",
        "f32" | "f64" | "floating" => "a number",
        "bool" | "boolean" => "`true` or `false`",
        "sequence" | "a sequence" => "a list",
        "map" | "a map" | "struct" => "a mapping",
        "string" | "a string" => "a string",
        "unit" | "null" => "nothing (null)",
        _ => return rust.to_string(),
    };
    if quoted.is_empty() {
        plain.to_string()
    } else {
        format!("{plain} {quoted}")
    }
}

/// The option closest to `wanted` when it is close enough to be a typo.
pub fn nearest<'a>(wanted: &str, options: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    options
        .map(|option| (strsim::jaro_winkler(wanted, option), option))
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, option)| option)
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The blueprint cannot be used.
    Error,
    /// The blueprint works but probably not as intended.
    Warning,
}

/// One problem in a blueprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong and what is allowed.
    pub message: String,
    /// The field the problem is about, as the user would write it.
    pub path: Option<String>,
    /// The position in the file, when known.
    pub location: Option<Location>,
    /// The file when no position is known.
    pub file: Option<PathBuf>,
}

impl Diagnostic {
    /// An error about a field.
    pub fn error(path: &FieldPath, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            message: message.into(),
            path: Some(path.to_string()),
            location: None,
            file: None,
        }
    }

    /// A warning about a field.
    pub fn warning(path: &FieldPath, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(path, message)
        }
    }

    /// An error about a whole file.
    pub fn file_error(file: PathBuf, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            message: message.into(),
            path: None,
            location: None,
            file: Some(file),
        }
    }

    /// The same diagnostic pointing at a position.
    pub fn at(mut self, location: Option<Location>) -> Self {
        self.location = location;
        self
    }

    /// True for errors, false for warnings.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let place = match (&self.location, &self.file) {
            (Some(location), _) => location.to_string(),
            (None, Some(file)) => file.display().to_string(),
            (None, None) => String::new(),
        };
        let field = self
            .path
            .as_ref()
            .map(|path| format!(" {path}:"))
            .unwrap_or_default();
        if place.is_empty() {
            write!(f, "{label}:{field} {}", self.message)
        } else {
            write!(f, "{label}: {place}:{field} {}", self.message)
        }
    }
}

/// Every problem found in one go; a blueprint with errors cannot be used.
#[derive(Debug, Clone, Default, thiserror::Error)]
#[error("{}", render(.0))]
pub struct Diagnostics(pub Vec<Diagnostic>);

fn render(diagnostics: &[Diagnostic]) -> String {
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let mut text = diagnostics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    text.push_str(&format!(
        "\n{errors} error{} in the blueprint",
        if errors == 1 { "" } else { "s" }
    ));
    text
}

impl Diagnostics {
    /// True when at least one diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    /// The warnings only.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| !d.is_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_read_like_the_yaml() {
        let path = FieldPath::of("network.subnets").key("private").index(1);
        assert_eq!(path.to_string(), "network.subnets.private[1]");
        let dotted = FieldPath::of("kafka.topics").key("audit.events.v1");
        assert_eq!(dotted.to_string(), "kafka.topics[\"audit.events.v1\"]");
    }
}
