//! The cost estimate: prices from Price List extracts, what stays unpriced, `prices update`,
//! and the budget and `--max-increase` gates on `plan` and `apply`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Run, repo, run, run_with, watched_aws};

/// The cost fixture copied into a fresh directory (with its templates directory), so that
/// `prices update` writes `.trails/prices/` there and nowhere in the repository.
fn workspace() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = std::fs::read_to_string(repo("tests/fixtures/cost/platform.yaml"))
        .expect("cost fixture")
        .replace("templates: ../templates", "templates: templates");
    std::fs::create_dir(dir.path().join("templates")).expect("templates dir");
    let file = dir.path().join("trails.yaml");
    std::fs::write(&file, text).expect("write blueprint");
    (dir, file)
}

fn path(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The day the EKS calendar is read on, fixed so that versions stay where the tests expect.
const TODAY: &str = "2026-12-02";

fn plan(file: &Path, env: &str, extra: &[&str]) -> Run {
    let state = file.with_file_name(format!("{env}.state.json"));
    let mut args = vec!["plan", "-f", path(file), "-e", env, "--state", path(&state)];
    args.extend(extra);
    run_with(None, &[("TRAILS_TODAY", TODAY.to_string())], &args)
}

fn cost(run: &Run) -> Value {
    let document: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|error| panic!("plan --json: {error}\n{}\n{}", run.stdout, run.stderr));
    document["cost"].clone()
}

/// The monthly after-cost of one resource, and its components as `name: unpriced reason`.
fn line(cost: &Value, address: &str) -> (f64, Vec<String>) {
    let line = cost["per_resource"]
        .as_array()
        .expect("per_resource")
        .iter()
        .find(|line| line["address"] == address)
        .unwrap_or_else(|| panic!("no cost line for {address}: {cost:#}"));
    let components = line["components"]
        .as_array()
        .expect("components")
        .iter()
        .map(|c| {
            format!(
                "{}: {}",
                c["name"].as_str().unwrap_or_default(),
                c["unpriced"].as_str().unwrap_or("priced")
            )
        })
        .collect();
    (
        line["monthly_after"].as_f64().expect("monthly_after"),
        components,
    )
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 0.005
}

/// `trails prices update` of the fixture offer file `offer`.
fn update(file: &Path, offer: &str) -> Run {
    update_from(file, &repo(&format!("tests/fixtures/cost/{offer}")))
}

fn update_from(file: &Path, from: &Path) -> Run {
    run(&["prices", "update", "--from", path(from), "-f", path(file)])
}

#[test]
fn the_shipped_prices_price_the_eks_control_plane_and_the_rest_is_listed_unpriced() {
    let (_dir, file) = workspace();
    let planned = plan(&file, "prod", &["--json"]);
    assert_eq!(planned.code, 0, "{}\n{}", planned.stdout, planned.stderr);
    let cost = cost(&planned);
    assert_eq!(cost["currency"], "USD");
    assert_eq!(cost["complete"], false, "{cost:#}");
    assert!(close(cost["monthly_before"].as_f64().expect("before"), 0.0));
    // 730 hours at the $0.10 an hour AWS publishes for a cluster in standard support.
    assert!(
        close(cost["monthly_after"].as_f64().expect("after"), 73.0),
        "{cost:#}"
    );
    assert_eq!(cost["prices"]["origin"], "built in");
    assert_eq!(cost["prices"]["published"][0], "AmazonEKS 2024-04-01");
    let (eks, _) = line(&cost, "aws.eks_cluster.main");
    assert!(close(eks, 73.0));
    let (nat, components) = line(&cost, "aws.nat_gateway.a");
    assert!(close(nat, 0.0));
    assert!(
        components[0].contains("no AmazonEC2 price for NatGateway-Hours in the eu-west-1 prices"),
        "{components:?}"
    );
    let (_, redis) = line(&cost, "aws.elasticache_replication_group.main");
    assert!(redis[0].starts_with("4 × cache.r6g.large nodes: no AmazonElastiCache price"));

    let text = plan(&file, "prod", &[]);
    assert_eq!(text.code, 0, "{}\n{}", text.stdout, text.stderr);
    for expected in [
        "Cost (USD; prices for eu-west-1 built in: AmazonEKS 2024-04-01):",
        "at least $0.00 a month before, at least $73.00 after (+$73.00)",
        "component(s) unpriced, so the totals are lower bounds",
        "     +$73.00  aws.eks_cluster.main  ($73.00 a month)",
        "control plane: 730 Hrs × $0.1",
        "budget $1,500.00 a month: kept by what is priced",
    ] {
        assert!(
            text.stdout.contains(expected),
            "{expected}\n{}",
            text.stdout
        );
    }
}

#[test]
fn prices_updated_from_offer_files_price_each_component_from_its_own_product() {
    let (dir, file) = workspace();
    let ec2 = update(&file, "offer-ec2.json");
    assert_eq!(ec2.code, 0, "{}\n{}", ec2.stdout, ec2.stderr);
    // The Linux and Windows m6i.large and the NAT hours; not NAT bytes nor EBS.
    assert!(
        ec2.stdout.contains("Kept 3 product(s) for eu-west-1"),
        "{}",
        ec2.stdout
    );
    for offer in ["offer-rds.json", "offer-vpc.json"] {
        let updated = update(&file, offer);
        assert_eq!(updated.code, 0, "{offer}: {}", updated.stderr);
    }
    let extract = dir.path().join(".trails/prices/eu-west-1.json");
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&extract).expect("extract")).expect("json");
    let offers: Vec<&str> = written["offers"]
        .as_object()
        .expect("offers")
        .keys()
        .map(String::as_str)
        .collect();
    // Merged over the shipped extract, which keeps its EKS price.
    assert_eq!(
        offers,
        ["AmazonEC2", "AmazonEKS", "AmazonRDS", "AmazonVPC"],
        "{written:#}"
    );

    let cost = cost(&plan(&file, "prod", &["--json"]));
    let expect = [
        ("aws.eks_cluster.main", 73.0),
        // 3 nodes × 730 h × $0.20 (the Linux price, not the Windows one).
        ("aws.eks_node_group.general", 438.0),
        ("aws.nat_gateway.a", 36.5),
        ("aws.eip.nat-a", 7.3),
        // Multi-AZ db.r6g.large 730 h × $0.50 + 100 GB × $0.25.
        ("aws.db_instance.main", 390.0),
    ];
    for (address, usd) in expect {
        let (found, components) = line(&cost, address);
        assert!(
            close(found, usd),
            "{address}: {found} ≠ {usd} {components:?}"
        );
    }
    assert!(
        close(cost["monthly_after"].as_f64().expect("after"), 944.8),
        "{cost:#}"
    );
    // No ElastiCache or S3 offer was given: still unpriced, so still a lower bound.
    assert_eq!(cost["complete"], false);
    assert!(
        cost["prices"]["origin"]
            .as_str()
            .is_some_and(|origin| origin.ends_with(".trails/prices/eu-west-1.json"))
    );

    let markdown = plan(&file, "prod", &["--format", "markdown"]);
    assert!(
        markdown
            .stdout
            .contains("| `aws.eks_node_group.general` | $0.00 | $438.00 | +$438.00 |"),
        "{}",
        markdown.stdout
    );
}

#[test]
fn a_budget_or_an_increase_past_its_limit_gates_plan_and_apply_refuses_before_any_call() {
    let (dir, file) = workspace();
    update(&file, "offer-ec2.json");
    // $547.50 of priced components (control plane, nodes, NAT hours) against $500.
    let tight = plan(&file, "tight", &[]);
    assert_eq!(tight.code, 1, "{}\n{}", tight.stdout, tight.stderr);
    assert!(
        tight
            .stderr
            .contains("the monthly estimate $547.50 exceeds the environment's budget $500.00"),
        "{}",
        tight.stderr
    );
    assert!(tight.stdout.contains("budget $500.00 a month: exceeded"));

    let more = plan(&file, "prod", &["--max-increase", "500"]);
    assert_eq!(more.code, 1, "{}", more.stderr);
    assert!(
        more.stderr
            .contains("grows by $547.50, more than --max-increase $500.00"),
        "{}",
        more.stderr
    );
    assert_eq!(
        plan(&file, "prod", &["--max-increase", "600 USD/month"]).code,
        0
    );
    let bad = plan(&file, "prod", &["--max-increase", "a lot"]);
    assert_eq!(bad.code, 1, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("`a lot` is not an amount"),
        "{}",
        bad.stderr
    );

    let (aws, mut env) = watched_aws();
    env.push(("TRAILS_TODAY", TODAY.to_string()));
    let state = dir.path().join("tight.state.json");
    let applied = run_with(
        None,
        &env,
        &[
            "apply",
            "--yes",
            "-f",
            path(&file),
            "-e",
            "tight",
            "--state",
            path(&state),
        ],
    );
    assert_eq!(applied.code, 1, "{}\n{}", applied.stdout, applied.stderr);
    assert!(
        applied
            .stderr
            .contains("refusing to apply: the monthly estimate $547.50 exceeds"),
        "{}",
        applied.stderr
    );
    assert!(
        aws.accept().is_err(),
        "apply connected to the AWS endpoint before refusing"
    );
    let recorded = std::fs::read_to_string(&state).unwrap_or_default();
    assert!(!recorded.contains("aws.vpc.main"), "{recorded}");
}

#[test]
fn an_ephemeral_environment_shows_what_it_costs_until_its_ttl_ends() {
    let (_dir, file) = workspace();
    let cost = cost(&plan(&file, "preview", &["--json"]));
    assert_eq!(cost["until_expiry"]["hours"], 72.0);
    // $73.00 a month for 72 of its 730 hours.
    assert!(
        close(
            cost["until_expiry"]["usd"].as_f64().expect("usd"),
            73.0 * 72.0 / 730.0
        ),
        "{cost:#}"
    );
    let text = plan(&file, "preview", &[]);
    assert!(
        text.stdout
            .contains("at least $7.20 until the TTL ends (72 h)"),
        "{}",
        text.stdout
    );
}

#[test]
fn offer_files_trails_cannot_use_and_bad_budgets_are_refused_with_the_reason() {
    let (dir, file) = workspace();
    let two = update(&file, "offer-two-regions.json");
    assert_eq!(two.code, 1);
    assert!(
        two.stderr.contains(
            "products of 2 regions (eu-west-1, us-east-1); download the offer file of one region"
        ),
        "{}",
        two.stderr
    );
    let other = dir.path().join("offer.json");
    std::fs::write(
        &other,
        r#"{"offerCode": "AmazonSageMaker", "publicationDate": "2026-11-01T00:00:00Z", "products": {}, "terms": {}}"#,
    )
    .expect("write");
    let unknown = update_from(&file, &other);
    assert_eq!(unknown.code, 1);
    assert!(
        unknown
            .stderr
            .contains("trails prices nothing of offer `AmazonSageMaker`"),
        "{}",
        unknown.stderr
    );
    std::fs::write(&other, "[1, 2]").expect("write");
    let garbage = update_from(&file, &other);
    assert_eq!(garbage.code, 1);
    assert!(
        garbage
            .stderr
            .contains("is not an AWS Price List offer file")
    );
    assert!(!dir.path().join(".trails/prices").exists());

    let text = std::fs::read_to_string(&file)
        .expect("blueprint")
        .replace("budget: 500 USD/month", "budget: 500 EUR");
    std::fs::write(&file, text).expect("write");
    let validated = run(&["validate", "-f", path(&file), "-e", "tight"]);
    assert_eq!(validated.code, 1, "{}", validated.stderr);
    assert!(
        validated.stderr.contains("environments.tight.budget")
            && validated.stderr.contains("expected `AMOUNT USD/month`"),
        "{}",
        validated.stderr
    );
}

#[test]
fn a_cluster_in_extended_support_costs_the_extended_price_and_one_past_it_is_unpriced() {
    let (_dir, file) = workspace();
    // $0.60 an hour in extended support, as AWS's announcement of its pricing says.
    let lagging = cost(&plan(&file, "lagging", &["--json"]));
    let (eks, components) = line(&lagging, "aws.eks_cluster.main");
    assert!(close(eks, 438.0), "{eks} {components:?}");
    assert_eq!(components, ["control plane in extended support: priced"]);
    let abandoned = cost(&plan(&file, "abandoned", &["--json"]));
    let (eks, components) = line(&abandoned, "aws.eks_cluster.main");
    assert!(close(eks, 0.0));
    assert_eq!(
        components,
        ["control plane: the Price List has no price for it"]
    );
    let text = plan(&file, "abandoned", &[]);
    assert!(
        text.stdout
            .contains("EKS's support of Kubernetes 1.30 ended on 2026-07-23"),
        "{}",
        text.stdout
    );
}
