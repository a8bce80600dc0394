//! `trails completions`.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::{Cli, Failure, Outcome};

/// Arguments of `trails completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    shell: Shell,
}

/// Prints the completion script for a shell.
pub fn run(args: CompletionsArgs) -> Result<Outcome, Failure> {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "trails", &mut std::io::stdout());
    Ok(Outcome::Success)
}
