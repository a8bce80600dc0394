//! Integration tests of the `trails` command, one module per capability (one binary keeps
//! link times down).

mod apiserver;
mod apply_aws;
mod blueprint_fuzz;
mod clickhouse;
mod cost;
mod graph;
mod ingest;
mod kafka;
mod kubernetes;
mod moto;
mod opensearch;
mod plan;
mod policy;
mod postgres;
mod render;
mod services;
mod state_s3;
mod validate;
mod verify;

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A path under the repository root.
pub fn repo(path: &str) -> PathBuf {
    root().join(path)
}

/// `trails` with a clean environment: no colours, no inherited TRAILS_* settings.
pub fn trails() -> Command {
    let mut command =
        Command::cargo_bin("trails").expect("the trails binary is built by cargo test");
    command.env("NO_COLOR", "1");
    for (key, _) in std::env::vars() {
        if key.starts_with("TRAILS_") {
            command.env_remove(key);
        }
    }
    command
}

/// The state file at `path` records no resource and no intent (after a destroy).
pub fn assert_state_records_nothing(path: &Path, what: &str) {
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("state file")).expect("json");
    assert_eq!(
        (
            state["resources"].as_object().map(|r| r.len()),
            state.get("intents")
        ),
        (Some(0), None),
        "{what}: {state}"
    );
}

/// Output of a finished command.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `trails ARGS` and captures everything.
pub fn run(args: &[&str]) -> Run {
    run_in(None, args)
}

/// Runs `trails ARGS` in a directory.
pub fn run_in(dir: Option<&Path>, args: &[&str]) -> Run {
    run_with(dir, &[], args)
}

/// Runs `trails ARGS` in a directory with extra environment variables.
pub fn run_with(dir: Option<&Path>, env: &[(&str, String)], args: &[&str]) -> Run {
    let mut command = trails();
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.args(args).output().expect("trails runs");
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(
        !run.stderr.contains("panicked"),
        "trails panicked on {args:?}:\n{}",
        run.stderr
    );
    run
}

/// Where AWS would be, for a run that must make no AWS call at all: any connection shows up as
/// an accepted one on the listener. The environment points the SDK at it with test credentials.
pub fn watched_aws() -> (std::net::TcpListener, Vec<(&'static str, String)>) {
    let aws = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    aws.set_nonblocking(true).expect("non-blocking");
    let url = format!("http://{}", aws.local_addr().expect("address"));
    let env = vec![
        ("AWS_ENDPOINT_URL", url),
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ];
    (aws, env)
}

/// Runs trails on `file` with the endpoint `NAME=URL` in `TRAILS_ENDPOINTS` (none when `url` is
/// empty) and no AWS behind it: for day-one tests whose servers are local.
pub fn run_with_endpoint(file: &Path, name: &str, url: &str, args: &[&str]) -> Run {
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["-f", file.to_str().expect("utf-8 path")]);
    // These keep the AWS SDK from looking for credentials anywhere real.
    let mut env = vec![
        ("AWS_ACCESS_KEY_ID", "unused".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "unused".to_string()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
    ];
    // The URL may hold a password, which trails takes only from the environment.
    if !url.is_empty() {
        env.push(("TRAILS_ENDPOINTS", format!("{name}={url}")));
    }
    run_with(None, &env, &full)
}

/// `(name, status, evidence)` of each check in a `verify --json` report.
pub fn verdicts(run: &Run) -> Vec<(String, String, String)> {
    let report: serde_json::Value = serde_json::from_str(&run.stdout).expect("verify --json");
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|check| {
            let text = |key: &str| check[key].as_str().unwrap_or_default().to_string();
            (text("name"), text("status"), text("evidence"))
        })
        .collect()
}
