//! The command-line layer: arguments in, calls to the library, exit statuses out.
//! Nothing here talks to AWS or Kubernetes, and nothing outside this module knows about clap.

mod apply;
mod completions;
mod diff;
mod eks_token;
mod env;
mod fmt;
mod graph;
mod ingest;
mod init;
mod plan;
mod prices;
mod render;
mod schema;
mod state;
mod validate;
mod verify;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::blueprint::{Checked, Diagnostics};

/// Provision, verify and tear down the Turia Trails platform from one declarative blueprint.
#[derive(Debug, Parser)]
#[command(name = "trails", version, about, propagate_version = true)]
pub struct Cli {
    /// More detail (repeat for even more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// No colours (also when NO_COLOR is set or output is not a terminal).
    #[arg(long, global = true)]
    no_color: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a starter blueprint (a network, a bucket, a dev and a protected prod environment).
    Init(init::InitArgs),
    /// Rewrite blueprints in canonical form: top-level sections in the reference's order with
    /// their comments, two-space indentation. `--check` writes nothing and exits 1 when a file
    /// is not formatted (for CI). Never changes what a blueprint says.
    Fmt(fmt::FmtArgs),
    /// Parse and check a blueprint; every problem names its file, line and field.
    Validate(validate::ValidateArgs),
    /// Show the ordered changes that would bring the environment to the blueprint.
    Plan(plan::PlanArgs),
    /// What was deleted or changed outside trails since it was applied (AWS resources: deleted
    /// only, so far). `--detailed-exitcode`: 0 no drift, 2 drift, 1 error.
    Diff(diff::DiffArgs),
    /// Make the environment match the blueprint (plans, asks, then executes the plan).
    Apply(apply::ApplyArgs),
    /// Delete everything the environment owns, dependents first.
    Destroy(apply::DestroyArgs),
    /// Check that the running environment works: live AWS resources, data stores, an event end
    /// to end. Exit 1 when any check fails.
    Verify(verify::VerifyArgs),
    /// What the applied resources expose (endpoints, ids, ARNs), read from the state:
    /// `ADDRESS.OUTPUT = VALUE` lines, or `--json`. `trails output kubeconfig` prints a
    /// kubeconfig for the environment's EKS cluster whose user runs `trails eks-token`.
    Output(state::OutputArgs),
    /// Adopt something that exists without trails' mark (a namespace, Helm release, Kafka
    /// topic, database) as a blueprint address on the next apply, instead of refusing it.
    Import(state::ImportArgs),
    /// Print the blueprint's JSON Schema (for editors), or with `--markdown` its reference:
    /// every field with its type, default and meaning, and each resource type's outputs.
    Schema(schema::SchemaArgs),
    /// Print the resource graph as Graphviz DOT or Mermaid.
    Graph(graph::GraphArgs),
    /// Print every Kubernetes object and Helm values file trails would apply, as YAML
    /// documents (Secrets redacted), for kubeconform, kube-linter or conftest.
    Render(render::RenderArgs),
    /// The AWS prices behind `plan`'s cost estimate: update them from a Price List offer file.
    #[command(subcommand)]
    Prices(prices::PricesCommand),
    /// Inspect, move and unlock the recorded state.
    #[command(subcommand)]
    State(state::StateCommand),
    /// The blueprint's environments as their states record them: list, extend an expiry.
    #[command(subcommand)]
    Env(env::EnvCommand),
    /// Print a shell completion script.
    Completions(completions::CompletionsArgs),
    /// The platform's ingest service: audit events over HTTP into Kafka.
    #[command(subcommand)]
    Ingest(ingest::IngestCommand),
    /// An EKS token as a kubeconfig exec credential (what trails gives the kube client and helm).
    #[command(hide = true)]
    EksToken(eks_token::EksTokenArgs),
}

/// Which blueprint and environment a command works on.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The blueprint file.
    #[arg(
        short = 'f',
        long = "file",
        env = "TRAILS_BLUEPRINT",
        default_value = "trails.yaml"
    )]
    file: PathBuf,
    /// The environment (required when the blueprint declares several).
    #[arg(short = 'e', long = "env", env = "TRAILS_ENV")]
    environment: Option<String>,
    /// Set a declared variable, over the blueprint's value (repeatable). `TRAILS_VAR_NAME`
    /// environment variables do the same with lower precedence.
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_variable)]
    variables: Vec<(String, String)>,
    /// Set declared variables from a YAML file of `NAME: VALUE` lines (repeatable; later files
    /// win, `--var` wins over them).
    #[arg(long = "var-file", value_name = "FILE")]
    var_files: Vec<PathBuf>,
}

impl Target {
    /// Variable overrides: `TRAILS_VAR_*` first, then `--var-file`s in order, then `--var`,
    /// which wins.
    fn overrides(&self) -> Result<crate::blueprint::schema::Map<String>, Failure> {
        let mut overrides = variables_from_environment();
        for file in &self.var_files {
            overrides.extend(crate::blueprint::load::read_variables(file)?);
        }
        for (name, value) in &self.variables {
            overrides.insert(name.clone(), value.clone());
        }
        Ok(overrides)
    }
}

/// Variable overrides from the process environment, `TRAILS_VAR_NAME=VALUE`, by name.
fn variables_from_environment() -> crate::blueprint::schema::Map<String> {
    let mut overrides: crate::blueprint::schema::Map<String> = std::env::vars()
        .filter_map(|(key, value)| {
            key.strip_prefix("TRAILS_VAR_")
                .map(|name| (name.to_string(), value))
        })
        .collect();
    overrides.sort_keys();
    overrides
}

fn parse_variable(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("`{text}` is not NAME=VALUE")),
    }
}

/// Other ways into the data plane than the live endpoints (a tunnel, a port-forward, a local
/// stand-in), for the commands that connect to databases and brokers.
#[derive(Debug, Clone, Args)]
pub struct Endpoints {
    /// Reach a data-plane endpoint another way than the live one (a tunnel, a port-forward):
    /// `postgres.NAME=postgres://HOST:PORT`, `redis.NAME=redis://HOST:PORT`,
    /// `kafka=HOST:PORT`, `ingest=https://HOST`. Credentials missing from the URL come from
    /// Secrets Manager; a URL with a password goes in `TRAILS_ENDPOINTS` (`NAME=URL ...`), never
    /// on the command line. Repeatable.
    #[arg(long = "endpoint", value_name = "NAME=URL", value_parser = parse_variable)]
    endpoints: Vec<(String, String)>,
    /// Reach the Kubernetes cluster through this kubeconfig context instead of the blueprint's
    /// own target (a private EKS endpoint through a bastion, an entry written by
    /// `aws eks update-kubeconfig`).
    #[arg(long = "kube-context", value_name = "CONTEXT")]
    kube_context: Option<String>,
}

impl Endpoints {
    /// Where the cluster is: the blueprint's target unless `--kube-context` names another.
    fn cluster(
        &self,
        loaded: &crate::blueprint::Loaded,
        timeout: std::time::Duration,
    ) -> crate::providers::kube::Settings {
        let mut settings = crate::providers::kube::Settings::for_blueprint(loaded, timeout);
        if let Some(context) = &self.kube_context {
            settings.target = crate::providers::kube::Target::Context(Some(context.clone()));
        }
        settings
    }

    /// The overrides by name, each checked against the names this blueprint has.
    fn resolve(
        &self,
        loaded: &crate::blueprint::Loaded,
    ) -> Result<std::collections::BTreeMap<String, String>, Failure> {
        let allowed = crate::verify::data::endpoint_names(loaded);
        let mut given = Vec::new();
        for (name, url) in &self.endpoints {
            if url::Url::parse(url).is_ok_and(|parsed| parsed.password().is_some()) {
                return Err(Failure::User(anyhow::anyhow!(
                    "--endpoint {name}: the URL holds a password, and every user of this \
                     machine can read a command line; put it in the TRAILS_ENDPOINTS \
                     environment variable instead (`NAME=URL`, separated by spaces), or leave \
                     the credentials out: they come from Secrets Manager"
                )));
            }
            given.push((name.clone(), url.clone()));
        }
        // The environment's are read only where the command line names no other.
        for pair in std::env::var("TRAILS_ENDPOINTS")
            .unwrap_or_default()
            .split_whitespace()
        {
            // The entry may hold a password: the error does not repeat it.
            let (name, url) = parse_variable(pair).map_err(|_| {
                Failure::User(anyhow::anyhow!(
                    "TRAILS_ENDPOINTS: an entry is not NAME=URL (entries are separated by spaces)"
                ))
            })?;
            if !given.iter().any(|(other, _)| *other == name) {
                given.push((name, url));
            }
        }
        let mut endpoints = std::collections::BTreeMap::new();
        for (name, url) in &given {
            if !allowed.contains(name) {
                return Err(Failure::User(anyhow::anyhow!(
                    "--endpoint {name}: this blueprint has no such endpoint; it has {}",
                    allowed.join(", ")
                )));
            }
            endpoints.insert(name.clone(), url.clone());
        }
        Ok(endpoints)
    }
}

/// Where the state lives.
#[derive(Debug, Clone, Args)]
pub struct StateLocation {
    /// State file or `s3://BUCKET/KEY` (default: the blueprint's `state:` section, else
    /// `.trails/ENV.state.json` beside the blueprint).
    #[arg(
        long = "state",
        env = "TRAILS_STATE",
        value_name = "FILE|s3://BUCKET/KEY"
    )]
    state: Option<String>,
}

impl StateLocation {
    /// True when `--state` (or `TRAILS_STATE`) names the state.
    fn is_explicit(&self) -> bool {
        self.state.is_some()
    }

    /// The state of `environment` of the blueprint in `target`.
    fn locate(
        &self,
        target: &Target,
        document: &crate::blueprint::schema::Document,
        environment: &str,
    ) -> Result<crate::state::store::Location, Failure> {
        crate::state::store::Location::of(
            self.state.as_deref(),
            &target.file,
            document,
            environment,
        )
        .map_err(|message| Failure::User(anyhow::anyhow!(message)))
    }
}

/// A runtime for a command's async calls.
fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Runtime::new().map_err(|error| {
        Failure::Internal(anyhow::Error::new(error).context("starting the async runtime"))
    })
}

/// Takes the lock of `location` for `operation` (waiting up to `wait`) and reads the state.
fn lock(
    runtime: &tokio::runtime::Runtime,
    location: &crate::state::store::Location,
    blueprint: &str,
    environment: &str,
    operation: &str,
    wait: std::time::Duration,
) -> Result<crate::state::store::Store, Failure> {
    runtime
        .block_on(crate::state::store::Store::open(
            location,
            blueprint,
            environment,
            operation,
            wait,
        ))
        .map_err(|error| Failure::User(error.into()))
}

/// Reads a state without locking it, for the commands that only read.
fn read_state(
    location: &crate::state::store::Location,
    blueprint: &str,
    environment: &str,
) -> Result<crate::state::State, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::Internal(error.into()))?;
    runtime
        .block_on(location.read(blueprint, environment))
        .map_err(|error| Failure::User(error.into()))
}

/// The longest wait or timeout a flag takes: a day (a longer one would overflow clocks, and
/// no resource takes that long).
const LONGEST_WAIT: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// A duration flag such as `45m` or `2h`, at most a day.
fn duration(text: &str) -> Result<std::time::Duration, String> {
    let parsed = humantime::parse_duration(text).map_err(|error| error.to_string())?;
    if parsed > LONGEST_WAIT {
        return Err(format!(
            "{text} is longer than the longest wait trails takes (24h)"
        ));
    }
    Ok(parsed)
}

/// How a command ended, for the exit status.
#[derive(Debug)]
pub enum Outcome {
    /// Done, nothing to report beyond the output.
    Success,
    /// A plan under `--detailed-exitcode` found changes.
    Changes,
    /// At least one check failed: a verify check, or a policy rule that gates the plan; the
    /// report says which (exit 1).
    ChecksFailed,
}

/// How policy findings and the cost estimate gate `plan` and `apply`.
#[derive(Debug, Clone, Copy, Args)]
pub struct PolicyArgs {
    /// The least severity of an unwaived policy finding that makes `plan` exit 1 and `apply`
    /// refuse before any change.
    #[arg(long, value_enum, default_value_t = crate::policy::Severity::Error)]
    policy_fail_on: crate::policy::Severity,
    /// The most the monthly cost estimate may grow, in USD (`200` or `200 USD/month`): more
    /// makes `plan` exit 1 and `apply` refuse before any change.
    #[arg(long, value_name = "AMOUNT", value_parser = crate::cost::parse_budget)]
    max_increase: Option<f64>,
}

impl PolicyArgs {
    /// Evaluates the policies on a plan (nothing for a destroy plan).
    fn evaluate(
        &self,
        checked: &Checked,
        graph: &crate::graph::Graph,
        plan: &crate::plan::Plan,
    ) -> Result<crate::policy::Report, Failure> {
        let today = crate::policy::today().map_err(Failure::User)?;
        crate::policy::evaluate(&checked.loaded, graph, plan, today).map_err(Failure::User)
    }

    /// Estimates the cost before (`recorded`) and after a plan, with the limits it must keep.
    fn cost(
        &self,
        checked: &Checked,
        graph: &crate::graph::Graph,
        recorded: &crate::state::State,
        plan: &crate::plan::Plan,
    ) -> Result<(crate::cost::Estimate, crate::cost::Limits), Failure> {
        let estimate =
            crate::cost::estimate(&checked.loaded, graph, recorded, plan).map_err(Failure::User)?;
        Ok((
            estimate,
            crate::cost::limits(&checked.loaded, self.max_increase),
        ))
    }
}

/// Why a command failed.
#[derive(Debug)]
pub enum Failure {
    /// The blueprint, the state or the arguments are wrong: the user can fix it (exit 1).
    User(anyhow::Error),
    /// Something unexpected (exit 2).
    Internal(anyhow::Error),
}

impl From<Diagnostics> for Failure {
    fn from(diagnostics: Diagnostics) -> Self {
        Failure::User(anyhow::Error::new(diagnostics))
    }
}

/// Shared output settings.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// Print warnings and progress.
    pub verbose: u8,
    /// Print only errors.
    pub quiet: bool,
}

impl Output {
    /// Prints blueprint warnings to stderr unless quiet.
    fn warnings(&self, checked: &Checked) {
        if self.quiet {
            return;
        }
        for warning in &checked.warnings {
            eprintln!("{}", console::style(warning).yellow());
        }
    }
}

/// Parses the command line, runs the command and returns the exit status.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            // Help and version are answers; anything else is a usage error, exit 1 like every
            // other user error (2 means "changes" under --detailed-exitcode).
            return if error.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if !matches!(cli.command, Command::Ingest(_)) {
        end_quietly_on_a_closed_pipe();
    }
    let colour = !cli.no_color
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
        && std::io::stdout().is_terminal();
    console::set_colors_enabled(colour);
    console::set_colors_enabled_stderr(colour && std::io::stderr().is_terminal());
    let output = Output {
        verbose: cli.verbose,
        quiet: cli.quiet,
    };
    let detailed = match &cli.command {
        Command::Plan(args) => args.detailed_exitcode,
        Command::Diff(args) => args.detailed_exitcode,
        _ => false,
    };
    let result = match cli.command {
        Command::Validate(args) => validate::run(args, output),
        Command::Plan(args) => plan::run(args, output),
        Command::Diff(args) => diff::run(args, output),
        Command::Apply(args) => apply::apply(args, output),
        Command::Destroy(args) => apply::destroy(args, output),
        Command::Verify(args) => verify::run(args, output),
        Command::Graph(args) => graph::run(args, output),
        Command::Schema(args) => schema::run(args),
        Command::Init(args) => init::run(args, output),
        Command::Fmt(args) => fmt::run(args, output),
        Command::Render(args) => render::run(args, output),
        Command::Prices(command) => prices::run(command, output),
        Command::State(command) => state::run(command, output),
        Command::Env(command) => env::run(command, output),
        Command::Output(args) => state::output(args),
        Command::Import(args) => state::import(args),
        Command::Completions(args) => completions::run(args),
        Command::Ingest(command) => ingest::run(command),
        Command::EksToken(args) => eks_token::run(args),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Changes) => ExitCode::from(2),
        Ok(Outcome::ChecksFailed) => ExitCode::from(1),
        Err(Failure::User(error)) => {
            eprintln!("{}", render_error(&error));
            ExitCode::from(1)
        }
        Err(Failure::Internal(error)) => {
            eprintln!("internal error: {}", render_error(&error));
            eprintln!("this is a bug in trails; please report it with the command you ran");
            ExitCode::from(if detailed { 1 } else { 2 })
        }
    }
}

/// A command whose output is cut short (`trails plan --json | head -1`) ends as other Unix
/// tools do, on SIGPIPE, instead of panicking on the failed write. Not for the ingest
/// service, which must outlive clients that hang up.
fn end_quietly_on_a_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restoring a signal's default disposition at start-up, before any thread is
    // spawned, has no memory-safety requirement.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn render_error(error: &anyhow::Error) -> String {
    if let Some(diagnostics) = error.downcast_ref::<Diagnostics>() {
        let style = console::Style::new().red().for_stderr();
        return diagnostics
            .0
            .iter()
            .map(|d| {
                if d.is_error() {
                    style.apply_to(d).to_string()
                } else {
                    console::style(d).yellow().for_stderr().to_string()
                }
            })
            .chain(std::iter::once(format!(
                "{} error(s) in the blueprint",
                diagnostics.0.iter().filter(|d| d.is_error()).count()
            )))
            .collect::<Vec<_>>()
            .join("\n");
    }
    format!("error: {error:#}")
}

/// Loads, checks and expands the target blueprint.
fn load(target: &Target) -> Result<(Checked, crate::graph::Graph), Failure> {
    let checked = crate::blueprint::load_checked(
        &target.file,
        target.environment.as_deref(),
        &target.overrides()?,
    )?;
    let graph = crate::graph::build(&checked.loaded, crate::resources::expand)?;
    Ok((checked, graph))
}
