//! Guardrails: the built-in rules, Rego policies, waivers and the gates on `plan` and `apply`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Run, repo, run_with, watched_aws};

/// `trails plan --json` of `file` (environment `prod`) against an empty state in `dir`.
fn plan(file: &Path, state: &Path, env: &[(&str, String)], extra: &[&str]) -> Run {
    let mut args = vec![
        "plan",
        "--json",
        "-f",
        file.to_str().expect("utf-8 path"),
        "--state",
        state.to_str().expect("utf-8 path"),
    ];
    args.extend(extra);
    run_with(None, env, &args)
}

/// `(rule, address, waived)` of every finding in a `plan --json` document.
fn findings(run: &Run) -> Vec<(String, String, bool)> {
    let document: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|error| panic!("plan --json: {error}\n{}\n{}", run.stdout, run.stderr));
    document["policy"]["findings"]
        .as_array()
        .expect("policy.findings")
        .iter()
        .map(|finding| {
            let text = |key: &str| finding[key].as_str().unwrap_or_default().to_string();
            let waived = finding.get("waiver").is_some()
                && finding["waiver"]["expired"] == Value::Bool(false);
            (text("rule"), text("address"), waived)
        })
        .collect()
}

fn fixtures() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(repo("tests/fixtures/policy"))
        .expect("fixture directory")
        .map(|entry| entry.expect("fixture entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    found.sort();
    found
}

#[test]
fn each_rule_fixture_triggers_exactly_its_rule_at_its_address() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fixtures = fixtures();
    assert!(fixtures.len() >= 12, "the fixture set shrank: {fixtures:?}");
    let mut failures = Vec::new();
    for fixture in &fixtures {
        let rule = fixture
            .file_stem()
            .and_then(|stem| stem.to_str())
            .expect("fixture name");
        let text = std::fs::read_to_string(fixture).expect("fixture is readable");
        let expected: BTreeSet<(String, String, bool)> = text
            .lines()
            .filter_map(|line| line.strip_prefix("# expect: "))
            .map(|line| {
                let (id, address) = line.split_once(' ').expect("`# expect: RULE ADDRESS`");
                assert_eq!(
                    id,
                    rule,
                    "{}: the file is named after its rule",
                    fixture.display()
                );
                (id.to_string(), address.to_string(), false)
            })
            .collect();
        let run = plan(fixture, &dir.path().join("state.json"), &[], &[]);
        let got: BTreeSet<_> = findings(&run).into_iter().collect();
        if got != expected {
            failures.push(format!(
                "{}: found {got:?}, expected {expected:?}",
                fixture.display()
            ));
        }
        let gating = trails::policy::rules::RULES
            .iter()
            .find(|known| known.id == rule)
            .map(|known| known.severity == trails::policy::Severity::Error)
            .expect("the fixture names a built-in rule");
        let expected_code = if gating { 1 } else { 0 };
        if run.code != expected_code {
            failures.push(format!(
                "{}: exit {} (expected {expected_code})\n{}",
                fixture.display(),
                run.code,
                run.stderr
            ));
        }
        if gating && !run.stderr.contains(&format!("{rule} ")) {
            failures.push(format!(
                "{}: stderr does not name {rule}:\n{}",
                fixture.display(),
                run.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

/// Rules the blueprint cannot trigger today (trails generates what they check); each is
/// tested on attributes in `src/policy/rules.rs`.
const HELD_BY_CONSTRUCTION: &[&str] = &[
    "network.open-ingress",
    "rds.storage-encryption",
    "rds.publicly-accessible",
    "iam.wildcard-admin",
    "iam.irsa-scope",
];

#[test]
fn every_built_in_rule_has_a_fixture_or_is_held_by_construction() {
    let named: BTreeSet<String> = fixtures()
        .iter()
        .filter_map(|path| path.file_stem()?.to_str().map(str::to_string))
        .collect();
    for rule in trails::policy::rules::RULES {
        assert!(
            named.contains(rule.id) != HELD_BY_CONSTRUCTION.contains(&rule.id),
            "{}: give it a fixture in tests/fixtures/policy (or, if no blueprint can trigger \
             it, list it in HELD_BY_CONSTRUCTION), not both",
            rule.id
        );
    }
}

#[test]
fn the_shipped_blueprint_has_no_unwaived_error_in_any_environment() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = repo("blueprints/turia-trails.yaml");
    for environment in ["prod", "staging", "preview"] {
        let run = plan(
            &file,
            &dir.path().join(format!("{environment}.json")),
            &[],
            &["-e", environment],
        );
        assert_eq!(run.code, 0, "{environment}: {}", run.stderr);
        let found = findings(&run);
        assert!(
            found.iter().all(|(_, _, waived)| *waived),
            "{environment}: {found:?}"
        );
        if environment == "prod" {
            assert_eq!(
                found,
                [(
                    "eks.public-endpoint".to_string(),
                    "aws.eks_cluster.main".to_string(),
                    true
                )],
                "prod's one finding is its waived public endpoint"
            );
        }
    }
}

#[test]
fn text_output_has_a_policy_section_with_the_fix_and_the_blueprint_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = repo("tests/fixtures/policy/s3.public-access-block.yaml");
    let run = run_with(
        None,
        &[],
        &[
            "plan",
            "-f",
            file.to_str().expect("utf-8"),
            "--state",
            dir.path().join("s.json").to_str().expect("utf-8"),
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stdout.contains("Policy: 1 finding(s), 1 gating"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("error   s3.public-access-block  aws.s3_bucket.site (block_public_access)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("fix: set block_public_access: true"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("s3.public-access-block.yaml:8:3"),
        "the finding points at the bucket's line: {}",
        run.stdout
    );
    assert!(
        run.stderr.contains("apply will refuse this plan"),
        "{}",
        run.stderr
    );
}

/// A blueprint with one bucket, and a conftest-style (Rego v0) policy that wants every
/// bucket to expire old versions, in a fresh directory.
fn rego_case(dir: &Path, lifecycle: &str, waive: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("policies")).expect("policies dir");
    std::fs::write(
        dir.join("policies/buckets.rego"),
        "package main\n\n\
         deny[msg] {\n\
         \tr := input.resources[_]\n\
         \tr.type == \"aws.s3_bucket\"\n\
         \tcount(r.attributes.lifecycle_rules) == 0\n\
         \tmsg := {\"msg\": sprintf(\"%s keeps every version forever\", [r.attributes.bucket]), \"address\": r.address}\n\
         }\n",
    )
    .expect("policy");
    // A test file beside it is not a policy.
    std::fs::write(
        dir.join("policies/buckets_test.rego"),
        "package main\n\ntest_nothing { true }\n",
    )
    .expect("policy test");
    let file = dir.join("blueprint.yaml");
    std::fs::write(
        &file,
        format!(
            "blueprint: rego\nregion: eu-west-1\nenvironments:\n  prod: {{}}\n\
             policy:\n  paths: [policies]\n{waive}\
             buckets:\n  logs:\n    lifecycle: {lifecycle}\n"
        ),
    )
    .expect("blueprint");
    file
}

#[test]
fn a_conftest_style_rego_policy_denies_the_fixture_and_passes_the_fixed_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state.json");
    let file = rego_case(dir.path(), "[]", "");
    let run = plan(&file, &state, &[], &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        findings(&run),
        [(
            "main.deny".to_string(),
            "aws.s3_bucket.logs".to_string(),
            false
        )]
    );
    assert!(
        run.stdout
            .contains("rego-prod-logs keeps every version forever"),
        "{}",
        run.stdout
    );

    let fixed = rego_case(dir.path(), "[{ id: old, noncurrent_expire_days: 30 }]", "");
    let run = plan(&fixed, &state, &[], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(findings(&run).is_empty());
}

#[test]
fn a_waiver_holds_through_its_last_day_and_gates_again_after_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state.json");
    let waive = "  waive:\n    - { rule: main.deny, address: \"aws.s3_bucket.*\", reason: migrating, expires: 2026-12-01 }\n";
    let file = rego_case(dir.path(), "[]", waive);
    let on = |day: &str| plan(&file, &state, &[("TRAILS_TODAY", day.to_string())], &[]);

    let run = on("2026-12-01");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        findings(&run),
        [(
            "main.deny".to_string(),
            "aws.s3_bucket.logs".to_string(),
            true
        )]
    );

    let run = on("2026-12-02");
    assert_eq!(run.code, 1, "an expired waiver gates: {}", run.stderr);
    assert_eq!(
        findings(&run),
        [(
            "main.deny".to_string(),
            "aws.s3_bucket.logs".to_string(),
            false
        )]
    );
    let document: Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(document["policy"]["findings"][0]["waiver"]["expired"], true);
}

#[test]
fn warnings_gate_only_when_asked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state.json");
    let file = repo("tests/fixtures/policy/s3.versioning.yaml");
    assert_eq!(plan(&file, &state, &[], &[]).code, 0);
    let strict = plan(&file, &state, &[], &["--policy-fail-on", "warning"]);
    assert_eq!(strict.code, 1, "{}", strict.stderr);
}

#[test]
fn apply_refuses_a_gated_plan_before_any_aws_call_or_state_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state.json");
    let (aws, env) = watched_aws();
    let file = repo("tests/fixtures/policy/s3.public-access-block.yaml");
    let run = run_with(
        None,
        &env,
        &[
            "apply",
            "--yes",
            "-f",
            file.to_str().expect("utf-8"),
            "--state",
            state.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("refusing to apply"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("s3.public-access-block aws.s3_bucket.site"),
        "{}",
        run.stderr
    );
    assert!(
        aws.accept().is_err(),
        "apply connected to the AWS endpoint before refusing"
    );
    let recorded = std::fs::read_to_string(&state).unwrap_or_default();
    assert!(
        !recorded.contains("aws.s3_bucket.site"),
        "the state records the refused bucket: {recorded}"
    );
}

#[test]
fn the_markdown_plan_matches_its_golden_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = repo("tests/fixtures/policy/s3.public-access-block.yaml");
    let markdown = dir.path().join("plan.md");
    let run = run_with(
        None,
        &[],
        &[
            "plan",
            "--format",
            "markdown",
            "-f",
            file.to_str().expect("utf-8"),
            "--state",
            dir.path().join("s.json").to_str().expect("utf-8"),
            "--out-markdown",
            markdown.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(run.code, 1, "the finding gates: {}", run.stderr);
    let written = std::fs::read_to_string(&markdown).expect("--out-markdown wrote the file");
    assert_eq!(
        written, run.stdout,
        "--out-markdown writes what --format markdown prints"
    );
    insta::assert_snapshot!("plan_markdown", run.stdout);
}
