//! `trails env list|extend`: the blueprint's environments as their states record them.

use std::time::{Duration, SystemTime};

use anyhow::anyhow;
use clap::{Args, Subcommand};
use serde_json::json;

use super::{Failure, Outcome, Output, StateLocation, Target, runtime};
use crate::blueprint::Source;
use crate::state::lifetime;
use crate::state::store::{self, Found};

/// Subcommands of `trails env`.
#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Every environment whose state is where the blueprint keeps them (its S3 prefix, or
    /// `.trails` beside it): serial, last apply, resources, expiry, lock holder.
    List(ListArgs),
    /// Move an ephemeral environment's expiry to `--ttl` from now.
    Extend(ExtendArgs),
}

/// Arguments of `trails env list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The blueprint file.
    #[arg(
        short = 'f',
        long = "file",
        env = "TRAILS_BLUEPRINT",
        default_value = "trails.yaml"
    )]
    file: std::path::PathBuf,
    /// One JSON document instead of a table.
    #[arg(long)]
    json: bool,
}

/// Arguments of `trails env extend`.
#[derive(Debug, Args)]
pub struct ExtendArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    state: StateLocation,
    /// The new time to live, from now, e.g. `24h` (at most 30 days).
    #[arg(long, value_parser = ttl)]
    ttl: Duration,
    /// Wait this long for a lock another run holds, e.g. `5m`.
    #[arg(long, default_value = "0s", value_parser = super::duration)]
    lock_timeout: Duration,
}

/// A time to live of at most 30 days.
fn ttl(text: &str) -> Result<Duration, String> {
    let parsed = humantime::parse_duration(text).map_err(|error| error.to_string())?;
    if parsed > Duration::from_secs(30 * 24 * 3600) {
        return Err(format!("{text} is longer than 30 days"));
    }
    Ok(parsed)
}

/// Runs an env subcommand.
pub fn run(command: EnvCommand, _output: Output) -> Result<Outcome, Failure> {
    match command {
        EnvCommand::List(args) => list(args),
        EnvCommand::Extend(args) => extend(args),
    }
}

/// The blueprint's environment states, found where it keeps them.
pub(super) fn found(
    file: &std::path::Path,
    overrides: &crate::blueprint::schema::Map<String>,
) -> Result<(String, Vec<Found>), Failure> {
    let source = Source::read(file)?;
    let environment = source.select(source.environments().first().map(String::as_str))?;
    let loaded = source.load_with(&environment, overrides)?;
    runtime()?
        .block_on(store::environments(file, &loaded.document))
        .map_err(|error| Failure::User(error.into()))
}

fn list(args: ListArgs) -> Result<Outcome, Failure> {
    // Variables a blueprint leaves to the environment (a sensitive one) come as they do for
    // every other command, from `TRAILS_VAR_*`.
    let (place, found) = found(&args.file, &super::variables_from_environment())?;
    let now = SystemTime::now();
    if args.json {
        let environments: Vec<_> = found
            .iter()
            .map(|found| {
                let lock = found.lock.as_ref().map(|lock| {
                    json!({"holder": lock.holder, "operation": lock.operation, "since": lock.created_at})
                });
                match &found.state {
                    Ok(state) => json!({
                        "environment": found.environment,
                        "serial": state.serial,
                        "last_apply": state.updated_at,
                        "resources": state.resources.len(),
                        "ephemeral": state.ephemeral,
                        "protected": state.protected,
                        "expires_at": state.expires_at,
                        "expired": lifetime::expired_for(state, now).is_some(),
                        "lock": lock,
                    }),
                    Err(error) => json!({
                        "environment": found.environment,
                        "error": error.to_string(),
                        "lock": lock,
                    }),
                }
            })
            .collect();
        let document = json!({"states": place, "environments": environments});
        println!(
            "{}",
            serde_json::to_string_pretty(&document)
                .map_err(|error| Failure::Internal(error.into()))?
        );
        return Ok(Outcome::Success);
    }
    println!("States in {place}");
    if found.is_empty() {
        println!("(none: no environment was applied yet)");
        return Ok(Outcome::Success);
    }
    let mut rows = vec![[
        "ENVIRONMENT".to_string(),
        "SERIAL".to_string(),
        "LAST APPLY".to_string(),
        "RESOURCES".to_string(),
        "EPHEMERAL".to_string(),
        "EXPIRES".to_string(),
        "LOCK".to_string(),
    ]];
    for found in &found {
        let lock = found.lock.as_ref().map_or("-".to_string(), |lock| {
            format!("{} ({})", lock.holder, lock.operation)
        });
        let row = match &found.state {
            Ok(state) => [
                found.environment.clone(),
                state.serial.to_string(),
                state.updated_at.clone().unwrap_or_else(|| "-".to_string()),
                state.resources.len().to_string(),
                if state.ephemeral { "yes" } else { "no" }.to_string(),
                expiry(state, now),
                lock,
            ],
            Err(error) => [
                found.environment.clone(),
                "?".to_string(),
                format!("unreadable: {error}"),
                String::new(),
                String::new(),
                String::new(),
                lock,
            ],
        };
        rows.push(row);
    }
    let widths: Vec<usize> = (0..7)
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    Ok(Outcome::Success)
}

/// `2026-12-01T10:00:00Z (in 3h)`, `expired 2h ago`, or `never`.
fn expiry(state: &crate::state::State, now: SystemTime) -> String {
    match (state.expiry(), lifetime::expired_for(state, now)) {
        (None, _) => "never".to_string(),
        (Some(_), Some(since)) => format!("expired {} ago", lifetime::rounded(since)),
        (Some(at), None) => format!(
            "{} (in {})",
            lifetime::rfc3339(at),
            lifetime::rounded(at.duration_since(now).unwrap_or_default())
        ),
    }
}

fn extend(args: ExtendArgs) -> Result<Outcome, Failure> {
    let source = Source::read(&args.target.file)?;
    let environment = source.select(args.target.environment.as_deref())?;
    let loaded = source.load_with(&environment, &args.target.overrides()?)?;
    let location = args
        .state
        .locate(&args.target, &loaded.document, &environment)?;
    let runtime = runtime()?;
    let mut store = super::lock(
        &runtime,
        &location,
        &loaded.document.blueprint,
        &environment,
        "env extend",
        args.lock_timeout,
    )?;
    let result = if store.state().is_new() {
        Err(Failure::User(anyhow!(
            "environment `{environment}` was never applied ({location} has no state): nothing \
             expires"
        )))
    } else if !store.state().ephemeral {
        Err(Failure::User(anyhow!(
            "environment `{environment}` is not ephemeral: it does not expire"
        )))
    } else {
        runtime
            .block_on(store.update(|state| lifetime::extend(state, args.ttl)))
            .map_err(|error| Failure::User(error.into()))
    };
    let expires = store.state().expires_at.clone().unwrap_or_default();
    runtime.block_on(store.release());
    result?;
    println!(
        "Environment `{environment}` now expires at {expires} (in {}).",
        lifetime::rounded(args.ttl)
    );
    Ok(Outcome::Success)
}
