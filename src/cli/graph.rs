//! `trails graph`.

use clap::{Args, ValueEnum};

use super::{Failure, Outcome, Output, Target, load};
use crate::graph::render::{Format, render};

/// Arguments of `trails graph`.
#[derive(Debug, Args)]
pub struct GraphArgs {
    #[command(flatten)]
    target: Target,
    /// Output format.
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    format: GraphFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum GraphFormat {
    Dot,
    Mermaid,
}

/// Prints the graph.
pub fn run(args: GraphArgs, output: Output) -> Result<Outcome, Failure> {
    let (checked, graph) = load(&args.target)?;
    output.warnings(&checked);
    let format = match args.format {
        GraphFormat::Dot => Format::Dot,
        GraphFormat::Mermaid => Format::Mermaid,
    };
    print!("{}", render(&graph, format));
    Ok(Outcome::Success)
}
