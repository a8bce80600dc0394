//! Shared state in S3 against moto (which checks S3's conditional writes; our shim makes each
//! check-and-write one step, as in S3): the lock, compare-and-swap writes, a local fallback
//! when S3 cannot be written, and ephemeral environments that expire.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::moto::{Moto, STATE_BUCKET};
use super::{Run, run_with};

const BLUEPRINT: &str = "\
blueprint: stately
region: us-east-1
state:
  s3: { bucket: trails-state, prefix: platform }
buckets:
  logs: {}
  data: { versioning: false }
environments:
  stable: {}
  pr-old: { ephemeral: true, ttl: 1h }
  pr-new: { ephemeral: true, ttl: 72h }
";

fn workspace(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("trails.yaml");
    std::fs::write(&file, text).expect("write the blueprint");
    (dir, file)
}

fn trails(moto: &Moto, file: &Path, args: &[&str]) -> Run {
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["-f", file.to_str().expect("utf-8 path")]);
    run_with(None, &moto.env(), &full)
}

fn spawn(moto: &Moto, file: &Path, args: &[&str]) -> Child {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("trails"))
        .args(args)
        .arg("-f")
        .arg(file)
        .envs(moto.env())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("trails starts")
}

fn finish(child: Child) -> Run {
    let output = child.wait_with_output().expect("trails ends");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Waits until moto holds a call of `child` at the gate.
fn until_held(moto: &Moto, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while moto.held() == 0 {
        assert!(Instant::now() < deadline, "no call was held within 60s");
        assert!(
            child.try_wait().expect("child status").is_none(),
            "the run ended before a call was held"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("tokio runtime")
}

fn state_bucket(moto: &Moto, versioned: bool) {
    let (_, s3) = moto.clients();
    runtime().block_on(async {
        s3.create_bucket()
            .bucket(STATE_BUCKET)
            .send()
            .await
            .expect("create the state bucket");
        if versioned {
            s3.put_bucket_versioning()
                .bucket(STATE_BUCKET)
                .versioning_configuration(
                    aws_sdk_s3::types::VersioningConfiguration::builder()
                        .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send()
                .await
                .expect("enable versioning");
        }
    });
}

/// moto with a versioned state bucket, and the blueprint in a directory of its own.
fn started() -> (Moto, tempfile::TempDir, PathBuf) {
    let moto = Moto::start();
    let (dir, file) = workspace(BLUEPRINT);
    state_bucket(&moto, true);
    (moto, dir, file)
}

fn key(environment: &str) -> String {
    format!("platform/stately/{environment}.state.json")
}

/// The text of an object in the state bucket, if there is one.
fn object(moto: &Moto, key: &str) -> Option<String> {
    let (_, s3) = moto.clients();
    runtime().block_on(async {
        let object = s3
            .get_object()
            .bucket(STATE_BUCKET)
            .key(key)
            .send()
            .await
            .ok()?;
        let bytes = object.body.collect().await.ok()?.into_bytes();
        String::from_utf8(bytes.to_vec()).ok()
    })
}

fn put(moto: &Moto, key: &str, text: &str) {
    let (_, s3) = moto.clients();
    runtime()
        .block_on(
            s3.put_object()
                .bucket(STATE_BUCKET)
                .key(key)
                .body(text.as_bytes().to_vec().into())
                .send(),
        )
        .expect("put the object");
}

fn state(moto: &Moto, environment: &str) -> serde_json::Value {
    let text = object(moto, &key(environment)).expect("a state in S3");
    serde_json::from_str(&text).expect("the state is JSON")
}

/// The buckets of an environment of the blueprint.
fn buckets(moto: &Moto, environment: &str) -> Vec<String> {
    let (_, s3) = moto.clients();
    let listed = runtime()
        .block_on(s3.list_buckets().send())
        .expect("list buckets");
    let prefix = format!("stately-{environment}-");
    let mut names: Vec<String> = listed
        .buckets()
        .iter()
        .filter_map(|bucket| bucket.name())
        .filter(|name| name.starts_with(&prefix))
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

fn writes_to_state(moto: &Moto, from: usize) -> Vec<String> {
    let state = format!("/{STATE_BUCKET}");
    moto.calls()[from..]
        .iter()
        .filter(|call| call.mutates() && call.path.starts_with(&state))
        .map(ToString::to_string)
        .collect()
}

#[test]
fn an_s3_state_needs_a_versioned_bucket_and_is_written_there_encrypted_and_read_without_writing() {
    let moto = Moto::start();
    let (dir, file) = workspace(BLUEPRINT);
    state_bucket(&moto, false);
    let refused = trails(&moto, &file, &["apply", "--yes", "-e", "stable"]);
    assert_eq!(refused.code, 1, "{}\n{}", refused.stdout, refused.stderr);
    assert!(
        refused
            .stderr
            .contains("aws s3api put-bucket-versioning --bucket trails-state"),
        "{}",
        refused.stderr
    );
    assert!(
        buckets(&moto, "stable").is_empty(),
        "applied without a state"
    );

    let (_, s3) = moto.clients();
    runtime()
        .block_on(
            s3.put_bucket_versioning()
                .bucket(STATE_BUCKET)
                .versioning_configuration(
                    aws_sdk_s3::types::VersioningConfiguration::builder()
                        .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send(),
        )
        .expect("enable versioning");
    let applied = trails(&moto, &file, &["apply", "--yes", "-e", "stable"]);
    assert_eq!(applied.code, 0, "{}\n{}", applied.stdout, applied.stderr);
    assert!(
        applied
            .stdout
            .contains("s3://trails-state/platform/stately/stable.state.json"),
        "{}",
        applied.stdout
    );
    let recorded = state(&moto, "stable");
    assert_eq!(recorded["resources"].as_object().map(|r| r.len()), Some(2));
    assert!(recorded["serial"].as_u64() > Some(1));
    assert!(!dir.path().join(".trails/stable.state.json").exists());
    assert!(
        object(&moto, &format!("{}.lock", key("stable"))).is_none(),
        "the lock was left behind"
    );
    let head = runtime()
        .block_on(
            s3.head_object()
                .bucket(STATE_BUCKET)
                .key(key("stable"))
                .send(),
        )
        .expect("head the state");
    assert_eq!(
        head.server_side_encryption(),
        Some(&aws_sdk_s3::types::ServerSideEncryption::Aes256)
    );

    let before = moto.calls().len();
    let plan = trails(
        &moto,
        &file,
        &["plan", "-e", "stable", "--detailed-exitcode"],
    );
    assert_eq!(plan.code, 0, "{}\n{}", plan.stdout, plan.stderr);
    let listed = trails(&moto, &file, &["state", "list", "-e", "stable"]);
    assert!(
        listed.stdout.contains("aws.s3_bucket.logs"),
        "{}",
        listed.stdout
    );
    assert_eq!(writes_to_state(&moto, before), Vec::<String>::new());
}

#[test]
fn two_applies_of_one_environment_at_once_one_runs_the_other_names_the_holder_or_waits() {
    let (moto, _dir, file) = started();
    moto.close_gate_after(1);
    let mut first = spawn(&moto, &file, &["apply", "--yes", "-e", "stable"]);
    until_held(&moto, &mut first);

    let second = trails(&moto, &file, &["apply", "--yes", "-e", "stable"]);
    assert_eq!(second.code, 1, "{}\n{}", second.stdout, second.stderr);
    assert!(
        second.stderr.contains("is locked by")
            && second.stderr.contains(&format!("pid {}", first.id()))
            && second.stderr.contains("for `apply`"),
        "{}",
        second.stderr
    );

    let mut waiting = spawn(
        &moto,
        &file,
        &["apply", "--yes", "-e", "stable", "--lock-timeout", "60s"],
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        waiting.try_wait().expect("status").is_none(),
        "the waiting run did not wait"
    );
    moto.open_gate();
    let first = finish(first);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    let waited = finish(waiting);
    assert_eq!(waited.code, 0, "{}\n{}", waited.stdout, waited.stderr);
    assert!(waited.stdout.contains("Nothing to do"), "{}", waited.stdout);
    assert_eq!(
        buckets(&moto, "stable"),
        ["stately-stable-data", "stately-stable-logs"]
    );
    assert_eq!(
        state(&moto, "stable")["resources"]
            .as_object()
            .map(|r| r.len()),
        Some(2)
    );
}

#[test]
fn a_killed_holders_lock_is_taken_over_on_its_host_and_reported_stale_from_elsewhere() {
    let (moto, _dir, file) = started();
    moto.close_gate_after(1);
    let mut killed = spawn(&moto, &file, &["apply", "--yes", "-e", "stable"]);
    until_held(&moto, &mut killed);
    let _ = killed.kill();
    let _ = killed.wait();
    moto.open_gate();
    let lock_key = format!("{}.lock", key("stable"));
    let left = object(&moto, &lock_key).expect("SIGKILL leaves the lock");
    assert!(
        left.contains(&format!("\"pid\": {}", killed.id())),
        "{left}"
    );

    let resumed = trails(&moto, &file, &["apply", "--yes", "-e", "stable"]);
    assert_eq!(resumed.code, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    assert_eq!(
        buckets(&moto, "stable"),
        ["stately-stable-data", "stately-stable-logs"]
    );
    let recorded = state(&moto, "stable");
    assert_eq!(recorded["resources"].as_object().map(|r| r.len()), Some(2));
    assert!(recorded.get("intents").is_none(), "{recorded}");

    // A holder on another host that stopped renewing: stale, named, never taken silently.
    let silent =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() - Duration::from_secs(600))
            .to_string();
    let lock = |heartbeat: &str| {
        serde_json::json!({
            "holder": "ci@ci-runner-7 (pid 42)", "host": "ci-runner-7", "pid": 42,
            "operation": "apply", "created_at": silent, "id": "elsewhere",
            "heartbeat_at": heartbeat,
        })
        .to_string()
    };
    put(&moto, &lock_key, &lock(&silent));
    let stale = trails(&moto, &file, &["apply", "--yes", "-e", "stable"]);
    assert_eq!(stale.code, 1, "{}", stale.stderr);
    assert!(
        stale.stderr.contains("ci@ci-runner-7 (pid 42)")
            && stale.stderr.contains("has not renewed the lock for 10m")
            && stale.stderr.contains("trails state unlock"),
        "{}",
        stale.stderr
    );
    let unlocked = trails(&moto, &file, &["state", "unlock", "-e", "stable"]);
    assert_eq!(unlocked.code, 0, "{}", unlocked.stderr);
    assert!(
        unlocked.stdout.contains("held by ci@ci-runner-7 (pid 42)"),
        "{}",
        unlocked.stdout
    );
    assert!(object(&moto, &lock_key).is_none());

    // A live holder elsewhere is refused by name, not called stale.
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    put(&moto, &lock_key, &lock(&now));
    let held = trails(&moto, &file, &["apply", "--yes", "-e", "stable"]);
    assert_eq!(held.code, 1, "{}", held.stderr);
    assert!(
        held.stderr.contains("is locked by ci@ci-runner-7 (pid 42)")
            && !held.stderr.contains("has not renewed"),
        "{}",
        held.stderr
    );
}

#[test]
fn a_state_written_by_another_writer_meanwhile_is_never_overwritten() {
    let (moto, _dir, file) = started();
    let applied = trails(&moto, &file, &["apply", "--yes", "-e", "stable"]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    std::fs::write(
        &file,
        BLUEPRINT.replace(
            "  data: { versioning: false }\n",
            "  data: { versioning: false }\n  more: {}\n",
        ),
    )
    .expect("add a bucket");

    moto.close_gate_after(0);
    let mut run = spawn(&moto, &file, &["apply", "--yes", "-e", "stable"]);
    until_held(&moto, &mut run);
    // Another writer, ignoring the lock, replaces the state meanwhile.
    let mut other = state(&moto, "stable");
    other["serial"] = serde_json::json!(other["serial"].as_u64().unwrap_or(0) + 1);
    let other = serde_json::to_string_pretty(&other).expect("json");
    put(&moto, &key("stable"), &other);
    moto.open_gate();
    let run = finish(run);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("was written by another run since this one read it"),
        "{}",
        run.stderr
    );
    assert_eq!(
        object(&moto, &key("stable")).as_deref(),
        Some(other.as_str()),
        "the other writer's state was overwritten"
    );
}

#[test]
fn s3_unreachable_mid_apply_leaves_everything_applied_in_a_local_file_that_state_push_uploads() {
    let (moto, dir, file) = started();
    moto.close_gate_after(1);
    let mut run = spawn(&moto, &file, &["apply", "--yes", "-e", "stable"]);
    until_held(&moto, &mut run);
    moto.unreachable(Some(&format!("/{STATE_BUCKET}")));
    moto.open_gate();
    let run = finish(run);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let fallback = dir.path().join(".trails/stable.unpushed.state.json");
    assert!(
        run.stderr.contains("trails state push --from")
            && run.stderr.contains(&fallback.display().to_string()),
        "{}",
        run.stderr
    );
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&fallback).expect("a local state"))
            .expect("json");
    let made = buckets(&moto, "stable");
    let recorded: Vec<String> = saved["resources"]
        .as_object()
        .expect("resources")
        .values()
        .filter_map(|resource| resource["id"].as_str().map(str::to_string))
        .collect();
    for bucket in &made {
        assert!(
            recorded.contains(bucket),
            "{bucket} was made but is not in the local state: {saved}"
        );
    }

    moto.unreachable(None);
    let push = [
        "state",
        "push",
        "-e",
        "stable",
        "--from",
        fallback.to_str().expect("utf-8"),
    ];
    let pushed = trails(&moto, &file, &push);
    assert_eq!(pushed.code, 0, "{}\n{}", pushed.stdout, pushed.stderr);
    assert_eq!(
        state(&moto, "stable")["resources"]
            .as_object()
            .map(|r| r.len()),
        saved["resources"].as_object().map(|r| r.len())
    );
    let stale = trails(&moto, &file, &push);
    assert_eq!(stale.code, 1, "pushed twice: {}", stale.stdout);
    assert!(
        stale.stderr.contains("would overwrite newer changes"),
        "{}",
        stale.stderr
    );
    let finished = trails(&moto, &file, &["apply", "--yes", "-e", "stable"]);
    assert_eq!(finished.code, 0, "{}\n{}", finished.stdout, finished.stderr);
    assert_eq!(
        buckets(&moto, "stable"),
        ["stately-stable-data", "stately-stable-logs"]
    );
}

#[test]
fn destroy_expired_destroys_only_the_expired_ephemeral_environment() {
    let (moto, _dir, file) = started();
    for environment in ["stable", "pr-old", "pr-new"] {
        let applied = trails(&moto, &file, &["apply", "--yes", "-e", environment]);
        assert_eq!(applied.code, 0, "{environment}: {}", applied.stderr);
    }
    let listed = trails(&moto, &file, &["env", "list", "--json"]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).expect("json");
    let environments = listed["environments"].as_array().expect("environments");
    assert_eq!(environments.len(), 3, "{listed}");
    for entry in environments {
        let ephemeral = entry["environment"] != "stable";
        assert_eq!(entry["ephemeral"], ephemeral, "{entry}");
        assert_eq!(entry["expires_at"].is_string(), ephemeral, "{entry}");
        assert_eq!(entry["expired"], false, "{entry}");
        assert_eq!(entry["resources"], 2, "{entry}");
    }

    // Two hours pass for pr-old.
    let mut old = state(&moto, "pr-old");
    old["expires_at"] = serde_json::json!(
        humantime::format_rfc3339_seconds(
            std::time::SystemTime::now() - Duration::from_secs(2 * 3600)
        )
        .to_string()
    );
    put(
        &moto,
        &key("pr-old"),
        &serde_json::to_string_pretty(&old).expect("json"),
    );
    let table = trails(&moto, &file, &["env", "list"]);
    assert!(table.stdout.contains("expired 2h"), "{}", table.stdout);

    let dry = trails(&moto, &file, &["destroy", "--expired", "--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(
        dry.stdout.contains("destroy  pr-old: expired 2h"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains("keep     pr-new: expires at"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains("keep     stable: not ephemeral"),
        "{}",
        dry.stdout
    );
    assert_eq!(
        buckets(&moto, "pr-old").len(),
        2,
        "a dry run destroyed something"
    );

    let destroyed = trails(&moto, &file, &["destroy", "--expired", "--yes"]);
    assert_eq!(
        destroyed.code, 0,
        "{}\n{}",
        destroyed.stdout, destroyed.stderr
    );
    assert!(buckets(&moto, "pr-old").is_empty());
    assert_eq!(buckets(&moto, "pr-new").len(), 2);
    assert_eq!(buckets(&moto, "stable").len(), 2);
    let again = trails(&moto, &file, &["destroy", "--expired", "--yes"]);
    assert!(
        again.stdout.contains("Nothing to destroy"),
        "{}",
        again.stdout
    );

    let extended = trails(
        &moto,
        &file,
        &["env", "extend", "-e", "pr-new", "--ttl", "2h"],
    );
    assert_eq!(extended.code, 0, "{}", extended.stderr);
    assert!(
        extended.stdout.contains("now expires at"),
        "{}",
        extended.stdout
    );
    let plan = trails(&moto, &file, &["plan", "-e", "pr-new"]);
    assert!(
        plan.stderr
            .contains("warning: Environment `pr-new` expires at")
            && plan.stderr.contains("(in 1h 59m"),
        "{}",
        plan.stderr
    );
    // Re-applying never extends the expiry.
    let expiry = state(&moto, "pr-new")["expires_at"].clone();
    assert!(expiry.is_string(), "{expiry}");
    std::thread::sleep(Duration::from_secs(1));
    let reapplied = trails(&moto, &file, &["apply", "--yes", "-e", "pr-new"]);
    assert_eq!(reapplied.code, 0, "{}", reapplied.stderr);
    assert_eq!(state(&moto, "pr-new")["expires_at"], expiry);
    let refused = trails(
        &moto,
        &file,
        &["env", "extend", "-e", "stable", "--ttl", "2h"],
    );
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("is not ephemeral"),
        "{}",
        refused.stderr
    );
}

#[test]
fn runs_racing_for_a_dead_holders_lock_take_it_exactly_once() {
    let (moto, _dir, file) = started();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_string();
    // Process ids are below 2^22 on Linux: this holder is dead, on this host.
    let dead = serde_json::json!({
        "holder": format!("ci@{host} (pid 4194321)"), "host": host, "pid": 4_194_321,
        "operation": "apply", "created_at": "2026-12-01T00:00:00Z", "id": "dead",
        "heartbeat_at": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    });
    let lock_key = format!("{}.lock", key("stable"));
    for round in 0..3 {
        put(&moto, &lock_key, &dead.to_string());
        // The winner holds at its first bucket call, so it cannot finish before the others try.
        moto.close_gate_after(0);
        let mut racers: Vec<Child> = (0..4)
            .map(|_| spawn(&moto, &file, &["apply", "--yes", "-e", "stable"]))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        // The winner holds at the gate; the others end, refused.
        loop {
            let mut ended = 0;
            for racer in &mut racers {
                if racer.try_wait().expect("status").is_some() {
                    ended += 1;
                }
            }
            if ended == 3 && moto.held() > 0 {
                break;
            }
            assert!(
                Instant::now() < deadline && ended < 4,
                "round {round}: {ended} of 4 runs ended, {} call(s) held",
                moto.held()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        moto.open_gate();
        let runs: Vec<Run> = racers.into_iter().map(finish).collect();
        let winners = runs.iter().filter(|run| run.code == 0).count();
        assert_eq!(winners, 1, "round {round}: {winners} runs took the lock");
        for run in runs.iter().filter(|run| run.code != 0) {
            assert!(run.stderr.contains("is locked by"), "{}", run.stderr);
        }
        assert!(
            object(&moto, &lock_key).is_none(),
            "round {round}: lock left"
        );
        let destroyed = trails(&moto, &file, &["destroy", "--yes", "-e", "stable"]);
        assert_eq!(destroyed.code, 0, "{}", destroyed.stderr);
    }
}

#[test]
fn outputs_are_shown_and_state_rm_and_mv_edit_only_the_record() {
    let (moto, _dir, file) = started();
    let applied = trails(&moto, &file, &["apply", "--yes", "-e", "stable"]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);

    let shown = trails(&moto, &file, &["output", "-e", "stable", "--json"]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    let outputs: serde_json::Value = serde_json::from_str(&shown.stdout).expect("json");
    assert!(
        outputs["aws.s3_bucket.logs"]
            .as_object()
            .is_some_and(|o| !o.is_empty()),
        "{outputs}"
    );
    // No cluster in this blueprint: a kubeconfig cannot be written, and it says why.
    let kubeconfig = trails(&moto, &file, &["output", "-e", "stable", "kubeconfig"]);
    assert_eq!(kubeconfig.code, 1);
    assert!(
        kubeconfig.stderr.contains("records 0 EKS clusters"),
        "{}",
        kubeconfig.stderr
    );
    let one = trails(
        &moto,
        &file,
        &["output", "-e", "stable", "aws.s3_bucket.logs"],
    );
    assert!(
        one.stdout
            .lines()
            .all(|line| line.starts_with("aws.s3_bucket.logs.")),
        "{}",
        one.stdout
    );

    let before = moto.calls().len();
    let forgot = trails(
        &moto,
        &file,
        &["state", "rm", "-e", "stable", "aws.s3_bucket.data"],
    );
    assert_eq!(forgot.code, 0, "{}", forgot.stderr);
    assert!(
        forgot.stdout.contains("forgot aws.s3_bucket.data"),
        "{}",
        forgot.stdout
    );
    assert_eq!(
        buckets(&moto, "stable").len(),
        2,
        "state rm deleted the bucket"
    );
    let unknown = trails(
        &moto,
        &file,
        &["state", "rm", "-e", "stable", "aws.s3_bucket.nope"],
    );
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("no resource `aws.s3_bucket.nope`"),
        "{}",
        unknown.stderr
    );

    let wrong = trails(
        &moto,
        &file,
        &[
            "state",
            "mv",
            "-e",
            "stable",
            "aws.s3_bucket.logs",
            "aws.vpc.logs",
        ],
    );
    assert_eq!(wrong.code, 1);
    assert!(wrong.stderr.contains("same type"), "{}", wrong.stderr);
    let moved = trails(
        &moto,
        &file,
        &[
            "state",
            "mv",
            "-e",
            "stable",
            "aws.s3_bucket.logs",
            "aws.s3_bucket.journal",
        ],
    );
    assert_eq!(moved.code, 0, "{}", moved.stderr);
    let listed = trails(&moto, &file, &["state", "list", "-e", "stable"]);
    assert!(
        listed.stdout.contains("aws.s3_bucket.journal") && !listed.stdout.contains("logs\t"),
        "{}",
        listed.stdout
    );
    // Only the state object was written: no call to the buckets themselves.
    let state = format!("/{STATE_BUCKET}");
    let elsewhere: Vec<String> = moto.calls()[before..]
        .iter()
        .filter(|call| call.mutates() && !call.path.starts_with(&state))
        .map(ToString::to_string)
        .collect();
    assert_eq!(elsewhere, Vec::<String>::new());
}

#[test]
fn without_credentials_apply_stops_before_any_change_naming_the_chain() {
    let (moto, dir, file) = started();
    let before = moto.calls().len();
    let output = std::process::Command::new(assert_cmd::cargo::cargo_bin("trails"))
        .args(["apply", "--yes", "-e", "stable", "--state"])
        .arg(dir.path().join("local.state.json"))
        .arg("-f")
        .arg(&file)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("AWS_ENDPOINT_URL", &moto.url)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.path().join("no-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.path().join("no-credentials"),
        )
        .output()
        .expect("trails runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no AWS credentials") && stderr.contains("AWS_PROFILE"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("no AWS credentials").count(),
        1,
        "one check, not one failure per resource: {stderr}"
    );
    let calls = moto.calls();
    assert!(
        calls[before..].iter().all(|call| !call.mutates()),
        "a call was made without credentials"
    );
}

#[test]
fn a_rename_listed_in_moved_is_planned_and_applied_as_a_move_not_a_delete_and_create() {
    let (moto, _dir, file) = started();
    // The bucket keeps its AWS name across the rename; only its address changes.
    let before = BLUEPRINT.replace("  logs: {}", "  logs: { name: stately-stable-trail }");
    std::fs::write(&file, &before).expect("blueprint");
    let applied = trails(&moto, &file, &["apply", "--yes", "-e", "stable"]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    let names = buckets(&moto, "stable");
    assert!(
        names.contains(&"stately-stable-trail".to_string()),
        "{names:?}"
    );

    // Renamed without `moved:`: a delete and a create of the same bucket name.
    let renamed = before.replace("  logs: {", "  archive: {");
    std::fs::write(&file, &renamed).expect("blueprint");
    let plan = trails(&moto, &file, &["plan", "-e", "stable"]);
    assert!(
        plan.stdout.contains("1 to create") && plan.stdout.contains("1 to delete"),
        "{}",
        plan.stdout
    );

    // With `moved:`, the record moves: nothing is created or deleted. The bucket's
    // `trails:address` tag names its address, so it is retagged in place.
    let moved =
        format!("{renamed}moved:\n  - {{ from: aws.s3_bucket.logs, to: aws.s3_bucket.archive }}\n");
    std::fs::write(&file, &moved).expect("blueprint");
    let plan = trails(
        &moto,
        &file,
        &["plan", "-e", "stable", "--detailed-exitcode"],
    );
    assert_eq!(plan.code, 2, "{}{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout
            .contains("aws.s3_bucket.archive (moved from aws.s3_bucket.logs)")
            && plan.stdout.contains("0 to create")
            && plan.stdout.contains("0 to delete")
            && plan.stdout.contains("1 to update")
            && plan.stdout.contains("1 moved to a new address"),
        "{}",
        plan.stdout
    );
    let json = trails(&moto, &file, &["plan", "-e", "stable", "--format", "json"]);
    let document: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    let change = document["changes"]
        .as_array()
        .and_then(|changes| {
            changes
                .iter()
                .find(|c| c["address"] == "aws.s3_bucket.archive")
        })
        .expect("the moved change");
    assert_eq!(change["moved_from"], "aws.s3_bucket.logs");
    assert_eq!(change["action"], "update");
    let changed: Vec<&String> = change["attributes"]
        .as_object()
        .map(|attributes| attributes.keys().collect())
        .unwrap_or_default();
    assert_eq!(changed, ["tags"], "{change:#}");
    assert_eq!(
        change["attributes"]["tags"]["after"]["trails:address"],
        "aws.s3_bucket.archive"
    );

    let from = moto.calls().len();
    let applied = trails(&moto, &file, &["apply", "--yes", "-e", "stable"]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    let writes: Vec<String> = moto.calls()[from..]
        .iter()
        .filter(|call| call.mutates() && !call.path.starts_with("/trails-state"))
        .map(|call| format!("{} {}", call.method, call.path))
        .collect();
    // One write: the retag (moto's log drops the `?tagging` query). A delete and a create
    // would be a DELETE and two or more PUTs.
    assert_eq!(
        writes,
        ["PUT /stately-stable-trail/"],
        "the move did more than retag the bucket"
    );
    let (_, s3) = moto.clients();
    let tags = runtime()
        .block_on(
            s3.get_bucket_tagging()
                .bucket("stately-stable-trail")
                .send(),
        )
        .expect("tags");
    assert!(
        tags.tag_set()
            .iter()
            .any(|tag| tag.key() == "trails:address" && tag.value() == "aws.s3_bucket.archive"),
        "{tags:?}"
    );
    assert_eq!(buckets(&moto, "stable"), names, "the buckets changed");
    let recorded = state(&moto, "stable");
    assert!(
        recorded["resources"].get("aws.s3_bucket.archive").is_some()
            && recorded["resources"].get("aws.s3_bucket.logs").is_none(),
        "{recorded}"
    );
    let replan = trails(
        &moto,
        &file,
        &["plan", "-e", "stable", "--detailed-exitcode"],
    );
    assert_eq!(replan.code, 0, "{}{}", replan.stdout, replan.stderr);

    // A move to an address the blueprint does not declare is an error at its line.
    std::fs::write(
        &file,
        format!("{renamed}moved:\n  - {{ from: aws.s3_bucket.logs, to: aws.s3_bucket.archvie }}\n"),
    )
    .expect("blueprint");
    let invalid = trails(&moto, &file, &["validate", "-e", "stable"]);
    assert_eq!(invalid.code, 1);
    assert!(
        invalid
            .stderr
            .contains("`aws.s3_bucket.archvie` is not the address of any resource")
            && invalid
                .stderr
                .contains("did you mean `aws.s3_bucket.archive`"),
        "{}",
        invalid.stderr
    );
    std::fs::write(&file, &moved).expect("blueprint");
    let destroyed = trails(&moto, &file, &["destroy", "--yes", "-e", "stable"]);
    assert_eq!(destroyed.code, 0, "{}", destroyed.stderr);
}
