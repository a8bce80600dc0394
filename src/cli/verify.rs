//! `trails verify`: smoke tests of the running environment.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use clap::Args;

use super::{Endpoints, Failure, Outcome, Output, StateLocation, Target, load};
use crate::providers::{aws, kube};
use crate::verify::aws::Owner;
use crate::verify::data::{self, Access};
use crate::verify::report::{self, Subject};
use crate::verify::{self, Options, Pattern, Summary};

/// Arguments of `trails verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    state: StateLocation,
    /// Also write the results as JUnit XML to this file (for CI test reports).
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Print the results as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Run only checks whose name matches: a prefix (`aws.s3_bucket`, `network.routes`) or a glob
    /// (`aws.*.backups`); repeatable.
    #[arg(long, value_name = "PATTERN", value_parser = Pattern::parse)]
    only: Vec<Pattern>,
    /// Leave out checks whose name matches (same patterns as --only); repeatable.
    #[arg(long, value_name = "PATTERN", value_parser = Pattern::parse)]
    skip: Vec<Pattern>,
    #[command(flatten)]
    endpoints: Endpoints,
    /// Longest time one check may take.
    #[arg(long, default_value = "30s", value_parser = super::duration)]
    timeout: Duration,
    /// Most checks running at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    parallelism: u16,
}

/// Runs the checks; fails (exit 1) when any check failed.
pub fn run(args: VerifyArgs, output: Output) -> Result<Outcome, Failure> {
    let (checked, graph) = load(&args.target)?;
    output.warnings(&checked);
    let loaded = &checked.loaded;
    let endpoints = args.endpoints.resolve(loaded)?;
    // Read only: the ids of what trails applied, for the AWS settings checks.
    let location = args
        .state
        .locate(&args.target, &loaded.document, &loaded.environment)?;
    let state = super::read_state(&location, &loaded.document.blueprint, &loaded.environment)?;
    let access = Access {
        endpoints,
        api_key: std::env::var("TRAILS_VERIFY_API_KEY")
            .ok()
            .filter(|key| !key.is_empty()),
    };
    let owner = Owner {
        blueprint: loaded.document.blueprint.clone(),
        environment: loaded.environment.clone(),
    };
    let options = Options {
        timeout: args.timeout,
        parallelism: usize::from(args.parallelism),
        only: args.only,
        skip: args.skip,
    };
    let today = crate::policy::today().map_err(Failure::User)?;
    let runtime = tokio::runtime::Runtime::new()
        .context("starting the async runtime")
        .map_err(Failure::Internal)?;
    let started = Instant::now();
    let outcomes = runtime.block_on(async {
        let context = aws::Context::load(&loaded.document.region, args.timeout).await;
        let cluster = kube::Cluster::new(
            args.endpoints.cluster(loaded, args.timeout),
            context.clone(),
        );
        let policy = std::sync::Arc::new(verify::aws::LivePolicy {
            loaded: loaded.clone(),
            today,
        });
        let mut chains =
            verify::aws::checks(&graph, &state, &context, &owner, &cluster, &policy).await;
        chains.extend(data::checks(
            loaded, &graph, &context, &owner, &access, &cluster,
        ));
        verify::run(chains, &options).await
    });
    let elapsed = started.elapsed();
    let subject = Subject {
        blueprint: owner.blueprint,
        environment: owner.environment,
    };
    if outcomes.is_empty() {
        return Err(Failure::User(anyhow!(
            "no checks selected: the blueprint declares nothing verify can check{}",
            if options.only.is_empty() && options.skip.is_empty() {
                ""
            } else {
                ", or --only/--skip left nothing"
            }
        )));
    }
    if let Some(path) = &args.junit {
        std::fs::write(path, report::junit(&subject, &outcomes, elapsed))
            .with_context(|| format!("writing the JUnit report to {}", path.display()))
            .map_err(Failure::User)?;
    }
    if args.json {
        println!("{}", report::json(&subject, &outcomes, elapsed));
    } else if output.quiet {
        for outcome in outcomes
            .iter()
            .filter(|o| o.status == verify::Status::Failed)
        {
            eprintln!("FAILED {}: {}", outcome.name, outcome.evidence);
        }
    } else {
        print!("{}", report::text(&subject, &outcomes, elapsed));
    }
    if Summary::of(&outcomes).failed == 0 {
        Ok(Outcome::Success)
    } else {
        Ok(Outcome::ChecksFailed)
    }
}
