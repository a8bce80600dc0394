//! The user's policies in Rego, evaluated in-process with regorus, conftest-style: every
//! package's `deny` and `violation` rules give errors, its `warn` rules warnings. Each element
//! is a message, or an object with `msg` and optionally `address`, `attribute`, `rule` and
//! `fix`. Files that parse as Rego v1 are read as v1, others as v0 (`deny[msg] { ... }`), so
//! conftest policies of either age carry over.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use serde_json::Value;

use super::{Finding, Severity};
use crate::blueprint::Loaded;

/// The address of a Rego finding that names none: the plan as a whole.
pub const PLAN_ADDRESS: &str = "plan";

/// The rules read from each package, with the severity of what they yield.
const RULES: &[(&str, Severity)] = &[
    ("deny", Severity::Error),
    ("violation", Severity::Error),
    ("warn", Severity::Warning),
];

/// One policy file, read.
#[derive(Debug, Clone)]
pub struct File {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its text.
    pub text: String,
}

/// The `.rego` files under `paths` (files, or directories read recursively in name order;
/// `*_test.rego` files are left out as conftest and OPA do), relative to the blueprint.
pub fn files(loaded: &Loaded, paths: &[String]) -> anyhow::Result<Vec<File>> {
    let base = loaded.file.parent().map(PathBuf::from).unwrap_or_default();
    let mut found = Vec::new();
    for path in paths {
        collect(&base.join(path), &mut found)
            .with_context(|| format!("policy.paths: cannot read `{path}`"))?;
    }
    found
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read policy {}", path.display()))?;
            Ok(File { path, text })
        })
        .collect()
}

fn collect(path: &std::path::Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if !path.is_dir() {
        // A file named directly is read whatever it is called; a missing one is an error.
        std::fs::metadata(path)?;
        found.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for entry in entries {
        let name = entry
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default();
        if entry.is_dir() {
            collect(&entry, found)?;
        } else if name.ends_with(".rego") && !name.ends_with("_test.rego") {
            found.push(entry);
        }
    }
    Ok(())
}

/// The engines the files load into: Rego v1 and, for files that only parse as v0, v0.
struct Engines {
    v1: regorus::Engine,
    v0: regorus::Engine,
}

/// Parses every file; the error names the file and what the parser said of it.
fn load(files: &[File]) -> anyhow::Result<Engines> {
    let mut engines = Engines {
        v1: regorus::Engine::new(),
        v0: regorus::Engine::new(),
    };
    engines.v0.set_rego_v0(true);
    for file in files {
        let name = file.path.display().to_string();
        if let Err(v1_error) = engines.v1.add_policy(name.clone(), file.text.clone()) {
            engines
                .v0
                .add_policy(name.clone(), file.text.clone())
                .map_err(|_| anyhow!("policy {name} does not parse as Rego: {v1_error}"))?;
        }
    }
    Ok(engines)
}

/// Why each file does not parse, for `validate`.
pub fn problems(files: &[File]) -> Option<String> {
    load(files).err().map(|error| format!("{error:#}"))
}

/// Evaluates every package's `deny`, `violation` and `warn` rules against `input`.
pub fn evaluate(files: &[File], input: &Value) -> anyhow::Result<Vec<Finding>> {
    let engines = load(files)?;
    let input = regorus::Value::from_json_str(&input.to_string())
        .map_err(|error| anyhow!("the policy input does not convert: {error}"))?;
    let mut findings = Vec::new();
    for mut engine in [engines.v1, engines.v0] {
        engine.set_input(input.clone());
        let packages = engine
            .get_packages()
            .map_err(|error| anyhow!("listing the policies' packages: {error}"))?;
        for package in packages {
            for (rule, severity) in RULES {
                let query = format!("{package}.{rule}");
                let results = engine
                    .eval_query(query.clone(), false)
                    .map_err(|error| anyhow!("evaluating {query}: {error}"))?;
                let id = format!(
                    "{}.{rule}",
                    package.strip_prefix("data.").unwrap_or(&package)
                );
                for result in results.result {
                    for expression in result.expressions {
                        let json = expression
                            .value
                            .to_json_str()
                            .map_err(|error| anyhow!("{query} gave a value: {error}"))?;
                        let value: Value = serde_json::from_str(&json)
                            .with_context(|| format!("{query} gave `{json}`"))?;
                        findings.extend(messages(&value).map(|item| finding(&id, *severity, item)));
                    }
                }
            }
        }
    }
    Ok(findings)
}

/// The elements of a rule's value: a set (a JSON array) of messages, or one message.
fn messages(value: &Value) -> Box<dyn Iterator<Item = &Value> + '_> {
    match value {
        Value::Array(items) => Box::new(items.iter()),
        Value::Bool(_) | Value::Null => Box::new(std::iter::empty()),
        one => Box::new(std::iter::once(one)),
    }
}

fn finding(id: &str, severity: Severity, item: &Value) -> Finding {
    let field = |name: &str| item.get(name).and_then(Value::as_str).map(str::to_string);
    let message = match item {
        Value::String(text) => text.clone(),
        _ => field("msg").unwrap_or_else(|| item.to_string()),
    };
    Finding {
        rule: field("rule").unwrap_or_else(|| id.to_string()),
        severity,
        address: field("address").unwrap_or_else(|| PLAN_ADDRESS.to_string()),
        attribute: field("attribute"),
        message,
        fix: field("fix").unwrap_or_default(),
        location: None,
        waiver: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Vec<File> {
        vec![File {
            path: "test.rego".into(),
            text: text.to_string(),
        }]
    }

    #[test]
    fn v0_and_v1_policies_both_deny() {
        let input = serde_json::json!({ "resources": [{ "address": "a", "type": "t" }] });
        let v1 = "package main\n\ndeny contains msg if {\n  some r in input.resources\n  msg := sprintf(\"%s is bad\", [r.address])\n}\n";
        let v0 = "package main\n\ndeny[msg] {\n  r := input.resources[_]\n  msg := {\"msg\": \"bad\", \"address\": r.address}\n}\n\nwarn[msg] { msg := \"careful\" }\n";
        let found = evaluate(&file(v1), &input).expect("v1");
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].rule.as_str(), found[0].message.as_str()),
            ("main.deny", "a is bad")
        );
        let found = evaluate(&file(v0), &input).expect("v0");
        let got: Vec<(&str, &str, Severity)> = found
            .iter()
            .map(|f| (f.rule.as_str(), f.address.as_str(), f.severity))
            .collect();
        assert_eq!(
            got,
            [
                ("main.deny", "a", Severity::Error),
                ("main.warn", PLAN_ADDRESS, Severity::Warning)
            ]
        );
    }

    #[test]
    fn a_policy_that_does_not_parse_names_its_file() {
        let problem = problems(&file("package main\ndeny[msg] {")).expect("refused");
        assert!(problem.contains("test.rego"), "{problem}");
    }
}
