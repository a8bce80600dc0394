//! `trails plan`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::{Endpoints, Failure, Outcome, Output, PolicyArgs, StateLocation, Target, load};
use crate::plan::render::{TextOptions, text};
use crate::state::State;
use crate::state::store::Location;

/// Arguments of `trails plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    state: StateLocation,
    /// Print the plan as a stable JSON document instead of text (`--format json`).
    #[arg(long, conflicts_with = "format")]
    json: bool,
    /// How to print the plan: text, a stable JSON document, or one Markdown document (the
    /// changes, the policy findings) fit for a pull-request comment.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Also write the Markdown document to FILE, whatever `--format` prints.
    #[arg(long, value_name = "FILE")]
    out_markdown: Option<PathBuf>,
    /// Save the plan (JSON) so that `apply --plan FILE` executes exactly it.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Plan the removal of everything the environment owns.
    #[arg(long)]
    destroy: bool,
    /// Exit 0 when nothing changes, 2 when something does, 1 on error.
    #[arg(long)]
    pub(super) detailed_exitcode: bool,
    /// Also list resources that do not change.
    #[arg(long)]
    show_unchanged: bool,
    /// Read what trails applied back from where it lives (see `trails diff`) and plan to repair
    /// what was deleted or changed outside trails.
    #[arg(long, conflicts_with = "destroy")]
    refresh: bool,
    #[command(flatten)]
    endpoints: Endpoints,
    #[command(flatten)]
    policy: PolicyArgs,
}

/// How `plan` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
    Markdown,
}

/// Plans and prints.
pub fn run(args: PlanArgs, output: Output) -> Result<Outcome, Failure> {
    let (checked, graph) = load(&args.target)?;
    output.warnings(&checked);
    let loaded = &checked.loaded;
    let location = args
        .state
        .locate(&args.target, &loaded.document, &loaded.environment)?;
    let recorded = super::read_state(&location, &loaded.document.blueprint, &loaded.environment)?;
    let plan = if args.destroy {
        crate::plan::plan_destroy(&recorded)
    } else if args.refresh {
        let observed = super::diff::observe(loaded, &recorded, &args.endpoints)?;
        crate::plan::plan_refreshed(&graph, &recorded, &observed)
    } else {
        crate::plan::plan(&graph, &recorded)
    };
    let report = args.policy.evaluate(&checked, &graph, &plan)?;
    let (estimate, limits) = args.policy.cost(&checked, &graph, &recorded, &plan)?;
    let mut document = serde_json::to_value(&plan)
        .context("serializing the plan")
        .map_err(Failure::Internal)?;
    if !plan.destroy
        && let Some(fields) = document.as_object_mut()
    {
        let findings = serde_json::to_value(&report)
            .context("serializing the policy findings")
            .map_err(Failure::Internal)?;
        fields.insert("policy".to_string(), findings);
        let cost = serde_json::to_value(&estimate)
            .context("serializing the cost estimate")
            .map_err(Failure::Internal)?;
        fields.insert("cost".to_string(), cost);
    }
    let document = serde_json::to_string_pretty(&document)
        .context("serializing the plan")
        .map_err(Failure::Internal)?;
    let refusal = match (
        report.refusal(args.policy.policy_fail_on),
        estimate.refusal(limits).filter(|_| !plan.destroy),
    ) {
        (Some(policy), Some(cost)) => Some(format!("{policy}\nAnd {cost}.")),
        (Some(policy), None) => Some(policy),
        (None, Some(cost)) => Some(format!("{cost}.")),
        (None, None) => None,
    };
    if let Some(out) = &args.out {
        std::fs::write(out, format!("{document}\n"))
            .with_context(|| format!("cannot write the plan to {}", out.display()))
            .map_err(Failure::User)?;
    }
    let format = if args.json { Format::Json } else { args.format };
    let fail_on = args.policy.policy_fail_on;
    let markdown = (format == Format::Markdown || args.out_markdown.is_some())
        .then(|| crate::plan::render::markdown(&plan, &report, fail_on, &estimate, limits));
    if let (Some(path), Some(markdown)) = (&args.out_markdown, &markdown) {
        std::fs::write(path, markdown)
            .with_context(|| format!("cannot write the Markdown plan to {}", path.display()))
            .map_err(Failure::User)?;
    }
    if format == Format::Json {
        println!("{document}");
    } else if let (Format::Markdown, Some(markdown)) = (format, &markdown) {
        print!("{markdown}");
    } else if !output.quiet || plan.has_changes() {
        let description = describe(&location, &recorded);
        print!(
            "{}",
            text(
                &plan,
                &description,
                TextOptions {
                    show_unchanged: args.show_unchanged || output.verbose > 0,
                },
            )
        );
        if let Err(refused) =
            crate::plan::protect::check(&plan, loaded.settings.protect, recorded.protected, false)
        {
            eprintln!(
                "{}",
                console::style(format!("note: apply will refuse this plan: {refused}"))
                    .yellow()
                    .for_stderr()
            );
        }
        if !args.destroy {
            print!("\n{}", crate::policy::text(&report, fail_on));
            print!("\n{}", crate::cost::text(&estimate, limits));
        }
        if let Some(out) = &args.out {
            println!("Saved the plan to {}.", out.display());
        }
        if !args.destroy && !output.quiet {
            super::apply::lifetime_notice(&recorded, &loaded.settings);
        }
    }
    if let Some(refusal) = refusal {
        eprintln!(
            "{}",
            console::style(format!("error: apply will refuse this plan: {refusal}"))
                .red()
                .for_stderr()
        );
        Ok(Outcome::ChecksFailed)
    } else if args.detailed_exitcode && plan.has_changes() {
        Ok(Outcome::Changes)
    } else {
        Ok(Outcome::Success)
    }
}

fn describe(location: &Location, recorded: &State) -> String {
    if recorded.resources.is_empty() && recorded.serial == 0 {
        format!("{location} (none yet: everything is new)")
    } else {
        format!(
            "{location} (serial {}, {} resources)",
            recorded.serial,
            recorded.resources.len()
        )
    }
}
