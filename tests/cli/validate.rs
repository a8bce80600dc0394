//! `trails validate`: shipped blueprints are valid; each broken fixture fails with exactly
//! the errors it declares, never a panic.

use super::{repo, run, run_with};

#[test]
fn shipped_blueprints_and_examples_validate_in_every_environment_without_a_warning() {
    // On the day their pins were last checked against AWS's calendar and the charts: a warning
    // here is a version that left support, an add-on that does not fit, or a typo.
    let checked_on = [("TRAILS_TODAY", "2026-12-08".to_string())];
    for file in [
        "blueprints/turia-trails.yaml",
        "examples/minimal.yaml",
        "examples/local.yaml",
        "examples/local-aws.yaml",
    ] {
        let path = repo(file);
        let result = run_with(
            None,
            &checked_on,
            &["validate", "-f", path.to_str().expect("utf-8 path")],
        );
        assert_eq!(
            result.code, 0,
            "{file}:\n{}{}",
            result.stdout, result.stderr
        );
        assert!(
            !format!("{}{}", result.stdout, result.stderr).contains("warning"),
            "{file} warns:\n{}{}",
            result.stdout,
            result.stderr
        );
    }
    let prod = run(&[
        "validate",
        "-f",
        repo("blueprints/turia-trails.yaml")
            .to_str()
            .expect("utf-8 path"),
    ]);
    for environment in ["prod", "staging", "preview"] {
        assert!(
            prod.stdout
                .contains(&format!("environment `{environment}` is valid")),
            "{}",
            prod.stdout
        );
    }
}

#[test]
fn each_broken_blueprint_reports_its_errors_with_positions_and_exit_1() {
    let dir = repo("tests/fixtures/broken");
    let mut fixtures: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixture directory")
        .map(|entry| entry.expect("fixture entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 15, "the fixture set shrank: {fixtures:?}");
    let mut failures = Vec::new();
    for fixture in &fixtures {
        let text = std::fs::read_to_string(fixture).expect("fixture is readable");
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expected.is_empty(),
            "{} declares no `# expect:` line",
            fixture.display()
        );
        let result = run(&["validate", "-f", fixture.to_str().expect("utf-8 path")]);
        if result.code != 1 {
            failures.push(format!(
                "{}: exit {} (expected 1)\n{}",
                fixture.display(),
                result.code,
                result.stderr
            ));
            continue;
        }
        for expectation in expected {
            if !result.stderr.contains(expectation) {
                failures.push(format!(
                    "{}: missing `{expectation}` in:\n{}",
                    fixture.display(),
                    result.stderr
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[test]
fn a_missing_file_and_an_unknown_environment_are_user_errors() {
    let missing = run(&["validate", "-f", "/nonexistent/blueprint.yaml"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing
            .stderr
            .contains("/nonexistent/blueprint.yaml: cannot read the blueprint"),
        "{}",
        missing.stderr
    );
    let blueprint = repo("blueprints/turia-trails.yaml");
    let unknown = run(&["plan", "-f", blueprint.to_str().expect("utf-8"), "-e", "qa"]);
    assert_eq!(unknown.code, 1);
    assert!(
        unknown
            .stderr
            .contains("no environment `qa` in the blueprint; it declares: prod, staging, preview"),
        "{}",
        unknown.stderr
    );
    let unchosen = run(&["plan", "-f", blueprint.to_str().expect("utf-8")]);
    assert_eq!(unchosen.code, 1);
    assert!(
        unchosen.stderr.contains("choose one with -e"),
        "{}",
        unchosen.stderr
    );
}

#[test]
fn warnings_do_not_fail_validation() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("warn.yaml");
    std::fs::write(
        &file,
        "blueprint: demo\nregion: eu-west-1\nnetwork:\n  cidr: 10.0.0.0/16\n  azs: [a]\n  subnets: { public: [10.0.0.0/24], private: [10.0.1.0/24] }\n",
    )
    .expect("write");
    let result = run(&["validate", "-f", file.to_str().expect("utf-8")]);
    assert_eq!(result.code, 0, "{}", result.stderr);
    assert!(
        result.stderr.contains("warning:") && result.stderr.contains("not highly available"),
        "{}",
        result.stderr
    );
}

#[test]
fn an_absurd_wait_timeout_is_refused_with_the_limit_not_a_panic() {
    let blueprint = repo("examples/local-aws.yaml");
    let path = blueprint.to_str().expect("utf-8");
    for args in [
        vec!["apply", "-f", path, "--wait-timeout", "99999999999999999s"],
        vec!["verify", "-f", path, "--timeout", "400d"],
    ] {
        let refused = run(&args);
        assert_ne!(refused.code, 0, "{args:?}");
        assert!(
            refused
                .stderr
                .contains("longer than the longest wait trails takes (24h)"),
            "{args:?}: {}",
            refused.stderr
        );
    }
}

#[test]
fn template_paths_stay_in_the_templates_directory_and_opensearch_names_are_safe_path_segments() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("templates")).expect("templates dir");
    std::fs::write(dir.path().join("templates/ok.json"), "{}").expect("template");
    std::fs::write(dir.path().join("secret.yaml"), "kind: Secret").expect("outside file");
    let file = dir.path().join("escape.yaml");
    std::fs::write(
        &file,
        "blueprint: demo\nregion: eu-west-1\nkubernetes:\n  manifests:\n    \
         outside: { template: ../secret.yaml }\n    absolute: { template: /etc/hostname }\n\
         opensearch:\n  url: http://opensearch:9200\n  index_templates:\n    \
         ../../logs-x: ok.json\n  ism_policies:\n    Hot_Warm: ok.json\n",
    )
    .expect("write");
    let result = run(&["validate", "-f", file.to_str().expect("utf-8")]);
    assert_eq!(result.code, 1, "{}", result.stderr);
    for expected in [
        "kubernetes.manifests.outside.template",
        "`../secret.yaml` leaves the `templates` directory",
        "`/etc/hostname` leaves the `templates` directory",
        "`../../logs-x` is not an OpenSearch name",
        "`Hot_Warm` is not an OpenSearch name",
    ] {
        assert!(
            result.stderr.contains(expected),
            "`{expected}` missing:\n{}",
            result.stderr
        );
    }
}

#[test]
fn a_mistyped_flag_exits_1_not_the_2_of_detailed_exitcode_and_help_exits_0() {
    let mistyped = run(&["plan", "--detailed-exitcod"]);
    assert_eq!(mistyped.code, 1, "{}", mistyped.stderr);
    assert!(
        mistyped.stderr.contains("unexpected argument"),
        "{}",
        mistyped.stderr
    );
    assert_eq!(run(&["plan", "--help"]).code, 0);
    assert_eq!(run(&["--version"]).code, 0);
}

#[test]
fn output_cut_short_by_a_closed_pipe_ends_quietly_without_a_panic() {
    use std::io::Read;
    let blueprint = repo("blueprints/turia-trails.yaml");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("trails"))
        .args(["plan", "-e", "prod", "--json", "-f"])
        .arg(&blueprint)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("trails starts");
    let mut first = [0u8; 1];
    child
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut first)
        .expect("the plan starts");
    // The reader is gone (as `| head -c1` leaves): the rest of the plan meets a closed pipe.
    let output = child.wait_with_output().expect("trails ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(output.status.code(), Some(101), "{stderr}");
}

#[test]
fn init_writes_a_starter_that_validates_and_plans_and_never_overwrites() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("trails.yaml");
    let path = file.to_str().expect("utf-8 path");
    let written = run(&["init", path, "--name", "shop", "--region", "us-east-2"]);
    assert_eq!(written.code, 0, "{}", written.stderr);
    let validated = run(&["validate", "-f", path]);
    assert_eq!(validated.code, 0, "{}", validated.stderr);
    for environment in ["dev", "prod"] {
        assert!(
            validated
                .stdout
                .contains(&format!("environment `{environment}` is valid")),
            "{}",
            validated.stdout
        );
    }
    let state = dir.path().join("prod.json");
    let planned = run(&[
        "plan",
        "-f",
        path,
        "-e",
        "prod",
        "--state",
        state.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(planned.code, 0, "{}", planned.stderr);
    assert!(planned.stdout.contains("shop-prod"), "{}", planned.stdout);
    let before = std::fs::read_to_string(&file).expect("starter");
    let again = run(&["init", path]);
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.contains("never overwritten"),
        "{}",
        again.stderr
    );
    assert_eq!(std::fs::read_to_string(&file).expect("starter"), before);
    let bad = run(&[
        "init",
        dir.path().join("x.yaml").to_str().expect("utf-8"),
        "--name",
        "Shop",
    ]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("--name `Shop`"), "{}", bad.stderr);
}

#[test]
fn the_shipped_blueprints_and_examples_satisfy_the_published_json_schema() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo("docs/blueprint.schema.json")).expect("schema"),
    )
    .expect("json");
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let mut files = vec![repo("blueprints/turia-trails.yaml")];
    files.extend(
        std::fs::read_dir(repo("examples"))
            .expect("examples")
            .map(|entry| entry.expect("entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "yaml")),
    );
    for file in files {
        let text = std::fs::read_to_string(&file).expect("blueprint");
        assert!(
            text.starts_with("# yaml-language-server: $schema="),
            "{} does not name the schema for editors",
            file.display()
        );
        let document: serde_json::Value = serde_yaml::from_str(&text).expect("yaml");
        let problems: Vec<String> = validator
            .iter_errors(&document)
            .map(|error| format!("{}: {error}", error.instance_path()))
            .collect();
        assert!(
            problems.is_empty(),
            "{} breaks the schema an editor checks it with:\n{}",
            file.display(),
            problems.join("\n")
        );
    }
    // And the schema is not lenient: a misspelled field is refused, as trails refuses it.
    let typo: serde_json::Value =
        serde_yaml::from_str("blueprint: a\nregion: eu-west-1\nnetwrok: {}\n").expect("yaml");
    assert!(!validator.is_valid(&typo));
}

#[test]
fn fmt_check_passes_on_the_shipped_blueprints_and_fmt_rewrites_a_messy_one_without_changing_it() {
    let mut shipped = vec!["fmt", "--check"];
    let files = [
        "blueprints/turia-trails.yaml",
        "examples/minimal.yaml",
        "examples/local.yaml",
        "examples/local-aws.yaml",
    ]
    .map(|file| repo(file).display().to_string());
    for file in &files {
        shipped.extend(["-f", file.as_str()]);
    }
    let checked = run(&shipped);
    assert_eq!(checked.code, 0, "{}", checked.stderr);

    // So is what `trails init` writes.
    let dir = tempfile::tempdir().expect("temp dir");
    let starter = dir.path().join("trails.yaml");
    let starter = starter.to_str().expect("utf-8 path");
    assert_eq!(run(&["init", starter]).code, 0);
    let checked = run(&["fmt", "--check", "-f", starter]);
    assert_eq!(checked.code, 0, "{}", checked.stderr);

    let file = dir.path().join("messy.yaml");
    let messy = "# header\n\nbuckets:\n    logs:   { versioning: true }\n# the region\nregion:    eu-west-1\nblueprint: demo\n";
    std::fs::write(&file, messy).expect("write");
    let path = file.to_str().expect("utf-8 path");
    let check = run(&["fmt", "--check", "-f", path]);
    assert_eq!(check.code, 1);
    assert!(
        check.stderr.contains("not in canonical form") && check.stderr.contains("messy.yaml"),
        "{}",
        check.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&file).expect("read"),
        messy,
        "--check wrote"
    );
    let formatted = run(&["fmt", "-f", path]);
    assert_eq!(formatted.code, 0, "{}", formatted.stderr);
    assert_eq!(
        std::fs::read_to_string(&file).expect("read"),
        "# header\n\nblueprint: demo\n\n# the region\nregion: eu-west-1\n\nbuckets:\n  logs: { versioning: true }\n"
    );
    assert_eq!(run(&["fmt", "--check", "-f", path]).code, 0);
    // Not YAML: refused with the file's name, and left as it is.
    std::fs::write(&file, "buckets: [1, 2\n").expect("write");
    let broken = run(&["fmt", "-f", path]);
    assert_eq!(broken.code, 1);
    assert!(
        broken.stderr.contains("messy.yaml: not valid YAML"),
        "{}",
        broken.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&file).expect("read"),
        "buckets: [1, 2\n"
    );
}
