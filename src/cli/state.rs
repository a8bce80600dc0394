//! `trails state list|show`.

use clap::{Args, Subcommand};

use super::{Failure, Outcome, Output, StateLocation, Target};
use crate::blueprint::Source;
use crate::state;

/// Subcommands of `trails state`.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// List the recorded resources, one address per line.
    List(StateArgs),
    /// Show one recorded resource (sensitive values appear only as digests).
    Show {
        #[command(flatten)]
        args: StateArgs,
        /// Address of the resource, e.g. `aws.vpc.main`.
        address: String,
    },
    /// Release a lock left by a run that is gone (it names its holder and age first).
    Unlock(StateArgs),
}

/// Which state to read.
#[derive(Debug, Args)]
pub struct StateArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    state: StateLocation,
}

/// Runs a state subcommand.
pub fn run(command: StateCommand, _output: Output) -> Result<Outcome, Failure> {
    let (args, address) = match command {
        StateCommand::List(args) => (args, None),
        StateCommand::Show { args, address } => (args, Some(address)),
        StateCommand::Unlock(args) => return unlock(args),
    };
    // Only the blueprint's name and environment are needed: a blueprint that no longer
    // validates must not stop anyone from looking at what is recorded.
    let source = Source::read(&args.target.file)?;
    let environment = source.select(args.target.environment.as_deref())?;
    let loaded = source.load_with(&environment, &args.target.overrides())?;
    let path = args.state.path(&args.target, &environment);
    let recorded = state::read_local(&path, &loaded.document.blueprint, &environment)
        .map_err(|error| Failure::User(error.into()))?;
    match address {
        None => {
            for (address, resource) in &recorded.resources {
                println!("{address}\t{}", resource.id.as_deref().unwrap_or("-"));
            }
        }
        Some(address) => {
            let Some(resource) = recorded.resources.get(&address) else {
                return Err(Failure::User(anyhow::anyhow!(
                    "no resource `{address}` in {}; `trails state list` shows what is recorded",
                    path.display()
                )));
            };
            let text = serde_json::to_string_pretty(resource)
                .map_err(|error| Failure::Internal(error.into()))?;
            println!("{text}");
        }
    }
    Ok(Outcome::Success)
}

fn unlock(args: StateArgs) -> Result<Outcome, Failure> {
    let source = Source::read(&args.target.file)?;
    let environment = source.select(args.target.environment.as_deref())?;
    let path = args.state.path(&args.target, &environment);
    match state::local::force_unlock(&path).map_err(|error| Failure::User(error.into()))? {
        Some(held) => println!(
            "released the lock of {} held by {} for `{}` since {}",
            path.display(),
            held.holder,
            held.operation,
            held.created_at
        ),
        None => println!("{} was not locked", path.display()),
    }
    Ok(Outcome::Success)
}
