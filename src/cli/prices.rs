//! `trails prices`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{Failure, Outcome, Output};

/// `trails prices …`.
#[derive(Debug, Subcommand)]
pub enum PricesCommand {
    /// Add the prices trails uses from an AWS Price List offer file (one service, one region,
    /// e.g. `…/offers/v1.0/aws/AmazonEC2/current/eu-west-1/index.json`) to
    /// `.trails/prices/REGION.json` beside the blueprint, which `plan` then reads.
    Update(UpdateArgs),
}

/// Arguments of `trails prices update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The downloaded offer file.
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
    /// The blueprint whose directory gets `.trails/prices/`.
    #[arg(
        short = 'f',
        long = "file",
        env = "TRAILS_BLUEPRINT",
        default_value = "trails.yaml"
    )]
    file: PathBuf,
}

/// Runs a `prices` subcommand.
pub fn run(command: PricesCommand, output: Output) -> Result<Outcome, Failure> {
    match command {
        PricesCommand::Update(args) => {
            let blueprint_dir = args.file.parent().unwrap_or(std::path::Path::new("."));
            let (region, kept, file) =
                crate::cost::prices::update(blueprint_dir, &args.from).map_err(Failure::User)?;
            if !output.quiet {
                println!(
                    "Kept {kept} product(s) for {region} from {}; wrote {}.",
                    args.from.display(),
                    file.display()
                );
            }
            Ok(Outcome::Success)
        }
    }
}
