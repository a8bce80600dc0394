//! What the graph knows of a resource type: its descriptor and the trait of its desired
//! attributes. The types themselves live in `crate::resources`; the graph, plan and engine
//! know only these.

use serde::Serialize;
use serde_json::Value;

/// Decides, for one changed attribute, whether the change needs a replacement and why.
pub type ReplaceCheck = fn(attribute: &str, before: &Value, after: &Value) -> Option<String>;

/// What trails knows about a resource type, independent of any one resource.
#[derive(Debug)]
pub struct Kind {
    /// `PROVIDER.TYPE`, the first two parts of every address of this type.
    pub name: &'static str,
    /// One line for `trails graph` and docs.
    pub summary: &'static str,
    /// Attributes that cannot change in place, with the reason shown in the plan.
    pub replace_on: &'static [(&'static str, &'static str)],
    /// Value-dependent replacement rules (e.g. a topic's partitions can only grow).
    pub replace_check: Option<ReplaceCheck>,
    /// Attributes whose values are never shown.
    pub sensitive: &'static [&'static str],
    /// Outputs other resources may reference as `${ADDRESS.OUTPUT}`.
    pub outputs: &'static [&'static str],
    /// Outputs that are secrets; attributes that reference them become sensitive.
    pub sensitive_outputs: &'static [&'static str],
}

impl Kind {
    /// Whether `output` may be referenced.
    pub fn has_output(&self, output: &str) -> bool {
        self.outputs.contains(&output) || self.sensitive_outputs.contains(&output)
    }

    /// Why changing `attribute` from `before` to `after` needs a replacement, if it does.
    pub fn replacement_reason(
        &self,
        attribute: &str,
        before: &Value,
        after: &Value,
    ) -> Option<String> {
        if let Some((_, reason)) = self.replace_on.iter().find(|(name, _)| *name == attribute) {
            return Some((*reason).to_string());
        }
        self.replace_check
            .and_then(|check| check(attribute, before, after))
    }
}

/// The desired attributes of one resource type.
pub trait Spec: Serialize {
    /// The type's descriptor.
    const KIND: &'static Kind;
}

/// A type is its name: two descriptors with one name are one type.
impl PartialEq for Kind {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Kind {}
