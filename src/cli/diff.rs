//! `trails diff`, and the refresh `plan --refresh` and `apply --refresh` share with it: what
//! was deleted or changed outside trails since it was applied.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use serde_json::{Value, json};

use super::{Endpoints, Failure, Outcome, Output, StateLocation, Target, load};
use crate::engine::refresh::Refreshed;
use crate::providers::{Observed, Providers, aws};
use crate::state::State;

/// Longest wait for the cluster while reading back.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Resources read back at once.
const READ_PARALLELISM: usize = 10;

/// Arguments of `trails diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    state: StateLocation,
    #[command(flatten)]
    endpoints: Endpoints,
    /// Print the drift as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Exit 0 when nothing drifted, 2 when something did, 1 on error.
    #[arg(long)]
    pub(super) detailed_exitcode: bool,
}

/// Reads every recorded resource back from where it lives.
pub(super) fn observe(
    loaded: &crate::blueprint::Loaded,
    recorded: &State,
    endpoints: &Endpoints,
) -> Result<Refreshed, Failure> {
    let overrides = endpoints.resolve(loaded)?;
    let cluster = endpoints.cluster(loaded, READ_TIMEOUT);
    let runtime = tokio::runtime::Runtime::new()
        .context("starting the async runtime")
        .map_err(Failure::Internal)?;
    runtime
        .block_on(async {
            let context = aws::Context::load(&loaded.document.region, READ_TIMEOUT).await;
            let providers = Providers::new(context, cluster, overrides, &BTreeSet::new());
            crate::engine::refresh::observe(recorded, &providers, READ_PARALLELISM).await
        })
        .map_err(|error| Failure::User(error.into()))
}

/// Reads back and reports drift.
pub fn run(args: DiffArgs, output: Output) -> Result<Outcome, Failure> {
    let (checked, _graph) = load(&args.target)?;
    output.warnings(&checked);
    let loaded = &checked.loaded;
    let location = args
        .state
        .locate(&args.target, &loaded.document, &loaded.environment)?;
    let recorded = super::read_state(&location, &loaded.document.blueprint, &loaded.environment)?;
    let observed = observe(loaded, &recorded, &args.endpoints)?.observed;
    let counts = Counts::of(&observed);
    if args.json {
        let resources: serde_json::Map<String, Value> = observed
            .iter()
            .map(|(address, found)| {
                let mut entry = serde_json::to_value(found).unwrap_or(Value::Null);
                if let (Some(entry), Some(recorded)) =
                    (entry.as_object_mut(), recorded.resources.get(address))
                {
                    entry.insert("type".into(), json!(recorded.kind));
                }
                (address.clone(), entry)
            })
            .collect();
        let document = json!({
            "blueprint": loaded.document.blueprint,
            "environment": loaded.environment,
            "state_serial": recorded.serial,
            "resources": resources,
            "summary": counts,
        });
        let text = serde_json::to_string_pretty(&document)
            .context("serializing the drift")
            .map_err(Failure::Internal)?;
        println!("{text}");
    } else if !output.quiet || counts.drifted > 0 {
        print!("{}", text(loaded, &location, &recorded, &observed, &counts));
    }
    if args.detailed_exitcode && counts.drifted > 0 {
        Ok(Outcome::Changes)
    } else {
        Ok(Outcome::Success)
    }
}

/// How many resources drifted, were read back (some for existence only) or not at all.
#[derive(serde::Serialize)]
struct Counts {
    drifted: usize,
    read_back: usize,
    existence_only: usize,
    not_checked: usize,
}

impl Counts {
    fn of(observed: &BTreeMap<String, Observed>) -> Self {
        let count = |test: fn(&Observed) -> bool| observed.values().filter(|f| test(f)).count();
        Self {
            drifted: count(Observed::drifted),
            read_back: count(|found| *found != Observed::NotChecked),
            existence_only: count(|found| *found == Observed::Exists),
            not_checked: count(|found| *found == Observed::NotChecked),
        }
    }
}

fn text(
    loaded: &crate::blueprint::Loaded,
    location: &crate::state::store::Location,
    recorded: &State,
    observed: &BTreeMap<String, Observed>,
    counts: &Counts,
) -> String {
    let mut out = format!(
        "Blueprint {} / environment {}\nState: {} (serial {})\n\n",
        loaded.document.blueprint, loaded.environment, location, recorded.serial
    );
    let red = console::Style::new().red();
    let yellow = console::Style::new().yellow();
    for (address, found) in observed {
        match found {
            Observed::Gone => out.push_str(&format!(
                "  {} {}: deleted outside trails\n",
                red.apply_to("-"),
                red.apply_to(address).bold()
            )),
            Observed::Changed(differences) => {
                out.push_str(&format!(
                    "  {} {}: changed outside trails\n",
                    yellow.apply_to("~"),
                    yellow.apply_to(address).bold()
                ));
                for difference in differences {
                    out.push_str(&format!("      {difference}\n"));
                }
            }
            Observed::Matches | Observed::Exists | Observed::NotChecked => {}
        }
    }
    let unread: BTreeSet<&str> = observed
        .iter()
        .filter(|(_, found)| **found == Observed::NotChecked)
        .filter_map(|(address, _)| recorded.resources.get(address))
        .map(|entry| entry.kind.as_str())
        .collect();
    let existing = counts.existence_only;
    let existence = if existing == 0 {
        String::new()
    } else {
        format!(
            " ({existing} of them checked for existence only: their settings are not compared \
             yet)"
        )
    };
    if counts.drifted == 0 {
        out.push_str(&format!(
            "No drift among the {} resource(s) read back{existence}.\n",
            counts.read_back
        ));
    } else {
        out.push_str(&format!(
            "\nDrift: {} of {} resource(s) read back differ{existence}; `trails apply \
             --refresh` repairs them.\n",
            counts.drifted, counts.read_back
        ));
    }
    if !unread.is_empty() {
        out.push_str(&format!(
            "Not read back ({} resource(s)): trails does not read these types back yet: {}.\n",
            counts.not_checked,
            unread.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    out
}
