//! `trails plan`: ordering, actions and their reasons, secrets, JSON stability, exit codes.

use std::path::Path;

use serde_json::Value;
use trails::graph::Graph;
use trails::state::{Recorded, State};

use super::{repo, run};

/// Loads a blueprint the way the CLI does.
fn graph_of(file: &Path, environment: Option<&str>) -> (trails::blueprint::Checked, Graph) {
    let checked = trails::blueprint::load_checked(file, environment, &Default::default())
        .unwrap_or_else(|error| panic!("{} loads: {error}", file.display()));
    let graph =
        trails::graph::build(&checked.loaded, trails::resources::expand).expect("graph builds");
    (checked, graph)
}

/// The state an apply of the whole graph would record, with made-up ids and outputs.
fn applied(file: &Path, environment: Option<&str>) -> State {
    let (checked, graph) = graph_of(file, environment);
    let mut state = State::empty(
        &checked.loaded.document.blueprint,
        &checked.loaded.environment,
    );
    state.lineage = "test-lineage".to_string();
    state.serial = 1;
    for resource in graph.resources() {
        let attributes = trails::plan::recordable(resource, &state)
            .unwrap_or_else(|| panic!("{} resolves after its dependencies", resource.address));
        let outputs = resource
            .kind
            .outputs
            .iter()
            .map(|output| {
                (
                    output.to_string(),
                    Value::String(format!("{}#{output}", resource.address)),
                )
            })
            .collect();
        state.resources.insert(
            resource.address.clone(),
            Recorded {
                kind: resource.kind.name.to_string(),
                id: Some(format!("id-of-{}", resource.address)),
                attributes,
                outputs,
                depends_on: resource.depends_on.clone(),
                secret_versions: Default::default(),
            },
        );
    }
    state
}

fn write_state(dir: &Path, state: &State) -> String {
    let path = dir.join("state.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(state).expect("state serializes"),
    )
    .expect("write state");
    path.to_str().expect("utf-8").to_string()
}

fn plan_json(args: &[&str]) -> Value {
    let mut full = vec!["plan", "--json"];
    full.extend_from_slice(args);
    let result = run(&full);
    assert!(result.code == 0 || result.code == 2, "{}", result.stderr);
    serde_json::from_str(&result.stdout).expect("plan --json prints JSON")
}

fn change<'a>(plan: &'a Value, address: &str) -> &'a Value {
    plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .find(|change| change["address"] == address)
        .unwrap_or_else(|| panic!("no change for {address} in {plan:#}"))
}

#[test]
fn prod_plan_lists_every_resource_type_each_after_its_dependencies() {
    let file = repo("blueprints/turia-trails.yaml");
    let dir = tempfile::tempdir().expect("temp dir");
    let empty = dir.path().join("none.json");
    let plan = plan_json(&[
        "-f",
        file.to_str().expect("utf-8"),
        "-e",
        "prod",
        "--state",
        empty.to_str().expect("utf-8"),
    ]);
    let changes = plan["changes"].as_array().expect("changes");
    let types: std::collections::BTreeSet<&str> =
        changes.iter().filter_map(|c| c["type"].as_str()).collect();
    for kind in trails::resources::KINDS {
        assert!(types.contains(kind.name), "prod plan has no {}", kind.name);
    }
    let mut seen = std::collections::BTreeSet::new();
    for change in changes {
        assert_eq!(change["action"], "create");
        for dependency in change["depends_on"].as_array().expect("depends_on") {
            let dependency = dependency.as_str().expect("address");
            assert!(
                seen.contains(dependency),
                "{} is listed before its dependency {dependency}",
                change["address"]
            );
        }
        seen.insert(change["address"].as_str().expect("address"));
    }
    assert_eq!(
        plan["summary"]["create"].as_u64(),
        Some(changes.len() as u64)
    );
    for must in [
        "aws.nat_gateway.c",
        "aws.eks_node_group.stateful",
        "aws.db_instance.main",
        "aws.elasticache_replication_group.main",
        "helm.release.redpanda",
        "kafka.topic.audit-events-v1",
        "k8s.manifest.ingest-deployment",
    ] {
        assert!(seen.contains(must), "prod plan lacks {must}");
    }
}

#[test]
fn nothing_to_do_after_an_apply_exits_0_under_detailed_exitcode() {
    let file = repo("blueprints/turia-trails.yaml");
    let dir = tempfile::tempdir().expect("temp dir");
    let state = write_state(dir.path(), &applied(&file, Some("staging")));
    let result = run(&[
        "plan",
        "-f",
        file.to_str().expect("utf-8"),
        "-e",
        "staging",
        "--state",
        &state,
        "--detailed-exitcode",
    ]);
    assert_eq!(result.code, 0, "{}{}", result.stdout, result.stderr);
    assert!(result.stdout.contains("No changes"), "{}", result.stdout);
    assert!(
        result
            .stdout
            .contains("0 to create, 0 to update, 0 to replace, 0 to delete, 93 unchanged"),
        "{}",
        result.stdout
    );

    let fresh = run(&[
        "plan",
        "-f",
        file.to_str().expect("utf-8"),
        "-e",
        "staging",
        "--state",
        dir.path().join("absent.json").to_str().expect("utf-8"),
        "--detailed-exitcode",
    ]);
    assert_eq!(fresh.code, 2, "{}", fresh.stderr);

    // Destroying what was never applied says so, not that the state matches.
    let nothing = run(&[
        "plan",
        "-f",
        file.to_str().expect("utf-8"),
        "-e",
        "staging",
        "--state",
        dir.path().join("absent.json").to_str().expect("utf-8"),
        "--destroy",
    ]);
    assert_eq!(nothing.code, 0, "{}", nothing.stderr);
    assert!(
        nothing
            .stdout
            .contains("Nothing to destroy: the state records no resource."),
        "{}",
        nothing.stdout
    );
}

/// Writes a copy of examples/minimal.yaml with `edit` applied, next to a state applied from
/// the original.
fn edited_minimal(edit: impl Fn(String) -> String) -> (tempfile::TempDir, String, String) {
    let original = repo("examples/minimal.yaml");
    let dir = tempfile::tempdir().expect("temp dir");
    let state = write_state(dir.path(), &applied(&original, None));
    let text = std::fs::read_to_string(&original).expect("example");
    let edited = edit(text.clone());
    assert_ne!(edited, text, "the edit changed nothing");
    let file = dir.path().join("minimal.yaml");
    std::fs::write(&file, edited).expect("write blueprint");
    let file = file.to_str().expect("utf-8").to_string();
    (dir, file, state)
}

#[test]
fn changing_a_subnet_cidr_replaces_it_says_why_and_updates_what_uses_it() {
    let (_dir, file, state) = edited_minimal(|text| text.replace("10.0.1.0/24]", "10.0.2.0/24]"));
    let plan = plan_json(&["-f", &file, "--state", &state]);
    let subnet = change(&plan, "aws.subnet.public-b");
    assert_eq!(subnet["action"], "replace");
    assert_eq!(
        subnet["reasons"][0],
        "a subnet's CIDR block cannot be changed"
    );
    let cidr = &subnet["attributes"]["cidr_block"];
    assert_eq!(cidr["before"], "10.0.1.0/24");
    assert_eq!(cidr["after"], "10.0.2.0/24");
    assert_eq!(
        cidr["forces_replacement"],
        "a subnet's CIDR block cannot be changed"
    );
    // The public route table and ACL list the subnet's new id, known only after apply.
    for dependent in ["aws.route_table.public", "aws.network_acl.public"] {
        let entry = change(&plan, dependent);
        assert_eq!(entry["action"], "update", "{dependent}: {entry:#}");
        assert_eq!(entry["attributes"]["subnet_ids"]["unknown"], true);
    }
    // The NAT gateway lives in public-a and is untouched.
    assert_eq!(change(&plan, "aws.nat_gateway.a")["action"], "no-op");
    assert_eq!(plan["summary"]["replace"], 1);

    let text = run(&["plan", "-f", &file, "--state", &state]);
    assert!(
        text.stdout
            .contains("-/+ aws.subnet.public-b (replace: a subnet's CIDR block cannot be changed)"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("\"10.0.1.0/24\" -> \"10.0.2.0/24\"   # forces replacement"),
        "{}",
        text.stdout
    );
}

#[test]
fn an_in_place_change_is_an_update_and_a_removed_resource_is_deleted_first() {
    let (_dir, file, state) = edited_minimal(|text| {
        text.replace("noncurrent_expire_days: 30", "noncurrent_expire_days: 60")
            .replace("nat: single", "nat: none")
    });
    let plan = plan_json(&["-f", &file, "--state", &state]);
    let bucket = change(&plan, "aws.s3_bucket.artifacts");
    assert_eq!(bucket["action"], "update");
    assert!(bucket["attributes"]["lifecycle_rules"].is_object());
    assert_eq!(bucket["attributes"].as_object().map(|a| a.len()), Some(1));

    let changes = plan["changes"].as_array().expect("changes");
    let position = |address: &str| {
        changes
            .iter()
            .position(|c| c["address"] == address)
            .unwrap_or_else(|| panic!("{address} missing"))
    };
    for gone in ["aws.nat_gateway.a", "aws.eip.nat-a"] {
        assert_eq!(change(&plan, gone)["action"], "delete");
    }
    // The gateway uses the address, so it goes first; deletions come before other work.
    assert!(position("aws.nat_gateway.a") < position("aws.eip.nat-a"));
    assert!(position("aws.eip.nat-a") < position("aws.s3_bucket.artifacts"));
    assert_eq!(
        change(&plan, "aws.route_table.private-a")["action"],
        "update"
    );
    assert_eq!(plan["summary"]["delete"], 2);
}

#[test]
fn destroy_plan_removes_dependents_before_what_they_depend_on() {
    let file = repo("examples/local.yaml");
    let dir = tempfile::tempdir().expect("temp dir");
    let recorded = applied(&file, None);
    let state = write_state(dir.path(), &recorded);
    let plan = plan_json(&[
        "-f",
        file.to_str().expect("utf-8"),
        "--state",
        &state,
        "--destroy",
    ]);
    assert_eq!(plan["destroy"], true);
    let changes = plan["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), recorded.resources.len());
    let order: Vec<&str> = changes
        .iter()
        .filter_map(|c| c["address"].as_str())
        .collect();
    for (address, resource) in &recorded.resources {
        let here = order
            .iter()
            .position(|a| a == address)
            .expect("every resource is deleted");
        for dependency in &resource.depends_on {
            let there = order
                .iter()
                .position(|a| a == dependency)
                .expect("dependency deleted");
            assert!(
                here < there,
                "{address} must be deleted before {dependency}"
            );
        }
    }
    assert!(changes.iter().all(|c| c["action"] == "delete"));
    assert_eq!(order.last().copied(), Some("aws.vpc.main"));
    // The load balancers the cluster's controllers make live in the public subnets: the
    // cluster depends on them, so they go after it whatever order ties fall in.
    let cluster = &recorded.resources["aws.eks_cluster.main"];
    assert!(
        cluster.depends_on.contains("aws.subnet.public-a")
            && cluster.depends_on.contains("aws.subnet.public-b"),
        "{:?}",
        cluster.depends_on
    );
    let position = |address: &str| {
        order
            .iter()
            .position(|a| *a == address)
            .unwrap_or_else(|| panic!("{address} is not deleted"))
    };
    assert!(position("aws.eks_node_group.general") < position("aws.eks_cluster.main"));
    assert!(position("aws.eks_cluster.main") < position("aws.subnet.public-a"));
    assert!(position("aws.eks_cluster.main") < position("aws.subnet.public-b"));
}

#[test]
fn secrets_are_shown_as_sensitive_and_never_written_in_clear() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("secret.yaml");
    let blueprint = |password: &str| {
        format!(
            "blueprint: demo\nregion: eu-west-1\nkubernetes:\n  context: kind-demo\n  namespaces:\n    app: {{}}\n  secrets:\n    api:\n      namespace: app\n      data:\n        token: {password}\n"
        )
    };
    std::fs::write(&file, blueprint("hunter2-first")).expect("write");
    let file_arg = file.to_str().expect("utf-8");
    let created = run(&[
        "plan",
        "-f",
        file_arg,
        "--state",
        dir.path().join("none.json").to_str().expect("utf-8"),
    ]);
    assert_eq!(created.code, 0, "{}", created.stderr);
    assert!(
        created.stdout.contains("data      = (sensitive)"),
        "{}",
        created.stdout
    );
    assert!(!created.stdout.contains("hunter2"), "{}", created.stdout);

    let state = applied(&file, None);
    let state_text = serde_json::to_string(&state).expect("serializes");
    assert!(
        !state_text.contains("hunter2"),
        "state keeps the secret in clear: {state_text}"
    );
    let state_path = write_state(dir.path(), &state);

    std::fs::write(&file, blueprint("hunter2-second")).expect("write");
    let plan = plan_json(&["-f", file_arg, "--state", &state_path]);
    let secret = change(&plan, "k8s.secret.api");
    assert_eq!(secret["action"], "update");
    assert_eq!(secret["attributes"]["data"]["sensitive"], true);
    assert!(secret["attributes"]["data"].get("after").is_none());
    assert!(secret["attributes"]["data"].get("before").is_none());
    let text = run(&["plan", "-f", file_arg, "--state", &state_path]);
    assert!(
        text.stdout.contains("(sensitive) -> (sensitive)"),
        "{}",
        text.stdout
    );
    assert!(!text.stdout.contains("hunter2") && !text.stderr.contains("hunter2"));
}

#[test]
fn references_to_secret_outputs_make_attributes_sensitive() {
    let file = repo("blueprints/turia-trails.yaml");
    let plan = plan_json(&[
        "-f",
        file.to_str().expect("utf-8"),
        "-e",
        "prod",
        "--state",
        "/nonexistent-dir/state.json",
    ]);
    let database = change(&plan, "postgres.database.main-turia-trails");
    assert_eq!(database["attributes"]["password"]["sensitive"], true);
    assert_eq!(
        change(&plan, "k8s.secret.ingest-env")["attributes"]["data"]["sensitive"],
        true
    );
}

#[test]
fn saved_plan_is_the_json_plan() {
    let file = repo("examples/minimal.yaml");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("plan.json");
    let state = dir.path().join("none.json");
    let args = [
        "-f",
        file.to_str().expect("utf-8"),
        "--state",
        state.to_str().expect("utf-8"),
    ];
    let printed = plan_json(&args);
    let mut with_out = vec!["plan", "--out", out.to_str().expect("utf-8")];
    with_out.extend_from_slice(&args);
    let result = run(&with_out);
    assert_eq!(result.code, 0, "{}", result.stderr);
    assert!(
        result.stdout.contains("Saved the plan to"),
        "{}",
        result.stdout
    );
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&out).expect("saved plan"))
        .expect("saved plan is JSON");
    assert_eq!(saved, printed);
}

#[test]
fn plan_json_document_is_stable() {
    let file = repo("examples/minimal.yaml");
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("none.json");
    let plan = plan_json(&[
        "-f",
        file.to_str().expect("utf-8"),
        "--state",
        state.to_str().expect("utf-8"),
    ]);
    insta::assert_json_snapshot!("minimal_plan", plan);
}

#[test]
fn a_state_from_another_blueprint_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = write_state(dir.path(), &applied(&repo("examples/local.yaml"), None));
    let file = repo("examples/minimal.yaml");
    let result = run(&[
        "plan",
        "-f",
        file.to_str().expect("utf-8"),
        "--state",
        &state,
    ]);
    assert_eq!(result.code, 1);
    assert!(
        result
            .stderr
            .contains("belongs to blueprint `trails-local`"),
        "{}",
        result.stderr
    );
}

#[test]
fn a_variables_file_sets_variables_and_var_wins_over_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let vars = dir.path().join("staging.yaml");
    std::fs::write(&vars, "expire_days: 30\ningress: 10.0.0.0/8\n").expect("write vars");
    let file = repo("examples/local-aws.yaml");
    let state = dir.path().join("absent.json");
    let common = [
        "-f",
        file.to_str().expect("utf-8"),
        "--state",
        state.to_str().expect("utf-8"),
        "--var-file",
        vars.to_str().expect("utf-8"),
    ];
    let expire = |plan: &Value| {
        change(plan, "aws.s3_bucket.backups")["attributes"]["lifecycle_rules"]["after"][0]["expire_days"]
            .clone()
    };
    let from_file = plan_json(&common);
    assert_eq!(expire(&from_file), 30, "{from_file:#}");
    let text = from_file.to_string();
    assert!(
        text.contains("10.0.0.0/8"),
        "the file's ingress is not used"
    );
    let mut args = common.to_vec();
    args.extend(["--var", "expire_days=9"]);
    assert_eq!(expire(&plan_json(&args)), 9);

    std::fs::write(&vars, "expire_days: 30\ningress: [a, b]\n").expect("write vars");
    let refused = run(&[
        "plan",
        "-f",
        file.to_str().expect("utf-8"),
        "--var-file",
        vars.to_str().expect("utf-8"),
    ]);
    assert_eq!(refused.code, 1, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("staging.yaml:2:1")
            && refused
                .stderr
                .contains("`ingress`: a variable's value is one value"),
        "{}",
        refused.stderr
    );
}
