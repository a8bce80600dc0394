//! Human-readable plan output.

use console::Style;
use serde_json::Value;

use super::{Action, AttributeChange, Change, Plan};

/// How much of the plan to print.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextOptions {
    /// Also list resources that do not change.
    pub show_unchanged: bool,
}

fn symbol(action: Action) -> (&'static str, Style) {
    match action {
        Action::Create => ("+", Style::new().green()),
        Action::Update => ("~", Style::new().yellow()),
        Action::Replace => ("-/+", Style::new().magenta()),
        Action::Delete => ("-", Style::new().red()),
        Action::NoOp => ("=", Style::new().dim()),
    }
}

/// Longest value printed on the attribute's own line; longer maps and lists span lines.
const INLINE_WIDTH: usize = 72;

fn value(value: &Value) -> String {
    let compact = value.to_string();
    if compact.len() <= INLINE_WIDTH || !(value.is_object() || value.is_array()) {
        return compact;
    }
    // Indent continuation lines under the attribute block.
    serde_json::to_string_pretty(value)
        .unwrap_or(compact)
        .replace('\n', "\n        ")
}

fn attribute(change: &AttributeChange, action: Action) -> String {
    let after = if change.sensitive {
        "(sensitive)".to_string()
    } else if change.unknown {
        "(known after apply)".to_string()
    } else {
        change
            .after
            .as_ref()
            .map(value)
            .unwrap_or_else(|| "null".to_string())
    };
    let text = match action {
        Action::Create => after,
        _ => {
            let before = if change.sensitive {
                "(sensitive)".to_string()
            } else {
                change
                    .before
                    .as_ref()
                    .map(value)
                    .unwrap_or_else(|| "null".to_string())
            };
            format!("{before} -> {after}")
        }
    };
    match &change.forces_replacement {
        Some(_) => format!("{text}   # forces replacement"),
        None => text,
    }
}

fn change(out: &mut String, change: &Change) {
    let (sign, style) = symbol(change.action);
    let note = match change.action {
        Action::Update if change.attributes.is_empty() && !change.drift.is_empty() => {
            " (update in place: repairs drift)".to_string()
        }
        Action::Update => " (update in place)".to_string(),
        Action::Replace => format!(" (replace: {})", change.reasons.join("; ")),
        Action::Delete => " (delete)".to_string(),
        Action::Create => match &change.import {
            Some(id) => format!(" (import {id}: adopted and marked, not created)"),
            None => String::new(),
        },
        _ => String::new(),
    };
    let note = match &change.moved_from {
        Some(from) => format!(" (moved from {from}){note}"),
        None => note,
    };
    out.push_str(&format!(
        "  {} {}{}\n",
        style.apply_to(sign),
        style.apply_to(&change.address).bold(),
        note
    ));
    let width = change
        .attributes
        .keys()
        .map(|name| name.len())
        .max()
        .unwrap_or(0);
    for (name, attribute_change) in &change.attributes {
        out.push_str(&format!(
            "      {name:width$} = {}\n",
            attribute(attribute_change, change.action)
        ));
    }
    for drift in &change.drift {
        out.push_str(&format!("      {} {drift}\n", style.apply_to("!")));
    }
}

/// The plan as text: a header, one block per change in execution order, a summary line.
pub fn text(plan: &Plan, state_description: &str, options: TextOptions) -> String {
    let mut out = format!(
        "Blueprint {} / environment {}\nState: {state_description}\n\n",
        plan.blueprint, plan.environment
    );
    let shown: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| c.action.is_change() || c.moved_from.is_some() || options.show_unchanged)
        .collect();
    if !plan.has_changes() {
        out.push_str(if plan.destroy {
            "Nothing to destroy: the state records no resource.\n"
        } else if plan.refreshed {
            "No changes: the recorded state matches the blueprint, and what trails read back matches the state.\n"
        } else {
            "No changes: the recorded state matches the blueprint.\n"
        });
    }
    for entry in shown {
        change(&mut out, entry);
    }
    out.push('\n');
    out.push_str(&summary(plan));
    out.push('\n');
    out
}

/// The one-line summary, e.g. `Plan: 3 to create, 1 to update, 0 to replace, 0 to delete, 2 unchanged.`
pub fn summary(plan: &Plan) -> String {
    let s = &plan.summary;
    let moved = if s.moved > 0 {
        format!(" {} moved to a new address.", s.moved)
    } else {
        String::new()
    };
    format!(
        "Plan: {} to create, {} to update, {} to replace, {} to delete, {} unchanged.{moved}",
        s.create, s.update, s.replace, s.delete, s.no_op
    )
}

/// A Markdown table cell: one line, pipes escaped.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The plan, its policy findings and the cost as one Markdown document for a pull-request
/// comment: a summary, a table of the changes, their attributes in a collapsed block, then
/// the Policy and Cost sections.
pub fn markdown(
    plan: &Plan,
    report: &crate::policy::Report,
    fail_on: crate::policy::Severity,
    estimate: &crate::cost::Estimate,
    limits: crate::cost::Limits,
) -> String {
    let mut out = format!(
        "## trails plan: {} / {}\n\n**{}**\n\n",
        plan.blueprint,
        plan.environment,
        summary(plan)
    );
    let changed: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| c.action.is_change() || c.moved_from.is_some())
        .collect();
    if changed.is_empty() {
        out.push_str("No changes.\n");
    } else {
        out.push_str("| Action | Resource | Type | Why |\n|---|---|---|---|\n");
        for entry in &changed {
            let action = serde_json::to_value(entry.action)
                .ok()
                .and_then(|value| value.as_str().map(str::to_string))
                .unwrap_or_default();
            let mut why = entry.reasons.clone();
            why.extend(entry.drift.iter().map(|drift| format!("drift: {drift}")));
            if let Some(id) = &entry.import {
                why.push(format!("import {id}"));
            }
            if let Some(from) = &entry.moved_from {
                why.push(format!("moved from `{from}`"));
            }
            out.push_str(&format!(
                "| {action} | `{}` | {} | {} |\n",
                entry.address,
                entry.kind,
                cell(&why.join("; "))
            ));
        }
        out.push_str("\n<details><summary>Attributes</summary>\n\n```\n");
        for entry in &changed {
            let mut block = String::new();
            change(&mut block, entry);
            out.push_str(&console::strip_ansi_codes(&block));
        }
        out.push_str("```\n\n</details>\n");
    }
    out.push_str("\n### Policy\n\n");
    if plan.destroy {
        out.push_str("Not checked: nothing is made by a destroy plan.\n");
    } else if report.findings.is_empty() {
        out.push_str("No findings.\n");
    } else {
        let gating = report.gating(fail_on).len();
        out.push_str(&format!(
            "{} finding(s), **{gating} gating** (at {fail_on} or above).\n\n\
             | Status | Rule | Resource | Finding | Fix |\n|---|---|---|---|---|\n",
            report.findings.len()
        ));
        for finding in &report.findings {
            let status = match &finding.waiver {
                Some(waiver) if !waiver.expired => {
                    format!("waived until {}: {}", waiver.expires, waiver.reason)
                }
                Some(waiver) => format!("{} (waiver expired {})", finding.severity, waiver.expires),
                None => finding.severity.to_string(),
            };
            let attribute = finding
                .attribute
                .as_deref()
                .map(|attribute| format!(" `{attribute}`"))
                .unwrap_or_default();
            out.push_str(&format!(
                "| {} | `{}` | `{}`{attribute} | {} | {} |\n",
                cell(&status),
                finding.rule,
                finding.address,
                cell(&finding.message),
                cell(&finding.fix)
            ));
        }
    }
    out.push_str("\n### Cost\n\n");
    out.push_str(&crate::cost::markdown(estimate, limits));
    out
}
