//! Guardrails on the planned graph: the built-in rules ([`rules`]), the user's Rego policies
//! ([`rego`]) and the blueprint's waivers, evaluated before anything is made so that `plan`
//! can show them and `apply` can refuse.

pub mod rego;
pub mod rules;

use std::collections::BTreeSet;

use chrono::NaiveDate;
use serde::Serialize;
use serde_json::{Value, json};

use crate::blueprint::Loaded;
use crate::blueprint::schema::{Policy, Waiver};
use crate::graph::Graph;
use crate::plan::Plan;

/// How much a finding matters: an `error` gates `plan` and `apply`, a `warning` only with
/// `--policy-fail-on warning`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Shown; gates only when asked to.
    Warning,
    /// Gates.
    #[default]
    Error,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// One thing a rule found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The rule's id: a built-in one (`s3.versioning`) or a Rego one (`PACKAGE.deny`).
    pub rule: String,
    /// How much it matters.
    pub severity: Severity,
    /// The resource it is about.
    pub address: String,
    /// The attribute it is about, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
    /// Where in the blueprint the resource comes from (`FILE:LINE:COLUMN`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The waiver that matches it, when one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiver: Option<Waived>,
}

impl Finding {
    /// Whether it still counts: no waiver, or an expired one.
    pub fn counts(&self) -> bool {
        self.waiver.as_ref().is_none_or(|waiver| waiver.expired)
    }
}

/// The waiver a finding matched.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Waived {
    /// Why it is accepted.
    pub reason: String,
    /// Its last day.
    pub expires: String,
    /// True once that day has passed: the finding counts again.
    pub expired: bool,
}

/// Everything the rules found for one plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// The findings, by address then rule.
    pub findings: Vec<Finding>,
    /// Waivers that matched no finding (left over after a fix, or mistyped).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unused_waivers: Vec<String>,
}

impl Report {
    /// The findings that stop `plan` (exit 1) and `apply`: counted ones at `fail_on` or above.
    pub fn gating(&self, fail_on: Severity) -> Vec<&Finding> {
        self.findings
            .iter()
            .filter(|finding| finding.counts() && finding.severity >= fail_on)
            .collect()
    }

    /// Why `apply` refuses, or `None` when nothing gates.
    pub fn refusal(&self, fail_on: Severity) -> Option<String> {
        let gating = self.gating(fail_on);
        if gating.is_empty() {
            return None;
        }
        let listed: Vec<String> = gating
            .iter()
            .map(|finding| {
                format!(
                    "  {} {}: {}",
                    finding.rule, finding.address, finding.message
                )
            })
            .collect();
        Some(format!(
            "{} policy finding(s) at {fail_on} or above, not waived:\n{}\nFix them, or waive \
             each under `policy.waive` with a reason and an expiry date.",
            gating.len(),
            listed.join("\n")
        ))
    }
}

/// The Policy section of `plan`'s text: every finding, the counted ones first.
pub fn text(report: &Report, fail_on: Severity) -> String {
    let mut out = String::new();
    let counted = report.findings.iter().filter(|f| f.counts()).count();
    let waived = report.findings.len() - counted;
    let gating = report.gating(fail_on).len();
    if report.findings.is_empty() {
        out.push_str("Policy: no findings.\n");
    } else {
        out.push_str(&format!(
            "Policy: {} finding(s), {gating} gating (at {fail_on} or above), {waived} waived.\n",
            report.findings.len()
        ));
    }
    let mut ordered: Vec<&Finding> = report.findings.iter().collect();
    ordered.sort_by_key(|finding| (!finding.counts(), std::cmp::Reverse(finding.severity)));
    for finding in ordered {
        let status = match &finding.waiver {
            Some(waiver) if !waiver.expired => "waived".to_string(),
            _ => finding.severity.to_string(),
        };
        let attribute = finding
            .attribute
            .as_deref()
            .map(|attribute| format!(" ({attribute})"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {status:<8}{}  {}{attribute}\n          {}\n",
            finding.rule, finding.address, finding.message
        ));
        if let Some(waiver) = &finding.waiver {
            let state = if waiver.expired {
                "expired on"
            } else {
                "until"
            };
            out.push_str(&format!(
                "          waiver {state} {}: {}\n",
                waiver.expires, waiver.reason
            ));
        }
        if finding.counts() && !finding.fix.is_empty() {
            out.push_str(&format!("          fix: {}\n", finding.fix));
        }
        if let Some(location) = &finding.location {
            out.push_str(&format!("          from {location}\n"));
        }
    }
    for unused in &report.unused_waivers {
        out.push_str(&format!("  note: {unused}\n"));
    }
    out
}

/// Evaluates the built-in rules and the blueprint's Rego policies on the planned graph, and
/// applies the waivers as of `today`. A destroy plan is not checked (nothing is made).
pub fn evaluate(
    loaded: &Loaded,
    graph: &Graph,
    plan: &Plan,
    today: NaiveDate,
) -> anyhow::Result<Report> {
    if plan.destroy {
        return Ok(Report::default());
    }
    let mut findings = rules::check(loaded, graph);
    let policy = loaded.document.policy.clone().unwrap_or_default();
    if !policy.paths.is_empty() {
        let input = input(loaded, graph, plan);
        findings.extend(rego::evaluate(
            &rego::files(loaded, &policy.paths)?,
            &input,
        )?);
    }
    Ok(waive(&policy, findings, today))
}

/// [`waive`] with the blueprint's waivers.
pub fn waive_findings(loaded: &Loaded, findings: Vec<Finding>, today: NaiveDate) -> Report {
    waive(
        &loaded.document.policy.clone().unwrap_or_default(),
        findings,
        today,
    )
}

/// Sorts the findings and marks each that a waiver matches.
fn waive(policy: &Policy, mut findings: Vec<Finding>, today: NaiveDate) -> Report {
    findings.sort_by(|a, b| (&a.address, &a.rule).cmp(&(&b.address, &b.rule)));
    findings.dedup();
    let mut used = BTreeSet::new();
    for finding in &mut findings {
        if let Some((index, waiver)) = policy
            .waive
            .iter()
            .enumerate()
            .find(|(_, waiver)| matches(waiver, finding))
        {
            used.insert(index);
            finding.waiver = Some(Waived {
                reason: waiver.reason.clone(),
                expires: waiver.expires.clone(),
                expired: expired(&waiver.expires, today),
            });
        }
    }
    let unused_waivers = policy
        .waive
        .iter()
        .enumerate()
        .filter(|(index, _)| !used.contains(index))
        .map(|(index, waiver)| {
            format!(
                "policy.waive[{index}]: rule `{}` at `{}` matched no finding",
                waiver.rule, waiver.address
            )
        })
        .collect();
    Report {
        findings,
        unused_waivers,
    }
}

/// What Rego policies see as `input`: the environment, every resource's desired attributes
/// (references to outputs not yet known stay `${ADDRESS.OUTPUT}`) and the plan's changes.
pub fn input(loaded: &Loaded, graph: &Graph, plan: &Plan) -> Value {
    let resources: Vec<Value> = graph
        .resources()
        .map(|resource| {
            json!({
                "address": resource.address,
                "type": resource.kind.name,
                "attributes": resource.attributes,
            })
        })
        .collect();
    json!({
        "blueprint": loaded.document.blueprint,
        "environment": loaded.environment,
        "region": loaded.document.region,
        "protect": loaded.settings.protect,
        "ephemeral": loaded.settings.ephemeral,
        "resources": resources,
        "changes": plan.changes,
    })
}

fn matches(waiver: &Waiver, finding: &Finding) -> bool {
    waiver.rule == finding.rule && glob(&waiver.address, &finding.address)
}

/// A waiver's address pattern (`*` matches any run of characters), matched with globset as
/// `verify --only` patterns are; a pattern that does not compile matches only itself.
fn glob(pattern: &str, text: &str) -> bool {
    match globset::Glob::new(pattern) {
        Ok(glob) => glob.compile_matcher().is_match(text),
        Err(_) => pattern == text,
    }
}

/// Whether `expires` (checked by validation to be a date) lies before `today`. An unreadable
/// date counts as expired: a waiver never holds by accident.
fn expired(expires: &str, today: NaiveDate) -> bool {
    parse_date(expires).is_none_or(|last| last < today)
}

/// A `YYYY-MM-DD` date.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

/// Today in UTC, or the day `TRAILS_TODAY` (`YYYY-MM-DD`) names, so that waiver expiry can
/// be tested without waiting for it.
pub fn today() -> anyhow::Result<NaiveDate> {
    match std::env::var("TRAILS_TODAY") {
        Ok(text) => parse_date(&text).ok_or_else(|| {
            anyhow::anyhow!("TRAILS_TODAY is `{text}`; expected a date as YYYY-MM-DD")
        }),
        Err(_) => Ok(chrono::Utc::now().date_naive()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiver_address_may_use_stars() {
        assert!(glob("aws.s3_bucket.*", "aws.s3_bucket.logs"));
        assert!(glob("*.logs", "aws.s3_bucket.logs"));
        assert!(glob("aws.s3_bucket.logs", "aws.s3_bucket.logs"));
        assert!(!glob("aws.s3_bucket.logs", "aws.s3_bucket.logs-2"));
        assert!(!glob("k8s.*", "aws.s3_bucket.logs"));
    }

    #[test]
    fn a_waiver_holds_through_its_last_day() {
        let day = |text| parse_date(text).expect("date");
        assert!(!expired("2026-12-02", day("2026-12-02")));
        assert!(expired("2026-12-01", day("2026-12-02")));
        assert!(expired("soon", day("2026-12-02")));
    }
}
