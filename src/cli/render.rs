//! `trails render`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::{Failure, Outcome, Output, Target, load};
use crate::render::{Content, diagnostics, render, to_yaml};

/// Arguments of `trails render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    target: Target,
    /// Write one file per resource into this directory (`ADDRESS.yaml`, and
    /// `ADDRESS.values.yaml` for a Helm release) instead of printing.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Prints (or writes) what trails would apply inside the cluster.
pub fn run(args: RenderArgs, output: Output) -> Result<Outcome, Failure> {
    let (checked, graph) = load(&args.target)?;
    output.warnings(&checked);
    let rendered = render(&checked.loaded, &graph);
    if !rendered.problems.is_empty() {
        return Err(crate::blueprint::Diagnostics(diagnostics(&rendered, &checked.loaded)).into());
    }
    let Some(dir) = &args.out else {
        print!("{}", to_yaml(&rendered.items));
        return Ok(Outcome::Success);
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
        .map_err(Failure::User)?;
    for item in &rendered.items {
        let name = match item.content {
            Content::Objects(_) => format!("{}.yaml", item.address),
            Content::Values(_) => format!("{}.values.yaml", item.address),
        };
        let path = dir.join(name);
        std::fs::write(&path, to_yaml(std::slice::from_ref(item)))
            .with_context(|| format!("cannot write {}", path.display()))
            .map_err(Failure::User)?;
    }
    if !output.quiet {
        println!(
            "Wrote {} file(s) to {}.",
            rendered.items.len(),
            dir.display()
        );
    }
    Ok(Outcome::Success)
}
