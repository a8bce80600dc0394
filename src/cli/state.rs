//! `trails state list|show|unlock|pull|push|migrate`.

use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use clap::{Args, Subcommand};

use super::{Failure, Outcome, Output, StateLocation, Target, runtime};
use crate::blueprint::{Loaded, Source};
use crate::state::store::Location;

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
    /// Print the state document (or write it to a file with `--out`).
    Pull {
        #[command(flatten)]
        args: StateArgs,
        /// Write it to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Upload a state file, such as the one a run wrote when S3 could not be written
    /// (`.trails/ENV.unpushed.state.json`), over the environment's state. Refused unless it
    /// continues that state (same lineage, a later serial).
    Push {
        #[command(flatten)]
        args: StateArgs,
        /// The state file to upload.
        #[arg(long = "from", value_name = "FILE")]
        from: PathBuf,
    },
    /// Forget resources: trails stops managing them and leaves them where they are (no call
    /// is made). Use it before handing a resource to another tool.
    Rm {
        #[command(flatten)]
        args: StateArgs,
        /// Addresses to forget, e.g. `aws.s3_bucket.logs`.
        #[arg(required = true)]
        addresses: Vec<String>,
    },
    /// Rename a recorded resource (a key renamed in the blueprint), so that the next plan sees
    /// the same resource under its new address instead of a delete and a create.
    Mv {
        #[command(flatten)]
        args: StateArgs,
        /// The recorded address.
        from: String,
        /// The new address, of the same type.
        to: String,
    },
    /// Move a local state to S3 (`--to s3://BUCKET/KEY`), keeping its lineage; the local file
    /// is renamed `*.migrated` so that nothing reads it by mistake.
    Migrate {
        #[command(flatten)]
        args: StateArgs,
        /// Where the state goes.
        #[arg(long = "to", value_name = "s3://BUCKET/KEY")]
        to: String,
    },
}

/// Which state to read.
#[derive(Debug, Args)]
pub struct StateArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    state: StateLocation,
}

impl StateArgs {
    /// The blueprint (only its name and environment are needed: a blueprint that no longer
    /// validates must not stop anyone from looking at what is recorded) and the state's place.
    fn locate(&self) -> Result<(Loaded, Location), Failure> {
        let source = Source::read(&self.target.file)?;
        let environment = source.select(self.target.environment.as_deref())?;
        let loaded = source.load_with(&environment, &self.target.overrides()?)?;
        let location = self
            .state
            .locate(&self.target, &loaded.document, &environment)?;
        Ok((loaded, location))
    }
}

/// Runs a state subcommand.
pub fn run(command: StateCommand, _output: Output) -> Result<Outcome, Failure> {
    match command {
        StateCommand::List(args) => show(args, None),
        StateCommand::Show { args, address } => show(args, Some(address)),
        StateCommand::Unlock(args) => unlock(args),
        StateCommand::Pull { args, out } => pull(args, out),
        StateCommand::Push { args, from } => push(args, from),
        StateCommand::Migrate { args, to } => migrate(args, to),
        StateCommand::Rm { args, addresses } => edit(args, "state rm", |state| {
            crate::state::edit::remove(state, &addresses)
        }),
        StateCommand::Mv { args, from, to } => edit(args, "state mv", |state| {
            crate::state::edit::rename(state, &from, &to)
        }),
    }
}

fn show(args: StateArgs, address: Option<String>) -> Result<Outcome, Failure> {
    let (loaded, location) = args.locate()?;
    let recorded = super::read_state(&location, &loaded.document.blueprint, &loaded.environment)?;
    match address {
        None => {
            for (address, resource) in &recorded.resources {
                println!("{address}\t{}", resource.id.as_deref().unwrap_or("-"));
            }
        }
        Some(address) => {
            let Some(resource) = recorded.resources.get(&address) else {
                return Err(Failure::User(anyhow!(
                    "no resource `{address}` in {location}; `trails state list` shows what is recorded"
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
    let (_, location) = args.locate()?;
    let released = runtime()?
        .block_on(location.force_unlock())
        .map_err(|error| Failure::User(error.into()))?;
    match released {
        Some(held) => println!(
            "released the lock of {location} held by {} for `{}` since {}",
            held.holder, held.operation, held.created_at
        ),
        None => println!("{location} was not locked"),
    }
    Ok(Outcome::Success)
}

/// Changes the recorded state under its lock: `change` checks and edits a copy, and says what
/// it did; nothing is written when it refuses.
fn edit(
    args: StateArgs,
    operation: &str,
    change: impl FnOnce(&mut crate::state::State) -> Result<String, String>,
) -> Result<Outcome, Failure> {
    let (loaded, location) = args.locate()?;
    let runtime = runtime()?;
    let mut store = super::lock(
        &runtime,
        &location,
        &loaded.document.blueprint,
        &loaded.environment,
        operation,
        std::time::Duration::ZERO,
    )?;
    let mut edited = store.state().clone();
    let result = match change(&mut edited) {
        Err(refused) => Err(Failure::User(anyhow!(refused))),
        Ok(said) => runtime
            .block_on(store.update(|state| *state = edited))
            .map_err(|error| Failure::User(error.into()))
            .map(|()| said),
    };
    runtime.block_on(store.release());
    println!("{} (state {location})", result?);
    Ok(Outcome::Success)
}

fn pull(args: StateArgs, out: Option<PathBuf>) -> Result<Outcome, Failure> {
    let (loaded, location) = args.locate()?;
    let recorded = super::read_state(&location, &loaded.document.blueprint, &loaded.environment)?;
    let text =
        serde_json::to_string_pretty(&recorded).map_err(|error| Failure::Internal(error.into()))?;
    match out {
        None => println!("{text}"),
        Some(path) => {
            std::fs::write(&path, format!("{text}\n"))
                .with_context(|| format!("cannot write {}", path.display()))
                .map_err(Failure::User)?;
            println!(
                "wrote {location} (serial {}) to {}",
                recorded.serial,
                path.display()
            );
        }
    }
    Ok(Outcome::Success)
}

/// Writes `local` over the state at `location` under its lock, if `accept` agrees with what
/// is there now.
fn upload(
    location: &Location,
    local: crate::state::State,
    operation: &str,
    accept: impl FnOnce(&crate::state::State) -> Result<(), String>,
) -> Result<u64, Failure> {
    let runtime = runtime()?;
    let mut store = super::lock(
        &runtime,
        location,
        &local.blueprint,
        &local.environment,
        operation,
        std::time::Duration::ZERO,
    )?;
    let result = match accept(store.state()) {
        Err(refused) => Err(Failure::User(anyhow!(refused))),
        Ok(()) => runtime
            .block_on(store.update(|state| {
                let serial = state.serial.max(local.serial);
                *state = local;
                state.serial = serial;
            }))
            .map_err(|error| Failure::User(error.into()))
            .map(|()| store.state().serial),
    };
    let stopping = store.stopping();
    runtime.block_on(store.release());
    if let Some(reason) = stopping {
        return Err(Failure::User(anyhow!(reason)));
    }
    result
}

fn read_file(path: &std::path::Path, loaded: &Loaded) -> Result<crate::state::State, Failure> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {}", path.display()))
        .map_err(Failure::User)?;
    crate::state::parse(&text, path, &loaded.document.blueprint, &loaded.environment)
        .map_err(|error| Failure::User(error.into()))
}

fn push(args: StateArgs, from: PathBuf) -> Result<Outcome, Failure> {
    let (loaded, location) = args.locate()?;
    let local = read_file(&from, &loaded)?;
    let (lineage, serial) = (local.lineage.clone(), local.serial);
    let written = upload(&location, local, "state push", |current| {
        if current.is_new() {
            return Ok(());
        }
        if current.lineage != lineage {
            return Err(format!(
                "{} is not a version of {location}: its lineage is {lineage}, the state's is {}",
                from.display(),
                current.lineage
            ));
        }
        if serial <= current.serial {
            return Err(format!(
                "{} is at serial {serial}, but {location} is already at serial {}: it would \
                 overwrite newer changes",
                from.display(),
                current.serial
            ));
        }
        Ok(())
    })?;
    println!(
        "uploaded {} to {location} (serial {written}); you may delete the file",
        from.display()
    );
    Ok(Outcome::Success)
}

fn migrate(args: StateArgs, to: String) -> Result<Outcome, Failure> {
    let (loaded, from) = args.locate()?;
    let Location::Local(path) = &from else {
        return Err(Failure::User(anyhow!(
            "the state is already in {from}; `trails state migrate` moves a local state"
        )));
    };
    let target = Location::of(
        Some(&to),
        &args.target.file,
        &loaded.document,
        &loaded.environment,
    )
    .map_err(|message| Failure::User(anyhow!(message)))?;
    if !target.is_shared() {
        return Err(Failure::User(anyhow!(
            "--to {to}: expected s3://BUCKET/KEY"
        )));
    }
    let local = read_file(path, &loaded)?;
    let count = local.resources.len();
    let written = upload(&target, local, "state migrate", |current| {
        if current.is_new() {
            Ok(())
        } else {
            Err(format!(
                "{target} already holds a state (serial {}); migrate only into an empty place",
                current.serial
            ))
        }
    })?;
    let mut moved = path.as_os_str().to_owned();
    moved.push(".migrated");
    std::fs::rename(path, &moved)
        .with_context(|| format!("cannot rename {}", path.display()))
        .map_err(Failure::User)?;
    println!(
        "migrated {count} resource(s) to {target} (serial {written}); {} is now {}. \
         Add `state: {{ s3: {{ bucket: ..., prefix: ... }} }}` to the blueprint, or pass \
         --state {target}",
        path.display(),
        PathBuf::from(moved).display()
    );
    Ok(Outcome::Success)
}

/// Arguments of `trails output`.
#[derive(Debug, Args)]
pub struct OutputArgs {
    #[command(flatten)]
    args: StateArgs,
    /// Only this resource's outputs, e.g. `aws.db_instance.main`; `kubeconfig` prints a
    /// kubeconfig for the EKS cluster (`trails output kubeconfig > ~/.kube/prod`).
    address: Option<String>,
    /// One JSON document: `{ADDRESS: {OUTPUT: VALUE}}`.
    #[arg(long)]
    json: bool,
}

/// `trails import`: what to adopt.
#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    args: StateArgs,
    /// The blueprint's address for it, e.g. `k8s.namespace.web`.
    address: String,
    /// What exists now: a namespace's name, a release's `NAMESPACE/NAME`, a topic's or a
    /// database's name.
    id: String,
}

/// `trails import ADDRESS ID`: records that the next apply adopts `ID`, which exists without
/// trails' mark, as `ADDRESS` instead of refusing it.
pub fn import(args: ImportArgs) -> Result<Outcome, Failure> {
    let (loaded, _) = args.args.locate()?;
    let graph = crate::graph::build(&loaded, crate::resources::expand)?;
    if graph.get(&args.address).is_none() {
        return Err(Failure::User(anyhow!(
            "`{}` is not declared in the blueprint for environment {}; `trails graph` lists \
             the addresses it declares",
            args.address,
            loaded.environment
        )));
    }
    let (address, id) = (args.address, args.id);
    edit(args.args, "import", |state| {
        crate::state::edit::import(state, &address, &id)
    })
}

/// `trails output`: what applied resources expose (endpoints, ids, ARNs), from the state.
/// Secret outputs are never recorded, so never shown.
pub fn output(args: OutputArgs) -> Result<Outcome, Failure> {
    let (loaded, location) = args.args.locate()?;
    let recorded = super::read_state(&location, &loaded.document.blueprint, &loaded.environment)?;
    if args.address.as_deref() == Some("kubeconfig")
        && !recorded.resources.contains_key("kubeconfig")
    {
        return kubeconfig(&loaded, &recorded, &location);
    }
    if let Some(address) = &args.address
        && !recorded.resources.contains_key(address)
    {
        return Err(Failure::User(anyhow!(
            "no resource `{address}` in {location}; `trails state list` shows what is recorded"
        )));
    }
    let selected: Vec<(&String, &crate::state::Recorded)> = recorded
        .resources
        .iter()
        .filter(|(address, _)| {
            args.address
                .as_ref()
                .is_none_or(|wanted| wanted == *address)
        })
        .filter(|(_, resource)| !resource.outputs.is_empty())
        .collect();
    if args.json {
        let document: serde_json::Map<String, serde_json::Value> = selected
            .iter()
            .map(|(address, resource)| {
                (
                    (*address).clone(),
                    serde_json::Value::Object(resource.outputs.clone()),
                )
            })
            .collect();
        let text = serde_json::to_string_pretty(&document)
            .map_err(|error| Failure::Internal(error.into()))?;
        println!("{text}");
        return Ok(Outcome::Success);
    }
    for (address, resource) in selected {
        for (name, value) in &resource.outputs {
            let shown = match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            println!("{address}.{name} = {shown}");
        }
    }
    Ok(Outcome::Success)
}

/// `trails output kubeconfig`: a kubeconfig for the environment's EKS cluster as the state
/// records it (endpoint, CA), whose user runs `trails eks-token`; no AWS call is made.
fn kubeconfig(
    loaded: &crate::blueprint::Loaded,
    recorded: &crate::state::State,
    location: &crate::state::store::Location,
) -> Result<Outcome, Failure> {
    use crate::resources::Spec;
    let cluster_kind = crate::resources::eks::Cluster::KIND.name;
    let clusters: Vec<&crate::state::Recorded> = recorded
        .resources
        .values()
        .filter(|resource| resource.kind == cluster_kind)
        .collect();
    let [cluster] = clusters.as_slice() else {
        return Err(Failure::User(anyhow!(
            "{location} records {} EKS clusters; `trails output kubeconfig` needs exactly one \
             (apply the blueprint's `eks` first)",
            clusters.len()
        )));
    };
    let output = |name: &str| {
        cluster
            .outputs
            .get(name)
            .and_then(serde_json::Value::as_str)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| {
                Failure::User(anyhow!(
                    "the EKS cluster in {location} has no recorded `{name}`; `trails apply \
                     --refresh` records it"
                ))
            })
    };
    let document = crate::providers::kube::connect::eks_kubeconfig(
        output("name")?,
        output("endpoint")?,
        output("certificate_authority")?,
        &loaded.document.region,
    )
    .map_err(|error| Failure::Internal(error.into()))?;
    let text = serde_yaml::to_string(&document).map_err(|error| Failure::Internal(error.into()))?;
    print!("{text}");
    Ok(Outcome::Success)
}
