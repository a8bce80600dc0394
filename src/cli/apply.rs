//! `trails apply` and `trails destroy`: plan, confirm, execute, report.

use std::collections::BTreeSet;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use clap::Args;

use super::{Endpoints, Failure, Outcome, Output, StateLocation, Target, load};
use crate::engine::progress::{Bars, Lines, Quiet};
use crate::engine::{self, Options, Progress};
use crate::plan::render::{TextOptions, summary, text};
use crate::plan::{self, Plan};
use crate::providers::{self, Providers, aws};
use crate::state::lifetime;
use crate::state::store::{Location, Store};

/// Options shared by apply and destroy.
#[derive(Debug, Args)]
pub struct ExecuteArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    state: StateLocation,
    #[command(flatten)]
    endpoints: Endpoints,
    /// Do not ask for confirmation (for CI).
    #[arg(long)]
    yes: bool,
    /// Most changes in flight at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=256))]
    parallelism: u16,
    /// Longest wait for one asynchronous resource (NAT gateway, cluster, database, a Deployment
    /// becoming ready, a namespace finishing its deletion), e.g. `45m`.
    #[arg(long, default_value = "30m", value_parser = super::duration)]
    wait_timeout: Duration,
    /// Run a plan that deletes or replaces something in a `protect: true` environment (or
    /// destroys it), or turns protection off together with other changes.
    #[arg(long)]
    override_protection: bool,
    /// Wait this long for a lock another run holds instead of failing at once, e.g. `5m`.
    #[arg(long, default_value = "0s", value_parser = super::duration)]
    lock_timeout: Duration,
    #[command(flatten)]
    policy: super::PolicyArgs,
}

/// Arguments of `trails apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    execute: ExecuteArgs,
    /// Execute exactly this saved plan (`trails plan --out FILE`); refused if the state or the
    /// blueprint changed since.
    #[arg(long = "plan", value_name = "FILE")]
    saved_plan: Option<PathBuf>,
    /// Read what trails applied back from where it lives (see `trails diff`) and repair what
    /// was deleted or changed outside trails. Implied by a saved plan made with
    /// `plan --refresh`.
    #[arg(long)]
    refresh: bool,
}

/// Arguments of `trails destroy`.
#[derive(Debug, Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    execute: ExecuteArgs,
    /// Destroy every ephemeral environment of the blueprint whose TTL has passed, one after
    /// another, each under its lock (for a scheduled CI job). Never one that is not ephemeral,
    /// has not expired or is protected. Exit 1 when any of them fails.
    #[arg(long, conflicts_with = "environment")]
    expired: bool,
    /// With `--expired`: say which environments would be destroyed, destroy nothing.
    #[arg(long, requires = "expired")]
    dry_run: bool,
}

/// Plans against the locked state and applies.
pub fn apply(args: ApplyArgs, output: Output) -> Result<Outcome, Failure> {
    let refresh = args.refresh || args.saved_plan.as_deref().is_some_and(refreshed);
    run(
        &args.execute,
        &args.execute.target,
        output,
        Mode::Apply {
            saved: args.saved_plan,
            refresh,
        },
    )
}

/// Whether a saved plan was made with `--refresh` (an unreadable one is refused later).
fn refreshed(path: &std::path::Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|plan| plan.get("refreshed").and_then(serde_json::Value::as_bool))
        .unwrap_or(false)
}

/// Plans the removal of everything recorded and executes it.
pub fn destroy(args: DestroyArgs, output: Output) -> Result<Outcome, Failure> {
    if args.expired {
        return destroy_expired(&args, output);
    }
    run(&args.execute, &args.execute.target, output, Mode::Destroy)
}

/// `destroy --expired`: each expired ephemeral environment in turn; one failing does not stop
/// the others.
fn destroy_expired(args: &DestroyArgs, output: Output) -> Result<Outcome, Failure> {
    if args.execute.state.is_explicit() {
        return Err(Failure::User(anyhow!(
            "--expired finds every environment's state where the blueprint keeps them; it \
             cannot be combined with --state"
        )));
    }
    let file = &args.execute.target.file;
    let overrides = args.execute.target.overrides()?;
    let (place, found) = super::env::found(file, &overrides)?;
    let source = crate::blueprint::Source::read(file)?;
    let declared = source.environments();
    let now = std::time::SystemTime::now();
    let mut doomed = Vec::new();
    println!("Expired environments in {place}:");
    for found in &found {
        let environment = &found.environment;
        let verdict = match &found.state {
            Err(error) => Err(format!("its state cannot be read: {error}")),
            Ok(state) => {
                let settings = source
                    .load_with(environment, &overrides)
                    .map(|loaded| loaded.settings);
                match (lifetime::expired_for(state, now), settings) {
                    _ if !declared.contains(environment) => {
                        Err("the blueprint does not declare it".to_string())
                    }
                    (_, Err(_)) => Err("the blueprint does not load for it".to_string()),
                    (_, Ok(settings)) if !state.ephemeral || !settings.ephemeral => {
                        Err("not ephemeral".to_string())
                    }
                    (_, Ok(settings)) if state.protected || settings.protect => {
                        Err("protected".to_string())
                    }
                    (None, _) => Err(match state.expiry() {
                        Some(at) => format!("expires at {}", lifetime::rfc3339(at)),
                        None => "has no expiry".to_string(),
                    }),
                    (Some(_), _) if state.resources.is_empty() => {
                        Err("expired, nothing left to destroy".to_string())
                    }
                    (Some(since), _) => Ok(format!(
                        "expired {} ago, {} resource(s)",
                        lifetime::rounded(since),
                        state.resources.len()
                    )),
                }
            }
        };
        match verdict {
            Ok(reason) => {
                println!("  destroy  {environment}: {reason}");
                doomed.push(environment.clone());
            }
            Err(reason) => println!("  keep     {environment}: {reason}"),
        }
    }
    if args.dry_run || doomed.is_empty() {
        if doomed.is_empty() {
            println!("Nothing to destroy.");
        }
        return Ok(Outcome::Success);
    }
    let mut failed = Vec::new();
    for environment in &doomed {
        println!("\n== destroy environment `{environment}` ==");
        let mut target = args.execute.target.clone();
        target.environment = Some(environment.clone());
        if let Err(failure) = run(&args.execute, &target, output, Mode::Destroy) {
            let error = match failure {
                Failure::User(error) | Failure::Internal(error) => error,
            };
            eprintln!("error: environment `{environment}`: {error:#}");
            failed.push(environment.clone());
        }
    }
    if failed.is_empty() {
        println!("\nDestroyed {} expired environment(s).", doomed.len());
        Ok(Outcome::Success)
    } else {
        Err(Failure::User(anyhow!(
            "{} of {} expired environment(s) could not be destroyed: {}",
            failed.len(),
            doomed.len(),
            failed.join(", ")
        )))
    }
}

enum Mode {
    Apply {
        saved: Option<PathBuf>,
        refresh: bool,
    },
    Destroy,
}

fn run(
    args: &ExecuteArgs,
    target: &Target,
    output: Output,
    mode: Mode,
) -> Result<Outcome, Failure> {
    let (checked, graph) = load(target)?;
    output.warnings(&checked);
    let loaded = &checked.loaded;
    let operation = match mode {
        Mode::Apply { .. } => "apply",
        Mode::Destroy => "destroy",
    };
    let location = args
        .state
        .locate(target, &loaded.document, &loaded.environment)?;
    let runtime = super::runtime()?;
    let mut store = super::lock(
        &runtime,
        &location,
        &loaded.document.blueprint,
        &loaded.environment,
        operation,
        args.lock_timeout,
    )?;
    let locked = Locked {
        checked: &checked,
        graph: &graph,
        location: &location,
        runtime: &runtime,
        operation,
    };
    let result = locked.run(args, output, &mode, &mut store);
    runtime.block_on(store.release());
    result
}

/// A run holding the state's lock.
struct Locked<'a> {
    checked: &'a crate::blueprint::Checked,
    graph: &'a crate::graph::Graph,
    location: &'a Location,
    runtime: &'a tokio::runtime::Runtime,
    operation: &'static str,
}

impl Locked<'_> {
    fn write(
        &self,
        store: &mut Store,
        change: impl FnOnce(&mut crate::state::State),
    ) -> Result<(), Failure> {
        self.runtime
            .block_on(store.update(change))
            .map_err(|error| Failure::User(error.into()))
    }

    fn run(
        &self,
        args: &ExecuteArgs,
        output: Output,
        mode: &Mode,
        store: &mut Store,
    ) -> Result<Outcome, Failure> {
        let (checked, graph, runtime, operation) =
            (self.checked, self.graph, self.runtime, self.operation);
        let loaded = &checked.loaded;
        let endpoints = args.endpoints.resolve(loaded)?;
        let planned = match &mode {
            Mode::Destroy => plan::plan_destroy(store.state()),
            Mode::Apply { saved, refresh } => {
                let planned = if *refresh {
                    let observed = super::diff::observe(loaded, store.state(), &args.endpoints)?;
                    plan::plan_refreshed(graph, store.state(), &observed)
                } else {
                    plan::plan(graph, store.state())
                };
                if let Some(saved) = saved {
                    check_saved_plan(saved, &planned)?;
                }
                planned
            }
        };
        let protection = plan::protect::check(
            &planned,
            loaded.settings.protect,
            store.state().protected,
            args.override_protection,
        )
        .map_err(|error| Failure::User(error.into()))?
        .filter(|_| !planned.destroy);
        if matches!(mode, Mode::Apply { .. }) {
            if let Some(refusal) = args
                .policy
                .evaluate(checked, graph, &planned)?
                .refusal(args.policy.policy_fail_on)
            {
                return Err(Failure::User(anyhow!(
                    "refusing to apply: {refusal}\n(`trails plan` shows every finding.)"
                )));
            }
            let (estimate, limits) = args.policy.cost(checked, graph, store.state(), &planned)?;
            if let Some(refusal) = estimate.refusal(limits) {
                return Err(Failure::User(anyhow!(
                    "refusing to apply: {refusal}.\n(`trails plan` shows the cost per resource.)"
                )));
            }
        }
        let description = format!("{} (serial {})", self.location, store.state().serial);
        let applying = matches!(mode, Mode::Apply { .. });
        if !output.quiet && applying {
            lifetime_notice(store.state(), &loaded.settings);
        }
        if !planned.has_changes() {
            if !output.quiet {
                println!("{}", summary(&planned));
                println!(
                    "{}",
                    if planned.destroy {
                        "Nothing to destroy: the state records no resource."
                    } else {
                        "Nothing to do: the recorded state matches the blueprint."
                    }
                );
            }
            if let Some(protected) = protection {
                self.write(store, |state| state.protected = protected)?;
                if !output.quiet {
                    println!(
                        "Protection of environment `{}` is {} (recorded in {}).",
                        loaded.environment,
                        if protected { "on" } else { "off" },
                        self.location
                    );
                }
            }
            if applying
                && !store.state().is_new()
                && lifetime::unrecorded(store.state(), &loaded.settings)
            {
                self.write(store, |state| lifetime::record(state, &loaded.settings))?;
            }
            return Ok(Outcome::Success);
        }
        let context = runtime.block_on(aws::Context::load(
            &loaded.document.region,
            args.wait_timeout,
        ));
        let cluster = args.endpoints.cluster(loaded, args.wait_timeout);
        let deleting: Arc<BTreeSet<String>> = Arc::new(
            planned
                .changes
                .iter()
                .filter(|change| change.action == plan::Action::Delete)
                .map(|change| change.address.clone())
                .collect(),
        );
        let progress: Arc<dyn Progress> = if output.quiet {
            Arc::new(Quiet)
        } else if std::io::stderr().is_terminal() {
            Arc::new(Bars::default())
        } else {
            Arc::new(Lines)
        };
        let notes = progress.clone();
        let aws_context = context.clone();
        let context = context.for_run(aws::Run {
            deleting: deleting.clone(),
            destroying: matches!(mode, Mode::Destroy),
            ephemeral: loaded.settings.ephemeral,
            notes: Some(Arc::new(move |address: &str, message: &str| {
                notes.event(&engine::Event::Note {
                    address: address.to_string(),
                    message: message.to_string(),
                })
            })),
        });
        let providers = Arc::new(Providers::new(context, cluster, endpoints, &deleting));
        engine::preflight(&planned, &providers).map_err(|error| Failure::User(error.into()))?;
        if planned
            .changes
            .iter()
            .any(|change| change.action.is_change() && change.kind.starts_with("aws."))
        {
            runtime
                .block_on(aws_context.check_credentials())
                .map_err(|message| Failure::User(anyhow!(message)))?;
        }
        runtime
            .block_on(providers::check_tools(
                planned
                    .changes
                    .iter()
                    .filter(|change| change.action.is_change())
                    .map(|change| change.kind.as_str()),
            ))
            .map_err(|error| Failure::User(error.into()))?;
        if !output.quiet {
            print!("{}", text(&planned, &description, TextOptions::default()));
        }
        if !args.yes {
            confirm(operation, &loaded.environment)?;
        }
        // Records the blueprint renames move first: what follows is planned at the new
        // addresses.
        let moves = planned.moves();
        if !moves.is_empty() {
            // Made on a copy first, so a move that fails leaves the state as it was.
            let mut moved = store.state().clone();
            for (from, to) in &moves {
                crate::state::edit::rename(&mut moved, from, to).map_err(|problem| {
                    Failure::User(anyhow!("cannot move {from} to {to}: {problem}"))
                })?;
            }
            // A rename changes only the records (their addresses and references).
            self.write(store, |state| state.resources = moved.resources)?;
        }
        if let Some(protected) = protection {
            self.write(store, |state| state.protected = protected)?;
        }
        if applying && lifetime::unrecorded(store.state(), &loaded.settings) {
            self.write(store, |state| lifetime::record(state, &loaded.settings))?;
        }
        let options = Options {
            parallelism: usize::from(args.parallelism),
        };
        let report = runtime
            .block_on(engine::execute(
                &planned,
                graph,
                store,
                providers,
                &options,
                progress.as_ref(),
            ))
            .map_err(|error| Failure::User(error.into()))?;
        if !output.quiet || !report.succeeded() {
            println!(
                "\n{operation}: {} done, {} failed, {} not started (state {} at serial {})",
                report.completed.len(),
                report.failed.len(),
                report.skipped.len(),
                self.location,
                store.state().serial
            );
        }
        for (address, error) in &report.failed {
            eprintln!("  failed: {address}: {error}");
        }
        for (address, reason) in &report.skipped {
            eprintln!("  not started: {address}: {reason}");
        }
        if report.succeeded() {
            Ok(Outcome::Success)
        } else if report.abandoned {
            Err(Failure::User(anyhow!(
                "stopped at once by a second interrupt; what the abandoned changes made is found by \
             the next `trails {operation}` (their intents are recorded)"
            )))
        } else if let Some(stopped) = &report.stopped {
            Err(Failure::User(anyhow!(
                "stopped starting changes: {stopped}"
            )))
        } else if report.interrupted {
            Err(Failure::User(anyhow!(
                "interrupted; everything that finished is recorded: run `trails {operation}` again to continue"
            )))
        } else {
            Err(Failure::User(anyhow!(
                "{} change(s) failed; what succeeded is recorded, fix the cause and run `trails {operation}` again",
                report.failed.len()
            )))
        }
    }
}

/// Says when an ephemeral environment expires, in yellow when that is within a day.
pub(super) fn lifetime_notice(
    state: &crate::state::State,
    settings: &crate::blueprint::schema::EnvironmentSettings,
) {
    if let Some((text, soon)) = lifetime::notice(state, settings, std::time::SystemTime::now()) {
        if soon {
            eprintln!(
                "{}",
                console::style(format!("warning: {text}"))
                    .yellow()
                    .for_stderr()
            );
        } else {
            eprintln!("{text}");
        }
    }
}

/// A saved plan is executed only if it is exactly what would be planned now.
fn check_saved_plan(path: &PathBuf, current: &Plan) -> Result<(), Failure> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the saved plan {}", path.display()))
        .map_err(Failure::User)?;
    let saved: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| {
            format!(
                "{} is not a plan saved by `trails plan --out`",
                path.display()
            )
        })
        .map_err(Failure::User)?;
    let mut saved = saved;
    // Findings are shown with the plan but not part of what it executes: a waiver that has
    // expired since is caught by this run's own policy check.
    if let Some(fields) = saved.as_object_mut() {
        fields.remove("policy");
        fields.remove("cost");
    }
    let now = serde_json::to_value(current).map_err(|error| Failure::Internal(error.into()))?;
    if saved.get("state_serial") != now.get("state_serial")
        || saved.get("state_lineage") != now.get("state_lineage")
    {
        return Err(Failure::User(anyhow!(
            "the saved plan {} was made against state serial {}, but the state is now at serial {}; plan again",
            path.display(),
            saved
                .get("state_serial")
                .unwrap_or(&serde_json::Value::Null),
            current.state_serial
        )));
    }
    if saved != now {
        let what = if current.refreshed {
            "the blueprint or what is live"
        } else {
            "the blueprint"
        };
        return Err(Failure::User(anyhow!(
            "{what} changed since the plan {} was saved; plan again",
            path.display()
        )));
    }
    Ok(())
}

fn confirm(operation: &str, environment: &str) -> Result<(), Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::User(anyhow!(
            "refusing to {operation} without confirmation: pass --yes (standard input is not a terminal)"
        )));
    }
    print!("\nType `yes` to {operation} environment `{environment}`: ");
    std::io::stdout().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading the confirmation")
        .map_err(Failure::User)?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(Failure::User(anyhow!("{operation} cancelled")))
    }
}
