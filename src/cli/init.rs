//! `trails init`.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use clap::Args;

use super::{Failure, Outcome, Output};
use crate::blueprint::naming;

/// Arguments of `trails init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write the blueprint.
    #[arg(default_value = "trails.yaml")]
    file: PathBuf,
    /// The platform's name: it prefixes every AWS name (1 to 24 lowercase letters, digits and
    /// dashes).
    #[arg(long, default_value = "hello")]
    name: String,
    /// The AWS region.
    #[arg(long, default_value = "eu-west-1")]
    region: String,
}

/// The starter: a network and one bucket, with a dev and a protected prod environment.
fn starter(name: &str, region: &str) -> String {
    format!(
        "# A trails blueprint (see the README's \"The blueprint\" for every section).
#
#   trails validate -f FILE
#   trails plan     -f FILE -e dev
#
# The document is the shared default; each environment's `overlay` is merged over it.

blueprint: {name}
region: {region}

tags:
  owner: platform-team

environments:
  dev: {{}}
  prod:
    protect: true
    overlay:
      network:
        nat: per-az

network:
  cidr: 10.0.0.0/16
  azs: [a, b]
  nat: single
  subnets:
    public: [10.0.0.0/24, 10.0.1.0/24]
    private: [10.0.16.0/20, 10.0.32.0/20]

buckets:
  artifacts:
    lifecycle:
      - {{ id: expire-old-versions, noncurrent_expire_days: 30 }}
"
    )
}

/// Writes a starter blueprint; never over an existing file.
pub fn run(args: InitArgs, output: Output) -> Result<Outcome, Failure> {
    if !naming::is_blueprint_name(&args.name) {
        return Err(Failure::User(anyhow!(
            "--name `{}` is not usable: 1 to 24 lowercase letters, digits and dashes, starting \
             with a letter",
            args.name
        )));
    }
    if let Err(problem) = naming::region_problem(&args.region) {
        return Err(Failure::User(anyhow!("--region: {problem}")));
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&args.file)
        .with_context(|| {
            format!(
                "cannot create {} (an existing file is never overwritten)",
                args.file.display()
            )
        })
        .map_err(Failure::User)?;
    std::io::Write::write_all(&mut file, starter(&args.name, &args.region).as_bytes())
        .with_context(|| format!("cannot write {}", args.file.display()))
        .map_err(Failure::User)?;
    if !output.quiet {
        let shown = args.file.display();
        println!(
            "Wrote {shown}. Next:\n  trails validate -f {shown}\n  trails plan -f {shown} -e dev"
        );
    }
    Ok(Outcome::Success)
}
