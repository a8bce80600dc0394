//! `trails schema`.

use clap::Args;

use super::{Failure, Outcome};

/// Arguments of `trails schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Print the reference as Markdown (`docs/blueprint.md`) instead of the JSON Schema.
    #[arg(long)]
    markdown: bool,
}

/// Prints the blueprint's JSON Schema or its Markdown reference.
pub fn run(args: SchemaArgs) -> Result<Outcome, Failure> {
    if args.markdown {
        print!("{}", crate::blueprint::reference::markdown());
    } else {
        let schema = serde_json::to_string_pretty(&crate::blueprint::reference::json_schema())
            .map_err(|error| Failure::Internal(error.into()))?;
        println!("{schema}");
    }
    Ok(Outcome::Success)
}
