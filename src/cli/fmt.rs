//! `trails fmt`.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;

use super::{Failure, Outcome, Output};

/// Arguments of `trails fmt`.
#[derive(Debug, Args)]
pub struct FmtArgs {
    /// The blueprint files to format (repeatable).
    #[arg(
        short = 'f',
        long = "file",
        env = "TRAILS_BLUEPRINT",
        default_value = "trails.yaml"
    )]
    files: Vec<PathBuf>,
    /// Write nothing: name each file that is not in canonical form and exit 1 (for CI).
    #[arg(long)]
    check: bool,
}

/// Rewrites each file in canonical form, or with `--check` says which are not.
pub fn run(args: FmtArgs, output: Output) -> Result<Outcome, Failure> {
    let mut unformatted = Vec::new();
    let mut problems = Vec::new();
    for file in &args.files {
        let text = std::fs::read_to_string(file)
            .map_err(|error| Failure::User(anyhow!("cannot read {}: {error}", file.display())))?;
        let formatted = match crate::blueprint::format::format(&text) {
            Ok(formatted) => formatted,
            Err(problem) => {
                problems.push(format!("{}: {problem}", file.display()));
                continue;
            }
        };
        if formatted == text {
            continue;
        }
        if args.check {
            unformatted.push(file.display().to_string());
        } else {
            std::fs::write(file, &formatted).map_err(|error| {
                Failure::User(anyhow!("cannot write {}: {error}", file.display()))
            })?;
            if !output.quiet {
                println!("formatted {}", file.display());
            }
        }
    }
    if !problems.is_empty() {
        return Err(Failure::User(anyhow!("{}", problems.join("\n"))));
    }
    if !unformatted.is_empty() {
        return Err(Failure::User(anyhow!(
            "not in canonical form: {}\n(`trails fmt -f FILE` rewrites a file.)",
            unformatted.join(", ")
        )));
    }
    Ok(Outcome::Success)
}
